"""The chart's alerts and dashboard for tests: the PrometheusRule's groups as `helm template` renders them, the
dashboard's queries, and a real Prometheus (Debian's `prometheus` package, `make prometheus`) that scrapes the
live chart's pods the way the chart's ServiceMonitor has the Prometheus Operator do it: Kubernetes service
discovery of the Service's EndpointSlices (ready or not), port `metrics`, with `namespace`, `pod`, `service` and
`job` (= the Service's name) as target labels.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from hack.cluster.chart import CHART_DIR, RELEASE_NAME, WEBHOOK_NAMESPACE, render_chart
from hack.cluster.processes import HarnessError, MissingBinaries, Process, free_port, http_get, wait_until

PROMETHEUS_RULE_TEMPLATE = "templates/prometheusrule.yaml"
DASHBOARD_FILE = CHART_DIR / "dashboards" / "flyte-resources-webhook.json"


def tool(name: str) -> str:
    """`prometheus` or `promtool` from PATH (Debian's package installs both in /usr/bin)."""
    found = shutil.which(name)
    if found is None:
        raise MissingBinaries(f"{name} not found: run `make prometheus` (Debian's prometheus package)")
    return found


def render_rule_groups(helm: Path | str, values: Mapping[str, Any] | None, work_dir: Path, **kwargs: Any) -> dict:
    """The `spec` of the chart's PrometheusRule (`groups`, a Prometheus rules file) for these values, with the
    rule enabled."""
    merged = dict(values or {})
    metrics = dict(merged.get("metrics") or {})
    metrics["prometheusRule"] = {**(metrics.get("prometheusRule") or {}), "enabled": True}
    merged["metrics"] = metrics
    docs = render_chart(helm, PROMETHEUS_RULE_TEMPLATE, values=merged, work_dir=work_dir, **kwargs)
    rules = [d for d in docs if d.get("kind") == "PrometheusRule"]
    if len(rules) != 1:
        raise HarnessError(f"expected one PrometheusRule from the chart, got {len(rules)}")
    return dict(rules[0]["spec"])


def dashboard_queries(dashboard: Mapping[str, Any]) -> list[str]:
    """Every panel target's `expr`, rows' nested panels included."""
    queries = []
    stack = list(dashboard.get("panels") or [])
    while stack:
        panel = stack.pop(0)
        stack.extend(panel.get("panels") or [])
        queries += [t["expr"] for t in panel.get("targets") or [] if t.get("expr")]
    return queries


class Prometheus:
    """A Prometheus process on 127.0.0.1 with one scrape job for the release's Service and the given rules."""

    def __init__(
        self,
        run_dir: Path,
        kubeconfig: Path,
        rule_groups: Mapping[str, Any],
        *,
        interval: str = "2s",
        scrape_timeout: str = "1500ms",
        namespace: str = WEBHOOK_NAMESPACE,
        service: str = RELEASE_NAME,
    ) -> None:
        self.run_dir = run_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: Process | None = None
        self.config = {
            "global": {"scrape_interval": interval, "scrape_timeout": scrape_timeout, "evaluation_interval": interval},
            "rule_files": [str(run_dir / "rules.yaml")],
            "scrape_configs": [
                {
                    "job_name": "flyte-resources-webhook",
                    "kubernetes_sd_configs": [
                        {
                            "role": "endpointslice",
                            "kubeconfig_file": str(kubeconfig),
                            "namespaces": {"names": [namespace]},
                        }
                    ],
                    "relabel_configs": [
                        {"source_labels": ["__meta_kubernetes_service_name"], "regex": service, "action": "keep"},
                        {
                            "source_labels": ["__meta_kubernetes_endpointslice_port_name"],
                            "regex": "metrics",
                            "action": "keep",
                        },
                        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                        {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
                        {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job"},
                    ],
                }
            ],
        }
        self.rule_groups = dict(rule_groups)

    def start(self) -> Prometheus:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "rules.yaml").write_text(yaml.safe_dump(self.rule_groups))
        config_file = self.run_dir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(self.config))
        self.process = Process(
            "prometheus",
            [
                tool("prometheus"), f"--config.file={config_file}", f"--storage.tsdb.path={self.run_dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-lifecycle",
                "--storage.tsdb.retention.time=1h", "--log.level=info",
            ],
            self.run_dir / "prometheus.log",
        ).start()  # fmt: skip
        wait_until(
            lambda: http_get(f"{self.url}/-/ready")[0] == 200, timeout=60, what="Prometheus ready",
            alive=self.process.exited,
        )  # fmt: skip
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def _api(self, path: str, **params: str) -> Any:
        status, body = http_get(f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}", timeout=10)
        if status != 200:
            raise HarnessError(f"Prometheus {path} {params}: HTTP {status}: {body[:500]}")
        reply = json.loads(body)
        if reply.get("status") != "success":
            raise HarnessError(f"Prometheus {path} {params}: {reply}")
        return reply["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector `expr` evaluates to now (a list of {metric, value})."""
        data = self._api("query", query=expr, time=f"{time.time():.3f}")
        return list(data["result"]) if data["resultType"] == "vector" else [{"metric": {}, "value": data["result"]}]

    def alerts(self) -> list[dict[str, Any]]:
        """Pending and firing alerts ({labels, annotations, state, activeAt, value})."""
        return list(self._api("alerts")["alerts"])

    def alert_states(self, name: str) -> set[str]:
        return {a["state"] for a in self.alerts() if a["labels"].get("alertname") == name}

    def targets(self) -> list[dict[str, Any]]:
        return list(self._api("targets", state="active")["activeTargets"])

    def rule_health(self) -> list[tuple[str, str, str]]:
        """(name, health, lastError) of every loaded rule: a rule Prometheus cannot evaluate shows here."""
        out = []
        for group in self._api("rules")["groups"]:
            for rule in group["rules"]:
                out.append((rule["name"], rule["health"], rule.get("lastError", "")))
        return out
