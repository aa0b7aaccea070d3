"""`make bench`: admission throughput and latency of our server against kopf's own no-op mutating handler.

Both servers are kopf's HTTPS `WebhookServer` in a process of their own, as `flyte-resources-webhook run` builds
it (`webhook.operator.server.build_server`): ours answers from the mutation's JSON Patch, the floor runs kopf's
real admission path (`serve_admission_request`) with a handler that changes nothing. A separate client process
(wrk) POSTs AdmissionReviews of a realistic Flyte task pod (apiserver defaults and managedFields included, ~5 KB)
over keep-alive HTTPS at concurrency 8. Each mode runs 3 times; the median run counts.

A third server, "bare", answers a constant after decoding the JSON on the same listener: the most any handler
could reach here, which puts the p99 target in proportion. Fails (exit 1) when ours is below 0.8x the no-op
floor's throughput, its p99 is above 5 ms, or, with every pod distinct, it is below 2.5x the no-op floor.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import logging
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from hack.cluster.processes import free_port
from hack.webhook_process import cpu_seconds, local_options, rss_kib, spawn_ready

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "flyte-task-resources.yaml"
TARGET_RATIO = 0.8
TARGET_P99_MS = 5.0
TARGET_DISTINCT_RATIO = 2.5


def realistic_pod() -> dict[str, Any]:
    """The example Flyte pod as the apiserver hands it to a mutating webhook: defaults and managedFields set."""
    pod = yaml.safe_load(EXAMPLE.read_text())
    meta = pod["metadata"]
    meta.pop("name")
    meta["generateName"] = "a8x2kq9fz4rtw-n0-"
    meta["creationTimestamp"] = None
    meta["managedFields"] = [
        {
            "manager": "flytepropeller",
            "operation": "Update",
            "apiVersion": "v1",
            "time": "2026-11-26T10:00:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {
                    "f:annotations": {f"f:{k}": {} for k in meta["annotations"]},
                    "f:labels": {f"f:{k}": {} for k in meta["labels"]},
                    "f:ownerReferences": {'k:{"uid":"6f1c1d2e-6b1a-4a57-9a43-3f1c4d9d7e10"}': {}},
                },
                "f:spec": {
                    "f:containers": {
                        'k:{"name":"a8x2kq9fz4rtw-n0-0"}': {
                            ".": {},
                            "f:args": {},
                            "f:env": {
                                ".": {},
                                **{f'k:{{"name":"{e["name"]}"}}': {} for e in pod["spec"]["containers"][0]["env"]},
                            },
                            "f:image": {},
                            "f:imagePullPolicy": {},
                            "f:name": {},
                            "f:resources": {},
                            "f:terminationMessagePolicy": {},
                        }
                    },
                    "f:restartPolicy": {},
                    "f:schedulerName": {},
                    "f:serviceAccountName": {},
                },
            },
        }
    ]
    spec = pod["spec"]
    spec.update(
        dnsPolicy="ClusterFirst",
        enableServiceLinks=True,
        preemptionPolicy="PreemptLowerPriority",
        priority=0,
        securityContext={},
        terminationGracePeriodSeconds=30,
        tolerations=[
            {
                "key": "node.kubernetes.io/not-ready",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            },
            {
                "key": "node.kubernetes.io/unreachable",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            },
        ],
        volumes=[
            {
                "name": "kube-api-access-x7kqz",
                "projected": {
                    "defaultMode": 420,
                    "sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                        {
                            "downwardAPI": {
                                "items": [
                                    {
                                        "path": "namespace",
                                        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                                    }
                                ]
                            }
                        },
                    ],
                },
            }
        ],
    )
    container = spec["containers"][0]
    container.update(
        imagePullPolicy="IfNotPresent",
        terminationMessagePath="/dev/termination-log",
        volumeMounts=[
            {
                "name": "kube-api-access-x7kqz",
                "readOnly": True,
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
            }
        ],
    )
    pod["status"] = {}
    return pod


def admission_review(pod: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "8f3c4b1e-0000-4000-8000-000000000000",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": pod["metadata"]["namespace"],
            "operation": "CREATE",
            "userInfo": {
                "username": "system:serviceaccount:flyte:flytepropeller",
                "groups": ["system:serviceaccounts"],
            },
            "object": pod,
            "oldObject": None,
            "dryRun": False,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "flytepropeller"},
        },
    }


# --- server process -------------------------------------------------------------------------------------------


async def _serve(mode: str, port: int, cert_dir: Path) -> None:
    import kopf
    from kopf._cogs.structs import references
    from kopf._core.engines import admission, indexing
    from kopf._core.reactor import inventory

    from webhook.engine.config import WebhookConfig
    from webhook.operator.kopfseam import AdmissionServer
    from webhook.operator.review import PodReviewer
    from webhook.operator.server import HANDLER_ID, build_server

    class WithKopfFloor(AdmissionServer):
        """Ours, plus kopf's generic admission path at /noop: the floor, on the same listener."""

        async def _serve(self, fn: Any, request: Any) -> Any:
            if request.match_info.get("id") == "noop":
                return await kopf.WebhookServer._serve(fn, request)
            return await super()._serve(fn, request)

    registry = kopf.OperatorRegistry()

    @kopf.on.mutate("v1", "pods", id="noop", operations={"CREATE"}, registry=registry)
    async def noop(**_: Any) -> None:
        pass

    insights = references.Insights()
    insights.webhook_resources.add(references.Resource("", "v1", "pods", kind="Pod", namespaced=True))
    kopf_fn = _partial_kopf(admission.serve_admission_request, registry, insights, inventory, indexing)
    ours = build_server(local_options(port, cert_dir), PodReviewer(WebhookConfig.from_mapping({})))
    assert HANDLER_ID in ours.fast
    # The bare server: the same HTTPS listener and JSON decoding, a constant answer. Nothing can beat it.
    bare = {"bare": lambda review: {"response": {"uid": review["request"]["uid"], "allowed": True}}}
    server = WithKopfFloor(
        addr=ours.addr, port=ours.port, certfile=ours.certfile, pkeyfile=ours.pkeyfile, fast={**ours.fast, **bare}
    )
    async for _ in server(kopf_fn):
        print("READY", flush=True)
        await asyncio.Event().wait()


