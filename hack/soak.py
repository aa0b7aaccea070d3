"""`make soak`: 100,000 distinct AdmissionReviews with annotation values up to the 4 KiB cap; the server's RSS.

Every review differs from every other in its annotation values (so no answer can be reused and every cache sees
a new key), each value a few bytes to 4 KiB: padded JSON `resources` the webhook accepts, long accelerator and
device names it denies, quantities with long runs of leading zeros, `extended-resources` documents. The server
runs in its own process (as `run` builds it); its RSS is read from /proc every 1,000 reviews. A webhook whose
memory grows with what it has seen fails here: the target is RSS after 100,000 reviews within 10 MiB of RSS
after the first 1,000 (exit status 1 otherwise, or when any reply was a 5xx or not a valid AdmissionReview).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from hack.fuzz import ANNOTATION_CAP, HANDLER_PATH, Case, P, Report, base_review, drive
from hack.webhook_process import rss_kib, running_server

TARGET_GROWTH_MIB = 10.0


def soak_value(rng: random.Random, n: int) -> dict[str, str]:
    """The annotations of review `n`: distinct from every other review's, each value at most the cap."""
    size = rng.randint(16, ANNOTATION_CAP)
    kind = n % 4
    if kind == 0:  # accepted: distinct requests, JSON padded with whitespace up to `size`
        value = json.dumps({"cpu": f"{n % 997 + 1}m", "mem": f"{n + 1}Mi"})
        return {P + "resources": value[:-1] + " " * max(0, size - len(value)) + "}"}
    if kind == 1:  # denied: an unknown accelerator (or device) name
        stem = f"gpu-{n}-"
        return {P + "accelerator": stem + "x" * max(0, size - len(stem))}
    if kind == 2:  # a quantity whose digits are mostly leading zeros
        digits = str(n + 1)
        return {P + "requests": "cpu=" + "0" * max(0, size - len(digits) - 5) + digits + "m"}
    device = f"nvidia-{n}-" + "a" * max(0, size - 200)
    return {P + "extended-resources": json.dumps({"gpuAccelerator": {"device": device[: ANNOTATION_CAP - 64]}})}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hack.soak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reviews", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--sample-every", type=int, default=1000)
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    samples: list[tuple[int, int]] = []
    report = Report()
    started = time.monotonic()
    with running_server(Path(tempfile.mkdtemp(prefix="frw-soak-"))) as server:
        pid = server.process.pid

        def cases() -> Iterator[Case]:
            for n in range(args.reviews):
                if n and n % args.sample_every == 0:
                    samples.append((n, rss_kib(pid)))
                body = json.dumps(base_review(rng, soak_value(rng, n))).encode()
                yield Case(HANDLER_PATH, body, "review", "distinct")

        shared = cases()
        asyncio.run(
            drive(
                server.url("").rstrip("/"),
                server.ca_file,
                shared,
                concurrency=args.concurrency,
                timeout=10.0,
                report=report,
            )
        )
        samples.append((report.sent, rss_kib(pid)))
    elapsed = time.monotonic() - started
    first = next((kib for n, kib in samples if n >= 1000), samples[0][1])
    last = samples[-1][1]
    peak = max(kib for _, kib in samples)
    growth = (last - first) / 1024
    print(f"soak: {report.sent} distinct reviews in {elapsed:.0f} s (values up to {ANNOTATION_CAP} bytes)")
    print(
        f"  RSS after 1,000: {first / 1024:.1f} MiB; after {report.sent:,}: {last / 1024:.1f} MiB "
        f"(growth {growth:+.1f} MiB, peak {peak / 1024:.1f} MiB)"
    )
    step = max(1, len(samples) // 10)
    print("  RSS samples (reviews: MiB): " + ", ".join(f"{n}: {kib / 1024:.0f}" for n, kib in samples[::step]))
    print(f"  HTTP 5xx: {report.http_500}   invalid replies: {report.invalid}   failed requests: {report.errors}")
    print(f"  latency (client side): p99 {1000 * report.percentile(0.99):.2f} ms")
    for problem, count in report.problems.most_common(10):
        print(f"  {count:6d}  {problem}")
    ok = growth <= TARGET_GROWTH_MIB and not (report.http_500 or report.invalid or report.errors)
    print("PASS" if ok else f"FAIL: target growth <= {TARGET_GROWTH_MIB} MiB and no bad replies")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
