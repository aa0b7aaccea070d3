"""Plans under policies: defaults and limits of the matched policy, allowed accelerators, GPU caps, a default
`/dev/shm`, unannotated Flyte task pods under `flyte-task-pods`, and the policy named in notes and the summary."""

from __future__ import annotations

import contextlib
import copy
import json
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webhook.engine.config import WebhookConfig
from webhook.mutation.decision import Denied
from webhook.mutation.inputs import plan_inputs
from webhook.mutation.plan import plan_mutation
from webhook.mutation.policies import DEVICE_COUNT_CAP, gpu_counts

PREFIX = "resources.flyte.org/"
POLICIES: list[dict[str, Any]] = [
    {
        "name": "dev",
        "match": {"domain": "development"},
        "platform-limits": {"cpu": "2", "memory": "4Gi"},
        "default-requests": {"memory": "1Gi"},
        "allowed-accelerators": ["T4", "nvidia-l4", "TPU"],
        "max-gpus": 2,
    },
    {"name": "prod", "match": {"domain": "production"}, "allowed-accelerators": ["A100", "H100"], "max-gpus": 8},
    {"name": "shm", "match": {"project": "vision"}, "shared-memory": "2Gi"},
    {
        "name": "strict",
        "match": {"project": "ml", "domain": "staging"},
        "platform-limits": {"cpu": "1"},
        "on-limit-exceeded": "reject",
    },
]


def config(**keys: Any) -> WebhookConfig:
    return WebhookConfig.from_mapping({"policies": POLICIES, "flyte-task-pods": True, **keys})


def flyte_pod(
    project: str = "ml",
    domain: str = "development",
    annotations: dict[str, str] | None = None,
    resources: dict[str, Any] | None = None,
    containers: int = 1,
    **labels: str,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": "task-pod",
        "namespace": f"{project}-{domain}",
        "labels": {"project": project, "domain": domain, "task-name": "train", **labels},
    }
    if annotations is not None:
        metadata["annotations"] = annotations
    names = ["primary", *(f"sidecar{i}" for i in range(1, containers))]
    return {
        "metadata": metadata,
        "spec": {"containers": [{"name": n, "resources": resources or {}} for n in names]},
    }


def summary(plan: Any) -> dict[str, Any]:
    return json.loads(plan.pod["metadata"]["annotations"][PREFIX + "applied"])


def resources(plan: Any, index: int = 0) -> dict[str, Any]:
    return plan.pod["spec"]["containers"][index]["resources"]


# ------------------------------------------------------------------------------------- unannotated Flyte pods


def test_an_unannotated_flyte_pod_gets_the_policy_defaults_and_limits() -> None:
    pod = flyte_pod(resources={"limits": {"cpu": "8"}})
    plan = plan_mutation(pod, config())
    assert plan.outcome == "patched" and plan.policy == "dev"
    assert resources(plan) == {
        "requests": {"cpu": "2", "memory": "1Gi"},
        "limits": {"cpu": "2", "memory": "1Gi"},
    }
    assert summary(plan)["policy"] == "dev"
    assert "policy dev: cpu limit 8 clamped to the limit of policy dev 2" in plan.warnings
    # routine fills and the match are in `explain` (the steps), not warnings (`warnings: changes`)
    notes = [f"{step.annotation}: {note}" for step in plan.steps for note in step.notes]
    assert "policy dev: memory request defaulted to the default of policy dev (1Gi)" in notes
    assert any(n.startswith("policy dev: matched domain=development (domain level)") for n in notes)
    assert all("clamped" in w for w in plan.warnings), plan.warnings
    assert plan_inputs(pod, config()) is not None


def test_an_unannotated_flyte_pod_without_a_policy_gets_the_global_limits() -> None:
    pod = flyte_pod(domain="qa", resources={"requests": {"cpu": "16", "memory": "1Gi"}})
    plan = plan_mutation(pod, config(**{"platform-limits": {"cpu": "4"}}))
    assert plan.policy is None and "policy" not in summary(plan)
    assert resources(plan)["requests"]["cpu"] == "4"
    assert "config: cpu request 16 clamped to the platform limit 4" in plan.warnings


def test_an_unannotated_flyte_pod_that_needs_nothing_gets_no_patch() -> None:
    settled = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
    plan = plan_mutation(flyte_pod(resources=settled), config())
    assert plan.outcome == "allowed" and plan.ops == [] and plan.warnings == []


