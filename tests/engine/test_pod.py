"""Flyte v1.16.8 backend vectors 47-92 (flyteplugins' resource resolution, GPU node selectors and shared memory,
run as Go) and properties of `webhook.engine.pod`.

Where `pod.py` deliberately differs from Flyte v1 (its module docstring), the test asserts our behaviour and a
comment names the vector and the reason: zero quantities are dropped instead of written as "0"; a GPU request
always equals its limit; requirements/tolerations are deduplicated; an omitted shm size leaves `sizeLimit` out.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pytest
from flyteidl.core import tasks_pb2
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from webhook.engine.accelerators import Accelerator, BaseAccelerator
from webhook.engine.config import WebhookConfig
from webhook.engine.names import IDL_TO_K8S
from webhook.engine.pod import (
    SHM_MOUNT_NAME,
    SHM_MOUNT_PATH,
    PlatformLimitExceeded,
    PodSemanticsError,
    Result,
    _resolve_remembered,
    apply_accelerator,
    apply_container_resources,
    apply_resource_tolerations,
    apply_shared_memory,
    effective_gpu_resource_name,
    idl_resources_to_k8s,
)
from webhook.engine.quantity import parse_quantity
from webhook.engine.resources import Resources, ResourceSpec, convert_resources_to_resource_model

PRIMARY = "primary"
GPU = "nvidia.com/gpu"
DL = "k8s.amazonaws.com/accelerator"
PL = "k8s.amazonaws.com/gpu-partition-size"
TPU = "google.com/tpu"

DEFAULT = WebhookConfig.from_mapping({})
# The "admin" platform: flyteadmin's task_resources defaults, all four keys present (zeros = unset / no bound).
ADMIN = WebhookConfig.from_mapping(
    {
        "default-requests": {"cpu": "2", "memory": "200Mi", "ephemeral-storage": "0", GPU: "0"},
        "platform-limits": {"cpu": "2", "memory": "1Gi", "ephemeral-storage": "0", GPU: "1"},
    }
)
AMD = WebhookConfig.from_mapping({"gpu-resource-name": "amd.com/gpu"})


# --- helpers --------------------------------------------------------------------------------------------------

_IDL_NAMES = {name: idl for idl, name in IDL_TO_K8S.items()}


def overrides(requests: Mapping[str, str] | None, limits: Mapping[str, str] | None) -> tasks_pb2.Resources:
    """Kubernetes-named override maps (`gpu`: the pod's GPU resource) as the IDL `Resources` a task sends."""

    def entries(values: Mapping[str, str] | None) -> list[tasks_pb2.Resources.ResourceEntry]:
        return [tasks_pb2.Resources.ResourceEntry(name=_IDL_NAMES[k], value=v) for k, v in (values or {}).items()]

    return tasks_pb2.Resources(requests=entries(requests), limits=entries(limits))


def resolve_resources(
    pod: Mapping[str, Any],
    container_name: str,
    *,
    requests: Mapping[str, str] | None = None,
    limits: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> Result:
    return apply_container_resources(pod, container_name, resources=overrides(requests, limits), **kwargs)


def place(pod: Mapping[str, Any], accelerator: BaseAccelerator, **kwargs: Any) -> Result:
    """`apply_accelerator` with the accelerator's IDL message, its device class beside it when one was given."""
    device_class = accelerator.device_class if accelerator.has_device_class else None
    return apply_accelerator(pod, accelerator.to_flyte_idl(), device_class=device_class, **kwargs)


def mount_shm(
    pod: Mapping[str, Any],
    container_name: str,
    size_limit: str | None = None,
    mount_name: str = SHM_MOUNT_NAME,
    mount_path: str = SHM_MOUNT_PATH,
) -> Result:
    """`apply_shared_memory` with the IDL `SharedMemory` of these fields."""
    memory = tasks_pb2.SharedMemory(mount_name=mount_name, mount_path=mount_path, size_limit=size_limit or "")
    return apply_shared_memory(pod, container_name, memory)


def container(
    name: str = PRIMARY,
    requests: Mapping[str, str] | None = None,
    limits: Mapping[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "image": "ghcr.io/example/task:1", **extra}
    resources: dict[str, Any] = {}
    if requests is not None:
        resources["requests"] = dict(requests)
    if limits is not None:
        resources["limits"] = dict(limits)
    if resources:
        out["resources"] = resources
    return out


def make_pod(*containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "task-abc", "namespace": "flyte", "annotations": {"a": "b"}},
        "spec": {"containers": list(containers or [container()]), **spec},
    }


def resources_of(pod: Mapping[str, Any], name: str = PRIMARY) -> tuple[dict[str, str], dict[str, str]]:
    for c in pod["spec"]["containers"]:
        if c["name"] == name:
            res = c.get("resources") or {}
            return dict(res.get("requests") or {}), dict(res.get("limits") or {})
    raise AssertionError(f"no container {name}")


def pure(fn: Any, pod: dict[str, Any], *args: Any, **kwargs: Any) -> Result:
    """Call a pod function and check it left its input untouched."""
    before = copy.deepcopy(pod)
    result = fn(pod, *args, **kwargs)
    assert pod == before, "the input pod was modified"
    return result


def resolve(
    req: Mapping[str, str] | None = None,
    lim: Mapping[str, str] | None = None,
    *,
    config: WebhookConfig = DEFAULT,
    assign: bool = True,
    requests: Mapping[str, str] | None = None,
    limits: Mapping[str, str] | None = None,
    gpu: str | None = None,
) -> tuple[dict[str, str], dict[str, str], Result]:
    pod = make_pod(container(requests=req, limits=lim))
    result = pure(
        resolve_resources,
        pod,
        PRIMARY,
        requests=requests,
        limits=limits,
        config=config,
        gpu_resource_name=gpu or config.gpu_resource_name,
        assign=assign,
    )
    r, l_ = resources_of(result.pod)
    return r, l_, result


def gpu_pod(**spec: Any) -> dict[str, Any]:
    return make_pod(container(requests={GPU: "1"}, limits={GPU: "1"}), **spec)


def terms(pod: Mapping[str, Any]) -> list[list[dict[str, Any]]]:
    required = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    return [t.get("matchExpressions", []) for t in required["nodeSelectorTerms"]]


def req_in(key: str, value: str) -> dict[str, Any]:
    return {"key": key, "operator": "In", "values": [value]}


def tol(key: str, value: str) -> dict[str, Any]:
    return {"key": key, "operator": "Equal", "value": value, "effect": "NoSchedule"}


# --- backend resource resolution (ApplyResourceOverrides): vectors 47-70 ---------------------------------------------

ONE_GI = {"memory": "1Gi"}

RESOLUTION_VECTORS = [
    # id, container R, container L, config, expected R, expected L
    ("v47", {"cpu": "1"}, None, DEFAULT, {"cpu": "1", **ONE_GI}, {"cpu": "1", **ONE_GI}),
    ("v48", None, {"cpu": "2"}, DEFAULT, {"cpu": "2", **ONE_GI}, {"cpu": "2", **ONE_GI}),
    ("v49", None, None, DEFAULT, {"cpu": "1", **ONE_GI}, {"cpu": "1", **ONE_GI}),
    ("v50", {"cpu": "4"}, {"cpu": "2"}, DEFAULT, {"cpu": "2", **ONE_GI}, {"cpu": "2", **ONE_GI}),
    (
        "v51",
        {"cpu": "1"},
        {"cpu": "40"},
        WebhookConfig.from_mapping({"default-requests": {"cpu": "10"}, "platform-limits": {"cpu": "20"}}),
        {"cpu": "1", **ONE_GI},
        {"cpu": "20", **ONE_GI},
    ),
    (
        "v52",
        {"cpu": "40"},
        {"cpu": "50"},
        WebhookConfig.from_mapping({"default-requests": {"cpu": "10"}, "platform-limits": {"cpu": "20"}}),
        {"cpu": "20", **ONE_GI},
        {"cpu": "20", **ONE_GI},
    ),
    ("v53", None, None, ADMIN, {"cpu": "2", "memory": "200Mi"}, {"cpu": "2", "memory": "200Mi"}),
    (
        "v54",
        {"cpu": "500m", "memory": "2Gi"},
        None,
        ADMIN,
        {"cpu": "500m", "memory": "1Gi"},
        {"cpu": "500m", "memory": "1Gi"},
    ),
    ("v55", {"cpu": "3", "memory": "3Gi"}, None, ADMIN, {"cpu": "2", **ONE_GI}, {"cpu": "2", **ONE_GI}),
    (
        "v56",
        {GPU: "1"},
        None,
        ADMIN,
        {"cpu": "2", "memory": "200Mi", GPU: "1"},
        {"cpu": "2", "memory": "200Mi", GPU: "1"},
    ),
    (
        "v57",
        None,
        {GPU: "2"},
        ADMIN,
        {"cpu": "2", "memory": "200Mi", GPU: "1"},
        {"cpu": "2", "memory": "200Mi", GPU: "1"},
    ),
    # v58 differs: Flyte keeps GPU 1 / 2 (the API server then rejects the pod); we raise the request to the limit.
    (
        "v58",
        {"cpu": "1", GPU: "1"},
        {GPU: "2"},
        DEFAULT,
        {"cpu": "1", GPU: "2", **ONE_GI},
        {"cpu": "1", GPU: "2", **ONE_GI},
    ),
    (
        "v59",
        {"ephemeral-storage": "1Gi"},
        None,
        DEFAULT,
        {"ephemeral-storage": "1Gi", "cpu": "1", **ONE_GI},
        {"ephemeral-storage": "1Gi", "cpu": "1", **ONE_GI},
    ),
    (
        "v60",
        None,
        {"ephemeral-storage": "10Gi"},
        ADMIN,
        {"ephemeral-storage": "10Gi", "cpu": "2", "memory": "200Mi"},
        {"ephemeral-storage": "10Gi", "cpu": "2", "memory": "200Mi"},
    ),
    # v62: inputs as they are once the backend canonicalised the task's quantities (0.5 -> 500m, 0.25 -> 250m).
    ("v62", {"cpu": "500m"}, {"cpu": "250m"}, DEFAULT, {"cpu": "250m", **ONE_GI}, {"cpu": "250m", **ONE_GI}),
]


@pytest.mark.parametrize(
    ("req", "lim", "config", "want_req", "want_lim"),
    [v[1:] for v in RESOLUTION_VECTORS],
    ids=[v[0] for v in RESOLUTION_VECTORS],
)
def test_backend_resolution_vectors(
    req: dict[str, str] | None,
    lim: dict[str, str] | None,
    config: WebhookConfig,
    want_req: dict[str, str],
    want_lim: dict[str, str],
) -> None:
    got_req, got_lim, _ = resolve(req, lim, config=config)
    assert (got_req, got_lim) == (want_req, want_lim)


def test_v61_zero_platform_requests_write_nothing() -> None:
    # v61 differs: Flyte writes cpu/memory "0" into both maps; we drop zero quantities, so the pod is unchanged.
    config = WebhookConfig.from_mapping({"default-requests": {"cpu": "0", "memory": "0"}})
    pod = make_pod(container())
    result = pure(resolve_resources, pod, PRIMARY, config=config, gpu_resource_name=GPU)
    assert result.pod == pod
    assert "resources" not in result.pod["spec"]["containers"][0]
    assert result.notes == ()


def test_v63_ensure_in_range_clamps_without_filling() -> None:
    # v63 differs: Flyte gives R {cpu: 2, memory: "0"}, L {cpu: "0", memory: "0"} (a "0" limit below the
    # request, which the API server rejects); we drop the zeros, leaving only the clamped request.
    config = WebhookConfig.from_mapping({"platform-limits": {"cpu": "2"}})
    r, l_, result = resolve({"cpu": "4"}, None, config=config, assign=False)
    assert (r, l_) == ({"cpu": "2"}, {})
    assert "limits" not in result.pod["spec"]["containers"][0]["resources"]
    assert result.notes == ("cpu request 4 clamped to the platform limit 2",)


def test_v64_ensure_in_range_clamps_both_sides() -> None:
    # v64 differs only by the zeros: Flyte also writes memory "0" / "0".
    config = WebhookConfig.from_mapping(
        {"default-requests": {"cpu": "1", "memory": "2"}, "platform-limits": {"cpu": "10", "memory": "20"}}
    )
    r, l_, _ = resolve({"cpu": "100"}, {"cpu": "200"}, config=config, assign=False)
    assert (r, l_) == ({"cpu": "10"}, {"cpu": "10"})


def test_v65_override_limit_lowers_container_request() -> None:
    r, l_, _ = resolve({"cpu": "4"}, None, limits={"cpu": "2"})
    assert (r, l_) == ({"cpu": "2", **ONE_GI}, {"cpu": "2", **ONE_GI})


def test_v66_override_request_merges_per_key() -> None:
    r, l_, _ = resolve({"cpu": "1", "memory": "1Gi"}, {"cpu": "2", "memory": "2Gi"}, requests={"memory": "4Gi"})
    assert (r, l_) == ({"cpu": "1", "memory": "2Gi"}, {"cpu": "2", "memory": "2Gi"})


def test_resolution_remembered_per_merged_values_and_their_types() -> None:
    """Pods whose merged values are equal share one resolution; `1` and `1.0` compare equal but are not the same
    input (each keeps its own spelling), and a caller changing what it got changes nothing remembered."""
    first, _, _ = resolve({"cpu": "500m"}, None, requests={"cpu": "2"}, limits={"cpu": "4"})
    second, _, _ = resolve({"cpu": "100m"}, None, requests={"cpu": "2"}, limits={"cpu": "4"})
    assert first == second == {"cpu": "2", **ONE_GI}
    first["cpu"] = "tampered"
    assert resolve({"cpu": "100m"}, None, requests={"cpu": "2"}, limits={"cpu": "4"})[0]["cpu"] == "2"
    as_int = resolve({"cpu": 1, "memory": "1Gi"}, {"cpu": 1, "memory": "1Gi"})  # type: ignore[dict-item]
    as_float = resolve({"cpu": 1.0, "memory": "1Gi"}, {"cpu": 1.0, "memory": "1Gi"})  # type: ignore[dict-item]
    assert type(as_int[0]["cpu"]) is int and type(as_float[0]["cpu"]) is float
    assert as_int[2].pod == make_pod(
        container(requests={"cpu": 1, "memory": "1Gi"}, limits={"cpu": 1, "memory": "1Gi"})
    )  # type: ignore[dict-item]


def test_resolution_not_remembered_past_its_bound() -> None:
    """A container with more requests and limits than a remembered resolution may hold is resolved each time,
    with the same result."""
    many = {f"example.com/r{i}": "1" for i in range(40)}
    remembered = _resolve_remembered.cache_info().currsize
    requests, limits, _ = resolve({**many, "cpu": "1"}, None)
    assert requests["cpu"] == "1" and limits["cpu"] == "1" and requests["example.com/r39"] == "1"
    assert _resolve_remembered.cache_info().currsize == remembered


def test_v67_override_request_clamped_to_original_limit() -> None:
    r, l_, _ = resolve({"cpu": "1"}, {"cpu": "1"}, requests={"cpu": "2"})
    assert (r, l_) == ({"cpu": "1", **ONE_GI}, {"cpu": "1", **ONE_GI})


def test_v68_generic_gpu_renamed() -> None:
    # Flyte's vector runs SanitizeGPUResourceRequirements alone; our function always goes on to
    # ApplyResourceOverrides, so cpu/memory are filled as well.
    r, l_, result = resolve({"gpu": "2", "cpu": "1"}, {"gpu": "2"})
    assert r == {"cpu": "1", GPU: "2", **ONE_GI}
    assert l_ == {GPU: "2", "cpu": "1", **ONE_GI}
    assert "request gpu renamed to nvidia.com/gpu" in result.notes
    assert "limit gpu renamed to nvidia.com/gpu" in result.notes


def test_v69_idl_gpu_untouched_with_custom_gpu_resource_name() -> None:
    r, l_, _ = resolve({GPU: "1"}, None, config=AMD)
    assert r == {"cpu": "1", **ONE_GI, GPU: "1"}
    assert l_ == {"cpu": "1", **ONE_GI}


def test_v70_pod_template_gpu_renamed_to_custom_gpu_resource_name() -> None:
    r, l_, _ = resolve({"gpu": "1"}, None, config=AMD)
    assert r == l_ == {"amd.com/gpu": "1", "cpu": "1", **ONE_GI}


# --- GPU node selectors (ApplyGPUNodeSelectors): vectors 73-82 -------------------------------------------------------

A100 = "nvidia-tesla-a100"
T4 = "nvidia-tesla-t4"

SELECTOR_VECTORS = [
    ("v73", Accelerator(T4), DEFAULT, [[req_in(DL, T4)]], [tol(DL, T4)]),
    (
        "v74",
        Accelerator(A100, "1g.5gb"),
        DEFAULT,
        [[req_in(DL, A100), req_in(PL, "1g.5gb")]],
        [tol(DL, A100), tol(PL, "1g.5gb")],
    ),
    (
        "v75",
        Accelerator(A100, unpartitioned=True),
        DEFAULT,
        [[req_in(DL, A100), {"key": PL, "operator": "DoesNotExist"}]],
        [tol(DL, A100)],
    ),
    (
        "v76",
        Accelerator(A100, unpartitioned=True),
        WebhookConfig.from_mapping(
            {
                "gpu-unpartitioned-node-selector-requirement": {
                    "key": "gpu-unpartitioned",
                    "operator": "In",
                    "values": ["true"],
                },
                "gpu-unpartitioned-toleration": {
                    "key": "gpu-unpartitioned",
                    "operator": "Equal",
                    "value": "true",
                    "effect": "NoSchedule",
                },
            }
        ),
        [[req_in(DL, A100), req_in("gpu-unpartitioned", "true")]],
        [tol(DL, A100), tol("gpu-unpartitioned", "true")],
    ),
    # Not Flyte's v77 on purpose: a device with MIG profiles and no partition named is held to whole devices
    # (README, "Annotations"); under `mig-strategy: mixed` (v77-mixed) and for a device without MIG, Flyte's.
    (
        "v77",
        Accelerator(A100, unpartitioned=False),
        DEFAULT,
        [[req_in(DL, A100), {"key": PL, "operator": "DoesNotExist"}]],
        [tol(DL, A100)],
    ),
    (
        "v77-mixed",
        Accelerator(A100, unpartitioned=False),
        WebhookConfig.from_mapping({"mig-strategy": "mixed"}),
        [[req_in(DL, A100)]],
        [tol(DL, A100)],
    ),
    ("v78", Accelerator(partition_size="2x4"), DEFAULT, [[req_in(PL, "2x4")]], [tol(PL, "2x4")]),
]


@pytest.mark.parametrize(
    ("accelerator", "config", "want_terms", "want_tolerations"),
    [v[1:] for v in SELECTOR_VECTORS],
    ids=[v[0] for v in SELECTOR_VECTORS],
)
def test_gpu_node_selector_vectors(
    accelerator: Accelerator,
    config: WebhookConfig,
    want_terms: list[list[dict[str, Any]]],
    want_tolerations: list[dict[str, Any]],
) -> None:
    pod = make_pod(container(limits={GPU: "1"}))
    result = pure(place, pod, accelerator, config=config, gpu_resource_name=GPU)
    assert terms(result.pod) == want_terms
    assert result.pod["spec"]["tolerations"] == want_tolerations
    # Nothing else in the pod moved.
    rest = {k: v for k, v in result.pod["spec"].items() if k not in ("affinity", "tolerations")}
    assert rest == pod["spec"]
    assert result.pod["metadata"] == pod["metadata"]


@pytest.mark.parametrize(
    ("vector", "pod", "config"),
    [
        ("v79", make_pod(container(requests={GPU: "1"})), DEFAULT),  # a GPU request alone is no GPU limit
        ("v80", make_pod(container(requests={"cpu": "1"}, limits={"cpu": "1"})), DEFAULT),
        ("v82", make_pod(container(limits={GPU: "1"})), AMD),  # amd.com/gpu configured, nvidia.com/gpu limited
    ],
    ids=["v79", "v80", "v82"],
)
def test_accelerator_without_gpu_limit_leaves_pod_unchanged(
    vector: str, pod: dict[str, Any], config: WebhookConfig
) -> None:
    accelerator = Accelerator("amd-mi300x") if vector == "v82" else Accelerator(T4)
    result = pure(place, pod, accelerator, config=config, gpu_resource_name=config.gpu_resource_name)
    assert result.pod == pod
    assert "affinity" not in result.pod["spec"]
    assert "tolerations" not in result.pod["spec"]
    assert len(result.notes) == 1
    assert result.notes[0].startswith(f"accelerator {accelerator.device} ignored: no container has a")


def test_v81_requirement_anded_into_every_term_and_tolerations_deduplicated() -> None:
    # v81 differs in one point: Flyte appends the DL toleration even though an identical one is present
    # (it ends up twice); we keep one.
    zone = "topology.kubernetes.io/zone"
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [req_in(zone, "a")]},
                    {"matchExpressions": [req_in(zone, "b")]},
                ]
            }
        }
    }
    pod = gpu_pod(affinity=affinity, tolerations=[tol(DL, T4)])
    result = pure(place, pod, Accelerator(T4), config=DEFAULT, gpu_resource_name=GPU)
    assert terms(result.pod) == [[req_in(zone, "a"), req_in(DL, T4)], [req_in(zone, "b"), req_in(DL, T4)]]
    assert result.pod["spec"]["tolerations"] == [tol(DL, T4)]
    assert result.notes == (f"node affinity added: {DL} In [{T4}]",)


