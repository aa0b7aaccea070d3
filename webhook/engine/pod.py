"""Flyte's backend semantics: what flyteplugins (`flytek8s`, v1.16.8 and the v2 `main` device classes) does to
a pod, as pure functions over a pod dict.

This is the backend side of the engine. Like flyteplugins it reads the task's IDL (flyteidl's `Resources`,
`GPUAccelerator`, `SharedMemory`, as flytekit's `convert_resources_to_resource_model` and
`construct_extended_resources` build them), never the SDK forms (flytekit's `Resources`, Flyte 2's `Device`).

Each `apply_*` function takes a pod as the API server sends it (a plain dict) and returns a new pod plus short
notes describing every adjustment. The input is never modified: changed branches are copied, the rest shared.
Applying a function to its own output changes nothing, so a re-invoked webhook adds no duplicates (Flyte v1
itself duplicates requirements and tolerations when applied twice).

Deliberate differences from Flyte, each for a pod Kubernetes accepts and schedules as the user meant:

* zero quantities are dropped rather than written as "0"; a zero in an override means "not overridden", as in
  Flyte (which drops zero override entries);
* GPU requests always equal limits;
* a requirement on a label this function manages replaces the old one instead of AND-ing an impossible pair;
* a `/dev/shm` volume and mount identical to the one we would add count as already applied, and our memory
  volume of another size is resized (Flyte refuses any volume of that name);
* only the target container, and only the aspects the annotations name, are touched (Flyte resolves every
  container when it builds the pod);
* a single value in the `resources` annotation sets request and limit (flytekit sends a request only, which
  Flyte copies to a missing limit but not over one the pod template set);
* the device class comes from the catalog when the IDL has none (a flytekit TPU is a `GOOGLE_TPU`), device names
  are normalised under all their spellings (flytekit's `nvidia-h100` and the Flyte 2 SDK's `nvidia-tesla-h100`
  reach one label value);
* an accelerator of a class with its own resource (a flytekit TPU: `google.com/tpu`) takes over the count a
  pod template holds under `nvidia.com/gpu` (Flyte renames only the generic `gpu`, so the pod asks for a
  resource no node of that accelerator has).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from flyteidl.core import tasks_pb2

from webhook.engine.accelerators import BaseAccelerator, accelerator_from_idl
from webhook.engine.catalog import CATALOG, DeviceClass, find_device
from webhook.engine.config import WebhookConfig
from webhook.engine.errors import Refusal
from webhook.engine.names import GENERIC_GPU, IDL_TO_K8S, SHARED_MEMORY_MOUNT_NAME, SHARED_MEMORY_MOUNT_PATH
from webhook.engine.quantity import InvalidQuantity, Quantity, canonical_quantity, parse_quantity

Pod = Mapping[str, Any]
ResourceMap = dict[str, str]

SHM_MOUNT_NAME = SHARED_MEMORY_MOUNT_NAME  # short names used throughout this module
SHM_MOUNT_PATH = SHARED_MEMORY_MOUNT_PATH
_FLYTE_PARSE_ERROR = "Failed to parse resource as a valid quantity."
# The most devices of one type any catalog entry comes in on one node (Inf1: 16): a count above it fits no node.
MOST_DEVICES_PER_NODE = max(entry.max_count for entry in CATALOG)


class PodSemanticsError(Refusal):
    """The pod cannot take the requested change; the message says why, as Flyte words it where it has words."""


class PlatformLimitExceeded(PodSemanticsError):
    """A value above a configured platform limit while `on-limit-exceeded: reject`."""


@dataclass(frozen=True)
class Result:
    pod: dict[str, Any]
    notes: tuple[str, ...] = ()


class Change(str):
    """A note saying the pod does not get what was asked or what it had: a value clamped, lowered or raised, a
    value dropped or replaced. Other notes are routine fills (a request from its limit, a toleration added).
    A `str`, so every reader of notes keeps working; `warnings: changes` warns about these only."""

    __slots__ = ()


# --- containers -----------------------------------------------------------------------------------------------


def find_container(pod: Pod, name: str) -> tuple[int, Mapping[str, Any]]:
    for index, container in enumerate(pod.get("spec", {}).get("containers") or ()):
        if container.get("name") == name:
            return index, container
    names = [c.get("name") for c in pod.get("spec", {}).get("containers") or ()]
    raise PodSemanticsError(f"container {name!r} not found in the pod (containers: {', '.join(map(str, names))})")


def _with_container(pod: Pod, index: int, container: Mapping[str, Any]) -> dict[str, Any]:
    spec = dict(pod.get("spec") or {})
    containers = list(spec.get("containers") or ())
    containers[index] = container
    spec["containers"] = containers
    return {**pod, "spec": spec}


def _with_spec(pod: Pod, **fields: Any) -> dict[str, Any]:
    """`pod` with spec fields replaced; a None value removes the field."""
    spec = {**(pod.get("spec") or {}), **fields}
    return {**pod, "spec": {k: v for k, v in spec.items() if v is not None or k not in fields}}


def mig_resource_name(profile: str) -> str:
    return f"nvidia.com/mig-{profile}"


# --- the IDL -------------------------------------------------------------------------------------------------


def idl_resources_to_k8s(
    resources: tasks_pb2.Resources, gpu_key: str = "nvidia.com/gpu"
) -> tuple[dict[str, str], dict[str, str]]:
    """Flyte's ``ToK8sResourceList`` applied to requests and to limits.

    Every entry is parsed (``"Failed to parse resource as a valid quantity.: <reason>"`` otherwise, also for
    STORAGE/UNKNOWN entries and, stricter than Flyte, for negative values); zero quantities are dropped;
    CPU/MEMORY/GPU/EPHEMERAL_STORAGE map to cpu/memory/``gpu_key``/ephemeral-storage (Flyte v1 always uses
    ``nvidia.com/gpu``); STORAGE and UNKNOWN are ignored; a later duplicate wins; values are canonical.
    """
    return _to_k8s_list(resources.requests, gpu_key), _to_k8s_list(resources.limits, gpu_key)


@functools.lru_cache(maxsize=4096)
def _entry_quantity(value: str) -> tuple[str, bool]:
    """An IDL entry's value as `ToK8sResourceList` reads it: (canonical quantity, whether it is zero). Cached:
    the same few values arrive with every pod of a task."""
    try:
        quantity = Quantity.parse(value)
    except InvalidQuantity as exc:
        raise ValueError(f"{_FLYTE_PARSE_ERROR}: {exc.go_error or exc}") from None
    return str(quantity), quantity.value == 0


def _to_k8s_list(entries: Any, gpu_key: str, zeros: list[str] | None = None) -> dict[str, str]:
    """One side of `ToK8sResourceList`; the names of zero entries (dropped) go to `zeros`."""
    result: dict[str, str] = {}
    for entry in entries:
        canonical, zero = _entry_quantity(entry.value)
        name = IDL_TO_K8S.get(entry.name)
        if name is None:
            continue
        key = gpu_key if name == GENERIC_GPU else name
        if not zero:
            result[key] = canonical
        elif zeros is not None:
            zeros.append(key)
    return result


# --- resources ------------------------------------------------------------------------------------------------

NVIDIA_GPU_RESOURCE = "nvidia.com/gpu"


def _q(value: Any) -> Decimal:
    return parse_quantity(value)


def _nonzero(value: Any) -> bool:
    return value is not None and _q(value) != 0


_Overrides = tuple[tuple[tuple[str, str], ...], tuple[str, ...]]


def _overrides(
    resources: tasks_pb2.Resources, gpu_name: str, notes: list[str]
) -> tuple[dict[str, str], dict[str, str]]:
    """The task's IDL requests and limits as Kubernetes resource lists, the generic GPU under `gpu_name`. Flyte
    drops zero entries, so a zero means "not overridden": the container keeps its own value."""
    (requests, zero_requests), (limits, zero_limits) = _read_overrides(resources.SerializeToString(), gpu_name)
    for side, zeros in (("request", zero_requests), ("limit", zero_limits)):
        notes.extend(Change(f"{key} {side} 0 ignored: a zero override leaves the container's value") for key in zeros)
    return dict(requests), dict(limits)


@functools.lru_cache(maxsize=1024)
def _read_overrides(encoded: bytes, gpu_name: str) -> tuple[_Overrides, _Overrides]:
    """`_overrides` by the message's bytes: every pod of a task carries the same IDL (reading the bytes costs a
    microsecond, walking the message's entries in Python tens)."""
    resources = tasks_pb2.Resources.FromString(encoded)
    sides = []
    for entries in (resources.requests, resources.limits):
        zeros: list[str] = []
        values = _to_k8s_list(entries, gpu_name, zeros)
        sides.append((tuple(values.items()), tuple(zeros)))
    return sides[0], sides[1]


