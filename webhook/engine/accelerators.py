"""Accelerators: the one model the flytekit API, the annotations and the pod semantics share.

The names and IDL encoding are those of ``flytekit.extras.accelerators`` (flytekit 1.16.31):
``GPUAccelerator(device)`` is any device; ``MultiInstanceGPUAccelerator`` subclasses carry a class-level
``device`` and can be partitioned (MIG profile such as ``1g.5gb``, or a TPU slice topology such as ``2x4``):
``A100.partition_1g_5gb``, ``A100.partitioned("3g.20gb")``, ``A100.unpartitioned``. ``to_flyte_idl()`` gives
the ``flyteidl.core.tasks_pb2.GPUAccelerator`` flytekit would send; the protobuf is only an encoding, read back
by ``accelerator_from_idl``.

Beyond flytekit: every accelerator exposes ``device``, ``partition_size`` (``str | None``),
``is_unpartitioned`` (``bool``; the name ``unpartitioned`` is flytekit's copy-making property), ``device_class``
(flyteidl2's, given or found in the catalog: a TPU device is ``GOOGLE_TPU``) and ``mig_profile``.
``Accelerator(device, partition_size=..., unpartitioned=..., device_class=...)`` builds any of them, and
``lookup_accelerator`` reads annotation text (flytekit names, Flyte 2 type names, device strings).
"""

from __future__ import annotations

import abc
import copy
import re
from functools import lru_cache
from typing import Final, Self, cast

from flyteidl.core import tasks_pb2

from webhook.engine.catalog import CATALOG, DeviceClass, DeviceType, by_name, find_device
from webhook.engine.excerpt import did_you_mean
from webhook.engine.kubenames import is_label_value

__all__ = [
    "A10G",
    "A100",
    "A100_80GB",
    "H100",
    "H200",
    "K80",
    "L4",
    "L4_VWS",
    "L40S",
    "M60",
    "P4",
    "P100",
    "RTX_PRO_6000",
    "T4",
    "V5E",
    "V5P",
    "V6E",
    "V100",
    "Accelerator",
    "BaseAccelerator",
    "GPUAccelerator",
    "MultiInstanceGPUAccelerator",
    "PartitionedConstant",
    "accelerator_from_idl",
    "known_accelerators",
    "lookup_accelerator",
    "partition_attribute",
]


class BaseAccelerator(abc.ABC):
    """An accelerator a task asks for; encodes itself as an IDL ``GPUAccelerator``."""

    @abc.abstractmethod
    def to_flyte_idl(self) -> tasks_pb2.GPUAccelerator:
        """The IDL message flytekit puts into ``ExtendedResources.gpu_accelerator``."""

    @property
    def device(self) -> str:
        """The device name (node label value), e.g. ``nvidia-tesla-a100``."""
        raise AttributeError(f"{type(self).__name__} has no device")

    @property
    def partition_size(self) -> str | None:
        """The requested partition (MIG profile or TPU topology), or None."""
        return None

    @property
    def is_unpartitioned(self) -> bool:
        """Whether a whole, unpartitioned device was requested."""
        return False

    _device_class: DeviceClass | None = None

    @property
    def device_class(self) -> DeviceClass:
        """The device class: as given, else the catalog's for this device, else NVIDIA_GPU (the IDL default)."""
        if self._device_class is not None:
            return self._device_class
        entry = find_device(getattr(self, "device", "") or "")
        return entry.device_class if entry is not None else DeviceClass.NVIDIA_GPU

    @property
    def has_device_class(self) -> bool:
        """Whether the class was given (flyteidl2's field), not found in the catalog or defaulted."""
        return self._device_class is not None

    @property
    def mig_profile(self) -> str | None:
        """The MIG profile (``1g.5gb``) when the partition is a GPU slice, not a TPU topology."""
        size = self.partition_size
        if size and self.device_class is DeviceClass.NVIDIA_GPU and _MIG_PROFILE.fullmatch(size):
            return size
        return None

    def _key(self) -> tuple[object, ...]:
        return (getattr(self, "device", None), self.partition_size, self.is_unpartitioned, self.device_class)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BaseAccelerator):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        extra = f", partition_size={self.partition_size!r}" if self.partition_size is not None else ""
        extra += ", unpartitioned=True" if self.is_unpartitioned else ""
        extra += f", device_class={self._device_class.value!r}" if self._device_class is not None else ""
        return f"{type(self).__name__}(device={getattr(self, 'device', None)!r}{extra})"