def gpu_pod_asking_for_v100() -> dict[str, Any]:
    term = {"matchExpressions": [req_in(DL, "nvidia-tesla-v100")]}
    return gpu_pod(
        affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}
    )


def test_requirement_on_a_managed_label_is_replaced_not_anded() -> None:
    # Deliberate difference: Flyte would AND `DL In [v100]` with `DL In [t4]`, which no node satisfies.
    pod = gpu_pod_asking_for_v100()
    result = pure(place, pod, Accelerator(T4), config=DEFAULT, gpu_resource_name=GPU)
    assert terms(result.pod) == [[req_in(DL, T4)]]
    assert f"node affinity replaced: {DL} In [{T4}]" in result.notes


def test_other_affinity_parts_are_kept() -> None:
    preferred = [{"weight": 1, "preference": {"matchExpressions": [req_in("disk", "ssd")]}}]
    pod_affinity = {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "zone"}]}
    pod = gpu_pod(
        affinity={
            "nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": preferred},
            "podAffinity": pod_affinity,
        }
    )
    result = pure(place, pod, Accelerator(T4), config=DEFAULT, gpu_resource_name=GPU)
    affinity = result.pod["spec"]["affinity"]
    assert affinity["podAffinity"] == pod_affinity
    assert affinity["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"] == preferred
    assert terms(result.pod) == [[req_in(DL, T4)]]


