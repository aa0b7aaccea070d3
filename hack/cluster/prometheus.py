"""The chart's alerts and dashboard for tests: the PrometheusRule's groups as `helm template` renders them, the
dashboard's queries, and a real Prometheus (Debian's `prometheus` package, `make prometheus`) that scrapes the
live chart's pods the way the chart's ServiceMonitor has the Prometheus Operator do it: every address of the
Service's EndpointSlices (ready or not) on port `metrics`, with `namespace`, `pod`, `service` and `job` (= the
Service's name) as target labels.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from hack.cluster.chart import CHART_DIR, render_chart
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


def endpoint_slice_targets(api_client: Any, namespace: str, service: str, port_name: str = "metrics") -> list[dict]:
    """The scrape targets the Prometheus Operator makes of a ServiceMonitor's endpoint: every address of the
    Service's EndpointSlices, ready or not, on the named port, labelled `namespace`, `pod`, `service`, `job` (the
    Service's name) and `endpoint` (the port's name). As a file_sd target list."""
    from kubernetes import client

    slices = client.DiscoveryV1Api(api_client).list_namespaced_endpoint_slice(
        namespace, label_selector=f"kubernetes.io/service-name={service}"
    )
    groups = []
    for item in slices.items:
        ports = [p.port for p in item.ports or [] if p.name == port_name]
        for endpoint in item.endpoints or []:
            pod = endpoint.target_ref.name if endpoint.target_ref is not None else ""
            for address in endpoint.addresses or []:
                for port in ports:
                    labels = {"namespace": namespace, "pod": pod, "service": service, "job": service}
                    groups.append({"targets": [f"{address}:{port}"], "labels": labels | {"endpoint": port_name}})
    return sorted(groups, key=lambda g: g["targets"][0])


class Prometheus:
    """A Prometheus process on 127.0.0.1 scraping the targets `discover()` returns, with the given rules.

    Debian's Prometheus is built without Kubernetes service discovery, so the targets come through file_sd: a
    thread rewrites the targets file from `discover()` (e.g. `endpoint_slice_targets`) every half second, and
    Prometheus follows the file.
    """

    def __init__(
        self,
        run_dir: Path,
        discover: Callable[[], list[dict]],
        rule_groups: Mapping[str, Any],
        *,
        interval: str = "2s",
        scrape_timeout: str = "1500ms",
        job: str = "flyte-resources-webhook",
    ) -> None:
        self.run_dir = run_dir
        self.discover = discover
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: Process | None = None
        self.targets_file = run_dir / "targets.json"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.discovery_errors = 0
        self.config = {
            "global": {"scrape_interval": interval, "scrape_timeout": scrape_timeout, "evaluation_interval": interval},
            "rule_files": [str(run_dir / "rules.yaml")],
            "scrape_configs": [
                {
                    "job_name": job,
                    "file_sd_configs": [{"files": [str(self.targets_file)], "refresh_interval": "1s"}],
                }
            ],
        }
        self.rule_groups = dict(rule_groups)

    def _write_targets(self) -> None:
        text = json.dumps(self.discover())
        if self.targets_file.exists() and self.targets_file.read_text() == text:
            return
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.targets_file)  # Prometheus never reads half a file

    def _follow(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self._write_targets()
            except Exception:  # the API is briefly unavailable: keep the last targets, try again
                self.discovery_errors += 1

    def start(self) -> Prometheus:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "rules.yaml").write_text(yaml.safe_dump(self.rule_groups))
        self._write_targets()
        self._thread = threading.Thread(target=self._follow, name="prometheus-targets", daemon=True)
        self._thread.start()
        config_file = self.run_dir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(self.config))
        self.process = Process(
            "prometheus",
            [
                tool("prometheus"), f"--config.file={config_file}", f"--storage.tsdb.path={self.run_dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h",
            ],
            self.run_dir / "prometheus.log",
        ).start()  # fmt: skip
        wait_until(
            lambda: http_get(f"{self.url}/-/ready")[0] == 200, timeout=60, what="Prometheus ready",
            alive=self.process.exited,
        )  # fmt: skip
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
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
