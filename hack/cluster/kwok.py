"""KWOK (sigs.k8s.io/kwok), the stand-in for kubelets, as a plain process.

KWOK watches the nodes annotated `kwok.x-k8s.io/node: fake` and the pods bound to them, and writes the status a
kubelet would write, following Stage objects (since v0.8 none are built in; `hack/control-plane.sh` copies
kwok's `kustomize/stage/` tree next to the binary). The stages assembled here:

* node-initialize: a new node gets its conditions (Ready), addresses and nodeInfo; capacity and allocatable
  stay as the Node object was created with them;
* node-heartbeat-with-lease: conditions refreshed and a `kube-node-lease` Lease renewed, as a kubelet does, so
  the node lifecycle controller keeps the node Ready;
* pod-ready: a scheduled pod gets a pod IP from `--cidr`, Ready conditions, running container statuses and phase
  Running; pod-complete: a Job's running pod becomes Succeeded; pod-delete: a deleted pod goes away;
* pod-complete-flyte (ours, derived from pod-complete): a running pod owned by a FlyteWorkflow (propeller writes
  the owner kind as `flyteworkflow`, its `FlyteWorkflowKind` constant) becomes Succeeded,
  but only when it carries `e2e.flyte.org/kwok-complete: "true"` (opt-in: the Flyte-shaped pods of the placement
  tests have the same owner kind and must stay Running); `hack.cluster.flyte` puts that label on its executions.

KWOK does not run containers, pull images, mount volumes, run probes, enforce limits, or advertise devices: the
GPUs a node has are whatever its Node object says.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

NODE_ANNOTATION = "kwok.x-k8s.io/node"
USER = "frw:kwok-controller"
# (directory under kustomize/stage/, file) in the order they are applied.
STAGES = (
    ("node/fast", "node-initialize.yaml"),
    ("node/heartbeat-with-lease", "node-heartbeat-with-lease.yaml"),
    ("pod/fast", "pod-ready.yaml"),
    ("pod/fast", "pod-complete.yaml"),
    ("pod/fast", "pod-delete.yaml"),
)
FLYTE_COMPLETE_LABEL = "e2e.flyte.org/kwok-complete"
LEASE_SECONDS = 40  # a kubelet's default nodeLeaseDurationSeconds


def write_config(stages_dir: Path, path: Path) -> Path:
    """One `--config` file holding the stage documents. KWOK applies them only to the nodes it manages (annotated
    `kwok.x-k8s.io/node: fake`) and their pods; the real node's pods (`hack.cluster.node`) are kubelet's."""
    docs = []
    for directory, name in STAGES:
        source = stages_dir / directory / name
        if not source.is_file():
            raise FileNotFoundError(f"kwok stage {source} is missing: run `make control-plane` again")
        text = source.read_text().strip()
        docs.append(text)
        if name == "pod-complete.yaml":
            docs.append(yaml.safe_dump(_flyte_complete(yaml.safe_load(text)), sort_keys=False).strip())
    path.write_text("\n---\n".join(docs) + "\n")
    return path


def _flyte_complete(stage: dict[str, Any]) -> dict[str, Any]:
    """kwok's pod-complete stage for FlyteWorkflow-owned pods that opt in by label instead of Job-owned pods."""
    stage["metadata"]["name"] = "pod-complete-flyte"
    selector = stage["spec"].setdefault("selector", {})
    owner = ".metadata.ownerReferences.[].kind"
    expressions = [e for e in selector.get("matchExpressions") or [] if e["key"] != owner]
    expressions += [
        {"key": owner, "operator": "In", "values": ["flyteworkflow", "FlyteWorkflow"]},
        {"key": f'.metadata.labels["{FLYTE_COMPLETE_LABEL}"]', "operator": "In", "values": ["true"]},
    ]
    selector["matchExpressions"] = expressions
    return stage


def argv(binary: Path, kubeconfig: Path, config: Path, pod_cidr: str) -> list[str]:
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--config={config}",
        f"--manage-nodes-with-annotation-selector={NODE_ANNOTATION}=fake",
        f"--cidr={pod_cidr}",
        "--node-ip=127.0.0.1",
        f"--node-lease-duration-seconds={LEASE_SECONDS}",
        "--v=WARN",  # INFO logs every status patch: thousands of lines in a burst
    ]


def grant_rbac(rbac: Any) -> None:
    """What kwok's own `kustomize/rbac/role.yaml` grants for nodes, pods, events and leases, bound to the user
    of kwok's client certificate."""
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": USER},
        "rules": [
            {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["nodes/status", "pods/status"], "verbs": ["patch", "update"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["delete", "get", "list", "patch", "update", "watch"]},
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch", "update"]},
            {
                "apiGroups": ["coordination.k8s.io"],
                "resources": ["leases"],
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            },
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": USER},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": USER},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}],
    }
    rbac.create_cluster_role(role)
    rbac.create_cluster_role_binding(binding)
