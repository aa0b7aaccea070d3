"""The chart installed for real on the local cluster: `helm install --wait` with the chart's own values, its pods
created by the ReplicaSet controller, bound by kube-scheduler to the CPU nodes, and run by the stand-in kubelet
(`hack.cluster.kubelet`) in network namespaces with pod IPs (`hack.cluster.podnet`).

kube-apiserver listens on the pod network's gateway address and runs with `--enable-aggregator-routing`, so it
calls the webhook the way the chart's MutatingWebhookConfiguration says, through the Service: it picks a ready
endpoint of the Service (a pod IP) and verifies the certificate for `<service>.<namespace>.svc`. The MWC, the
Service, the RBAC and the certificates are the chart's and the webhook's own; nothing is swapped for a URL.
The ServiceAccount admission plugin is on, so pods get their projected token volume as in any cluster.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from hack.cluster.chart import CHART_DIR, RELEASE_NAME, WEBHOOK_NAMESPACE
from hack.cluster.clusters import Cluster
from hack.cluster.controlplane import ControlPlane
from hack.cluster.podnet import PodNetwork
from hack.cluster.processes import REPO_ROOT, Binaries, HarnessError, Process, http_get, wait_until
from hack.cluster.webhook import parse_reviews

CHART_POD_LABEL = ("app.kubernetes.io/name", "flyte-resources-webhook")
WEBHOOK_IMAGE = "ghcr.io/flyteorg/flyte-resources-webhook"  # values.yaml image.repository
KUBECTL_IMAGE = "registry.k8s.io/kubectl"  # values.yaml tests.image.repository
INSTALL_TIMEOUT = 180.0


class LiveCluster(Cluster):
    """The local control plane plus the stand-in kubelet; `install()` runs `helm install --wait` on it."""

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
        self.network: PodNetwork | None = None
        self.control_plane: ControlPlane | None = None
        self.kubelet: Process | None = None

    def start(self) -> LiveCluster:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.network = PodNetwork.create()
            self.control_plane = ControlPlane(
                self.run_dir,
                self.binaries,
                bind_address=self.network.gateway,
                service_account_admission=True,
                kwok_skip_pods_labelled=CHART_POD_LABEL,
                apiserver_args=["--enable-aggregator-routing=true"],
            )
            self.control_plane.start()
            self.kubeconfig = self.control_plane.kubeconfig
            self.kubelet = Process(
                "stand-in-kubelet",
                [
                    sys.executable, "-m", "hack.cluster.kubelet",
                    f"--kubeconfig={self.kubeconfig}",
                    f"--label-selector={CHART_POD_LABEL[0]}={CHART_POD_LABEL[1]}",
                    f"--run-id={self.network.run_id}",
                    f"--subnet={self.network.subnet}",
                    f"--apiserver-host={self.network.gateway}",
                    f"--apiserver-port={self.control_plane.api_port}",
                    f"--run-dir={self.run_dir / 'kubelet'}",
                    f"--image={WEBHOOK_IMAGE}={REPO_ROOT / '.venv' / 'bin' / 'flyte-resources-webhook'}",
                    f"--image={KUBECTL_IMAGE}={self.binaries.kubectl}",
                ],
                self.run_dir / "stand-in-kubelet.log",
            ).start()  # fmt: skip
            self.control_plane.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

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
        if not values:
            return []
        path = self.run_dir / f"values-{name}.yaml"
        path.write_text(yaml.safe_dump(dict(values)))
        return ["--values", str(path)]

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

    def log_files(self) -> dict[str, Path]:
        procs = list(self.control_plane.processes) if self.control_plane else []
        if self.kubelet is not None:
            procs.append(self.kubelet)
        files = {p.name: p.log_path for p in procs}
        for path in sorted((self.run_dir / "kubelet" / "logs").glob("*.log")):
            files[f"container {path.stem}"] = path
        return files

    def stop(self) -> None:
        """The kubelet first (it stops the containers and removes their namespaces), then the control plane,
        then the bridge."""
        self.close_api_client()
        if self.kubelet is not None:
            self.kubelet.stop(timeout=30)
        if self.control_plane is not None:
            self.control_plane.stop()
        if self.network is not None:
            with contextlib.suppress(Exception):
                self.network.destroy()

    def __enter__(self) -> LiveCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