def test_without_the_switch_unannotated_flyte_pods_are_not_ours() -> None:
    off = config(**{"flyte-task-pods": False})
    pod = flyte_pod(resources={"limits": {"cpu": "8"}})
    assert plan_inputs(pod, off) is None
    assert (untouched := plan_mutation(pod, off)).outcome == "allowed" and untouched.steps == ()


def test_unannotated_pods_that_are_not_flyte_task_pods_stay_untouched() -> None:
    pod = {"metadata": {"name": "web", "labels": {"project": "ml", "domain": "development"}}, "spec": {}}
    assert plan_inputs(pod, config()) is None
    assert (untouched := plan_mutation(pod, config())).outcome == "allowed" and untouched.steps == ()


def test_a_flyte2_pod_is_recognised_by_its_managed_label() -> None:
    pod = {
        "metadata": {"labels": {"flyte.org/managed": "true", "domain": "development"}},
        "spec": {"containers": [{"name": "main", "resources": {"limits": {"cpu": "3"}}}]},
    }
    plan = plan_mutation(pod, config())
    assert plan.policy == "dev" and resources(plan)["limits"]["cpu"] == "2"


def test_an_unannotated_pod_with_an_unknown_task_container_keeps_its_resources() -> None:
    pod = flyte_pod(containers=2, resources={"limits": {"cpu": "8"}})
    plan = plan_mutation(pod, config())
    assert plan.ops == [] and resources(plan)["limits"]["cpu"] == "8"


def test_a_policy_limit_under_reject_denies_an_unannotated_pod_naming_the_policy() -> None:
    pod = flyte_pod(domain="staging", resources={"limits": {"cpu": "3"}})
    with pytest.raises(Denied, match=r"^policy strict: cpu request 3 is above the limit of policy strict 1"):
        plan_mutation(pod, config())


# --------------------------------------------------------------------------------------------- annotated pods


def test_annotation_adjustments_name_the_policy_limit() -> None:
    pod = flyte_pod(annotations={PREFIX + "resources": "cpu=4,mem=2Gi"})
    plan = plan_mutation(pod, config())
    assert resources(plan)["limits"] == {"cpu": "2", "memory": "2Gi"}
    assert f"{PREFIX}resources: cpu limit 4 clamped to the limit of policy dev 2" in plan.warnings


def test_a_policy_with_resources_resolves_them_for_an_accelerator_only_pod() -> None:
    pod = flyte_pod(annotations={PREFIX + "accelerator": "T4"}, resources={"limits": {"cpu": "6"}})
    plan = plan_mutation(pod, config())
    assert resources(plan)["limits"]["cpu"] == "2"


def test_without_a_matching_policy_annotated_pods_plan_as_before() -> None:
    pod = flyte_pod(domain="qa", annotations={PREFIX + "accelerator": "A100"}, resources={"limits": {"cpu": "6"}})
    with_policies, without = plan_mutation(pod, config()), plan_mutation(pod, WebhookConfig.from_mapping({}))
    assert with_policies.ops == without.ops and with_policies.warnings == without.warnings


@pytest.mark.parametrize(
    ("domain", "accelerator"),
    [
        ("development", "T4"),
        ("development", "nvidia-tesla-t4"),
        ("development", "L4"),  # listed as the device string nvidia-l4
        ("development", "V5E.slice_2x2"),  # the TPU class
        ("production", "nvidia-tesla-h100"),  # any spelling of the listed H100
        ("production", "A100.partition_1g_5gb"),
    ],
)
def test_allowed_accelerators(domain: str, accelerator: str) -> None:
    asked = {PREFIX + "resources": "gpu=1", PREFIX + "accelerator": accelerator}
    plan = plan_mutation(flyte_pod(domain=domain, annotations=asked), config())
    assert plan.outcome == "patched" and summary(plan)["accelerator"]


@pytest.mark.parametrize(
    ("domain", "annotation", "value", "shown"),
    [
        ("development", "accelerator", "A100", "'A100' (nvidia-tesla-a100)"),
        ("development", "resources", '{"gpu": "H100:1"}', "'H100' (nvidia-h100)"),
        ("production", "accelerator", "T4", "'T4' (nvidia-tesla-t4)"),
        ("production", "extended-resources", '{"gpuAccelerator": {"device": "nvidia-l4"}}', "'L4' (nvidia-l4)"),
    ],
)
def test_other_accelerators_are_denied_naming_the_policy(domain: str, annotation: str, value: str, shown: str) -> None:
    pod = flyte_pod(domain=domain, annotations={PREFIX + annotation: value})
    with pytest.raises(Denied) as caught:
        plan_mutation(pod, config())
    assert caught.value.message.startswith(f"policy {'dev' if domain == 'development' else 'prod'} (domain={domain})")
    assert f"accelerator {shown} is not allowed; allowed: " in caught.value.message