def _partial_kopf(fn: Any, registry: Any, insights: Any, inventory: Any, indexing: Any) -> Any:
    import kopf

    settings = kopf.OperatorSettings()
    memories = inventory.ResourceMemories()

    async def call(request: Any, **kwargs: Any) -> Any:
        return await fn(
            request,
            settings=settings,
            registry=registry,
            insights=insights,
            memories=memories,
            memobase=kopf.Memo(),
            indices=indexing.OperatorIndexers().indices,
            **kwargs,
        )

    return call


def server_main(mode: str, port: int, cert_dir: str) -> None:
    from webhook.operator.run import run_loop

    # As `run` configures it: INFO for our logger, no per-request access log.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("kopf").setLevel(logging.WARNING)
    run_loop(_serve(mode, port, Path(cert_dir)))  # the event loop `run` uses (uvloop), for both servers


# --- client ---------------------------------------------------------------------------------------------------

# wrk (C, epoll) drives the load: a Python client tops out near the server's own rate and would measure itself.
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()
-- "distinct": every request a pod of its own (its cpu request differs), so no answer can be reused.
if wrk.body:find("__CPU__", 1, true) then
  local bodies, n = {}, 0
  for i = 1, 4000 do bodies[i] = wrk.body:gsub("__CPU__", i .. "m") end
  request = function()
    n = n % #bodies + 1
    return wrk.format(nil, nil, nil, bodies[n])
  end
end
done = function(summary, latency, requests)
  io.write(string.format('{"requests": %d, "seconds": %f, "errors": %d, "p50_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration / 1e6,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def _wrk(url: str, body_file: Path, script: Path, seconds: int, connections: int) -> dict[str, float]:
    done = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", str(script), url],
        capture_output=True,
        text=True,
        env={**os.environ, "BENCH_BODY": str(body_file)},
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"bench: wrk failed: {done.stderr or done.stdout}")
    stats = json.loads(done.stdout.strip().splitlines()[-1])
    if stats["errors"]:
        raise SystemExit(f"bench: {stats['errors']} failed requests against {url}:\n{done.stdout}")
    return {
        "requests": stats["requests"],
        "rps": stats["requests"] / stats["seconds"],
        "p50_ms": stats["p50_us"] / 1000,
        "p99_ms": stats["p99_us"] / 1000,
    }


def _check_response(url: str, ca: Path, body: bytes, mode: str) -> None:
    """One request through Python first, so a server that answers wrongly fails the bench instead of winning it."""
    import urllib.request

    context = ssl.create_default_context(cafile=str(ca))
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, context=context, timeout=10) as reply:
        response = json.loads(reply.read())["response"]
    if not response.get("allowed") or (mode in ("ours", "distinct")) != ("patch" in response):
        raise SystemExit(f"bench: unexpected response from the {mode} server: {response}")


# --- orchestration --------------------------------------------------------------------------------------------


