"""The live-chart drills on a kind cluster (`make kind-test`): the release `hack/kind-test.sh` installed, driven
as `hack.cluster.live.LiveCluster` drives its own, with the kind node in place of the local real node.

A kind node is a Docker container running containerd; a webhook replica's container is found from its pod's
`spec.nodeName` (the node container's name) and `containerID`, and signalled inside the node (`docker exec <node>
kill -s SIG <pid>`, the PID from `crictl inspect`: SIGKILL as the kernel's OOM killer would, SIGSTOP for a hung
process). Pod IPs are reached from the host through kind's Docker network (the routes `python -m
hack.cluster.kind network` adds as root); without them the drills fail saying so.

Every `helm upgrade` puts the release's own values (`helm get values`: the image kind loaded, its pull policy, the
certificate mode) under the drill's, so `--reset-values` goes back to what kind-test installed.
"""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path
from typing import Any

from hack.cluster.chart import RELEASE_NAME, WEBHOOK_NAMESPACE
from hack.cluster.clusters import ExistingCluster
from hack.cluster.live import ChartRelease
from hack.cluster.processes import HarnessError

KIND_PROVIDER = "kind://"


class NotKind(HarnessError):
    """The existing cluster is not a kind cluster."""


def kind_nodes(cluster: ExistingCluster) -> list[str]:
    """The names of the cluster's nodes when they are all kind nodes (providerID `kind://...`, or Docker containers
    labelled by kind), else []."""
    result = cluster.kubectl(
        "get", "nodes", "-o", "jsonpath={range .items[*]}{.spec.providerID} {.metadata.name}{'\\n'}{end}"
    )
    rows = [line.split() for line in result.stdout.splitlines() if line.strip()]
    if result.returncode != 0 or not rows:
        return []
    names = [r[-1] for r in rows]
    if all(r[0].startswith(KIND_PROVIDER) for r in rows):
        return names
    # Without a providerID: a kind node is a Docker container of that name labelled with its cluster.
    labels = subprocess.run(["docker", "inspect", "--format", "{{index .Config.Labels \"io.x-k8s.kind.cluster\"}}",
                             *names], capture_output=True, text=True, check=False)  # fmt: skip
    return names if labels.returncode == 0 and all(labels.stdout.split("\n")[: len(names)]) else []


class KindLiveCluster(ChartRelease, ExistingCluster):
    """`$KUBECONFIG`'s kind cluster with the chart installed as `release` in `namespace`."""

    local = False
    # kind's kubelets sync mounted ConfigMaps at the default syncFrequency (1 min; the local node's: 10 s), and
    # its pods start on a node shared with the rest of the cluster.
    pace = 3.0

    def __init__(
        self, run_dir: Path, *, release: str = RELEASE_NAME, namespace: str = WEBHOOK_NAMESPACE,
        kubeconfig: Path | None = None,
    ) -> None:  # fmt: skip
        super().__init__(run_dir, namespace=namespace, kubeconfig=kubeconfig)
        self.release = release
        self.nodes: list[str] = []

    def start(self) -> KindLiveCluster:
        super().start()
        self.nodes = kind_nodes(self)
        if not self.nodes:
            raise NotKind("no node has a providerID kind://... or is a kind node container: the drills signal a "
                               "replica's container inside its kind node")  # fmt: skip
        result = self.helm("get", "values", self.release, "--namespace", self.namespace, "--output", "json")
        if result.returncode != 0:
            raise HarnessError(f"no helm release {self.release} in {self.namespace}: {result.stderr.strip()}")
        self.base_values = json.loads(result.stdout or "{}") or {}
        for pod in self.webhook_pods():
            ip = pod["status"]["podIP"]
            try:
                socket.create_connection((ip, 9443), timeout=5).close()
            except OSError as exc:
                raise HarnessError(
                    f"the host cannot reach the pod IP {ip} ({exc}): add a route to each node's pod CIDR through "
                    "the node's address (as root: python -m hack.cluster.kind network)"
                ) from exc
        return self

    # ----------------------------------------------------------------------------------------- the kind node

    def _node_of(self, pod: dict[str, Any]) -> str:
        node = str(pod["spec"]["nodeName"])
        if node not in self.nodes:
            raise HarnessError(f"pod {pod['metadata']['name']} is on {node}, not one of the kind nodes {self.nodes}")
        return node

    def crictl(self, pod: dict[str, Any], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`crictl` in the kind node (a Docker container) that runs the pod."""
        result = subprocess.run(["docker", "exec", self._node_of(pod), "crictl", *args],
                                capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        if check and result.returncode != 0:
            raise HarnessError(f"crictl {' '.join(args)} on {pod['spec']['nodeName']}: {result.stderr.strip()}")
        return result

    def node_pid(self, pod: dict[str, Any]) -> int:
        """The PID of the pod's webhook process in its kind node's PID namespace (`crictl inspect`)."""
        cid = self.container_id(pod).removeprefix("containerd://")
        return int(json.loads(self.crictl(pod, "inspect", cid).stdout)["info"]["pid"])

    def kill_container(self, pod: dict[str, Any], sig: str = "SIGKILL") -> None:
        """Signal the pod's webhook process inside its kind node (SIGKILL: as the kernel's OOM killer would)."""
        pid = self.node_pid(pod)
        command = ["docker", "exec", self._node_of(pod), "sh", "-c", f"kill -s {sig.removeprefix('SIG')} {pid}"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
        if result.returncode != 0:
            raise HarnessError(f"kill -s {sig} {pid} in {pod['spec']['nodeName']}: {result.stderr.strip()}")

    def exec_in(self, pod: dict[str, Any], *argv: str) -> subprocess.CompletedProcess[str]:
        """`crictl exec` in the pod's webhook container (as its own user, under its own restrictions)."""
        return self.crictl(pod, "exec", self.container_id(pod).removeprefix("containerd://"), *argv, check=False)
