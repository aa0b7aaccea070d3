"""The Kubernetes API client the operator's parts share (self-managed certificates, `run --dev`), and its one
error type: a failed call, or no credentials, with a message meant for the user (no stack trace needed)."""

from __future__ import annotations

import json

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException


class KubeApiError(RuntimeError):
    """A Kubernetes API call failed or could not be made; the message says why, for the user."""


def kube_api_client() -> k8s.ApiClient:
    """An API client with the pod's service account, else KUBECONFIG / ~/.kube/config."""
    configuration = k8s.Configuration()
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException as in_cluster_error:
        try:
            k8s_config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except (k8s_config.ConfigException, OSError) as kubeconfig_error:
            raise KubeApiError(
                "no Kubernetes credentials: not running in a pod "
                f"({in_cluster_error}) and no usable kubeconfig ({kubeconfig_error})"
            ) from None
    return k8s.ApiClient(configuration)


def api_error(action: str, e: Exception, *, rbac_hint: str) -> KubeApiError:
    if isinstance(e, ApiException):
        if e.status == 403:
            return KubeApiError(f"not allowed to {action}: the service account needs {rbac_hint}")
        if e.status == 401:
            return KubeApiError(f"cannot {action}: the API server rejected our credentials")
        return KubeApiError(f"cannot {action}: HTTP {e.status} {e.reason}: {status_message(e)}")
    return KubeApiError(f"cannot {action}: the API server is unreachable ({type(e).__name__}: {e})")


def status_message(e: ApiException) -> str:
    try:
        return str(json.loads(e.body or "")["message"])
    except (ValueError, KeyError, TypeError):
        return (e.body or "").strip()[:300]
