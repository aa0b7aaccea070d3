"""Pod annotations → a typed resource request, or one `InvalidAnnotation` naming the annotation and its value.

Field names follow flytekit (`cpu`, `mem`, `gpu`, `ephemeral_storage`; `memory` and `ephemeral-storage` are
accepted too). Values come as flytekit `Resources` JSON (`{"cpu": ["1", "2"], "mem": "4Gi"}`) or in the compact
form `cpu=1:2,mem=4Gi` where `a:b` is (request, limit).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flyteidl.core import tasks_pb2
from google.protobuf import json_format
from google.protobuf.message import DecodeError

from webhook.engine.accelerators import BaseAccelerator, accelerator_from_idl, lookup_accelerator
from webhook.engine.pod import SHM_MOUNT_NAME, SHM_MOUNT_PATH
from webhook.engine.quantity import canonical_quantity, parse_quantity
from webhook.engine.resources import Resources

RESOURCES = "resources"
REQUESTS = "requests"
LIMITS = "limits"
ACCELERATOR = "accelerator"
SHARED_MEMORY = "shared-memory"
EXTENDED_RESOURCES = "extended-resources"
GPU_RESOURCE_KEY = "gpu-resource-key"
CONTAINER = "container"
APPLIED = "applied"

INPUT_KEYS = (
    RESOURCES,
    REQUESTS,
    LIMITS,
    ACCELERATOR,
    SHARED_MEMORY,
    EXTENDED_RESOURCES,
    GPU_RESOURCE_KEY,
    CONTAINER,
)
FLYTE_PRIMARY_CONTAINER_ANNOTATION = "primary_container_name"

_K8S_NAMES = {"cpu": "cpu", "mem": "memory", "gpu": "gpu", "ephemeral_storage": "ephemeral-storage"}
_RESOURCE_NAME = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_CONTAINER_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class InvalidAnnotation(ValueError):
    """One annotation the webhook cannot apply; the message names it, its value, and what is wrong."""

    def __init__(self, annotation: str, value: str, reason: str) -> None:
        self.annotation = annotation
        self.value = value
        self.reason = reason
        shown = value if len(value) <= 200 else value[:200] + "..."
        super().__init__(f"annotation {annotation}={shown!r}: {reason}")


@dataclass(frozen=True)
class SharedMemory:
    size_limit: str | None = None
    mount_name: str = SHM_MOUNT_NAME
    mount_path: str = SHM_MOUNT_PATH


@dataclass(frozen=True)
class ResourceRequest:
    """Everything our annotations ask of one pod; Kubernetes resource names, `gpu` for the pod's GPU key."""

    prefix: str
    given: Mapping[str, str]
    requests: Mapping[str, str] = field(default_factory=dict)
    limits: Mapping[str, str] = field(default_factory=dict)
    accelerator: BaseAccelerator | None = None
    accelerator_from: str | None = None
    shared_memory: SharedMemory | None = None
    shared_memory_from: str | None = None
    gpu_resource_key: str | None = None
    container: str | None = None

    @property
    def touches_resources(self) -> bool:
        return bool(self.requests or self.limits)


def our_keys(annotations: Mapping[str, str] | None, prefix: str) -> dict[str, str]:
    """Our input annotations, by short name; the `applied` summary we write ourselves is not input."""
    if not annotations:
        return {}
    found = {}
    for key, value in annotations.items():
        if key.startswith(prefix):
            name = key[len(prefix) :]
            if name != APPLIED:
                found[name] = value
    return found


def read_annotations(annotations: Mapping[str, str], prefix: str) -> ResourceRequest | None:
    """Parse our annotations; None when the pod carries none of them."""
    given = our_keys(annotations, prefix)
    if not given:
        return None
    return _read_cached(tuple(sorted(given.items())), prefix)