def test_a_policy_violation_is_denied_also_under_on_invalid_ignore() -> None:
    pod = flyte_pod(annotations={PREFIX + "accelerator": "A100"})
    with pytest.raises(Denied, match="not allowed"):
        plan_mutation(pod, config(**{"on-invalid": "ignore"}))


@pytest.mark.parametrize(("gpus", "denied"), [("1", False), ("2", False), ("3", True)])
def test_max_gpus(gpus: str, denied: bool) -> None:
    pod = flyte_pod(annotations={PREFIX + "resources": f"gpu={gpus}", PREFIX + "accelerator": "T4"})
    if denied:
        with pytest.raises(Denied, match=r"policy dev \(domain=development\): the pod asks for 3 GPUs"):
            plan_mutation(pod, config())
    else:
        assert resources(plan_mutation(pod, config()))["limits"]["nvidia.com/gpu"] == gpus


def test_max_gpus_counts_every_container_and_unannotated_pods() -> None:
    pod = flyte_pod(containers=2, resources={"limits": {"nvidia.com/gpu": "2"}})
    with pytest.raises(Denied, match="asks for 4 GPUs"):
        plan_mutation(pod, config())


# ------------------------------------------------------------------------------------------- shared memory


def test_a_policy_default_shared_memory() -> None:
    plan = plan_mutation(flyte_pod(project="vision", domain="qa"), config())
    assert plan.pod["spec"]["volumes"] == [
        {"name": "flyte-shared-memory", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}}
    ]
    assert summary(plan)["sharedMemory"] == {"mountPath": "/dev/shm", "sizeLimit": "2Gi"}
    assert any(step.annotation == "policy shm shared-memory" and step.notes for step in plan.steps)
    assert plan.warnings == []  # a routine fill: `explain` shows it (`warnings: changes`)


def test_the_annotation_overrides_the_default_shared_memory() -> None:
    pod = flyte_pod(project="vision", domain="qa", annotations={PREFIX + "shared-memory": "false"})
    plan = plan_mutation(pod, config())
    assert "volumes" not in plan.pod["spec"]


# ------------------------------------------------------------------------------------------------ plan keys


def test_plan_inputs_follow_what_policies_read() -> None:
    cfg = config()
    dev, prod = flyte_pod(), flyte_pod(domain="production")
    assert plan_inputs(dev, cfg) != plan_inputs(prod, cfg)
    # Flyte 2 labels every attempt and action: labels no policy reads keep one key for a map task's pods
    assert plan_inputs(flyte_pod(attempt="1"), cfg) == plan_inputs(flyte_pod(attempt="2"), cfg)
    labelled = config(policies=[*POLICIES, {"name": "team", "match": {"labels": {"attempt": "2"}}, "max-gpus": 1}])
    assert plan_inputs(flyte_pod(attempt="1"), labelled) != plan_inputs(flyte_pod(attempt="2"), labelled)


def test_plan_inputs_with_a_prefix_alone_ignore_policies() -> None:
    pod = flyte_pod(annotations={PREFIX + "accelerator": "T4"})
    assert plan_inputs(pod, PREFIX) == plan_inputs(pod, WebhookConfig.from_mapping({}))
    assert plan_inputs(pod, PREFIX) != plan_inputs(pod, config())


def test_the_review_namespace_counts_for_a_pod_without_one() -> None:
    cfg = config(policies=[{"name": "ns", "match": {"namespace": "team-a"}, "platform-limits": {"cpu": "1"}}])
    pod = flyte_pod(resources={"limits": {"cpu": "3"}}, annotations={PREFIX + "resources": "cpu=2"})
    del pod["metadata"]["namespace"]
    assert plan_mutation(pod, cfg, namespace="team-a").policy == "ns"
    assert plan_mutation(pod, cfg, namespace="team-b").policy is None
    assert plan_inputs(pod, cfg, "team-a") != plan_inputs(pod, cfg, "team-b")


