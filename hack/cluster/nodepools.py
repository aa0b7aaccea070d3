"""The node pools of `nodepools.yaml` as Node objects, and where each example should land under each preset.

The Nodes are what a kubelet would register, minus the kubelet: labels, taints, capacity and allocatable as the
pool says, plus the annotation `kwok.x-k8s.io/node: fake` that tells KWOK to act as their kubelet. KWOK's docs
also taint fake nodes `kwok.x-k8s.io/node=fake:NoSchedule` to keep real workloads off them; here every node is
fake, and that taint would force a KWOK toleration into every pod under test, so it is left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hack.cluster.kwok import NODE_ANNOTATION

DATA_FILE = Path(__file__).with_name("nodepools.yaml")
POOL_LABEL = "e2e.flyte.org/pool"  # which pool a node belongs to, so tests can tell (no scheduling meaning)
PENDING = "pending"


@dataclass(frozen=True)
class NodePool:
    name: str
    presets: tuple[str, ...]
    count: int
    labels: Mapping[str, str]
    taints: tuple[Mapping[str, str], ...]
    capacity: Mapping[str, str]
    allocatable: Mapping[str, str]

    @property
    def gpu_resources(self) -> dict[str, str]:
        """The extended resources the pool's nodes advertise (GPUs, MIG slices, TPUs)."""
        return {k: v for k, v in self.allocatable.items() if "/" in k}

    def node_names(self) -> list[str]:
        return [f"{self.name}-{i}" for i in range(self.count)]


@dataclass(frozen=True)
class PoolData:
    cluster_label_prefix: str
    pools: tuple[NodePool, ...]
    placements: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)

    def cluster_label(self, preset: str) -> str:
        """The label that says a node belongs to `preset`'s cluster."""
        return self.cluster_label_prefix + preset

    def pool(self, name: str) -> NodePool:
        for pool in self.pools:
            if pool.name == name:
                return pool
        raise KeyError(f"no node pool {name!r} in {DATA_FILE}")

    def expected(self, example: str, preset: str) -> tuple[str, ...]:
        """The pools `example` (a file name in examples/) may land on under `preset`; () means it stays Pending."""
        pools = self.placements[example][preset]
        return () if pools == (PENDING,) else pools


def _strings(mapping: Mapping[str, Any] | None) -> dict[str, str]:
    return {str(k): str(v) for k, v in (mapping or {}).items()}


def load(path: Path = DATA_FILE) -> PoolData:
    data = yaml.safe_load(path.read_text())
    pools = []
    for raw in data["pools"]:
        capacity = _strings(raw["capacity"])
        pools.append(
            NodePool(
                name=raw["name"],
                presets=tuple(raw["presets"]),
                count=int(raw.get("count", 1)),
                labels=_strings(raw.get("labels")),
                taints=tuple(_strings(t) for t in raw.get("taints") or ()),
                capacity=capacity,
                allocatable={**capacity, **_strings(raw.get("allocatable"))},
            )
        )
    placements = {
        example: {preset: tuple(v) if isinstance(v, list) else (v,) for preset, v in per_preset.items()}
        for example, per_preset in (data.get("placements") or {}).items()
    }
    return PoolData(data["cluster_label_prefix"], tuple(pools), placements)


def load_pools(path: Path = DATA_FILE) -> list[NodePool]:
    return list(load(path).pools)


def node_labels(pool: NodePool, name: str, prefix: str) -> dict[str, str]:
    """Labels a kubelet sets for itself, the pool's labels, the preset-cluster labels and the pool label."""
    return {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        **pool.labels,
        **{prefix + preset: "true" for preset in pool.presets},
        POOL_LABEL: pool.name,
    }


def node_objects(pools: Iterable[NodePool], prefix: str | None = None) -> list[dict[str, Any]]:
    prefix = prefix if prefix is not None else load().cluster_label_prefix
    nodes = []
    for pool in pools:
        for name in pool.node_names():
            nodes.append(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "labels": node_labels(pool, name, prefix),
                        "annotations": {NODE_ANNOTATION: "fake"},
                    },
                    "spec": {"taints": [dict(t) for t in pool.taints]},
                    "status": {"capacity": dict(pool.capacity), "allocatable": dict(pool.allocatable)},
                }
            )
    return nodes


def presets(pools: Sequence[NodePool]) -> list[str]:
    seen: dict[str, None] = {}
    for pool in pools:
        seen.update(dict.fromkeys(pool.presets))
    return list(seen)


def placement_markdown(data: PoolData | None = None) -> str:
    """The `placements` table as Markdown (the README shows it; a test keeps the two equal)."""
    data = data or load()
    order = presets(data.pools)
    lines = ["| example | " + " | ".join(order) + " |", "|---|" + "---|" * len(order)]
    for example, per_preset in data.placements.items():
        cells = [", ".join(per_preset[p]) if per_preset[p] != (PENDING,) else "Pending" for p in order]
        lines.append(f"| `{example}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)
