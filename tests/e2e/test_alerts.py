"""The chart's alerts against the real thing: a real Prometheus (Debian's `prometheus`) scrapes the live chart's
pods at every address of the chart's Service's EndpointSlices, ready or not, with the target labels the chart's
ServiceMonitor gives them (Debian builds Prometheus without Kubernetes service discovery, so the harness writes
those targets into a file_sd file), and the rules exactly as `helm template` renders the chart's PrometheusRule
with short evaluation intervals and `for` durations set through the chart's values. Each test causes a condition
on the live chart and asserts the matching alert goes pending (when it has a `for`), fires, and clears once the
cause is gone. Every dashboard query must return series.

Not caused here: `FlyteResourcesWebhookReviewsErrored` (an internal error is a bug of ours, which nothing here can
provoke); the promtool unit tests (tests/chart/test_alerts.py) fire and clear it. `FlyteResourcesWebhookSlowReviews`
is caused with a threshold lowered to 10 ms (pods of 2,000 containers take longer to review; a real timeout of
seconds is not reachable with any pod the API server accepts).

Needs root (the live chart's pod network): otherwise the tests fail saying so (FRW_ALLOW_SKIP_E2E=1 turns that
into a skip). The timings (cause -> pending -> firing -> cleared) are printed with `-s` and written to
`alerts.json` in the run directory.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from hack.cluster.chart import RELEASE_NAME, WEBHOOK_NAMESPACE
from hack.cluster.drills import signal_webhook
from hack.cluster.live import LiveCluster
from hack.cluster.processes import Binaries, HarnessError, MissingBinaries, wait_until
from hack.cluster.prometheus import (
    DASHBOARD_FILE,
    Prometheus,
    dashboard_queries,
    endpoint_slice_targets,
    render_rule_groups,
    tool,
)
from webhook.operator.certs import generate_ca

NAMESPACE = WEBHOOK_NAMESPACE
SECRET = f"{RELEASE_NAME}-tls"
DENIED_NAMESPACE = "frw-alerts-denied"
DRILL_POLICY = "alerts-drill"
CHECK_INTERVAL = 5  # certificates.selfManaged.checkIntervalSeconds: how soon a replica repairs its caBundle
INTERVAL = "1s"  # scrape and rule evaluation interval
FOR = "3s"
# The chart as installed: a policy to deny pods under, fast certificate checks, and a 10-minute certificate
# (renewed 5 minutes ahead), which the expiry alert below (threshold 0.01 days = 14.4 minutes) fires on.
CHART_VALUES: dict[str, Any] = {
    "certificates": {"selfManaged": {"checkIntervalSeconds": CHECK_INTERVAL, "duration": "10m", "renewBefore": "5m"}},
    "config": {
        "preset": "eks",
        "policies": [{"name": DRILL_POLICY, "match": {"namespace": DENIED_NAMESPACE}, "max-gpus": 1}],
    },
}
RULE_VALUES: dict[str, Any] = {
    "interval": INTERVAL,
    "rateWindow": "10s",
    "alerts": {
        "noReadyReplica": {"for": FOR},
        "targetDown": {"for": FOR},
        "reviewsErrored": {"for": "0s"},
        "denialsJump": {"for": FOR, "minPerSecond": 0.5, "factor": 3, "baseline": "30s"},
        # 0.002 x the 5 s timeout = 10 ms: what a pod with 2,000 containers takes, where a plain pod takes < 1 ms.
        "slowReviews": {"for": FOR, "timeoutRatio": 0.002},
        "certificateExpiry": {"for": FOR, "days": 0.01},
        "certificateUntrusted": {"for": FOR},
        "configReloadRefused": {"for": FOR},
        "restarts": {"for": "0s", "count": 1, "window": "20s"},
    },
}
FIGURES: dict[str, Any] = {}


@dataclass
class Stack:
    live: LiveCluster
    prometheus: Prometheus


@pytest.fixture(scope="module")
def stack(live_chart_binaries: Binaries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    try:
        tool("prometheus")
    except MissingBinaries as exc:
        missing = str(exc)
    else:
        missing = ""
    if missing:
        if os.environ.get("FRW_ALLOW_SKIP_E2E") == "1":
            pytest.skip(f"{missing} (skipped because FRW_ALLOW_SKIP_E2E=1)")
        pytest.fail(missing, pytrace=False)
    binaries = live_chart_binaries
    run_dir = tmp_path_factory.mktemp("frw-alerts")
    live = LiveCluster(run_dir, binaries)
    prometheus: Prometheus | None = None
    failure = ""
    try:
        start = time.monotonic()
        live.start()
        live.install(CHART_VALUES)
        FIGURES["cluster start + helm install s"] = round(time.monotonic() - start, 1)
        groups = render_rule_groups(
            live.helm_bin, {**CHART_VALUES, "metrics": {"prometheusRule": RULE_VALUES}}, run_dir
        )
        prometheus = Prometheus(
            run_dir / "prometheus",
            lambda: endpoint_slice_targets(live.api_client(), NAMESPACE, RELEASE_NAME),
            groups,
            interval=INTERVAL,
            scrape_timeout="800ms",
        ).start()
    except HarnessError as exc:
        failure = f"cannot set up the live chart and Prometheus: {exc}\n(run dir: {run_dir})"
    if failure:
        if prometheus is not None:
            prometheus.stop()
        live.stop()
        pytest.fail(failure, pytrace=False)
    assert prometheus is not None
    started = time.monotonic()
    try:
        yield Stack(live, prometheus)
    finally:
        FIGURES["drills s"] = round(time.monotonic() - started, 1)
        print(f"\nalert figures: {json.dumps(FIGURES, indent=1)}\n(logs: {run_dir})")
        (run_dir / "alerts.json").write_text(json.dumps(FIGURES, indent=1))
        prometheus.stop()
        live.stop()


# ------------------------------------------------------------------------------------------------ helpers


def _core(live: LiveCluster) -> Any:
    from kubernetes import client

    return client.CoreV1Api(live.api_client())


def _matching(prometheus: Prometheus, name: str, labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
    return [
        a
        for a in prometheus.alerts()
        if a["labels"].get("alertname") == name and all(a["labels"].get(k) == v for k, v in (labels or {}).items())
    ]


class AlertWatch:
    """From a cause to firing (through pending when the rule has a `for`), then to cleared; the seconds each
    step took go to FIGURES under the alert's name."""

    def __init__(self, prometheus: Prometheus, name: str, cause: str, labels: dict[str, str] | None = None) -> None:
        self.prometheus, self.name, self.labels = prometheus, name, labels
        self.figures: dict[str, Any] = {"cause": cause}
        FIGURES.setdefault(name, []).append(self.figures)
        self.t0 = time.monotonic()

    def _states(self) -> set[str]:
        return {a["state"] for a in _matching(self.prometheus, self.name, self.labels)}

    def firing_now(self) -> list[dict[str, Any]] | None:
        """One look: the firing alerts (None if none yet); remembers when one was first seen pending."""
        alerts = _matching(self.prometheus, self.name, self.labels)
        if "pending after s" not in self.figures and any(a["state"] == "pending" for a in alerts):
            self.figures["pending after s"] = round(time.monotonic() - self.t0, 1)
        return [a for a in alerts if a["state"] == "firing"] or None

    def done_firing(self, *, pending: bool = True, extra: dict[str, Any] | None = None) -> None:
        self.figures["firing after s"] = round(time.monotonic() - self.t0, 1)
        self.figures.update(extra or {})
        if pending:
            assert "pending after s" in self.figures, f"{self.name} fired without being seen pending first"

    def firing(self, *, timeout: float = 60, pending: bool = True, count: int = 1) -> list[dict[str, Any]]:
        """Wait until `count` alerts fire; with `pending`, one must have been seen pending first."""

        def probe() -> list[dict[str, Any]] | None:
            firing = self.firing_now()
            return firing if firing and len(firing) >= count else None

        found = wait_until(probe, timeout=timeout, interval=0.25, what=f"{self.name} {self.labels or ''} firing")
        self.done_firing(pending=pending)
        return found

    def cleared(self, *, timeout: float = 60) -> None:
        start = time.monotonic()
        wait_until(lambda: not self._states(), timeout=timeout, interval=0.25, what=f"{self.name} to clear")
        self.figures["cleared s after the cause went"] = round(time.monotonic() - start, 1)


