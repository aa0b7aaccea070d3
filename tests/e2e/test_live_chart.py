"""The chart installed for real: `helm install --wait` with its default values (self-managed certificates) on the
local cluster, its pods created by the ReplicaSet controller, bound by kube-scheduler to the real node (kubelet +
containerd + runc + CNI bridge, `hack.cluster.node`) and run there from the image built offline (`make images`);
kube-apiserver calls the webhook through the chart's Service (`--enable-aggregator-routing`) and verifies its
certificate for `<service>.<namespace>.svc`. The MWC, Service, RBAC and certificates are the chart's and the
webhook's own.

The drills print their figures (pods created / failed / unmutated, install and upgrade times) with `-s`, and
`record_property` keeps them in the JUnit report.

Needs root (kubelet, containerd, the node's bridge): otherwise the tests fail saying so (FRW_ALLOW_SKIP_E2E=1
turns that into a skip).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from hack.cluster.chart import APPLIED_ANNOTATION, CHART_DIR, RELEASE_NAME, render_webhook_config
from hack.cluster.kind_live import KindLiveCluster, NotKind
from hack.cluster.live import LiveCluster
from hack.cluster.nodepools import POOL_LABEL
from hack.cluster.processes import REPO_ROOT, Binaries, HarnessError, MissingBinaries, wait_until

NAMESPACE = "flyte-resources-webhook"
SERVICE_HOST = f"{RELEASE_NAME}.{NAMESPACE}.svc"
SECRET = f"{RELEASE_NAME}-tls"
CHECK_INTERVAL = 30.0  # values.yaml certificates.selfManaged.checkIntervalSeconds
DRILL_PODS = int(os.environ.get("FRW_LIVE_DRILL_PODS", "500"))
BURST_THREADS = 8
EKS_KEY, GKE_KEY = "k8s.amazonaws.com/accelerator", "cloud.google.com/gke-accelerator"
FIGURES: dict[str, Any] = {}
Live = LiveCluster | KindLiveCluster  # the local cluster's own release, or the one kind-test installed


def _cannot_run(message: str) -> None:
    if os.environ.get("FRW_ALLOW_SKIP_E2E") == "1":
        pytest.skip(f"{message} (skipped because FRW_ALLOW_SKIP_E2E=1)")
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="module")
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    if os.environ.get("FRW_E2E_EXISTING_CLUSTER") == "1" or request.config.getoption("--existing-cluster", False):
        yield from _kind_live(request, tmp_path_factory.mktemp("frw-live-kind"))
        return
    if os.geteuid() != 0:
        _cannot_run(f"the live chart's real node (kubelet, containerd, a bridge) needs root (euid {os.geteuid()})")
    try:
        binaries = Binaries.locate()
    except MissingBinaries as exc:
        message = str(exc)
    else:
        message = ""
    if message:
        _cannot_run(message)
    run_dir = tmp_path_factory.mktemp("frw-live")
    cluster = LiveCluster(run_dir, binaries)
    failure = ""
    try:
        start = time.monotonic()
        cluster.start()
        FIGURES["cluster start s"] = round(time.monotonic() - start, 1)
        FIGURES["node quirks"] = cluster.node.quirks if cluster.node else []
        FIGURES["helm install --wait s"] = round(cluster.install(), 1)
    except HarnessError as exc:
        failure = f"cannot install the chart on the live cluster: {exc}\n(run dir: {run_dir})"
    if failure:
        cluster.stop()
        pytest.fail(failure, pytrace=False)
    yield from _reporting(cluster, run_dir, cluster.stop)


def _kind_live(request: pytest.FixtureRequest, run_dir: Path) -> Iterator[Live]:
    """With --existing-cluster: the release already installed on a kind cluster (`make kind-test`), its replicas
    killed inside their kind node; another existing cluster skips (no node to signal a container in)."""
    namespace = request.config.getoption("--webhook-namespace", default=NAMESPACE)
    if namespace != NAMESPACE:
        pytest.skip(f"the drills expect the release {RELEASE_NAME} in namespace {NAMESPACE}, not {namespace}")
    cluster = KindLiveCluster(run_dir, namespace=namespace)
    try:
        cluster.start()
    except NotKind as exc:
        pytest.skip(f"--existing-cluster is not a kind cluster: {exc}")
    except HarnessError as exc:
        failure = f"cannot drive the release on the kind cluster: {exc}"
    else:
        failure = ""
    if failure:
        pytest.fail(failure, pytrace=False)
    yield from _reporting(cluster, run_dir, cluster.close_api_client)


def _reporting(cluster: Live, run_dir: Path, stop: Callable[[], None]) -> Iterator[Live]:
    """Yields the cluster; then prints and saves the figures, and calls `stop`."""
    try:
        yield cluster
    finally:
        print(f"\nlive chart figures: {json.dumps(FIGURES, indent=1)}\n(logs, container logs: {run_dir})")
        (run_dir / "figures.json").write_text(json.dumps(FIGURES, indent=1))
        stop()


HOST_PROC = (
    "reads the webhook process's /proc on the host by its PID, which crictl gives in the kind node's PID namespace"
)


def _local_only(live: Live, why: str) -> None:
    if not isinstance(live, LiveCluster):
        pytest.skip(f"kind: {why}")


def _namespace(live: Live, name: str) -> str:
    live.ensure_namespace(name)
    live.wait_default_service_account(name)
    return name


def _core(live: Live) -> Any:
    from kubernetes import client

    return client.CoreV1Api(live.api_client())


def _mwc_ca(live: Live) -> bytes:
    mwc = json.loads(live.kubectl("get", "mutatingwebhookconfiguration", RELEASE_NAME, "-o", "json").stdout)
    return base64.b64decode(mwc["webhooks"][0]["clientConfig"].get("caBundle") or "")


def _served_cert(pod_ip: str, ca_pem: bytes) -> bytes:
    """The certificate a pod serves on 9443, verified against `ca_pem` for the Service's DNS name (what the
    apiserver checks)."""
    context = ssl.create_default_context(cadata=ca_pem.decode())
    with (
        socket.create_connection((pod_ip, 9443), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname=SERVICE_HOST) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def _trusted(live: Live) -> bool:
    ca = _mwc_ca(live)
    pods = live.webhook_pods()
    if not ca or len(pods) < 2:
        return False
    for pod in pods:
        try:
            _served_cert(pod["status"]["podIP"], ca)
        except (OSError, ssl.SSLError):
            return False
    return True


# ------------------------------------------------------------------------------------------------ drills


def drill_pod(name: str) -> dict[str, Any]:
    """An annotated GPU pod: under `preset: eks` it gets affinity on EKS_KEY, under `gke` on GKE_KEY. A
    scheduling gate keeps it off the scheduler and KWOK: the drills measure admission, not placement."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "annotations": {"resources.flyte.org/limits": "gpu=1", "resources.flyte.org/accelerator": "A100"},
        },
        "spec": {
            "schedulingGates": [{"name": "e2e.flyte.org/admission-drill"}],
            "containers": [{"name": "main", "image": "busybox"}],
        },
    }