class GPUAccelerator(BaseAccelerator):
    """Any accelerator identified by its device name: ``GPUAccelerator("nvidia-tesla-t4")``."""

    def __init__(self, device: str) -> None:
        self._device = device

    @property
    def device(self) -> str:
        return self._device

    def to_flyte_idl(self) -> tasks_pb2.GPUAccelerator:
        return tasks_pb2.GPUAccelerator(device=self._device)


class MultiInstanceGPUAccelerator(BaseAccelerator):
    """A partitionable device. Subclasses set the class attribute ``device``; the bare class has none (so its
    ``to_flyte_idl()`` raises ``AttributeError``, like flytekit's)."""

    _partition_size: str | None = None
    _unpartitioned: bool = False

    @classmethod
    def partitioned(cls, partition_size: str) -> Self:
        """This device, restricted to partitions of ``partition_size`` (``A100.partitioned("1g.5gb")``)."""
        instance = cls()
        instance._partition_size = partition_size
        return instance

    @property
    def unpartitioned(self) -> Self:
        """A copy of this accelerator asking for a whole, unpartitioned device (flytekit's property)."""
        instance = copy.deepcopy(self)
        instance._unpartitioned = True
        return instance

    @property
    def partition_size(self) -> str | None:
        # What to_flyte_idl() sends: "unpartitioned" wins over a partition (the IDL field is a oneof).
        return None if self._unpartitioned else self._partition_size

    @property
    def is_unpartitioned(self) -> bool:
        return self._unpartitioned

    def to_flyte_idl(self) -> tasks_pb2.GPUAccelerator:
        message = tasks_pb2.GPUAccelerator(device=self.device)
        if self._unpartitioned:
            message.unpartitioned = True
        elif self._partition_size is not None:
            message.partition_size = self._partition_size
        return message


class Accelerator(MultiInstanceGPUAccelerator):
    """Any accelerator, built from its parts: what annotations, Flyte 2 devices and IDL messages become.

    ``Accelerator("nvidia-tesla-a100", partition_size="1g.5gb")`` equals ``A100.partition_1g_5gb``;
    ``device_class`` defaults to the catalog's class for the device.
    """

    def __init__(
        self,
        device: str = "",
        partition_size: str | None = None,
        *,
        unpartitioned: bool = False,
        device_class: DeviceClass | str | None = None,
    ) -> None:
        self._device = device
        self._partition_size = partition_size
        self._unpartitioned = unpartitioned
        self._device_class = DeviceClass.parse(device_class) if isinstance(device_class, str) else device_class

    @property
    def device(self) -> str:
        return self._device


# --- constants ----------------------------------------------------------------------------------------------
# flytekit's constants, built from the catalog (its `flytekit` names): a plain device is a `GPUAccelerator`; one
# flytekit partitions has a class of its own whose attributes are the catalog's partitions, named as flytekit
# names them (`A100.partition_1g_5gb`, `V5E.slice_2x4`).


class PartitionedConstant(MultiInstanceGPUAccelerator):
    """The type of flytekit's partitionable constants (``A100``, ``V5E``): each named partition is a class
    attribute (``partition_<profile>`` or ``slice_<topology>``)."""

    def __getattr__(self, name: str) -> MultiInstanceGPUAccelerator:  # only for attributes not found: the typing
        raise AttributeError(f"{type(self).__name__.lstrip('_')} has no attribute {name!r}")


def partition_attribute(entry: DeviceType, size: str) -> str:
    """flytekit's attribute name for a partition: ``partition_1g_5gb`` (a GPU), ``slice_2x4`` (a TPU)."""
    prefix = "slice_" if entry.device_class is DeviceClass.GOOGLE_TPU else "partition_"
    return prefix + size.replace(".", "_")


def _constant(entry: DeviceType, name: str) -> BaseAccelerator:
    if not entry.flytekit_partitions:
        return GPUAccelerator(entry.device)
    base: type[PartitionedConstant] = type(f"_{name}Base", (PartitionedConstant,), {"device": entry.device})
    named = {partition_attribute(entry, size): base.partitioned(size) for size in entry.partitions}
    constant = type(f"_{name}", (base,), named)()
    assert isinstance(constant, PartitionedConstant)
    return constant


