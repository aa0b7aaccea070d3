"""AdmissionReview in, AdmissionReview out: response shape, denials, the failure policy for our own bugs, metrics."""

from __future__ import annotations

import base64
import copy
import json

import jsonpatch
import pytest

from hack.reviews import admission_review
from webhook.engine.config import WebhookConfig
from webhook.mutation.decision import Outcome
from webhook.operator import review as review_module
from webhook.operator.review import PodReviewer, pod_ref

P = "resources.flyte.org/"


def counts(reviewer):
    return {
        outcome: reviewer.metrics.registry.get_sample_value(
            "flyte_resources_webhook_reviews_total", {"outcome": outcome}
        )
        for outcome in Outcome
    }


def test_mutated_response_carries_a_json_patch_and_warnings():
    reviewer = PodReviewer(WebhookConfig.from_mapping({}))
    review = admission_review({P + "requests": "cpu=2", P + "limits": "cpu=1"})
    out = reviewer(review)
    assert out["apiVersion"] == "admission.k8s.io/v1" and out["kind"] == "AdmissionReview"
    response = out["response"]
    assert response["uid"] == review["request"]["uid"]
    assert response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(response["patch"]))
    pod = jsonpatch.apply_patch(copy.deepcopy(review["request"]["object"]), ops)
    assert pod["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "1"
    assert any("cpu request 2 lowered to its limit 1" in w for w in response["warnings"])
    assert counts(reviewer)["patched"] == 1


def test_untouched_pods_get_a_bare_allow():
    reviewer = PodReviewer(WebhookConfig.from_mapping({}))
    out = reviewer(admission_review({"other": "x"}))
    assert out["response"] == {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": True}
    assert counts(reviewer)["allowed"] == 1


def test_other_operations_are_not_mutated():
    reviewer = PodReviewer(WebhookConfig.from_mapping({}))
    out = reviewer(admission_review({P + "resources": "cpu=1"}, operation="UPDATE"))
    assert "patch" not in out["response"] and out["response"]["allowed"] is True


def test_bad_annotation_is_denied_with_code_400():
    reviewer = PodReviewer(WebhookConfig.from_mapping({}))
    out = reviewer(admission_review({P + "resources": "cpu=lots"}))
    response = out["response"]
    assert response["allowed"] is False
    assert response["status"]["code"] == 400
    assert response["status"]["message"].startswith("annotation resources.flyte.org/resources='cpu=lots'")
    assert counts(reviewer)["denied"] == 1


def test_v1beta1_is_echoed():
    reviewer = PodReviewer(WebhookConfig.from_mapping({}))
    assert reviewer(admission_review(api_version="admission.k8s.io/v1beta1"))["apiVersion"].endswith("v1beta1")


@pytest.mark.parametrize(("policy", "allowed"), [("deny", False), ("allow", True)])
def test_our_own_bug_is_caught_logged_counted_and_follows_on_error(monkeypatch, caplog, policy, allowed):
    def broken(pod, *args):
        raise KeyError("boom")

    monkeypatch.setattr(review_module, "decide", broken)
    reviewer = PodReviewer(WebhookConfig.from_mapping({"on-error": policy}))
    out = reviewer(admission_review({P + "resources": "cpu=1"}))
    response = out["response"]
    assert response["allowed"] is allowed
    assert "patch" not in response
    text = response["status"]["message"] if not allowed else response["warnings"][0]
    assert "internal error while reviewing pod ns/task-<generated>" in text
    assert "Traceback" not in text and "boom" not in text
    assert "errored pod ns/task-<generated>: internal error while reviewing it" in caplog.text
    assert counts(reviewer)["errored"] == 1


def test_pods_with_the_same_plan_inputs_get_the_same_answer_from_memory(monkeypatch):
    reviewer = PodReviewer(WebhookConfig.from_mapping({}))
    annotations = {P + "requests": "cpu=2", P + "limits": "cpu=1"}
    first = reviewer(admission_review(annotations))["response"]
    calls = []
    real = review_module.decide
    monkeypatch.setattr(review_module, "decide", lambda pod, *args: calls.append(pod) or real(pod, *args))
    twin = admission_review(annotations)
    twin["request"]["object"]["metadata"]["generateName"] = "other-task-"
    twin["request"]["object"]["spec"]["containers"][0]["image"] = "y"
    assert reviewer(twin)["response"] == first
    assert calls == [], "a map task's second pod is answered without planning again"
    different = admission_review({P + "requests": "cpu=2", P + "limits": "cpu=3"})
    assert reviewer(different)["response"]["patch"] != first["patch"]
    assert len(calls) == 1
    assert counts(reviewer)["patched"] == 3


def test_every_outcome_is_a_metric_label_from_the_start():
    assert all(value == 0 for value in counts(PodReviewer(WebhookConfig.from_mapping({}))).values())
    assert {o.value for o in Outcome} == {"allowed", "patched", "denied", "ignored", "errored"}


def test_invalid_input_admitted_under_on_invalid_ignore_counts_as_ignored(caplog):
    reviewer = PodReviewer(WebhookConfig.from_mapping({"on-invalid": "ignore"}))
    with caplog.at_level("INFO", logger="flyte_resources_webhook"):
        response = reviewer(admission_review({P + "resources": "cpu=lots"}))["response"]
    assert response["allowed"] is True and "patch" not in response
    assert "on-invalid: ignore" in response["warnings"][0]
    assert counts(reviewer)["ignored"] == 1 and counts(reviewer)["allowed"] == 0
    assert "ignored pod ns/task-<generated> (admitted unchanged)" in caplog.text


@pytest.mark.parametrize("uid", [None, 1, 2.5, True, [], {"a": [1]}, [[[[["deep"]]]]], "x" * 129, {"uid": "705ab4f5"}])
def test_the_uid_is_echoed_only_when_it_is_a_short_string(uid):
    review = admission_review({P + "resources": "cpu=1"})
    review["request"]["uid"] = uid
    response = PodReviewer(WebhookConfig.from_mapping({}))(review)["response"]
    assert response["uid"] == ""


@pytest.mark.parametrize("api_version", [None, 3, ["admission.k8s.io/v1"], "x" * 10_000, "v1"])
def test_an_unknown_api_version_is_answered_as_v1(api_version):
    review = admission_review()
    review["apiVersion"] = api_version
    review["kind"] = {"nested": "junk"}
    out = PodReviewer(WebhookConfig.from_mapping({}))(review)
    assert out["apiVersion"] == "admission.k8s.io/v1" and out["kind"] == "AdmissionReview"


@pytest.mark.parametrize(
    "request_",
    [
        {"object": {"metadata": "x"}},
        {"object": "x"},
        {"object": {"metadata": {"name": ["x"], "namespace": {"a": 1}, "generateName": 7}}},
        {"name": {"x": 1}, "namespace": [1], "object": {"metadata": {"name": None}}},
        "not a mapping",
        None,
    ],
)
def test_pod_ref_never_raises_on_junk(request_):
    ref = pod_ref(request_)
    assert isinstance(ref, str) and ref.endswith("<generated>")


def test_pod_ref_is_bounded():
    ref = pod_ref({"namespace": "n" * 100_000, "object": {"metadata": {"name": "x" * 1_000_000}}})
    assert len(ref) < 700
    assert ref.startswith("nnn") and "bytes" in ref


@pytest.mark.parametrize(
    "pod",
    [
        {"metadata": "x"},
        {"metadata": {"annotations": {P + "resources": 1}}, "spec": {"containers": [{"name": "main"}]}},
        {"metadata": {"annotations": {P + "resources": "cpu=1"}}, "spec": {"containers": "main"}},
        {"metadata": {"annotations": {P + "resources": "cpu=1"}}, "spec": "x"},
        {"metadata": {"annotations": {P + "resources": "[" * 3000 + "]" * 3000}}, "spec": {"containers": []}},
    ],
)
def test_malformed_pods_are_answered_cleanly_never_with_code_500(pod):
    reviewer = PodReviewer(WebhookConfig.from_mapping({}))
    review = admission_review()
    review["request"]["object"] = pod
    response = reviewer(review)["response"]
    assert response.get("status", {}).get("code", 200) < 500
    assert counts(reviewer)["errored"] == 0


def test_answers_are_kept_within_a_byte_budget():
    reviewer = PodReviewer(WebhookConfig.from_mapping({}))
    reviewer.ANSWERS_BYTES = 64 * 1024
    for n in range(400):
        reviewer(admission_review({P + "resources": f"cpu={n + 1}m"}))
    assert 0 < reviewer._answers_bytes <= reviewer.ANSWERS_BYTES
    assert reviewer._answers_bytes == sum(answer.size for answer in reviewer._answers.values())
    assert len(reviewer._answers) < 400


def test_an_answer_above_the_entry_limit_is_not_kept():
    reviewer = PodReviewer(WebhookConfig.from_mapping({}))
    reviewer.ANSWER_BYTES_MAX = 512  # any real patch of this pod is larger
    response = reviewer(admission_review({P + "resources": "cpu=1,mem=1Gi"}))["response"]
    assert "patch" in response
    assert reviewer._answers == {} and reviewer._answers_bytes == 0


def test_an_in_place_resize_above_the_platform_limit_is_denied() -> None:
    from webhook.engine.config import WebhookConfig as Config
    from webhook.operator.review import PodReviewer as Reviewer

    reviewer = Reviewer(Config.from_mapping({"platform-limits": {"cpu": "4"}}))
    pod = {
        "metadata": {"name": "p", "namespace": "ns", "annotations": {"resources.flyte.org/resources": "cpu=2"}},
        "spec": {"containers": [{"name": "main", "resources": {"requests": {"cpu": "12"}, "limits": {"cpu": "12"}}}]},
    }
    request = {"uid": "u", "operation": "UPDATE", "subResource": "resize", "namespace": "ns", "object": pod}
    response = reviewer({"apiVersion": "admission.k8s.io/v1", "request": request})["response"]
    assert response["allowed"] is False
    assert (
        "in-place resize refused: container 'main': requests.cpu '12' is above the platform limit 4"
        in (response["status"]["message"])
    )
    pod["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "3"}, "limits": {"cpu": "4"}}
    assert reviewer({"request": request})["response"] == {"uid": "u", "allowed": True}
    # other updates are not ours to judge
    other = {**request, "subResource": "status"}
    pod["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "12"}}
    assert reviewer({"request": other})["response"]["allowed"] is True


def _denials(reviewer):
    samples = reviewer.metrics.registry.get_sample_value
    return {
        s.labels["policy"]: s.value
        for metric in reviewer.metrics.registry.collect()
        if metric.name == "flyte_resources_webhook_denials"
        for s in metric.samples
        if s.name.endswith("_total")
    } | {"_": samples("flyte_resources_webhook_reviews_total", {"outcome": "denied"})}


def test_denials_are_counted_by_the_governing_policy_named_by_the_config_never_by_the_pod():
    config = WebhookConfig.from_mapping(
        {"policies": [{"name": "ns-small", "match": {"namespace": "ns"}, "max-gpus": 1}]}
    )
    reviewer = PodReviewer(config)
    assert _denials(reviewer) == {"(global)": 0, "ns-small": 0, "_": 0}  # present at zero from the start
    reviewer(admission_review({P + "limits": "gpu=4"}))  # over the policy's max-gpus
    reviewer(admission_review({P + "resources": "cpu=lots"}))  # invalid, under the same policy
    other = admission_review({P + "resources": "cpu=lots"})
    other["request"]["namespace"] = other["request"]["object"]["metadata"]["namespace"] = "elsewhere"
    reviewer(other)
    assert _denials(reviewer) == {"(global)": 1, "ns-small": 2, "_": 3}
    # A reload brings the new policies' counters at zero; the old ones keep counting what they counted.
    reviewer.use_config(WebhookConfig.from_mapping({"policies": [{"name": "gpu", "match": {"namespace": "x"}}]}))
    assert _denials(reviewer) == {"(global)": 1, "ns-small": 2, "gpu": 0, "_": 3}
