"""What tests and tools need of a cluster: kubectl, an API client, namespaces, webhook configurations, metrics.

`LocalCluster` starts the local control plane (`hack.cluster.controlplane`), the webhook process and the chart's
MutatingWebhookConfiguration pointing at it; `ExistingCluster` is `$KUBECONFIG`'s cluster (e.g. kind) where the
chart is installed already.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hack.cluster.chart import (
    ANNOTATION_PREFIX,
    APPLIED_ANNOTATION,
    WEBHOOK_NAMESPACE,
    localize_mwc,
    render_mwc,
    render_webhook_config,
)
from hack.cluster.controlplane import ControlPlane
from hack.cluster.nodepools import NodePool
from hack.cluster.processes import Binaries, HarnessError, Process, default_bin_dir, stop_together, wait_until
from hack.cluster.webhook import WebhookCerts, WebhookProcess, parse_reviews

MUTATION_READY_TIMEOUT = 30.0


class Cluster:
    """What the tests need of a cluster: kubectl, an API client, namespaces, webhook configs, metrics."""

    kubeconfig: Path
    kubectl_bin: str
    helm_bin: str
    run_dir: Path
    namespace: str = WEBHOOK_NAMESPACE  # the webhook's own namespace
    local: bool = False
    ca_pem: bytes | None = None

    def __init__(self) -> None:
        self._mwcs: list[str] = []
        self._api: Any = None

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        return subprocess.run(
            [self.kubectl_bin, *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )

    def api_client(self) -> Any:
        """One `kubernetes.client.ApiClient` per cluster, from its kubeconfig."""
        if self._api is None:
            from kubernetes import config

            self._api = config.new_client_from_config(config_file=str(self.kubeconfig), persist_config=False)
        return self._api

    def apply(self, obj: Mapping[str, Any]) -> None:
        """`kubectl apply --server-side` one object; raises with kubectl's message on failure."""
        result = self.kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=frw-e2e",
            "-f",
            "-",
            input=json.dumps(obj),
        )
        if result.returncode != 0:
            kind, name = obj.get("kind"), obj.get("metadata", {}).get("name")
            raise HarnessError(f"kubectl apply of {kind} {name} failed: {result.stderr.strip()}")

    def ensure_namespace(
        self, name: str, labels: Mapping[str, str] | None = None, annotations: Mapping[str, str] | None = None
    ) -> None:
        from kubernetes import client

        meta = {"name": name, "labels": dict(labels or {}), "annotations": dict(annotations or {})}
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}
        try:
            client.CoreV1Api(self.api_client()).create_namespace(body)
        except client.ApiException as exc:
            if exc.status != 409:  # 409: it exists already
                raise HarnessError(f"cannot create namespace {name}: {exc.status} {exc.body}") from None

    def close_api_client(self) -> None:
        if self._api is not None:
            with contextlib.suppress(Exception):
                self._api.close()
            self._api = None

    def add_webhook_configuration(
        self, *, release: str, base_url: str, values: Mapping[str, Any] | None = None, ca_pem: bytes | None = None
    ) -> dict[str, Any]:
        """Register another copy of the chart's MWC, rendered for `release` (its own name, its own namespace
        `release` excluded) with `values` on top, pointing at `base_url` (served with a certificate of `ca_pem`,
        default the main webhook's CA). `stop()` removes it again."""
        mwc = render_mwc(self.helm_bin, release=release, namespace=release, values=values, work_dir=self.run_dir)
        local = localize_mwc(mwc, base_url, ca_pem or self.ca_pem)
        self.apply(local)
        self._mwcs.append(local["metadata"]["name"])
        return local

    def remove_webhook_configuration(self, name: str) -> None:
        self.kubectl("delete", "mutatingwebhookconfiguration", name, "--ignore-not-found", "--wait=false")
        if name in self._mwcs:
            self._mwcs.remove(name)

    def start(self) -> Cluster:
        raise NotImplementedError

    def reviews(self) -> dict[str, float]:
        """The main webhook's `flyte_resources_webhook_reviews_total` by outcome."""
        raise NotImplementedError

    def log_files(self) -> dict[str, Path]:
        return {}

    def stop(self) -> None:
        for name in list(self._mwcs):
            with contextlib.suppress(Exception):
                self.remove_webhook_configuration(name)
        self.close_api_client()


