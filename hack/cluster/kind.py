"""The node pools of `nodepools.yaml` on a small kind cluster, for `make kind-test` (hack/kind-test.sh).

    python -m hack.cluster.kind config [--offline]  # kind cluster config: a control plane + one worker per family
    python -m hack.cluster.kind network CLUSTER     # (offline image) each node's CNI config and routes
    python -m hack.cluster.kind capacity            # patch each worker's GPU/TPU/Neuron capacity into its status

The workers are one pool node per accelerator family (`KIND_POOLS`, default `cpu`, `eks-a100` (NVIDIA),
`eks-trn1` (AWS Neuron), `gke-tpu-v5e` (TPU), `amd-mi300x` (AMD)): each a real kubelet registering with its pool's
labels (kind's `labels`) and taints (kubeadm's `nodeRegistration.taints`); the extended resources a device plugin
would advertise are patched into node status, which kubelets keep (Kubernetes docs, "Advertise Extended Resources
for a Node"). CPU and memory are the host's, not the instance type's. The apiserver gets the admission plugins the
local cluster enables (ExtendedResourceToleration, PodNodeSelector). On a cgroup v1 host kubelet 1.36 needs
`failCgroupV1: false`.

With the offline node image (`hack/kind_image.py`) kind's own CNI (kindnetd) is not there: the config disables
it, and `network` gives each node a ptp + host-local CNI configuration on the pod CIDR the controller manager gave
it, a route to every other node's pod CIDR through that node's address on kind's Docker network, and (as root) the
same routes on the host, so the host reaches pod IPs as kindnetd's routes let it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

import yaml

from hack.cluster.controlplane import EXTRA_ADMISSION_PLUGINS
from hack.cluster.node import cgroup_v1
from hack.cluster.nodepools import POOL_LABEL, load, node_labels

# Labels a kubelet sets itself (kind sets the hostname): not repeated in the registration labels.
KUBELET_LABELS = ("kubernetes.io/hostname", "kubernetes.io/os", "kubernetes.io/arch")
DEFAULT_POOLS = ("cpu", "eks-a100", "eks-trn1", "gke-tpu-v5e", "amd-mi300x")
CNI_CONF = "/etc/cni/net.d/10-frw-ptp.conflist"


def kind_pools() -> list[str]:
    names = os.environ.get("KIND_POOLS", ",".join(DEFAULT_POOLS))
    return [n.strip() for n in names.split(",") if n.strip()]


def _join_taints(taints: Any) -> str:
    registration = {
        "kind": "JoinConfiguration",
        "nodeRegistration": {"taints": [dict(t) for t in taints]},
    }
    return yaml.safe_dump(registration, sort_keys=False)


def cluster_config(*, offline: bool = False) -> dict[str, Any]:
    data = load()
    plugins = ",".join(("NodeRestriction", *EXTRA_ADMISSION_PLUGINS))
    apiserver = {
        "kind": "ClusterConfiguration",
        "apiServer": {"extraArgs": [{"name": "enable-admission-plugins", "value": plugins}]},
    }
    nodes: list[dict[str, Any]] = [
        {"role": "control-plane", "kubeadmConfigPatches": [yaml.safe_dump(apiserver, sort_keys=False)]}
    ]
    for name in kind_pools():
        pool = data.pool(name)
        labels = {
            k: v
            for k, v in node_labels(pool, f"{pool.name}-0", data.cluster_label_prefix).items()
            if k not in KUBELET_LABELS
        }
        worker: dict[str, Any] = {"role": "worker", "labels": labels}
        if pool.taints:
            worker["kubeadmConfigPatches"] = [_join_taints(pool.taints)]
        nodes.append(worker)
    config: dict[str, Any] = {"kind": "Cluster", "apiVersion": "kind.x-k8s.io/v1alpha4", "nodes": nodes}
    if cgroup_v1():
        kubelet = {"kind": "KubeletConfiguration", "failCgroupV1": False}
        config["kubeadmConfigPatches"] = [yaml.safe_dump(kubelet, sort_keys=False)]
    if offline:
        config["networking"] = {"disableDefaultCNI": True}
    return config


def _run(*args: str, stdin: str | None = None) -> str:
    return subprocess.run(args, input=stdin, capture_output=True, text=True, check=True).stdout


def cni_config(pod_cidr: str) -> dict[str, Any]:
    """ptp (a veth per pod, routed through the node) with host-local addresses from the node's pod CIDR."""
    return {
        "cniVersion": "1.0.0",
        "name": "frw-kind",
        "plugins": [
            {
                "type": "ptp",
                "ipMasq": False,
                "ipam": {"type": "host-local", "ranges": [[{"subnet": pod_cidr}]], "routes": [{"dst": "0.0.0.0/0"}]},
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def wire_network(kubectl: str, kubeconfig: str) -> int:
    """Write each node's CNI configuration and the routes between pod CIDRs; returns how many nodes."""
    raw = json.loads(_run(kubectl, "--kubeconfig", kubeconfig, "get", "nodes", "-o", "json"))
    nodes: dict[str, tuple[str, str]] = {}  # name -> (node address, pod CIDR)
    for item in raw["items"]:
        address = next(a["address"] for a in item["status"]["addresses"] if a["type"] == "InternalIP")
        cidr = item["spec"].get("podCIDR")
        if not cidr:
            raise SystemExit(f"node {item['metadata']['name']} has no podCIDR yet")
        nodes[item["metadata"]["name"]] = (address, cidr)
    for name, (_, cidr) in nodes.items():
        routes = "".join(
            f"ip route replace {other_cidr} via {other_ip}\n"
            for other, (other_ip, other_cidr) in nodes.items()
            if other != name
        )
        conf = json.dumps(cni_config(cidr), indent=1)
        _run("docker", "exec", "-i", name, "sh", "-ec", f"mkdir -p /etc/cni/net.d; cat > {CNI_CONF}", stdin=conf)
        if routes:
            _run("docker", "exec", name, "sh", "-ec", routes)
    if os.geteuid() == 0:
        for ip, cidr in nodes.values():
            _run("ip", "route", "replace", cidr, "via", ip)
    return len(nodes)


def patch_capacity() -> int:
    """Give every pool worker the extended resources of its pool; returns how many nodes were patched."""
    from kubernetes import client, config

    config.load_kube_config()
    core = client.CoreV1Api()
    pools = {p.name: p for p in load().pools}
    patched = 0
    for node in core.list_node(label_selector=POOL_LABEL).items:
        pool = pools[node.metadata.labels[POOL_LABEL]]
        if pool.gpu_resources:
            body = {"status": {"capacity": pool.gpu_resources, "allocatable": pool.gpu_resources}}
            core.patch_node_status(node.metadata.name, body)
            patched += 1
    return patched


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hack.cluster.kind", description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["config", "capacity", "network"])
    parser.add_argument("--offline", action="store_true", help="config: for the offline node image (no kindnetd)")
    parser.add_argument("--kubectl", default="kubectl", help="network: the kubectl to read nodes with")
    args = parser.parse_args(argv)
    if args.what == "config":
        yaml.safe_dump(cluster_config(offline=args.offline), sys.stdout, sort_keys=False)
    elif args.what == "network":
        count = wire_network(args.kubectl, os.environ["KUBECONFIG"])
        print(f"wired the pod network of {count} nodes", file=sys.stderr)
    else:
        print(f"patched the extended resources of {patch_capacity()} nodes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
