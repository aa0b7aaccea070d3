"""Flyte 2 spellings in the `resources` annotation, turned into flytekit's fields plus what they place.

`flyte.Resources(cpu=..., memory=..., gpu=..., disk=..., shm=...)` as annotation text, JSON or compact:

* `memory` (flytekit's `mem`, accepted anyway) and `disk` (flytekit's `ephemeral_storage`);
* `gpu` as an int or quantity (flytekit's count), as `"<Type>:<count>"` (`"A100:2"`; in the compact form
  `gpu=A100:2` is a device and a count, never a request:limit pair), or in JSON as a device object with Flyte
  2's `Device` field names: `{"device": "H100", "quantity": 1, "partition": "1g.10gb", "device_class": "GPU"}`;
* `shm` as a size (`"2Gi"`) or `"auto"` (memory-backed, no size: the kubelet sizes it from the pod's memory).

A device places the pod like the `accelerator` annotation does. Pure: raises `ValueError` with the reason;
`annotations.py` names the annotation and its value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from webhook.engine.accelerators import Accelerator
from webhook.engine.catalog import DeviceClass
from webhook.engine.excerpt import shown
from webhook.engine.flyte2 import device, parse_accelerator
from webhook.engine.quantity import canonical_quantity, parse_quantity

__all__ = ["Flyte2Extras", "pop_device_class", "split_flyte2_fields"]

_DEVICE_FIELDS: Final = ("device", "quantity", "partition", "device_class")
_STORAGE_KEYS: Final = ("ephemeral_storage", "ephemeral-storage")
# flytekit's fields and the Kubernetes spellings, then Flyte 2's; `shm` only where a value is not one side.
_REQUEST_KEYS: Final = ("cpu", "mem", "memory", "gpu", *_STORAGE_KEYS, "disk")
_RESOURCES_KEYS: Final = (*_REQUEST_KEYS, "shm")


@dataclass(frozen=True)
class Flyte2Extras:
    """What Flyte 2 fields of `resources` ask beyond requests and limits."""

    accelerator: Accelerator | None = None
    shm: str | None = None  # a canonical size; "" for `auto`; None when `shm` is not given


def split_flyte2_fields(data: Mapping[str, Any], *, in_resources: bool) -> tuple[dict[str, Any], Flyte2Extras]:
    """`data` with Flyte 2 fields turned into flytekit's (`disk` -> `ephemeral_storage`, a device -> its count),
    and the accelerator and shared memory they ask for. `in_resources=False` (the `requests`/`limits`
    annotations) refuses a device or `shm`, which have no request/limit side."""
    if "shm" in data and not in_resources:
        raise ValueError("shm: shared memory is only allowed in `resources`")
    valid = _RESOURCES_KEYS if in_resources else _REQUEST_KEYS
    for key in data:
        if key not in valid:
            raise ValueError(f"Resources: unknown key {shown(key)}; valid keys: {', '.join(valid)}")
    for key in ("memory", "disk"):
        value = data.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            # Flyte 2 takes only strings here; a bare number would be bytes (a pod evicted at its first write).
            # flytekit's `mem` keeps its int-as-bytes meaning.
            raise ValueError(f"{key} must be a Kubernetes quantity string such as '1Gi', not the number {shown(value)}")
    out = dict(data)
    if "disk" in out:
        if any(key in out for key in _STORAGE_KEYS):
            raise ValueError("Resources: 'disk' sets ephemeral_storage, which is already set")
        out["ephemeral_storage"] = out.pop("disk")
    accelerator = None
    if "gpu" in out:
        count, accelerator = _gpu(out["gpu"])
        if accelerator is not None and not in_resources:
            raise ValueError("gpu: a device (e.g. 'A100:2') is only allowed in `resources`")
        out["gpu"] = count
    shm = None
    if "shm" in out:
        shm = _shm(out.pop("shm"))
    return out, Flyte2Extras(accelerator, shm)


def _names_a_device(value: object) -> bool:
    # A quantity starts with a digit, a sign or a dot; a Flyte 2 type name with a letter.
    return isinstance(value, str) and value.strip()[:1].isalpha()


def _gpu(value: object) -> tuple[Any, Accelerator | None]:
    """(what flytekit's `gpu` field gets, the accelerator) for one `gpu` value."""
    if isinstance(value, Mapping):
        found = _device_object(value)
    elif _names_a_device(value):
        found = parse_accelerator(str(value))
    elif isinstance(value, list | tuple) and len(value) == 2 and _names_a_device(value[0]):
        found = parse_accelerator(f"{value[0]}:{value[1]}")  # the compact form split `A100:2` at the colon
    else:
        return value, None  # a flytekit count (or pair), checked by flytekit's rules
    return str(found.quantity), found.accelerator()


def _device_object(value: Mapping[str, Any]) -> Any:
    unknown = [str(key) for key in value if key not in _DEVICE_FIELDS]
    if unknown:
        raise ValueError(f"gpu: unknown device field {shown(unknown[0])}; valid: {', '.join(_DEVICE_FIELDS)}")
    name = value.get("device")
    if not isinstance(name, str) or not name:
        raise ValueError('gpu: a device object needs "device", e.g. {"device": "A100", "quantity": 1}')
    for key in ("partition", "device_class"):
        if value.get(key) is not None and not isinstance(value[key], str):
            raise ValueError(f"gpu: {key} must be a string, got {shown(value[key])}")
    quantity = value.get("quantity")
    if quantity is not None and (isinstance(quantity, bool) or not isinstance(quantity, int)):
        raise ValueError(f"gpu: quantity must be a whole number, got {shown(quantity)}")
    return device(name, quantity, value.get("partition"), value.get("device_class"))


def _shm(value: object) -> str:
    if value == "auto":
        return ""
    if isinstance(value, str) and value.strip():
        try:
            size = parse_quantity(value.strip())
        except ValueError as exc:
            raise ValueError(f"shm: expected a size like '2Gi' or 'auto' ({exc})") from None
        if size > 0:
            return canonical_quantity(value.strip())
    raise ValueError(f"shm: expected a size above zero like '2Gi', or 'auto', got {shown(value)}")


def pop_device_class(data: dict[str, Any]) -> DeviceClass | None:
    """Take flyteidl2's `deviceClass` (or `device_class`) out of an `ExtendedResources` JSON object's
    `gpuAccelerator`, which flyteidl 1.x, whose messages we parse, does not have."""
    accelerator = data.get("gpuAccelerator", data.get("gpu_accelerator"))
    if not isinstance(accelerator, dict):
        return None
    given = [accelerator.pop(key) for key in ("deviceClass", "device_class") if key in accelerator]
    if not given:
        return None
    if len(given) > 1 or not isinstance(given[0], str):
        raise ValueError(f"gpuAccelerator.deviceClass: expected one device class name, got {shown(given)}")
    return DeviceClass.parse(given[0])
