"""A local Kubernetes control plane that schedules: etcd, kube-apiserver, kube-scheduler, kube-controller-manager,
and KWOK standing in for the kubelets.

What is real: etcd, kube-apiserver (authentication, RBAC, the whole admission chain, webhooks included),
kube-scheduler (binds pods with the same filters and scores as in any cluster: resources, taints, node affinity)
and kube-controller-manager (node lifecycle: it lifts `node.kubernetes.io/not-ready` once a node reports Ready;
namespace deletion, garbage collection, service-account tokens, Jobs, ...). The scheduler and the
controller-manager authenticate with client certificates for `system:kube-scheduler` and
`system:kube-controller-manager`, so they get what the built-in RBAC grants them and nothing more; the
controller-manager runs each controller under its own service account (`--use-service-account-credentials`).

What is faked, by KWOK (`hack.cluster.kwok`): the kubelets. The nodes are Node objects the harness creates
(`hack.cluster.nodepools`); KWOK marks them Ready and keeps their heartbeat and lease, and moves each pod bound
to them to Running with a pod IP. No container, image, volume, device plugin or cgroup exists: capacity is
what the Node object says, and nothing enforces limits.

Every process listens on 127.0.0.1 only, on free ports, and is stopped by its PID (`ControlPlane.stop`).
"""

from __future__ import annotations

import json
import secrets
import ssl
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from hack.cluster import kwok
from hack.cluster.nodepools import NodePool, load_pools, node_objects
from hack.cluster.pki import ClusterCA, KeyPair, write_signing_key
from hack.cluster.processes import Binaries, HarnessError, Process, free_port, http_get, wait_until

APISERVER_READY_TIMEOUT = 60.0
ETCD_READY_TIMEOUT = 30.0
COMPONENT_READY_TIMEOUT = 60.0
NODES_READY_TIMEOUT = 60.0
POD_CIDR = "10.244.0.1/16"  # KWOK hands out pod IPs from here
SERVICE_CIDR = "10.0.0.0/24"
SCHEDULER_USER = "system:kube-scheduler"
CONTROLLER_MANAGER_USER = "system:kube-controller-manager"
# Admission plugins beyond the default set:
# * ExtendedResourceToleration, as GKE runs it: a pod that asks for an extended resource (nvidia.com/gpu,
#   google.com/tpu) tolerates the taint of that name, which is how GKE taints its GPU and TPU nodes;
# * PodNodeSelector: a namespace annotated `scheduler.alpha.kubernetes.io/node-selector` confines its pods to
#   matching nodes; `make run`/`demo` use it to show the examples on the eks preset's nodes only.
EXTRA_ADMISSION_PLUGINS = ("ExtendedResourceToleration", "PodNodeSelector")
NAMESPACE_NODE_SELECTOR = "scheduler.alpha.kubernetes.io/node-selector"


