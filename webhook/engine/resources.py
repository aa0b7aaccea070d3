"""Task resources with the API of ``flytekit.core.resources`` (flytekit 1.16.31), validated like Kubernetes.

Same names, signatures and results as flytekit on every input Kubernetes accepts; the same exception types
where flytekit raises (``TypeError`` for unknown keywords, ``AssertionError`` for wrong types, ``ValueError``
for pairs that are not pairs). Stricter than flytekit where it accepts what Kubernetes rejects: every value
must be a non-negative Kubernetes quantity (no ``"abc"``, ``""``, ``-1``, ``"123Mb"``, booleans) and GPUs must
be whole; those raise ``InvalidResource`` (a ``ValueError``) naming the field and the value, e.g.
``Resources.cpu: 'abc' is not a valid Kubernetes quantity: ...``.

Addition for the webhook: ``Resources.from_mapping`` (annotation dicts). This is the
SDK side of the engine; what Flyte's backend does with the IDL (``ToK8sResourceList`` and the pod rules) is in
``webhook.engine.pod``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from flyteidl.core import tasks_pb2
from pydantic import BaseModel, ConfigDict, model_validator

from webhook.engine.accelerators import BaseAccelerator
from webhook.engine.errors import Refusal
from webhook.engine.names import (
    FIELD_TO_K8S,
    PRIMARY_CONTAINER_DEFAULT_NAME,
    RESOURCE_FIELDS,
    SHARED_MEMORY_MOUNT_NAME,
    SHARED_MEMORY_MOUNT_PATH,
)
from webhook.engine.quantity import InvalidQuantity, parse_quantity

if TYPE_CHECKING:
    from kubernetes.client import V1PodSpec

__all__ = [
    "PRIMARY_CONTAINER_DEFAULT_NAME",
    "SHARED_MEMORY_MOUNT_NAME",
    "SHARED_MEMORY_MOUNT_PATH",
    "InvalidResource",
    "MissingField",
    "ResourceSpec",
    "Resources",
    "construct_extended_resources",
    "convert_resources_to_resource_model",
    "pod_spec_from_resources",
]

Scalar: TypeAlias = str | int | float
CpuValue: TypeAlias = str | int | float | list[Scalar] | tuple[Scalar, ...]
OtherValue: TypeAlias = str | int | list[str | int] | tuple[str | int, ...]

_FIELDS: Final = RESOURCE_FIELDS
_ALLOWED: Final[dict[str, tuple[type, ...]]] = {
    "cpu": (str, int, float),
    "mem": (str, int),
    "gpu": (str, int),
    "ephemeral_storage": (str, int),
}
# Exact types that flytekit's (mashumaro's) from_dict keeps; anything else is turned into str(value).
_FROM_DICT_KEPT: Final[dict[str, tuple[type, ...]]] = {
    "cpu": (str, int, float, list, tuple),
    "mem": (str, int, list, tuple),
    "gpu": (str, int, list, tuple),
    "ephemeral_storage": (str, int),
}
_ALIASES: Final[dict[str, str]] = {
    "cpu": "cpu",
    "mem": "mem",
    "memory": "mem",
    "gpu": "gpu",
    "ephemeral_storage": "ephemeral_storage",
    "ephemeral-storage": "ephemeral_storage",
}
_IDL_NAMES: Final = (
    ("cpu", tasks_pb2.Resources.CPU),
    ("mem", tasks_pb2.Resources.MEMORY),
    ("gpu", tasks_pb2.Resources.GPU),
    ("ephemeral_storage", tasks_pb2.Resources.EPHEMERAL_STORAGE),
)


class InvalidResource(Refusal):
    """A resource value Kubernetes would reject (flytekit accepts it); ``field`` and ``value`` say which."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        self.field = field
        self.value = value
        super().__init__(f"{field}: {reason}")


class MissingField(ValueError):
    """A required key is missing in ``from_dict`` (flytekit raises mashumaro's ``MissingField`` there)."""

    def __init__(self, field: str, field_type: str, holder: str) -> None:
        self.field_name = field
        super().__init__(f'Field "{field}" of type {field_type} is missing in {holder} instance')


def _type_label(field: str) -> str:
    return ", ".join(t.__name__ for t in _ALLOWED[field])


def _check_field(field: str, value: object) -> None:
    """flytekit's ``__post_init__`` checks for one field, then the Kubernetes checks."""
    if value is None:
        return
    allowed = _ALLOWED[field]
    items: tuple[object, ...] = tuple(value) if isinstance(value, list | tuple) else (value,)
    if not all(isinstance(item, allowed) for item in items):
        label = _type_label(field)
        raise AssertionError(f"{value} should be of type {label} or a list/tuple of {label}")
    if isinstance(value, list | tuple) and len(items) != 2:
        raise ValueError(f"{value} must be of length 2")
    for item in items:
        _check_quantity(f"Resources.{field}", item, whole=field == "gpu")


