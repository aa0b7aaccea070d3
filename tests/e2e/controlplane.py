"""A local Kubernetes control plane (etcd + kube-apiserver, envtest-style) and the webhook as a subprocess.

Used by the e2e session fixtures (`tests/e2e/conftest.py`) and by `make run` / `make demo`
(`hack/local_cluster.py`). There is no kubelet, scheduler or controller-manager: pods are admitted, mutated
and stored, then stay Pending, which is all an admission webhook needs. Everything listens on 127.0.0.1 only,
every wait is bounded, and every process is stopped by its PID (`LocalCluster.stop`, also on failure).

The MutatingWebhookConfiguration is rendered from the project's chart with `helm template` and only its
`clientConfig.service` is swapped for `url: https://127.0.0.1:<port><service.path>` plus `caBundle`.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import os
import re
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "charts" / "flyte-resources-webhook"
MWC_TEMPLATE = "templates/mutatingwebhookconfiguration.yaml"
CONFIGMAP_TEMPLATE = "templates/configmap.yaml"
RELEASE_NAME = "flyte-resources-webhook"
# The namespace the chart is rendered for: the webhook's own namespace, which it must not intercept.
WEBHOOK_NAMESPACE = "flyte-resources-webhook"
WEBHOOK_PATH = "/flyte-resources"
ANNOTATION_PREFIX = "resources.flyte.org/"
APPLIED_ANNOTATION = ANNOTATION_PREFIX + "applied"
K8S_VERSION = os.environ.get("K8S_VERSION", "1.36.3")
REVIEWS_METRIC = "flyte_resources_webhook_reviews_total"

APISERVER_READY_TIMEOUT = 60.0
ETCD_READY_TIMEOUT = 30.0
WEBHOOK_READY_TIMEOUT = 60.0
MUTATION_READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

T = TypeVar("T")


class HarnessError(RuntimeError):
    """The control plane or the webhook could not be started; the message says why and where the logs are."""


class MissingBinaries(HarnessError):
    """kube-apiserver, etcd, kubectl or helm is missing from the binary cache."""


# --------------------------------------------------------------------------------------------- binaries


def default_bin_dir() -> Path:
    """`$FRW_BIN_DIR`, else the versioned cache `hack/control-plane.sh` fills."""
    if os.environ.get("FRW_BIN_DIR"):
        return Path(os.environ["FRW_BIN_DIR"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "flyte-resources-webhook" / f"k8s-v{K8S_VERSION}"


@dataclass(frozen=True)
class Binaries:
    directory: Path
    etcd: Path
    kube_apiserver: Path
    kubectl: Path
    helm: Path

    @classmethod
    def locate(cls, directory: Path | None = None) -> Binaries:
        directory = directory or default_bin_dir()
        paths = {name: directory / name for name in ("etcd", "kube-apiserver", "kubectl", "helm")}
        missing = [name for name, path in paths.items() if not os.access(path, os.X_OK)]
        if missing:
            raise MissingBinaries(
                f"missing {', '.join(missing)} in {directory}: run `make control-plane` to build/fetch them "
                "(or point FRW_BIN_DIR at a directory holding etcd, kube-apiserver, kubectl and helm)"
            )
        return cls(directory, paths["etcd"], paths["kube-apiserver"], paths["kubectl"], paths["helm"])


# --------------------------------------------------------------------------------------------- helpers


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago (callers retry on the rare clash)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.2,
    alive: Callable[[], str | None] | None = None,
) -> T:
    """Call `probe` until it returns something truthy; `alive` says why to give up early."""
    deadline = time.monotonic() + timeout
    last_error: str = "no attempt finished"
    while True:
        if alive is not None and (reason := alive()):
            raise HarnessError(f"{what}: {reason}")
        try:
            result = probe()
        except Exception as exc:  # the thing we wait for is not there yet: remember why
            last_error = f"{type(exc).__name__}: {exc}"
        else:
            if result:
                return result
            last_error = f"not yet (last result: {result!r})"
        if time.monotonic() >= deadline:
            raise HarnessError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last_error}")
        time.sleep(interval)


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])


def _die_with_parent() -> None:
    """Runs in the child before exec: on Linux, get SIGKILL when the parent dies without stopping it (itself
    SIGKILLed, e.g. by a CI timeout), so no etcd or apiserver outlives its run. SIGKILL, not SIGTERM: an apiserver
    whose etcd is gone hangs in graceful shutdown. Linux ties this to the thread that started the child: start
    processes from a thread that lives as long as they should (the main thread, as pytest fixtures do)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