def test_gpu_limit_on_a_sidecar_counts() -> None:
    pod = make_pod(container(), container("side", limits={GPU: "1"}))
    result = pure(place, pod, Accelerator(T4), config=DEFAULT, gpu_resource_name=GPU)
    assert terms(result.pod) == [[req_in(DL, T4)]]


def test_zero_gpu_limit_is_no_gpu() -> None:
    pod = make_pod(container(limits={GPU: "0"}))
    result = pure(place, pod, Accelerator(T4), config=DEFAULT, gpu_resource_name=GPU)
    assert result.pod == pod


def _allowed_device_values(pod: Mapping[str, Any]) -> list[set[str] | None]:
    """Per node selector term, the DL values it admits (None: unconstrained); the nodeSelector narrows all."""
    spec = pod["spec"]
    required = (
        (spec.get("affinity") or {}).get("nodeAffinity", {}).get("requiredDuringSchedulingIgnoredDuringExecution")
    )
    allowed: list[set[str] | None] = []
    for term in (required or {}).get("nodeSelectorTerms") or [{}]:
        values: set[str] | None = None
        for expression in term.get("matchExpressions") or []:
            if expression["key"] == DL and expression["operator"] == "In":
                values = set(expression["values"]) if values is None else values & set(expression["values"])
        selected = (spec.get("nodeSelector") or {}).get(DL)
        if selected is not None:
            values = {selected} if values is None else values & {selected}
        allowed.append(values)
    return allowed


def test_node_selector_placement_replaces_a_conflicting_affinity_requirement() -> None:
    # The module's rule (a requirement on a managed label replaces the old one instead of AND-ing an impossible
    # pair) also has to hold across placements: a pod whose affinity asks for DL In [v100] (written by the user,
    # or by this webhook before the config moved to nodeSelector) must not end up with nodeSelector DL=t4 and
    # the old affinity requirement side by side: no node satisfies both.
    config = WebhookConfig.from_mapping({"accelerator-placement": "nodeSelector"})
    pod = gpu_pod_asking_for_v100()
    result = pure(place, pod, Accelerator(T4), config=config, gpu_resource_name=GPU)
    assert result.pod["spec"]["nodeSelector"] == {DL: T4}
    assert _allowed_device_values(result.pod) == [{T4}]


def test_affinity_placement_with_a_conflicting_node_selector() -> None:
    # Same rule, other direction: a nodeSelector DL=v100 next to the added affinity DL In [t4] is unschedulable.
    pod = gpu_pod(nodeSelector={DL: "nvidia-tesla-v100", "pool": "gpu"})
    result = pure(place, pod, Accelerator(T4), config=DEFAULT, gpu_resource_name=GPU)
    assert _allowed_device_values(result.pod) == [{T4}]
    assert result.pod["spec"]["nodeSelector"]["pool"] == "gpu"