_CONSTANTS: Final[dict[str, BaseAccelerator]] = {
    entry.flytekit: _constant(entry, entry.flytekit) for entry in CATALOG if entry.flytekit is not None
}
A10G: Final = _CONSTANTS["A10G"]
L4: Final = _CONSTANTS["L4"]
L4_VWS: Final = _CONSTANTS["L4_VWS"]
L40S: Final = _CONSTANTS["L40S"]
K80: Final = _CONSTANTS["K80"]
M60: Final = _CONSTANTS["M60"]
P4: Final = _CONSTANTS["P4"]
P100: Final = _CONSTANTS["P100"]
T4: Final = _CONSTANTS["T4"]
V100: Final = _CONSTANTS["V100"]
H100: Final = _CONSTANTS["H100"]
H200: Final = _CONSTANTS["H200"]
RTX_PRO_6000: Final = _CONSTANTS["RTX_PRO_6000"]
A100: Final = cast(PartitionedConstant, _CONSTANTS["A100"])
A100_80GB: Final = cast(PartitionedConstant, _CONSTANTS["A100_80GB"])
V5E: Final = cast(PartitionedConstant, _CONSTANTS["V5E"])
V5P: Final = cast(PartitionedConstant, _CONSTANTS["V5P"])
V6E: Final = cast(PartitionedConstant, _CONSTANTS["V6E"])


def _partitions(constant: BaseAccelerator) -> dict[str, MultiInstanceGPUAccelerator]:
    """The named partitions of a constant (``partition_1g_5gb``, ``slice_2x4``), in definition order."""
    return {
        name: value
        for name, value in vars(type(constant)).items()
        if name.startswith(("partition_", "slice_")) and isinstance(value, MultiInstanceGPUAccelerator)
    }


def known_accelerators() -> dict[str, BaseAccelerator]:
    """Every name ``lookup_accelerator`` accepts as a constant, e.g. ``A100``, ``A100.partition_1g_5gb``,
    ``A100.unpartitioned``, ``V5E.slice_2x4`` (``<name>.<partition>.unpartitioned`` is accepted too)."""
    names: dict[str, BaseAccelerator] = {}
    for name, constant in _CONSTANTS.items():
        names[name] = constant
        if isinstance(constant, MultiInstanceGPUAccelerator):
            names[f"{name}.unpartitioned"] = constant.unpartitioned
            for attr, partition in _partitions(constant).items():
                names[f"{name}.{attr}"] = partition
    return names


# --- lookup -------------------------------------------------------------------------------------------------

# Looks like a flytekit constant path (upper-case name, optional attributes), not a device string.
_CONSTANT_LIKE: Final = re.compile(r"[A-Z][A-Z0-9_]*(\.[A-Za-z0-9_]+)*")
_MIG_PROFILE: Final = re.compile(r"[0-9]{1,2}g\.[0-9]{1,4}gb")


def _known(device: str) -> BaseAccelerator | None:
    """The accelerator a catalog device stands for, under any of its spellings (``nvidia-tesla-h100`` is
    flytekit's ``H100``); its flytekit constant where there is one."""
    entry = find_device(device)
    if entry is None:
        return None
    if entry.flytekit is not None:
        return _CONSTANTS[entry.flytekit]
    return Accelerator(entry.device, device_class=entry.device_class)


def lookup_accelerator(text: str) -> BaseAccelerator:
    """An accelerator from annotation text.

    Accepted forms, tried in this order:

    * a flytekit constant path, case-sensitive: ``T4``, ``A100``, ``A100.unpartitioned``,
      ``A100.partition_1g_5gb``, ``A100.partition_1g_5gb.unpartitioned``, ``V5E.slice_2x4``;
    * a device string, optionally with a partition: ``nvidia-tesla-t4``, ``nvidia-tesla-a100:1g.5gb``,
      ``tpu-v5-lite-podslice:2x4``. The device of a flytekit constant gives that constant
      (``A100.partitioned(...)`` with a partition); any other device that is a valid label value is taken
      verbatim, since clusters have devices flytekit lacks (``GPUAccelerator(device)``, or a
      ``MultiInstanceGPUAccelerator`` with a partition).

    Upper-case names that are not constants (``A999``, ``A100.partition_9g``) raise ``ValueError`` naming
    close matches rather than being sent as a device.
    """
    if _CONSTANT_LIKE.fullmatch(text):
        return _lookup_constant(text)
    device, colon, partition = text.partition(":")
    if not is_label_value(device):
        raise ValueError(
            f"accelerator: {text!r} is neither a known accelerator name ({_names_hint()}) "
            "nor a device name (a label value: letters, digits, '-', '_', '.', at most 63 characters)"
        )
    if colon and not is_label_value(partition):
        raise ValueError(
            f"accelerator: {text!r} has an invalid partition {partition!r} "
            "(expected a label value such as '1g.5gb' or '2x4')"
        )
    known = _known(device)
    if not colon:
        return known if known is not None else GPUAccelerator(device)
    return _with_partition(known, device, partition)


def _with_partition(known: BaseAccelerator | None, device: str, partition: str) -> BaseAccelerator:
    if isinstance(known, MultiInstanceGPUAccelerator) and type(known) is not Accelerator:
        return type(known).partitioned(partition)
    if known is not None:
        return Accelerator(known.device, partition_size=partition, device_class=known.device_class)
    return Accelerator(device, partition_size=partition)