def _check_quantity(field: str, value: object, *, whole: bool = False) -> None:
    try:
        amount = parse_quantity(value)  # type: ignore[arg-type]  # InvalidQuantity for any other type
    except InvalidQuantity as exc:
        raise InvalidResource(field, value, str(exc)) from None
    if whole and amount != amount.to_integral_value():
        raise InvalidResource(field, value, f"{value!r} is not a whole number of GPUs")


class Resources(BaseModel):
    """flytekit's ``Resources``: cpu, mem, gpu, ephemeral_storage, each a value or a (request, limit) pair.

    Positional order is cpu, mem, gpu, ephemeral_storage. Unknown keywords raise ``TypeError``; a wrong type
    ``AssertionError``; a list/tuple that is not a pair ``ValueError``; a value Kubernetes rejects
    ``InvalidResource``. Equality is field-wise (``Resources(cpu=1) != Resources(cpu="1")``); unhashable.
    """

    model_config = ConfigDict(strict=True, validate_assignment=True, extra="forbid")

    cpu: CpuValue | None = None
    mem: OtherValue | None = None
    gpu: OtherValue | None = None
    ephemeral_storage: OtherValue | None = None

    def __init__(
        self,
        cpu: CpuValue | None = None,
        mem: OtherValue | None = None,
        gpu: OtherValue | None = None,
        ephemeral_storage: OtherValue | None = None,
    ) -> None:
        for field, value in zip(_FIELDS, (cpu, mem, gpu, ephemeral_storage), strict=True):
            _check_field(field, value)
        super().__init__(cpu=cpu, mem=mem, gpu=gpu, ephemeral_storage=ephemeral_storage)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _FIELDS:
            _check_field(name, value)  # before assigning, so a rejected value never lands
        super().__setattr__(name, value)

    @model_validator(mode="after")
    def _validate(self) -> Resources:
        # For model_validate(); __init__ and __setattr__ check first (raising flytekit's exception types).
        for field in _FIELDS:
            _check_field(field, getattr(self, field))
        return self

    # --- flytekit serialization (mashumaro shapes) ---

    def to_dict(self) -> dict[str, Any]:
        """All four keys, None kept, tuples as lists, raw value types kept."""
        return {field: _jsonable(getattr(self, field)) for field in _FIELDS}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Resources:
        """flytekit's ``from_dict``: unknown keys ignored; a value whose type the field's type hint lacks is
        turned into ``str(value)`` (``{"mem": 1.5}`` -> ``mem="1.5"``), then the usual validation runs."""
        values: dict[str, Any] = {}
        for field in _FIELDS:
            value = data.get(field)
            if value is not None and type(value) not in _FROM_DICT_KEPT[field]:
                value = str(value)
            values[field] = value
        return cls(**values)

    @classmethod
    def from_json(cls, text: str | bytes) -> Resources:
        return cls.from_dict(json.loads(text))

    # --- webhook additions ---

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, field_aliases: bool = True) -> Resources:
        """Resources from an annotation-style mapping; raises only ``ValueError`` (incl. ``InvalidResource``).

        Keys: ``cpu``, ``mem``, ``gpu``, ``ephemeral_storage`` and, with ``field_aliases``, the Kubernetes
        spellings ``memory`` and ``ephemeral-storage``. Values: str/int/float (float for cpu only) or a
        2-item list/tuple ``[request, limit]``. An unknown key, or two keys for one field, is an error.
        """
        names = _ALIASES if field_aliases else {field: field for field in _FIELDS}
        values: dict[str, Any] = {}
        for key, value in data.items():
            field = names.get(key) if isinstance(key, str) else None
            if field is None:
                raise ValueError(f"Resources: unknown key {key!r}; valid keys: {', '.join(names)}")
            if field in values:
                raise ValueError(f"Resources: {key!r} sets {field}, which is already set")
            values[field] = value
        for field, value in values.items():
            try:
                _check_field(field, value)
            except InvalidResource:
                raise
            except (AssertionError, ValueError) as exc:  # flytekit's type and pair-length errors
                raise InvalidResource(f"Resources.{field}", value, str(exc)) from None
        return cls(**values)


