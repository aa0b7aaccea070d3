"""Our admission server in a process of its own, as `run` builds it, for the fuzz and soak tools.

No API server: the server is `webhook.operator.server.build_server` with the default configuration (or `--config`),
started the way kopf starts it after discovery. Endpoints other than ours are handed to a stand-in for kopf's
generic path that answers `allowed: true`, which is what kopf does for an id it does not know; a server that routes
an unknown path there instead of refusing it is caught by the tools. `POST /tool-stats` returns the CPU the server
spent per review (thread CPU time, so other processes on the machine do not count), measured around the part of the
request that runs after the body is read.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hack.cluster.processes import free_port

ROOT = Path(__file__).resolve().parents[1]
STATS_PATH = "tool-stats"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class _CpuMeter:
    """The slowest reviews by thread CPU time, and a count of those over `budget`."""

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self.count = 0
        self.over_budget = 0
        self.max_seconds = 0.0
        self.total_seconds = 0.0
        self.slowest: list[tuple[float, int]] = []  # (seconds, request bytes) of the five slowest

    def add(self, seconds: float, size: int = 0) -> None:
        self.slowest = sorted([*self.slowest, (seconds, size)], reverse=True)[:5]
        self.count += 1
        self.total_seconds += seconds
        self.max_seconds = max(self.max_seconds, seconds)
        self.over_budget += seconds > self.budget

    def stats(self) -> dict[str, Any]:
        return {
            "reviews": self.count,
            "cpu_max_ms": 1000 * self.max_seconds,
            "cpu_mean_ms": 1000 * self.total_seconds / max(self.count, 1),
            "over_budget": self.over_budget,
            "budget_ms": 1000 * self.budget,
            "slowest": [{"cpu_ms": 1000 * seconds, "request_bytes": size} for seconds, size in self.slowest],
        }


def local_options(port: int, cert_dir: Path) -> Any:
    """`ServerOptions` for 127.0.0.1:`port` with the tls.crt, tls.key and ca.crt of `cert_dir`."""
    from webhook.operator.server import ServerOptions

    return ServerOptions(
        addr="127.0.0.1",
        port=port,
        cert_file=cert_dir / "tls.crt",
        key_file=cert_dir / "tls.key",
        ca_file=cert_dir / "ca.crt",
    )


async def _serve(port: int, cert_dir: Path, config_file: Path | None = None) -> None:
    from webhook.operator.review import PodReviewer
    from webhook.operator.server import HANDLER_ID, build_server
    from webhook.operator.settings import load_config

    server = build_server(local_options(port, cert_dir), PodReviewer(load_config(config_file, {})))
    meter = _CpuMeter(budget=0.005)
    # Measure where the server's own code runs once the body is in: `_answer` (decode, review, encode) when the
    # server has it, else the reviewer alone.
    if hasattr(server, "_answer"):
        answer = server._answer

        def measured_answer(handler: Any, body: bytes) -> Any:
            started = time.thread_time()
            try:
                return answer(handler, body)
            finally:
                meter.add(time.thread_time() - started, len(body))

        server._answer = measured_answer  # type: ignore[method-assign]
    else:
        handler = server.fast[HANDLER_ID]

        def measured_handler(review: Any) -> Any:
            started = time.thread_time()
            try:
                return handler(review)
            finally:
                meter.add(time.thread_time() - started)

        server.fast[HANDLER_ID] = measured_handler
    server.fast[STATS_PATH] = lambda _: {"stats": meter.stats(), "rss_kib": rss_kib(os.getpid())}

    async def kopf_stand_in(request: Any, **_: Any) -> Any:
        uid = request.get("request", {}).get("uid", "") if isinstance(request, dict) else ""
        return {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": uid, "allowed": True},
        }

    async for _ in server(kopf_stand_in):
        print("READY", flush=True)
        await asyncio.Event().wait()


def spawn_ready(argv: list[str], log: Path, what: str, cwd: Path = ROOT) -> subprocess.Popen[str]:
    """Start a server process whose first line on stdout is READY once it listens (stderr goes to `log`)."""
    with log.open("ab") as log_file:
        process = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=log_file, text=True)
    line = process.stdout.readline() if process.stdout else ""
    if "READY" not in line:
        process.terminate()
        process.wait(timeout=10)
        raise SystemExit(f"{what} did not start; see {log}")
    return process


@dataclass
class RunningServer:
    process: subprocess.Popen[str]
    port: int
    ca_file: Path

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}/{path}"


@contextlib.contextmanager
def running_server(work: Path, config_file: Path | None = None) -> Iterator[RunningServer]:
    """Start the server process with a fresh CA and certificate in `work` (and `config_file`, else the default
    configuration); stop it on exit."""
    from webhook.operator.certs import generate_bundle, write_bundle

    write_bundle(generate_bundle(ip_addresses=["127.0.0.1"], dns_names=["localhost"]), work)
    port = free_port()
    process = spawn_ready(
        [
            sys.executable,
            *("-m", "hack.webhook_process", "--port", str(port), "--cert-dir", str(work)),
            *(("--config", str(config_file)) if config_file else ()),
        ],
        work / "server.log",
        "the webhook server",
        cwd=Path.cwd() if (Path.cwd() / "webhook").is_dir() else ROOT,
    )
    try:
        yield RunningServer(process, port, work / "ca.crt")
    finally:
        process.terminate()
        process.wait(timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hack.webhook_process", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert-dir", type=Path, required=True)
    parser.add_argument("--config", type=Path, help="a config file (default: the default configuration)")
    args = parser.parse_args(argv)
    from webhook.operator.run import run_loop

    # As `run` configures it: INFO for our logger, no per-request access log.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("kopf").setLevel(logging.WARNING)
    run_loop(_serve(args.port, args.cert_dir, args.config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
