"""Pod annotations → the IDL flytekit would send, or one `InvalidAnnotation` naming the annotation and its value.

Field names follow flytekit (`cpu`, `mem`, `gpu`, `ephemeral_storage`; `memory` and `ephemeral-storage` are
accepted too). Values come as flytekit `Resources` JSON (`{"cpu": ["1", "2"], "mem": "4Gi"}`) or in the compact
form `cpu=1:2,mem=4Gi` where `a:b` is (request, limit). They become flytekit's `Resources` and, through
`convert_resources_to_resource_model` and `construct_extended_resources`, flyteidl's `Resources` and
`ExtendedResources`: what the backend (`webhook.engine.pod`) reads, as flyteplugins reads a task's IDL.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from flyteidl.core import tasks_pb2
from google.protobuf import json_format
from google.protobuf.message import DecodeError

from webhook.engine.accelerators import BaseAccelerator, accelerator_from_idl, lookup_accelerator
from webhook.engine.catalog import DeviceClass, find_device
from webhook.engine.excerpt import SHOWN_CHARS, bounded, excerpt, shown, utf8_size
from webhook.engine.kubenames import is_dns_label, is_label_value
from webhook.engine.names import FLYTE2_SHARED_MEMORY_MOUNT_NAME, IDL_TO_K8S, RESOURCE_FIELDS
from webhook.engine.names import SHARED_MEMORY_MOUNT_NAME as SHM_MOUNT_NAME
from webhook.engine.names import SHARED_MEMORY_MOUNT_PATH as SHM_MOUNT_PATH
from webhook.engine.quantity import canonical_quantity, parse_quantity
from webhook.engine.resources import Resources, construct_extended_resources, convert_resources_to_resource_model
from webhook.mutation.decision import Denied
from webhook.mutation.flyte2 import Flyte2Extras, pop_device_class, split_flyte2_fields

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

_RESOURCE_NAME = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)

#: The largest annotation value read, in UTF-8 bytes: a Flyte task's longest real value (a `resources` JSON with
#: every field as a pair) is ~150 bytes. Larger values are refused before any parsing.
MAX_VALUE_BYTES = 4096
#: JSON values (`resources`, `extended-resources`) nest 2 deep; deeper ones are refused before they are parsed.
MAX_JSON_DEPTH = 8
_NAME_SHOWN = 320  # a Kubernetes annotation key is at most 253 + 1 + 63 characters


class InvalidAnnotation(Denied):
    """One annotation the webhook cannot apply; the message names it, its value, and what is wrong.

    The message is at most ~1 KiB: the name and the value are shown abbreviated when long (`excerpt.shown`),
    and the value not at all with `show_value=False` (a value refused for its size or type).
    """

    def __init__(self, annotation: str, value: str, reason: str, *, show_value: bool = True) -> None:
        self.annotation = annotation
        self.value = value
        if len(value) > SHOWN_CHARS:  # the engine's reasons quote what they were given: abbreviate it there too
            for whole in {value, value.strip()}:
                reason = reason.replace(repr(whole), shown(whole)).replace(whole, excerpt(whole))
        self.reason = reason
        name = excerpt(annotation, _NAME_SHOWN)
        where = f"annotation {name}={shown(value)}" if show_value else f"annotation {name}"
        super().__init__(bounded(f"{where}: {reason}"))


def shared_memory_message(
    size_limit: str | None = None, mount_name: str = SHM_MOUNT_NAME, mount_path: str = SHM_MOUNT_PATH
) -> tasks_pb2.SharedMemory:
    """The IDL `SharedMemory` a task sends: flytekit's `/dev/shm` mount by default, with or without a size."""
    memory = tasks_pb2.SharedMemory(mount_name=mount_name, mount_path=mount_path)
    if size_limit:
        memory.size_limit = size_limit
    return memory


def flytekit_shared_memory(size_limit: str | None = None) -> tasks_pb2.SharedMemory:
    """flytekit's `shared_memory=True` (no size) or `shared_memory="<size>"`, as `construct_extended_resources`
    encodes it."""
    extended = construct_extended_resources(shared_memory=size_limit or True)
    assert extended is not None  # shared memory was asked for
    return extended.shared_memory


