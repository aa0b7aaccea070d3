"""Hostile input: every value bounded before parsing, every bad shape a short denial, nothing cached by size.

Each test here failed on the webhook before values were bounded (a 3000-deep JSON raised RecursionError, a
non-string annotation AttributeError, a 900 kB value was accepted, cached and copied into the patch). Speed is
checked by `hack/worst_case.py`, not here.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webhook.engine.config import WebhookConfig
from webhook.mutation import annotations as annotations_module
from webhook.mutation.annotations import MAX_JSON_DEPTH, MAX_VALUE_BYTES, InvalidAnnotation, read_annotations
from webhook.mutation.decision import Denied
from webhook.mutation.inputs import plan_inputs
from webhook.mutation.plan import plan_mutation

P = "resources.flyte.org/"
REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
CONFIG = WebhookConfig.from_mapping({})
IGNORE = WebhookConfig.from_mapping({"on-invalid": "ignore"})
MESSAGE_LIMIT = 1100  # ~1 KiB, with room for the size note


def pod(annotations: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "annotations": dict(annotations or {})},
        "spec": {"containers": [{"name": "main", "image": "x"}], **spec},
    }


def denial(annotations: dict[str, Any] | None = None, **spec: Any) -> str:
    with pytest.raises(Denied) as caught:
        plan_mutation(pod(annotations, **spec), CONFIG)
    message = caught.value.message
    assert len(message.encode()) <= MESSAGE_LIMIT
    return message


# --- the value cap ---------------------------------------------------------------------------------------------


def test_a_900_kB_value_is_denied_without_echo_and_not_cached():
    value = "cpu=" + "0" * 900_000 + "1"
    before = annotations_module._read_cached.cache_info()
    message = denial({P + "resources": value})
    assert f"{P}resources" in message
    assert f"at most {MAX_VALUE_BYTES} bytes" in message
    assert "000000000" not in message, "the value is not echoed"
    after = annotations_module._read_cached.cache_info()
    assert (after.currsize, after.misses) == (before.currsize, before.misses)


def test_a_value_at_the_cap_is_read():
    value = "cpu=1" + " " * (MAX_VALUE_BYTES - 5)
    assert read_annotations({P + "resources": value}, P).requests == {"cpu": "1"}


def test_the_cap_counts_utf8_bytes():
    with pytest.raises(InvalidAnnotation, match="bytes"):
        read_annotations({P + "accelerator": "é" * (MAX_VALUE_BYTES // 2 + 1)}, P)


def test_large_sets_of_values_are_not_cached():
    # Each value is under the cap but together they are above the cache's per-entry budget.
    given = {P + "resources": "cpu=2" + " " * 3000, P + "shared-memory": "true" + " " * 3000}
    before = annotations_module._read_cached.cache_info()
    request = read_annotations(given, P)
    assert request is not None and request.requests == {"cpu": "2"}
    after = annotations_module._read_cached.cache_info()
    assert after.currsize == before.currsize and after.misses == before.misses


def test_small_sets_of_values_are_cached():
    given = {P + "resources": "cpu=3,mem=1Gi"}
    read_annotations(given, P)
    before = annotations_module._read_cached.cache_info()
    read_annotations(given, P)
    assert annotations_module._read_cached.cache_info().hits == before.hits + 1


def test_long_leading_zeros_are_refused_not_copied():
    # Under the cap but over the quantity length limit: nothing of it reaches the patch or the summary.
    message = denial({P + "resources": "cpu=" + "0" * 3000 + "1"})
    assert "longer than 64 characters" in message
    # Within the limit, apimachinery's canonical form (which keeps `001` as written) is what is copied.
    plan = plan_mutation(pod({P + "resources": "cpu=" + "0" * 60 + "1"}), CONFIG)
    assert plan.pod["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "0" * 60 + "1"


# --- JSON nesting ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "value"),
    [
        ("resources", "{" * 3000),
        ("resources", '{"cpu": ' + "[" * 2000 + "]" * 2000 + "}"),
        ("requests", '{"cpu": ' + "[" * 3000),
        ("extended-resources", '{"gpuAccelerator": ' + '{"a": ' * 600),
        ("resources", '{"a": [[[[[[[[["1"]]]]]]]]]}'),  # just over the limit
    ],
)
def test_deep_json_is_denied_before_parsing(annotation, value):
    message = denial({P + annotation: value})
    assert f"nested deeper than {MAX_JSON_DEPTH} levels" in message
    assert message.startswith(f"annotation {P}{annotation}=")


def test_brackets_inside_strings_do_not_count():
    message = denial({P + "resources": '{"cpu": "' + "[" * 20 + '\\"' + "{" * 20 + '"}'})
    assert "nested deeper" not in message
    assert "not a valid Kubernetes quantity" in message


def test_long_json_integers_are_denied():
    message = denial({P + "resources": '{"cpu": ' + "1" * 4090 + "}"})
    assert f"{P}resources" in message


# --- types and shapes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [5, 1.5, True, None, ["cpu=1"], {"cpu": "1"}, [[[[]]]]])
def test_non_string_annotation_values_are_denied(value):
    message = denial({P + "resources": value})
    assert f"annotation {P}resources: the value must be a string" in message


def test_non_string_values_of_other_annotations_are_not_ours():
    plan = plan_mutation(pod({"example.com/x": {"deep": [1]}, P + "resources": "cpu=1"}), CONFIG)
    assert plan.outcome == "patched"


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"containers": "main"}, "spec.containers: expected a list, got a string"),
        ({"containers": ["main"]}, "spec.containers[0]: expected an object, got a string"),
        ({"containers": [{"name": ["main"]}]}, "spec.containers[0].name: expected a string"),
        ({"containers": [{"name": "m" * 64}]}, "spec.containers[0].name: 'mmm"),  # copied into the summary
        ({"containers": [{"name": "Main"}]}, "is not a container name"),
        ({"containers": [{"name": "main", "resources": "big"}]}, "spec.containers[0].resources: expected an object"),
        ({"containers": [{"name": "main", "resources": {"limits": []}}]}, "resources.limits: expected an object"),
        ({"containers": [{"name": "main", "resources": {"limits": {"cpu": "abc"}}}]}, "limits.cpu: 'abc' is not"),
        ({"containers": [{"name": "main", "resources": {"limits": {"cpu": {}}}}]}, "expected a quantity"),
        ({"containers": [{"name": "main", "resources": {"requests": {"x" * 400: "1"}}}]}, "not a resource name"),
        ({"containers": [{"name": "main", "volumeMounts": {}}]}, "spec.containers[0].volumeMounts: expected a list"),
        ({"volumes": [{"name": "v", "emptyDir": "x"}]}, "spec.volumes[0].emptyDir: expected an object"),
        ({"volumes": [{"name": "v", "emptyDir": {"sizeLimit": "0" * 100}}]}, "longer than 64 characters"),
        ({"tolerations": {}}, "spec.tolerations: expected a list"),
        ({"nodeSelector": ["a"]}, "spec.nodeSelector: expected an object"),
        ({"nodeSelector": {"a": 1}}, "spec.nodeSelector.a: expected a string"),
        ({"affinity": "x"}, "spec.affinity: expected an object"),
        (
            {"affinity": {"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": [1]}}}},
            "nodeSelectorTerms[0]: expected an object",
        ),
        (
            {
                "affinity": {
                    "nodeAffinity": {
                        REQUIRED: {"nodeSelectorTerms": [{"matchExpressions": [{"key": {}, "operator": "In"}]}]}
                    }
                }
            },
            "matchExpressions[0].key: expected a string",
        ),
    ],
)
def test_malformed_pod_fields_are_denied_naming_the_field(spec, field):
    message = denial({P + "resources": "cpu=1"}, **spec)
    assert field in message


def test_spec_that_is_not_an_object_is_denied():
    broken = {"metadata": {"annotations": {P + "resources": "cpu=1"}}, "spec": "x"}
    with pytest.raises(Denied, match="spec: expected an object"):
        plan_mutation(broken, CONFIG)


@pytest.mark.parametrize("metadata", ["x", [], 5, {"annotations": "x"}, {"annotations": [P + "resources"]}])
def test_metadata_without_an_annotation_object_is_not_ours(metadata):
    broken = {"metadata": metadata, "spec": {"containers": [{"name": "main"}]}}
    assert (untouched := plan_mutation(broken, CONFIG)).outcome == "allowed" and untouched.steps == ()
    assert plan_inputs(broken, P) is None


def test_values_orjson_cannot_write_are_denied():
    message = denial({P + "resources": "cpu=1"}, nodeSelector={"a": "\ud800"})
    assert "not plain JSON" in message
    assert "not plain JSON" in denial({P + "resources": "cpu=1"}, tolerations=[{"tolerationSeconds": 2**70}])


@pytest.mark.parametrize(
    "annotations",
    [
        {P + "x\ud800": "1"},
        {P + "accelerator": "\ud800" * 100},
        {P + "resources": "cpu=1", "primary_container_name": "\ud800"},
    ],
)
def test_denials_are_utf8_whatever_the_input(annotations):
    denial(annotations).encode("utf-8")  # a lone surrogate is escaped, never carried into the reply


def test_a_malformed_pod_under_on_invalid_ignore_is_admitted_unchanged():
    broken = pod({P + "resources": "cpu=1"}, containers="main")
    plan = plan_mutation(broken, IGNORE)
    assert plan.outcome == "ignored" and plan.ops == []
    assert "spec.containers: expected a list" in plan.warnings[0]


def test_malformed_pods_are_keyed_by_their_problem():
    one = pod({P + "resources": "cpu=1"}, containers="main")
    other = pod({P + "resources": "cpu=2"}, containers="main")
    well_formed = pod({P + "resources": "cpu=1"})
    assert plan_inputs(one, P) is not None
    assert plan_inputs(one, P) == plan_inputs(other, P)  # the same denial, whatever else the pod holds
    assert plan_inputs(one, P) != plan_inputs(well_formed, P)
    assert len(plan_inputs(well_formed, P)) == 32


# --- values shown in messages ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["A" * 4000, "a" * 4000, "nvidia-" + "x" * 4000, "A100." + "p" * 4000])
def test_a_long_accelerator_name_gives_a_short_message(name):
    message = denial({P + "accelerator": name})
    assert f"{P}accelerator" in message
    assert "bytes)" in message
    assert name[:100] not in message, "the name is shown abbreviated, also where the reason quotes it"


def test_a_long_unknown_annotation_name_gives_a_short_message():
    message = denial({P + "x" * 500_000: "1"})
    assert "unknown annotation" in message


def test_long_container_names_give_a_short_message():
    containers = [{"name": f"c{i}" + "x" * 1000} for i in range(50)]
    message = denial({P + "resources": "cpu=1"}, containers=containers)
    assert "containers" in message


# --- ASCII only ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extended", "field"),
    [
        ('{"gpuAccelerator": {"device": "nvidia-tesla-a100", "partitionSize": "\uff11g.5gb"}}', "partitionSize"),
        ('{"gpuAccelerator": {"device": "nvidia-tesla-\uff41100"}}', "device"),
        ('{"gpuAccelerator": {"device": "a b"}}', "device"),
        ('{"gpuAccelerator": {"device": "' + "a" * 64 + '"}}', "device"),
        ('{"gpuAccelerator": {"device": "-a"}}', "device"),
        ('{"gpuAccelerator": {"device": "nvidia-tesla-a100", "partitionSize": "1g.5gb."}}', "partitionSize"),
    ],
)
def test_extended_resources_device_and_partition_are_label_values(extended, field):
    message = denial({P + "extended-resources": extended})
    assert f"gpuAccelerator.{field}" in message


def test_extended_resources_valid_device_and_partition_are_read():
    request = read_annotations(
        {P + "extended-resources": '{"gpuAccelerator": {"device": "nvidia-tesla-a100", "partitionSize": "1g.5gb"}}'},
        P,
    )
    assert request.accelerator.device == "nvidia-tesla-a100"
    assert request.accelerator.partition_size == "1g.5gb"


@pytest.mark.parametrize("value", ["cpu=\uff11", "mem=1\uff27i", "cpu=\u0661", "cpu=1e\u0663"])
def test_other_scripts_digits_are_not_quantities(value):
    assert "not a valid Kubernetes quantity" in denial({P + "resources": value})


# --- the property --------------------------------------------------------------------------------------------------

_NAMES = ["resources", "requests", "limits", "accelerator", "shared-memory", "extended-resources", "container"]
_PIECES = st.sampled_from(
    ["cpu=", "mem=", "gpu=", "0", "1", ".", "e", "E", "-", "+", "Ki", "x", ":", ",", "{", "}", "[", "]", '"', "\\",
     '"cpu"', '"gpuAccelerator"', '"device"', '"sharedMemory"', "\uff11", "\ud800", " ", "true", "null"]
)  # fmt: skip
_VALUES = st.one_of(
    st.text(max_size=50),
    st.lists(_PIECES, max_size=40).map("".join),
    st.builds(lambda piece, n, tail: piece * n + tail, _PIECES, st.integers(0, 6000), st.text(max_size=5)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(values=st.dictionaries(st.sampled_from(_NAMES), _VALUES, min_size=1, max_size=3), ignore=st.booleans())
def test_any_text_annotation_gives_a_plan_or_a_denial(values, ignore):
    original = pod({P + name: value for name, value in values.items()})
    before = copy.deepcopy(original)
    try:
        plan = plan_mutation(original, IGNORE if ignore else CONFIG)
    except Denied as exc:
        assert len(exc.message.encode()) <= MESSAGE_LIMIT
    else:
        assert all(len(w.encode()) <= MESSAGE_LIMIT for w in plan.warnings)
        assert all(len(str(op.get("value"))) < 2 * MAX_VALUE_BYTES for op in plan.ops)
    assert original == before
    assert plan_inputs(original, P) is not None


def test_the_readme_states_the_bounds():
    from pathlib import Path

    from webhook.engine.excerpt import SHOWN_CHARS
    from webhook.engine.quantity import MAX_QUANTITY_LENGTH

    readme = " ".join((Path(__file__).parents[2] / "README.md").read_text().split())
    assert f"above {MAX_VALUE_BYTES // 1024} KiB (UTF-8) is refused unread" in readme
    assert f"a quantity longer than {MAX_QUANTITY_LENGTH} characters" in readme
    assert f"nested deeper than {MAX_JSON_DEPTH} levels" in readme
    assert f"their first {SHOWN_CHARS} characters" in readme


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12,
)


def _or_junk(valid: Any) -> st.SearchStrategy[Any]:
    """`valid` two times in three, so that most pods reach the engine with one or two odd fields."""
    return st.one_of(st.just(valid), st.just(valid), _JSON)


_EXPRESSION = {"key": "example.com/zone", "operator": "In", "values": ["a"]}
_SPECS = st.fixed_dictionaries(
    {
        "containers": _or_junk(None).flatmap(
            lambda junk: (
                st.just(junk)
                if junk is not None
                else st.lists(
                    st.fixed_dictionaries(
                        {
                            "name": _or_junk("main"),
                            "resources": _or_junk({"limits": {"cpu": "1", "nvidia.com/gpu": "1"}}),
                            "volumeMounts": _or_junk([{"name": "flyte-shared-memory", "mountPath": "/dev/shm"}]),
                        }
                    ),
                    min_size=1,
                    max_size=2,
                )
            )
        ),
        "volumes": _or_junk([{"name": "flyte-shared-memory", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}}]),
        "tolerations": _or_junk([{"key": "k", "operator": "Exists"}]),
        "nodeSelector": _or_junk({"a": "b"}),
        "affinity": _or_junk(
            {"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": [{"matchExpressions": [_EXPRESSION]}]}}}
        ),
    }
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=_SPECS, primary=_or_junk("main"))
def test_any_pod_shape_gives_a_plan_or_a_denial(spec, primary):
    annotations = {
        P + "resources": "cpu=1,gpu=1",
        P + "accelerator": "A100.partition_1g_5gb",
        P + "shared-memory": "1Gi",
        "primary_container_name": primary,
    }
    original = {"metadata": {"annotations": annotations}, "spec": spec}
    before = copy.deepcopy(original)
    try:
        plan_mutation(original, CONFIG)
    except Denied as exc:
        assert len(exc.message.encode()) <= MESSAGE_LIMIT
    assert original == before
    assert plan_inputs(original, P) is not None