def _names_its_device(accelerator: BaseAccelerator) -> bool:
    """Whether the accelerator says which kind of device it is: its class is given, or the catalog knows it."""
    return accelerator.has_device_class or find_device(accelerator.device) is not None


def effective_gpu_resource_name(
    config: WebhookConfig, accelerator: BaseAccelerator | None, override: str | None = None
) -> str:
    """The resource name the pod's accelerators are counted under: the override; else, for a device whose
    class is known, its class's resource (`nvidia.com/gpu` for an NVIDIA device, `google.com/tpu` for a TPU,
    `aws.amazon.com/neuron`, ...), as Flyte 2 renames the generic GPU per class; else (a GPU with no device, or
    a device the catalog lacks) `gpu-resource-name`. MIG `mixed` turns a slice into its own resource."""
    if override:
        base = override
    elif accelerator is not None and accelerator.device and _names_its_device(accelerator):
        base = config.device_class_config(accelerator.device_class).resource_name
    else:
        base = config.gpu_resource_name
    profile = accelerator.mig_profile if accelerator is not None and config.mig_strategy == "mixed" else None
    return mig_resource_name(profile) if profile and base.startswith("nvidia.com/") else base


def _moved_gpu_names(config: WebhookConfig, gpu_name: str, accelerator: BaseAccelerator | None) -> frozenset[str]:
    """The resources whose count moves onto `gpu_name`: the whole-GPU `nvidia.com/gpu` onto a MIG slice
    resource; and, when the accelerator's class decided `gpu_name` (a TPU's `google.com/tpu`), the GPU
    resources the pod counted it under before (the count is what the user asked of that accelerator)."""
    if gpu_name.startswith("nvidia.com/mig-"):
        return frozenset({NVIDIA_GPU_RESOURCE})
    if accelerator is None or accelerator.device_class is DeviceClass.NVIDIA_GPU:
        return frozenset()
    if gpu_name != effective_gpu_resource_name(config, accelerator):
        return frozenset()  # the pod's own gpu-resource-key decided
    return frozenset({NVIDIA_GPU_RESOURCE, config.gpu_resource_name}) - {gpu_name}


