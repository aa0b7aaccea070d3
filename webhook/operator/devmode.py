"""`run --dev`: register a MutatingWebhookConfiguration that points at a locally running server by URL.

In a cluster the chart owns the webhook configuration; for a local control plane or debugging against a remote
cluster there is no Service, so the configuration carries `clientConfig.url` and the CA we just generated.
Its shape mirrors the chart's (CREATE on pods, only pods with one of our annotations, never kube-system) so
dev behaves like production.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import urllib3.exceptions
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from webhook.engine.config import DEFAULT_NAMESPACE_TEMPLATE
from webhook.engine.policies import DOMAIN_LABEL, FLYTE2_MANAGED_LABEL, FLYTE_TASK_POD_LABELS, PROJECT_LABEL
from webhook.operator.selfmanaged import SelfManagedError, kube_api_client

__all__ = [
    "DEV_WEBHOOK_ENTRY_NAME",
    "build_dev_webhook_configuration",
    "match_condition_expression",
    "match_condition_name",
    "register_dev_webhook",
    "unregister_dev_webhook",
]

logger = logging.getLogger(__name__)

DEV_WEBHOOK_ENTRY_NAME = "flyte-resources.flyte.org"  # as in the chart
_REQUEST_TIMEOUT = 15.0


def _cel_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def match_condition_expression(
    annotation_prefix: str, *, flyte_task_pods: bool = False, namespace_template: str = DEFAULT_NAMESPACE_TEMPLATE
) -> str:
    """CEL that is true for objects carrying at least one annotation starting with the prefix; with
    `flyte_task_pods` also for Flyte task pods (`webhook.engine.policies.is_flyte_task_pod`: their `project` and
    `domain` labels in the namespace `namespace_template` names), as in the chart."""
    annotated = (
        "has(object.metadata.annotations) && "
        f"object.metadata.annotations.exists(k, k.startsWith({_cel_string(annotation_prefix)}))"
    )
    if not flyte_task_pods:
        return annotated
    labelled = " && ".join(f"{_cel_string(key)} in object.metadata.labels" for key in FLYTE_TASK_POD_LABELS)
    if namespace_template:
        labelled += f" && request.namespace == {namespace_cel(namespace_template)}"
    managed = _cel_string(FLYTE2_MANAGED_LABEL)
    flyte2 = f"{managed} in object.metadata.labels && object.metadata.labels[{managed}] == 'true'"
    return f"({annotated}) || (has(object.metadata.labels) && (({labelled}) || ({flyte2})))"


def namespace_cel(template: str) -> str:
    """CEL for the namespace `template` names for a pod's `project` and `domain` labels; the chart builds the same
    string with two `replace`s (config validation keeps quotes and backslashes out of the template)."""
    quoted = "'" + template + "'"
    for placeholder, label in (("{{ project }}", PROJECT_LABEL), ("{{ domain }}", DOMAIN_LABEL)):
        quoted = quoted.replace(placeholder, f"' + object.metadata.labels['{label}'] + '")
    return quoted


def match_condition_name(*, flyte_task_pods: bool = False) -> str:
    return (
        "has-flyte-resources-annotation-or-is-flyte-task-pod" if flyte_task_pods else "has-flyte-resources-annotation"
    )


def build_dev_webhook_configuration(
    *,
    name: str,
    url: str,
    ca_pem: bytes,
    annotation_prefix: str,
    failure_policy: str = "Fail",
    flyte_task_pods: bool = False,
    namespace_template: str = DEFAULT_NAMESPACE_TEMPLATE,
) -> dict[str, Any]:
    if failure_policy not in ("Fail", "Ignore"):
        raise ValueError(f"failure policy must be Fail or Ignore, not {failure_policy!r}")
    if not url.startswith("https://"):
        raise ValueError(f"the webhook URL must be https://, got {url!r}")
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {
            "name": name,
            "labels": {
                "app.kubernetes.io/name": "flyte-resources-webhook",
                "app.kubernetes.io/component": "dev-webhook",
            },
        },
        "webhooks": [
            {
                "name": DEV_WEBHOOK_ENTRY_NAME,
                "clientConfig": {"url": url, "caBundle": base64.b64encode(ca_pem).decode("ascii")},
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                        "scope": "Namespaced",
                    }
                ],
                "failurePolicy": failure_policy,
                "matchPolicy": "Equivalent",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 5,
                "reinvocationPolicy": "IfNeeded",
                "namespaceSelector": {
                    "matchExpressions": [
                        {
                            "key": "kubernetes.io/metadata.name",
                            "operator": "NotIn",
                            "values": ["kube-system"],
                        }
                    ]
                },
                "matchConditions": [
                    {
                        "name": match_condition_name(flyte_task_pods=flyte_task_pods),
                        "expression": match_condition_expression(
                            annotation_prefix, flyte_task_pods=flyte_task_pods, namespace_template=namespace_template
                        ),
                    }
                ],
            }
        ],
    }


def register_dev_webhook(
    *,
    name: str,
    url: str,
    ca_pem: bytes,
    annotation_prefix: str = "resources.flyte.org/",
    failure_policy: str = "Fail",
    api_client: k8s.ApiClient | None = None,
    flyte_task_pods: bool = False,
    namespace_template: str = DEFAULT_NAMESPACE_TEMPLATE,
) -> None:
    """Create the MutatingWebhookConfiguration `name`, or replace it when it exists (blocking call).

    `url` is the full endpoint, e.g. `https://127.0.0.1:9443/flyte-resources`; `ca_pem` the CA(s) that signed
    the server's certificate. Raises SelfManagedError with a user-facing message on failure.
    """
    try:
        body = build_dev_webhook_configuration(
            name=name,
            url=url,
            ca_pem=ca_pem,
            annotation_prefix=annotation_prefix,
            failure_policy=failure_policy,
            flyte_task_pods=flyte_task_pods,
            namespace_template=namespace_template,
        )
    except ValueError as e:
        raise SelfManagedError(str(e)) from None
    api = k8s.AdmissionregistrationV1Api(api_client or kube_api_client())
    what = f"MutatingWebhookConfiguration {name}"
    try:
        try:
            api.create_mutating_webhook_configuration(
                k8s.V1MutatingWebhookConfiguration.model_validate(body), _request_timeout=_REQUEST_TIMEOUT
            )
            logger.info("Registered %s -> %s", what, url)
            return
        except ApiException as e:
            if e.status != 409:
                raise
        # A leftover from an earlier run (maybe with another port): replace it, pinned to what we just read
        # so a concurrent edit is not silently lost.
        current = api.read_mutating_webhook_configuration(name, _request_timeout=_REQUEST_TIMEOUT)
        body["metadata"]["resourceVersion"] = current.metadata.resource_version if current.metadata else None
        api.replace_mutating_webhook_configuration(
            name, k8s.V1MutatingWebhookConfiguration.model_validate(body), _request_timeout=_REQUEST_TIMEOUT
        )
        logger.info("Replaced %s -> %s", what, url)
    except ApiException as e:
        if e.status == 403:
            raise SelfManagedError(
                f"not allowed to register {what}: needs create/get/update on mutatingwebhookconfigurations"
            ) from None
        raise SelfManagedError(f"cannot register {what}: HTTP {e.status} {e.reason}: {_message(e)}") from None
    except (OSError, urllib3.exceptions.HTTPError) as e:
        raise SelfManagedError(f"cannot register {what}: the API server is unreachable ({e})") from None


def unregister_dev_webhook(*, name: str, api_client: k8s.ApiClient | None = None) -> None:
    """Delete the dev configuration so a stopped dev server does not block pod creation (best effort)."""
    api = k8s.AdmissionregistrationV1Api(api_client or kube_api_client())
    try:
        api.delete_mutating_webhook_configuration(name, _request_timeout=_REQUEST_TIMEOUT)
        logger.info("Removed MutatingWebhookConfiguration %s", name)
    except ApiException as e:
        if e.status != 404:
            logger.warning("Could not remove MutatingWebhookConfiguration %s: HTTP %s", name, e.status)
    except (OSError, urllib3.exceptions.HTTPError) as e:
        logger.warning("Could not remove MutatingWebhookConfiguration %s: %s", name, e)


def _message(e: ApiException) -> str:
    try:
        return str(json.loads(e.body or "")["message"])
    except (ValueError, KeyError, TypeError):
        return (e.body or "").strip()[:300]
