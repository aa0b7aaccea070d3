"""The chart's PrometheusRule and Grafana dashboard: `promtool check rules` and `promtool test rules`
(tests/chart/alerts.promtool.yaml: a firing and a non-firing case for every alert) on the rules exactly as
`helm template` renders them, the thresholds as values, and every dashboard query against the rules and metrics
that exist. promtool comes from Debian's `prometheus` package (`make prometheus`); without it these tests fail.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from hack import manifests
from hack.cluster.chart import CHART_DIR as CHART
from hack.cluster.chart import RELEASE_NAME as RELEASE
from hack.cluster.chart import WEBHOOK_NAMESPACE as NAMESPACE
from hack.cluster.processes import MissingBinaries
from hack.cluster.prometheus import DASHBOARD_FILE, dashboard_queries, tool
from webhook.engine.config import WebhookConfig
from webhook.operator.metrics import Metrics
from webhook.operator.reload import ConfigMetrics

UNIT_TESTS = Path(__file__).with_name("alerts.promtool.yaml")
RUNBOOK_BASE = "https://example.org/charts/flyte-resources-webhook/README.md"
ALERTS = (
    "FlyteResourcesWebhookNoReadyReplica",
    "FlyteResourcesWebhookTargetDown",
    "FlyteResourcesWebhookReviewsErrored",
    "FlyteResourcesWebhookDenialsJump",
    "FlyteResourcesWebhookSlowReviews",
    "FlyteResourcesWebhookCertificateExpiry",
    "FlyteResourcesWebhookCertificateUntrusted",
    "FlyteResourcesWebhookConfigReloadRefused",
    "FlyteResourcesWebhookRestarts",
)
# Series that come from elsewhere than the webhook: Prometheus itself, and kube-state-metrics.
FOREIGN_METRICS = {"up", "kube_pod_container_status_restarts_total"}


def promtool() -> str:
    try:
        return tool("promtool")
    except MissingBinaries as exc:
        pytest.fail(str(exc), pytrace=False)


def helm() -> str:
    binary = manifests.bin_dir() / "helm"
    if not binary.exists():
        pytest.fail(f"helm not found at {binary}: run `make control-plane`", pytrace=False)
    return str(binary)


def _template(values: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    args = [helm(), "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for key, value in values.items():
        args += ["--set-json", f"{key.replace('__', '.')}={json.dumps(value)}"]
    return subprocess.run(args, capture_output=True, text=True, check=False)


def render(**values: Any) -> list[dict[str, Any]]:
    """Rendered documents; keyword values are dotted paths with `__` for dots."""
    proc = _template(values)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def render_error(**values: Any) -> str:
    proc = _template(values)
    assert proc.returncode != 0, f"helm template accepted {values}"
    return proc.stderr


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    return found


def rule_groups(**values: Any) -> dict[str, Any]:
    spec: dict[str, Any] = find(render(metrics__prometheusRule__enabled=True, **values), "PrometheusRule")["spec"]
    return spec


def write_rules(tmp_path: Path, **values: Any) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rule_groups(**values)))
    return path


def unit_tests(rules_file: Path) -> dict[str, Any]:
    """The promtool unit tests on `rules_file`, its groups evaluated in the chart's order: the alerts read the
    recorded series, and without `group_eval_order` promtool may evaluate the alerts first at an instant, so that
    an alert's value is a minute old (a certificate then expires in 13d 23h 46m, not 45m)."""
    tests = yaml.safe_load(UNIT_TESTS.read_text())
    tests["rule_files"] = [rules_file.name]
    tests["group_eval_order"] = [group["name"] for group in yaml.safe_load(rules_file.read_text())["groups"]]
    return dict(tests)


def rules(groups: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in groups["groups"] for rule in group["rules"]]


def alert(groups: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [r for r in rules(groups) if r.get("alert") == name]
    return found


# --------------------------------------------------------------------------------------------- promtool


def test_promtool_checks_the_rendered_rules(tmp_path: Path) -> None:
    proc = subprocess.run(
        [promtool(), "check", "rules", str(write_rules(tmp_path))], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules(rule_groups()))} rules found" in proc.stdout