def _rename_gpu(
    resources: Mapping[str, Any], gpu_name: str, side: str, moved: frozenset[str], notes: list[str]
) -> dict[str, Any]:
    """Flyte's SanitizeGPUResourceRequirements (the generic `gpu` under `gpu_name`), plus the `moved` counts."""
    out: dict[str, Any] = {}
    for key, value in resources.items():
        if key == GENERIC_GPU or (key in moved and gpu_name.startswith("nvidia.com/mig-")):
            notes.append(f"{side} {key} renamed to {gpu_name}")
            key = gpu_name
        elif key in moved:
            notes.append(Change(f"{side} {key} {value} moved to {gpu_name}, the accelerator's resource"))
            key = gpu_name
        out[key] = value
    return out


@dataclass(frozen=True)
class _Bounds:
    """What one container's resources are resolved against (Flyte's `ApplyResourceOverrides` inputs); hashable,
    so that a resolution can be remembered by it."""

    gpu_name: str
    assign: bool
    defaults: tuple[tuple[str, str], ...]
    ceilings: tuple[tuple[str, str], ...]
    reject: bool

    @classmethod
    def of(cls, config: WebhookConfig, gpu_name: str, assign: bool) -> _Bounds:
        defaults = {"cpu": config.default_cpus, "memory": config.default_memory, **config.default_requests}
        ceilings = dict(config.platform_limits)
        if GENERIC_GPU in ceilings:
            ceilings.setdefault(gpu_name, ceilings[GENERIC_GPU])
        reject = config.on_limit_exceeded == "reject"
        return cls(gpu_name, assign, tuple(defaults.items()), tuple(ceilings.items()), reject)


def apply_container_resources(
    pod: Pod,
    container_name: str,
    *,
    resources: tasks_pb2.Resources | None = None,
    config: WebhookConfig,
    gpu_resource_name: str,
    accelerator: BaseAccelerator | None = None,
    assign: bool = True,
) -> Result:
    """Merge the task's IDL `resources` per key into the container, then Flyte's `ApplyResourceOverrides`.

    `resources` is what flytekit's `convert_resources_to_resource_model` sends; its GPU is this pod's GPU
    resource (`gpu_resource_name`). `assign=True` is Flyte's MergeExisting mode (the primary container), `False`
    its EnsureInRange mode (other containers of a pod task: nothing is filled in, values are only clamped).
    Missing requests come from the limit, else the platform default; missing limits from the request; both are
    clamped to platform limits (or rejected, by config); a request above its limit is lowered; GPU requests
    equal GPU limits. With an `accelerator` whose class decides the resource, a count the pod holds under a GPU
    resource moves to it.
    """
    index, container = find_container(pod, container_name)
    notes: list[str] = []
    current = container.get("resources") or {}
    moved = _moved_gpu_names(config, gpu_resource_name, accelerator)
    req = _rename_gpu(current.get("requests") or {}, gpu_resource_name, "request", moved, notes)
    lim = _rename_gpu(current.get("limits") or {}, gpu_resource_name, "limit", moved, notes)
    if resources is not None:
        given_requests, given_limits = _overrides(resources, gpu_resource_name, notes)
        req.update(given_requests)
        lim.update(given_limits)
    req, lim = _resolved(req, lim, _Bounds.of(config, gpu_resource_name, assign), notes)
    resolved = _rebuild(current, req, lim)
    if resolved == current:
        return Result(dict(pod), tuple(notes))
    return Result(_with_container(pod, index, {**container, "resources": resolved}), tuple(notes))


