"""Worst-case CPU of planning one pod whose annotations are at the value cap with pathological content.

`python -m hack.worst_case` prints, per case, the CPU seconds `plan_mutation` took and what it answered
(planned, denied, or the exception that escaped). `worst_case_seconds()` returns the largest figure, for
`make fuzz`/`make bench` to report. The target is milliseconds: each case is what a hostile user can put in
one pod (long digit runs for a backtracking quantity grammar, JSON nested past the parser's recursion limit,
values over the cap, names that would be echoed into messages).

`--scale N` multiplies the lengths (e.g. `--scale 0.5`) to time an old build whose grammar backtracks.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from webhook.engine.config import DEFAULT_ANNOTATION_PREFIX, WebhookConfig
from webhook.mutation.decision import Denied
from webhook.mutation.inputs import plan_inputs
from webhook.mutation.plan import plan_mutation

P = DEFAULT_ANNOTATION_PREFIX
CAP = 4096


def cases(scale: float = 1.0) -> dict[str, dict[str, Any]]:
    """Annotation sets (name -> value) of at most `CAP * scale` characters per value."""
    n = int(CAP * scale) - 16
    deep = "[" * n
    found: dict[str, dict[str, Any]] = {
        "zeros then a letter (quantity)": {P + "resources": "cpu=" + "0" * n + "x"},
        "zeros then a digit (quantity)": {P + "resources": "cpu=" + "0" * n + "1"},
        "digits, dot, digits, letter": {P + "requests": "mem=" + "1" * (n // 2) + "." + "1" * (n // 2) + "Q"},
        "many short items": {P + "resources": ",".join(["cpu=1"] * (n // 6))},
        "JSON nested deep": {P + "resources": "{" + '"cpu":' * 1 + deep},
        "JSON list nested deep": {P + "resources": '{"cpu": ' + deep + "}"},
        "extended-resources nested deep": {P + "extended-resources": '{"gpuAccelerator": ' + "{" * (n - 20)},
        "distinct unknown JSON keys": {P + "resources": "{" + ",".join(f'"k{i}": 1' for i in range(n // 12)) + "}"},
        "distinct unknown names": {P + "resources": ",".join(f"k{i}=1" for i in range(n // 7))},
        "brackets at the depth limit": {P + "resources": '{"cpu": [' + "[[[[[[]]]]]]," * (n // 13) + "[]]}"},
        "quoted brackets": {P + "resources": '{"cpu": "' + "[{" * (n // 2 - 8) + '"}'},
        "accelerator name": {P + "accelerator": "A" * n},
        "accelerator device string": {P + "accelerator": "a" * 63 + ":" + "b" * (n - 64)},
        "shared memory zeros": {P + "shared-memory": "0" * n + "1Gi"},
        "every annotation at once": {
            P + "resources": "cpu=" + "0" * n + "x",
            P + "accelerator": "A" * n,
            P + "shared-memory": "0" * n + "1",
            P + "container": "c" * n,
            P + "gpu-resource-key": "a" * n,
        },
    }
    if scale >= 1:  # over the cap: refused before parsing (an old build would take hours here)
        found["900 kB zeros"] = {P + "resources": "cpu=" + "0" * 900_000 + "1"}
    return found


def _pod(annotations: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "annotations": annotations},
        "spec": {"containers": [{"name": "main", "image": "x"}]},
    }


def large_pod(size: int = 3 * 1024 * 1024) -> dict[str, Any]:
    """A pod of about `size` bytes of JSON that the plan must read whole: tolerations, a GPU and an accelerator."""
    toleration = {"key": "example.com/k", "operator": "Equal", "value": "v" * 40, "effect": "NoSchedule"}
    count = size // 110
    return {
        "metadata": {"name": "p", "annotations": {P + "resources": "cpu=1,gpu=1", P + "accelerator": "A100"}},
        "spec": {
            "containers": [{"name": "main", "image": "x"}],
            "tolerations": [{**toleration, "key": f"example.com/k{i}"} for i in range(count)],
        },
    }


def _timed(call: Callable[[], object], runs: int = 3) -> tuple[float, str]:
    """The least CPU time of `runs` calls (the first pays for cold caches; a webhook is warm) and the answer."""
    best, answer = float("inf"), ""
    for _ in range(runs):
        start = time.process_time()
        try:
            call()
            answer = "planned"
        except Denied as exc:
            answer = f"denied ({len(exc.message)} chars)"
        except Exception as exc:  # what escaped is the finding
            answer = f"ESCAPED {type(exc).__name__}"
        best = min(best, time.process_time() - start)
    return best, answer


def measure(scale: float = 1.0) -> list[tuple[str, float, str]]:
    config = WebhookConfig.from_mapping({})
    results = []
    for name, values in cases(scale).items():
        pod = _pod(values)
        seconds, answer = _timed(lambda pod=pod: plan_mutation(pod, config))  # type: ignore[misc]
        results.append((name, seconds, answer))
    big = large_pod(int(3 * 1024 * 1024 * min(scale, 1)))
    seconds, answer = _timed(lambda: (plan_inputs(big, P), plan_mutation(big, config)))
    results.append(("3 MiB pod (plan_inputs + plan_mutation)", seconds, answer))
    return results


def worst_case_seconds(scale: float = 1.0) -> float:
    return max(seconds for _, seconds, _ in measure(scale))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    results = measure(args.scale)
    for name, seconds, answer in results:
        print(f"{seconds * 1000:10.2f} ms  {name}: {answer}")
    print(f"{max(s for _, s, _ in results) * 1000:10.2f} ms  worst case")


if __name__ == "__main__":
    main()
