"""The plan's inputs and their key: every field the plan reads is in it, and a pod with none of ours has none."""

from __future__ import annotations

import copy

import pytest

from webhook.mutation.inputs import plan_inputs, read_inputs

P = "resources.flyte.org/"


def pod(annotations):
    return {
        "metadata": {"name": "p", "namespace": "ns", "annotations": dict(annotations)},
        "spec": {"containers": [{"name": "main", "image": "x"}]},
    }


@pytest.mark.parametrize(
    "edit",
    [
        lambda p: p["spec"]["containers"][0].update(resources={"limits": {"cpu": "3"}}),
        lambda p: p["spec"]["containers"][0].update(volumeMounts=[{"name": "x", "mountPath": "/x"}]),
        lambda p: p["spec"]["containers"][0].update(name="renamed"),
        lambda p: p["spec"].update(tolerations=[]),
        lambda p: p["spec"].update(affinity=None),
        lambda p: p["spec"].update(nodeSelector={"a": "b"}),
        lambda p: p["spec"].update(volumes=[]),
        lambda p: p["metadata"]["annotations"].update({P + "shared-memory": "true"}),
        lambda p: p["metadata"]["annotations"].update({P + "applied": "{}"}),
        lambda p: p["metadata"]["annotations"].update(primary_container_name="main"),
    ],
)
def test_every_input_the_plan_reads_is_in_the_key(edit):
    original = pod({P + "resources": "cpu=1"})
    variant = copy.deepcopy(original)
    edit(variant)
    assert plan_inputs(variant, P) != plan_inputs(original, P)


def test_no_key_without_our_annotations():
    assert plan_inputs(pod({"other": "x"}), P) is None
    assert plan_inputs(pod({"other": "x", P + "applied": "{}"}), P) is not None  # a summary to remove


def test_a_malformed_pod_is_keyed_by_its_problem():
    broken = pod({P + "resources": "cpu=1"})
    broken["spec"]["containers"] = "not a list"
    problem = read_inputs(broken, P)
    assert isinstance(problem, str) and "spec.containers" in problem
    assert plan_inputs(broken, P) == plan_inputs(copy.deepcopy(broken), P) is not None
