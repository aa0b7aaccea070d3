"""What a pod costs the apiserver in calls to us: one per pod, by the apiserver's own count.

A mutation that adds an extended resource makes the apiserver run its in-tree admission plugins again; where one
of them (ExtendedResourceToleration, which GKE runs and so does the local apiserver) then adds a toleration, that
change calls every `reinvocationPolicy: IfNeeded` webhook a second time. The presets add the toleration the
plugin would (eks and karpenter because their clusters lack the plugin, gke so that it has nothing left to add),
so the second pass changes nothing and the apiserver's `apiserver_admission_webhook_request_total` grows by one
per pod.
"""

from __future__ import annotations

import copy
import secrets
from typing import Any

import pytest

from hack.apiserver_figures import parse
from hack.cluster.chart import ANNOTATION_PREFIX
from hack.cluster.clusters import Cluster, dry_run_create

from .conftest import ExtraWebhook

pytestmark = pytest.mark.e2e

WEBHOOK_NAME = "flyte-resources.flyte.org"
GPU_POD = {"resources": "cpu=100m,mem=64Mi,gpu=1", "accelerator": "A100.partition_1g_5gb"}
TPU_POD = {"resources": "gpu=8", "accelerator": "V5E.slice_2x4"}
# The resource each pod gets from us under each preset, and so the toleration ExtendedResourceToleration adds.
CASES = [("eks", GPU_POD, "nvidia.com/gpu"), ("gke", GPU_POD, "nvidia.com/gpu"), ("gke", TPU_POD, "google.com/tpu")]
PODS = 5


def webhook_calls(cluster: Cluster) -> float:
    """The apiserver's CREATE calls to webhooks named like ours so far."""
    result = cluster.kubectl("get", "--raw", "/metrics")
    assert result.returncode == 0, result.stderr
    return sum(
        value
        for (name, labels), value in parse(result.stdout).items()
        if name == "apiserver_admission_webhook_request_total"
        and dict(labels).get("name") == WEBHOOK_NAME
        and dict(labels).get("operation") == "CREATE"
    )


def pod(annotations: dict[str, str], hook: ExtraWebhook) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"calls-{secrets.token_hex(4)}",
            "labels": dict(hook.labels),
            "annotations": {ANNOTATION_PREFIX + k: v for k, v in annotations.items()},
        },
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]},
    }


@pytest.mark.parametrize(("preset", "annotations", "resource"), CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_an_accelerator_pod_costs_one_webhook_call(
    cluster: Cluster, preset_webhooks: dict[str, ExtraWebhook], preset: str, annotations: Any, resource: str
) -> None:
    hook = preset_webhooks[preset]
    before = webhook_calls(cluster)
    stored = [dry_run_create(cluster, hook.namespace, pod(copy.deepcopy(annotations), hook)) for _ in range(PODS)]
    calls = webhook_calls(cluster) - before
    for out in stored:
        container = out["spec"]["containers"][0]
        assert resource in container["resources"]["limits"], container["resources"]
        # Exactly once: ours, and ExtendedResourceToleration found it there and added none.
        assert [t for t in out["spec"]["tolerations"] if t.get("key") == resource] == [
            {"key": resource, "operator": "Exists", "effect": "NoSchedule"}
        ]
    assert calls == PODS, f"{calls:.0f} calls to the webhook for {PODS} pods under preset {preset}"