def test_a_pods_own_labels_never_select_the_policy_of_another_namespaces_domain() -> None:
    # In ml-development, a pod labelled domain=production gets neither production's policy nor development's.
    spoofed = flyte_pod(domain="production", annotations={PREFIX + "accelerator": "A100"})
    spoofed["metadata"]["namespace"] = "ml-development"
    with pytest.raises(Denied, match="is not allowed"):  # the global config allows A100; dev does not
        plan_mutation(
            spoofed,
            config(
                policies=[
                    *POLICIES,
                    {"name": "ns", "match": {"namespace": "ml-development"}, "allowed-accelerators": ["T4"]},
                ]
            ),
        )
    assert plan_mutation(spoofed, config()).policy is None
    # unannotated, it is no Flyte task pod there: flyte-task-pods leaves it alone
    bare = flyte_pod(domain="production", resources={"limits": {"cpu": "64"}})
    bare["metadata"]["namespace"] = "ml-development"
    assert (untouched := plan_mutation(bare, config())).outcome == "allowed" and untouched.steps == ()
    # an empty namespace-template trusts the labels (documented as a convenience, not a boundary)
    assert plan_mutation(spoofed, config(**{"namespace-template": ""})).policy == "prod"


# ------------------------------------------------------------------------------------------------ hostile pods

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=20), inner, max_size=3),
    max_leaves=8,
)


def _or_junk(valid: Any) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(valid), st.just(valid), _JSON)


_LABELS = st.one_of(
    st.fixed_dictionaries(
        {"project": _or_junk("ml"), "domain": _or_junk("development"), "task-name": _or_junk("t")},
        optional={"flyte.org/managed": _or_junk("true"), "workflow-name": _or_junk("w")},
    ),
    _JSON,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    labels=_LABELS,
    namespace=_or_junk("ml-development"),
    annotations=_or_junk({PREFIX + "accelerator": "T4"}),
    containers=_or_junk([{"name": "primary", "resources": {"limits": {"cpu": "8", "nvidia.com/gpu": "1"}}}]),
)
def test_any_labels_and_namespace_give_a_plan_or_a_short_denial(
    labels: Any, namespace: Any, annotations: Any, containers: Any
) -> None:
    pod = {
        "metadata": {"labels": labels, "namespace": namespace, "annotations": annotations},
        "spec": {"containers": containers},
    }
    before = copy.deepcopy(pod)
    cfg = config()
    key = plan_inputs(pod, cfg, "review-ns")
    try:
        plan = plan_mutation(pod, cfg, "review-ns")
    except Denied as exc:
        assert len(exc.message.encode()) <= 1100 and key is not None
    else:
        if key is None:  # not ours: admitted as it is, nothing planned
            assert plan.outcome == "allowed" and plan.steps == () and plan.pod is pod
    assert pod == before


def test_max_gpus_counts_other_device_classes_and_mig_slices() -> None:
    tpus = flyte_pod(resources={"limits": {"google.com/tpu": "4"}})
    with pytest.raises(Denied, match=r"asks for 4 GPUs \(google.com/tpu\); at most 2 allowed"):
        plan_mutation(tpus, config())
    slices = flyte_pod(resources={"limits": {"nvidia.com/mig-1g.5gb": "2", "nvidia.com/gpu": "1"}})
    with pytest.raises(Denied, match=r"asks for 3 GPUs \(nvidia.com/gpu, nvidia.com/mig-1g.5gb\)"):
        plan_mutation(slices, config())


# ------------------------------------------------------------------------------- counting is bounded and whole


@pytest.mark.parametrize("huge", ["1e999999", "1e100000", "9" * 64, "999999999Ei"])
@pytest.mark.parametrize("resource", ["nvidia.com/gpu", "amd.com/gpu"])
def test_a_huge_device_count_is_denied_without_building_the_integer(huge: str, resource: str) -> None:
    pod = flyte_pod(containers=2, resources={"limits": {resource: huge}})
    started = time.process_time()
    with pytest.raises(Denied, match=r"asks for more than 1000000 GPUs .*; at most 2 allowed"):
        plan_mutation(pod, config(**{"gpu-resource-name": resource}))
    assert time.process_time() - started < 1.0  # `int()` of 1e999999 took 30 s of CPU: a stall, not a slow machine


def test_device_counts_never_become_large_integers() -> None:
    assert gpu_counts(flyte_pod(resources={"limits": {"nvidia.com/gpu": "1e999999"}}), ["nvidia.com/gpu"]) == {
        "nvidia.com/gpu": DEVICE_COUNT_CAP + 1
    }