class Process:
    """One child process with its output in a log file; stopped by its PID (SIGTERM, then SIGKILL)."""

    def __init__(self, name: str, argv: list[str], log_path: Path, *, env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def start(self) -> Process:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"$ {' '.join(self.argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=REPO_ROOT,
                # Ctrl-C in the terminal reaches only us; we stop the children in order.
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        return self

    def exited(self) -> str | None:
        """Why the process is gone (None while it runs), with the end of its log."""
        if self.popen is None:
            return f"{self.name} was never started"
        code = self.popen.poll()
        if code is None:
            return None
        return f"{self.name} (pid {self.popen.pid}) exited with code {code}; end of {self.log_path}:\n" + tail(
            self.log_path
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout)


def _http_get(url: str, *, timeout: float = 2.0, context: ssl.SSLContext | None = None) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return int(response.status), response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode(errors="replace")


# --------------------------------------------------------------------------------------------- control plane


class ControlPlane:
    """etcd + kube-apiserver on free loopback ports, a static admin token and a kubeconfig."""

    def __init__(self, run_dir: Path, binaries: Binaries) -> None:
        self.run_dir = run_dir
        self.binaries = binaries
        self.token = secrets.token_hex(16)
        self.etcd: Process | None = None
        self.apiserver: Process | None = None
        self.api_port = 0
        self.kubeconfig = run_dir / "kubeconfig"
        self.ca_file = run_dir / "apiserver-certs" / "apiserver.crt"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def processes(self) -> list[Process]:
        return [p for p in (self.apiserver, self.etcd) if p is not None]

    def start(self) -> ControlPlane:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start_with_retries(self._start_etcd, "etcd")
            self._write_auth_files()
            self._start_with_retries(self._start_apiserver, "kube-apiserver")
            self._write_kubeconfig()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for process in self.processes:
            process.stop()

    @staticmethod
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
            status, body = _http_get(self.etcd_url + "/health")
            return status == 200 and json.loads(body).get("health") == "true"

        try:
            wait_until(healthy, timeout=ETCD_READY_TIMEOUT, what="etcd /health", alive=self.etcd.exited)
        except HarnessError:
            self.etcd.stop()
            raise

    def _write_auth_files(self) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        # Service-account token signing key: the apiserver insists on one even though nothing here uses it.
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.sa_key = self.run_dir / "sa.key"
        self.sa_key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        self.tokens = self.run_dir / "tokens.csv"
        self.tokens.write_text(f'{self.token},e2e-admin,e2e-admin-uid,"system:masters"\n')
        self.tokens.chmod(0o600)

    def _start_apiserver(self, attempt: int) -> None:
        self.api_port = free_port()
        cert_dir = self.ca_file.parent
        # The apiserver writes a self-signed serving certificate (SANs: 127.0.0.1, localhost) and its CA into
        # --cert-dir; apiserver.crt holds both, so it doubles as the CA file for clients.
        self.apiserver = Process(
            "kube-apiserver",
            [
                str(self.binaries.kube_apiserver),
                f"--etcd-servers={self.etcd_url}",
                f"--etcd-prefix=/registry-{attempt}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.api_port}",
                f"--cert-dir={cert_dir}",
                f"--token-auth-file={self.tokens}",
                "--authorization-mode=RBAC",
                f"--service-account-issuer=https://127.0.0.1:{self.api_port}",
                f"--service-account-key-file={self.sa_key}",
                f"--service-account-signing-key-file={self.sa_key}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--disable-admission-plugins=ServiceAccount",
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true",
                "--enable-priority-and-fairness=false",
                "--v=1",
            ],
            self.run_dir / "kube-apiserver.log",
        )
        self.apiserver.start()

        def ready() -> bool:
            if not self.ca_file.exists():
                return False
            context = ssl.create_default_context(cafile=str(self.ca_file))
            status, body = _http_get(self.server + "/readyz", context=context)
            return status == 200 and body.strip() == "ok"

        def gone() -> str | None:
            reason = self.apiserver.exited() if self.apiserver else "not started"
            if reason and "address already in use" in reason:
                return "address already in use: " + reason
            return reason

        try:
            wait_until(ready, timeout=APISERVER_READY_TIMEOUT, what="kube-apiserver /readyz", alive=gone)
        except HarnessError:
            self.apiserver.stop()
            raise

    def _write_kubeconfig(self) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "frw-local",
                    "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)},
                }
            ],
            "users": [{"name": "e2e-admin", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "frw-local",
                    "context": {"cluster": "frw-local", "user": "e2e-admin", "namespace": "default"},
                }
            ],
            "current-context": "frw-local",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config, sort_keys=False))
        self.kubeconfig.chmod(0o600)


