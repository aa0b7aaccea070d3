"""The device catalog: every accelerator either Flyte SDK names, its device class, device string and partitions.

One entry per device type. ``name`` is the Flyte 2 SDK spelling (``A100_80G``, ``L40s``, ``Trn1``, ``V6E``);
``device`` the device string that reaches the node label (Flyte's device-name table, flyteorg/flyte
``flyteplugins/go/tasks/pluginmachinery/flytek8s/config/config.go``, and flytekit's constants); ``spellings``
every other name the two SDKs send for the same device. Both H100 spellings meet here: flytekit 1.x sends
``nvidia-h100``, the Flyte 2 SDK ``nvidia-tesla-h100``; both resolve to the H100 entry, whose device string is
``nvidia-h100`` (the value of Flyte's table), and each preset then maps that one entry to its cluster's label.

Sources: flytekit 1.16.31 ``flytekit/extras/accelerators.py``; flyte 2.12.1 ``flyte/_resources.py`` and
``flyte/_internal/runtime/resources_serde.py``; flyteorg/flyte main 6fadb90d ``flytek8s/config/config.go``.
Entries marked ``ours=True`` have no row in Flyte's table (the SDK sends the bare name, which for the shared
types is not even a valid label value); their device string follows the ``nvidia-<model>`` pattern.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from webhook.engine.excerpt import shown

__all__ = [
    "CATALOG",
    "DEVICE_CLASS_DEFAULTS",
    "DeviceClass",
    "DeviceClassDefaults",
    "DeviceType",
    "by_name",
    "find_device",
]


class DeviceClass(StrEnum):
    """flyteidl2 ``GPUAccelerator.DeviceClass``: which kind of accelerator, hence its resource name and labels."""

    NVIDIA_GPU = "NVIDIA_GPU"
    GOOGLE_TPU = "GOOGLE_TPU"
    AMAZON_NEURON = "AMAZON_NEURON"
    AMD_GPU = "AMD_GPU"
    HABANA_GAUDI = "HABANA_GAUDI"

    @property
    def sdk_name(self) -> str:
        """The Flyte 2 SDK's short name (``Device.device_class``): GPU, TPU, NEURON, AMD_GPU, HABANA_GAUDI."""
        return _SDK_NAMES[self]

    @classmethod
    def parse(cls, text: str) -> DeviceClass:
        """A device class from either spelling (``GOOGLE_TPU`` or the SDK's ``TPU``); ``ValueError`` otherwise."""
        found = _BY_ANY_NAME.get(text.strip().upper())
        if found is None:
            names = ", ".join(f"{c.sdk_name}/{c.value}" if c.sdk_name != c.value else c.value for c in cls)
            raise ValueError(f"{shown(text)} is not a device class; valid: {names}")
        return found


_SDK_NAMES: Final = {
    DeviceClass.NVIDIA_GPU: "GPU",
    DeviceClass.GOOGLE_TPU: "TPU",
    DeviceClass.AMAZON_NEURON: "NEURON",
    DeviceClass.AMD_GPU: "AMD_GPU",
    DeviceClass.HABANA_GAUDI: "HABANA_GAUDI",
}
_BY_ANY_NAME: Final = {**{c.value: c for c in DeviceClass}, **{n: c for c, n in _SDK_NAMES.items()}}


@dataclass(frozen=True)
class DeviceClassDefaults:
    """What Flyte 2's backend configures per device class (``k8s.accelerator-device-classes``); empty labels
    mean the global ``gpu-device-node-label`` / ``gpu-partition-size-node-label``."""

    resource_name: str
    device_node_label: str = ""
    partition_size_node_label: str = ""


# flyteorg/flyte main config.go defaults. An NVIDIA device counts under nvidia.com/gpu whatever the deprecated
# global `gpu-resource-name`, which applies to a GPU with no device (Flyte 2 lets the class's name win too).
DEVICE_CLASS_DEFAULTS: Final[dict[DeviceClass, DeviceClassDefaults]] = {
    DeviceClass.NVIDIA_GPU: DeviceClassDefaults(resource_name="nvidia.com/gpu"),
    DeviceClass.GOOGLE_TPU: DeviceClassDefaults(
        resource_name="google.com/tpu",
        device_node_label="cloud.google.com/gke-tpu-accelerator",
        partition_size_node_label="cloud.google.com/gke-tpu-topology",
    ),
    DeviceClass.AMAZON_NEURON: DeviceClassDefaults(resource_name="aws.amazon.com/neuron"),
    DeviceClass.AMD_GPU: DeviceClassDefaults(resource_name="amd.com/gpu"),
    DeviceClass.HABANA_GAUDI: DeviceClassDefaults(resource_name="habana.ai/gaudi"),
}


