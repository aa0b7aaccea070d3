"""Placement end to end: the webhook mutates, the real kube-scheduler binds, KWOK runs the pod.

Each test creates pods through a preset's webhook (the `preset_webhooks` fixture) confined to that preset's nodes,
then asserts `spec.nodeName`, the node's pool (`hack/cluster/nodepools.yaml`) and the phase. A pod the webhook
places on labels, taints or resources no node of its preset has stays Pending, and that fails the test with the
scheduler's reason, the pod's placement fields and what the expected pool carries.
"""

from __future__ import annotations

import copy
import json
import secrets
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from hack.cluster import placement
from hack.cluster.chart import ANNOTATION_PREFIX
from hack.cluster.nodepools import load
from hack.local_cluster import EXAMPLES_DIR, load_examples

from .conftest import PRESETS, ExtraWebhook

POOLS = load()
RUN_LABEL = "e2e.flyte.org/placement-run"
EXAMPLES = {path.name: pod for path, pod in load_examples(EXAMPLES_DIR)}


class Pods:
    """Pods of one test, created through one preset's webhook; all deleted afterwards."""

    def __init__(self, core: Any, hook: ExtraWebhook, preset: str) -> None:
        self.core, self.hook, self.preset = core, hook, preset
        self.run = secrets.token_hex(4)

    def body(self, pod: dict[str, Any], name: str) -> dict[str, Any]:
        body = placement.for_preset(pod, self.preset)
        meta = body["metadata"]
        meta["name"] = name
        meta.pop("namespace", None)
        # The examples' owner (a FlyteWorkflow) does not exist here: the garbage collector would delete the pod.
        meta.pop("ownerReferences", None)
        meta["labels"] = {**(meta.get("labels") or {}), **self.hook.labels, RUN_LABEL: self.run}
        return body

    def create(self, pod: dict[str, Any], name: str) -> str:
        self.core.create_namespaced_pod(self.hook.namespace, self.body(pod, name))
        return name

    def create_many(self, pods: Iterable[tuple[dict[str, Any], str]], workers: int = 16) -> list[str]:
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(lambda item: self.create(*item), pods))

    def wait(self, names: Iterable[str], **kwargs: Any) -> dict[str, placement.Placement]:
        return placement.wait(self.core, self.hook.namespace, names, **kwargs)

    def delete_all(self) -> None:
        self.core.delete_collection_namespaced_pod(self.hook.namespace, label_selector=f"{RUN_LABEL}={self.run}")


@pytest.fixture
def pods_for(core_v1: Any, preset_webhooks: dict[str, ExtraWebhook]) -> Iterator[Any]:
    present = set(placement.pools_by_node(core_v1).values())
    missing = sorted(p.name for p in POOLS.pools if p.name not in present)
    if missing:
        # An existing cluster (kind: one worker per accelerator family, test_families.py) has not every pool; the
        # local cluster always has them all, so this never skips there.
        pytest.skip(
            f"needs a node of every pool in nodepools.yaml, sized as its instance type; this cluster lacks "
            f"{len(missing)} of {len(POOLS.pools)} ({', '.join(missing[:4])}, ...): the local cluster's KWOK nodes "
            "run these (make test); test_families.py places one pod per accelerator family here"
        )
    made: list[Pods] = []

    def make(preset: str) -> Pods:
        made.append(Pods(core_v1, preset_webhooks[preset], preset))
        return made[-1]

    yield make
    for pods in made:
        pods.delete_all()


def annotated_pod(annotations: dict[str, str], *, name: str = "p") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": {ANNOTATION_PREFIX + k: v for k, v in annotations.items()}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]},
    }


def placement_fields(core: Any, namespace: str, name: str) -> str:
    raw = core.api_client.sanitize_for_serialization(core.read_namespaced_pod(name, namespace))
    spec = raw["spec"]
    shown = {
        "limits": [c.get("resources", {}).get("limits") for c in spec["containers"]],
        "affinity": spec.get("affinity"),
        "nodeSelector": spec.get("nodeSelector"),
        "tolerations": [t for t in spec.get("tolerations") or [] if not t.get("key", "").startswith("node.kubernetes")],
    }
    return json.dumps(shown, sort_keys=True)