def mutated_by(pod: Any) -> str:
    """`eks`, `gke` or `unmutated`, from a stored pod (a kubernetes client model)."""
    if APPLIED_ANNOTATION not in (pod.metadata.annotations or {}):
        return "unmutated"
    terms = pod.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution.node_selector_terms
    keys = {e.key for t in terms for e in t.match_expressions or []}
    return "eks" if EKS_KEY in keys else "gke" if GKE_KEY in keys else f"other {sorted(keys)}"


class Burst:
    """Creates `count` drill pods from BURST_THREADS threads, optionally paced over `seconds`; records every
    failure with its message and every stored pod's mutation."""

    def __init__(self, live: Live, namespace: str, count: int, *, seconds: float = 0.0, prefix: str = "p"):
        self.live, self.namespace, self.count, self.seconds, self.prefix = live, namespace, count, seconds, prefix
        self.failures: list[str] = []
        self.outcomes: dict[str, int] = {}
        self.lock = threading.Lock()
        self.started = threading.Event()

    def _create(self, index: int) -> None:
        from kubernetes import client

        if self.seconds:
            delay = self.t0 + index * self.seconds / self.count - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        if index == self.count // 10:
            self.started.set()
        try:
            pod = _core(self.live).create_namespaced_pod(self.namespace, drill_pod(f"{self.prefix}-{index}"))
        except client.ApiException as exc:
            with self.lock:
                self.failures.append(f"{exc.status}: {(exc.body or '')[:300]}")
            return
        kind = mutated_by(pod)
        with self.lock:
            self.outcomes[kind] = self.outcomes.get(kind, 0) + 1

    def run(self) -> Burst:
        self.t0 = time.monotonic()
        with ThreadPoolExecutor(BURST_THREADS) as pool:
            list(pool.map(self._create, range(self.count)))
        self.elapsed = time.monotonic() - self.t0
        return self

    def figures(self) -> dict[str, Any]:
        return {
            "created": sum(self.outcomes.values()),
            "failed": len(self.failures),
            "unmutated": self.outcomes.get("unmutated", 0),
            "by config": dict(sorted(self.outcomes.items())),
            "seconds": round(self.elapsed, 1),
        }