# The pods of a map task or a burst of executions carry the same annotations: parse each distinct set once.
# Only successful parses are cached (an exception is not), and the result is never modified by its users.
@functools.lru_cache(maxsize=1024)
def _read_cached(items: tuple[tuple[str, str], ...], prefix: str) -> ResourceRequest:
    return _read(dict(items), prefix)


def _read(given: dict[str, str], prefix: str) -> ResourceRequest:
    for name, value in given.items():
        if name not in INPUT_KEYS:
            valid = ", ".join(prefix + k for k in INPUT_KEYS)
            raise InvalidAnnotation(prefix + name, value, f"unknown annotation (valid: {valid})")
    if RESOURCES in given and (REQUESTS in given or LIMITS in given):
        raise InvalidAnnotation(
            prefix + RESOURCES,
            given[RESOURCES],
            f"`resources` can not be used together with `{prefix}requests` or `{prefix}limits`; "
            "please only set `resources`",
        )

    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if RESOURCES in given:
        for name, (request, limit) in _parse_resources(prefix + RESOURCES, given[RESOURCES], pairs=True).items():
            requests[name] = request
            limits[name] = limit
    if REQUESTS in given:
        requests = {k: v for k, (v, _) in _parse_resources(prefix + REQUESTS, given[REQUESTS]).items()}
    if LIMITS in given:
        limits = {k: v for k, (v, _) in _parse_resources(prefix + LIMITS, given[LIMITS]).items()}

    accelerator, accelerator_from, shared_memory, shared_memory_from = None, None, None, None
    if EXTENDED_RESOURCES in given:
        accelerator, shared_memory = _parse_extended(prefix + EXTENDED_RESOURCES, given[EXTENDED_RESOURCES])
        accelerator_from = shared_memory_from = EXTENDED_RESOURCES
        if accelerator is None:
            accelerator_from = None
        if shared_memory is None:
            shared_memory_from = None
    # Like a node-level override in Flyte, a specific annotation replaces that part of extended-resources.
    if ACCELERATOR in given:
        accelerator, accelerator_from = (
            _parse_accelerator(prefix + ACCELERATOR, given[ACCELERATOR]),
            ACCELERATOR,
        )
    if SHARED_MEMORY in given:
        shared_memory = _parse_shared_memory(prefix + SHARED_MEMORY, given[SHARED_MEMORY])
        shared_memory_from = SHARED_MEMORY

    gpu_key = given.get(GPU_RESOURCE_KEY)
    if gpu_key is not None:
        gpu_key = gpu_key.strip()
        if not _RESOURCE_NAME.match(gpu_key) or len(gpu_key) > 253:
            raise InvalidAnnotation(
                prefix + GPU_RESOURCE_KEY,
                given[GPU_RESOURCE_KEY],
                "not an extended resource name like 'nvidia.com/gpu' or 'amd.com/gpu'",
            )
    container = given.get(CONTAINER)
    if container is not None:
        container = container.strip()
        if not _CONTAINER_NAME.match(container) or len(container) > 63:
            raise InvalidAnnotation(prefix + CONTAINER, given[CONTAINER], "not a valid container name")

    return ResourceRequest(
        prefix=prefix,
        given=given,
        requests=requests,
        limits=limits,
        accelerator=accelerator,
        accelerator_from=accelerator_from,
        shared_memory=shared_memory,
        shared_memory_from=shared_memory_from,
        gpu_resource_key=gpu_key,
        container=container,
    )