def _ready_pods(live: LiveCluster, count: int = 2) -> list[dict[str, Any]]:
    def ready() -> list[dict[str, Any]] | None:
        pods = live.webhook_pods()
        return pods if len(pods) == count else None

    return wait_until(ready, timeout=90, what=f"{count} ready webhook pods")


def _expiries(prometheus: Prometheus) -> dict[str, str]:
    """When each replica's served certificate expires (epoch seconds, as Prometheus formats them), by pod."""
    found = prometheus.query("flyte_resources_webhook_certificate_expiry_timestamp_seconds")
    return {r["metric"]["pod"]: r["value"][1] for r in found}


def _repeat_until(
    step: Callable[[], list[dict[str, Any]] | None], *, timeout: float, what: str
) -> list[dict[str, Any]]:
    """Run `step` (which causes something and looks) until it returns alerts; its errors are not retried."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := step():
            return found
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _query_value(prometheus: Prometheus, expr: str) -> float | None:
    result = prometheus.query(expr)
    return float(result[0]["value"][1]) if result else None


def _denied_pod(name: str) -> dict[str, Any]:
    """Asks for 4 GPUs where the drill policy allows 1: denied by the webhook under that policy."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": {"resources.flyte.org/limits": "gpu=4"}},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
    }


def _mutated_pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": {"resources.flyte.org/resources": "cpu=1,mem=1Gi"}},
        "spec": {
            "schedulingGates": [{"name": "e2e.flyte.org/alerts-drill"}],
            "containers": [{"name": "main", "image": "busybox"}],
        },
    }