def in_background(work: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def target() -> None:
        try:
            out.append(work())
        except BaseException as exc:  # re-raised by the test that joins
            out.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


def endpoint_ips(live: Live) -> set[str]:
    """The ready addresses of the Service's EndpointSlices (what the apiserver picks from)."""
    out = json.loads(
        live.kubectl("get", "endpointslices", "-n", NAMESPACE, "-l", f"kubernetes.io/service-name={RELEASE_NAME}",
                     "-o", "json").stdout
    )  # fmt: skip
    ips = set()
    for slice_ in out["items"]:
        for endpoint in slice_.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready"):
                ips.update(endpoint["addresses"])
    return ips


# ------------------------------------------------------------------------------------------------ tests


def test_install_runs_the_chart_pods_on_cpu_nodes_behind_the_service(live: Live) -> None:
    pods = live.webhook_pods()
    assert len(pods) == 2, [p["metadata"]["name"] for p in pods]
    core = _core(live)
    for pod in pods:
        owner = pod["metadata"]["ownerReferences"][0]
        assert owner["kind"] == "ReplicaSet", owner  # made by the ReplicaSet controller, not by the harness
        node = core.read_node(pod["spec"]["nodeName"])
        assert node.metadata.labels[POOL_LABEL] == "cpu", (pod["metadata"]["name"], node.metadata.name)
        if isinstance(live, LiveCluster):
            assert node.metadata.name == live.node.name, "on the real node"  # type: ignore[union-attr]
            assert pod["status"]["podIP"] in {str(a) for a in live.network.pod_subnet}  # type: ignore[union-attr]
        assert pod["spec"]["volumes"], "the ServiceAccount admission plugin added the token volume"
    # The EndpointSlice controller follows readiness a moment after helm's --wait has seen the pods ready.
    ready_ips = {p["status"]["podIP"] for p in pods}
    wait_until(lambda: endpoint_ips(live) == ready_ips, timeout=30, what="the Service's endpoints to be both pods")
    mwc = json.loads(live.kubectl("get", "mutatingwebhookconfiguration", RELEASE_NAME, "-o", "json").stdout)
    client_config = mwc["webhooks"][0]["clientConfig"]
    assert "url" not in client_config
    assert client_config["service"] == {"name": RELEASE_NAME, "namespace": NAMESPACE, "port": 443,
                                        "path": "/flyte-resources"}  # fmt: skip


def test_examples_are_mutated_through_the_service_as_offline_and_helm_test_passes(live: Live) -> None:
    from hack.local_cluster import load_examples

    namespace = _namespace(live, "frw-live-examples")
    config = render_webhook_config(live.helm_bin)
    config_file = live.run_dir / "chart-config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    checked = 0
    for path, pod in load_examples(REPO_ROOT / "examples"):
        pod = {**pod, "metadata": {**pod["metadata"], "namespace": namespace}}
        pod["metadata"].pop("ownerReferences", None)  # their owner does not exist here
        offline = subprocess.run(
            [str(REPO_ROOT / ".venv" / "bin" / "flyte-resources-webhook"), "mutate", "-f", "-", "-o", "json",
             "--config", str(config_file)],
            input=json.dumps(pod), capture_output=True, text=True, check=False,
        )  # fmt: skip
        result = live.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(pod))
        if offline.returncode != 0:
            assert result.returncode != 0, f"{path.name}: denied offline, admitted live"
            continue
        assert result.returncode == 0, f"{path.name}: {result.stderr}"
        stored, expected = json.loads(result.stdout), json.loads(offline.stdout)
        assert stored["metadata"]["annotations"][APPLIED_ANNOTATION] == expected["metadata"]["annotations"][
            APPLIED_ANNOTATION], path.name  # fmt: skip
        checked += 1
    assert checked >= 5
    result = live.helm("test", RELEASE_NAME, "--namespace", NAMESPACE, "--timeout=120s")
    assert result.returncode == 0, result.stderr
    assert "Phase:          Succeeded" in result.stdout, result.stdout
    assert result.stdout.count("TEST SUITE:") == 1, result.stdout  # one suite, listed once


