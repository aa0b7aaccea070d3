"""The Flyte 2 SDK's accelerator forms (flyte 2.12 ``flyte/_resources.py``), validated, as the accelerator model.

``GPU("H100", 1, partition="1g.10gb")``, ``TPU("V6E", "2x4")``, ``Neuron("Trn1")``, ``AMD_GPU("MI300X")``,
``HABANA_GAUDI("Gaudi1")`` and ``"<Type>:<count>"`` strings (``parse_accelerator("A100:2")``) give a
``Device`` with Flyte 2's field names (``quantity``, ``device_class``, ``device``, ``partition``);
``Device.accelerator()`` is the accelerator the backend places, with the device string Flyte 2 sends
(``A100`` -> ``nvidia-tesla-a100``, normalised through the catalog like the backend's device table).

Flyte 2's errors are raised with Flyte 2's words (``Invalid GPU type: ...``, ``Invalid partition for A100:
...``, ``GPU quantity must be at least 1``). Stricter than Flyte 2, because the pod could never be placed:
a partition on a device that has none (``GPU("T4", 1, partition="1g.5gb")``), more devices of another class than
its ``"<Type>:<count>"`` strings offer (``Trn1`` at most 16; 8 for a TPU device), a ``Device`` whose name is not
a Flyte 2 type of its class, and a bool as a quantity. An NVIDIA GPU type takes any count from 1, as Flyte 2's
``GPU()`` does, also in the string form (``"RTX_PRO_6000:4"``, which the SDK's string table lacks: 8-GPU
machines of it exist); a platform caps counts with a policy's ``max-gpus``. Counts stop at 999 (bounded input).
The parity test (``tests/engine/test_flyte2_parity.py``) holds this to the SDK's own answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from webhook.engine.accelerators import Accelerator
from webhook.engine.catalog import CATALOG, DeviceClass, DeviceType, by_name
from webhook.engine.excerpt import did_you_mean, excerpt, shown

__all__ = [
    "AMD_GPU",
    "GPU",
    "HABANA_GAUDI",
    "TPU",
    "Device",
    "Neuron",
    "device",
    "parse_accelerator",
]

# How Flyte 2 names each class in its "Invalid <kind> type" messages.
_KIND: Final = {
    DeviceClass.NVIDIA_GPU: "GPU",
    DeviceClass.GOOGLE_TPU: "TPU",
    DeviceClass.AMAZON_NEURON: "Neuron",
    DeviceClass.AMD_GPU: "AMD GPU",
    DeviceClass.HABANA_GAUDI: "Habana Gaudi",
}
# The types Flyte 2's constructors accept, per class, in the SDK's order (the catalog's order).
_SDK_TYPES: Final[dict[DeviceClass, tuple[str, ...]]] = {
    cls: tuple(e.name for e in CATALOG if e.device_class is cls and (e.counts or cls is DeviceClass.GOOGLE_TPU))
    for cls in DeviceClass
}


@dataclass(frozen=True)
class Device:
    """Flyte 2's ``Device``: ``quantity`` devices of type ``device`` (None: any GPU), optionally a partition."""

    quantity: int
    device_class: DeviceClass
    device: str | None = None
    partition: str | None = None

    def accelerator(self) -> Accelerator | None:
        """The accelerator the backend places; None for a bare count (``gpu=2``), which places nothing."""
        if self.device is None:
            return None
        entry = by_name(self.device)
        name = entry.device if entry is not None else self.device
        return Accelerator(name, partition_size=self.partition, device_class=self.device_class)


def _entry(name: str, device_class: DeviceClass) -> DeviceType:
    entry = by_name(name)
    if entry is None or entry.device_class is not device_class or entry.name not in _SDK_TYPES[device_class]:
        types = ", ".join(_SDK_TYPES[device_class])
        other = (
            f" ({entry.name} is a {entry.device_class.sdk_name})"
            if entry and entry.device_class is not device_class
            else ""
        )
        raise ValueError(f"Invalid {_KIND[device_class]} type: {excerpt(name)}. Must be one of {types}{other}")
    return entry


#: The largest count read: three digits, far above any node (a policy's `max-gpus` caps what a platform allows).
MAX_COUNT: Final = 999


def _any_count(entry: DeviceType) -> bool:
    """Whether Flyte 2's `GPU()` takes this type: any count from 1 (its strings list fewer)."""
    return entry.device_class is DeviceClass.NVIDIA_GPU and bool(entry.counts)