@dataclass(frozen=True)
class DeviceType:
    """One device type. ``counts`` are the quantities Flyte 2's ``"<name>:<count>"`` strings allow (empty:
    the type has no such string); ``partitions`` the MIG profiles or TPU slice topologies it can be cut into."""

    name: str
    device_class: DeviceClass
    device: str
    counts: tuple[int, ...] = ()
    partitions: tuple[str, ...] = ()
    spellings: tuple[str, ...] = ()
    flytekit: str | None = None
    flytekit_partitions: bool = False  # flytekit's constant names the partitions (`A100.partition_1g_5gb`)
    ours: bool = False
    shared: bool = False

    @property
    def max_count(self) -> int:
        return max(self.counts, default=8)

    def names(self) -> Iterator[str]:
        """Every spelling that resolves to this entry."""
        yield self.name
        yield self.device
        yield from self.spellings
        if self.flytekit:
            yield self.flytekit


_UP_TO_8: Final = (1, 2, 3, 4, 5, 6, 7, 8)
_A100: Final = ("1g.5gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb")
_A100_80G: Final = ("1g.10gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb")
_H100: Final = ("1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb")
_H200: Final = ("1g.18gb", "1g.35gb", "2g.35gb", "3g.71gb", "4g.71gb", "7g.141gb")
_RTX_PRO_6000: Final = ("1g.24gb", "2g.48gb", "4g.96gb")
_V5E_V6E: Final = ("1x1", "2x2", "2x4", "4x4", "4x8", "8x8", "8x16", "16x16")
_V5P: Final = (
    "2x2x1", "2x2x2", "2x4x4", "4x4x4", "4x4x8", "4x8x8", "8x8x8", "8x8x16", "8x16x16", "16x16x16", "16x16x24",
)  # fmt: skip
_NEURON_TRN: Final = (1, 4, 8, 16)

_GPU, _TPU, _NEURON, _AMD, _GAUDI = (
    DeviceClass.NVIDIA_GPU,
    DeviceClass.GOOGLE_TPU,
    DeviceClass.AMAZON_NEURON,
    DeviceClass.AMD_GPU,
    DeviceClass.HABANA_GAUDI,
)