def test_two_replicas_agree_on_one_secret_and_one_ca_bundle(live: Live) -> None:
    secrets = _core(live).list_namespaced_secret(NAMESPACE).items
    tls = [s for s in secrets if s.type == "kubernetes.io/tls" or s.metadata.name == SECRET]
    assert [s.metadata.name for s in tls] == [SECRET]
    secret_ca = base64.b64decode(tls[0].data["ca.crt"])
    secret_cert = base64.b64decode(tls[0].data["tls.crt"])
    mwc_ca = _mwc_ca(live)
    assert secret_ca.strip() in mwc_ca, "the caBundle holds the Secret's CA"
    served = {_served_cert(p["status"]["podIP"], mwc_ca) for p in live.webhook_pods()}
    assert len(served) == 1, "both replicas serve the same certificate"
    assert ssl.DER_cert_to_PEM_cert(served.pop()).strip() == secret_cert.decode().strip()


def test_deleted_secret_under_load_both_replicas_trusted_again_and_no_review_fails(live: Live) -> None:
    """A forced rotation: the Secret is deleted while annotated pods are created. A replica writes a new CA and
    certificate, caBundle keeps every still-valid CA (the union), the other replica adopts the new Secret at its
    next check: within the check interval both are trusted again, and no create fails or goes unmutated."""
    namespace = _namespace(live, "frw-live-rotation")
    old_cert = _core(live).read_namespaced_secret(SECRET, NAMESPACE).data["tls.crt"]
    burst = Burst(live, namespace, 300, seconds=CHECK_INTERVAL + 10, prefix="rot")
    thread, out = in_background(burst.run)
    burst.started.wait(30)
    _core(live).delete_namespaced_secret(SECRET, NAMESPACE)
    start = time.monotonic()
    wait_until(
        lambda: _core(live).read_namespaced_secret(SECRET, NAMESPACE) and _trusted(live),
        timeout=CHECK_INTERVAL * 2 + 10, what="a new Secret and both replicas trusted by the caBundle", interval=1,
    )  # fmt: skip
    trusted_s = time.monotonic() - start

    def both_adopted() -> bool:
        secret = _core(live).read_namespaced_secret(SECRET, NAMESPACE)
        new_cert = base64.b64decode(secret.data["tls.crt"]).decode().strip()
        ca = _mwc_ca(live)
        served = {ssl.DER_cert_to_PEM_cert(_served_cert(p["status"]["podIP"], ca)).strip() for p in live.webhook_pods()}
        return served == {new_cert}

    wait_until(both_adopted, timeout=CHECK_INTERVAL * 2 + 10, what="both replicas serving the new certificate")
    adopted_s = time.monotonic() - start
    thread.join()
    if out and isinstance(out[0], BaseException):
        raise out[0]
    assert _core(live).read_namespaced_secret(SECRET, NAMESPACE).data["tls.crt"] != old_cert
    FIGURES["rotation drill (Secret deleted under load)"] = burst.figures() | {
        "both trusted again s": round(trusted_s, 1), "both serve the new certificate s": round(adopted_s, 1),
    }  # fmt: skip
    assert burst.failures == [], burst.figures() | {"first failures": burst.failures[:3]}
    assert burst.outcomes == {"eks": 300}, burst.figures()
    # The first replica to look (at most one check interval later) restores trust; 5 s for the poll above.
    assert trusted_s <= CHECK_INTERVAL + 5, f"trusted again only after {trusted_s:.1f} s"