# --- shared memory (ApplySharedMemory): vectors 83-91 ----------------------------------------------------------------

SHM_MOUNT = {"name": SHM_MOUNT_NAME, "mountPath": SHM_MOUNT_PATH}


def test_v83_shared_memory_without_size() -> None:
    # v83 differs: Flyte writes `sizeLimit: "0"` (ignored by the kubelet); we leave sizeLimit out. The effect is
    # the same: the tmpfs is sized from the pod's memory limit.
    pod = make_pod(container(), container("side"))
    result = pure(mount_shm, pod, PRIMARY)
    assert result.pod["spec"]["volumes"] == [{"name": SHM_MOUNT_NAME, "emptyDir": {"medium": "Memory"}}]
    assert result.pod["spec"]["containers"][0]["volumeMounts"] == [SHM_MOUNT]
    assert "volumeMounts" not in result.pod["spec"]["containers"][1]
    assert result.notes == (
        f"shared memory volume {SHM_MOUNT_NAME} added",
        f"shared memory mounted at /dev/shm in container {PRIMARY}",
    )


def test_v84_shared_memory_with_size() -> None:
    result = pure(mount_shm, make_pod(), PRIMARY, size_limit="2Gi")
    assert result.pod["spec"]["volumes"] == [
        {"name": SHM_MOUNT_NAME, "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}}
    ]
    assert result.pod["spec"]["containers"][0]["volumeMounts"] == [SHM_MOUNT]
    assert result.notes[0] == f"shared memory volume {SHM_MOUNT_NAME} of 2Gi added"


def test_shared_memory_size_is_canonicalised() -> None:
    result = pure(mount_shm, make_pod(), PRIMARY, size_limit="2048Mi")
    assert result.pod["spec"]["volumes"][0]["emptyDir"]["sizeLimit"] == "2Gi"


def test_shared_memory_appends_to_existing_lists() -> None:
    data = {"name": "data", "emptyDir": {}}
    mount = {"name": "data", "mountPath": "/data"}
    pod = make_pod(container(volumeMounts=[mount]), volumes=[data])
    result = pure(mount_shm, pod, PRIMARY)
    assert result.pod["spec"]["volumes"] == [data, {"name": SHM_MOUNT_NAME, "emptyDir": {"medium": "Memory"}}]
    assert result.pod["spec"]["containers"][0]["volumeMounts"] == [mount, SHM_MOUNT]


@pytest.mark.parametrize(
    ("pod", "kwargs", "message"),
    [
        pytest.param(
            make_pod(volumes=[{"name": SHM_MOUNT_NAME, "emptyDir": {}}]),
            {},
            f"A volume is already named {SHM_MOUNT_NAME} in pod spec",
            id="v85",
        ),
        pytest.param(
            make_pod(container(volumeMounts=[{"name": "x", "mountPath": "/dev/shm"}])),
            {},
            "/dev/shm is already mounted in container",
            id="v86",
        ),
        pytest.param(
            make_pod(container(volumeMounts=[{"name": SHM_MOUNT_NAME, "mountPath": "/other"}])),
            {},
            f"A volume is already named {SHM_MOUNT_NAME} in container",
            id="v87",
        ),
        pytest.param(make_pod(container("other")), {}, "Unable to find primary container", id="v88"),
        pytest.param(make_pod(), {"size_limit": "abc"}, "Unable to parse size limit: ", id="v89"),
        pytest.param(make_pod(), {"mount_name": ""}, "mount name is not set", id="v90"),
        pytest.param(make_pod(), {"mount_path": ""}, "mount path is not set", id="v90-path"),
    ],
)
def test_shared_memory_errors(pod: dict[str, Any], kwargs: dict[str, Any], message: str) -> None:
    before = copy.deepcopy(pod)
    with pytest.raises(PodSemanticsError) as info:
        mount_shm(pod, PRIMARY, **kwargs)
    assert message in str(info.value)
    assert pod == before


def test_v89_message_carries_the_quantity_error() -> None:
    with pytest.raises(PodSemanticsError, match=r"^Unable to parse size limit: .*'abc'"):
        mount_shm(make_pod(), PRIMARY, size_limit="abc")


def test_v91_sidecar_dev_shm_does_not_conflict() -> None:
    side_mount = {"name": "side-shm", "mountPath": "/dev/shm"}
    pod = make_pod(container(), container("side", volumeMounts=[side_mount]))
    result = pure(mount_shm, pod, PRIMARY)
    primary, side = result.pod["spec"]["containers"]
    assert primary["volumeMounts"] == [SHM_MOUNT]
    assert side["volumeMounts"] == [side_mount]


def test_identical_shm_volume_and_mount_count_as_applied() -> None:
    # Deliberate difference: Flyte fails with "A volume is already named ..." on its own output.
    pod = make_pod(
        container(volumeMounts=[SHM_MOUNT]),
        volumes=[{"name": SHM_MOUNT_NAME, "emptyDir": {"medium": "Memory", "sizeLimit": "2048Mi"}}],
    )
    result = pure(mount_shm, pod, PRIMARY, size_limit="2Gi")
    assert result == Result(pod)


def test_identical_shm_volume_without_mount_only_mounts() -> None:
    volume = {"name": SHM_MOUNT_NAME, "emptyDir": {"medium": "Memory"}}
    pod = make_pod(volumes=[volume])
    result = pure(mount_shm, pod, PRIMARY)
    assert result.pod["spec"]["volumes"] == [volume]
    assert result.pod["spec"]["containers"][0]["volumeMounts"] == [SHM_MOUNT]
    assert result.notes == (f"shared memory mounted at /dev/shm in container {PRIMARY}",)


def test_flytes_own_shm_volume_counts_as_applied() -> None:
    # Flyte v1 writes `sizeLimit: "0"` for shared_memory=True (v83); the module docstring says that is the same
    # as leaving sizeLimit out, so a pod that already carries Flyte's volume and mount is already applied, not
    # a name conflict (which makes the webhook deny a pod Flyte itself built).
    pod = make_pod(
        container(volumeMounts=[SHM_MOUNT]),
        volumes=[{"name": SHM_MOUNT_NAME, "emptyDir": {"medium": "Memory", "sizeLimit": "0"}}],
    )
    result = pure(mount_shm, pod, PRIMARY)
    assert result == Result(pod)


@pytest.mark.parametrize(
    "volume",
    [
        {"name": SHM_MOUNT_NAME, "emptyDir": {}},  # disk-backed
        {"name": SHM_MOUNT_NAME, "hostPath": {"path": "/dev/shm"}},
    ],
)
def test_a_different_volume_of_the_same_name_is_a_conflict(volume: dict[str, Any]) -> None:
    pod = make_pod(container(volumeMounts=[SHM_MOUNT]), volumes=[volume])
    with pytest.raises(PodSemanticsError, match="already named"):
        mount_shm(pod, PRIMARY, size_limit="2Gi")


def test_our_memory_volume_with_another_size_is_resized() -> None:
    # Deliberate difference from Flyte v1 (which errors): a pod template's or an earlier annotation's shm volume
    # is ours to resize, so a changed size annotation takes effect instead of denying the pod.
    volume = {"name": SHM_MOUNT_NAME, "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}}
    pod = make_pod(container(volumeMounts=[SHM_MOUNT]), volumes=[volume])
    result = pure(mount_shm, pod, PRIMARY, size_limit="2Gi")
    assert result.pod["spec"]["volumes"] == [
        {"name": SHM_MOUNT_NAME, "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}}
    ]
    assert result.notes == (f"shared memory volume {SHM_MOUNT_NAME} resized to 2Gi",)


# --- vector 92, end to end for the pod part --------------------------------------------------------------------------


def test_v92_end_to_end() -> None:
    # @task(requests=Resources(cpu="1", mem="512Mi"), limits=Resources(mem="1Gi", gpu="1"),
    #       accelerator=A100.partition_1g_5gb, shared_memory=True), admin platform, default config.
    pod = make_pod(container())
    accelerator = Accelerator(A100, "1g.5gb")
    gpu = effective_gpu_resource_name(ADMIN, accelerator)
    assert gpu == GPU
    step1 = pure(
        resolve_resources,
        pod,
        PRIMARY,
        requests={"cpu": "1", "memory": "512Mi"},
        limits={"memory": "1Gi", "gpu": "1"},
        config=ADMIN,
        gpu_resource_name=gpu,
    )
    step2 = pure(place, step1.pod, accelerator, config=ADMIN, gpu_resource_name=gpu)
    step3 = pure(mount_shm, step2.pod, PRIMARY)
    out = step3.pod

    assert resources_of(out) == (
        {"cpu": "1", "memory": "512Mi", GPU: "1"},
        {"cpu": "1", "memory": "1Gi", GPU: "1"},
    )
    assert terms(out) == [[req_in(DL, A100), req_in(PL, "1g.5gb")]]
    assert out["spec"]["tolerations"] == [tol(DL, A100), tol(PL, "1g.5gb")]
    # Flyte writes sizeLimit "0" here (v83 difference).
    assert out["spec"]["volumes"] == [{"name": SHM_MOUNT_NAME, "emptyDir": {"medium": "Memory"}}]
    assert out["spec"]["containers"][0]["volumeMounts"] == [SHM_MOUNT]
    assert out["metadata"] == pod["metadata"]

    # The whole chain again on its output changes nothing and says nothing.
    again = resolve_resources(
        out,
        PRIMARY,
        requests={"cpu": "1", "memory": "512Mi"},
        limits={"memory": "1Gi", "gpu": "1"},
        config=ADMIN,
        gpu_resource_name=gpu,
    )
    again2 = place(again.pod, accelerator, config=ADMIN, gpu_resource_name=gpu)
    again3 = mount_shm(again2.pod, PRIMARY)
    assert again3.pod == out
    assert again.notes == again2.notes == again3.notes == ()


# --- notes ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("req", "lim", "config", "kwargs", "note"),
    [
        ({"cpu": "4"}, {"cpu": "2"}, DEFAULT, {}, "cpu request 4 lowered to its limit 2"),
        ({GPU: "1"}, {GPU: "2"}, DEFAULT, {}, "nvidia.com/gpu request raised to equal its limit (2)"),
        (None, {"cpu": "2"}, DEFAULT, {}, "cpu request set from its limit (2)"),
        ({"cpu": "2"}, None, DEFAULT, {}, "cpu limit set from its request (2)"),
        (None, None, DEFAULT, {}, "memory request defaulted to the platform default (1Gi)"),
        ({"cpu": "3"}, None, ADMIN, {}, "cpu request 3 clamped to the platform limit 2"),
        ({"cpu": "1"}, {"cpu": "3"}, ADMIN, {}, "cpu limit 3 clamped to the platform limit 2"),
        ({"gpu": "1"}, None, DEFAULT, {}, "request gpu renamed to nvidia.com/gpu"),
        (None, {"gpu": "1"}, DEFAULT, {}, "limit gpu renamed to nvidia.com/gpu"),
        ({"cpu": "1"}, {"cpu": "1"}, DEFAULT, {"requests": {"cpu": "4"}}, "cpu request 4 lowered to its limit 1"),
    ],
)
def test_each_adjustment_has_a_note(
    req: dict[str, str] | None,
    lim: dict[str, str] | None,
    config: WebhookConfig,
    kwargs: dict[str, Any],
    note: str,
) -> None:
    _, _, result = resolve(req, lim, config=config, **kwargs)
    assert note in result.notes


def test_gpu_request_lowered_to_limit_note() -> None:
    # A GPU request above its limit is caught by the generic "lowered" rule first.
    r, l_, result = resolve({GPU: "3"}, {GPU: "2"})
    assert r[GPU] == l_[GPU] == "2"
    assert "nvidia.com/gpu request 3 lowered to its limit 2" in result.notes


def test_clamp_notes_on_both_sides() -> None:
    r, l_, result = resolve({"memory": "3Gi"}, {"memory": "4Gi"}, config=ADMIN)
    assert r["memory"] == l_["memory"] == "1Gi"
    assert "memory request 3Gi clamped to the platform limit 1Gi" in result.notes
    assert "memory limit 4Gi clamped to the platform limit 1Gi" in result.notes


@pytest.mark.parametrize(
    ("req", "lim"),
    [
        ({"cpu": "1", "memory": "1Gi"}, {"cpu": "1", "memory": "1Gi"}),
        ({"cpu": "500m", "memory": "512Mi"}, {"cpu": "2", "memory": "2Gi"}),
        # equal quantities spelled differently: the user's spelling is kept, no patch
        ({"cpu": "1000m", "memory": "1024Mi"}, {"cpu": "1", "memory": "1Gi"}),
        ({"cpu": "1", "memory": "1Gi", GPU: "2"}, {"cpu": "1", "memory": "1Gi", GPU: "2"}),
        (
            {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "1G"},
            {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "1G"},
        ),
    ],
)
def test_unchanged_input_gives_no_notes_and_the_same_pod(req: dict[str, str], lim: dict[str, str]) -> None:
    pod = make_pod(container(requests=req, limits=lim), container("side"))
    result = pure(resolve_resources, pod, PRIMARY, config=DEFAULT, gpu_resource_name=GPU)
    assert result.notes == ()
    assert result.pod == pod


def test_ensure_in_range_with_nothing_set_changes_nothing() -> None:
    pod = make_pod(container(), container("side"))
    result = pure(resolve_resources, pod, "side", config=ADMIN, gpu_resource_name=GPU, assign=False)
    assert result == Result(pod)


def test_user_spelling_kept_where_the_value_is_kept() -> None:
    # 0.25 survives as written; the lowered request is written canonically.
    r, l_, _ = resolve({"cpu": "0.5"}, {"cpu": "0.25"})
    assert (r["cpu"], l_["cpu"]) == ("250m", "0.25")


def test_accelerator_notes() -> None:
    result = pure(place, gpu_pod(), Accelerator(A100, "1g.5gb"), config=DEFAULT, gpu_resource_name=GPU)
    assert result.notes == (
        f"node affinity added: {DL} In [{A100}]",
        f"node affinity added: {PL} In [1g.5gb]",
        f"toleration added: {DL}={A100}:NoSchedule",
        f"toleration added: {PL}=1g.5gb:NoSchedule",
    )


def test_accelerator_already_applied_gives_no_notes() -> None:
    once = place(gpu_pod(), Accelerator(A100, "1g.5gb"), config=DEFAULT, gpu_resource_name=GPU)
    twice = pure(place, once.pod, Accelerator(A100, "1g.5gb"), config=DEFAULT, gpu_resource_name=GPU)
    assert twice == Result(once.pod)


def test_unknown_container_is_an_error() -> None:
    with pytest.raises(PodSemanticsError, match=r"container 'nope' not found .*primary"):
        resolve_resources(make_pod(), "nope", config=DEFAULT, gpu_resource_name=GPU)


def test_ensure_in_range_keeps_an_explicit_zero_request() -> None:
    # A sidecar asking for cpu request 0 under a 1-CPU limit: Flyte's EnsureInRange writes the 0 back. Dropping
    # the key instead makes the API server default the request to the limit (1 CPU reserved instead of 0), so
    # the pod no longer schedules as the user meant, and the change has no note.
    pod = make_pod(container(), container("side", requests={"cpu": "0"}, limits={"cpu": "1"}))
    result = pure(resolve_resources, pod, "side", config=DEFAULT, gpu_resource_name=GPU, assign=False)
    r, l_ = resources_of(result.pod, "side")
    assert l_ == {"cpu": "1"}
    assert "cpu" in r and parse_quantity(r["cpu"]) == 0


# --- config-driven behaviour of the pod functions -------------------------------------------------------------


def test_on_limit_exceeded_reject_names_resource_and_values() -> None:
    config = WebhookConfig.from_mapping({"platform-limits": {"cpu": "2"}, "on-limit-exceeded": "reject"})
    pod = make_pod()
    before = copy.deepcopy(pod)
    with pytest.raises(PlatformLimitExceeded) as info:
        resolve_resources(pod, PRIMARY, requests={"cpu": "4"}, config=config, gpu_resource_name=GPU)
    message = str(info.value)
    assert "cpu" in message and "4" in message and "2" in message
    assert message == "cpu request 4 is above the platform limit 2"
    assert pod == before


def test_on_limit_exceeded_reject_on_the_limit_side() -> None:
    config = WebhookConfig.from_mapping({"platform-limits": {"memory": "1Gi"}, "on-limit-exceeded": "reject"})
    with pytest.raises(PlatformLimitExceeded, match=r"^memory limit 2Gi is above the platform limit 1Gi$"):
        resolve_resources(
            make_pod(),
            PRIMARY,
            requests={"memory": "1Gi"},
            limits={"memory": "2Gi"},
            config=config,
            gpu_resource_name=GPU,
        )


def test_on_limit_exceeded_reject_accepts_values_within_limits() -> None:
    config = WebhookConfig.from_mapping({"platform-limits": {"cpu": "2"}, "on-limit-exceeded": "reject"})
    r, l_, _ = resolve(requests={"cpu": "2"}, config=config)
    assert r["cpu"] == l_["cpu"] == "2"


def test_generic_gpu_platform_limit_applies_to_the_gpu_resource() -> None:
    config = WebhookConfig.from_mapping({"mig-strategy": "mixed", "platform-limits": {"gpu": "1"}})
    accelerator = Accelerator(A100, "1g.5gb")
    gpu = effective_gpu_resource_name(config, accelerator)
    r, l_, _ = resolve(None, {GPU: "4"}, config=config, gpu=gpu)
    assert r["nvidia.com/mig-1g.5gb"] == l_["nvidia.com/mig-1g.5gb"] == "1"
    assert GPU not in r and GPU not in l_


def test_accelerator_placement_node_selector() -> None:
    config = WebhookConfig.from_mapping({"accelerator-placement": "nodeSelector"})
    pod = gpu_pod(nodeSelector={"pool": "gpu"})
    result = pure(place, pod, Accelerator(A100, "1g.5gb"), config=config, gpu_resource_name=GPU)
    assert result.pod["spec"]["nodeSelector"] == {"pool": "gpu", DL: A100, PL: "1g.5gb"}
    assert "affinity" not in result.pod["spec"]
    assert result.pod["spec"]["tolerations"] == [tol(DL, A100), tol(PL, "1g.5gb")]
    assert f"nodeSelector {DL}={A100}" in result.notes
    again = place(result.pod, Accelerator(A100, "1g.5gb"), config=config, gpu_resource_name=GPU)
    assert again == Result(result.pod)


def test_accelerator_placement_node_selector_keeps_does_not_exist_in_affinity() -> None:
    config = WebhookConfig.from_mapping({"accelerator-placement": "nodeSelector"})
    result = pure(place, gpu_pod(), Accelerator(A100, unpartitioned=True), config=config, gpu_resource_name=GPU)
    assert result.pod["spec"]["nodeSelector"] == {DL: A100}
    assert terms(result.pod) == [[{"key": PL, "operator": "DoesNotExist"}]]


def test_mig_mixed_renames_gpu_and_adds_no_partition_requirement() -> None:
    config = WebhookConfig.from_mapping({"mig-strategy": "mixed"})
    accelerator = Accelerator(A100, "1g.5gb")
    gpu = effective_gpu_resource_name(config, accelerator)
    assert gpu == "nvidia.com/mig-1g.5gb"
    pod = make_pod(container(limits={GPU: "1"}))
    resolved = pure(resolve_resources, pod, PRIMARY, config=config, gpu_resource_name=gpu)
    r, l_ = resources_of(resolved.pod)
    assert r[gpu] == l_[gpu] == "1"
    assert GPU not in r and GPU not in l_
    assert "limit nvidia.com/gpu renamed to nvidia.com/mig-1g.5gb" in resolved.notes
    placed = pure(place, resolved.pod, accelerator, config=config, gpu_resource_name=gpu)
    assert terms(placed.pod) == [[req_in(DL, A100)]]
    assert placed.pod["spec"]["tolerations"] == [tol(DL, A100)]


def test_mig_mixed_annotation_gpu_goes_to_the_slice() -> None:
    config = WebhookConfig.from_mapping({"mig-strategy": "mixed"})
    gpu = effective_gpu_resource_name(config, Accelerator(A100, "3g.20gb"))
    r, l_, _ = resolve(limits={"gpu": "2"}, config=config, gpu=gpu)
    assert r["nvidia.com/mig-3g.20gb"] == l_["nvidia.com/mig-3g.20gb"] == "2"


@pytest.mark.parametrize(
    ("config", "accelerator", "expected"),
    [
        (DEFAULT, Accelerator(A100, "1g.5gb"), GPU),  # single: the slice is advertised as nvidia.com/gpu
        (WebhookConfig.from_mapping({"mig-strategy": "mixed"}), Accelerator(A100, "1g.5gb"), "nvidia.com/mig-1g.5gb"),
        (WebhookConfig.from_mapping({"mig-strategy": "mixed"}), Accelerator("tpu-v5-lite-podslice", "2x4"), TPU),
        (WebhookConfig.from_mapping({"mig-strategy": "mixed"}), Accelerator(A100), GPU),
        (WebhookConfig.from_mapping({"mig-strategy": "mixed"}), None, GPU),
        (
            WebhookConfig.from_mapping({"mig-strategy": "mixed", "preset": "amd"}),
            Accelerator("x", "1g.5gb"),
            "amd.com/gpu",
        ),
    ],
)
def test_effective_gpu_resource_name(config: WebhookConfig, accelerator: Accelerator | None, expected: str) -> None:
    assert effective_gpu_resource_name(config, accelerator) == expected


def test_mig_mixed_tpu_topology_keeps_partition_requirement() -> None:
    config = WebhookConfig.from_mapping({"mig-strategy": "mixed"})
    result = pure(place, gpu_pod(), Accelerator(partition_size="2x4"), config=config, gpu_resource_name=GPU)
    assert terms(result.pod) == [[req_in(PL, "2x4")]]


def test_accelerator_devices_maps_label_values() -> None:
    config = WebhookConfig.from_mapping({"accelerator-devices": {T4: "t4"}})
    result = pure(place, gpu_pod(), Accelerator(T4), config=config, gpu_resource_name=GPU)
    assert terms(result.pod) == [[req_in(DL, "t4")]]
    assert result.pod["spec"]["tolerations"] == [tol(DL, "t4")]
    other = pure(place, gpu_pod(), Accelerator("nvidia-l4"), config=config, gpu_resource_name=GPU)
    assert terms(other.pod) == [[req_in(DL, "nvidia-l4")]]  # unmapped devices pass verbatim


def test_karpenter_preset_end_to_end() -> None:
    config = WebhookConfig.from_mapping({"preset": "karpenter"})
    accelerator = Accelerator(A100, "1g.5gb")
    gpu = effective_gpu_resource_name(config, accelerator)
    resolved = resolve_resources(make_pod(), PRIMARY, limits={"gpu": "1"}, config=config, gpu_resource_name=gpu)
    placed = pure(place, resolved.pod, accelerator, config=config, gpu_resource_name=gpu)
    label = "karpenter.k8s.aws/instance-gpu-name"
    assert terms(placed.pod) == [[req_in(label, "a100")]]
    assert resources_of(placed.pod)[1]["nvidia.com/mig-1g.5gb"] == "1"


def test_resource_tolerations() -> None:
    config = WebhookConfig.from_mapping(
        {"resource-tolerations": {GPU: [{"key": GPU, "operator": "Exists", "effect": "NoSchedule"}]}}
    )
    result = pure(apply_resource_tolerations, gpu_pod(), config=config)
    assert result.pod["spec"]["tolerations"] == [{"key": GPU, "operator": "Exists", "effect": "NoSchedule"}]
    assert apply_resource_tolerations(result.pod, config=config) == Result(result.pod)
    untouched = make_pod()
    assert apply_resource_tolerations(untouched, config=config) == Result(untouched)


# --- purity --------------------------------------------------------------------------------------------------


def test_purity_on_a_full_pod() -> None:
    zone = "topology.kubernetes.io/zone"
    pod = make_pod(
        container(
            requests={"cpu": "4", "gpu": "1"}, limits={"cpu": "2"}, volumeMounts=[{"name": "d", "mountPath": "/d"}]
        ),
        container("side", requests={"cpu": "8"}, limits={"cpu": "3"}),
        volumes=[{"name": "d", "emptyDir": {}}],
        tolerations=[tol("x", "y")],
        nodeSelector={"a": "b"},
        affinity={
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [req_in(zone, "a"), req_in(DL, "old")]}]
                }
            }
        },
    )
    config = WebhookConfig.from_mapping({"accelerator-placement": "affinity", "platform-limits": {"cpu": "1"}})
    r1 = pure(resolve_resources, pod, PRIMARY, requests={"memory": "1Gi"}, config=config, gpu_resource_name=GPU)
    r2 = pure(resolve_resources, r1.pod, "side", config=config, gpu_resource_name=GPU, assign=False)
    r3 = pure(place, r2.pod, Accelerator(T4, "1g.5gb"), config=config, gpu_resource_name=GPU)
    r4 = pure(mount_shm, r3.pod, PRIMARY, size_limit="1Gi")
    node_selector_config = WebhookConfig.from_mapping({"accelerator-placement": "nodeSelector"})
    pure(place, r3.pod, Accelerator(T4, "1g.5gb"), config=node_selector_config, gpu_resource_name=GPU)
    assert resources_of(r4.pod, "side") == ({"cpu": "1"}, {"cpu": "1"})


