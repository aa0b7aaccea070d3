"""One pod per accelerator family, through its preset's webhook, lands on that family's pool and runs.

The placement tests (`test_placement.py`) need a node of every pool in `hack/cluster/nodepools.yaml`; a kind cluster
(`make kind-test`) has one worker per accelerator family (`hack.cluster.kind.DEFAULT_POOLS`): NVIDIA, AWS Neuron,
TPU, AMD and CPU only. These pods are small (100m CPU, 64Mi) so they fit a laptop's kubelet, and run the pod sandbox
image every node already holds, so a kubelet starts them without a registry; on the local cluster KWOK runs them.
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from hack.cluster import placement
from hack.cluster.chart import ANNOTATION_PREFIX
from hack.cluster.kind import DEFAULT_POOLS
from hack.cluster.node import PAUSE_IMAGE

from .conftest import ExtraWebhook

pytestmark = pytest.mark.e2e

SMALL = "cpu=100m,mem=64Mi"
# pool -> (preset, annotations): what a Flyte task for that hardware carries
AMD = {"resources": f"{SMALL},gpu=1", "gpu-resource-key": "amd.com/gpu", "accelerator": "amd-mi300x"}
FAMILY_PODS: dict[str, tuple[str, dict[str, str]]] = {
    "cpu": ("eks", {"resources": SMALL}),
    "eks-a100": ("eks", {"resources": f"{SMALL},gpu=1", "accelerator": "A100"}),
    "eks-trn1": ("eks", {"resources": f"{SMALL},gpu=Trn1:1"}),
    "gke-tpu-v5e": ("gke", {"resources": f"{SMALL},gpu=8", "accelerator": "V5E.slice_2x4"}),
    "amd-mi300x": ("amd", AMD),
}


def test_the_kind_workers_are_the_families_these_pods_cover() -> None:
    assert set(FAMILY_PODS) == set(DEFAULT_POOLS)


@pytest.mark.parametrize("pool", sorted(FAMILY_PODS))
def test_a_pod_of_each_family_runs_on_its_pool(
    pool: str, core_v1: Any, preset_webhooks: dict[str, ExtraWebhook]
) -> None:
    preset, annotations = FAMILY_PODS[pool]
    hook = preset_webhooks[preset]
    name = f"family-{pool}-{secrets.token_hex(3)}"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": dict(hook.labels),
            "annotations": {ANNOTATION_PREFIX + k: v for k, v in annotations.items()},
        },
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": PAUSE_IMAGE, "imagePullPolicy": "IfNotPresent"}],
        },
    }
    core_v1.create_namespaced_pod(hook.namespace, placement.for_preset(pod, preset))
    try:
        view = placement.wait(core_v1, hook.namespace, [name], timeout=120)[name]
        assert view.running and view.pool == pool, placement.table([view])
    finally:
        core_v1.delete_namespaced_pod(name, hook.namespace, grace_period_seconds=0)