# ------------------------------------------------------------------------------------------------ tests


def test_prometheus_scrapes_each_replica_like_the_service_monitor_and_every_rule_evaluates(stack: Stack) -> None:
    prometheus = stack.prometheus
    pods = {p["metadata"]["name"] for p in _ready_pods(stack.live)}

    def both_up() -> list[dict[str, Any]] | None:
        targets = [t for t in prometheus.targets() if t["health"] == "up"]
        return targets if {t["labels"].get("pod") for t in targets} == pods else None

    targets = wait_until(both_up, timeout=60, what="Prometheus scraping both webhook pods")
    for target in targets:
        assert target["labels"]["namespace"] == NAMESPACE and target["labels"]["job"] == RELEASE_NAME
        assert target["scrapeUrl"].endswith(":8080/metrics")
    wait_until(lambda: _query_value(prometheus, "flyte_resources_webhook:ready_replicas") == 2, timeout=30,
               what="the ready_replicas record at 2")  # fmt: skip

    def evaluated() -> list[tuple[str, str, str]] | None:
        health = prometheus.rule_health()
        return health if all(state != "unknown" for _, state, _ in health) else None

    health = wait_until(evaluated, timeout=30, what="every rule evaluated once")
    assert [(name, error) for name, state, error in health if state != "ok"] == []
    assert len(health) == 17

    # Nothing is wrong yet, but the 10-minute certificate is within the expiry threshold.
    # (NoReadyReplica was pending before the first scrapes: it goes at the alert group's next evaluation.)
    def only_expiry() -> bool:
        return {a["labels"]["alertname"] for a in prometheus.alerts()} <= {"FlyteResourcesWebhookCertificateExpiry"}

    wait_until(only_expiry, timeout=15, what="no alert but CertificateExpiry")


def test_every_dashboard_query_returns_series(stack: Stack) -> None:
    live, prometheus = stack.live, stack.prometheus
    namespace = "frw-alerts-mutated"
    live.ensure_namespace(namespace)
    live.wait_default_service_account(namespace)
    for i in range(10):
        _core(live).create_namespaced_pod(namespace, _mutated_pod(f"mutated-{i}"))
    wait_until(
        lambda: (_query_value(prometheus, 'flyte_resources_webhook:reviews:rate{outcome="patched"}') or 0) > 0,
        timeout=30, what="patched reviews in the recorded rate",
    )  # fmt: skip
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    empty = []
    queries = dashboard_queries(dashboard)
    for expr in queries:
        concrete = expr.replace("$namespace", NAMESPACE).replace("$job", RELEASE_NAME)
        if not prometheus.query(concrete):
            empty.append(concrete)
    assert empty == [], f"dashboard queries without series: {empty}"
    # The variables' queries find this release.
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            series = prometheus.query(variable["query"]["query"].split("(", 1)[1].rsplit(",", 1)[0]
                                      .replace("$namespace", NAMESPACE))  # fmt: skip
            assert series, variable["name"]
    FIGURES["dashboard queries with series"] = len(queries)