# --- hypothesis properties ----------------------------------------------------------------------------------

RESOURCE_KEYS = ("cpu", "memory", "ephemeral-storage", GPU, "gpu")

_SUFFIXES = ("", "m", "k", "M", "G", "Ki", "Mi", "Gi")


def quantities(*, whole: bool = False, zero: bool = True) -> st.SearchStrategy[str]:
    zeros = st.sampled_from(["0", "0m", "0Gi"] if zero else ["1"])
    if whole:
        return st.one_of(zeros.map(lambda _: "0") if zero else st.nothing(), st.integers(1, 8).map(str))
    numbers = st.integers(1, 4096)
    plain = st.builds(lambda n, s: f"{n}{s}", numbers, st.sampled_from(_SUFFIXES))
    decimal = st.builds(lambda n, f: f"{n}.{f}", st.integers(0, 64), st.sampled_from(["5", "25", "125"]))
    return st.one_of(zeros, plain, decimal) if zero else st.one_of(plain, decimal)


@st.composite
def resource_maps(draw: st.DrawFn) -> dict[str, str]:
    keys = draw(st.lists(st.sampled_from(RESOURCE_KEYS), unique=True, max_size=len(RESOURCE_KEYS)))
    return {k: draw(quantities(whole="gpu" in k)) for k in keys}


