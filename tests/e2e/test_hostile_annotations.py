"""End to end: hostile annotation values sent through a real kube-apiserver get a short denial, and the webhook
keeps answering the next pod (a backtracking quantity grammar once stalled it for 26 s on a 3 KB value).

Every pod is created with `dryRun=All`: mutating admission runs, nothing is stored. Speed is measured by
`hack/worst_case.py`, not asserted here.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from hack.cluster.chart import ANNOTATION_PREFIX

P = ANNOTATION_PREFIX


def _pod(annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"hostile-{secrets.token_hex(4)}", "annotations": annotations},
        "spec": {"containers": [{"name": "main", "image": "busybox"}], "restartPolicy": "Never"},
    }


def _denial(core_v1: Any, namespace: str, annotations: dict[str, str]) -> str:
    with pytest.raises(ApiException) as caught:
        core_v1.create_namespaced_pod(namespace, _pod(annotations), dry_run="All")
    assert caught.value.status == 400, caught.value.body
    message = str(json.loads(caught.value.body)["message"])
    assert "denied the request" in message, message
    assert len(message.encode()) < 1400, "the webhook's message is at most ~1 KiB"
    return message


def _admitted(core_v1: Any, namespace: str) -> None:
    pod = core_v1.create_namespaced_pod(namespace, _pod({P + "resources": "cpu=1,mem=1Gi"}), dry_run="All")
    assert pod.spec.containers[0].resources.limits == {"cpu": "1", "memory": "1Gi"}


@pytest.mark.parametrize(
    ("annotation", "value", "reason"),
    [
        ("resources", "cpu=" + "0" * 3000 + "x", "longer than 64 characters"),
        ("resources", "cpu=" + "0" * 900_000 + "1", "at most 4096 bytes"),
        ("resources", "{" * 3000, "nested deeper than 8 levels"),
        ("extended-resources", '{"gpuAccelerator": {"device": "a", "partitionSize": "\uff11g.5gb"}}', "partitionSize"),
        ("accelerator", "A" * 4000, "accelerator"),
    ],
    ids=["backtracking quantity", "900 kB value", "deep JSON", "full-width digit", "long accelerator name"],
)
def test_hostile_values_are_denied_and_the_next_pod_is_admitted(core_v1, namespace, annotation, value, reason):
    message = _denial(core_v1, namespace, {P + annotation: value})
    assert f"{P}{annotation}" in message and reason in message, message
    if len(value) > 200:
        assert value[:200] not in message, "a long value is shown abbreviated"
    _admitted(core_v1, namespace)
