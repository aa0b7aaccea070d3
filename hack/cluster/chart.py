"""The project's chart as the local cluster uses it: rendered with `helm template`, then pointed at 127.0.0.1.

Only each webhook's `clientConfig.service` is swapped for `url: https://127.0.0.1:<port><service.path>` plus
`caBundle`; every other field is the chart's, so the e2e tests exercise what users install.
"""

from __future__ import annotations

import base64
import copy
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from hack.cluster.processes import REPO_ROOT, HarnessError
from webhook.engine.config import DEFAULT_ANNOTATION_PREFIX

CHART_DIR = REPO_ROOT / "charts" / "flyte-resources-webhook"
MWC_TEMPLATE = "templates/mutatingwebhookconfiguration.yaml"
CONFIGMAP_TEMPLATE = "templates/configmap.yaml"
RELEASE_NAME = "flyte-resources-webhook"
# The namespace the chart is rendered for: the webhook's own namespace, which it must not intercept.
WEBHOOK_NAMESPACE = "flyte-resources-webhook"
WEBHOOK_PATH = "/flyte-resources"
ANNOTATION_PREFIX = DEFAULT_ANNOTATION_PREFIX
APPLIED_ANNOTATION = ANNOTATION_PREFIX + "applied"


def render_chart(
    helm: Path | str,
    template: str,
    *,
    release: str = RELEASE_NAME,
    namespace: str = WEBHOOK_NAMESPACE,
    values: Mapping[str, Any] | None = None,
    work_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """The documents `helm template --show-only <template>` renders for that release and namespace, with the
    chart's defaults or `values` on top (e.g. another failurePolicy for a test-only copy)."""
    if not (CHART_DIR / template).exists():
        raise HarnessError(f"the chart's {template} is missing under {CHART_DIR}")
    argv = [str(helm), "template", release, str(CHART_DIR), "--namespace", namespace, "--show-only", template]
    if values:
        if work_dir is None:
            raise ValueError("values need a work_dir to write the values file into")
        values_file = work_dir / f"values-{release}-{Path(template).stem}.yaml"
        values_file.write_text(yaml.safe_dump(dict(values)))
        argv += ["--values", str(values_file)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise HarnessError(f"`{' '.join(argv)}` failed ({result.returncode}):\n{result.stderr}")
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def render_mwc(helm: Path | str, **kwargs: Any) -> dict[str, Any]:
    """The chart's MutatingWebhookConfiguration (see `render_chart` for the arguments)."""
    docs = render_chart(helm, MWC_TEMPLATE, **kwargs)
    mwcs = [d for d in docs if d.get("kind") == "MutatingWebhookConfiguration"]
    if len(mwcs) != 1:
        raise HarnessError(f"expected one MutatingWebhookConfiguration from the chart, got {len(mwcs)}")
    return mwcs[0]


def render_webhook_config(helm: Path | str, **kwargs: Any) -> dict[str, Any]:
    """The webhook's config file as the chart's ConfigMap ships it (`config.yaml`)."""
    docs = render_chart(helm, CONFIGMAP_TEMPLATE, **kwargs)
    for doc in docs:
        if doc.get("kind") == "ConfigMap" and "config.yaml" in (doc.get("data") or {}):
            return dict(yaml.safe_load(doc["data"]["config.yaml"]) or {})
    raise HarnessError(f"the chart's {CONFIGMAP_TEMPLATE} has no ConfigMap with a config.yaml key")


def localize_mwc(mwc: Mapping[str, Any], base_url: str, ca_pem: bytes | None) -> dict[str, Any]:
    """Swap each webhook's `clientConfig.service` for `url` (same path) + `caBundle`; nothing else changes."""
    local = copy.deepcopy(dict(mwc))
    for hook in local.get("webhooks", []):
        client = hook.setdefault("clientConfig", {})
        service = client.pop("service", None) or {}
        client.pop("url", None)
        client["url"] = base_url + (service.get("path") or WEBHOOK_PATH)
        if ca_pem is not None:
            client["caBundle"] = base64.b64encode(ca_pem).decode()
    return local


def strip_server_fields(obj: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    for key in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"):
        obj.get("metadata", {}).pop(key, None)
    return obj
