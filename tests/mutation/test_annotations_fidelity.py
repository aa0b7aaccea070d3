"""From annotations to the pod where the webhook follows Flyte 2 over its own earlier choices: a device's class
decides its resource; a Flyte 2 GPU string takes every count `GPU()` takes; an accelerator of another class takes
over the GPU count the pod holds. Each case runs the whole plan, and a second plan on its result changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from webhook.engine.config import WebhookConfig
from webhook.engine.pod import Change
from webhook.engine.quantity import parse_quantity
from webhook.mutation.plan import Denied, Plan, plan_mutation

P = "resources.flyte.org/"
EKS = WebhookConfig.from_mapping({"preset": "eks"})
LEGACY_AMD = WebhookConfig.from_mapping({"gpu-resource-name": "amd.com/gpu"})
TPU_LABELS = ("cloud.google.com/gke-tpu-accelerator", "cloud.google.com/gke-tpu-topology")


def task_pod(annotations: dict[str, str], resources: dict[str, Any] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "c0", "image": "task:1"}
    if resources is not None:
        container["resources"] = resources
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "t", "namespace": "flyte", "annotations": {P + k: v for k, v in annotations.items()}},
        "spec": {"containers": [container]},
    }


def planned(pod: dict[str, Any], config: WebhookConfig) -> tuple[dict[str, Any], Plan]:
    """The plan, the pod it yields, and the check that planning that pod again changes nothing."""
    plan = plan_mutation(pod, config)
    mutated = dict(plan.pod)
    assert plan_mutation(mutated, config).ops == []
    return mutated, plan


def resources(pod: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    found = pod["spec"]["containers"][0].get("resources") or {}
    return found.get("requests") or {}, found.get("limits") or {}


def assert_valid(pod: dict[str, Any]) -> None:
    """What the API server checks: every request at most its limit; an extended resource's request equals it."""
    requests, limits = resources(pod)
    for name, request in requests.items():
        if name in limits:
            assert parse_quantity(request) <= parse_quantity(limits[name]), (name, requests, limits)
            if "/" in name:
                assert parse_quantity(request) == parse_quantity(limits[name]), (name, requests, limits)
        else:
            assert "/" not in name, (name, requests, limits)  # an extended resource needs its limit


def required_keys(pod: dict[str, Any]) -> list[str]:
    terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    return [e["key"] for term in terms["nodeSelectorTerms"] for e in term["matchExpressions"]]


# --- a flytekit TPU (or other class) on a pod whose count sits under nvidia.com/gpu --------------------------


def test_tpu_accelerator_over_a_gpu_request_above_its_limit_gives_a_valid_pod() -> None:
    # Found once by tests/mutation/test_plan.py's property test: the GPU request stayed above its limit.
    pod = task_pod(
        {"accelerator": "V5E.slice_2x4", "resources": "cpu=1:2,mem=1Gi:2Gi"},
        {"requests": {"nvidia.com/gpu": "2"}, "limits": {"nvidia.com/gpu": "1"}},
    )
    mutated, plan = planned(pod, EKS)
    assert_valid(mutated)
    assert resources(mutated) == (
        {"cpu": "1", "memory": "1Gi", "google.com/tpu": "1"},
        {"cpu": "2", "memory": "2Gi", "google.com/tpu": "1"},
    )
    assert required_keys(mutated) == list(TPU_LABELS)
    assert any(isinstance(w, str) and "moved to google.com/tpu" in w for w in plan.warnings), plan.warnings


def test_tpu_accelerator_takes_the_gpu_count_instead_of_being_dropped() -> None:
    pod = task_pod({"accelerator": "V5E.slice_2x4"}, {"limits": {"nvidia.com/gpu": "4"}})
    mutated, plan = planned(pod, EKS)
    assert resources(mutated)[1] == {"google.com/tpu": "4", "cpu": "1", "memory": "1Gi"}
    assert "nvidia.com/gpu" not in resources(mutated)[0]
    assert required_keys(mutated) == list(TPU_LABELS)
    assert not any("ignored" in w for w in plan.warnings), plan.warnings
    moved = [s for step in plan.steps for s in step.notes if "moved to google.com/tpu" in s]
    assert moved and all(isinstance(note, Change) for note in moved)