class LocalCluster(Cluster):
    """Control plane + webhook + the chart's MWC pointing at it; `start()` returns once it mutates."""

    local = True

    def __init__(
        self,
        run_dir: Path,
        binaries: Binaries | None = None,
        *,
        webhook_config: Mapping[str, Any] | None = None,
        namespace: str = WEBHOOK_NAMESPACE,
        apiserver_args: Sequence[str] = (),
        pools: Sequence[NodePool] | None = None,
    ) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.binaries = binaries or Binaries.locate()
        self.apiserver_args = list(apiserver_args)
        self.pools = pools
        self.kubectl_bin = str(self.binaries.kubectl)
        self.helm_bin = str(self.binaries.helm)
        self.webhook_config = webhook_config
        self.namespace = namespace
        self.control_plane: ControlPlane | None = None
        self.webhook: WebhookProcess | None = None
        self.certs: WebhookCerts | None = None
        self.mwc: dict[str, Any] | None = None
        self._extra: list[WebhookProcess] = []

    def start(self) -> LocalCluster:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            chart_mwc = render_mwc(self.helm_bin, namespace=self.namespace)
            config = self.webhook_config
            if config is None:
                config = render_webhook_config(self.helm_bin, namespace=self.namespace)
            # Each part is assigned before it starts, so stop() finds it even when a signal interrupts start().
            self.control_plane = ControlPlane(
                self.run_dir, self.binaries, apiserver_args=self.apiserver_args, pools=self.pools
            )
            self.control_plane.start()
            self.kubeconfig = self.control_plane.kubeconfig
            self.certs = WebhookCerts.generate(self.run_dir / "webhook-certs")
            self.ca_pem = self.certs.ca_pem
            self.webhook = WebhookProcess("webhook", self.run_dir, self.kubeconfig, self.certs, config)
            self.webhook.start()
            self.mwc = localize_mwc(chart_mwc, self.webhook.url, self.ca_pem)
            self.apply(self.mwc)
            self.ensure_namespace(self.namespace)
            # The scheduler, controller-manager and kwok came up meanwhile; now the nodes must be Ready.
            self.control_plane.wait_ready()
            wait_for_mutation(self, alive=self.webhook.process.exited if self.webhook.process else None)
        except BaseException:
            self.stop()
            raise
        return self

    def start_extra_webhook(self, name: str, config: Mapping[str, Any], *, wait: bool = True) -> WebhookProcess:
        """Another webhook process (e.g. with another MIG strategy or preset), stopped with the cluster."""
        assert self.certs is not None and self.control_plane is not None
        hook = WebhookProcess(name, self.run_dir, self.kubeconfig, self.certs, config)
        self._extra.append(hook)
        return hook.start(wait=wait)

    def start_selected_webhook(
        self, name: str, config: Mapping[str, Any], labels: Mapping[str, str]
    ) -> tuple[WebhookProcess, dict[str, Any]]:
        """Another webhook process (`webhook-<name>`) behind its own copy of the chart's MWC (release
        `frw-e2e-<name>`) that selects only pods labelled `labels`; returns once a labelled dry-run pod in this
        webhook's own namespace (which the main MWC excludes) comes back mutated. Both go with `stop()`; remove
        the MWC earlier with `remove_webhook_configuration`."""
        process = self.start_extra_webhook(f"webhook-{name}", config)
        mwc = self.add_webhook_configuration(
            release=f"frw-e2e-{name}",
            base_url=process.url,
            values={"webhook": {"objectSelector": {"matchLabels": dict(labels)}}},
        )
        probe = probe_pod(f"frw-{name}-probe")
        probe["metadata"]["labels"] = dict(labels)
        alive = process.process.exited if process.process else None
        wait_for_mutation(self, namespace=self.namespace, pod=probe, alive=alive)
        return process, mwc

    def reviews(self) -> dict[str, float]:
        assert self.webhook is not None
        return parse_reviews(self.webhook.metrics_text())

    def log_files(self) -> dict[str, Path]:
        procs: list[Process] = list(self.control_plane.processes) if self.control_plane else []
        procs += [hook.process for hook in (self.webhook, *self._extra) if hook and hook.process]
        return {p.name: p.log_path for p in procs}

    def stop(self) -> None:
        """Stop everything this cluster started, by PID: webhooks first, then kube-apiserver, then etcd."""
        self.close_api_client()
        stop_together([hook.process for hook in (*self._extra, self.webhook) if hook is not None and hook.process])
        if self.control_plane is not None:
            self.control_plane.stop()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ExistingCluster(Cluster):
    """`$KUBECONFIG`'s cluster, with the webhook installed by helm into `namespace` (e.g. by kind)."""

    def __init__(self, run_dir: Path, *, namespace: str = WEBHOOK_NAMESPACE, kubeconfig: Path | None = None) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.namespace = namespace
        first = (os.environ.get("KUBECONFIG") or "").split(os.pathsep)[0]
        self.kubeconfig = kubeconfig or Path(first or Path.home() / ".kube" / "config")
        bins = default_bin_dir()
        self.kubectl_bin = str(bins / "kubectl") if (bins / "kubectl").exists() else "kubectl"
        self.helm_bin = str(bins / "helm") if (bins / "helm").exists() else "helm"

    def start(self) -> ExistingCluster:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        result = self.kubectl("get", "--raw", "/readyz")
        if result.returncode != 0:
            raise HarnessError(f"--existing-cluster: the cluster of {self.kubeconfig} is not ready: {result.stderr}")
        if not self._webhook_pods():
            raise HarnessError(
                f"--existing-cluster: no running webhook pod in namespace {self.namespace} "
                "(install the chart there first, or pass --webhook-namespace)"
            )
        wait_for_mutation(self)
        return self

    def _webhook_pods(self) -> list[str]:
        result = self.kubectl(
            "get", "pods", "-n", self.namespace, "-l", "app.kubernetes.io/name=flyte-resources-webhook",
            "--field-selector=status.phase=Running", "-o", "jsonpath={.items[*].metadata.name}",
        )  # fmt: skip
        return result.stdout.split() if result.returncode == 0 else []

    def reviews(self) -> dict[str, float]:
        """Summed over the webhook pods, read through the apiserver's pod proxy (probe port 8080)."""
        total: dict[str, float] = {}
        for pod in self._webhook_pods():
            raw = f"/api/v1/namespaces/{self.namespace}/pods/{pod}:8080/proxy/metrics"
            result = self.kubectl("get", "--raw", raw)
            if result.returncode != 0:
                raise HarnessError(f"cannot read {raw}: {result.stderr}")
            for outcome, value in parse_reviews(result.stdout).items():
                total[outcome] = total.get(outcome, 0.0) + value
        return total