def _parse_resources(annotation: str, text: str, *, pairs: bool = False) -> dict[str, tuple[str, str]]:
    """Kubernetes name → (request, limit) canonical quantities; a single value stands for both."""
    stripped = text.strip()
    if not stripped:
        raise InvalidAnnotation(annotation, text, "empty value; expected e.g. 'cpu=1,mem=2Gi'")
    data = _json_object(annotation, text) if stripped.startswith("{") else _compact(annotation, text, pairs)
    if not data:
        raise InvalidAnnotation(annotation, text, "no resources given")
    try:
        resources = Resources.from_mapping(data)
    except (ValueError, TypeError, AssertionError) as exc:
        raise InvalidAnnotation(annotation, text, _reason(exc)) from None
    out: dict[str, tuple[str, str]] = {}
    for attr, k8s_name in _K8S_NAMES.items():
        value = getattr(resources, attr)
        if value is None:
            continue
        if isinstance(value, list | tuple):
            if not pairs:
                raise InvalidAnnotation(
                    annotation, text, f"{attr}: a (request, limit) pair is only allowed in `resources`"
                )
            request, limit = value
        else:
            request = limit = value
        out[k8s_name] = (canonical_quantity(request), canonical_quantity(limit))
    return out


def _json_object(annotation: str, text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidAnnotation(annotation, text, f"invalid JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(data, dict):
        raise InvalidAnnotation(annotation, text, 'expected a JSON object like {"cpu": "1"}')
    return {k: v for k, v in data.items() if v is not None}


def _compact(annotation: str, text: str, pairs: bool) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            raise InvalidAnnotation(annotation, text, f"{item!r} is not of the form name=value")
        if name in data:
            raise InvalidAnnotation(annotation, text, f"{name} given twice")
        if ":" in value:
            parts = [p.strip() for p in value.split(":")]
            if len(parts) != 2 or not all(parts):
                raise InvalidAnnotation(annotation, text, f"{name}: {value!r} must be request:limit")
            if not pairs:
                raise InvalidAnnotation(
                    annotation, text, f"{name}: a request:limit pair is only allowed in `resources`"
                )
            data[name] = parts
        else:
            data[name] = value
    return data


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return (
        text.splitlines()[0]
        if "validation error" not in text
        else "; ".join(
            line.strip() for line in text.splitlines()[1:] if line.strip() and not line.strip().startswith("For ")
        )
    )


def _parse_accelerator(annotation: str, text: str) -> BaseAccelerator:
    try:
        return lookup_accelerator(text.strip())
    except (ValueError, AttributeError) as exc:
        raise InvalidAnnotation(annotation, text, _reason(exc)) from None


def _parse_shared_memory(annotation: str, text: str) -> SharedMemory | None:
    value = text.strip()
    if value.lower() == "true":
        return SharedMemory()
    if value.lower() == "false":
        return None
    try:
        parse_quantity(value)
    except ValueError as exc:
        raise InvalidAnnotation(annotation, text, f"expected true, false or a size like 2Gi ({_reason(exc)})") from None
    if parse_quantity(value) == 0:
        raise InvalidAnnotation(annotation, text, "a size must be above zero (use true for the default size)")
    return SharedMemory(size_limit=canonical_quantity(value))


def _parse_extended(annotation: str, text: str) -> tuple[BaseAccelerator | None, SharedMemory | None]:
    message = tasks_pb2.ExtendedResources()
    try:
        json_format.Parse(text, message)
    except (json_format.ParseError, DecodeError) as exc:
        raise InvalidAnnotation(annotation, text, f"not flyteidl ExtendedResources JSON: {exc}") from None
    accelerator = accelerator_from_idl(message.gpu_accelerator) if message.HasField("gpu_accelerator") else None
    shared = None
    if message.HasField("shared_memory"):
        shm = message.shared_memory
        if not shm.mount_name:
            raise InvalidAnnotation(annotation, text, "sharedMemory: mount name is not set")
        if not shm.mount_path:
            raise InvalidAnnotation(annotation, text, "sharedMemory: mount path is not set")
        size = None
        if shm.size_limit:
            try:
                size = canonical_quantity(shm.size_limit)
            except ValueError as exc:
                raise InvalidAnnotation(
                    annotation, text, f"sharedMemory: Unable to parse size limit: {_reason(exc)}"
                ) from None
        shared = SharedMemory(size_limit=size, mount_name=shm.mount_name, mount_path=shm.mount_path)
    return accelerator, shared