def describe_pool(name: str) -> str:
    pool = POOLS.pool(name)
    return f"pool {name}: labels {dict(pool.labels)}, taints {list(pool.taints)}, allocatable {pool.gpu_resources}"


# --------------------------------------------------------------------------------------------- every example


@pytest.mark.parametrize("preset", PRESETS)
def test_every_example_lands_on_its_pool_and_no_other(preset: str, pods_for: Any, core_v1: Any) -> None:
    unlisted = sorted(set(EXAMPLES) - set(POOLS.placements))
    assert not unlisted, f"say where these examples should run, in hack/cluster/nodepools.yaml placements: {unlisted}"
    unknown = {p for per in POOLS.placements.values() for ps in per.values() for p in ps} - {"pending"}
    assert unknown <= {p.name for p in POOLS.pools}, unknown - {p.name for p in POOLS.pools}
    pods = pods_for(preset)
    names = {example: f"{Path(example).stem}-{pods.run}"[:63] for example in EXAMPLES}
    for example, pod in EXAMPLES.items():
        pods.create(pod, names[example])
    pending = [names[e] for e in EXAMPLES if not POOLS.expected(e, preset)]
    views = pods.wait(names.values(), expect_pending=pending)

    failures = []
    for example, name in names.items():
        view, expected = views[name], POOLS.expected(example, preset)
        if expected and not (view.running and view.pool in expected):
            failures.append(
                f"{example} under preset {preset}: expected Running on {' or '.join(expected)}, got {view.phase} on "
                f"{view.node or 'no node'} (pool {view.pool or '-'}); scheduler: {view.reason}\n"
                f"    pod: {placement_fields(core_v1, pods.hook.namespace, name)}\n"
                + "\n".join(f"    {describe_pool(p)}" for p in expected)
            )
        elif not expected and (view.node is not None or not view.reason):
            failures.append(
                f"{example} under preset {preset}: no {preset} node has its hardware, so it must stay Pending with a "
                f"scheduling failure; got {view.phase} on {view.node} (pool {view.pool})"
            )
    assert not failures, f"placement table:\n{placement.table(views.values())}\n\n" + "\n\n".join(failures)


# --------------------------------------------------------------------------------------------- partitions


@pytest.mark.parametrize(
    ("preset", "accelerator", "pool"),
    [
        ("eks", "A100.unpartitioned", "eks-a100"),
        ("gke", "A100.unpartitioned", "gke-a100"),
        # No partition named: a whole device too (not Flyte, which lets these land on the MIG pool).
        ("eks", "A100", "eks-a100"),
        ("gke", "nvidia-tesla-a100", "gke-a100"),
        ("gke", "H100", "gke-h100"),
        ("gke", "H100.unpartitioned", "gke-h100"),  # flytekit's H100 has no partitions; the catalog's has
    ],
)
def test_a_whole_device_request_never_lands_on_a_partitioned_node(
    preset: str, accelerator: str, pool: str, pods_for: Any
) -> None:
    """Both pools of the device fit the GPU count and the device label; only the partition requirement keeps these
    pods off the MIG node, which the scheduler would otherwise favour (it has the most free GPUs)."""
    pods = pods_for(preset)
    pod = annotated_pod({"limits": "gpu=1", "accelerator": accelerator})
    names = [pods.create(pod, f"unpartitioned-{i}-{pods.run}") for i in range(4)]
    views = pods.wait(names)
    landed = {name: (v.phase, v.pool) for name, v in views.items()}
    assert all(v.running and v.pool == pool for v in views.values()), landed