def test_reviews_of_huge_pods_fire_slow_reviews_and_it_clears(stack: Stack) -> None:
    """Server-side dry runs of pods with 2,000 containers, each with other resources (so no answer is reused):
    the p99 inside the webhook passes the lowered threshold (10 ms); once they stop, it clears."""
    live, prometheus = stack.live, stack.prometheus
    namespace = "frw-alerts-mutated"
    live.ensure_namespace(namespace)
    live.wait_default_service_account(namespace)
    core = _core(live)
    watch = AlertWatch(prometheus, "FlyteResourcesWebhookSlowReviews", "dry-run creates of 2,000-container pods")
    sent = 0

    def send_until_firing() -> list[dict[str, Any]] | None:
        nonlocal sent
        pod = _mutated_pod(f"huge-{sent}")
        pod["metadata"]["annotations"]["resources.flyte.org/resources"] = f"cpu={sent + 1}m,mem=1Gi"
        pod["metadata"]["annotations"]["resources.flyte.org/container"] = "c0"
        pod["spec"]["containers"] = [{"name": f"c{i}", "image": "busybox"} for i in range(2000)]
        core.create_namespaced_pod(namespace, pod, dry_run="All")
        sent += 1
        time.sleep(0.2)
        return watch.firing_now()

    _repeat_until(send_until_firing, timeout=90, what="SlowReviews firing while huge pods are reviewed")
    watch.done_firing(extra={"huge pods reviewed": sent})
    watch.cleared(timeout=40)


def test_an_invalid_config_map_fires_reload_refused_and_the_original_clears_it(stack: Stack) -> None:
    live, prometheus = stack.live, stack.prometheus
    core = _core(live)
    original = core.read_namespaced_config_map(RELEASE_NAME, NAMESPACE).data["config.yaml"]
    invalid = yaml.safe_dump({**yaml.safe_load(original), "platform-limits": {"cpu": "lots"}})
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    # The chart's edit-time check refuses it first, with the webhook's message.
    with pytest.raises(ApiException) as refused:
        core.patch_namespaced_config_map(RELEASE_NAME, NAMESPACE, {"data": {"config.yaml": invalid}})
    assert "'lots' is not a valid Kubernetes quantity" in str(refused.value.body)
    # Where the check is off (or the webhook was down: its failurePolicy is Ignore), the replicas refuse it.
    admission = client.AdmissionregistrationV1Api(live.api_client())
    mwc = admission.read_mutating_webhook_configuration(RELEASE_NAME)
    (index,) = [i for i, hook in enumerate(mwc.webhooks) if hook.name.startswith("config.")]
    entry = live.api_client().sanitize_for_serialization(mwc.webhooks[index])
    admission.patch_mutating_webhook_configuration(RELEASE_NAME, [{"op": "remove", "path": f"/webhooks/{index}"}])
    watch = AlertWatch(prometheus, "FlyteResourcesWebhookConfigReloadRefused", "config.yaml edited to an invalid one")
    try:
        wait_until(lambda: _patched(core, {"data": {"config.yaml": invalid}}), timeout=30, what="the edit to land")
        alerts = watch.firing(count=2)
        assert {a["labels"]["pod"] for a in alerts} == {p["metadata"]["name"] for p in live.webhook_pods()}
    finally:
        core.patch_namespaced_config_map(RELEASE_NAME, NAMESPACE, {"data": {"config.yaml": original}})
        admission.patch_mutating_webhook_configuration(
            RELEASE_NAME, [{"op": "add", "path": f"/webhooks/{index}", "value": entry}]
        )
    watch.cleared()


def _patched(core: Any, body: dict[str, Any]) -> bool:
    """The ConfigMap patched; False while the API server still calls a webhook entry just removed (its cache)."""
    from kubernetes.client.exceptions import ApiException

    try:
        core.patch_namespaced_config_map(RELEASE_NAME, NAMESPACE, body)
    except ApiException:
        return False
    return True


