"""Edit-time validation of the webhook's own ConfigMap: `POST /validate-config`.

The chart registers this endpoint for CREATE and UPDATE of its ConfigMap, so `kubectl edit` or `helm upgrade` with
a config the webhook would refuse is refused by the API server with the same message, before any replica sees it.
It validates the `config.yaml` key exactly as a replica loads the file (size cap, no anchors or aliases, not empty,
every key checked), without the replicas' `FRW_*` environment overrides. The chart sends it with `failurePolicy:
Ignore`: while the webhook is down a ConfigMap edit (the fix for a broken webhook, say) still lands, and the
replicas' own reload check and last good configuration remain the second line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from webhook.engine.config import ConfigError, WebhookConfig
from webhook.engine.excerpt import bounded
from webhook.operator.review import API_VERSIONS, request_uid
from webhook.operator.settings import parse_config_text

VALIDATE_CONFIG_PATH = "validate-config"
CONFIG_KEY = "config.yaml"


def validate_config_text(text: str, source: str) -> WebhookConfig:
    """The configuration a replica would serve from the config file `text`; `ConfigError` when it would refuse it.
    What `validate-config` runs, and this endpoint."""
    return WebhookConfig.from_mapping(parse_config_text(text, source))


def config_problem(text: str, source: str) -> str | None:
    """Why the config file `text` would be refused by a replica, or None when it is valid."""
    try:
        validate_config_text(text, source)
    except ConfigError as exc:
        return bounded(str(exc), 4096)
    return None


def review_config_map(review: Mapping[str, Any]) -> dict[str, Any]:
    """An AdmissionReview answer for a ConfigMap: allowed, or denied with the reason its config is refused."""
    request = review.get("request")
    request = request if isinstance(request, Mapping) else {}
    response: dict[str, Any] = {"uid": request_uid(request), "allowed": True}
    problem = _problem(request)
    if problem is not None:
        response["allowed"] = False
        response["status"] = {"code": 400, "reason": "BadRequest", "message": problem}
    api_version = review.get("apiVersion")
    return {
        "apiVersion": api_version if api_version in API_VERSIONS else API_VERSIONS[0],
        "kind": "AdmissionReview",
        "response": response,
    }


def _problem(request: Mapping[str, Any]) -> str | None:
    if request.get("operation") not in ("CREATE", "UPDATE"):
        return None
    obj = request.get("object")
    data = obj.get("data") if isinstance(obj, Mapping) else None
    text = data.get(CONFIG_KEY) if isinstance(data, Mapping) else None
    name = obj.get("metadata", {}).get("name") if isinstance(obj, Mapping) else None
    source = f"{name if isinstance(name, str) else 'ConfigMap'}/{CONFIG_KEY}"
    if not isinstance(text, str):
        return f"flyte-resources-webhook: ConfigMap data.{CONFIG_KEY} is missing; the webhook reads its config there"
    problem = config_problem(text, source)
    return None if problem is None else f"flyte-resources-webhook: {problem}"