class ControlPlane:
    """etcd + kube-apiserver + kube-scheduler + kube-controller-manager + kwok, and the node pools as Nodes.

    `start()` returns once the apiserver answers and the other components are launched; `wait_ready()` returns
    once the scheduler is healthy and every node is Ready without the not-ready taint (so it can run in the
    background of whatever the caller starts meanwhile, e.g. the webhook)."""

    def __init__(
        self,
        run_dir: Path,
        binaries: Binaries,
        *,
        pools: Sequence[NodePool] | None = None,
        apiserver_args: Sequence[str] = (),
        bind_address: str = "127.0.0.1",
        api_port: int | None = None,
        service_cidr: str = SERVICE_CIDR,
        service_account_admission: bool = False,
    ) -> None:
        """`bind_address` and `api_port`: where kube-apiserver listens and every client reaches it (default: a
        free port on 127.0.0.1; the real node of `hack.cluster.node` puts it on the `kubernetes` Service's
        ClusterIP, port 443, so its pods reach it); `service_cidr`: the Service range;
        `service_account_admission`: keep the ServiceAccount admission plugin, so pods get their token volume
        (their ServiceAccount must exist first)."""
        self.run_dir = run_dir
        self.binaries = binaries
        self.pools = list(pools) if pools is not None else load_pools()
        self.apiserver_args = list(apiserver_args)
        self.bind_address = bind_address
        self.fixed_api_port = api_port
        self.service_cidr = service_cidr
        self.service_account_admission = service_account_admission
        self.token = secrets.token_hex(16)
        self.etcd: Process | None = None
        self.apiserver: Process | None = None
        self.scheduler: Process | None = None
        self.controller_manager: Process | None = None
        self.kwok: Process | None = None
        self.api_port = 0
        self.scheduler_port = 0
        self.kubeconfig = run_dir / "kubeconfig"
        self.pki_dir = run_dir / "pki"
        self.ca_file = self.pki_dir / "ca.crt"

    @property
    def server(self) -> str:
        return f"https://{self.bind_address}:{self.api_port}"

    @property
    def processes(self) -> list[Process]:
        """Every process, in the order they are stopped (dependants first, etcd last)."""
        order = (self.kwok, self.controller_manager, self.scheduler, self.apiserver, self.etcd)
        return [p for p in order if p is not None]

    def start(self) -> ControlPlane:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._write_pki()
            _start_with_retries(self._start_etcd, "etcd")
            _start_with_retries(self._start_apiserver, "kube-apiserver")
            self._write_kubeconfig(self.kubeconfig, "frw-admin", {"token": self.token})
            self._start_components()
            self._create_nodes()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self) -> None:
        """Block until the scheduler serves /healthz and every node is Ready and schedulable."""
        try:
            context = ssl._create_unverified_context()  # its self-signed serving certificate; loopback only
            wait_until(
                lambda: http_get(f"https://127.0.0.1:{self.scheduler_port}/healthz", context=context)[0] == 200,
                timeout=COMPONENT_READY_TIMEOUT,
                what="kube-scheduler /healthz",
                alive=self._any_exited,
            )
            wait_until(self._nodes_ready, timeout=NODES_READY_TIMEOUT, what="every node Ready", alive=self._any_exited)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for process in self.processes:
            process.stop()

    def _any_exited(self) -> str | None:
        for process in self.processes:
            if reason := process.exited():
                return reason
        return None

    # ----------------------------------------------------------------------------------------- credentials

    def _write_pki(self) -> None:
        ca = ClusterCA(self.pki_dir)
        self.ca = ca
        extra_ips = () if self.bind_address == "127.0.0.1" else (self.bind_address,)
        self.serving = ca.serving("kube-apiserver", extra_ips)
        self.clients: dict[str, KeyPair] = {
            "kube-scheduler": ca.issue("kube-scheduler", common_name=SCHEDULER_USER),
            "kube-controller-manager": ca.issue("kube-controller-manager", common_name=CONTROLLER_MANAGER_USER),
            "kwok": ca.issue("kwok", common_name=kwok.USER),
        }
        # The apiserver's client certificate for aggregated APIs; the scheduler and the controller-manager read
        # the matching CA from kube-system/extension-apiserver-authentication, as kubeadm sets it up.
        self.front_proxy = ca.issue("front-proxy-client", common_name="front-proxy-client")
        self.sa_key, self.sa_pub = write_signing_key(self.pki_dir / "sa.key")
        # The admin is a static token, as kubectl, helm and the Python client take it without files.
        self.tokens = self.pki_dir / "tokens.csv"
        self.tokens.write_text(f'{self.token},frw-admin,frw-admin-uid,"system:masters"\n')
        self.tokens.chmod(0o600)

    def _write_kubeconfig(self, path: Path, user: str, credentials: dict[str, str]) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "frw-local", "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)}}
            ],
            "users": [{"name": user, "user": credentials}],
            "contexts": [
                {"name": "frw-local", "context": {"cluster": "frw-local", "user": user, "namespace": "default"}}
            ],
            "current-context": "frw-local",
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path

    def _component_kubeconfig(self, component: str) -> Path:
        pair = self.clients[component]
        creds = {"client-certificate": str(pair.cert), "client-key": str(pair.key)}
        return self._write_kubeconfig(self.pki_dir / f"{component}.kubeconfig", component, creds)

    # ----------------------------------------------------------------------------------------- etcd, apiserver

    def _start_etcd(self, attempt: int) -> None:
        client, peer = free_port(), free_port()
        data = self.run_dir / f"etcd-data-{attempt}"
        self.etcd = Process(
            "etcd",
            [
                str(self.binaries.etcd),
                f"--data-dir={data}",
                "--name=node0",
                f"--listen-client-urls=http://127.0.0.1:{client}",
                f"--advertise-client-urls=http://127.0.0.1:{client}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=node0=http://127.0.0.1:{peer}",
                "--listen-metrics-urls=",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            self.run_dir / "etcd.log",
        )
        self.etcd.start()
        self.etcd_url = f"http://127.0.0.1:{client}"

        def healthy() -> bool:
            status, body = http_get(self.etcd_url + "/health")
            return status == 200 and json.loads(body).get("health") == "true"

        try:
            wait_until(healthy, timeout=ETCD_READY_TIMEOUT, what="etcd /health", alive=self.etcd.exited, interval=0.05)
        except HarnessError:
            self.etcd.stop()
            raise

    def _start_apiserver(self, attempt: int) -> None:
        self.api_port = self.fixed_api_port or free_port()
        self.apiserver = Process(
            "kube-apiserver",
            [
                str(self.binaries.kube_apiserver),
                f"--etcd-servers={self.etcd_url}",
                f"--etcd-prefix=/registry-{attempt}",
                f"--bind-address={self.bind_address}",
                f"--advertise-address={self.bind_address}",
                f"--secure-port={self.api_port}",
                f"--tls-cert-file={self.serving.cert}",
                f"--tls-private-key-file={self.serving.key}",
                f"--client-ca-file={self.ca_file}",
                f"--token-auth-file={self.tokens}",
                f"--requestheader-client-ca-file={self.ca_file}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={self.front_proxy.cert}",
                f"--proxy-client-key-file={self.front_proxy.key}",
                "--authorization-mode=Node,RBAC",
                f"--service-account-issuer=https://127.0.0.1:{self.api_port}",
                f"--service-account-key-file={self.sa_pub}",
                f"--service-account-signing-key-file={self.sa_key}",
                f"--service-cluster-ip-range={self.service_cidr}",
                # Pods need no `default` ServiceAccount to exist (no race with the controller that creates it).
                *(() if self.service_account_admission else ("--disable-admission-plugins=ServiceAccount",)),
                f"--enable-admission-plugins={','.join(EXTRA_ADMISSION_PLUGINS)}",
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true",
                "--enable-priority-and-fairness=false",
                "--v=1",
                *self.apiserver_args,
            ],
            self.run_dir / "kube-apiserver.log",
        )
        self.apiserver.start()

        context = ssl.create_default_context(cafile=str(self.ca_file))

        def ready() -> bool:
            status, body = http_get(self.server + "/readyz", context=context)
            return status == 200 and body.strip() == "ok"

        def gone() -> str | None:
            reason = self.apiserver.exited() if self.apiserver else "not started"
            if reason and "address already in use" in reason:
                return "address already in use: " + reason
            return reason

        try:
            wait_until(ready, timeout=APISERVER_READY_TIMEOUT, what="kube-apiserver /readyz", alive=gone, interval=0.1)
        except HarnessError:
            self.apiserver.stop()
            raise

    # ----------------------------------------------------------------------------------------- the rest

    def _start_components(self) -> None:
        """kube-scheduler, kube-controller-manager and kwok, launched together (they wait for what they need)."""
        from kubernetes import client

        api = self._admin_client()
        try:
            kwok.grant_rbac(client.RbacAuthorizationV1Api(api))
        finally:
            api.close()
        self.scheduler_port = free_port()
        self.scheduler = Process(
            "kube-scheduler",
            [
                *self._component_argv("kube-scheduler", self.binaries.kube_scheduler, self.scheduler_port),
                "--leader-elect=false",  # one instance
                # Client-side rate limits as large clusters set them: a burst of pods is bound without queueing.
                "--kube-api-qps=200",
                "--kube-api-burst=400",
            ],
            self.run_dir / "kube-scheduler.log",
        ).start()
        self.controller_manager = Process(
            "kube-controller-manager",
            [
                *self._component_argv("kube-controller-manager", self.binaries.kube_controller_manager, free_port()),
                "--leader-elect=false",
                "--use-service-account-credentials",
                f"--service-account-private-key-file={self.sa_key}",
                f"--root-ca-file={self.ca_file}",
                f"--service-cluster-ip-range={self.service_cidr}",
                # Only what a cloud provider would run is missing (routes, cloud node lifecycle).
                "--controllers=*",
                "--kube-api-qps=200",
                "--kube-api-burst=400",
            ],
            self.run_dir / "kube-controller-manager.log",
        ).start()
        config = kwok.write_config(self.binaries.kwok_stages, self.run_dir / "kwok.yaml")
        kwok_kc = self._component_kubeconfig("kwok")
        self.kwok = Process("kwok", kwok.argv(self.binaries.kwok, kwok_kc, config, POD_CIDR), self.run_dir / "kwok.log")
        self.kwok.start()

    def _component_argv(self, component: str, binary: Path, port: int) -> list[str]:
        """What kube-scheduler and kube-controller-manager share: their own credentials (also for delegated
        authentication and authorization of their HTTPS endpoint), loopback only, a self-signed serving cert."""
        kubeconfig = self._component_kubeconfig(component)
        return [
            str(binary),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.run_dir / (component + '-certs')}",
            "--v=1",
        ]

    def _admin_client(self) -> Any:
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig), persist_config=False)

    def _create_nodes(self) -> None:
        from kubernetes import client

        api = self._admin_client()
        try:
            core = client.CoreV1Api(api)
            for node in node_objects(self.pools):
                core.create_node(node)
        finally:
            api.close()

    def _nodes_ready(self) -> bool:
        from kubernetes import client

        api = self._admin_client()
        try:
            nodes = client.CoreV1Api(api).list_node().items
        finally:
            api.close()
        expected = {n["metadata"]["name"] for n in node_objects(self.pools)}
        ready = set()
        for node in nodes:
            conditions = {c.type: c.status for c in node.status.conditions or []}
            taints = {t.key for t in node.spec.taints or []}
            if conditions.get("Ready") == "True" and "node.kubernetes.io/not-ready" not in taints:
                ready.add(node.metadata.name)
        return expected <= ready


def _start_with_retries(start: Callable[[int], None], what: str, attempts: int = 3) -> None:
    for attempt in range(1, attempts + 1):
        try:
            start(attempt)
            return
        except HarnessError as exc:
            # A port picked by free_port() can be taken before the child binds it: retry on new ports.
            if attempt == attempts or "address already in use" not in str(exc):
                raise
            print(f"{what}: port clash, retrying ({exc})", file=sys.stderr)
