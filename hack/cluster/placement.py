"""Where pods landed: wait for the scheduler and KWOK, read the node's pool, and show it as a table.

Shared by the placement tests (`tests/e2e/test_placement*.py`) and `make run` / `make demo`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hack.cluster.chart import ANNOTATION_PREFIX
from hack.cluster.nodepools import POOL_LABEL, load

PLACEMENT_TIMEOUT = 60.0
# How long a pod that cannot be placed is watched before it counts as Pending for good: the scheduler retries
# unschedulable pods, so "still Pending after a few seconds with a FailedScheduling reason" is the observable.
PENDING_GRACE = 4.0
RESOURCE_PREFIXES = ("nvidia.com/", "amd.com/", "google.com/", "aws.amazon.com/")


@dataclass(frozen=True)
class Placement:
    """One pod as the cluster sees it after scheduling (or after giving up on it)."""

    namespace: str
    name: str
    phase: str
    node: str | None
    pool: str | None
    pod_ip: str | None
    reason: str | None  # the scheduler's message when the pod is not bound
    accelerators: Mapping[str, str]  # extended resources the pod's containers ask for (GPU, MIG, TPU)
    annotations: Mapping[str, str]

    @property
    def running(self) -> bool:
        return self.phase == "Running" and self.node is not None


def for_preset(pod: Mapping[str, Any], preset: str) -> dict[str, Any]:
    """A copy of `pod` confined to `preset`'s nodes (its "cluster"): a nodeSelector on the preset label."""
    out = copy.deepcopy(dict(pod))
    spec = out.setdefault("spec", {})
    spec["nodeSelector"] = {**(spec.get("nodeSelector") or {}), load().cluster_label(preset): "true"}
    return out


def accelerators(pod: Mapping[str, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    for container in (pod.get("spec") or {}).get("containers") or []:
        limits = (container.get("resources") or {}).get("limits") or {}
        for key, value in limits.items():
            if key.startswith(RESOURCE_PREFIXES):
                found[key] = str(value)
    return found


def scheduling_reason(core: Any, namespace: str, name: str, pod: Mapping[str, Any] | None = None) -> str | None:
    """The scheduler's word on an unbound pod: the PodScheduled=False message, else the last FailedScheduling
    event."""
    conditions = ((pod or {}).get("status") or {}).get("conditions") or []
    for condition in conditions:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False" and condition.get("message"):
            return str(condition["message"])
    events = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items
    failed = [e for e in events if e.reason == "FailedScheduling"]
    return failed[-1].message if failed else None


def read(core: Any, namespace: str, name: str, pools_by_node: Mapping[str, str]) -> Placement:
    raw = core.api_client.sanitize_for_serialization(core.read_namespaced_pod(name, namespace))
    spec, status = raw.get("spec") or {}, raw.get("status") or {}
    node = spec.get("nodeName")
    phase = status.get("phase") or "Unknown"
    return Placement(
        namespace=namespace,
        name=name,
        phase=phase,
        node=node,
        pool=pools_by_node.get(node) if node else None,
        pod_ip=status.get("podIP"),
        reason=None if node else scheduling_reason(core, namespace, name, raw),
        accelerators=accelerators(raw),
        annotations={
            k: v
            for k, v in ((raw.get("metadata") or {}).get("annotations") or {}).items()
            if k.startswith(ANNOTATION_PREFIX)
        },
    )


def pools_by_node(core: Any) -> dict[str, str]:
    return {n.metadata.name: (n.metadata.labels or {}).get(POOL_LABEL, "") for n in core.list_node().items}


def wait(
    core: Any,
    namespace: str,
    names: Iterable[str],
    *,
    expect_pending: Iterable[str] = (),
    timeout: float = PLACEMENT_TIMEOUT,
) -> dict[str, Placement]:
    """Wait until every pod is Running, or (for `expect_pending`, and for any pod once `timeout` passes) has a
    scheduling failure on record and stays unbound for PENDING_GRACE seconds. Returns the last view of each."""
    names = list(names)
    pending_ok = set(expect_pending)
    nodes = pools_by_node(core)
    deadline = time.monotonic() + timeout
    unbound_since: dict[str, float] = {}
    while True:
        views = {name: read(core, namespace, name, nodes) for name in names}
        now = time.monotonic()
        settled = True
        for name, view in views.items():
            if view.running:
                continue
            if view.node is None and view.reason:
                unbound_since.setdefault(name, now)
                if name in pending_ok and now - unbound_since[name] >= PENDING_GRACE:
                    continue
            else:
                unbound_since.pop(name, None)
            settled = False
        if settled or now >= deadline:
            return views
        time.sleep(0.25)


def table(rows: Iterable[Placement], titles: Mapping[str, str] | None = None) -> str:
    """A plain-text table: pod, annotations, node, pool, GPU resource, phase."""
    header = ("pod", "annotations", "node", "pool", "GPU resource", "phase")
    lines = []
    for p in rows:
        annotations = ", ".join(
            f"{k.removeprefix(ANNOTATION_PREFIX)}={v}"
            for k, v in p.annotations.items()
            if k != ANNOTATION_PREFIX + "applied"
        )
        gpu = ", ".join(f"{k}: {v}" for k, v in p.accelerators.items()) or "-"
        phase = p.phase if p.running or not p.reason else f"{p.phase} ({_short(p.reason)})"
        lines.append(
            ((titles or {}).get(p.name, p.name), _short(annotations, 70), p.node or "-", p.pool or "-", gpu, phase)
        )
    widths = [max(len(str(r[i])) for r in (header, *lines)) for i in range(len(header))]
    out = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in (header, *lines)]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def _short(text: str, limit: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def wait_until_empty(core: Any, pool: str, timeout: float = PLACEMENT_TIMEOUT) -> None:
    """Until no pod that is still running or pending is bound to a node of `pool` (deleted pods take KWOK a
    moment). The nodes are found by their pool label, so this works on kind's workers too."""
    nodes = [n.metadata.name for n in core.list_node(label_selector=f"{POOL_LABEL}={pool}").items]

    def busy() -> list[str]:
        names = []
        for node in nodes:
            selector = f"spec.nodeName={node},status.phase!=Succeeded,status.phase!=Failed"
            names += [p.metadata.name for p in core.list_pod_for_all_namespaces(field_selector=selector).items]
        return names

    deadline = time.monotonic() + timeout
    while (left := busy()) and time.monotonic() < deadline:
        time.sleep(0.5)
    if left:
        raise TimeoutError(f"pods still on {', '.join(nodes)} after {timeout:.0f} s: {', '.join(left[:10])}")
