"""The chart installed for real on the local cluster: `helm install --wait` with the chart's own values, its pods
created by the ReplicaSet controller, bound by kube-scheduler to the real node (`hack.cluster.node`: kubelet +
containerd + runc + CNI) and run there from the image built by `hack.images`.

kube-apiserver runs with `--enable-aggregator-routing`, so it calls the webhook the way the chart's
MutatingWebhookConfiguration says, through the Service: it picks a ready endpoint of the Service (a pod IP on the
node's bridge) and verifies the certificate for `<service>.<namespace>.svc`. The MWC, the Service, the RBAC and
the certificates are the chart's and the webhook's own; nothing is swapped for a URL. The ServiceAccount
admission plugin is on, so pods get their projected token volume as in any cluster.

The chart is installed with its default values. The harness creates the release namespace first, annotated for
the PodNodeSelector admission plugin (`scheduler.alpha.kubernetes.io/node-selector: e2e.flyte.org/real-node=true`),
so every pod there (the Deployment's, `helm test`'s) goes to the real node, as a platform team confines system
pods to their nodes; the other namespaces' pods go to the KWOK nodes.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from hack import images
from hack.cluster.chart import CHART_DIR, RELEASE_NAME, WEBHOOK_NAMESPACE
from hack.cluster.clusters import Cluster
from hack.cluster.controlplane import NAMESPACE_NODE_SELECTOR, ControlPlane
from hack.cluster.node import REAL_NODE_LABEL, NodeNetwork, RealNode, remove_leftovers, require_root
from hack.cluster.processes import Binaries, HarnessError, http_get, wait_until
from hack.cluster.webhook import parse_reviews

CHART_POD_LABEL = ("app.kubernetes.io/name", "flyte-resources-webhook")
INSTALL_TIMEOUT = 180.0


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`, maps merged key by key (as helm merges values files)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


class ChartRelease:
    """A helm release of the chart on a cluster (`LiveCluster`, or a kind cluster: `hack.cluster.kind_live`): helm
    install/upgrade/uninstall, the Deployment's pods, their review counters. `base_values` go under every install
    and upgrade (e.g. the image a kind cluster had loaded); the local cluster has none."""

    kubeconfig: Path
    kubectl_bin: str
    helm_bin: str
    run_dir: Path
    release: str
    namespace: str
    _api: Any
    base_values: Mapping[str, Any] = {}
    # How much longer than on the local node a mounted ConfigMap takes to reach the pods and a rollout to finish.
    pace = 1.0

    def api_client(self) -> Any:
        """As `Cluster.api_client`, with a connection pool for the drills' concurrent creates."""
        if self._api is None:
            from kubernetes import client, config

            configuration = client.Configuration()
            configuration.connection_pool_maxsize = 32
            self._api = config.new_client_from_config(
                config_file=str(self.kubeconfig), persist_config=False, client_configuration=configuration
            )
        return self._api

    # --------------------------------------------------------------------------------------------- helm

    def helm(self, *args: str, timeout: float = INSTALL_TIMEOUT + 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.helm_bin, "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def _values_args(self, values: Mapping[str, Any] | None, name: str) -> list[str]:
        merged = _merge(self.base_values, values or {})
        if not merged:
            return []
        path = self.run_dir / f"values-{name}.yaml"
        path.write_text(yaml.safe_dump(merged))
        return ["--values", str(path)]

    def upgrade_args(self, values: Mapping[str, Any] | None = None) -> list[str]:
        """The arguments after `helm upgrade` that `upgrade()` passes, without `--wait`."""
        return [self.release, str(CHART_DIR), "--namespace", self.namespace, "--reset-values",
                *self._values_args(values, "upgrade")]  # fmt: skip

    def install(self, values: Mapping[str, Any] | None = None, *, extra: Sequence[str] = ()) -> float:
        """`helm install --wait` of the chart; returns the seconds it took."""
        return self._helm_release("install", values, extra)

    def upgrade(self, values: Mapping[str, Any] | None = None, *, extra: Sequence[str] = ()) -> float:
        """`helm upgrade --wait` (values on top of the chart's defaults, not of the last release's)."""
        return self._helm_release("upgrade", values, ["--reset-values", *extra])

    def _helm_release(self, verb: str, values: Mapping[str, Any] | None, extra: Sequence[str]) -> float:
        start = time.monotonic()
        result = self.helm(
            verb, self.release, str(CHART_DIR), "--namespace", self.namespace, "--create-namespace",
            "--wait", f"--timeout={int(INSTALL_TIMEOUT)}s", *self._values_args(values, verb), *extra,
        )  # fmt: skip
        if result.returncode != 0:
            raise HarnessError(f"helm {verb} failed ({result.returncode}): {result.stderr.strip()}")
        return time.monotonic() - start

    def uninstall(self) -> float:
        start = time.monotonic()
        result = self.helm("uninstall", self.release, "--namespace", self.namespace, "--wait", "--timeout=120s")
        if result.returncode != 0:
            raise HarnessError(f"helm uninstall failed: {result.stderr.strip()}")
        return time.monotonic() - start

    # --------------------------------------------------------------------------------------------- pods

    def webhook_pods(self, *, ready_only: bool = True) -> list[dict[str, Any]]:
        """The chart's Deployment pods (not the `helm test` pod), as dicts."""
        from kubernetes import client

        selector = f"{CHART_POD_LABEL[0]}={CHART_POD_LABEL[1]},app.kubernetes.io/instance={self.release}"
        items = client.CoreV1Api(self.api_client()).list_namespaced_pod(self.namespace, label_selector=selector)
        pods = []
        for item in items.items:
            pod = self.api_client().sanitize_for_serialization(item)
            if pod["metadata"]["name"].endswith("-test"):
                continue
            conditions = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions") or []}
            if ready_only and (conditions.get("Ready") != "True" or pod["metadata"].get("deletionTimestamp")):
                continue
            pods.append(pod)
        return pods

    def reviews(self) -> dict[str, float]:
        """`flyte_resources_webhook_reviews_total` by outcome, summed over the ready webhook pods (read from
        each pod IP's probe port, as a Prometheus in the cluster would)."""
        total: dict[str, float] = {}
        for pod in self.webhook_pods():
            status, body = http_get(f"http://{pod['status']['podIP']}:8080/metrics")
            if status != 200:
                raise HarnessError(f"GET /metrics of {pod['metadata']['name']}: {status}")
            for outcome, value in parse_reviews(body).items():
                total[outcome] = total.get(outcome, 0.0) + value
        return total

    def wait_default_service_account(self, namespace: str, timeout: float = 30) -> None:
        """With ServiceAccount admission on, a pod is refused until its namespace's `default` ServiceAccount
        exists (the controller-manager creates it a moment after the namespace)."""
        wait_until(
            lambda: self.kubectl("get", "serviceaccount", "default", "-n", namespace).returncode == 0,
            timeout=timeout, what=f"ServiceAccount {namespace}/default",
        )  # fmt: skip

    def container_id(self, pod: dict[str, Any]) -> str:
        return str(pod["status"]["containerStatuses"][0]["containerID"])


class LiveCluster(ChartRelease, Cluster):
    """The local control plane plus a real node; `install()` runs `helm install --wait` on it."""

    local = True

    def __init__(
        self, run_dir: Path, binaries: Binaries | None = None, *, release: str = RELEASE_NAME,
        namespace: str = WEBHOOK_NAMESPACE,
    ) -> None:  # fmt: skip
        super().__init__()
        self.run_dir = run_dir
        self.binaries = binaries or Binaries.locate()
        self.kubectl_bin = str(self.binaries.kubectl)
        self.helm_bin = str(self.binaries.helm)
        self.release = release
        self.namespace = namespace
        self.network: NodeNetwork | None = None
        self.control_plane: ControlPlane | None = None
        self.node: RealNode | None = None
        self.timings: dict[str, float] = {}

    def start(self) -> LiveCluster:
        require_root()
        tarballs = images.tarballs()  # before anything starts: fails saying `make images`
        self.run_dir.mkdir(parents=True, exist_ok=True)
        remove_leftovers()
        start = time.monotonic()
        try:
            run_id = RealNode.new_run_id()
            self.network = NodeNetwork.create(run_id)
            self.control_plane = ControlPlane(
                self.run_dir,
                self.binaries,
                bind_address=self.network.api_address,
                api_port=443,
                service_cidr=str(self.network.service_subnet),
                service_account_admission=True,
                apiserver_args=["--enable-aggregator-routing=true"],
            )
            self.node = RealNode(self.run_dir / "node", self.binaries, self.network, name=f"frw-node-{run_id}")
            importing = self.node.start_runtime(tarballs)
            self.control_plane.start()
            self.kubeconfig = self.control_plane.kubeconfig
            self.timings["control plane"] = time.monotonic() - start
            credentials = self.control_plane.ca.issue(
                "kubelet", common_name=f"system:node:{self.node.name}", organizations=("system:nodes",)
            )
            self.node.start_kubelet(importing, self.control_plane.server, self.control_plane.ca_file,
                                    credentials.cert, credentials.key)  # fmt: skip
            self.timings["images imported"] = time.monotonic() - start
            self.control_plane.wait_ready()
            from kubernetes import client

            self.node.wait_ready(client.CoreV1Api(self.api_client()))
            self.timings["node Ready"] = time.monotonic() - start
            self.ensure_namespace(self.namespace, annotations={NAMESPACE_NODE_SELECTOR: f"{REAL_NODE_LABEL}=true"})
        except BaseException:
            self.stop()
            raise
        return self

    def log_files(self) -> dict[str, Path]:
        procs = list(self.control_plane.processes) if self.control_plane else []
        if self.node is not None:
            procs += [p for p in (self.node.containerd, self.node.kubelet) if p is not None]
        files = {p.name: p.log_path for p in procs}
        if self.node is not None:
            for path in sorted(self.node.pod_logs.glob("*/*/*.log")):
                files[f"container {path.parent.parent.name}/{path.parent.name}"] = path
        return files

    def kill_container(self, pod: dict[str, Any], sig: str = "SIGKILL") -> None:
        """Signal the pod's webhook container through containerd (SIGKILL: as the kernel's OOM killer would)."""
        assert self.node is not None
        self.node.kill_container(self.container_id(pod), sig)

    def container_pid(self, pod: dict[str, Any]) -> int:
        """The host PID of the pod's webhook process (from the runtime, `crictl inspect`)."""
        assert self.node is not None
        info = json.loads(self.node.crictl("inspect", self.container_id(pod).removeprefix("containerd://")).stdout)
        return int(info["info"]["pid"])

    def exec_in(self, pod: dict[str, Any], *argv: str) -> subprocess.CompletedProcess[str]:
        """`crictl exec` in the pod's webhook container (as its own user, under its own restrictions)."""
        assert self.node is not None
        cid = self.container_id(pod).removeprefix("containerd://")
        return self.node.crictl("exec", cid, *argv, check=False)

    def stop(self) -> None:
        """The node first (kubelet, then its pods and containerd), then the control plane, then the bridge."""
        self.close_api_client()
        if self.node is not None:
            try:
                self.node.stop()
            except Exception as exc:  # the control plane still has to stop
                print(f"stopping the real node: {exc}")
        if self.control_plane is not None:
            self.control_plane.stop()
        if self.network is not None:
            self.network.destroy()

    def __enter__(self) -> LiveCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