def _check_quantity(entry: DeviceType, quantity: object) -> int:
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise ValueError(f"{entry.name}: quantity must be a whole number, got {shown(quantity)}")
    if quantity < 1:
        raise ValueError("GPU quantity must be at least 1")
    if _any_count(entry):
        if quantity > MAX_COUNT:
            raise ValueError(f"{entry.name}: quantity {quantity} is more than any node has (at most {MAX_COUNT} read)")
        return quantity
    if quantity > entry.max_count:
        if entry.counts:  # Flyte 2's own strings stop at what one node of that type holds
            most = f"at most '{entry.name}:{entry.max_count}'"
            raise ValueError(f"{entry.name}: quantity {quantity} is more than Flyte 2 offers ({most})")
        raise ValueError(f"{entry.name}: quantity {quantity} is more than one node has (at most {entry.max_count})")
    return quantity


def _check_partition(entry: DeviceType, partition: str | None) -> str | None:
    if partition is None:
        return None
    if entry.shared:
        raise ValueError(
            f"A shared GPU takes no partition, got {shown(partition)} for {entry.name}. "
            "Request a plain device to use a MIG partition."
        )
    if not entry.partitions:
        partitioned = ", ".join(e.name for e in CATALOG if e.partitions and e.name in _SDK_TYPES[entry.device_class])
        raise ValueError(f"{entry.name} has no partitions (partitions exist for {partitioned})")
    if partition not in entry.partitions:
        raise ValueError(
            f"Invalid partition for {entry.name}: {excerpt(partition)}. Must be one of {', '.join(entry.partitions)}"
        )
    return partition


def device(
    name: str,
    quantity: int | None = None,
    partition: str | None = None,
    device_class: DeviceClass | str | None = None,
) -> Device:
    """A ``Device`` from its fields, validated: the class defaults to the type's (``V6E`` is a TPU), the quantity
    to 1; a class that does not match the type is an error."""
    given_class = DeviceClass.parse(device_class) if isinstance(device_class, str) else device_class
    if isinstance(quantity, int) and not isinstance(quantity, bool) and quantity < 1:
        raise ValueError("GPU quantity must be at least 1")  # checked first, as Flyte 2 does
    found = by_name(name)
    entry = _entry(name, given_class or (found.device_class if found is not None else DeviceClass.NVIDIA_GPU))
    count = _check_quantity(entry, 1 if quantity is None else quantity)
    return Device(count, entry.device_class, entry.name, _check_partition(entry, partition))


def GPU(device_type: str, quantity: int, partition: str | None = None) -> Device:  # Flyte 2's names, upper case
    """Flyte 2's ``GPU(device, quantity, partition)``."""
    return device(device_type, quantity, partition, DeviceClass.NVIDIA_GPU)


def TPU(device_type: str, partition: str | None = None) -> Device:
    """Flyte 2's ``TPU(device, partition)``: one TPU device (the slice is the partition)."""
    return device(device_type, 1, partition, DeviceClass.GOOGLE_TPU)


def Neuron(device_type: str) -> Device:
    return device(device_type, 1, None, DeviceClass.AMAZON_NEURON)


def AMD_GPU(device_type: str) -> Device:
    return device(device_type, 1, None, DeviceClass.AMD_GPU)


def HABANA_GAUDI(device_type: str) -> Device:
    return device(device_type, 1, None, DeviceClass.HABANA_GAUDI)


def parse_accelerator(text: str) -> Device:
    """A Flyte 2 ``"<Type>:<count>"`` string (``A100:2``, ``A100 80G:8``, ``L40s:1``, ``Trn1:16``, ``T4 shared:1``).

    An NVIDIA GPU type takes the counts ``GPU()`` takes (``RTX_PRO_6000:4``); other classes their strings' counts.
    """
    name, colon, count = text.strip().rpartition(":")
    if not colon:
        name, count = count, ""
    name, count = name.strip(), count.strip()
    entry = by_name(name)
    if entry is None or not entry.counts:
        names = [e.name for e in CATALOG if e.counts]
        hint = did_you_mean(name, names)
        raise ValueError(
            f"{shown(text)} is not a Flyte 2 accelerator: {hint}{shown(name)} is not one of {', '.join(names)}"
        )
    if not count:
        raise ValueError(f"{shown(text)}: a Flyte 2 accelerator needs a count, e.g. '{entry.name}:{entry.counts[0]}'")
    valid = count.isascii() and count.isdigit() and len(count) <= len(str(MAX_COUNT))
    if _any_count(entry) and (not valid or int(count) < 1):
        raise ValueError(f"{shown(text)}: {entry.name} comes in counts of 1 to {MAX_COUNT}")
    if not _any_count(entry) and (not valid or int(count) not in entry.counts):
        counts = ", ".join(map(str, entry.counts))
        raise ValueError(f"{shown(text)}: {entry.name} comes in counts of {counts}")
    return Device(int(count), entry.device_class, entry.name)