@dataclass(frozen=True)
class ResourceRequest:
    """Everything our annotations ask of one pod, as the IDL flytekit sends: `resources` from
    `convert_resources_to_resource_model`, `extended` from `construct_extended_resources` (or the
    `extended-resources` annotation as it stands), `device_class` flyteidl2's field beside the 1.x accelerator.
    `accelerator` is `extended`'s accelerator decoded once (what policies, the GPU resource and the summary
    read). Never modified once built: cached per annotation set."""

    prefix: str
    given: Mapping[str, str]
    resources: tasks_pb2.Resources = field(default_factory=tasks_pb2.Resources)
    extended: tasks_pb2.ExtendedResources | None = None
    device_class: DeviceClass | None = None
    accelerator: BaseAccelerator | None = None
    accelerator_from: str | None = None
    shared_memory_from: str | None = None
    gpu_resource_key: str | None = None
    container: str | None = None

    @property
    def touches_resources(self) -> bool:
        return bool(self.resources.requests or self.resources.limits)

    @property
    def requests(self) -> dict[str, str]:
        """The IDL requests under Kubernetes names (`gpu`: the pod's GPU resource), canonical, zeros kept."""
        return _k8s_view(self.resources.requests)

    @property
    def limits(self) -> dict[str, str]:
        """The IDL limits, as `requests` shows the requests."""
        return _k8s_view(self.resources.limits)

    @property
    def gpu_accelerator(self) -> tasks_pb2.GPUAccelerator | None:
        extended = self.extended
        return extended.gpu_accelerator if extended is not None and extended.HasField("gpu_accelerator") else None

    @property
    def shared_memory(self) -> tasks_pb2.SharedMemory | None:
        extended = self.extended
        return extended.shared_memory if extended is not None and extended.HasField("shared_memory") else None

    def with_shared_memory(self, memory: tasks_pb2.SharedMemory) -> ResourceRequest:
        """This request with `memory` as its shared memory (a policy's default); this one is left as it is."""
        extended = tasks_pb2.ExtendedResources()
        if self.extended is not None:
            extended.CopyFrom(self.extended)
        extended.shared_memory.CopyFrom(memory)
        return replace(self, extended=extended)


def _k8s_view(entries: Any) -> dict[str, str]:
    return {IDL_TO_K8S[entry.name]: canonical_quantity(entry.value) for entry in entries}


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


def read_annotations(annotations: Mapping[str, object], prefix: str) -> ResourceRequest | None:
    """Parse our annotations; None when the pod carries none of them.

    Every value is checked to be a string of at most `MAX_VALUE_BYTES` before anything parses it.
    """
    given = our_keys(annotations, prefix)  # type: ignore[arg-type]  # the values are checked just below
    if not given:
        return None
    size = 0
    for name, value in given.items():
        if not isinstance(value, str):
            reason = f"the value must be a string, not {type(value).__name__}"
            raise InvalidAnnotation(prefix + name, "", reason, show_value=False)
        length = utf8_size(value)
        if length > MAX_VALUE_BYTES:
            reason = f"the value is {length} bytes; at most {MAX_VALUE_BYTES} bytes are read"
            raise InvalidAnnotation(prefix + name, value, reason, show_value=False)
        size += length
    if size > _CACHED_BYTES:
        return _read(dict(given), prefix)
    return _read_cached(tuple(sorted(given.items())), prefix)


# The pods of a map task or a burst of executions carry the same annotations: parse each distinct set once.
# Only successful parses are cached (an exception is not), and the result is never modified by its users.
# The cache is bounded in bytes: only sets of values totalling at most `_CACHED_BYTES` are kept (every real
# set is far smaller), and an entry holds those values plus a result of IDL messages holding quantities (each at
# most 64 characters) and short names, so 1024 entries stay under ~1024 × (4 KiB + ~2 KiB) ≈ 6 MiB.
_CACHED_BYTES = MAX_VALUE_BYTES


@functools.lru_cache(maxsize=1024)
def _read_cached(items: tuple[tuple[str, str], ...], prefix: str) -> ResourceRequest:
    return _read(dict(items), prefix)


def _read(given: dict[str, str], prefix: str) -> ResourceRequest:
    _check_keys(given, prefix)
    resources, extras = _read_resources(given, prefix)
    stated: tuple[BaseAccelerator | None, tasks_pb2.SharedMemory | None] = (None, None)
    if EXTENDED_RESOURCES in given:
        stated = _parse_extended(prefix + EXTENDED_RESOURCES, given[EXTENDED_RESOURCES])
    accelerator, accelerator_from, device_class = _read_accelerator(given, prefix, stated[0], extras)
    memory, memory_from = _read_shared_memory(given, prefix, stated[1], extras)
    extended = construct_extended_resources(accelerator=accelerator)
    if memory is not None:
        extended = extended or tasks_pb2.ExtendedResources()
        extended.shared_memory.CopyFrom(memory)
    return ResourceRequest(
        prefix=prefix,
        given=given,
        resources=resources,
        extended=extended,
        device_class=device_class,
        accelerator=None
        if extended is None or accelerator is None
        else accelerator_from_idl(extended.gpu_accelerator, device_class),
        accelerator_from=accelerator_from,
        shared_memory_from=memory_from,
        gpu_resource_key=_read_gpu_resource_key(given, prefix),
        container=_read_container(given, prefix),
    )


def _check_keys(given: Mapping[str, str], prefix: str) -> None:
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


