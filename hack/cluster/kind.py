"""The node pools of `nodepools.yaml` on a kind cluster, for `make kind-test` (hack/kind-test.sh).

    python -m hack.cluster.kind config     # a kind cluster config: one worker per pool node, labelled and tainted
    python -m hack.cluster.kind capacity   # patch each worker's GPU/TPU/Neuron capacity into its node status

kind's workers are real kubelets: they register with the pool's labels and taints (kind's `labels` and kubeadm's
`nodeRegistration.taints`), and the extended resources a device plugin would advertise are patched into node
status, which kubelets keep (Kubernetes docs, "Advertise Extended Resources for a Node"). CPU and memory are the
host's, not the instance type's, so a pod asking for more memory than the host has stays Pending there. The
apiserver gets the admission plugins the local cluster enables (ExtendedResourceToleration, PodNodeSelector).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from hack.cluster.controlplane import EXTRA_ADMISSION_PLUGINS
from hack.cluster.nodepools import POOL_LABEL, load, node_labels

# Labels a kubelet sets itself (kind sets the hostname): not repeated in the registration labels.
KUBELET_LABELS = ("kubernetes.io/hostname", "kubernetes.io/os", "kubernetes.io/arch")


def _join_taints(taints: Any) -> str:
    registration = {
        "kind": "JoinConfiguration",
        "nodeRegistration": {"taints": [dict(t) for t in taints]},
    }
    return yaml.safe_dump(registration, sort_keys=False)


def cluster_config() -> dict[str, Any]:
    data = load()
    plugins = ",".join(("NodeRestriction", *EXTRA_ADMISSION_PLUGINS))
    apiserver = {
        "kind": "ClusterConfiguration",
        "apiServer": {"extraArgs": [{"name": "enable-admission-plugins", "value": plugins}]},
    }
    nodes: list[dict[str, Any]] = [
        {"role": "control-plane", "kubeadmConfigPatches": [yaml.safe_dump(apiserver, sort_keys=False)]}
    ]
    for pool in data.pools:
        for name in pool.node_names():
            labels = {
                k: v for k, v in node_labels(pool, name, data.cluster_label_prefix).items() if k not in KUBELET_LABELS
            }
            worker: dict[str, Any] = {"role": "worker", "labels": labels}
            if pool.taints:
                worker["kubeadmConfigPatches"] = [_join_taints(pool.taints)]
            nodes.append(worker)
    return {"kind": "Cluster", "apiVersion": "kind.x-k8s.io/v1alpha4", "nodes": nodes}


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
    parser.add_argument("what", choices=["config", "capacity"])
    args = parser.parse_args(argv)
    if args.what == "config":
        yaml.safe_dump(cluster_config(), sys.stdout, sort_keys=False)
    else:
        print(f"patched the extended resources of {patch_capacity()} nodes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
