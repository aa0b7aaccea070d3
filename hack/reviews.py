"""AdmissionReviews as the API server sends them, for tests and tools: a pod with given annotations."""

from __future__ import annotations

from typing import Any

REVIEW_UID = "705ab4f5-6393-11e8-b7cc-42010a800002"


def admission_review(
    annotations: dict[str, str] | None = None, operation: str = "CREATE", api_version: str = "admission.k8s.io/v1"
) -> dict[str, Any]:
    """A review of a one-container pod (`main`) in namespace `ns` carrying `annotations`."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "task-", "namespace": "ns", "annotations": annotations or {}},
        "spec": {"containers": [{"name": "main", "image": "x"}]},
    }
    return {
        "apiVersion": api_version,
        "kind": "AdmissionReview",
        "request": {
            "uid": REVIEW_UID,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "operation": operation,
            "namespace": "ns",
            "userInfo": {"username": "admin"},
            "object": pod,
        },
    }