def _read_resources(given: Mapping[str, str], prefix: str) -> tuple[tasks_pb2.Resources, Flyte2Extras]:
    """The resource annotations as flytekit's `Resources` for requests and for limits, through
    `convert_resources_to_resource_model`. A single value in `resources` sets both sides."""
    requests: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    extras = Flyte2Extras()
    if RESOURCES in given:
        parsed, extras = _parse_resources(prefix + RESOURCES, given[RESOURCES], pairs=True)
        for name, (request, limit) in parsed.items():
            requests[name], limits[name] = request, limit
    if REQUESTS in given:
        requests = {k: v for k, (v, _) in _parse_resources(prefix + REQUESTS, given[REQUESTS])[0].items()}
    if LIMITS in given:
        limits = {k: v for k, (v, _) in _parse_resources(prefix + LIMITS, given[LIMITS])[0].items()}
    return convert_resources_to_resource_model(Resources(**requests), Resources(**limits)), extras


def _read_accelerator(
    given: Mapping[str, str], prefix: str, stated: BaseAccelerator | None, extras: Flyte2Extras
) -> tuple[BaseAccelerator | None, str | None, DeviceClass | None]:
    """The accelerator, where it comes from, and its explicit device class. Flyte 2's `gpu` device in
    `resources` replaces extended-resources' accelerator; like a node-level override in Flyte, the
    `accelerator` annotation replaces either."""
    accelerator, source = stated, EXTENDED_RESOURCES if stated is not None else None
    if extras.accelerator is not None:
        accelerator, source = extras.accelerator, RESOURCES
    if ACCELERATOR in given:
        accelerator, source = _parse_accelerator(prefix + ACCELERATOR, given[ACCELERATOR]), ACCELERATOR
        if extras.accelerator is not None and _contradict(extras.accelerator, accelerator):
            raise InvalidAnnotation(
                prefix + ACCELERATOR,
                given[ACCELERATOR],
                f"contradicts the gpu device of {prefix}{RESOURCES} ({_device_text(extras.accelerator)} there, "
                f"{_device_text(accelerator)} here): a pod gets one device type; name it in one of the two",
            )
    device_class = accelerator.device_class if accelerator is not None and accelerator.has_device_class else None
    return accelerator, source, device_class


def _read_shared_memory(
    given: Mapping[str, str], prefix: str, stated: tasks_pb2.SharedMemory | None, extras: Flyte2Extras
) -> tuple[tasks_pb2.SharedMemory | None, str | None]:
    """The shared memory and where it comes from; `shared-memory: false` is a source that asks for none."""
    memory, source = stated, EXTENDED_RESOURCES if stated is not None else None
    if extras.shm is not None:  # Flyte 2's SDK names its volume otherwise
        memory = shared_memory_message(size_limit=extras.shm or None, mount_name=FLYTE2_SHARED_MEMORY_MOUNT_NAME)
        source = RESOURCES
    if SHARED_MEMORY in given:
        memory, source = _parse_shared_memory(prefix + SHARED_MEMORY, given[SHARED_MEMORY]), SHARED_MEMORY
    return memory, source


def _read_gpu_resource_key(given: Mapping[str, str], prefix: str) -> str | None:
    gpu_key = given.get(GPU_RESOURCE_KEY)
    if gpu_key is None:
        return None
    gpu_key = gpu_key.strip()
    if len(gpu_key) > 253 or not _RESOURCE_NAME.match(gpu_key):
        raise InvalidAnnotation(
            prefix + GPU_RESOURCE_KEY,
            given[GPU_RESOURCE_KEY],
            "not an extended resource name like 'nvidia.com/gpu' or 'amd.com/gpu'",
        )
    return gpu_key


def _read_container(given: Mapping[str, str], prefix: str) -> str | None:
    container = given.get(CONTAINER)
    if container is None:
        return None
    container = container.strip()
    if not is_dns_label(container):
        raise InvalidAnnotation(prefix + CONTAINER, given[CONTAINER], "not a valid container name")
    return container


def _contradict(a: BaseAccelerator, b: BaseAccelerator) -> bool:
    """Two device requests that cannot both hold: other devices (every spelling of one catalog device is that
    device), or both naming a partition (or `unpartitioned`) and not the same one."""
    first, second = find_device(a.device), find_device(b.device)
    same_device = first is second if first is not None else a.device.lower() == b.device.lower()
    if not same_device:
        return True
    a_partition = a.partition_size or a.is_unpartitioned
    b_partition = b.partition_size or b.is_unpartitioned
    return bool(a_partition and b_partition and a_partition != b_partition)


def _device_text(accelerator: BaseAccelerator) -> str:
    entry = find_device(accelerator.device)
    name = entry.name if entry is not None else accelerator.device
    if accelerator.partition_size:
        return f"{name} {accelerator.partition_size}"
    return f"{name} unpartitioned" if accelerator.is_unpartitioned else name