def _lookup_constant(text: str) -> BaseAccelerator:
    name, *attrs = text.split(".")
    constant = _CONSTANTS.get(name)
    entry = by_name(name) if constant is None else None
    if entry is not None and not attrs:
        return Accelerator(entry.device, device_class=entry.device_class)  # a Flyte 2 type name: B200, MI300X
    if attrs and not isinstance(constant, MultiInstanceGPUAccelerator):
        entry = entry or find_device(name)
        if entry is not None and entry.partitions:
            return _catalog_partition(text, entry, attrs)
    if constant is None:
        hint = did_you_mean(name, _all_names())
        raise ValueError(f"accelerator: {text!r} is not a known accelerator name; {hint}known: {_names_hint()}")
    if not attrs:
        return constant
    if not isinstance(constant, MultiInstanceGPUAccelerator):
        raise ValueError(
            f"accelerator: {text!r}: {name} has no partitions; use {name!r} "
            "or a device string with a partition ('<device>:<partition>')"
        )
    partitions = _partitions(constant)
    result: MultiInstanceGPUAccelerator = constant
    rest = attrs
    if rest[0] in partitions:
        result, rest = partitions[rest[0]], rest[1:]
    if rest == ["unpartitioned"]:
        return result.unpartitioned
    if not rest:
        return result
    raise _not_a_partition(text, [f"{name}.{attr}" for attr in partitions] + [f"{name}.unpartitioned"])


def _catalog_partition(text: str, entry: DeviceType, attrs: list[str]) -> BaseAccelerator:
    """`H100.unpartitioned`, `H100.partition_1g_10gb`, `A100_80G.unpartitioned`: the flytekit spelling for a
    catalog device with partitions that flytekit has no partitioned constant for (its `H100` is a plain
    `GPUAccelerator`), so that every device with partitions can be asked for whole."""
    named = {partition_attribute(entry, size): size for size in entry.partitions}
    size = named.get(attrs[0]) if attrs else None
    rest = attrs[1:] if size is not None else attrs
    if rest in ([], ["unpartitioned"]):
        return Accelerator(entry.device, size, unpartitioned=bool(rest), device_class=entry.device_class)
    name = text.split(".", 1)[0]
    raise _not_a_partition(text, [f"{name}.{attr}" for attr in named] + [f"{name}.unpartitioned"])


def _not_a_partition(text: str, valid: list[str]) -> ValueError:
    hint = did_you_mean(text, valid)
    return ValueError(f"accelerator: {text!r} is not a known accelerator name; {hint}valid: {', '.join(valid)}")


def _names_hint() -> str:
    return ", ".join(_CONSTANTS) + " or a Flyte 2 type (B200, Trn1, MI300X, ...)"


def _all_names() -> list[str]:
    return [*_CONSTANTS, *(entry.name for entry in CATALOG if entry.name not in _CONSTANTS)]


def accelerator_from_idl(message: tasks_pb2.GPUAccelerator, device_class: DeviceClass | None = None) -> BaseAccelerator:
    """The accelerator an IDL ``GPUAccelerator`` describes; ``device_class`` is flyteidl2's field, read beside
    the 1.x message (None: the catalog's class for the device).

    A device of a flytekit constant gives that constant's class (``A100``, ``A100.partitioned(size)``,
    ``A100.unpartitioned``); an unknown device gives a ``GPUAccelerator`` or, when a partition is set, a
    ``MultiInstanceGPUAccelerator`` carrying that device. An explicit ``unpartitioned: false`` reads as unset.
    """
    which = message.WhichOneof("partition_size_value")
    partition = message.partition_size if which == "partition_size" else None
    unpartitioned = which == "unpartitioned" and message.unpartitioned
    return _decoded(message.device, partition, unpartitioned, device_class)


@lru_cache(maxsize=1024)  # read for every pod an accelerator places; the result is never modified
def _decoded(
    device: str, partition: str | None, unpartitioned: bool, device_class: DeviceClass | None
) -> BaseAccelerator:
    if device_class is not None:
        found = _decoded(device, partition, unpartitioned, None)
        return Accelerator(
            found.device, found.partition_size, unpartitioned=found.is_unpartitioned, device_class=device_class
        )
    known = _known(device)
    if partition is not None:
        return _with_partition(known, device, partition)
    if not unpartitioned:
        return known if known is not None else GPUAccelerator(device)
    if isinstance(known, MultiInstanceGPUAccelerator):
        return known.unpartitioned
    return Accelerator(device, unpartitioned=True)