def test_denied_pods_fire_denials_jump_under_their_policy_and_it_clears(stack: Stack) -> None:
    from kubernetes import client

    live, prometheus = stack.live, stack.prometheus
    live.ensure_namespace(DENIED_NAMESPACE)
    live.wait_default_service_account(DENIED_NAMESPACE)
    core = _core(live)
    watch = AlertWatch(prometheus, "FlyteResourcesWebhookDenialsJump", "pods over the policy's max-gpus, ~4/s",
                       {"policy": DRILL_POLICY})  # fmt: skip
    # A baseline to jump from: the record's 30 s average needs 30 s of history (Prometheus is new here).
    history = f'count_over_time(flyte_resources_webhook:denials:rate{{policy="{DRILL_POLICY}"}}[30s])'
    wait_until(lambda: (_query_value(prometheus, history) or 0) >= 25, timeout=40, what="30 s of rate history")
    watch.t0 = time.monotonic()
    denied = 0

    def send_until_firing() -> list[dict[str, Any]] | None:
        nonlocal denied
        try:
            core.create_namespaced_pod(DENIED_NAMESPACE, _denied_pod(f"denied-{denied}"))
        except client.ApiException as exc:
            assert exc.status == 400 and DRILL_POLICY in (exc.body or ""), exc.body
            denied += 1
        else:
            raise AssertionError("a pod over the policy's max-gpus was admitted")
        time.sleep(0.25)
        return watch.firing_now()

    (alert,) = _repeat_until(send_until_firing, timeout=60, what="DenialsJump firing while pods are denied")
    watch.done_firing(extra={"pods denied": denied})
    assert alert["labels"]["namespace"] == NAMESPACE and f"policy {DRILL_POLICY}" in alert["annotations"]["description"]
    watch.cleared(timeout=40)


def test_a_killed_replica_fires_restarts_and_it_clears(stack: Stack) -> None:
    live, prometheus = stack.live, stack.prometheus
    victim = _ready_pods(live)[0]
    name = victim["metadata"]["name"]
    watch = AlertWatch(prometheus, "FlyteResourcesWebhookRestarts", "SIGKILL of one replica's webhook process",
                       {"pod": name})  # fmt: skip
    signal_webhook(victim["status"]["podIP"], signal.SIGKILL)
    watch.firing(pending=False)  # `for: 0s`: firing at the first evaluation that sees the new start time
    restarts = _core(live).read_namespaced_pod(name, NAMESPACE).status.container_statuses[0].restart_count
    assert restarts >= 1, "the kubelet restarted the container"
    watch.cleared(timeout=60)  # once the restart is older than the 20 s window
    _ready_pods(live)


def test_hung_replicas_fire_target_down_and_no_ready_replica_and_they_clear(stack: Stack) -> None:
    live, prometheus = stack.live, stack.prometheus
    ips = [p["status"]["podIP"] for p in _ready_pods(live)]
    down = AlertWatch(prometheus, "FlyteResourcesWebhookTargetDown", "SIGSTOP of both replicas")
    none_ready = AlertWatch(prometheus, "FlyteResourcesWebhookNoReadyReplica", "SIGSTOP of both replicas")
    for ip in ips:
        signal_webhook(ip, signal.SIGSTOP)
    try:
        # Both looked at on every poll, so neither's pending phase passes unseen.
        def both_firing() -> bool:
            looks = (down.firing_now(), none_ready.firing_now())
            return bool(looks[0] and len(looks[0]) == 2 and looks[1])

        wait_until(both_firing, timeout=20, interval=0.25, what="TargetDown (both) and NoReadyReplica firing")
        down.done_firing()
        none_ready.done_firing()
    finally:
        for ip in ips:
            signal_webhook(ip, signal.SIGCONT)
    down.cleared()
    none_ready.cleared()


def _cluster_role(live: LiveCluster) -> Any:
    from kubernetes import client

    return client.RbacAuthorizationV1Api(live.api_client()).read_cluster_role(RELEASE_NAME)


def _set_cluster_role_rules(live: LiveCluster, rules: list[dict[str, Any]]) -> None:
    from kubernetes import client

    client.RbacAuthorizationV1Api(live.api_client()).patch_cluster_role(RELEASE_NAME, {"rules": rules})


