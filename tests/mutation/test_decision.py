"""One decision per pod, in the one vocabulary the metrics, the logs and `explain` share."""

from __future__ import annotations

import copy

import pytest

from webhook.engine.config import WebhookConfig
from webhook.mutation.decision import Denied, Outcome, errored
from webhook.mutation.inputs import read_plan_inputs
from webhook.mutation.plan import decide, plan_mutation

P = "resources.flyte.org/"
CONFIG = WebhookConfig.from_mapping({})


def pod(annotations, resources=None):
    container = {"name": "main", "image": "x", **({"resources": resources} if resources else {})}
    return {
        "metadata": {"name": "p", "namespace": "ns", "annotations": annotations},
        "spec": {"containers": [container]},
    }


def test_the_words_are_the_metric_labels():
    assert [o.value for o in Outcome] == ["allowed", "patched", "denied", "ignored", "errored"]


def test_a_patch_that_only_writes_the_summary_is_patched_and_the_second_pass_allowed():
    planned = plan_mutation(pod({P + "resources": "cpu=1,mem=1Gi"}), CONFIG).pod
    already = copy.deepcopy(planned)  # everything asked for in place, but no summary
    del already["metadata"]["annotations"][P + "applied"]
    plan = plan_mutation(already, CONFIG)
    assert [op["path"] for op in plan.ops] == ["/metadata/annotations/resources.flyte.org~1applied"]
    assert plan.outcome is Outcome.PATCHED and plan.decision.allowed
    again = plan_mutation(planned, CONFIG)
    assert again.outcome is Outcome.ALLOWED and again.ops == []


def test_a_pod_not_ours_is_allowed_as_it_is():
    plan = plan_mutation(pod({"other": "x"}), CONFIG)
    assert plan.outcome is Outcome.ALLOWED and plan.ops == [] and plan.decision.reason is None


def test_decide_turns_a_denial_into_a_denied_decision_with_the_same_message():
    bad = pod({P + "accelerator": "A999"})
    with pytest.raises(Denied) as caught:
        plan_mutation(bad, CONFIG)
    decision = decide(bad, CONFIG, "ns", read_plan_inputs(bad, CONFIG, "ns"))
    assert decision.outcome is Outcome.DENIED and not decision.allowed
    assert decision.reason == caught.value.message and decision.ops == []


def test_invalid_input_under_on_invalid_ignore_is_ignored_with_one_warning():
    decision = decide(pod({P + "resources": "cpu=abc"}), WebhookConfig.from_mapping({"on-invalid": "ignore"}))
    assert decision.outcome is Outcome.IGNORED and decision.allowed and decision.ops == []
    assert len(decision.warnings) == 1 and decision.warnings[0].endswith("pod admitted unchanged (on-invalid: ignore)")


@pytest.mark.parametrize(("on_error", "allowed"), [("deny", False), ("allow", True)])
def test_errored_follows_on_error(on_error, allowed):
    decision = errored("internal error", on_error)
    assert decision.outcome is Outcome.ERRORED and decision.allowed is allowed
    assert decision.reason == (None if allowed else "internal error")
    assert decision.warnings == (["internal error; admitted unchanged (on-error: allow)"] if allowed else [])
