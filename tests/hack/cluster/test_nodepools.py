"""The node pool data file: every pool well formed, every example placed under every preset, kind gets the same."""

from __future__ import annotations

import pytest
import yaml

from hack.cluster import kind
from hack.cluster.nodepools import PENDING, POOL_LABEL, load, node_objects
from hack.local_cluster import EXAMPLES_DIR, load_examples
from webhook.engine.config import Preset

DATA = load()
PRESETS = {p.value for p in Preset}


def test_every_pool_belongs_to_known_presets_and_is_sized() -> None:
    names = [p.name for p in DATA.pools]
    assert len(names) == len(set(names))
    for pool in DATA.pools:
        assert pool.presets and set(pool.presets) <= PRESETS, pool.name
        assert {"cpu", "memory", "pods"} <= set(pool.allocatable), pool.name
        assert pool.gpu_resources == {k: v for k, v in pool.capacity.items() if "/" in k}, pool.name
        for taint in pool.taints:
            assert taint["effect"] in ("NoSchedule", "PreferNoSchedule", "NoExecute"), (pool.name, taint)


def test_every_example_has_a_place_under_every_preset() -> None:
    examples = {path.name for path, _ in load_examples(EXAMPLES_DIR)}
    assert set(DATA.placements) == examples
    pools = {p.name: p for p in DATA.pools}
    for example, per_preset in DATA.placements.items():
        assert set(per_preset) == PRESETS, example
        for preset, targets in per_preset.items():
            for target in targets:
                assert target == PENDING or preset in pools[target].presets, (example, preset, target)


def test_nodes_are_kwok_nodes_with_the_pool_and_preset_labels() -> None:
    nodes = node_objects(DATA.pools)
    assert len(nodes) == sum(p.count for p in DATA.pools)
    for node in nodes:
        assert node["metadata"]["annotations"] == {"kwok.x-k8s.io/node": "fake"}
        pool = DATA.pool(node["metadata"]["labels"][POOL_LABEL])
        for preset in pool.presets:
            assert node["metadata"]["labels"][DATA.cluster_label(preset)] == "true"
        assert node["spec"]["taints"] == [dict(t) for t in pool.taints]


def test_kind_workers_register_with_the_same_labels_and_taints() -> None:
    config = kind.cluster_config()
    workers = [n for n in config["nodes"] if n["role"] == "worker"]
    assert [w["labels"][POOL_LABEL] for w in workers] == list(kind.DEFAULT_POOLS)
    for worker in workers:
        pool = DATA.pool(worker["labels"][POOL_LABEL])
        assert {k: v for k, v in pool.labels.items()}.items() <= worker["labels"].items()
        patches = [yaml.safe_load(p) for p in worker.get("kubeadmConfigPatches", [])]
        taints = [t for p in patches for t in p["nodeRegistration"]["taints"]]
        assert taints == [dict(t) for t in pool.taints]
    assert "networking" not in config  # kind's own CNI with its own images


def test_kind_workers_cover_every_accelerator_family_and_the_offline_config_brings_its_own_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resources = {k.split("/")[0] for name in kind.DEFAULT_POOLS for k in DATA.pool(name).gpu_resources}
    assert resources == {"nvidia.com", "aws.amazon.com", "google.com", "amd.com"}
    monkeypatch.setenv("KIND_POOLS", "cpu, gke-a100")
    config = kind.cluster_config(offline=True)
    assert [n["labels"][POOL_LABEL] for n in config["nodes"] if n["role"] == "worker"] == ["cpu", "gke-a100"]
    assert config["networking"] == {"disableDefaultCNI": True}
    conf = kind.cni_config("10.244.3.0/24")
    assert conf["plugins"][0]["ipam"]["ranges"] == [[{"subnet": "10.244.3.0/24"}]]


def _tolerates(toleration: dict[str, str], taint: dict[str, str]) -> bool:
    """Kubernetes' toleration matching (`ToleratesTaint`) for the fields the pools use."""
    if toleration.get("effect") not in (None, taint["effect"]) or toleration.get("key") not in (None, taint["key"]):
        return False
    return toleration.get("operator") == "Exists" or toleration.get("value") == taint.get("value")


# GKE tolerates its GPU and TPU taints by the ExtendedResourceToleration admission plugin; EKS and Karpenter do not,
# so there the preset must (the local apiserver runs that plugin for GKE, so the placement tests cannot tell).
PRESETS_WITHOUT_THE_PLUGIN = sorted(PRESETS - {"gke"})


def test_presets_tolerate_the_resource_taints_of_their_clusters_without_extended_resource_toleration() -> None:
    from webhook.engine.config import WebhookConfig
    from webhook.engine.pod import apply_resource_tolerations

    checked = []
    for preset in PRESETS_WITHOUT_THE_PLUGIN:
        config = WebhookConfig.from_mapping({"preset": preset})
        for pool in (p for p in DATA.pools if preset in p.presets):
            for taint in (t for t in pool.taints if t["key"] in pool.gpu_resources):
                pod = {"spec": {"containers": [{"name": "c", "resources": {"limits": {taint["key"]: "1"}}}]}}
                tolerations = apply_resource_tolerations(pod, config=config).pod["spec"].get("tolerations") or []
                assert any(_tolerates(t, dict(taint)) for t in tolerations), (preset, pool.name, taint)
                checked.append((preset, pool.name))
    assert {("eks", "eks-t4"), ("karpenter", "karpenter-t4"), ("karpenter", "karpenter-trn1")} <= set(checked)