def test_an_untrusted_certificate_fires_and_the_repaired_ca_bundle_clears_it(stack: Stack) -> None:
    """Someone replaces the caBundle with another CA while the webhook may not patch its configuration (its
    ClusterRole lost `patch`): each replica sees at its next check that the caBundle does not trust its
    certificate, /readyz fails and the gauge drops. With `patch` back, the next check restores the union."""
    live, prometheus = stack.live, stack.prometheus
    api = live.api_client()
    original_rules = api.sanitize_for_serialization(_cluster_role(live).rules)
    without_patch = [
        {**rule, "verbs": [v for v in rule["verbs"] if v != "patch"]}
        if "mutatingwebhookconfigurations" in rule.get("resources", [])
        else rule
        for rule in original_rules
    ]
    assert without_patch != original_rules
    foreign_ca, _ = generate_ca(common_name="not-the-webhooks-ca")
    untrusted = AlertWatch(prometheus, "FlyteResourcesWebhookCertificateUntrusted",
                           "caBundle replaced by another CA, ClusterRole without patch")  # fmt: skip
    _set_cluster_role_rules(live, without_patch)
    try:
        live.kubectl(
            "patch", "mutatingwebhookconfiguration", RELEASE_NAME, "--type=json", "-p",
            json.dumps([{"op": "replace", "path": "/webhooks/0/clientConfig/caBundle",
                         "value": base64.b64encode(foreign_ca).decode()}]),
        )  # fmt: skip
        untrusted.firing(count=2, timeout=CHECK_INTERVAL * 2 + 20)
    finally:
        _set_cluster_role_rules(live, original_rules)
    untrusted.cleared(timeout=CHECK_INTERVAL * 2 + 20)
    _ready_pods(live)


def test_a_deleted_secret_is_replaced_without_an_untrusted_certificate(stack: Stack) -> None:
    """The union caBundle keeps every replica trusted while one of them writes a new Secret with a new CA: no
    false alarm, while the certificate served changes."""
    live, prometheus = stack.live, stack.prometheus
    before = _expiries(prometheus)
    assert len(before) == 2
    _core(live).delete_namespaced_secret(SECRET, NAMESPACE)
    start = time.monotonic()
    seen: set[str] = set()

    def both_renewed() -> bool:
        seen.update(a["labels"]["alertname"] for a in prometheus.alerts())
        now = _expiries(prometheus)
        return set(now) == set(before) and all(now[p] != before[p] for p in now)

    wait_until(both_renewed, timeout=CHECK_INTERVAL * 3 + 20, what="both replicas serving the new Secret's certificate")
    FIGURES["deleted Secret"] = {"both serve a new certificate s": round(time.monotonic() - start, 1)}
    deadline = time.monotonic() + CHECK_INTERVAL + 4  # longer than the alert's `for`
    while time.monotonic() < deadline:
        seen.update(a["labels"]["alertname"] for a in prometheus.alerts())
        time.sleep(0.25)
    FIGURES["deleted Secret"]["alerts seen"] = sorted(seen)
    assert not seen & {"FlyteResourcesWebhookCertificateUntrusted", "FlyteResourcesWebhookNoReadyReplica"}, seen


def test_a_short_certificate_lifetime_fires_expiry_and_the_renewed_certificate_clears_it(stack: Stack) -> None:
    """Installed with 10-minute certificates, the expiry alert (14.4 minutes) fires; `helm upgrade` to the
    chart's default lifetime has the new pods renew the Secret's certificate for a year, and it clears."""
    live, prometheus = stack.live, stack.prometheus
    expiry = AlertWatch(prometheus, "FlyteResourcesWebhookCertificateExpiry", "10-minute certificates (duration: 10m)")
    alerts = expiry.firing(count=2, pending=False)  # firing since the install
    for alert in alerts:
        assert float(alert["value"]) <= 600
    defaults = {**CHART_VALUES, "certificates": {"selfManaged": {"checkIntervalSeconds": CHECK_INTERVAL}}}
    # --force-conflicts: the drills above edited the ConfigMap and the ClusterRole (their field manager).
    upgrade_s = live.upgrade(defaults, extra=["--force-conflicts"])
    expiry.figures["helm upgrade --wait s"] = round(upgrade_s, 1)
    expiry.cleared(timeout=CHECK_INTERVAL * 2 + 30)
    remaining = _query_value(prometheus, "min(flyte_resources_webhook:certificate_expiry_seconds)")
    assert remaining is not None and remaining > 300 * 86400