def _assert_no_unmutated(burst: Burst) -> None:
    assert burst.outcomes.get("unmutated", 0) == 0, burst.figures()
    assert not [k for k in burst.outcomes if k.startswith("other")], burst.figures()


def test_configmap_edit_reaches_the_running_pods_under_load_without_a_restart(live: Live) -> None:
    """`kubectl edit configmap` to `preset: gke` while pods are created: kubelet swaps the mounted
    directory's `..data` to the new files, both replicas reload it without a restart, and every pod is mutated by
    the old or the new config, none fails. `helm upgrade --force-conflicts` takes the config back."""
    namespace = _namespace(live, "frw-live-reload")
    core = _core(live)
    before = {p["metadata"]["uid"]: p["status"]["containerStatuses"][0]["restartCount"] for p in live.webhook_pods()}
    original = core.read_namespaced_config_map(RELEASE_NAME, NAMESPACE).data["config.yaml"]
    edited = yaml.safe_dump({**yaml.safe_load(original), "preset": "gke"})
    burst = Burst(live, namespace, 200, seconds=20, prefix="reload")
    thread, out = in_background(burst.run)
    burst.started.wait(30)
    core.patch_namespaced_config_map(RELEASE_NAME, NAMESPACE, {"data": {"config.yaml": edited}})
    start = time.monotonic()
    probes = iter(range(10_000))

    def serving(preset: str) -> bool:  # ten creates in a row mutated by that config: both replicas have it
        return all(
            mutated_by(core.create_namespaced_pod(namespace, drill_pod(f"probe-{next(probes)}"))) == preset
            for _ in range(10)
        )

    wait_until(lambda: serving("gke"), timeout=60 * live.pace, what="both replicas serving the edited config",
               interval=0.5)  # fmt: skip
    reload_s = time.monotonic() - start
    thread.join()
    # The edit made its field manager the owner of the config; helm 4 applies server-side, so the next plain
    # upgrade conflicts until it takes the field back.
    plain = live.helm("upgrade", *live.upgrade_args(), "--wait")
    assert plain.returncode != 0 and "conflict" in plain.stderr, plain.stderr
    live.upgrade(extra=["--force-conflicts"])
    if out and isinstance(out[0], BaseException):
        raise out[0]
    FIGURES["configmap edit drill"] = burst.figures() | {"edit -> both replicas serve it s": round(reload_s, 1)}
    assert burst.failures == [], burst.figures() | {"first failures": burst.failures[:3]}
    _assert_no_unmutated(burst)
    after = {p["metadata"]["uid"]: p["status"]["containerStatuses"][0]["restartCount"] for p in live.webhook_pods()}
    assert after == before, "the same pods, not restarted"
    wait_until(lambda: serving("eks"), timeout=60 * live.pace, what="the original config back", interval=0.5)


