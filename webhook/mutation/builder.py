"""Annotations built from what users already hold, checked as the webhook checks them.

For a `PodTemplate`, a launch plan, `pyflyte run --annotations` or `flyte.with_runcontext(annotations=...)`:

    from webhook.engine.accelerators import A100
    from webhook.engine.flyte2 import GPU
    from webhook.engine.resources import Resources
    from webhook.mutation.builder import flyte2_annotations, flytekit_annotations

    flyte2_annotations(cpu=(2, 4), memory="8Gi", gpu="A100:2", shm="auto")      # Flyte 2 style values
    flyte2_annotations(gpu=GPU("H100", 1, partition="1g.10gb"))                  # a Device
    flytekit_annotations(Resources(cpu=("1", "2"), mem="4Gi", gpu="1"), accelerator=A100.partition_1g_5gb)

Each returns `{annotation: value}`; the webhook reads back exactly what was given (a property test holds it to
that), and a value the webhook would deny raises `ValueError` here instead. What the annotations meet in a pod
is not known here: a pod can still be denied for a container they name that it lacks, or for a value above a
platform limit under `on-limit-exceeded: reject`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, TypeAlias

from webhook.engine.accelerators import BaseAccelerator, known_accelerators, lookup_accelerator
from webhook.engine.catalog import DeviceClass, by_name, find_device
from webhook.engine.config import DEFAULT_ANNOTATION_PREFIX, check_annotation_prefix
from webhook.engine.flyte2 import Device, parse_accelerator
from webhook.engine.names import RESOURCE_FIELDS
from webhook.engine.resources import Resources
from webhook.mutation.annotations import (
    ACCELERATOR,
    CONTAINER,
    EXTENDED_RESOURCES,
    GPU_RESOURCE_KEY,
    LIMITS,
    REQUESTS,
    RESOURCES,
    SHARED_MEMORY,
    InvalidAnnotation,
    read_annotations,
)

__all__ = ["DEFAULT_PREFIX", "accelerator_annotation", "flyte2_annotations", "flytekit_annotations"]

DEFAULT_PREFIX: Final = DEFAULT_ANNOTATION_PREFIX

Scalar: TypeAlias = str | int | float
Value: TypeAlias = Scalar | tuple[Scalar, Scalar] | list[Scalar]


def flyte2_annotations(
    *,
    cpu: Value | None = None,
    memory: Value | None = None,
    gpu: int | str | Device | None = None,
    disk: str | None = None,
    shm: str | None = None,
    accelerator: BaseAccelerator | str | None = None,
    shared_memory: bool | str | None = None,
    container: str | None = None,
    gpu_resource_key: str | None = None,
    prefix: str = DEFAULT_PREFIX,
) -> dict[str, str]:
    """Annotations for Flyte 2 style values (`flyte.Resources(cpu=..., memory=..., gpu=..., disk=..., shm=...)`:
    a value or a (request, limit) pair; `gpu` a count, `"A100:2"` or a `Device`; `shm` a size or `"auto"`),
    plus the webhook's own `accelerator`, `shared-memory`, `container` and `gpu-resource-key`."""
    fields: dict[str, Any] = {}
    for name, value in (("cpu", cpu), ("memory", memory), ("disk", disk)):
        if value is not None:
            fields[name] = _value(name, value)
    if gpu is not None:
        fields["gpu"] = _gpu(gpu)
    if shm is not None:
        fields["shm"] = shm
    out: dict[str, str] = {}
    if fields:
        out[prefix + RESOURCES] = _resources_text(fields)
    return _finish(out, prefix, accelerator, shared_memory, container, gpu_resource_key)


def flytekit_annotations(
    resources: Resources | None = None,
    *,
    requests: Resources | None = None,
    limits: Resources | None = None,
    accelerator: BaseAccelerator | str | None = None,
    shared_memory: bool | str | None = None,
    container: str | None = None,
    gpu_resource_key: str | None = None,
    prefix: str = DEFAULT_PREFIX,
) -> dict[str, str]:
    """Annotations for flytekit 1.x objects: `@task(resources=...)` or `requests=`/`limits=`, `accelerator=`,
    `shared_memory=` (as `construct_extended_resources` takes them)."""
    if resources is not None and (requests is not None or limits is not None):
        raise ValueError(
            "`resource` can not be used together with the `limits` or `requests`. Please only set `resource`."
        )
    out: dict[str, str] = {}
    for name, given in ((RESOURCES, resources), (REQUESTS, requests), (LIMITS, limits)):
        if given is not None:
            fields = {
                field: _value(field, getattr(given, field))
                for field in RESOURCE_FIELDS
                if getattr(given, field) is not None
            }
            if fields:
                out[prefix + name] = _resources_text(fields)
    return _finish(out, prefix, accelerator, shared_memory, container, gpu_resource_key)