def run_mode(mode: str, work: Path, body_file: Path, args: argparse.Namespace) -> dict[str, float]:
    port = free_port()
    server = spawn_ready(
        [sys.executable, "-m", "hack.bench", "--serve", mode, "--port", str(port), "--cert-dir", str(work)],
        work / f"server-{mode}.log",
        f"bench: the {mode} server",
    )
    try:
        path = {"ours": "flyte-resources", "distinct": "flyte-resources", "noop": "noop", "bare": "bare"}[mode]
        url = f"https://127.0.0.1:{port}/{path}"
        if mode == "distinct":
            body_file = body_file.with_name("review-distinct.json")
        _check_response(url, work / "ca.crt", body_file.read_bytes().replace(b"__CPU__", b"1m"), mode)
        script = work / "bench.lua"
        script.write_text(WRK_SCRIPT)
        _wrk(url, body_file, script, args.warmup_seconds, args.concurrency)
        cpu_before = cpu_seconds(server.pid)
        result = _wrk(url, body_file, script, args.seconds, args.concurrency)
        result["server_cpu_ms_per_request"] = 1000 * (cpu_seconds(server.pid) - cpu_before) / result["requests"]
        result["server_rss_mib"] = rss_kib(server.pid) / 1024
        return result
    finally:
        server.terminate()
        server.wait(timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hack.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("BENCH_SECONDS", 10)), help="per run")
    parser.add_argument("--warmup-seconds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--output", type=Path, default=ROOT / "bench-results" / "latest.json")
    parser.add_argument("--serve", choices=["ours", "distinct", "noop", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cert-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        server_main(args.serve, args.port, args.cert_dir)
        return 0
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed (apt-get install wrk; `make bench` does it)", file=sys.stderr)
        return 2

    from webhook.operator.certs import generate_bundle, write_bundle

    work = Path(tempfile.mkdtemp(prefix="frw-bench-"))
    write_bundle(generate_bundle(ip_addresses=["127.0.0.1"], dns_names=["localhost"]), work)
    pod = realistic_pod()
    body = json.dumps(admission_review(pod)).encode()
    body_file = work / "review.json"
    body_file.write_bytes(body)
    distinct = copy.deepcopy(pod)
    distinct["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "__CPU__"
    (work / "review-distinct.json").write_bytes(json.dumps(admission_review(distinct)).encode())
    pod_size = len(json.dumps(pod))
    print(
        f"pod: {pod_size} bytes as JSON; {args.runs} runs x {args.seconds} s per mode, concurrency "
        f"{args.concurrency}, keep-alive HTTPS; {os.cpu_count()} CPUs"
    )

    modes = ("noop", "ours", "distinct", "bare")
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    for run in range(args.runs):
        for mode in modes:
            outcome = run_mode(mode, work, body_file, args)
            results[mode].append(outcome)
            print(
                f"  run {run + 1} {mode:8s}: {outcome['rps']:7.0f} req/s  p50 {outcome['p50_ms']:.2f} ms  "
                f"p99 {outcome['p99_ms']:.2f} ms  server CPU {outcome['server_cpu_ms_per_request']:.3f} ms/req  "
                f"RSS {outcome['server_rss_mib']:.0f} MiB"
            )

    def median_run(mode: str) -> dict[str, float]:
        runs = sorted(results[mode], key=lambda r: r["rps"])
        return runs[len(runs) // 2]

    ours, floor, bare = median_run("ours"), median_run("noop"), median_run("bare")
    distinct = median_run("distinct")
    ratio = ours["rps"] / floor["rps"]
    summary = {
        "pod_bytes": pod_size,
        "concurrency": args.concurrency,
        "seconds_per_run": args.seconds,
        "ours": ours,
        "ours_distinct_pods": distinct,
        "kopf_noop": floor,
        "bare_server": bare,
        "ratio": ratio,
        "distinct_ratio": distinct["rps"] / floor["rps"],
        "targets": {
            "ratio_min": TARGET_RATIO,
            "p99_ms_max": TARGET_P99_MS,
            "distinct_ratio_min": TARGET_DISTINCT_RATIO,
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"\nmedian of {args.runs}: ours {ours['rps']:.0f} req/s (p99 {ours['p99_ms']:.2f} ms), "
        f"kopf no-op {floor['rps']:.0f} req/s (p99 {floor['p99_ms']:.2f} ms): {ratio:.2f}x the no-op floor; "
        f"bare server {bare['rps']:.0f} req/s (p99 {bare['p99_ms']:.2f} ms); ours with every pod distinct "
        f"{distinct['rps']:.0f} req/s (p99 {distinct['p99_ms']:.2f} ms, {distinct['rps'] / floor['rps']:.2f}x)"
    )
    print(f"results: {args.output}")
    failures = []
    if ratio < TARGET_RATIO:
        failures.append(f"throughput {ratio:.2f}x the no-op handler, target >= {TARGET_RATIO}x")
    if ours["p99_ms"] > TARGET_P99_MS:
        failures.append(f"p99 {ours['p99_ms']:.2f} ms, target <= {TARGET_P99_MS} ms")
    if summary["distinct_ratio"] < TARGET_DISTINCT_RATIO:
        ratio_text = f"{summary['distinct_ratio']:.2f}x"
        failures.append(f"every pod distinct: {ratio_text} the no-op handler, target >= {TARGET_DISTINCT_RATIO}x")
    for failure in failures:
        print(f"FAIL: {failure}")
    if not failures:
        print("PASS: throughput and p99 targets met")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