def test_upgrade_to_another_preset_under_load(live: Live, record_property: Any) -> None:
    """`helm upgrade` to `preset: gke` (the pods roll: maxSurge 1, maxUnavailable 0, preStop drain) while
    DRILL_PODS annotated pods are created: none fails, each is mutated by the old or the new config."""
    namespace = _namespace(live, "frw-live-upgrade")
    burst = Burst(live, namespace, DRILL_PODS, seconds=max(20.0, DRILL_PODS / 25) * live.pace, prefix="up")
    thread, out = in_background(burst.run)
    burst.started.wait(30)
    try:
        upgrade_s = live.upgrade({"config": {"preset": "gke"}})
        thread.join()
        if out and isinstance(out[0], BaseException):
            raise out[0]
        FIGURES["helm upgrade --wait s"] = round(upgrade_s, 1)
        FIGURES["upgrade drill"] = burst.figures()
        record_property("upgrade drill", burst.figures())
        assert burst.failures == [], burst.figures() | {"first failures": burst.failures[:3]}
        _assert_no_unmutated(burst)
        both = burst.outcomes.get("eks", 0) and burst.outcomes.get("gke", 0)
        assert both, f"both configs served: {burst.figures()}"
        probe = _core(live).create_namespaced_pod(namespace, drill_pod("after-upgrade"))
        assert mutated_by(probe) == "gke"
    finally:
        thread.join()
        live.upgrade()  # back to the chart's defaults, also after a failure: the next tests expect them