def _with_init(pod: dict[str, Any], *init: tuple[str, bool]) -> dict[str, Any]:
    pod["spec"]["initContainers"] = [
        {
            "name": f"init{i}",
            "resources": {"limits": {"nvidia.com/gpu": gpus}},
            **({"restartPolicy": "Always"} if sidecar else {}),
        }
        for i, (gpus, sidecar) in enumerate(init)
    ]
    return pod


def test_max_gpus_counts_init_containers() -> None:
    pod = _with_init(flyte_pod(), ("8", False))
    with pytest.raises(Denied, match=r"asks for 8 GPUs \(nvidia.com/gpu\); at most 2 allowed"):
        plan_mutation(pod, config())


def test_max_gpus_counts_sidecars_beside_every_container_after_them() -> None:
    pod = _with_init(flyte_pod(resources={"limits": {"nvidia.com/gpu": "2"}}), ("1", True))
    with pytest.raises(Denied, match=r"asks for 3 GPUs"):
        plan_mutation(pod, config())


def test_an_init_container_runs_before_the_containers_so_its_devices_are_not_added() -> None:
    # The scheduler's effective request: max(init container, sum of containers), as Kubernetes counts it.
    pod = _with_init(flyte_pod(resources={"limits": {"nvidia.com/gpu": "2"}}), ("2", False))
    assert gpu_counts(pod, ["nvidia.com/gpu"]) == {"nvidia.com/gpu": 2}
    plan_mutation(pod, config())  # 2 GPUs at most at any time: allowed


# ------------------------------------------------------------------------------- the fence holds without us


def _selecting(pod: dict[str, Any], how: str, device: str) -> dict[str, Any]:
    label = "k8s.amazonaws.com/accelerator"
    if how == "nodeSelector":
        pod["spec"]["nodeSelector"] = {label: device}
    elif how == "affinity":
        term = {"matchExpressions": [{"key": label, "operator": "In", "values": ["nvidia-tesla-t4", device]}]}
        pod["spec"]["affinity"] = {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}
        }
    else:
        pod["spec"]["tolerations"] = [{"key": label, "operator": "Equal", "value": device, "effect": "NoSchedule"}]
    return pod


@pytest.mark.parametrize("how", ["nodeSelector", "affinity", "toleration"])
def test_allowed_accelerators_hold_for_what_the_pod_selects_itself(how: str) -> None:
    with pytest.raises(Denied, match=r"policy dev .*the pod's own .* asks for accelerator 'nvidia-tesla-a100'"):
        plan_mutation(_selecting(flyte_pod(), how, "nvidia-tesla-a100"), config())
    allowed = plan_mutation(_selecting(flyte_pod(), how, "nvidia-tesla-t4"), config())
    assert allowed.policy == "dev"


def test_selecting_every_device_on_the_label_is_refused_under_allowed_accelerators() -> None:
    pod = flyte_pod()
    pod["spec"]["tolerations"] = [{"key": "k8s.amazonaws.com/accelerator", "operator": "Exists"}]
    with pytest.raises(Denied, match="selects any device"):
        plan_mutation(pod, config())


def test_under_on_invalid_ignore_a_pod_admitted_as_it_stands_keeps_the_fence() -> None:
    junk = {PREFIX + "resources": "cpu=lots"}
    cfg = config(**{"on-invalid": "ignore"})
    gpus = flyte_pod(annotations=junk, resources={"limits": {"nvidia.com/gpu": "8"}})
    with pytest.raises(Denied, match=r"asks for 8 GPUs.*invalid and ignored"):
        plan_mutation(gpus, cfg)
    cpus = flyte_pod(annotations=junk, resources={"limits": {"cpu": "64"}})
    with pytest.raises(Denied, match=r"limits.cpu '64' is above the limit of policy dev 2"):
        plan_mutation(cpus, cfg)
    assert plan_mutation(flyte_pod(annotations=junk), cfg).outcome == "ignored"


@pytest.mark.parametrize("annotations", [{PREFIX + "accelerator": "A100"}, {PREFIX + "resources": "gpu=A100:1"}])
def test_a_huge_gpu_limit_beside_an_accelerator_is_never_made_an_integer(annotations: dict[str, str]) -> None:
    pod = flyte_pod(domain="staging", annotations=annotations, resources={"limits": {"nvidia.com/gpu": "1e999999"}})
    started = time.process_time()
    with contextlib.suppress(Denied):
        plan_mutation(pod, config())
    assert time.process_time() - started < 1.0  # int() of 1e999999 took 30 s of CPU: a stall, not a slow machine