def _parse_resources(
    annotation: str, text: str, *, pairs: bool = False
) -> tuple[dict[str, tuple[Any, Any]], Flyte2Extras]:
    """flytekit's field → (request, limit) as given, a single value standing for both; and what Flyte 2 fields
    (`gpu` device, `shm`) ask beyond them."""
    stripped = text.strip()
    if not stripped:
        raise InvalidAnnotation(annotation, text, "empty value; expected e.g. 'cpu=1,mem=2Gi'")
    data = _json_object(annotation, text) if stripped.startswith("{") else _compact(annotation, text, pairs)
    if not data:
        raise InvalidAnnotation(annotation, text, "no resources given")
    try:
        data, extras = split_flyte2_fields(data, in_resources=pairs)
        resources = Resources.from_mapping(data)
    except (ValueError, TypeError, AssertionError) as exc:
        raise InvalidAnnotation(annotation, text, _reason(exc)) from None
    out: dict[str, tuple[Any, Any]] = {}
    for attr in RESOURCE_FIELDS:
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
        out[attr] = (request, limit)
    return out, extras


def _json_object(annotation: str, text: str) -> dict[str, Any]:
    _check_json_depth(annotation, text)
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
            if not pairs and not parts[0][:1].isalpha():  # `gpu=A100:2` is a Flyte 2 device, not a pair
                raise InvalidAnnotation(
                    annotation, text, f"{name}: a request:limit pair is only allowed in `resources`"
                )
            data[name] = parts
        else:
            data[name] = value
    return data


def _check_json_depth(annotation: str, text: str) -> None:
    """Refuse JSON nested deeper than `MAX_JSON_DEPTH`, in one pass that never recurses.

    `json.loads` (and protobuf's parser, built on it) recurse once per level, so a value like `[[[[…` raises
    RecursionError at ~1000 levels. Brackets inside strings do not count; what is not JSON is left to the parser.
    """
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise InvalidAnnotation(annotation, text, f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        elif char in "]}":
            depth -= 1


def _check_gpu_accelerator(annotation: str, text: str, accelerator: tasks_pb2.GPUAccelerator) -> None:
    """The device and partition become node label values (affinity, tolerations): refuse any other shape."""
    if accelerator.device and not is_label_value(accelerator.device):
        raise InvalidAnnotation(
            annotation,
            text,
            f"gpuAccelerator.device {shown(accelerator.device)} is not a label value "
            "(ASCII letters, digits, '-', '_', '.', at most 63 characters)",
        )
    if accelerator.WhichOneof("partition_size_value") == "partition_size" and not is_label_value(
        accelerator.partition_size
    ):
        raise InvalidAnnotation(
            annotation,
            text,
            f"gpuAccelerator.partitionSize {shown(accelerator.partition_size)} is not a label value "
            "such as '1g.5gb' or '2x4'",
        )


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


def _parse_shared_memory(annotation: str, text: str) -> tasks_pb2.SharedMemory | None:
    value = text.strip()
    if value.lower() == "true":
        return flytekit_shared_memory()
    if value.lower() == "false":
        return None
    try:
        parse_quantity(value)
    except ValueError as exc:
        raise InvalidAnnotation(annotation, text, f"expected true, false or a size like 2Gi ({_reason(exc)})") from None
    if parse_quantity(value) == 0:
        raise InvalidAnnotation(annotation, text, "a size must be above zero (use true for the default size)")
    return flytekit_shared_memory(canonical_quantity(value))


def _parse_extended(annotation: str, text: str) -> tuple[BaseAccelerator | None, tasks_pb2.SharedMemory | None]:
    """The `extended-resources` annotation: flyteidl's `ExtendedResources` JSON (plus flyteidl2's
    `deviceClass` in `gpuAccelerator`), its accelerator decoded and its shared memory size canonical."""
    message = tasks_pb2.ExtendedResources()
    _check_json_depth(annotation, text)
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError('expected a JSON object like {"gpuAccelerator": {"device": "nvidia-l4"}}')
        device_class = pop_device_class(data)
        json_format.ParseDict(data, message)
    except (json_format.ParseError, DecodeError, ValueError, AttributeError) as exc:
        raise InvalidAnnotation(annotation, text, f"not flyteidl ExtendedResources JSON: {_reason(exc)}") from None
    if message.HasField("gpu_accelerator"):
        _check_gpu_accelerator(annotation, text, message.gpu_accelerator)
    accelerator = (
        accelerator_from_idl(message.gpu_accelerator, device_class) if message.HasField("gpu_accelerator") else None
    )
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
        shared = shared_memory_message(size_limit=size, mount_name=shm.mount_name, mount_path=shm.mount_path)
    return accelerator, shared
