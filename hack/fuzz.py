"""`make fuzz`: hostile AdmissionReviews against the running HTTPS server; counts what a webhook must never do.

Reviews are generated from a seed (the same seed, the same reviews): well-formed pods with random annotation
values (quantities with long digit runs and odd suffixes, JSON nested deep, unknown accelerators, values up to
and over the 4 KiB cap), structurally broken reviews (any field of the review or the pod replaced by a value of
another type, non-string annotations, a `uid` nested deep), bodies that are not AdmissionReviews, unknown URL
paths, and pods of 1.1 MB and close to 3 MiB. Each reply is checked:

* a body with an AdmissionReview `request` must be answered 200 with a valid `admission.k8s.io/v1`
  AdmissionReview (string `uid`, boolean `allowed`, a base64 JSON Patch list when patched, a status with an
  integer code and a string message when denied, never `code: 500`);
* any other body on our path must be a 400 (413 above the 3 MiB limit), an unknown path a 404;
* nothing may be a 5xx.

Prints the counts, the client-side p99 and maximum latency and the server's maximum CPU time per review;
exit status 1 when any reply was a 5xx or invalid.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import random
import ssl
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from webhook.engine.config import DEFAULT_ANNOTATION_PREFIX

ROOT = Path(__file__).resolve().parents[1]
POLICY_CONFIG = ROOT / "examples" / "config" / "policies.yaml"
P = DEFAULT_ANNOTATION_PREFIX
HANDLER_PATH = "flyte-resources"
MAX_BODY = 3 * 1024 * 1024
ANNOTATION_CAP = 4096
DEEP = 3000  # beyond any JSON parser's default nesting limit

KEYS = ("cpu", "mem", "memory", "gpu", "ephemeral_storage", "ephemeral-storage", "storage", "cpu ", "", "x")
SUFFIXES = ("", "m", "k", "M", "G", "Ki", "Mi", "Gi", "Ti", "Ei", "e3", "E2", "e", "i", "mi", "KB", "n", "u", "Gi ")
ACCELERATORS = (
    "A100",
    "A100.partition_1g_5gb",
    "A100.unpartitioned",
    "T4",
    "V5E.slice_2x4",
    "nvidia-tesla-a100",
    "nvidia-tesla-a100:1g.5gb",
    "nvidia-l4",
    "A999",
    "A100.partition_9g_99gb",
    ":",
    "nvidia-tesla-a100:",
)


# --- generation -----------------------------------------------------------------------------------------------


def _digits(rng: random.Random) -> str:
    shape = rng.random()
    if shape < 0.5:
        return str(rng.randint(0, 10 ** rng.randint(1, 6)))
    if shape < 0.7:
        return "0" * rng.randint(1, ANNOTATION_CAP) + rng.choice(("1", "x", "", "m"))
    if shape < 0.8:
        return "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 400)))
    if shape < 0.9:
        return rng.choice(("１", "٣", "1.5", ".5", "1.", "-1", "+2", "1e309", "0x10", "1_000", "NaN", "inf"))
    return f"{rng.randint(0, 999)}.{'0' * rng.randint(0, 2000)}{rng.randint(0, 9)}"


def _quantity(rng: random.Random) -> str:
    return _digits(rng) + rng.choice(SUFFIXES)


def _resources_value(rng: random.Random) -> str:
    items = [(rng.choice(KEYS), rng.random()) for _ in range(rng.randint(0, 4))]
    if rng.random() < 0.5:
        parts = []
        for key, pair in items:
            value = f"{_quantity(rng)}:{_quantity(rng)}" if pair < 0.3 else _quantity(rng)
            parts.append(f"{key}={value}")
        return rng.choice((",", ", ", ",,", ";")).join(parts)
    obj: dict[str, Any] = {}
    for key, pair in items:
        obj[key] = [_quantity(rng), _quantity(rng)] if pair < 0.3 else _junk(rng, 2) if pair > 0.9 else _quantity(rng)
    return json.dumps(obj)


def _deep_json(rng: random.Random, depth: int) -> str:
    open_, close = rng.choice((("[", "]"), ('{"cpu":', "}")))
    return open_ * depth + "1" + close * depth


def _junk(rng: random.Random, depth: int = 3) -> Any:
    """A JSON value of any type: what a hostile client can put where a field is expected."""
    choice = rng.randrange(12 if depth > 0 else 9)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice((True, False))
    if choice == 2:
        return rng.choice((0, -1, 1, 2**31, 2**63 - 1, -(2**63)))
    if choice == 3:
        return rng.choice((0.5, -1e300, 1e-300, 3.0))
    if choice == 4:
        return ""
    if choice == 5:
        return rng.choice(("x", "CREATE", "default", "ns/x", "\u0000", "é", "\ud7ff", "../../"))
    if choice == 6:
        return "x" * rng.randint(1, 64 * 1024)
    if choice == 7:
        return []
    if choice == 8:
        return {}
    if choice == 9:
        return [_junk(rng, depth - 1) for _ in range(rng.randint(1, 3))]
    if choice == 10:
        return {rng.choice(("name", "metadata", "x", "")): _junk(rng, depth - 1) for _ in range(rng.randint(1, 3))}
    nested: Any = 1
    for _ in range(rng.choice((10, 100, 500, 1000))):
        nested = [nested]
    return nested


def annotation_value(rng: random.Random, name: str) -> str:
    """A value for our annotation `name`, valid or not, up to (and sometimes over) the 4 KiB cap."""
    roll = rng.random()
    if roll < 0.03:
        return "0" * rng.randint(ANNOTATION_CAP, 900_000) + "1"  # over the cap: must be denied, not cached
    if roll < 0.06:
        return _deep_json(rng, rng.choice((50, 500, DEEP)))
    if roll < 0.09:
        return "".join(chr(rng.randint(0, 0x2FFF)) for _ in range(rng.randint(0, 200)))
    if name in ("resources", "requests", "limits"):
        return _resources_value(rng)
    if name == "accelerator":
        base = rng.choice(ACCELERATORS)
        return base if rng.random() < 0.8 else base + "x" * rng.randint(1, ANNOTATION_CAP)
    if name == "shared-memory":
        return rng.choice(("true", "false", "True", "", "yes")) if rng.random() < 0.5 else _quantity(rng)
    if name == "extended-resources":
        gpu: dict[str, Any] = {"device": rng.choice(ACCELERATORS)}
        if rng.random() < 0.5:
            gpu[rng.choice(("partitionSize", "unpartitioned", "x"))] = rng.choice(("1g.5gb", True, "", "３g"))
        body: dict[str, Any] = {"gpuAccelerator": gpu if rng.random() < 0.9 else _junk(rng)}
        if rng.random() < 0.5:
            body["sharedMemory"] = {"mountPath": "/dev/shm", "sizeLimit": _quantity(rng)}
        return json.dumps(body)
    if name == "gpu-resource-key":
        return rng.choice(("amd.com/gpu", "nvidia.com/gpu", "x", "a/b/c", "")) + "x" * rng.choice((0, 0, 300))
    return rng.choice(("main", "primary", "missing", "", "x" * 300))


NAMES = ("resources", "requests", "limits", "accelerator", "shared-memory", "extended-resources", "gpu-resource-key")


def base_review(rng: random.Random, annotations: dict[str, Any]) -> dict[str, Any]:
    containers = [
        {
            "name": name,
            "image": "ghcr.io/flyteorg/flytekit:py3.11",
            "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
        }
        for name in ("main", "sidecar")[: rng.randint(1, 2)]
    ]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "task-", "namespace": "flyte", "annotations": annotations},
        "spec": {"containers": containers},
    }
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": f"{rng.getrandbits(128):032x}",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "operation": "CREATE",
            "namespace": "flyte",
            "userInfo": {"username": "fuzz"},
            "object": pod,
        },
    }


def _our_annotations(rng: random.Random) -> dict[str, Any]:
    names = rng.sample(NAMES, rng.randint(1, 3))
    return {P + name: annotation_value(rng, name) for name in names}


def _break(rng: random.Random, review: dict[str, Any]) -> None:
    """Replace one field of the review or the pod with a value of another type."""
    request = review["request"]
    pod = request["object"]
    targets: list[tuple[Any, Any]] = [
        (review, "request"),
        (review, "apiVersion"),
        (request, "uid"),
        (request, "object"),
        (request, "operation"),
        (request, "namespace"),
        (request, "name"),
        (pod, "metadata"),
        (pod["metadata"], "annotations"),
        (pod["metadata"], "name"),
        (pod["metadata"], "generateName"),
        (pod["metadata"], "namespace"),
        (pod, "spec"),
        (pod["spec"], "containers"),
        (pod["spec"], "volumes"),
        (pod["spec"], "tolerations"),
        (pod["spec"], "affinity"),
        (pod["spec"], "nodeSelector"),
        (pod["spec"]["containers"][0], "resources"),
        (pod["spec"]["containers"][0], "name"),
        (pod["spec"]["containers"][0], "volumeMounts"),
        (pod["spec"]["containers"][0]["resources"], "requests"),
        (pod["spec"]["containers"][0]["resources"]["limits"], "cpu"),
        (pod["spec"]["containers"], 0),
    ]
    annotations = pod["metadata"]["annotations"]
    if annotations:
        targets.append((annotations, next(iter(annotations))))  # a non-string annotation value
    for _ in range(rng.randint(1, 3)):
        container, key = rng.choice(targets)
        if rng.random() < 0.1 and isinstance(container, dict):
            container.pop(key, None)
        else:
            container[key] = _junk(rng)


@dataclass
class Case:
    path: str
    body: bytes
    expect: str  # "review": a valid AdmissionReview; "bad": 400; "unknown": 404; "too-large": 413
    kind: str


def _expectation(value: Any) -> str:
    return "review" if isinstance(value, dict) and isinstance(value.get("request"), dict) else "bad"


def _dumps(value: Any) -> bytes:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
    except RecursionError:
        return b'{"request": ' * DEEP + b"1" + b"}" * DEEP


def fuzz_case(rng: random.Random) -> Case:
    """One review (or not-a-review) to post, and what its reply must be."""
    return _generated(rng, _fuzz_case)


def policy_case(rng: random.Random) -> Case:
    """A Flyte task pod with hostile values under every key a policy reads (`policy_review`)."""
    return _generated(rng, lambda r: Case(HANDLER_PATH, _dumps(policy_review(r)), "review", "policy-pod"))


def _generated(rng: random.Random, make: Any) -> Case:
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20_000))  # to build (not to parse) the deeply nested cases
    try:
        case: Case = make(rng)
    finally:
        sys.setrecursionlimit(limit)
    if len(case.body) > MAX_BODY:
        case.expect = "too-large"
    return case


# What policies read from a pod besides annotations: device counts under every resource name a policy counts, in
# every kind of container, and the node selection a pod may bring itself.
DEVICE_RESOURCES = ("nvidia.com/gpu", "amd.com/gpu", "google.com/tpu", "aws.amazon.com/neuron", "nvidia.com/mig-1g.5gb")
HOSTILE_COUNTS = ("1e999999", "1e100000", "9" * 64, "1E18", "0.5", "1e-9", "999999999Ei", "1", "2", "3", "8")
DOMAINS = ("development", "production", "staging", "x" * 63)


def _hostile_resources(rng: random.Random) -> dict[str, Any]:
    def side() -> dict[str, Any]:
        names = rng.sample((*DEVICE_RESOURCES, "cpu", "memory"), rng.randint(0, 4))
        return {n: rng.choice((*HOSTILE_COUNTS, _quantity(rng))) for n in names}

    return {"requests": side(), "limits": side()}


def policy_review(rng: random.Random) -> dict[str, Any]:
    """A Flyte task pod (labels as flytepropeller writes them) with hostile quantities under every key a policy
    reads: regular, init and sidecar containers, its own accelerator node selection, maybe our annotations."""
    review = base_review(rng, _our_annotations(rng) if rng.random() < 0.5 else {})
    domain, project = rng.choice(DOMAINS), rng.choice(("ml", "web", "vision"))
    request = review["request"]
    pod = request["object"]
    request["namespace"] = pod["metadata"]["namespace"] = rng.choice((f"{project}-{domain}", "flyte", "other"))
    pod["metadata"]["labels"] = {"project": project, "domain": domain, "task-name": "t", "workflow-name": "w"}
    spec = pod["spec"]
    for container in spec["containers"]:
        container["resources"] = _hostile_resources(rng)
    init = [{"name": f"init{i}", "resources": _hostile_resources(rng)} for i in range(rng.randint(0, 3))]
    for container in init:
        if rng.random() < 0.5:
            container["restartPolicy"] = "Always"
    if init:
        spec["initContainers"] = init
    device = rng.choice(("nvidia-tesla-a100", "nvidia-tesla-t4", "nvidia-l4", "tpu-v5-lite-podslice", "x" * 63))
    if rng.random() < 0.3:
        spec["nodeSelector"] = {"k8s.amazonaws.com/accelerator": device}
    if rng.random() < 0.3:
        term = {"matchExpressions": [{"key": "k8s.amazonaws.com/accelerator", "operator": "In", "values": [device]}]}
        spec["affinity"] = {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}
        }
    if rng.random() < 0.3:
        spec["tolerations"] = [{"key": "k8s.amazonaws.com/accelerator", "operator": "Equal", "value": device}]
    return review


def _fuzz_case(rng: random.Random) -> Case:
    roll = rng.random()
    if roll < 0.15:
        return Case(HANDLER_PATH, _dumps(policy_review(rng)), "review", "policy-pod")
    roll = rng.random()
    if roll < 0.02:  # a quantity that makes a backtracking grammar take seconds
        value = "cpu=" + "0" * rng.randint(1000, ANNOTATION_CAP - 8) + rng.choice(("x", "1x", "m!"))
        return Case(HANDLER_PATH, _dumps(base_review(rng, {P + "resources": value})), "review", "pathological")
    if roll < 0.40:
        review = base_review(rng, _our_annotations(rng))
        return Case(HANDLER_PATH, _dumps(review), "review", "annotations")
    if roll < 0.78:
        review = base_review(rng, _our_annotations(rng) if rng.random() < 0.8 else {})
        _break(rng, review)
        body = _dumps(review)
        deep = body.count(b"[") > 900 or body.count(b"{") > 900
        return Case(HANDLER_PATH, body, "any" if deep else _expectation(review), "broken")
    if roll < 0.88:
        body = rng.choice(
            (
                b"",
                b"{",
                b"not json",
                b"[]",
                b"null",
                b'"x"',
                b"{}",
                b'{"request": null}',
                b'{"request": "x"}',
                b'{"request": []}',
                b"\xff\xfe\x00",
                b'{"request": {"uid": 1}' + b" " * 10,
                b"[" * DEEP + b"]" * DEEP,
                b'{"a":' * DEEP + b"1" + b"}" * DEEP,
            )
        )
        return Case(HANDLER_PATH, body, "bad", "not-a-review")
    if roll < 0.93:
        review = base_review(rng, _our_annotations(rng))
        path = rng.choice(("", "x", "flyte-resources/x", "noop", "FLYTE-RESOURCES", "flyte-resources%00", "..%2f"))
        return Case(path, _dumps(review), "unknown", "unknown-path")
    if roll < 0.935:
        review = base_review(rng, {P + "resources": "cpu=1"})
        size = rng.choice((1_100_000, MAX_BODY - 64 * 1024))
        review["request"]["object"]["spec"]["containers"][0]["env"] = [{"name": "BIG", "value": "x" * size}]
        return Case(HANDLER_PATH, _dumps(review), "review", "large-pod")
    if roll < 0.937:
        review = base_review(rng, {P + "resources": "cpu=1"})
        review["request"]["object"]["metadata"]["labels"] = {"x": "y" * (MAX_BODY + 1024)}
        return Case(HANDLER_PATH, _dumps(review), "too-large", "too-large")
    review = base_review(rng, _our_annotations(rng))
    review["request"]["object"]["metadata"]["annotations"].update(
        {P + name: annotation_value(rng, name) for name in NAMES}
    )
    review["request"]["object"]["spec"]["containers"] *= rng.randint(1, 50)
    return Case(HANDLER_PATH, _dumps(review), "review", "every-annotation")


# --- checking -------------------------------------------------------------------------------------------------


def admission_review_problem(status: int, reply: bytes, request_uid: Any = None) -> str | None:
    """None when `reply` is a valid admission.k8s.io/v1 AdmissionReview answer, else what is wrong with it."""
    if status != 200:
        return f"HTTP {status}, not 200"
    try:
        review = json.loads(reply)
    except ValueError:
        return "reply is not JSON"
    if not isinstance(review, dict) or review.get("kind") != "AdmissionReview":
        return "reply is not an AdmissionReview"
    if review.get("apiVersion") != "admission.k8s.io/v1":
        return f"apiVersion {str(review.get('apiVersion'))[:40]!r}"
    response = review.get("response")
    if not isinstance(response, dict):
        return "no response"
    if not isinstance(response.get("uid"), str):
        return f"uid {type(response.get('uid')).__name__}, not a string"
    if isinstance(request_uid, str) and len(request_uid) <= 128 and response["uid"] != request_uid:
        return "uid not echoed"
    if not isinstance(response.get("allowed"), bool):
        return "allowed is not a boolean"
    if not all(isinstance(w, str) for w in response.get("warnings", [])):
        return "a warning is not a string"
    if "patch" in response:
        if response.get("patchType") != "JSONPatch" or not response["allowed"]:
            return "patch without patchType JSONPatch, or on a denial"
        try:
            ops = json.loads(base64.b64decode(response["patch"], validate=True))
        except (ValueError, binascii.Error):
            return "patch is not base64 JSON"
        if not isinstance(ops, list) or not all(isinstance(op, dict) and "op" in op for op in ops):
            return "patch is not a list of ops"
    if not response["allowed"]:
        status_ = response.get("status")
        if not isinstance(status_, dict) or not isinstance(status_.get("message"), str):
            return "denial without a status message"
        if not isinstance(status_.get("code"), int) or status_["code"] >= 500:
            return f"denial with code {status_.get('code')!r}"
    return None


def reply_problem(case: Case, status: int, reply: bytes, reason: str) -> str | None:
    if status >= 500:
        return f"HTTP {status}"
    if case.expect == "review":
        return admission_review_problem(status, reply, _request_uid(case.body))
    if case.expect == "any":
        return None if status == 400 else admission_review_problem(status, reply)
    wanted = {"bad": 400, "unknown": 404, "too-large": 413}[case.expect]
    if status != wanted:
        return f"HTTP {status}, wanted {wanted}"
    if status == 400 and not reason:
        return "400 without a reason"
    return None


def _request_uid(body: bytes) -> Any:
    try:
        return json.loads(body)["request"].get("uid")
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None


# --- driving --------------------------------------------------------------------------------------------------


@dataclass
class Report:
    sent: int = 0
    http_500: int = 0
    invalid: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    problems: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)  # one request body (its start) per problem
    kinds: Counter[str] = field(default_factory=Counter)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies or [0.0])
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def drive(url_base: str, ca_file: Path, cases: Any, *, concurrency: int, timeout: float, report: Report) -> None:
    import aiohttp

    context = ssl.create_default_context(cafile=str(ca_file))
    connector = aiohttp.TCPConnector(limit=concurrency, ssl=context)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:

        async def worker() -> None:
            for case in cases:
                started = time.perf_counter()
                problem: str | None
                try:
                    async with session.post(
                        f"{url_base}/{case.path}", data=case.body, headers={"Content-Type": "application/json"}
                    ) as reply:
                        body = await reply.read()
                        status, reason = reply.status, reply.reason or ""
                except (aiohttp.ClientError, TimeoutError) as exc:
                    problem, status = f"request failed: {type(exc).__name__}", 0
                else:
                    problem = reply_problem(case, status, body, reason)
                report.latencies.append(time.perf_counter() - started)
                report.sent += 1
                report.kinds[case.kind] += 1
                if problem:
                    report.problems[f"{case.kind}: {problem}"] += 1
                    report.examples.setdefault(problem, case.body[:300].decode("utf-8", "replace"))
                    if status >= 500:
                        report.http_500 += 1
                    elif status == 0:
                        report.errors += 1
                    else:
                        report.invalid += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def server_stats(url_base: str, ca_file: Path) -> dict[str, Any]:
    import urllib.request

    from hack.webhook_process import STATS_PATH

    context = ssl.create_default_context(cafile=str(ca_file))
    request = urllib.request.Request(f"{url_base}/{STATS_PATH}", data=b'{"request": {}}')
    with urllib.request.urlopen(request, context=context, timeout=10) as reply:
        return dict(json.loads(reply.read()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hack.fuzz", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reviews", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=10.0, help="client timeout per review, seconds")
    parser.add_argument(
        "--config",
        type=Path,
        help="the server's config file (default: the default configuration); make fuzz also runs "
        f"{POLICY_CONFIG.relative_to(ROOT)}, the README's policies with flyte-task-pods",
    )
    args = parser.parse_args(argv)

    from hack.webhook_process import running_server

    rng = random.Random(args.seed)
    cases = (fuzz_case(rng) for _ in range(args.reviews))
    report = Report()
    started = time.monotonic()
    with running_server(Path(tempfile.mkdtemp(prefix="frw-fuzz-")), args.config) as server:
        base = server.url("").rstrip("/")
        try:
            asyncio.run(
                drive(base, server.ca_file, cases, concurrency=args.concurrency, timeout=args.timeout, report=report)
            )
        finally:
            stats = server_stats(base, server.ca_file) if server.process.poll() is None else {}
    elapsed = time.monotonic() - started
    cpu = stats.get("stats", {})
    config = args.config or "the default configuration"
    print(
        f"fuzz: {report.sent} reviews in {elapsed:.0f} s (seed {args.seed}, concurrency {args.concurrency}, {config})"
    )
    print("  by kind: " + ", ".join(f"{k} {n}" for k, n in sorted(report.kinds.items())))
    print(f"  HTTP 5xx: {report.http_500}   invalid replies: {report.invalid}   failed requests: {report.errors}")
    print(
        f"  latency (client side): p99 {1000 * report.percentile(0.99):.2f} ms, "
        f"max {1000 * max(report.latencies or [0]):.1f} ms"
    )
    if cpu:
        print(
            f"  server CPU per review: max {cpu['cpu_max_ms']:.2f} ms, mean {cpu['cpu_mean_ms']:.3f} ms, "
            f"{cpu['over_budget']} over {cpu['budget_ms']:.0f} ms; server RSS {stats['rss_kib'] / 1024:.0f} MiB"
        )
        slowest = ", ".join(f"{s['cpu_ms']:.1f} ms ({s['request_bytes'] / 1024:.0f} KiB)" for s in cpu["slowest"])
        print(f"  slowest reviews (server CPU, request size): {slowest}")
    for problem, count in report.problems.most_common(20):
        print(f"  {count:6d}  {problem}")
    for problem, example in list(report.examples.items())[:8]:
        print(f"  example of {problem!r}: {example[:200]!r}")
    return 1 if report.http_500 or report.invalid or report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
