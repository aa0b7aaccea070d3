"""The mutation plan: minimal ops, idempotent, untouched pods untouched, bad input denied or ignored."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonpatch
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from webhook.engine.config import WebhookConfig
from webhook.engine.pod import effective_gpu_resource_name
from webhook.mutation.annotations import read_annotations
from webhook.mutation.decision import Denied
from webhook.mutation.inputs import plan_inputs
from webhook.mutation.plan import plan_mutation

P = "resources.flyte.org/"
EXAMPLES = Path(__file__).parents[2] / "examples"
CONFIG = WebhookConfig.from_mapping({})
ALLOWED_PREFIXES = (
    "/metadata/annotations",
    "/spec/volumes",
    "/spec/affinity",
    "/spec/tolerations",
    "/spec/nodeSelector",
)


def pod(annotations=None, containers=None, **spec):
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "ns", "annotations": dict(annotations or {})},
        "spec": {"containers": containers or [{"name": "main", "image": "x"}], **spec},
    }


def apply(original, plan):
    return jsonpatch.apply_patch(copy.deepcopy(original), plan.ops)


def test_pod_without_our_annotations_is_returned_as_is():
    original = pod({"primary_container_name": "main"})
    plan = plan_mutation(original, CONFIG)
    assert plan.outcome == "allowed"
    assert plan.pod is original
    assert plan.ops == [] and plan.warnings == []


def test_flyte_task_example_ops_are_minimal():
    original = yaml.safe_load((EXAMPLES / "flyte-task-resources.yaml").read_text())
    before = copy.deepcopy(original)
    plan = plan_mutation(original, CONFIG)
    assert original == before, "the input pod must not be modified"
    c = "/spec/containers/0/resources"
    by_path = {op["path"]: op for op in plan.ops}
    assert {p: (op["op"], op.get("value")) for p, op in by_path.items() if p.startswith(c)} == {
        f"{c}/requests/cpu": ("replace", "2"),
        f"{c}/requests/memory": ("replace", "8Gi"),
        f"{c}/requests/nvidia.com~1gpu": ("add", "1"),
        f"{c}/limits/cpu": ("replace", "4"),
        f"{c}/limits/memory": ("replace", "16Gi"),
        f"{c}/limits/nvidia.com~1gpu": ("add", "1"),
    }
    assert by_path[f"/metadata/annotations/{P.replace('/', '~1')}applied"]["op"] == "add"
    # the eks preset's toleration of EKS's GPU taint (`resource-tolerations`)
    tolerated = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    assert by_path["/spec/tolerations"]["value"] == [tolerated]
    assert len(plan.ops) == 8
    assert apply(original, plan) == plan.pod


def test_second_pass_returns_no_ops_for_every_example():
    for path in sorted(EXAMPLES.glob("*.yaml")):
        original = yaml.safe_load(path.read_text())
        first = plan_mutation(original, CONFIG)
        assert first.ops, path.name
        mutated = apply(original, first)
        second = plan_mutation(mutated, CONFIG)
        assert second.ops == [], (path.name, second.ops)
        # A re-invocation may repeat a warning (the apiserver shows each distinct warning once), never add one.
        assert set(second.warnings) <= set(first.warnings), (path.name, second.warnings)


def test_only_the_target_container_and_pod_level_fields_change():
    original = yaml.safe_load((EXAMPLES / "pod-template-sidecar.yaml").read_text())
    plan = plan_mutation(original, CONFIG)
    assert plan.container == "primary"
    for op in plan.ops:
        assert op["path"].startswith("/spec/containers/0/") or op["path"].startswith(ALLOWED_PREFIXES), op
    mutated = apply(original, plan)
    assert mutated["spec"]["containers"][1] == original["spec"]["containers"][1]
    assert mutated["spec"]["initContainers"] == original["spec"]["initContainers"]
    assert {"name": "flyte-shared-memory", "mountPath": "/dev/shm"} in mutated["spec"]["containers"][0]["volumeMounts"]


def test_warnings_name_the_annotation_and_the_adjustment():
    plan = plan_mutation(pod({P + "requests": "cpu=4", P + "limits": "cpu=2,mem=1Gi"}), CONFIG)
    assert f"{P}requests + {P}limits: cpu request 4 lowered to its limit 2" in plan.warnings
    assert plan.pod["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "2", "memory": "1Gi"},
        "limits": {"cpu": "2", "memory": "1Gi"},
    }


@pytest.mark.parametrize(
    ("annotations", "containers", "spec", "message"),
    [
        (
            {P + "container": "nope", P + "resources": "cpu=1"},
            None,
            {},
            "annotation resources.flyte.org/container='nope'",
        ),
        ({P + "resources": "cpu=1"}, [{"name": "a"}, {"name": "b"}], {}, "has 2 containers"),
        (
            {P + "shared-memory": "true"},
            [{"name": "main", "volumeMounts": [{"name": "x", "mountPath": "/dev/shm"}]}],
            {},
            "/dev/shm is already mounted in container",
        ),
        (
            {P + "shared-memory": "true"},
            None,
            {"volumes": [{"name": "flyte-shared-memory", "hostPath": {"path": "/tmp"}}]},
            "A volume is already named flyte-shared-memory in pod spec",
        ),
        ({P + "resources": "cpu=abc"}, None, {}, "'abc'"),
    ],
)
def test_denials_name_annotation_and_value(annotations, containers, spec, message):
    with pytest.raises(Denied) as caught:
        plan_mutation(pod(annotations, containers, **spec), CONFIG)
    assert message in caught.value.message


def test_platform_limit_reject_mode_denies():
    config = WebhookConfig.from_mapping({"platform-limits": {"cpu": "8"}, "on-limit-exceeded": "reject"})
    with pytest.raises(Denied) as caught:
        plan_mutation(pod({P + "resources": "cpu=16"}), config)
    assert "annotation resources.flyte.org/resources='cpu=16': cpu request 16 is above the platform limit 8" in str(
        caught.value
    )


def test_on_invalid_ignore_admits_unchanged_with_a_warning():
    config = WebhookConfig.from_mapping({"on-invalid": "ignore"})
    plan = plan_mutation(pod({P + "resources": "cpu=abc"}), config)
    assert plan.outcome == "ignored" and plan.ops == []
    assert "on-invalid: ignore" in plan.warnings[0] and "'abc'" in plan.warnings[0]


# --- property: idempotency over generated pods ---------------------------------------------------------------

quantities = {
    "cpu": st.sampled_from(["100m", "250m", "500m", "1", "2", "1500m", "4"]),
    "memory": st.sampled_from(["128Mi", "1Gi", "1024Mi", "2Gi", "3G", "512Mi"]),
    "ephemeral-storage": st.sampled_from(["1Gi", "10Gi"]),
    "nvidia.com/gpu": st.sampled_from(["1", "2"]),
}
resource_maps = st.dictionaries(st.sampled_from(sorted(quantities)), st.just(None), max_size=4).flatmap(
    lambda keys: st.fixed_dictionaries({k: quantities[k] for k in keys})
)
containers = st.lists(
    st.fixed_dictionaries({"requests": resource_maps, "limits": resource_maps}), min_size=1, max_size=3
).map(lambda rs: [{"name": f"c{i}", "image": "img", "resources": r} for i, r in enumerate(rs)])
annotation_sets = st.fixed_dictionaries(
    {},
    optional={
        P + "resources": st.sampled_from(["cpu=1:2,mem=1Gi:2Gi", "gpu=1", "cpu=2,gpu=2,ephemeral_storage=1Gi"]),
        P + "accelerator": st.sampled_from(["T4", "A100.partition_1g_5gb", "A100.unpartitioned", "V5E.slice_2x4"]),
        P + "shared-memory": st.sampled_from(["true", "1Gi", "false"]),
        P + "gpu-resource-key": st.sampled_from(["nvidia.com/gpu", "amd.com/gpu"]),
    },
)
existing = st.fixed_dictionaries(
    {},
    optional={
        "tolerations": st.just(
            [
                {
                    "key": "k8s.amazonaws.com/accelerator",
                    "operator": "Equal",
                    "value": "nvidia-tesla-t4",
                    "effect": "NoSchedule",
                }
            ]
        ),
        "affinity": st.just(
            {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
                            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
                        ]
                    }
                }
            }
        ),
    },
)
configs = st.sampled_from(
    [
        CONFIG,
        WebhookConfig.from_mapping({"mig-strategy": "mixed", "platform-limits": {"cpu": "2", "gpu": "1"}}),
        WebhookConfig.from_mapping({"accelerator-placement": "nodeSelector", "preset": "karpenter"}),
    ]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(containers=containers, annotations=annotation_sets, extra=existing, config=configs)
# Every example a run ever found stays here (CI runs derandomized; `make explore` looks for new ones).
# A TPU accelerator on a pod whose GPU count sits under nvidia.com/gpu, request 2 over limit 1:
@example(
    containers=[
        {
            "name": "c0",
            "image": "img",
            "resources": {"requests": {"nvidia.com/gpu": "2"}, "limits": {"nvidia.com/gpu": "1"}},
        }
    ],
    annotations={P + "accelerator": "V5E.slice_2x4", P + "resources": "cpu=1:2,mem=1Gi:2Gi"},
    extra={},
    config=CONFIG,
)
def test_plan_is_idempotent_and_yields_valid_pods(containers, annotations, extra, config):
    original = pod({**annotations, "primary_container_name": "c0"}, containers, **extra)
    before = copy.deepcopy(original)
    try:
        first = plan_mutation(original, config)
    except Denied:
        return
    assert original == before
    mutated = apply(original, first)
    assert mutated == first.pod
    second = plan_mutation(mutated, config)
    assert second.ops == []
    from webhook.engine.quantity import parse_quantity

    if P + "resources" not in annotations:
        return  # the pod's own resources were not ours to fix
    target = mutated["spec"]["containers"][0]["resources"]
    request = read_annotations(annotations, P)
    # the pod's GPU is its accelerator's class's resource (a TPU's is google.com/tpu: nvidia.com/gpu is not ours)
    gpu_key = effective_gpu_resource_name(config, request.accelerator, request.gpu_resource_key) if request else ""
    managed = {"cpu", "memory", "ephemeral-storage", gpu_key}
    for name, request in (target.get("requests") or {}).items():
        if name not in managed and "mig-" not in name:
            continue  # Flyte's rules cover cpu, memory, ephemeral storage and the pod's GPU only
        limit = (target.get("limits") or {}).get(name)
        if limit is not None:
            assert parse_quantity(request) <= parse_quantity(limit), (name, target)
            if "gpu" in name or "mig" in name:
                assert parse_quantity(request) == parse_quantity(limit), (name, target)


# --- plan inputs: what a server may reuse between pods ---------------------------------------------------------

unread_changes = st.fixed_dictionaries(
    {
        "name": st.text("abcdefghij0123456789", min_size=1, max_size=10),
        "label": st.text("abc", max_size=3),
        "env": st.lists(st.text("XYZ", min_size=1, max_size=3), max_size=3),
        "image": st.sampled_from(["img:1", "img:2"]),
        "other_annotation": st.text("ab", max_size=2),
    }
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(containers=containers, annotations=annotation_sets, extra=existing, config=configs, change=unread_changes)
def test_equal_plan_inputs_mean_equal_answers(containers, annotations, extra, config, change):
    original = pod({**annotations, "primary_container_name": "c0"}, containers, **extra)
    variant = copy.deepcopy(original)
    variant["metadata"]["name"] = change["name"]
    variant["metadata"]["labels"] = {"task": change["label"]}
    variant["metadata"]["annotations"]["example.com/other"] = change["other_annotation"]
    variant["spec"]["containers"][0]["image"] = change["image"]
    variant["spec"]["containers"][0]["env"] = [{"name": n, "value": "1"} for n in change["env"]]
    assert plan_inputs(variant, P) == plan_inputs(original, P)
    try:
        first = plan_mutation(original, config)
    except Denied as exc:
        with pytest.raises(Denied) as again:
            plan_mutation(variant, config)
        assert again.value.message == exc.message
        return
    second = plan_mutation(variant, config)
    assert (second.ops, second.warnings, second.outcome) == (first.ops, first.warnings, first.outcome)


# --- warnings: only what changes the request, unless `warnings: all` --------------------------------------------


def _mig_pod(extra: dict[str, str] | None = None) -> dict:
    annotations = {P + "resources": "cpu=1,mem=1Gi,gpu=1", P + "accelerator": "A100.partition_1g_5gb", **(extra or {})}
    container = {"name": "main", "image": "x", "resources": {"requests": {"cpu": "500m"}}}
    return {"metadata": {"name": "m", "annotations": annotations}, "spec": {"containers": [container]}}


def test_routine_fills_are_no_warnings_by_default_and_every_note_with_warnings_all() -> None:
    quiet = plan_mutation(_mig_pod(), CONFIG)
    loud = plan_mutation(_mig_pod(), WebhookConfig.from_mapping({"warnings": "all"}))
    assert quiet.ops == loud.ops and quiet.warnings == []
    notes = [f"{step.annotation}: {note}" for step in quiet.steps for note in step.notes]
    assert loud.warnings == notes and len(notes) >= 4  # affinity, tolerations: what `explain` shows


@pytest.mark.parametrize(
    ("config", "annotations", "warned"),
    [
        (
            {"platform-limits": {"cpu": "2"}},
            {P + "resources": "cpu=8"},
            "cpu request 8 clamped to the platform limit 2",
        ),
        ({}, {P + "requests": "cpu=4", P + "limits": "cpu=2"}, "cpu request 4 lowered to its limit 2"),
        ({}, {P + "requests": "gpu=1", P + "limits": "gpu=2"}, "request raised to equal its limit (2)"),
        ({}, {P + "accelerator": "T4"}, "accelerator nvidia-tesla-t4 ignored: no container has a nvidia.com/gpu limit"),
        ({}, {P + "limits": "cpu=0,memory=1Gi"}, "cpu limit 0 ignored"),
        # more devices than any node has: the pod would sit Pending without a word
        ({}, {P + "resources": "gpu=100"}, "nvidia.com/gpu 100: more than any node has"),
        ({}, {P + "resources": "gpu=16", P + "accelerator": "A100"}, "more A100 devices than one node has (at most 8)"),
        ({"preset": "gke"}, {P + "resources": "gpu=H100:8,cpu=100000"}, "never: a warning below"),
    ],
)
def test_what_changes_the_request_is_a_warning_by_default(config: dict, annotations: dict, warned: str) -> None:
    pod = {"metadata": {"name": "c", "annotations": annotations}, "spec": {"containers": [{"name": "main"}]}}
    plan = plan_mutation(pod, WebhookConfig.from_mapping(config))
    if warned.startswith("never"):  # eight H100s fit a node; cpu without a configured limit is not judged
        assert plan.warnings == []
        return
    assert any(warned in w for w in plan.warnings), plan.warnings


def test_no_count_warning_for_types_flyte2_offers_singly() -> None:
    annotations = {P + "resources": "gpu=2", P + "accelerator": "amd-mi300x", P + "gpu-resource-key": "amd.com/gpu"}
    pod = {"metadata": {"name": "a", "annotations": annotations}, "spec": {"containers": [{"name": "main"}]}}
    assert plan_mutation(pod, WebhookConfig.from_mapping({"preset": "amd"})).warnings == []
