"""`flyte-resources-webhook run` as a child process, with a generated CA and an IP-SAN serving certificate."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hack.cluster.processes import HarnessError, Process, free_port, http_get, wait_until

REVIEWS_METRIC = "flyte_resources_webhook_reviews_total"
WEBHOOK_READY_TIMEOUT = 60.0


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

    def start(self, *, wait: bool = True) -> WebhookProcess:
        """Launch the process; with wait=False, call `wait_ready()` later (several can then boot in parallel)."""
        self._config_file = self.run_dir / f"{self.name}.config.yaml"
        self._config_file.write_text(yaml.safe_dump(self.config or {"on-invalid": "reject"}))
        self._launch()
        return self.wait_ready() if wait else self

    def _launch(self) -> None:
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
            f"--config={self._config_file}",
            "--log-format=plain",
            *self.extra_args,
        ]
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PYTHONUNBUFFERED": "1"}
        env = {k: v for k, v in env.items() if not k.startswith("FRW_") or k == "FRW_BIN_DIR"}
        self.process = Process(self.name, argv, self.run_dir / f"{self.name}.log", env=env)
        self.process.start()

    def wait_ready(self, attempts: int = 3) -> WebhookProcess:
        """Until /readyz answers; relaunched on new ports when a port picked by free_port() was taken meanwhile."""
        for attempt in range(1, attempts + 1):
            assert self.process is not None
            try:
                wait_until(
                    lambda: http_get(self.probe_url + "/readyz")[0] == 200,
                    timeout=WEBHOOK_READY_TIMEOUT,
                    what=f"{self.name} /readyz on {self.probe_url}",
                    alive=self.process.exited,
                    interval=0.1,
                )
                return self
            except HarnessError as exc:
                self.process.stop()
                if attempt == attempts or "address already in use" not in str(exc).lower():
                    raise
                self._launch()
        raise AssertionError("unreachable")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def metrics_text(self) -> str:
        status, body = http_get(self.probe_url + "/metrics")
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
