"""What policy matching costs per pod: `plan_inputs`, `plan_mutation` and a whole review, with 0 to 256 policies.

    python -m hack.policy_bench                  # this tree
    python -m hack.policy_bench --tree /tmp/old  # another checkout's `webhook` package (e.g. before policies)

The pod is `make bench`'s 5.6 KB Flyte task pod (hack/bench.py). Each figure is the best of 7 runs of N calls, in
microseconds of this thread's CPU time per call; `review (hit)` is what the burst of a map task costs
once the first pod's answer is remembered, `review (miss)` a pod whose plan inputs were never seen.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import sys
import time
import timeit
from collections.abc import Callable
from typing import Any

from webhook.engine.config import DEFAULT_ANNOTATION_PREFIX


def _policies(count: int, *, matching: bool) -> list[dict[str, Any]]:
    """`count` project+domain policies the bench pod's project (flytesnacks) does not match; with `matching`, the
    last in precedence (a domain policy) matches it, so every other one is tested first."""
    found: list[dict[str, Any]] = [
        {
            "name": f"p{i}",
            "match": {"project": f"project-{i}", "domain": "development"},
            "platform-limits": {"cpu": "4"},
        }
        for i in range(count - matching)
    ]
    if matching:
        found.append({"name": "dev", "match": {"domain": "development"}, "platform-limits": {"cpu": "3"}})
    return found


def _forget(reviewer: Any, config: Any) -> None:
    """Drop the remembered answers, so the next review plans again."""
    if hasattr(reviewer, "use_config"):
        reviewer.use_config(config)
    else:  # a tree from before live reload
        reviewer._answers.clear()
        reviewer._answers_bytes = 0


def _best(fn: Callable[[], object], number: int) -> float:
    # CPU time of this thread: other processes on the machine slow the wall clock, much less this.
    return min(timeit.repeat(fn, number=number, repeat=7, timer=time.thread_time)) / number * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", help="a directory holding another `webhook` package to measure instead")
    parser.add_argument("-n", "--number", type=int, default=2000, help="calls per run (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.tree:
        sys.path.insert(0, args.tree)

    from hack.bench import admission_review, realistic_pod
    from webhook.engine.config import WebhookConfig
    from webhook.mutation.plan import plan_mutation
    from webhook.operator.review import PodReviewer

    try:
        from webhook.mutation.inputs import plan_inputs
    except ImportError:  # a tree from before the plan's steps had modules of their own
        from webhook.mutation.plan import plan_inputs  # type: ignore[attr-defined,no-redef]

    takes_config = "config" in inspect.signature(plan_inputs).parameters
    pod = realistic_pod()
    pod["metadata"].setdefault("labels", {}).update({"project": "flytesnacks", "domain": "development"})
    unannotated = copy.deepcopy(pod)
    unannotated["metadata"]["annotations"] = {
        k: v for k, v in unannotated["metadata"]["annotations"].items() if not k.startswith(DEFAULT_ANNOTATION_PREFIX)
    }
    unannotated["metadata"]["labels"]["task-name"] = "train"

    cases: list[tuple[str, dict[str, Any], dict[str, Any]]] = [("annotated, no policies", {}, pod)]
    if takes_config:
        cases += [
            ("annotated, 10 policies, none match", {"policies": _policies(10, matching=False)}, pod),
            ("annotated, 256 policies, none match", {"policies": _policies(256, matching=False)}, pod),
            ("annotated, 256 policies, the last matches", {"policies": _policies(256, matching=True)}, pod),
            ("unannotated Flyte pod, flyte-task-pods, 0 policies", {"flyte-task-pods": True}, unannotated),
            (
                "unannotated Flyte pod, flyte-task-pods, 256 policies",
                {"flyte-task-pods": True, "policies": _policies(256, matching=True)},
                unannotated,
            ),
        ]
    print(f"{'case':<54} {'plan_inputs':>12} {'plan_mutation':>14} {'review (hit)':>13} {'review (miss)':>14}")
    for name, keys, the_pod in cases:
        config = WebhookConfig.from_mapping(keys)
        key_arg: Any = config if takes_config else config.annotation_prefix
        inputs = _best(lambda: plan_inputs(the_pod, key_arg), args.number)  # noqa: B023
        planned = _best(lambda: plan_mutation(the_pod, config), args.number)  # noqa: B023
        reviewer = PodReviewer(config)
        review = admission_review(the_pod)
        hit = _best(lambda: reviewer(review), args.number)  # noqa: B023
        miss = _best(lambda: (_forget(reviewer, config), reviewer(review)), args.number)  # noqa: B023
        print(f"{name:<54} {inputs:>10.1f}us {planned:>12.1f}us {hit:>11.1f}us {miss:>12.1f}us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