def test_mixed_mig_pod_consumes_the_mig_resource(pods_for: Any, core_v1: Any) -> None:
    """Under gfd (mixed strategy) an A100.partition_1g_5gb pod asks for nvidia.com/mig-1g.5gb; the node has 56 of
    them, so 56 such pods run and the 57th waits for one, with the scheduler saying which resource is short."""
    pods = pods_for("gfd")
    node_pool = POOLS.pool("gfd-a100-mig")
    slots = int(node_pool.allocatable["nvidia.com/mig-1g.5gb"]) * node_pool.count
    placement.wait_until_empty(core_v1, node_pool.name)
    pod = annotated_pod({"resources": "cpu=100m,mem=64Mi,gpu=1", "accelerator": "A100.partition_1g_5gb"})
    names = pods.create_many((pod, f"mig-{i}-{pods.run}") for i in range(slots + 1))
    views = pods.wait(names, expect_pending=names, timeout=120)
    running = [v for v in views.values() if v.running]
    waiting = [v for v in views.values() if not v.node]
    assert {v.pool for v in running} == {"gfd-a100-mig"}, placement.table(views.values())
    assert all(v.accelerators == {"nvidia.com/mig-1g.5gb": "1"} for v in views.values())
    assert len(running) == slots and len(waiting) == 1, placement.table(views.values())
    assert "Insufficient nvidia.com/mig-1g.5gb" in (waiting[0].reason or ""), waiting[0].reason


# --------------------------------------------------------------------------------------------- without us


def test_the_same_gpu_pod_without_annotations_stays_off_tainted_gpu_nodes(pods_for: Any) -> None:
    """The A100 MIG example with its GPU and device written straight into the pod and our annotations removed:
    nothing adds the device toleration, so the tainted eks A100 nodes refuse it. (The device nodeSelector keeps
    it off eks-t4, whose `nvidia.com/gpu` taint this apiserver's ExtendedResourceToleration tolerates; EKS runs
    no such plugin, the eks preset's `resource-tolerations` stand in for it.)"""
    pods = pods_for("eks")
    pod = copy.deepcopy(EXAMPLES["gpu-a100-mig.yaml"])
    pod["metadata"]["annotations"] = {
        k: v for k, v in pod["metadata"]["annotations"].items() if not k.startswith(ANNOTATION_PREFIX)
    }
    pod["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": "1", "cpu": "500m", "memory": "1Gi"}}
    pod["spec"]["nodeSelector"] = {"k8s.amazonaws.com/accelerator": "nvidia-tesla-a100"}
    name = pods.create(pod, f"no-annotations-{pods.run}")
    view = pods.wait([name], expect_pending=[name])[name]
    assert view.node is None, f"landed on {view.node} (pool {view.pool})"
    assert "untolerated taint" in (view.reason or ""), view.reason


def test_more_gpus_than_any_node_has_stays_pending_with_the_schedulers_reason(pods_for: Any) -> None:
    pods = pods_for("eks")
    name = pods.create(annotated_pod({"limits": "gpu=64", "accelerator": "nvidia-tesla-a100"}), f"gpu64-{pods.run}")
    view = pods.wait([name], expect_pending=[name])[name]
    assert view.node is None and view.phase == "Pending", view
    assert "Insufficient nvidia.com/gpu" in (view.reason or ""), view.reason
    assert view.accelerators == {"nvidia.com/gpu": "64"}


# --------------------------------------------------------------------------------------------- a burst


def test_a_burst_of_500_annotated_pods_all_run_on_the_right_pools(pods_for: Any, core_v1: Any) -> None:
    pods = pods_for("eks")
    placement.wait_until_empty(core_v1, "eks-a100-mig")
    cpu_pod = annotated_pod({"resources": "cpu=10m,mem=128Mi", "shared-memory": "64Mi"})
    mig_pod = annotated_pod({"resources": "cpu=100m,mem=64Mi,gpu=1", "accelerator": "A100.partition_1g_5gb"})
    batch = [(mig_pod if i % 10 == 0 else cpu_pod, f"burst-{i}-{pods.run}") for i in range(500)]
    names = pods.create_many(batch)
    views = pods.wait(names, timeout=240)
    wrong = [
        v for (pod, _), v in zip(batch, views.values(), strict=True)
        if not v.running or v.pool != ("eks-a100-mig" if pod is mig_pod else "cpu")
    ]  # fmt: skip
    assert not wrong, f"{len(wrong)} of 500 not Running on their pool:\n{placement.table(wrong[:20])}"