def _kill_drill(live: Live, policy: str) -> tuple[Burst, Burst]:
    namespace = _namespace(live, f"frw-live-kill-{policy.lower()}")
    wait_until(lambda: len(live.webhook_pods()) == 2, timeout=60, what="two ready webhook pods")
    victim = live.webhook_pods()[0]
    count = max(DRILL_PODS // 2, 50)
    burst = Burst(live, namespace, count, seconds=max(10.0, count / 25), prefix="kill")
    thread, out = in_background(burst.run)
    burst.started.wait(30)
    live.kill_container(victim)  # SIGKILL through containerd, as the OOM killer would
    thread.join()
    if out and isinstance(out[0], BaseException):
        raise out[0]
    # Once the killed pod's endpoint is gone (or it is back and ready), no create fails.
    wait_until(lambda: victim["status"]["podIP"] not in endpoint_ips(live) or len(live.webhook_pods()) == 2,
               timeout=30, what="the killed pod's endpoint to go")  # fmt: skip
    after = Burst(live, namespace, 50, prefix="after").run()
    # The kill happened: kubelet saw the container die and restarted it.
    name = victim["metadata"]["name"]
    wait_until(
        lambda: _core(live).read_namespaced_pod(name, NAMESPACE).status.container_statuses[0].restart_count >= 1,
        timeout=30, what=f"{name} to be restarted after its SIGKILL",
    )  # fmt: skip
    return burst, after


def test_sigkill_of_a_replica_with_failure_policy_fail_stores_no_unmutated_pod(live: Live) -> None:
    burst, after = _kill_drill(live, "Fail")
    FIGURES["sigkill drill (Fail)"] = {"during": burst.figures(), "after endpoint gone": after.figures()}
    _assert_no_unmutated(burst)
    assert after.failures == [] and after.outcomes == {"eks": 50}, after.figures()


def test_sigkill_of_a_replica_with_failure_policy_ignore_fails_no_create(live: Live) -> None:
    live.upgrade({"webhook": {"failurePolicy": "Ignore"}})
    try:
        burst, after = _kill_drill(live, "Ignore")
    finally:
        live.upgrade()
    FIGURES["sigkill drill (Ignore)"] = {"during": burst.figures(), "after endpoint gone": after.figures()}
    assert burst.failures == [], burst.figures() | {"first failures": burst.failures[:3]}
    assert after.failures == [], after.figures()


def _evict(live: Live, name: str) -> int:
    """POST an Eviction for the pod (what `kubectl drain` does); the HTTP status (201 allowed, 429 refused)."""
    from kubernetes import client

    body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": NAMESPACE}}
    try:
        _core(live).create_namespaced_pod_eviction(name, NAMESPACE, body)
    except client.ApiException as exc:
        return int(exc.status)
    return 201


def test_drain_under_load_the_pdb_keeps_one_replica_and_the_prestop_drain_loses_no_review(
    live: Live,
) -> None:
    """A node drain while pods are created: the first eviction is allowed, the second is refused by the
    PodDisruptionBudget (minAvailable 1) while the first pod is replaced; the evicted pod's preStop sleep keeps it
    serving while its endpoint goes, so no create fails or goes unmutated."""
    namespace = _namespace(live, "frw-live-drain")
    wait_until(lambda: len(live.webhook_pods()) == 2, timeout=60, what="two ready webhook pods")
    first, second = (p["metadata"]["name"] for p in live.webhook_pods())
    burst = Burst(live, namespace, 200, seconds=15, prefix="drain")
    thread, out = in_background(burst.run)
    burst.started.wait(30)
    assert _evict(live, first) == 201
    assert _evict(live, second) == 429, "the PodDisruptionBudget lets the last ready replica go"
    thread.join()
    if out and isinstance(out[0], BaseException):
        raise out[0]
    FIGURES["drain drill (eviction under load)"] = burst.figures()
    assert burst.failures == [], burst.figures() | {"first failures": burst.failures[:3]}
    assert burst.outcomes == {"eks": 200}, burst.figures()
    wait_until(lambda: len(live.webhook_pods()) == 2, timeout=60, what="the evicted replica replaced")


# ------------------------------------------------------------------------------------------ what a kubelet enforces


def _proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def _root_mount_options(pid: int) -> set[str]:
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == "/":
            return set(fields[5].split(","))
    raise AssertionError(f"no / in /proc/{pid}/mountinfo")


def _memory_limit(pid: int) -> int:
    """The memory cgroup limit of the process (cgroup v1 or v2), as the kernel enforces it."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return int(Path(f"/sys/fs/cgroup/memory{path}/memory.limit_in_bytes").read_text())
        if controllers == "":
            text = Path(f"/sys/fs/cgroup{path}/memory.max").read_text().strip()
            return int(text) if text != "max" else -1
    raise AssertionError(f"no memory cgroup in /proc/{pid}/cgroup")


def _assert_runs_as(live: Live, uid: int) -> None:
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    limit = values["resources"]["limits"]["memory"]
    assert limit.endswith("Mi"), limit
    for pod in live.webhook_pods():
        pid = live.container_pid(pod)
        status = _proc_status(pid)
        name = pod["metadata"]["name"]
        assert status["Uid"].split() == [str(uid)] * 4, (name, status["Uid"])  # runAsUser, runAsNonRoot
        for caps in ("CapEff", "CapPrm", "CapBnd"):  # capabilities: drop: [ALL]
            assert int(status[caps], 16) == 0, (name, caps, status[caps])
        assert status["NoNewPrivs"] == "1", name  # allowPrivilegeEscalation: false
        assert status["Seccomp"] == "2", name  # seccompProfile: RuntimeDefault (a filter)
        assert "ro" in _root_mount_options(pid), name  # readOnlyRootFilesystem
        assert _memory_limit(pid) == int(limit[:-2]) * 2**20, name  # resources.limits.memory


def test_the_pods_run_under_the_charts_security_context_and_memory_limit(live: Live) -> None:
    """What the runtime applied to the webhook processes, read from the kernel: the chart's user, no capabilities,
    no privilege escalation, the seccomp filter, a read-only root and the memory limit of its cgroup."""
    _local_only(live, HOST_PROC)
    _assert_runs_as(live, 65532)
    pod = live.webhook_pods()[0]
    denied = live.exec_in(pod, "python", "-c", "open('/etc/frw-probe', 'w')")
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr, denied
    allowed = live.exec_in(pod, "python", "-c", "open('/tmp/frw-probe', 'w').write('ok')")
    assert allowed.returncode == 0, allowed.stderr  # /tmp is the chart's emptyDir


def test_a_random_uid_without_a_passwd_entry_serves(live: Live) -> None:
    """As OpenShift runs pods: a UID from the namespace's range that the image's /etc/passwd does not know."""
    _local_only(live, HOST_PROC)
    uid = 1000650000
    ids = {"runAsUser": uid, "runAsGroup": uid}
    namespace = _namespace(live, "frw-live-uid")
    try:
        live.upgrade({"podSecurityContext": {**ids, "fsGroup": uid}, "securityContext": ids})
        _assert_runs_as(live, uid)
        assert mutated_by(_core(live).create_namespaced_pod(namespace, drill_pod("random-uid"))) == "eks"
    finally:
        live.upgrade()


def test_the_liveness_probe_restarts_a_wedged_process(live: Live) -> None:
    """SIGSTOP the webhook process: its probes time out, readiness takes its endpoint away, liveness makes
    kubelet kill and restart the container, which serves again."""
    wait_until(lambda: len(live.webhook_pods()) == 2, timeout=60, what="two ready webhook pods")
    victim = live.webhook_pods()[0]
    name, pod_ip = victim["metadata"]["name"], victim["status"]["podIP"]
    before = victim["status"]["containerStatuses"][0]["restartCount"]
    start = time.monotonic()
    live.kill_container(victim, "SIGSTOP")
    wait_until(lambda: pod_ip not in endpoint_ips(live), timeout=60, what="the wedged pod's endpoint to go")
    unready_s = time.monotonic() - start

    def restarted() -> bool:
        pod = _core(live).read_namespaced_pod(name, NAMESPACE)
        return bool(pod.status.container_statuses[0].restart_count > before)

    wait_until(restarted, timeout=150, what=f"{name} restarted by its liveness probe", interval=1)
    restart_s = time.monotonic() - start
    wait_until(lambda: pod_ip in endpoint_ips(live), timeout=60, what=f"{name} ready again", interval=1)
    FIGURES["liveness drill (SIGSTOP)"] = {
        "endpoint gone s": round(unready_s, 1), "restarted s": round(restart_s, 1),
        "serving again s": round(time.monotonic() - start, 1),
    }  # fmt: skip
    assert mutated_by(_core(live).create_namespaced_pod(_namespace(live, "frw-live-wedge"), drill_pod("w"))) == "eks"


def test_uninstall_leaves_no_webhook_configuration_or_rbac(live: Live) -> None:
    _local_only(live, "helm uninstall would remove the release the rest of the kind suite runs against")
    FIGURES["helm uninstall s"] = round(live.uninstall(), 1)
    for kind in ("mutatingwebhookconfiguration", "clusterrole", "clusterrolebinding",
                 "validatingadmissionpolicy", "validatingadmissionpolicybinding"):  # fmt: skip
        result = live.kubectl("get", kind, RELEASE_NAME)
        assert result.returncode != 0 and "NotFound" in result.stderr, f"{kind} {RELEASE_NAME} stays: {result.stdout}"
    for kind in ("role", "rolebinding", "serviceaccount", "deployment", "service"):
        result = live.kubectl("get", kind, RELEASE_NAME, "-n", NAMESPACE)
        assert result.returncode != 0 and "NotFound" in result.stderr, f"{kind} {RELEASE_NAME} stays"
    wait_until(lambda: not live.webhook_pods(ready_only=False), timeout=60, what="the webhook pods to go")
    # The Secret the webhook created at run time (not a helm resource) is owned by the MutatingWebhookConfiguration:
    # the garbage collector (kube-controller-manager) deletes it once helm has deleted the configuration.
    started = time.monotonic()

    def secrets() -> list[str]:
        return sorted(s.metadata.name for s in _core(live).list_namespaced_secret(NAMESPACE).items)

    wait_until(lambda: not secrets(), timeout=60, what=f"the garbage collector to delete {secrets()}")
    FIGURES["Secret gone after uninstall s"] = round(time.monotonic() - started, 1)
    FIGURES["left after uninstall"] = secrets()