def accelerator_annotation(accelerator: BaseAccelerator | str) -> tuple[str, str]:
    """(annotation name, value) that asks for `accelerator`: its flytekit name (`A100.partition_1g_5gb`), else
    `<device>:<partition>`, else `extended-resources` JSON (an unpartitioned custom device, a device class the
    catalog would not give the device)."""
    found = lookup_accelerator(accelerator) if isinstance(accelerator, str) else accelerator
    for name, known in _KNOWN.items():
        if known == found:
            return ACCELERATOR, name
    entry = find_device(found.device)
    inferred = entry.device_class if entry is not None else DeviceClass.NVIDIA_GPU
    if not found.is_unpartitioned and found.device_class is inferred and found.device:
        text = found.device + (f":{found.partition_size}" if found.partition_size else "")
        if lookup_accelerator(text) == found:
            return ACCELERATOR, text
    message: dict[str, Any] = {"device": found.device}
    if found.partition_size:
        message["partitionSize"] = found.partition_size
    if found.is_unpartitioned:
        message["unpartitioned"] = True
    if found.device_class is not inferred:
        message["deviceClass"] = found.device_class.value
    return EXTENDED_RESOURCES, json.dumps({"gpuAccelerator": message}, separators=(",", ":"))


_KNOWN: Final = known_accelerators()


def _value(name: str, value: object) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"{name}: {value!r} is not a quantity")
    if isinstance(value, list | tuple):
        if len(value) != 2:
            raise ValueError(f"{name}: a pair is (request, limit), got {len(value)} items")
        return [_scalar(name, item) for item in value]
    return _scalar(name, value)


def _scalar(name: str, value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{name}: {value!r} is not a quantity")
    return str(value)


def _gpu(gpu: int | str | Device) -> Any:
    if isinstance(gpu, Device):
        if gpu.device is None:
            return str(gpu.quantity)
        entry = by_name(gpu.device)
        if gpu.partition is None and entry is not None and gpu.quantity in entry.counts:
            return f"{entry.name}:{gpu.quantity}"
        device: dict[str, Any] = {"device": gpu.device, "quantity": gpu.quantity}
        if gpu.partition is not None:
            device["partition"] = gpu.partition
        device["device_class"] = gpu.device_class.sdk_name
        return device
    if isinstance(gpu, str) and gpu.strip()[:1].isalpha():
        found = parse_accelerator(gpu)
        return f"{found.device}:{found.quantity}"
    return _scalar("gpu", gpu)


def _resources_text(fields: Mapping[str, Any]) -> str:
    """The compact form when every value fits it, else JSON (a device object, a value with `,` `=` or `:`)."""
    if all(_compact_safe(value) for value in fields.values()):
        return ",".join(
            f"{name}={':'.join(value) if isinstance(value, list) else value}" for name, value in fields.items()
        )
    return json.dumps(dict(fields), separators=(",", ":"))


def _compact_safe(value: object) -> bool:
    if isinstance(value, list):
        return all(_compact_safe(item) for item in value) and not any(":" in item for item in value)
    if not isinstance(value, str) or not value or value != value.strip():
        return False
    return not any(char in value for char in ",=") and (":" not in value or value[:1].isalpha())


def _finish(
    out: dict[str, str],
    prefix: str,
    accelerator: BaseAccelerator | str | None,
    shared_memory: bool | str | None,
    container: str | None,
    gpu_resource_key: str | None,
) -> dict[str, str]:
    check_annotation_prefix(prefix)  # `evil` would make `evilresources`, a key the webhook never reads
    if accelerator is not None:
        name, text = accelerator_annotation(accelerator)
        out[prefix + name] = text
    if shared_memory is True:
        out[prefix + SHARED_MEMORY] = "true"
    elif isinstance(shared_memory, str) and shared_memory:
        out[prefix + SHARED_MEMORY] = shared_memory
    if container is not None:
        out[prefix + CONTAINER] = container
    if gpu_resource_key is not None:
        out[prefix + GPU_RESOURCE_KEY] = gpu_resource_key
    try:
        read_annotations(out, prefix)  # what the webhook would deny is refused here
    except InvalidAnnotation as exc:
        raise ValueError(str(exc)) from None
    return out
