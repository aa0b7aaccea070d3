"""Flyte's backend semantics: what flyteplugins (`flytek8s`, v1.16.8 and the v2 `main` device classes) does to
a pod, as pure functions over a pod dict.

This is the backend side of the engine; it takes the accelerator model (`webhook.engine.accelerators`) and
plain Kubernetes resource maps, never the SDK forms (flytekit's `Resources`, Flyte 2's `Device`).

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
  reach one label value), and `NVIDIA_GPU` counts under `gpu-resource-name` (Flyte 2 lets the class's
  `nvidia.com/gpu` win).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from flyteidl.core import tasks_pb2

from webhook.engine.accelerators import BaseAccelerator
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


def effective_gpu_resource_name(
    config: WebhookConfig, accelerator: BaseAccelerator | None, override: str | None = None
) -> str:
    """The resource name the pod's accelerators are counted under: the override, else the accelerator's device
    class (`google.com/tpu` for a TPU, `aws.amazon.com/neuron`, ...; NVIDIA's is `gpu-resource-name`), as
    Flyte 2 renames the generic GPU per class; MIG `mixed` turns a slice into its own resource."""
    if override:
        base = override
    elif accelerator is not None:
        base = config.device_class_config(accelerator.device_class).resource_name or config.gpu_resource_name
    else:
        base = config.gpu_resource_name
    if (
        accelerator is not None
        and config.mig_strategy == "mixed"
        and accelerator.mig_profile
        and base.startswith("nvidia.com/")
    ):
        return mig_resource_name(accelerator.mig_profile)
    return base


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


def _to_k8s_list(entries: Any, gpu_key: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for entry in entries:
        try:
            quantity = Quantity.parse(entry.value)
        except InvalidQuantity as exc:
            raise ValueError(f"{_FLYTE_PARSE_ERROR}: {exc.go_error or exc}") from None
        name = IDL_TO_K8S.get(entry.name)
        if name is not None and quantity.value != 0:
            result[gpu_key if name == GENERIC_GPU else name] = str(quantity)
    return result


# --- resources ------------------------------------------------------------------------------------------------


def _q(value: Any) -> Decimal:
    return parse_quantity(value)


def _nonzero(value: Any) -> bool:
    return value is not None and _q(value) != 0


def _rename_gpu(resources: Mapping[str, Any], gpu_name: str, side: str, notes: list[str]) -> dict[str, Any]:
    """Flyte's SanitizeGPUResourceRequirements, plus moving a whole-GPU count onto a MIG slice resource."""
    out: dict[str, Any] = {}
    for key, value in resources.items():
        target = key
        if key == GENERIC_GPU or (key == "nvidia.com/gpu" and gpu_name.startswith("nvidia.com/mig-")):
            target = gpu_name
        if target != key:
            notes.append(f"{side} {key} renamed to {gpu_name}")
        out[target] = value
    return out


def apply_container_resources(
    pod: Pod,
    container_name: str,
    *,
    requests: Mapping[str, str] | None = None,
    limits: Mapping[str, str] | None = None,
    config: WebhookConfig,
    gpu_resource_name: str,
    assign: bool = True,
) -> Result:
    """Merge `requests`/`limits` per key into the container, then Flyte's `ApplyResourceOverrides`.

    `assign=True` is Flyte's MergeExisting mode (the primary container), `False` its EnsureInRange mode (other
    containers of a pod task: nothing is filled in, values are only clamped).

    `requests`/`limits` use Kubernetes names; `gpu` means the GPU resource of this pod. Missing requests come
    from the limit, else the platform default; missing limits from the request; both are clamped to platform
    limits (or rejected, by config); a request above its limit is lowered; GPU requests equal GPU limits.
    """
    index, container = find_container(pod, container_name)
    notes: list[str] = []
    current = container.get("resources") or {}
    req = _rename_gpu(current.get("requests") or {}, gpu_resource_name, "request", notes)
    lim = _rename_gpu(current.get("limits") or {}, gpu_resource_name, "limit", notes)
    for side, given, target in (("request", requests, req), ("limit", limits, lim)):
        for key, value in _rename_gpu(given or {}, gpu_resource_name, side, []).items():
            if not _nonzero(value):
                # Flyte drops zero quantities from override resources (ToK8sResourceList), so a zero
                # means "not overridden": the container keeps its own value.
                notes.append(Change(f"{key} {side} 0 ignored: a zero override leaves the container's value"))
                continue
            target[key] = value

    platform_requests = {
        "cpu": config.default_cpus,
        "memory": config.default_memory,
        **config.default_requests,
    }
    platform_limits = dict(config.platform_limits)
    if GENERIC_GPU in platform_limits:
        platform_limits.setdefault(gpu_resource_name, platform_limits[GENERIC_GPU])

    adjusted = ["cpu", "memory"]
    adjusted += [k for k in ("ephemeral-storage", gpu_resource_name) if k in req or k in lim]
    for name in adjusted:
        explicit_zero_request = name in req and not _nonzero(req[name])
        request = req.get(name) if _nonzero(req.get(name)) else None
        limit = lim.get(name) if _nonzero(lim.get(name)) else None
        if not assign:
            pass
        elif request is None and limit is not None:
            request = limit
            notes.append(f"{name} request set from its limit ({limit})")
        elif request is None and _nonzero(platform_requests.get(name)):
            request = platform_requests[name]
            notes.append(f"{name} request defaulted to the platform default ({request})")
        if assign and limit is None and request is not None:
            limit = request
            notes.append(f"{name} limit set from its request ({request})")
        ceiling = platform_limits.get(name)
        if ceiling is not None and _nonzero(ceiling):
            request = _clamp(name, "request", request, ceiling, config, notes)
            limit = _clamp(name, "limit", limit, ceiling, config, notes)
        if request is not None and limit is not None and request != limit:
            if _q(request) > _q(limit):
                notes.append(Change(f"{name} request {request} lowered to its limit {limit}"))
                request = limit
            elif name == gpu_resource_name and _q(request) != _q(limit):
                notes.append(Change(f"{name} request raised to equal its limit ({limit})"))
                request = limit
        elif name == gpu_resource_name and limit is not None and request is None:
            notes.append(Change(f"{name} request raised to equal its limit ({limit})"))
            request = limit
        if not assign and explicit_zero_request and request is None and name != gpu_resource_name:
            pass  # EnsureInRange keeps "no reservation"; dropping it would make the API server copy the limit
        else:
            _store(req, name, request)
        _store(lim, name, limit)

    gpus = lim.get(gpu_resource_name)
    if assign and gpus is not None and _q(gpus) > MOST_DEVICES_PER_NODE:
        notes.append(
            Change(
                f"{gpu_resource_name} {gpus}: more than any node has (no device in the catalog comes more than "
                f"{MOST_DEVICES_PER_NODE} to a node); the pod may stay Pending"
            )
        )
    resources = _rebuild(current, req, lim)
    if resources == current:
        return Result(dict(pod), tuple(notes))
    return Result(_with_container(pod, index, {**container, "resources": resources}), tuple(notes))


def _clamp(
    name: str, side: str, value: str | None, ceiling: str, config: WebhookConfig, notes: list[str]
) -> str | None:
    if value is None or _q(value) <= _q(ceiling):
        return value
    if config.on_limit_exceeded == "reject":
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
    pod: Pod, accelerator: BaseAccelerator, *, config: WebhookConfig, gpu_resource_name: str
) -> Result:
    """Node affinity (or nodeSelector) and NoSchedule tolerations for the accelerator, when a GPU is limited."""
    if not _gpu_limited(pod, gpu_resource_name):
        what = accelerator.device or accelerator.partition_size or "accelerator"
        return Result(dict(pod), (Change(f"accelerator {what} ignored: no container has a {gpu_resource_name} limit"),))
    requirements, tolerations = accelerator_constraints(accelerator, config)
    notes: list[str] = _count_notes(pod, accelerator, gpu_resource_name)
    spec = pod.get("spec") or {}
    fields: dict[str, Any] = {}

    selector = dict(spec.get("nodeSelector") or {})
    affinity = spec.get("affinity")
    if config.accelerator_placement == "nodeSelector":
        in_affinity = []
        for requirement in requirements:
            if requirement["operator"] == "In" and len(requirement["values"]) == 1:
                if selector.get(requirement["key"]) != requirement["values"][0]:
                    note = f"nodeSelector {requirement['key']}={requirement['values'][0]}"
                    notes.append(Change(note) if requirement["key"] in selector else note)
                    selector[requirement["key"]] = requirement["values"][0]
            else:
                in_affinity.append(requirement)
        requirements = in_affinity
        # An affinity requirement on a label the nodeSelector now decides could only contradict it.
        affinity = _without_requirements_on(affinity, set(selector) - {r["key"] for r in requirements}, notes)
    for key in {r["key"] for r in requirements}:
        if key in selector:
            notes.append(
                Change(f"nodeSelector {key}={selector.pop(key)} removed: the accelerator's node affinity decides it")
            )
    if requirements:
        affinity = _with_requirements(affinity, requirements, notes)
    if selector != (spec.get("nodeSelector") or {}):
        fields["nodeSelector"] = selector or None
    if affinity != spec.get("affinity"):
        fields["affinity"] = affinity
    merged = _with_tolerations(spec.get("tolerations"), tolerations, notes)
    if merged != (spec.get("tolerations") or []):
        fields["tolerations"] = merged
    return Result(_with_spec(pod, **fields) if fields else dict(pod), tuple(notes))


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