class ResourceSpec(BaseModel):
    """flytekit's ``ResourceSpec(requests, limits)``; both are required."""

    model_config = ConfigDict(strict=True, validate_assignment=True, extra="forbid")

    requests: Resources
    limits: Resources

    def __init__(self, requests: Resources, limits: Resources) -> None:
        super().__init__(requests=requests, limits=limits)

    @classmethod
    def from_multiple_resource(cls, resources: Resources) -> ResourceSpec:
        """Split pairs into request and limit; a single value becomes a request only (limits stay None)."""
        requests: dict[str, Any] = {}
        limits: dict[str, Any] = {}
        for field in _FIELDS:
            value = getattr(resources, field)
            if value is None:
                continue
            if isinstance(value, list | tuple):
                requests[field], limits[field] = value
            else:
                requests[field] = value
        return cls(requests=Resources(**requests), limits=Resources(**limits))

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests.to_dict(), "limits": self.limits.to_dict()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResourceSpec:
        parts: dict[str, Resources] = {}
        for key in ("requests", "limits"):
            if key not in data:
                raise MissingField(key, "Resources", "ResourceSpec")
            parts[key] = Resources.from_dict(data[key])
        return cls(**parts)

    @classmethod
    def from_json(cls, text: str | bytes) -> ResourceSpec:
        return cls.from_dict(json.loads(text))


def _jsonable(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def _singular(value: object) -> object:
    if isinstance(value, list | tuple):
        raise ValueError(f"{value} can not be a list or tuple")
    return value


def _entries(resources: Resources | None) -> list[tasks_pb2.Resources.ResourceEntry]:
    if resources is None:
        return []
    entries = []
    for field, name in _IDL_NAMES:
        value = getattr(resources, field)
        if value is not None:
            entries.append(tasks_pb2.Resources.ResourceEntry(name=name, value=str(_singular(value))))
    return entries


def convert_resources_to_resource_model(
    requests: Resources | None = None, limits: Resources | None = None
) -> tasks_pb2.Resources:
    """flytekit's override encoding: entries in order CPU, MEMORY, GPU, EPHEMERAL_STORAGE; values ``str(v)``
    (``0.5`` -> ``"0.5"``); None fields skipped; a pair raises ``ValueError("<v> can not be a list or tuple")``.
    """
    return tasks_pb2.Resources(requests=_entries(requests), limits=_entries(limits))


def construct_extended_resources(
    *, accelerator: BaseAccelerator | None = None, shared_memory: bool | str | None = None
) -> tasks_pb2.ExtendedResources | None:
    """flytekit's ``ExtendedResources``, or None when there is neither an accelerator nor shared memory.

    ``shared_memory=True`` or ``""``: a ``/dev/shm`` mount without size; a str: with that ``size_limit`` (kept
    as written), which must be a Kubernetes quantity (stricter than flytekit). ``False``, None and non-str
    values (``1024``) mean no shared memory, as in flytekit.
    """
    parts: dict[str, Any] = {}
    if accelerator is not None:
        parts["gpu_accelerator"] = accelerator.to_flyte_idl()
    if shared_memory is True or isinstance(shared_memory, str):
        memory = tasks_pb2.SharedMemory(mount_name=SHARED_MEMORY_MOUNT_NAME, mount_path=SHARED_MEMORY_MOUNT_PATH)
        if isinstance(shared_memory, str) and shared_memory:
            _check_quantity("shared_memory", shared_memory)
            memory.size_limit = shared_memory
        parts["shared_memory"] = memory
    return tasks_pb2.ExtendedResources(**parts) if parts else None


def _k8s_names(gpu_key: str) -> dict[str, str]:
    return {**FIELD_TO_K8S, "gpu": gpu_key}


def _k8s_map(resources: Resources | None, gpu_key: str) -> dict[str, str] | None:
    if resources is None:
        return None
    names = _k8s_names(gpu_key)
    return {
        names[field]: str(_singular(getattr(resources, field)))
        for field in _FIELDS
        if getattr(resources, field) is not None
    }


def pod_spec_from_resources(
    primary_container_name: str | None = None,
    requests: Resources | None = None,
    limits: Resources | None = None,
    k8s_gpu_resource_key: str = "nvidia.com/gpu",
) -> V1PodSpec:
    """flytekit's ``pod_spec_from_resources``: one container with the resources and nothing else.

    Keys cpu, memory, ``k8s_gpu_resource_key``, ephemeral-storage; values ``str(v)`` (the kubernetes client
    37 needs strings). Whole-dict fallback: ``requests = requests or limits`` then ``limits = limits or
    requests`` (no per-key fill). A pair raises ``ValueError``; a None name fails in the client (name required).
    """
    # Imported here: the kubernetes client takes a second to import, which every CLI call would pay.
    from kubernetes.client import V1Container, V1PodSpec, V1ResourceRequirements

    request_map = _k8s_map(requests, k8s_gpu_resource_key)
    limit_map = _k8s_map(limits, k8s_gpu_resource_key)
    request_map = request_map or limit_map
    limit_map = limit_map or request_map
    return V1PodSpec(
        containers=[
            V1Container(
                name=primary_container_name,  # None fails in the client, like flytekit
                resources=V1ResourceRequirements(
                    requests=dict(request_map) if request_map is not None else None,
                    limits=dict(limit_map) if limit_map is not None else None,
                ),
            )
        ]
    )