CATALOG: Final[tuple[DeviceType, ...]] = (
    # NVIDIA, Flyte 2 GPU types
    DeviceType("A2", _GPU, "nvidia-a2", (1,), ours=True),
    DeviceType("A10", _GPU, "nvidia-a10", _UP_TO_8),
    DeviceType("A10G", _GPU, "nvidia-a10g", _UP_TO_8, flytekit="A10G"),
    DeviceType("A100", _GPU, "nvidia-tesla-a100", _UP_TO_8, _A100, flytekit="A100", flytekit_partitions=True),
    DeviceType(
        "A100_80G", _GPU, "nvidia-a100-80gb", _UP_TO_8, _A100_80G, ("A100 80G",), "A100_80GB", flytekit_partitions=True
    ),
    DeviceType("B200", _GPU, "nvidia-b200", _UP_TO_8),
    DeviceType("H100", _GPU, "nvidia-h100", _UP_TO_8, _H100, ("nvidia-tesla-h100",), flytekit="H100"),
    DeviceType("H200", _GPU, "nvidia-h200", _UP_TO_8, _H200, flytekit="H200"),
    DeviceType("L4", _GPU, "nvidia-l4", _UP_TO_8, flytekit="L4"),
    DeviceType("L40s", _GPU, "nvidia-l40s", _UP_TO_8, flytekit="L40S"),
    DeviceType("T4", _GPU, "nvidia-tesla-t4", _UP_TO_8, flytekit="T4"),
    DeviceType("V100", _GPU, "nvidia-tesla-v100", _UP_TO_8, flytekit="V100"),
    DeviceType("RTX_PRO_4500", _GPU, "nvidia-rtx-pro-4500", (1,)),
    DeviceType("RTX_PRO_6000", _GPU, "nvidia-rtx-pro-6000", (1, 2), _RTX_PRO_6000, ("RTX PRO 6000",), "RTX_PRO_6000"),
    DeviceType("GB10", _GPU, "nvidia-gb10", (1,), ours=True),
    # Time-sliced (or MPS) shares of one GPU: one share, never a partition.
    DeviceType("T4 shared", _GPU, "nvidia-tesla-t4-shared", (1,), ours=True, shared=True),
    DeviceType("L4 shared", _GPU, "nvidia-l4-shared", (1,), ours=True, shared=True),
    DeviceType("A10G shared", _GPU, "nvidia-a10g-shared", (1,), ours=True, shared=True),
    DeviceType("A10 shared", _GPU, "nvidia-a10-shared", (1,), ours=True, shared=True),
    DeviceType("L40S shared", _GPU, "nvidia-l40s-shared", (1,), ours=True, shared=True),
    # NVIDIA, flytekit constants and Flyte's device table only (no Flyte 2 "<name>:<count>" string)
    DeviceType("L4_VWS", _GPU, "nvidia-l4-vws", flytekit="L4_VWS"),
    DeviceType("K80", _GPU, "nvidia-tesla-k80", flytekit="K80"),
    DeviceType("M60", _GPU, "nvidia-tesla-m60", flytekit="M60"),
    DeviceType("P4", _GPU, "nvidia-tesla-p4", flytekit="P4"),
    DeviceType("P100", _GPU, "nvidia-tesla-p100", flytekit="P100"),
    DeviceType("A100G", _GPU, "nvidia-a100g"),
    DeviceType("GB200", _GPU, "nvidia-gb200"),
    DeviceType("H100 80G", _GPU, "nvidia-h100-80gb", partitions=_H100),
    DeviceType("H100 MEGA 80G", _GPU, "nvidia-h100-mega-80gb", partitions=_H100),
    # Google Cloud TPUs: the slice topology travels as the partition.
    DeviceType("V5E", _TPU, "tpu-v5-lite-podslice", partitions=_V5E_V6E, flytekit="V5E", flytekit_partitions=True),
    DeviceType("V5P", _TPU, "tpu-v5p-slice", partitions=_V5P, flytekit="V5P", flytekit_partitions=True),
    DeviceType("V6E", _TPU, "tpu-v6e-slice", partitions=_V5E_V6E, flytekit="V6E", flytekit_partitions=True),
    # AWS Neuron
    DeviceType("Inf1", _NEURON, "aws-neuron-inf1", tuple(range(1, 17))),
    DeviceType("Inf2", _NEURON, "aws-neuron-inf2", tuple(range(1, 13))),
    DeviceType("Trn1", _NEURON, "aws-neuron-trn1", _NEURON_TRN),
    DeviceType("Trn1n", _NEURON, "aws-neuron-trn1n", _NEURON_TRN),
    DeviceType("Trn2", _NEURON, "aws-neuron-trn2", _NEURON_TRN),
    DeviceType("Trn2u", _NEURON, "aws-neuron-trn2u", _NEURON_TRN),
    # AMD Instinct
    *(
        DeviceType(name, _AMD, f"amd-{name.lower()}", (1,))
        for name in ("MI100", "MI210", "MI250", "MI250X", "MI300A", "MI300X", "MI325X", "MI350X", "MI355X")
    ),
    # Intel Habana Gaudi
    DeviceType("Gaudi1", _GAUDI, "habana-gaudi-dl1", (1,)),
)

# Flyte's backend looks device names up upper-cased; every spelling of every entry, the same way.
_BY_SPELLING: Final[dict[str, DeviceType]] = {
    spelling.upper(): entry for entry in CATALOG for spelling in entry.names()
}
_BY_NAME: Final[dict[str, DeviceType]] = {entry.name: entry for entry in CATALOG}
_BY_NAME.update({alias: entry for entry in CATALOG for alias in entry.spellings if not alias.islower()})


def find_device(text: str) -> DeviceType | None:
    """The entry any spelling names (``H100``, ``nvidia-h100``, ``nvidia-tesla-h100``, ``A100 80G``,
    ``tpu-v6e-slice``), case-insensitive like Flyte's table; None for a device the catalog lacks."""
    return _BY_SPELLING.get(text.strip().upper())


def by_name(name: str) -> DeviceType | None:
    """The entry of a Flyte 2 type name, exact case as the SDK checks it (``L40s``, ``A100_80G``; the SDK's
    deprecated ``A100 80G`` and ``RTX PRO 6000`` too)."""
    return _BY_NAME.get(name)
