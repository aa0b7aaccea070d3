"""The burst's policy mode stores what ours stores: the same `applied` record, written by the same engine."""

from __future__ import annotations

import json

from hack.burst import _cel_string, applied_summary, mutating_policy


def test_the_policy_writes_our_applied_record() -> None:
    summary = applied_summary({"preset": "eks"})
    record = json.loads(summary)
    assert record["accelerator"] == {"device": "nvidia-tesla-a100", "partitionSize": "1g.5gb"}
    assert record["requests"] == record["limits"] == {"cpu": "10m", "memory": "32Mi", "nvidia.com/gpu": "1"}
    spec = mutating_policy(summary, "eks")[0]["spec"]
    expression = spec["mutations"][0]["jsonPatch"]["expression"]
    assert '"/metadata/annotations/resources.flyte.org~1applied"' in expression
    assert _cel_string(summary) in expression
    # Evaluated again on the reinvocation pass, the policy must not append its tolerations twice.
    assert spec["matchConditions"] == [
        {
            "name": "not-yet-mutated",
            "expression": "!has(object.metadata.annotations) || "
            "!('resources.flyte.org/applied' in object.metadata.annotations)",
        }
    ]


def test_cel_string_escapes_quotes_and_backslashes() -> None:
    assert _cel_string("it's \\ here") == "'it\\'s \\\\ here'"