@st.composite
def override_maps(draw: st.DrawFn) -> dict[str, str]:
    """What a task's IDL resources can hold: flytekit's four fields, the GPU generic."""
    keys = draw(st.lists(st.sampled_from(sorted(_IDL_NAMES)), unique=True, max_size=len(_IDL_NAMES)))
    return {k: draw(quantities(whole=k == "gpu")) for k in keys}


zone_terms = st.lists(
    st.builds(
        lambda key, value: {"matchExpressions": [req_in(key, value)]},
        st.sampled_from(["topology.kubernetes.io/zone", DL, PL, "pool"]),
        st.sampled_from(["a", "b", T4, "1g.5gb"]),
    ),
    max_size=2,
)
toleration_lists = st.lists(
    st.sampled_from([tol(DL, T4), tol(PL, "1g.5gb"), tol("pool", "gpu"), {"operator": "Exists"}]),
    max_size=3,
    unique_by=lambda t: repr(t),
)


@st.composite
def pods(draw: st.DrawFn) -> dict[str, Any]:
    names = [PRIMARY, *draw(st.lists(st.sampled_from(["side", "init-like", "proxy"]), unique=True, max_size=2))]
    containers = []
    for name in draw(st.permutations(names)):
        extra: dict[str, Any] = {}
        if draw(st.booleans()):
            extra["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
            if name != PRIMARY and draw(st.booleans()):
                extra["volumeMounts"].append({"name": "side-shm", "mountPath": "/dev/shm"})
        requests = draw(st.none() | resource_maps())
        limits = draw(st.none() | resource_maps())
        containers.append(container(name, requests, limits, **extra))
    spec: dict[str, Any] = {}
    existing_terms = draw(zone_terms)
    if existing_terms:
        spec["affinity"] = {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": existing_terms}}
        }
    tolerations = draw(toleration_lists)
    if tolerations:
        spec["tolerations"] = tolerations
    if draw(st.booleans()):
        spec["volumes"] = [{"name": "data", "emptyDir": {}}]
    node_selector = draw(st.sampled_from([None, {"pool": "gpu"}, {"pool": "gpu", DL: "nvidia-tesla-v100"}]))
    if node_selector is not None:
        spec["nodeSelector"] = node_selector
    return make_pod(*containers, **spec)


accelerators = st.builds(
    Accelerator,
    device=st.sampled_from(["", T4, A100, "tpu-v5-lite-podslice"]),
    partition_size=st.sampled_from([None, "1g.5gb", "3g.20gb", "2x4"]),
    unpartitioned=st.booleans(),
)

CONFIGS = [
    DEFAULT,
    ADMIN,
    WebhookConfig.from_mapping({"accelerator-placement": "nodeSelector", "platform-limits": {"gpu": "2"}}),
    WebhookConfig.from_mapping({"mig-strategy": "mixed", "default-requests": {"ephemeral-storage": "1Gi"}}),
    WebhookConfig.from_mapping({"preset": "gke", "default-cpus": "500m", "default-memory": "0"}),
    WebhookConfig.from_mapping({"preset": "karpenter", "platform-limits": {"cpu": "4", "memory": "8Gi"}}),
    WebhookConfig.from_mapping(
        {
            "gpu-unpartitioned-node-selector-requirement": {"key": "mig", "operator": "NotIn", "values": ["on"]},
            "gpu-unpartitioned-toleration": {"key": "mig", "operator": "Exists", "effect": "NoSchedule"},
            "resource-tolerations": {GPU: [{"key": GPU, "operator": "Exists", "effect": "NoSchedule"}]},
        }
    ),
]
configs = st.sampled_from(CONFIGS)
shm_sizes = st.one_of(st.none(), st.sampled_from(["64Mi", "1Gi", "1.5Gi", "2048Mi", "500M"]))

PROPERTY_SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _resolve_all(
    pod: dict[str, Any],
    config: WebhookConfig,
    gpu: str,
    requests: Mapping[str, str] | None,
    limits: Mapping[str, str] | None,
) -> Result:
    """The primary in MergeExisting mode with the annotation maps, the others in EnsureInRange mode."""
    notes: list[str] = []
    for c in pod["spec"]["containers"]:
        primary = c["name"] == PRIMARY
        step = resolve_resources(
            pod,
            c["name"],
            requests=requests if primary else None,
            limits=limits if primary else None,
            config=config,
            gpu_resource_name=gpu,
            assign=primary,
        )
        pod, notes = step.pod, [*notes, *step.notes]
    return Result(pod, tuple(notes))


@PROPERTY_SETTINGS
@given(pod=pods(), config=configs, accelerator=accelerators)
def test_pod_resources_idempotent(pod: dict[str, Any], config: WebhookConfig, accelerator: Accelerator) -> None:
    """The pod's own resources: applying twice equals applying once, and the second pass says nothing."""
    gpu = effective_gpu_resource_name(config, accelerator)
    before = copy.deepcopy(pod)
    once = _resolve_all(pod, config, gpu, None, None)
    assert pod == before
    twice = _resolve_all(once.pod, config, gpu, None, None)
    assert twice.pod == once.pod
    assert twice.notes == ()


@PROPERTY_SETTINGS
@given(
    pod=pods(),
    config=configs,
    accelerator=accelerators,
    requests=st.none() | override_maps(),
    limits=st.none() | override_maps(),
    assign=st.booleans(),
)
def test_annotation_resources_idempotent(
    pod: dict[str, Any],
    config: WebhookConfig,
    accelerator: Accelerator,
    requests: dict[str, str] | None,
    limits: dict[str, str] | None,
    assign: bool,
) -> None:
    gpu = effective_gpu_resource_name(config, accelerator)
    kwargs = {"requests": requests, "limits": limits, "config": config, "gpu_resource_name": gpu, "assign": assign}
    once = pure(resolve_resources, pod, PRIMARY, **kwargs)
    twice = pure(resolve_resources, once.pod, PRIMARY, **kwargs)
    assert twice.pod == once.pod
    # The notes of the second pass are not checked here: annotation values that need adjusting are adjusted
    # again on every pass (by design: the annotation still asks for it; the API server shows a warning once).
    # Without annotation values the second pass is silent.
    plain = {**kwargs, "requests": None, "limits": None}
    settled = pure(resolve_resources, once.pod, PRIMARY, **plain)
    again = pure(resolve_resources, settled.pod, PRIMARY, **plain)
    assert again == Result(settled.pod)


@PROPERTY_SETTINGS
@given(pod=pods(), config=configs, accelerator=accelerators)
def test_accelerator_idempotent(pod: dict[str, Any], config: WebhookConfig, accelerator: Accelerator) -> None:
    gpu = effective_gpu_resource_name(config, accelerator)
    resolved = _resolve_all(pod, config, gpu, None, None).pod
    once = pure(place, resolved, accelerator, config=config, gpu_resource_name=gpu)
    twice = pure(place, once.pod, accelerator, config=config, gpu_resource_name=gpu)
    assert twice.pod == once.pod
    if once.pod == resolved:
        assert not [n for n in once.notes if " ignored: " not in n]
    # An ignored accelerator is reported on every pass (it is a warning about the input, not an adjustment).
    assert [n for n in twice.notes if " ignored: " not in n] == []


@PROPERTY_SETTINGS
@given(pod=pods(), config=configs, accelerator=accelerators)
def test_accelerator_device_stays_schedulable(
    pod: dict[str, Any], config: WebhookConfig, accelerator: Accelerator
) -> None:
    """Whatever the pod already asked for, every node selector term admits the accelerator's device value."""
    assume(accelerator.device and config.device_class_config(accelerator.device_class).device_node_label == DL)
    gpu = effective_gpu_resource_name(config, accelerator)
    resolved = _resolve_all(pod, config, gpu, None, {"gpu": "1"}).pod
    result = place(resolved, accelerator, config=config, gpu_resource_name=gpu)
    wanted = config.device_label_value(accelerator.device)
    for allowed in _allowed_device_values(result.pod):
        assert allowed is not None and wanted in allowed, f"no node can match: {allowed} vs {wanted}"


@PROPERTY_SETTINGS
@given(pod=pods(), config=configs)
def test_resource_tolerations_idempotent(pod: dict[str, Any], config: WebhookConfig) -> None:
    once = pure(apply_resource_tolerations, pod, config=config)
    twice = pure(apply_resource_tolerations, once.pod, config=config)
    assert twice == Result(once.pod)


@PROPERTY_SETTINGS
@given(pod=pods(), size=shm_sizes, with_shm=st.booleans())
def test_shared_memory_idempotent(pod: dict[str, Any], size: str | None, with_shm: bool) -> None:
    if with_shm:
        pod = mount_shm(pod, PRIMARY, size_limit=size).pod
    once = pure(mount_shm, pod, PRIMARY, size_limit=size)
    twice = pure(mount_shm, once.pod, PRIMARY, size_limit=size)
    assert twice == Result(once.pod)
    if with_shm:
        assert once == Result(pod)
    else:
        assert len(once.notes) == 2


def assert_kubernetes_valid(pod: Mapping[str, Any]) -> None:
    """The API server's rules: request <= limit; an extended resource's request equals its limit."""
    for c in pod["spec"]["containers"]:
        resources = c.get("resources") or {}
        requests = resources.get("requests") or {}
        limits = resources.get("limits") or {}
        for name in set(requests) & set(limits):
            request, limit = parse_quantity(requests[name]), parse_quantity(limits[name])
            assert request <= limit, f"{c['name']}: {name} request {requests[name]} > limit {limits[name]}"
            if name not in ("cpu", "memory", "ephemeral-storage"):
                assert request == limit, f"{c['name']}: {name} request {requests[name]} != limit {limits[name]}"
        for side in (requests, limits):
            assert "gpu" not in side, f"{c['name']}: generic gpu key left in the pod"


@PROPERTY_SETTINGS
@given(
    pod=pods(),
    config=configs,
    accelerator=accelerators,
    requests=st.none() | override_maps(),
    limits=st.none() | override_maps(),
)
def test_result_satisfies_kubernetes_request_limit_rules(
    pod: dict[str, Any],
    config: WebhookConfig,
    accelerator: Accelerator,
    requests: dict[str, str] | None,
    limits: dict[str, str] | None,
) -> None:
    gpu = effective_gpu_resource_name(config, accelerator)
    assume(gpu == GPU or gpu.startswith("nvidia.com/mig-"))
    result = _resolve_all(pod, config, gpu, requests, limits)
    assert_kubernetes_valid(result.pod)


@PROPERTY_SETTINGS
@given(pod=pods(), config=configs, requests=st.none() | override_maps(), limits=st.none() | override_maps())
def test_every_change_to_a_resource_is_noted(
    pod: dict[str, Any],
    config: WebhookConfig,
    requests: dict[str, str] | None,
    limits: dict[str, str] | None,
) -> None:
    result = _resolve_all(pod, config, GPU, requests, limits)
    given_keys = {GPU if k == "gpu" else k for m in (requests or {}, limits or {}) for k in m}
    for before in pod["spec"]["containers"]:
        name = before["name"]
        old_r, old_l = resources_of(pod, name)
        new_r, new_l = resources_of(result.pod, name)
        for side, old, new in (("request", old_r, new_r), ("limit", old_l, new_l)):
            for key in set(old) | set(new):
                if name == PRIMARY and key in given_keys:
                    continue  # set from the annotation: not an adjustment of the pod
                was, now = old.get(key), new.get(key)
                if was is not None and now is not None and parse_quantity(was) == parse_quantity(now):
                    continue
                # A dropped "0" may be silent when it means the same as no value: always for a limit; for a
                # request only when no limit remains (the API server defaults a missing request to the limit).
                dropped_zero = was is not None and now is None and parse_quantity(was) == 0
                if dropped_zero and (side == "limit" or key not in new_l):
                    continue
                assert any(key in note for note in result.notes), (
                    f"{name}: {side} {key} {was!r} -> {now!r} without a note; notes: {result.notes}"
                )


# --- (c) through the flytekit API: Resources -> convert_resources_to_resource_model -> the backend -----------

cpu_values = st.one_of(
    st.integers(1, 64),
    st.sampled_from([0.5, 0.25, 1.5, 2.0]),
    st.builds(lambda n: f"{n}m", st.integers(1, 64000)),
    st.integers(1, 64).map(str),
)
mem_values = st.one_of(
    st.integers(1, 2**34),
    st.builds(lambda n, s: f"{n}{s}", st.integers(1, 4096), st.sampled_from(["Ki", "Mi", "Gi", "M", "G"])),
)
gpu_values = st.one_of(st.integers(1, 8), st.integers(1, 8).map(str))


def _value_or_pair(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), values, st.tuples(values, values))