def test_promtool_unit_tests_fire_and_do_not_fire_every_alert(tmp_path: Path) -> None:
    tests = unit_tests(write_rules(tmp_path, metrics__prometheusRule__runbookBaseUrl=RUNBOOK_BASE))
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    proc = subprocess.run(
        [promtool(), "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout
    firing: set[str] = set()
    quiet: set[str] = set()
    for group in tests["tests"]:
        for case in group.get("alert_rule_test", []):
            (firing if case["exp_alerts"] else quiet).add(case["alertname"])
    assert firing == quiet == set(ALERTS), "each alert needs a firing and a non-firing case"


def test_a_wrong_expectation_fails_the_unit_tests(tmp_path: Path) -> None:
    """The harness can fail: a threshold moved by a value breaks the unit test that pins the default."""
    tests = unit_tests(write_rules(tmp_path, metrics__prometheusRule__alerts__certificateExpiry__days=1))
    tests["tests"] = [t for t in tests["tests"] if t["name"] == "certificate expiry"]
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    proc = subprocess.run(
        [promtool(), "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert proc.returncode != 0 and "FlyteResourcesWebhookCertificateExpiry" in proc.stdout + proc.stderr


# ------------------------------------------------------------------------------------------------ values


def test_off_by_default_like_the_service_monitor() -> None:
    docs = render()
    assert "PrometheusRule" not in {d["kind"] for d in docs}
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"] == [RELEASE]


def test_every_alert_is_rendered_with_its_severity_and_can_be_turned_off() -> None:
    groups = rule_groups()
    assert [r["alert"] for r in rules(groups) if "alert" in r] == list(ALERTS)
    for rule in rules(groups):
        if "alert" in rule:
            assert rule["labels"]["severity"] in ("warning", "critical")
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
            assert "runbook_url" not in rule["annotations"]
    off = rule_groups(metrics__prometheusRule__alerts__restarts__enabled=False)
    assert "FlyteResourcesWebhookRestarts" not in [r.get("alert") for r in rules(off)]


def test_thresholds_labels_namespace_and_job_are_values() -> None:
    groups = rule_groups(
        metrics__prometheusRule__job="frw-metrics",
        metrics__prometheusRule__interval="15s",
        metrics__prometheusRule__rateWindow="2m",
        metrics__prometheusRule__additionalAlertLabels={"team": "ml-platform"},
        metrics__prometheusRule__runbookBaseUrl=RUNBOOK_BASE,
        metrics__prometheusRule__alerts__certificateExpiry__days=3,
        metrics__prometheusRule__alerts__slowReviews__timeoutRatio=0.8,
        metrics__prometheusRule__alerts__denialsJump__factor=5,
        metrics__prometheusRule__alerts__restarts__count=2,
        metrics__prometheusRule__alerts__restarts__window="30m",
        metrics__prometheusRule__alerts__certificateUntrusted__for="30s",
        webhook__timeoutSeconds=10,
    )
    assert {g["interval"] for g in groups["groups"]} == {"15s"}
    selector = f'namespace="{NAMESPACE}",job="frw-metrics"'
    for rule in rules(groups):
        if "alert" in rule:
            assert rule["labels"]["team"] == "ml-platform"
            assert rule["annotations"]["runbook_url"] == f"{RUNBOOK_BASE}#{rule['alert'].lower()}"
        assert selector in rule["expr"] or "kube_pod_container_status_restarts_total" in rule["expr"], rule
    assert "[2m]" in alert_or_record(groups, "flyte_resources_webhook:reviews:rate")["expr"]
    assert alert(groups, "FlyteResourcesWebhookCertificateExpiry")["expr"].endswith("< 3 * 86400")
    assert alert(groups, "FlyteResourcesWebhookSlowReviews")["expr"].endswith("> 0.8 * 10")
    assert "> 5 * avg_over_time(" in alert(groups, "FlyteResourcesWebhookDenialsJump")["expr"]
    restarts = alert(groups, "FlyteResourcesWebhookRestarts")["expr"]
    assert restarts.count(">= 2") == 2 and restarts.count("[30m]") == 3
    assert alert(groups, "FlyteResourcesWebhookCertificateUntrusted")["for"] == "30s"
    # The kube-state-metrics side matches this release's pods by name (fullname-<hash>-<id>).
    assert f'pod=~"{RELEASE}-[a-z0-9]+-[a-z0-9]+"' in restarts
    rule_doc = find(
        render(metrics__prometheusRule__enabled=True, metrics__prometheusRule__namespace="monitoring",
               metrics__prometheusRule__labels={"release": "prometheus"}),
        "PrometheusRule",
    )  # fmt: skip
    assert rule_doc["metadata"]["namespace"] == "monitoring"
    assert rule_doc["metadata"]["labels"]["release"] == "prometheus"


def alert_or_record(groups: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in rules(groups) if name in (r.get("alert"), r.get("record")))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"metrics": {"prometheusRule": {"rateWindow": "5 minutes"}}}, "rateWindow"),
        ({"metrics": {"prometheusRule": {"alerts": {"slowReviews": {"timeoutRatio": 2}}}}}, "timeoutRatio"),
        ({"metrics": {"prometheusRule": {"alerts": {"restarts": {"count": 0}}}}}, "count"),
        ({"metrics": {"prometheusRule": {"alerts": {"certificateExpiry": {"dayz": 3}}}}}, "dayz"),
        ({"metrics": {"dashboard": {"label": {}}}}, "label"),
    ],
)
def test_schema_rejects_bad_rule_values(values: dict[str, Any], message: str) -> None:
    assert message in render_error(**values)