def test_neuron_accelerator_takes_the_gpu_count() -> None:
    mutated, _ = planned(task_pod({"accelerator": "Trn1"}, {"limits": {"nvidia.com/gpu": "1"}}), EKS)
    assert resources(mutated)[1].get("aws.amazon.com/neuron") == "1"
    assert "nvidia.com/gpu" not in resources(mutated)[1]


def test_the_pods_own_gpu_resource_key_keeps_its_count_where_it_is() -> None:
    pod = task_pod(
        {"accelerator": "V5E.slice_2x4", "gpu-resource-key": "nvidia.com/gpu"}, {"limits": {"nvidia.com/gpu": "1"}}
    )
    mutated, _ = planned(pod, EKS)
    assert resources(mutated)[1].get("nvidia.com/gpu") == "1"
    assert "google.com/tpu" not in resources(mutated)[1]


# --- a device's class decides its resource; the legacy global name is for a GPU with no device --------------


def test_an_nvidia_device_counts_under_nvidia_gpu_whatever_the_global_name() -> None:
    mutated, _ = planned(task_pod({"resources": "gpu=A100:2"}), LEGACY_AMD)
    requests, limits = resources(mutated)
    assert limits["nvidia.com/gpu"] == requests["nvidia.com/gpu"] == "2"
    assert "amd.com/gpu" not in limits
    assert required_keys(mutated)[0] == "k8s.amazonaws.com/accelerator"


def test_a_pod_already_holding_nvidia_gpu_ends_with_one_gpu_resource() -> None:
    pod = task_pod({"resources": "gpu=A100:2"}, {"limits": {"nvidia.com/gpu": "1"}})
    mutated, _ = planned(pod, LEGACY_AMD)
    assert {k for k in resources(mutated)[1] if k.endswith("/gpu")} == {"nvidia.com/gpu"}
    assert resources(mutated)[1]["nvidia.com/gpu"] == "2"


@pytest.mark.parametrize(
    ("annotations", "resource"),
    [
        ({"resources": "gpu=2"}, "amd.com/gpu"),  # no device: the global name
        ({"resources": "gpu=1", "accelerator": "acme-x1"}, "amd.com/gpu"),  # a device the catalog lacks
        ({"resources": "gpu=1", "accelerator": "amd-mi300x"}, "amd.com/gpu"),  # an AMD device: its class's
        ({"resources": "gpu=1", "accelerator": "T4"}, "nvidia.com/gpu"),  # a flytekit NVIDIA constant
    ],
)
def test_where_the_legacy_global_name_still_applies(annotations: dict[str, str], resource: str) -> None:
    mutated, _ = planned(task_pod(annotations), LEGACY_AMD)
    assert [k for k in resources(mutated)[1] if k.endswith("/gpu")] == [resource]


# --- Flyte 2 GPU strings take the counts GPU() takes ----------------------------------------------------------


@pytest.mark.parametrize("gpu", ["RTX_PRO_6000:4", "RTX_PRO_6000:8", "RTX_PRO_4500:2", "A2:2"])
def test_gpu_counts_flyte2_gpu_object_accepts_are_admitted(gpu: str) -> None:
    mutated, _ = planned(task_pod({"resources": f"gpu={gpu}"}), EKS)
    assert resources(mutated)[1]["nvidia.com/gpu"] == gpu.rsplit(":", 1)[1]


def test_a_policy_caps_gpu_counts() -> None:
    config = WebhookConfig.from_mapping(
        {"policies": [{"name": "small", "match": {"namespace": "flyte"}, "max-gpus": 2}]}
    )
    with pytest.raises(Denied, match="at most 2"):
        plan_mutation(task_pod({"resources": "gpu=RTX_PRO_6000:4"}), config)


def test_other_classes_keep_their_string_counts() -> None:
    with pytest.raises(Denied, match="Trn1 comes in counts of 1, 4, 8, 16"):
        plan_mutation(task_pod({"resources": "gpu=Trn1:3"}), EKS)