flytekit_resources = st.builds(
    Resources,
    cpu=_value_or_pair(cpu_values),
    mem=_value_or_pair(mem_values),
    gpu=_value_or_pair(gpu_values),
    ephemeral_storage=_value_or_pair(mem_values),
)
flytekit_singles = st.builds(
    Resources,
    cpu=st.none() | cpu_values,
    mem=st.none() | mem_values,
    gpu=st.none() | gpu_values,
    ephemeral_storage=st.none() | mem_values,
)


@PROPERTY_SETTINGS
@given(
    pod=pods(),
    config=configs,
    accelerator=accelerators,
    spec=st.one_of(
        flytekit_resources.map(lambda r: ("resources", ResourceSpec.from_multiple_resource(r))),
        st.tuples(flytekit_singles, flytekit_singles).map(lambda rl: ("requests/limits", ResourceSpec(*rl))),
    ),
)
def test_flytekit_resources_give_a_valid_pod(
    pod: dict[str, Any], config: WebhookConfig, accelerator: Accelerator, spec: tuple[str, ResourceSpec]
) -> None:
    gpu = effective_gpu_resource_name(config, accelerator)
    assume(gpu == GPU or gpu.startswith("nvidia.com/mig-"))
    _, resource_spec = spec
    task = convert_resources_to_resource_model(resource_spec.requests, resource_spec.limits)
    requests, limits = idl_resources_to_k8s(task, gpu_key="gpu")
    result = _resolve_all(pod, config, gpu, requests, limits)
    assert_kubernetes_valid(result.pod)
    again = _resolve_all(result.pod, config, gpu, requests, limits)
    assert again.pod == result.pod
    # What the user asked for survives unless a platform limit or the request <= limit rule says otherwise.
    r, l_ = resources_of(result.pod)
    for name, value in limits.items():
        key = gpu if name == "gpu" else name
        ceiling = config.platform_limits.get(key) or (config.platform_limits.get("gpu") if key == gpu else None)
        if ceiling is None or parse_quantity(ceiling) == 0 or parse_quantity(value) <= parse_quantity(ceiling):
            assert parse_quantity(l_[key]) == parse_quantity(value)
    for name, value in requests.items():
        key = gpu if name == "gpu" else name
        assert parse_quantity(r[key]) <= parse_quantity(value) or key == gpu


def test_v92_through_flytekit_api() -> None:
    spec = ResourceSpec(requests=Resources(cpu="1", mem="512Mi"), limits=Resources(mem="1Gi", gpu="1"))
    result = apply_container_resources(
        make_pod(),
        PRIMARY,
        resources=convert_resources_to_resource_model(spec.requests, spec.limits),
        config=ADMIN,
        gpu_resource_name=GPU,
    )
    assert resources_of(result.pod) == (
        {"cpu": "1", "memory": "512Mi", GPU: "1"},
        {"cpu": "1", "memory": "1Gi", GPU: "1"},
    )