# --------------------------------------------------------------------------------------------- webhook


@dataclass
class WebhookCerts:
    ca_pem: bytes
    cert_file: Path
    key_file: Path
    ca_file: Path

    @classmethod
    def generate(cls, directory: Path) -> WebhookCerts:
        """CA + serving certificate with IP SAN 127.0.0.1, from the product's own certificate module."""
        from webhook.operator.certs import generate_bundle, write_bundle

        directory.mkdir(parents=True, exist_ok=True)
        bundle = generate_bundle(ip_addresses=["127.0.0.1"], dns_names=["localhost"])
        cert_file, key_file, ca_file = write_bundle(bundle, directory)
        return cls(bundle.ca_pem, Path(cert_file), Path(key_file), Path(ca_file))


class WebhookProcess:
    """`flyte-resources-webhook run` on 127.0.0.1; `/readyz` and `/metrics` on the probe port."""

    def __init__(
        self,
        name: str,
        run_dir: Path,
        kubeconfig: Path,
        certs: WebhookCerts,
        config: Mapping[str, Any] | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.name = name
        self.run_dir = run_dir
        self.kubeconfig = kubeconfig
        self.certs = certs
        self.config = dict(config or {})
        self.extra_args = extra_args or []
        self.port = 0
        self.probe_port = 0
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def probe_url(self) -> str:
        return f"http://127.0.0.1:{self.probe_port}"

    def start(self) -> WebhookProcess:
        config_file = self.run_dir / f"{self.name}.config.yaml"
        config_file.write_text(yaml.safe_dump(self.config or {"on-invalid": "reject"}))
        for attempt in range(1, 4):
            self.port, self.probe_port = free_port(), free_port()
            argv = [
                sys.executable,
                "-m",
                "webhook.cli",
                "run",
                "--addr=127.0.0.1",
                f"--port={self.port}",
                "--probe-addr=127.0.0.1",
                f"--probe-port={self.probe_port}",
                f"--cert-file={self.certs.cert_file}",
                f"--key-file={self.certs.key_file}",
                f"--ca-file={self.certs.ca_file}",
                f"--config={config_file}",
                "--log-format=plain",
                *self.extra_args,
            ]
            env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PYTHONUNBUFFERED": "1"}
            env = {k: v for k, v in env.items() if not k.startswith("FRW_") or k == "FRW_BIN_DIR"}
            self.process = Process(self.name, argv, self.run_dir / f"{self.name}.log", env=env)
            self.process.start()
            try:
                wait_until(
                    lambda: _http_get(self.probe_url + "/readyz")[0] == 200,
                    timeout=WEBHOOK_READY_TIMEOUT,
                    what=f"{self.name} /readyz on {self.probe_url}",
                    alive=self.process.exited,
                )
                return self
            except HarnessError as exc:
                self.process.stop()
                if attempt == 3 or "address already in use" not in str(exc).lower():
                    raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def metrics_text(self) -> str:
        status, body = _http_get(self.probe_url + "/metrics")
        if status != 200:
            raise HarnessError(f"{self.name}: GET /metrics returned {status}: {body[:500]}")
        return body


def parse_reviews(metrics_text: str) -> dict[str, float]:
    """`flyte_resources_webhook_reviews_total` by outcome from Prometheus text."""
    counts: dict[str, float] = {}
    pattern = re.compile(r"^" + REVIEWS_METRIC + r"\{([^}]*)\}\s+(\S+)", re.MULTILINE)
    for labels, value in pattern.findall(metrics_text):
        outcome = re.search(r'outcome="([^"]*)"', labels)
        if outcome:
            counts[outcome.group(1)] = counts.get(outcome.group(1), 0.0) + float(value)
    return counts


# --------------------------------------------------------------------------------------------- the chart


def render_chart(
    helm: Path | str,
    template: str,
    *,
    release: str = RELEASE_NAME,
    namespace: str = WEBHOOK_NAMESPACE,
    values: Mapping[str, Any] | None = None,
    work_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """The documents `helm template --show-only <template>` renders for that release and namespace, with the
    chart's defaults or `values` on top (e.g. another failurePolicy for a test-only copy)."""
    if not (CHART_DIR / template).exists():
        raise HarnessError(f"the chart's {template} is missing under {CHART_DIR}")
    argv = [str(helm), "template", release, str(CHART_DIR), "--namespace", namespace, "--show-only", template]
    if values:
        if work_dir is None:
            raise ValueError("values need a work_dir to write the values file into")
        values_file = work_dir / f"values-{release}-{Path(template).stem}.yaml"
        values_file.write_text(yaml.safe_dump(dict(values)))
        argv += ["--values", str(values_file)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise HarnessError(f"`{' '.join(argv)}` failed ({result.returncode}):\n{result.stderr}")
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def render_mwc(helm: Path | str, **kwargs: Any) -> dict[str, Any]:
    """The chart's MutatingWebhookConfiguration (see `render_chart` for the arguments)."""
    docs = render_chart(helm, MWC_TEMPLATE, **kwargs)
    mwcs = [d for d in docs if d.get("kind") == "MutatingWebhookConfiguration"]
    if len(mwcs) != 1:
        raise HarnessError(f"expected one MutatingWebhookConfiguration from the chart, got {len(mwcs)}")
    return mwcs[0]


def render_webhook_config(helm: Path | str, **kwargs: Any) -> dict[str, Any]:
    """The webhook's config file as the chart's ConfigMap ships it (`config.yaml`)."""
    docs = render_chart(helm, CONFIGMAP_TEMPLATE, **kwargs)
    for doc in docs:
        if doc.get("kind") == "ConfigMap" and "config.yaml" in (doc.get("data") or {}):
            return dict(yaml.safe_load(doc["data"]["config.yaml"]) or {})
    raise HarnessError(f"the chart's {CONFIGMAP_TEMPLATE} has no ConfigMap with a config.yaml key")


def localize_mwc(mwc: Mapping[str, Any], base_url: str, ca_pem: bytes | None) -> dict[str, Any]:
    """Swap each webhook's `clientConfig.service` for `url` (same path) + `caBundle`; nothing else changes."""
    local = copy.deepcopy(dict(mwc))
    for hook in local.get("webhooks", []):
        client = hook.setdefault("clientConfig", {})
        service = client.pop("service", None) or {}
        client.pop("url", None)
        client["url"] = base_url + (service.get("path") or WEBHOOK_PATH)
        if ca_pem is not None:
            client["caBundle"] = base64.b64encode(ca_pem).decode()
    return local


def strip_server_fields(obj: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    for key in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"):
        obj.get("metadata", {}).pop(key, None)
    return obj


# --------------------------------------------------------------------------------------------- clusters


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

    def ensure_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> None:
        from kubernetes import client

        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": dict(labels or {})}}
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
        self, *, release: str, base_url: str, values: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Register another copy of the chart's MWC, rendered for `release` (its own name, its own namespace
        `release` excluded) with `values` on top, pointing at `base_url`. `stop()` removes it again."""
        mwc = render_mwc(self.helm_bin, release=release, namespace=release, values=values, work_dir=self.run_dir)
        local = localize_mwc(mwc, base_url, self.ca_pem)
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
    ) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.binaries = binaries or Binaries.locate()
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
            self.control_plane = ControlPlane(self.run_dir, self.binaries)
            self.control_plane.start()
            self.kubeconfig = self.control_plane.kubeconfig
            self.certs = WebhookCerts.generate(self.run_dir / "webhook-certs")
            self.ca_pem = self.certs.ca_pem
            self.webhook = WebhookProcess("webhook", self.run_dir, self.kubeconfig, self.certs, config)
            self.webhook.start()
            self.mwc = localize_mwc(chart_mwc, self.webhook.url, self.ca_pem)
            self.apply(self.mwc)
            self.ensure_namespace(self.namespace)
            wait_for_mutation(self, alive=self.webhook.process.exited if self.webhook.process else None)
        except BaseException:
            self.stop()
            raise
        return self

    def start_extra_webhook(self, name: str, config: Mapping[str, Any]) -> WebhookProcess:
        """Another webhook process (e.g. with another MIG strategy), stopped with the cluster."""
        assert self.certs is not None and self.control_plane is not None
        hook = WebhookProcess(name, self.run_dir, self.kubeconfig, self.certs, config)
        self._extra.append(hook)
        return hook.start()

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
        for hook in (*self._extra, self.webhook):
            if hook is not None:
                hook.stop()
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