def probe_pod(name: str = "frw-readiness-probe") -> dict[str, Any]:
    """A pod with one annotation of ours: the webhook must add the `applied` annotation to it."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": {ANNOTATION_PREFIX + "resources": "cpu=100m,mem=64Mi"}},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
    }


def dry_run_create(cluster: Cluster, namespace: str, pod: Mapping[str, Any]) -> dict[str, Any]:
    """`kubectl create --dry-run=server -o json`: the pod as it would be stored (or HarnessError)."""
    result = cluster.kubectl(
        "create", "--dry-run=server", "-n", namespace, "-o", "json", "-f", "-", input=json.dumps(pod)
    )
    if result.returncode != 0:
        raise HarnessError(result.stderr.strip())
    return dict(json.loads(result.stdout))


def wait_for_mutation(
    cluster: Cluster,
    *,
    namespace: str = "default",
    pod: Mapping[str, Any] | None = None,
    check: Callable[[dict[str, Any]], bool] | None = None,
    timeout: float = MUTATION_READY_TIMEOUT,
    alive: Callable[[], str | None] | None = None,
) -> dict[str, Any]:
    """Poll with server-side dry-run creates until the webhook's mutation shows: the apiserver learns webhook
    configurations through an informer, so the first creates after a registration may miss it."""
    the_pod = pod or probe_pod()
    the_check = check or (lambda out: APPLIED_ANNOTATION in (out["metadata"].get("annotations") or {}))

    def mutated() -> dict[str, Any] | None:
        out = dry_run_create(cluster, namespace, the_pod)
        return out if the_check(out) else None

    return wait_until(mutated, timeout=timeout, what="the webhook to mutate a dry-run pod", interval=0.3, alive=alive)