_Side = tuple[tuple[str, type, Any], ...]
# A resolution's key holds at most this many entries (a container's requests and limits together); a larger one
# is resolved every time, so that the memory below stays bounded (resource names are at most 317 characters and
# quantities 64, so a key is at most ~12 KiB, 256 of them ~3 MiB).
_MEMO_ENTRIES = 32


def _resolved(
    req: dict[str, Any], lim: dict[str, Any], bounds: _Bounds, notes: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The container's requests and limits resolved against `bounds`, and the notes saying how. Once the task's
    overrides are merged in, the pods of a task (and of tasks asking alike) hold the same values whatever their
    template said, so the resolution is remembered by them: the type is part of the key, since `1 == 1.0`."""
    if len(req) + len(lim) > _MEMO_ENTRIES:
        return _resolve_all(req, lim, bounds, notes)
    key_req = tuple((k, type(v), v) for k, v in req.items())
    key_lim = tuple((k, type(v), v) for k, v in lim.items())
    resolved_req, resolved_lim, resolved_notes = _resolve_remembered(key_req, key_lim, bounds)
    notes.extend(resolved_notes)
    return dict(resolved_req), dict(resolved_lim)


@functools.lru_cache(maxsize=256)
def _resolve_remembered(
    key_req: _Side, key_lim: _Side, bounds: _Bounds
) -> tuple[tuple[tuple[str, Any], ...], tuple[tuple[str, Any], ...], tuple[str, ...]]:
    req = {k: v for k, _, v in key_req}
    lim = {k: v for k, _, v in key_lim}
    notes: list[str] = []
    req, lim = _resolve_all(req, lim, bounds, notes)
    return tuple(req.items()), tuple(lim.items()), tuple(notes)


def _resolve_all(
    req: dict[str, Any], lim: dict[str, Any], bounds: _Bounds, notes: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    adjusted = ["cpu", "memory", *(k for k in ("ephemeral-storage", bounds.gpu_name) if k in req or k in lim)]
    defaults, ceilings = dict(bounds.defaults), dict(bounds.ceilings)
    for name in adjusted:
        _resolve(name, req, lim, bounds, defaults, ceilings.get(name), notes)
    notes.extend(_too_many_devices(lim, bounds))
    return req, lim


def _resolve(
    name: str,
    req: dict[str, Any],
    lim: dict[str, Any],
    bounds: _Bounds,
    defaults: Mapping[str, str],
    ceiling: str | None,
    notes: list[str],
) -> None:
    """One resource of the container: filled (MergeExisting), clamped, and its request kept within its limit."""
    explicit_zero_request = name in req and not _nonzero(req[name])
    request = req.get(name) if _nonzero(req.get(name)) else None
    limit = lim.get(name) if _nonzero(lim.get(name)) else None
    if bounds.assign:
        request, limit = _filled(name, request, limit, defaults, notes)
    if ceiling is not None and _nonzero(ceiling):
        request = _clamp(name, "request", request, ceiling, bounds.reject, notes)
        limit = _clamp(name, "limit", limit, ceiling, bounds.reject, notes)
    request = _within_limit(name, request, limit, bounds.gpu_name, notes)
    # EnsureInRange keeps "no reservation"; dropping it would make the API server copy the limit.
    keeps_no_reservation = not bounds.assign and explicit_zero_request and request is None
    if not (keeps_no_reservation and name != bounds.gpu_name):
        _store(req, name, request)
    _store(lim, name, limit)


def _filled(
    name: str, request: str | None, limit: str | None, defaults: Mapping[str, str], notes: list[str]
) -> tuple[str | None, str | None]:
    """A missing request from the limit, else the platform default; a missing limit from the request."""
    if request is None and limit is not None:
        request = limit
        notes.append(f"{name} request set from its limit ({limit})")
    elif request is None and _nonzero(defaults.get(name)):
        request = defaults[name]
        notes.append(f"{name} request defaulted to the platform default ({request})")
    if limit is None and request is not None:
        limit = request
        notes.append(f"{name} limit set from its request ({request})")
    return request, limit


def _within_limit(name: str, request: str | None, limit: str | None, gpu_name: str, notes: list[str]) -> str | None:
    """The request, lowered to its limit when above it; a GPU request equal to its limit."""
    if limit is None or request == limit:
        return request
    if request is not None and _q(request) > _q(limit):
        notes.append(Change(f"{name} request {request} lowered to its limit {limit}"))
        return limit
    if name == gpu_name and (request is None or _q(request) != _q(limit)):
        notes.append(Change(f"{name} request raised to equal its limit ({limit})"))
        return limit
    return request


def _too_many_devices(lim: Mapping[str, Any], bounds: _Bounds) -> list[str]:
    gpus = lim.get(bounds.gpu_name)
    if not bounds.assign or gpus is None or _q(gpus) <= MOST_DEVICES_PER_NODE:
        return []
    return [
        Change(
            f"{bounds.gpu_name} {gpus}: more than any node has (no device in the catalog comes more than "
            f"{MOST_DEVICES_PER_NODE} to a node); the pod may stay Pending"
        )
    ]


def _clamp(name: str, side: str, value: str | None, ceiling: str, reject: bool, notes: list[str]) -> str | None:
    if value is None or _q(value) <= _q(ceiling):
        return value
    if reject:
        raise PlatformLimitExceeded(f"{name} {side} {value} is above the platform limit {ceiling}")
    notes.append(Change(f"{name} {side} {value} clamped to the platform limit {ceiling}"))
    return ceiling


def _store(side: dict[str, Any], name: str, value: str | None) -> None:
    if value is None or _q(value) == 0:
        side.pop(name, None)
        return
    old = side.get(name)
    if old is not None and (old == value or _q(old) == _q(value)):
        return  # keep the user's spelling: an equal quantity is not a change worth a patch op
    side[name] = canonical_quantity(value)


def _rebuild(current: Mapping[str, Any], req: Mapping[str, Any], lim: Mapping[str, Any]) -> dict[str, Any]:
    resources = dict(current)
    for key, values in (("requests", req), ("limits", lim)):
        if values:
            resources[key] = dict(values)
        else:
            resources.pop(key, None)
    return resources


# --- accelerators ---------------------------------------------------------------------------------------------


def _gpu_limited(pod: Pod, gpu_resource_name: str) -> bool:
    for container in pod.get("spec", {}).get("containers") or ():
        limits = (container.get("resources") or {}).get("limits") or {}
        if gpu_resource_name in limits and _nonzero(limits[gpu_resource_name]):
            return True
    return False


def _whole_device(accelerator: BaseAccelerator, config: WebhookConfig) -> bool:
    """Whether an accelerator naming no partition is held to whole devices, like `.unpartitioned` (not Flyte:
    there it may land on a MIG node and get slices). Only for NVIDIA devices that have MIG profiles, and only
    under `mig-strategy: single`, where a slice is advertised as `nvidia.com/gpu` like a whole GPU; under
    `mixed` a slice is its own resource, so the GPU count alone keeps the pod off MIG nodes."""
    if accelerator.partition_size or config.mig_strategy != "single":
        return False
    if accelerator.device_class is not DeviceClass.NVIDIA_GPU:
        return False
    entry = find_device(accelerator.device)
    return entry is not None and bool(entry.partitions)


def accelerator_constraints(
    accelerator: BaseAccelerator, config: WebhookConfig
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Flyte's `ApplyGPUNodeSelectors`: node selector requirements and tolerations, device first, with the
    labels of the accelerator's device class (a TPU: `gke-tpu-accelerator` and `gke-tpu-topology`) and the
    device name normalised to this cluster's label value."""
    requirements: list[dict[str, Any]] = []
    tolerations: list[dict[str, Any]] = []
    settings = config.device_class_config(accelerator.device_class)
    device_label = settings.device_node_label or config.gpu_device_node_label
    partition_label = settings.partition_size_node_label or config.gpu_partition_size_node_label
    if accelerator.device:
        value = config.device_label_value(accelerator.device)
        requirements.append({"key": device_label, "operator": "In", "values": [value]})
        tolerations.append({"key": device_label, "operator": "Equal", "value": value, "effect": "NoSchedule"})
    slice_is_a_resource = config.mig_strategy == "mixed" and accelerator.mig_profile is not None
    if accelerator.partition_size and not slice_is_a_resource:
        size = accelerator.partition_size
        requirements.append({"key": partition_label, "operator": "In", "values": [size]})
        tolerations.append({"key": partition_label, "operator": "Equal", "value": size, "effect": "NoSchedule"})
    elif accelerator.is_unpartitioned or _whole_device(accelerator, config):
        override = settings.unpartitioned_node_selector_requirement
        requirements.append(override.to_pod() if override else {"key": partition_label, "operator": "DoesNotExist"})
        if settings.unpartitioned_toleration is not None:
            tolerations.append(settings.unpartitioned_toleration.to_pod())
    return requirements, tolerations


def apply_accelerator(
    pod: Pod,
    accelerator: tasks_pb2.GPUAccelerator,
    *,
    device_class: DeviceClass | None = None,
    config: WebhookConfig,
    gpu_resource_name: str,
) -> Result:
    """Flyte's `ApplyGPUNodeSelectors` for the IDL `GPUAccelerator` of the task's `ExtendedResources`
    (`device_class`: flyteidl2's field beside it): node affinity (or nodeSelector) and NoSchedule tolerations,
    when a container limits the GPU resource."""
    placed = accelerator_from_idl(accelerator, device_class)
    if not _gpu_limited(pod, gpu_resource_name):
        what = placed.device or placed.partition_size or "accelerator"
        return Result(dict(pod), (Change(f"accelerator {what} ignored: no container has a {gpu_resource_name} limit"),))
    requirements, tolerations = accelerator_constraints(placed, config)
    notes: list[str] = _count_notes(pod, placed, gpu_resource_name)
    spec = pod.get("spec") or {}
    selector = dict(spec.get("nodeSelector") or {})
    affinity = spec.get("affinity")
    if config.accelerator_placement == "nodeSelector":
        requirements = _into_selector(requirements, selector, notes)
        # An affinity requirement on a label the nodeSelector now decides could only contradict it.
        affinity = _without_requirements_on(affinity, set(selector) - {r["key"] for r in requirements}, notes)
    for key in {r["key"] for r in requirements}:
        if key in selector:
            notes.append(
                Change(f"nodeSelector {key}={selector.pop(key)} removed: the accelerator's node affinity decides it")
            )
    if requirements:
        affinity = _with_requirements(affinity, requirements, notes)
    fields = _changed_fields(spec, selector, affinity, _with_tolerations(spec.get("tolerations"), tolerations, notes))
    return Result(_with_spec(pod, **fields) if fields else dict(pod), tuple(notes))


def _changed_fields(
    spec: Mapping[str, Any], selector: dict[str, str], affinity: Mapping[str, Any] | None, tolerations: list[Any]
) -> dict[str, Any]:
    """The placement fields of `spec` that differ from these; an emptied nodeSelector goes."""
    fields: dict[str, Any] = {}
    if selector != (spec.get("nodeSelector") or {}):
        fields["nodeSelector"] = selector or None
    if affinity != spec.get("affinity"):
        fields["affinity"] = affinity
    if tolerations != (spec.get("tolerations") or []):
        fields["tolerations"] = tolerations
    return fields


def _into_selector(
    requirements: list[dict[str, Any]], selector: dict[str, str], notes: list[str]
) -> list[dict[str, Any]]:
    """Single-value `In` requirements written into `selector` (`accelerator-placement: nodeSelector`); the
    requirements a nodeSelector cannot say are returned, for node affinity."""
    in_affinity = []
    for requirement in requirements:
        if requirement["operator"] == "In" and len(requirement["values"]) == 1:
            key, value = requirement["key"], requirement["values"][0]
            if selector.get(key) != value:
                note = f"nodeSelector {key}={value}"
                notes.append(Change(note) if key in selector else note)
                selector[key] = value
        else:
            in_affinity.append(requirement)
    return in_affinity


def _count_notes(pod: Pod, accelerator: BaseAccelerator, gpu_resource_name: str) -> list[str]:
    """A `Change` note when the pod asks for more whole devices of its type than one node of it has (Flyte 2's
    `"<type>:<count>"` strings, which follow the instance sizes); slices and TPU topologies are counted otherwise."""
    entry = find_device(accelerator.device)
    # Only where Flyte 2's counts follow the instance sizes (8 GPUs, 16 Trainium); a type it offers singly
    # (`MI300X:1`, `T4 shared:1`) still comes 8 to a node.
    if entry is None or entry.max_count < 8 or accelerator.partition_size:
        return []
    most = 0
    for container in pod.get("spec", {}).get("containers") or ():
        value = ((container.get("resources") or {}).get("limits") or {}).get(gpu_resource_name)
        amount = _q(value) if value is not None else None
        if amount is not None and amount > MOST_DEVICES_PER_NODE:  # the resource step said so; and never int()
            return []  # a pod's `1e999999`: building that integer takes 30 s
        if amount is not None and amount > entry.max_count:
            most = max(most, int(amount))
    if not most:
        return []
    return [
        Change(
            f"{gpu_resource_name} {most}: more {entry.name} devices than one node has (at most {entry.max_count}); "
            "the pod may stay Pending"
        )
    ]


def _without_requirements_on(
    affinity: Mapping[str, Any] | None, keys: set[str], notes: list[str]
) -> Mapping[str, Any] | None:
    """`affinity` without required node selector requirements on `keys`; terms left empty are dropped."""
    terms = (
        ((affinity or {}).get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    ).get("nodeSelectorTerms") or []
    if not any(e.get("key") in keys for term in terms for e in term.get("matchExpressions") or ()):
        return affinity
    kept_terms = []
    for term in terms:
        expressions = [e for e in term.get("matchExpressions") or () if e.get("key") not in keys]
        for removed in (e for e in term.get("matchExpressions") or () if e.get("key") in keys):
            note = Change(f"node affinity removed: {_describe_requirement(removed)} (the nodeSelector decides it)")
            if note not in notes:
                notes.append(note)
        rest = {k: v for k, v in term.items() if k != "matchExpressions"}
        if expressions:
            rest["matchExpressions"] = expressions
        if rest:
            kept_terms.append(rest)
    out = dict(affinity or {})
    node_affinity = dict(out.get("nodeAffinity") or {})
    if kept_terms:
        required = dict(node_affinity["requiredDuringSchedulingIgnoredDuringExecution"])
        required["nodeSelectorTerms"] = kept_terms
        node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = required
    else:
        node_affinity.pop("requiredDuringSchedulingIgnoredDuringExecution", None)
    if node_affinity:
        out["nodeAffinity"] = node_affinity
    else:
        out.pop("nodeAffinity", None)
    return out or None


def _describe_requirement(requirement: Mapping[str, Any]) -> str:
    values = requirement.get("values")
    shown = f" [{', '.join(values)}]" if values else ""
    return f"{requirement['key']} {requirement['operator']}{shown}"


def _with_requirements(
    affinity: Mapping[str, Any] | None, requirements: Sequence[Mapping[str, Any]], notes: list[str]
) -> dict[str, Any]:
    affinity = dict(affinity or {})
    node_affinity = dict(affinity.get("nodeAffinity") or {})
    required = dict(node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = [dict(term) for term in required.get("nodeSelectorTerms") or ()] or [{}]
    changed = False
    for term in terms:
        expressions = list(term.get("matchExpressions") or ())
        for requirement in requirements:
            if requirement in expressions:
                continue
            same_key = [e for e in expressions if e.get("key") == requirement["key"]]
            expressions = [e for e in expressions if e.get("key") != requirement["key"]]
            expressions.append(dict(requirement))
            changed = True
            verb = "replaced" if same_key else "added"
            note = f"node affinity {verb}: {_describe_requirement(requirement)}"
            note = Change(note) if same_key else note
            if note not in notes:
                notes.append(note)
        term["matchExpressions"] = expressions
    if not changed:
        return dict(affinity)
    required["nodeSelectorTerms"] = terms
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = required
    affinity["nodeAffinity"] = node_affinity
    return affinity


def _with_tolerations(
    existing: Sequence[Mapping[str, Any]] | None, wanted: Sequence[Mapping[str, Any]], notes: list[str]
) -> list[Any]:
    tolerations = list(existing or ())
    for toleration in wanted:
        if toleration not in tolerations:
            tolerations.append(dict(toleration))
            value = f"={toleration['value']}" if toleration.get("value") else ""
            notes.append(f"toleration added: {toleration.get('key')}{value}:{toleration.get('effect', '')}")
    return tolerations


def apply_resource_tolerations(pod: Pod, *, config: WebhookConfig) -> Result:
    """Flyte's `resource-tolerations`: tolerations for every resource a container requests or limits."""
    if not config.resource_tolerations:
        return Result(dict(pod))
    present: set[str] = set()
    for container in pod.get("spec", {}).get("containers") or ():
        resources = container.get("resources") or {}
        present.update(resources.get("requests") or {})
        present.update(resources.get("limits") or {})
    wanted = [
        toleration.to_pod()
        for name, configured in config.resource_tolerations.items()
        if name in present
        for toleration in configured
    ]
    notes: list[str] = []
    spec = pod.get("spec") or {}
    merged = _with_tolerations(spec.get("tolerations"), wanted, notes)
    if merged == (spec.get("tolerations") or []):
        return Result(dict(pod))
    return Result(_with_spec(pod, tolerations=merged), tuple(notes))


# --- shared memory --------------------------------------------------------------------------------------------


def shared_memory_volume(size_limit: str | None, mount_name: str = SHM_MOUNT_NAME) -> dict[str, Any]:
    empty_dir: dict[str, Any] = {"medium": "Memory"}
    if size_limit:
        empty_dir["sizeLimit"] = canonical_quantity(size_limit)
    return {"name": mount_name, "emptyDir": empty_dir}


def apply_shared_memory(pod: Pod, container_name: str, memory: tasks_pb2.SharedMemory) -> Result:
    """Flyte's `ApplySharedMemory` for the IDL `SharedMemory` of the task's `ExtendedResources`: a
    memory-backed emptyDir mounted on the target container only.

    Without a size the tmpfs is sized by the kubelet from the pod's memory limit (Flyte writes `sizeLimit: 0`
    for the same effect; we leave it out).
    """
    mount_name, mount_path, size_limit = memory.mount_name, memory.mount_path, memory.size_limit or None
    index, container = _shm_target(pod, container_name, memory)
    volume = shared_memory_volume(size_limit, mount_name)
    mount = {"name": mount_name, "mountPath": mount_path}
    volumes = list(pod.get("spec", {}).get("volumes") or ())
    mounts = list(container.get("volumeMounts") or ())
    existing = next((i for i, v in enumerate(volumes) if v.get("name") == mount_name), None)
    have_volume = existing is not None and _same_volume(volumes[existing], volume)
    have_mount = any(m.get("name") == mount_name and m.get("mountPath") == mount_path for m in mounts)
    if have_volume and have_mount:
        return Result(dict(pod))
    notes: list[str] = []
    updated = dict(pod)
    if not have_volume:
        updated = _with_spec(updated, volumes=_with_volume(volumes, existing, volume, size_limit, notes))
    if not have_mount:
        updated = _with_container(updated, index, {**container, "volumeMounts": [*mounts, mount]})
        notes.append(f"shared memory mounted at {mount_path} in container {container_name}")
    return Result(updated, tuple(notes))


def _shm_target(pod: Pod, container_name: str, memory: tasks_pb2.SharedMemory) -> tuple[int, Mapping[str, Any]]:
    """The container the memory is mounted on, after Flyte's checks (each with Flyte's words)."""
    if not memory.mount_name:
        raise PodSemanticsError("mount name is not set")
    if not memory.mount_path:
        raise PodSemanticsError("mount path is not set")
    try:
        index, container = find_container(pod, container_name)
    except PodSemanticsError:
        raise PodSemanticsError(f"Unable to find primary container {container_name!r}") from None
    _check_shm_conflicts(pod, container, memory.mount_name, memory.mount_path)
    if memory.size_limit:
        try:
            parse_quantity(memory.size_limit)
        except InvalidQuantity as exc:
            raise PodSemanticsError(
                f"Unable to parse size limit: {exc.go_error or exc.reason} ({memory.size_limit!r})"
            ) from None
    return index, container


def _with_volume(
    volumes: list[Any], existing: int | None, volume: dict[str, Any], size_limit: str | None, notes: list[str]
) -> list[Any]:
    """`volumes` with our memory volume added, or our own of another size (a pod template's, an earlier
    annotation's) resized."""
    if existing is None:
        size = f" of {volume['emptyDir']['sizeLimit']}" if size_limit else ""
        notes.append(f"shared memory volume {volume['name']}{size} added")
        return [*volumes, volume]
    notes.append(Change(f"shared memory volume {volume['name']} resized to {size_limit or 'the pod memory limit'}"))
    return [*volumes[:existing], volume, *volumes[existing + 1 :]]


def _check_shm_conflicts(pod: Pod, container: Mapping[str, Any], mount_name: str, mount_path: str) -> None:
    """Flyte's conflict errors, except that our own volume and mount already in place are no conflict."""
    volumes = pod.get("spec", {}).get("volumes") or ()
    mounts = container.get("volumeMounts") or ()
    ours = {"name": mount_name, "mountPath": mount_path}
    for volume in volumes:
        if volume.get("name") == mount_name and not _same_volume_kind(volume):
            raise PodSemanticsError(f"A volume is already named {mount_name} in pod spec")
    for existing in mounts:
        if {k: existing.get(k) for k in ours} == ours:
            continue
        if existing.get("name") == mount_name:
            raise PodSemanticsError(f"A volume is already named {mount_name} in container")
        if existing.get("mountPath") == mount_path:
            raise PodSemanticsError(f"{mount_path} is already mounted in container")


def _same_volume_kind(volume: Mapping[str, Any]) -> bool:
    empty_dir = volume.get("emptyDir")
    return (
        set(volume) == {"name", "emptyDir"} and isinstance(empty_dir, Mapping) and empty_dir.get("medium") == "Memory"
    )


def _same_volume(existing: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    if existing.get("name") != wanted["name"] or set(existing) != {"name", "emptyDir"}:
        return False
    have = existing.get("emptyDir") or {}
    want = wanted["emptyDir"]
    if have.get("medium") != "Memory" or set(have) - {"medium", "sizeLimit"}:
        return False
    have_size = have.get("sizeLimit") if _nonzero(have.get("sizeLimit")) else None
    want_size = want.get("sizeLimit")
    if have_size is None or want_size is None:
        return have_size is None and want_size is None
    return parse_quantity(have_size) == parse_quantity(want_size)