def test_each_alert_has_a_runbook_paragraph_in_the_chart_readme() -> None:
    readme = (CHART / "README.md").read_text()
    runbooks = readme.split("## Runbooks", 1)[1]
    headings = re.findall(r"^### (\w+)$", runbooks, flags=re.MULTILINE)
    assert headings[: len(ALERTS)] == list(ALERTS)


# ---------------------------------------------------------------------------------------------- dashboard


def test_dashboard_configmap_carries_the_chart_file_and_the_sidecar_label() -> None:
    docs = render(metrics__dashboard__enabled=True, metrics__dashboard__annotations={"grafana_folder": "Flyte"})
    configmap = find(docs, "ConfigMap", f"{RELEASE}-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "Flyte"}
    (text,) = configmap["data"].values()
    assert json.loads(text) == json.loads(DASHBOARD_FILE.read_text())


def _names(expr: str) -> set[str]:
    """Metric and record names in a PromQL expression (identifiers before `{`)."""
    return set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", expr))


def _exposed_metrics() -> set[str]:
    """What the webhook's /metrics exposes, read from its registry (counters with `_total`, histograms' series)."""
    metrics = Metrics()
    ConfigMetrics(metrics.registry, WebhookConfig())
    return {sample.name for family in metrics.registry.collect() for sample in family.samples}


def test_every_query_reads_a_recording_rule_or_a_metric_the_webhook_exposes() -> None:
    records = {r["record"] for r in rules(rule_groups()) if "record" in r}
    exposed = _exposed_metrics() | FOREIGN_METRICS
    queries = dashboard_queries(json.loads(DASHBOARD_FILE.read_text()))
    assert len(queries) >= 12
    for name in {n for q in queries for n in _names(q)}:
        assert name in records | exposed, f"dashboard query reads {name}, which nothing produces"
    for rule in rules(rule_groups()):
        for name in _names(rule["expr"]):
            assert name in records | exposed, f"rule {rule.get('alert') or rule.get('record')} reads {name}"


def test_dashboard_covers_what_the_issue_asks() -> None:
    text = DASHBOARD_FILE.read_text()
    for needle in ("reviews:rate", "review_duration_seconds:quantile", "denials:rate", "config_reloads_total",
                   "config_info", "certificate_expiry_seconds", "ready_replicas"):  # fmt: skip
        assert needle in text, needle


def test_manifests_stay_without_rules_and_dashboard() -> None:
    for path in manifests.REPO_ROOT.glob("manifests/*.yaml"):
        assert "PrometheusRule" not in path.read_text()
