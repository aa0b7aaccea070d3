"""`run --dev`: register a MutatingWebhookConfiguration that points at a locally running server by URL.

In a cluster the chart owns the webhook configuration; for a local control plane or debugging against a remote
cluster there is no Service, so the configuration carries `clientConfig.url` and the CA we just generated.
Its rules and matchCondition are the chart's (`webhook.operator.registration`; never kube-system), so dev
behaves like production.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

import urllib3.exceptions
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from webhook.engine.config import DEFAULT_ANNOTATION_PREFIX, DEFAULT_NAMESPACE_TEMPLATE
from webhook.operator.kubeapi import KubeApiError, kube_api_client, status_message
from webhook.operator.registration import POD_WEBHOOK_NAME, pod_match_condition, pod_rules

__all__ = ["build_dev_webhook_configuration", "register_dev_webhook", "unregister_dev_webhook"]

logger = logging.getLogger(__name__)

_REQUEST_TIMEOUT = 15.0


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
                "name": POD_WEBHOOK_NAME,
                "clientConfig": {"url": url, "caBundle": base64.b64encode(ca_pem).decode("ascii")},
                "rules": pod_rules(),
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
                    pod_match_condition(
                        annotation_prefix, flyte_task_pods=flyte_task_pods, namespace_template=namespace_template
                    )
                ],
            }
        ],
    }


def register_dev_webhook(
    *,
    name: str,
    url: str,
    ca_pem: bytes,
    annotation_prefix: str = DEFAULT_ANNOTATION_PREFIX,
    failure_policy: str = "Fail",
    api_client: k8s.ApiClient | None = None,
    flyte_task_pods: bool = False,
    namespace_template: str = DEFAULT_NAMESPACE_TEMPLATE,
) -> None:
    """Create the MutatingWebhookConfiguration `name`, or replace it when it exists (blocking call).

    `url` is the full endpoint, e.g. `https://127.0.0.1:9443/flyte-resources`; `ca_pem` the CA(s) that signed
    the server's certificate. Raises KubeApiError with a user-facing message on failure.
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
        raise KubeApiError(str(e)) from None
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
            raise KubeApiError(
                f"not allowed to register {what}: needs create/get/update on mutatingwebhookconfigurations"
            ) from None
        raise KubeApiError(f"cannot register {what}: HTTP {e.status} {e.reason}: {status_message(e)}") from None
    except (OSError, urllib3.exceptions.HTTPError) as e:
        raise KubeApiError(f"cannot register {what}: the API server is unreachable ({e})") from None


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