def apply_shared_memory(
    pod: Pod,
    container_name: str,
    *,
    size_limit: str | None = None,
    mount_name: str = SHM_MOUNT_NAME,
    mount_path: str = SHM_MOUNT_PATH,
) -> Result:
    """Flyte's `ApplySharedMemory`: a memory-backed emptyDir mounted on the target container only.

    Without a size the tmpfs is sized by the kubelet from the pod's memory limit (Flyte writes `sizeLimit: 0`
    for the same effect; we leave it out).
    """
    if not mount_name:
        raise PodSemanticsError("mount name is not set")
    if not mount_path:
        raise PodSemanticsError("mount path is not set")
    try:
        index, container = find_container(pod, container_name)
    except PodSemanticsError:
        raise PodSemanticsError(f"Unable to find primary container {container_name!r}") from None
    _check_shm_conflicts(pod, container, mount_name, mount_path)
    if size_limit:
        try:
            parse_quantity(size_limit)
        except InvalidQuantity as exc:
            raise PodSemanticsError(
                f"Unable to parse size limit: {exc.go_error or exc.reason} ({size_limit!r})"
            ) from None

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
    size = f" of {volume['emptyDir']['sizeLimit']}" if size_limit else ""
    if existing is None:
        volumes.append(volume)
        notes.append(f"shared memory volume {mount_name}{size} added")
    elif not have_volume:
        # Our own memory volume with another size (a pod template's, or an earlier annotation's): resize it.
        volumes[existing] = volume
        notes.append(Change(f"shared memory volume {mount_name} resized to {size_limit or 'the pod memory limit'}"))
    if not have_volume:
        updated = _with_spec(updated, volumes=volumes)
    if not have_mount:
        updated = _with_container(updated, index, {**container, "volumeMounts": [*mounts, mount]})
        notes.append(f"shared memory mounted at {mount_path} in container {container_name}")
    return Result(updated, tuple(notes))


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
