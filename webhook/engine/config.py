"""The webhook's configuration: Flyte's `k8s` plugin keys plus the webhook's own, with cluster presets.

Keys are spelled as in Flyte's plugin config (`gpu-resource-name`, ...) so a platform team can copy values from
its Flyte deployment. A preset only fills keys the user did not set.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from webhook.engine.catalog import DEVICE_CLASS_DEFAULTS, DeviceClass, find_device
from webhook.engine.quantity import canonical_quantity, parse_quantity

_KEBAB = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


def _kebab(name: str) -> str:
    return name.replace("_", "-")


class Toleration(BaseModel):
    """A Kubernetes toleration, spelled as in a pod spec."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str | None = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    tolerationSeconds: int | None = None

    def to_pod(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class NodeSelectorRequirement(BaseModel):
    """One `matchExpressions` entry of a node selector term."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
    values: list[str] | None = None

    @model_validator(mode="after")
    def _values_match_operator(self) -> NodeSelectorRequirement:
        needs_values = self.operator in ("In", "NotIn", "Gt", "Lt")
        if needs_values and not self.values:
            raise ValueError(f"operator {self.operator} needs values")
        if not needs_values and self.values:
            raise ValueError(f"operator {self.operator} takes no values")
        return self

    def to_pod(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class DeviceClassConfig(BaseModel):
    """One entry of Flyte 2's `accelerator-device-classes`: what a device class's accelerators are counted as
    and which node labels place them. Unset fields fall back to the class's built-in value, then to the global
    `gpu-*` keys, as in flyteplugins' `getAcceleratorConfig`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True, alias_generator=_kebab)

    resource_name: str | None = None
    device_node_label: str | None = None
    partition_size_node_label: str | None = None
    unpartitioned_node_selector_requirement: NodeSelectorRequirement | None = None
    unpartitioned_toleration: Toleration | None = None


class Preset(StrEnum):
    eks = "eks"
    gke = "gke"
    karpenter = "karpenter"
    gfd = "gfd"
    amd = "amd"


# What each preset changes from Flyte's defaults (which are the EKS / cluster-autoscaler labels).
# Device values follow the catalog's device strings (Flyte's table); `accelerator-devices` maps them to the
# label values a cluster really uses where those differ (GKE's memory-suffixed names, Karpenter's short names,
# GPU feature discovery's product names). A key is any spelling of a catalog device, so flytekit's
# `nvidia-h100` and the Flyte 2 SDK's `nvidia-tesla-h100` reach the same value. TPUs need no preset: every
# preset places them by Flyte 2's `GOOGLE_TPU` class labels, which are GKE's (`gke-tpu-accelerator`,
# `gke-tpu-topology`).
PRESETS: dict[Preset, dict[str, Any]] = {
    Preset.eks: {},
    Preset.gke: {
        "gpu-device-node-label": "cloud.google.com/gke-accelerator",
        "gpu-partition-size-node-label": "cloud.google.com/gke-gpu-partition-size",
        "accelerator-devices": {
            "nvidia-h100": "nvidia-h100-80gb",
            "nvidia-h200": "nvidia-h200-141gb",
        },
    },
    Preset.karpenter: {
        "gpu-device-node-label": "karpenter.k8s.aws/instance-gpu-name",
        "mig-strategy": "mixed",
        "accelerator-devices": {
            "nvidia-a10g": "a10g",
            "nvidia-l4": "l4",
            "nvidia-l40s": "l40s",
            "nvidia-tesla-k80": "k80",
            "nvidia-tesla-m60": "m60",
            "nvidia-tesla-t4": "t4",
            "nvidia-tesla-v100": "v100",
            "nvidia-tesla-a100": "a100",
            "nvidia-a100-80gb": "a100",
            "nvidia-h100": "h100",
            "nvidia-h200": "h200",
        },
    },
    Preset.gfd: {
        "gpu-device-node-label": "nvidia.com/gpu.product",
        "mig-strategy": "mixed",
        "accelerator-devices": {
            "nvidia-a10g": "NVIDIA-A10G",
            "nvidia-l4": "NVIDIA-L4",
            "nvidia-l40s": "NVIDIA-L40S",
            "nvidia-tesla-t4": "Tesla-T4",
            "nvidia-tesla-v100": "Tesla-V100-SXM2-16GB",
            "nvidia-tesla-a100": "A100-SXM4-40GB",
            "nvidia-a100-80gb": "NVIDIA-A100-SXM4-80GB",
            "nvidia-h100": "NVIDIA-H100-80GB-HBM3",
            "nvidia-h200": "NVIDIA-H200",
        },
    },
    Preset.amd: {
        "gpu-resource-name": "amd.com/gpu",
        "gpu-device-node-label": "amd.com/gpu.product-name",
    },
}


class WebhookConfig(BaseModel):
    """Validated configuration. Construct with `WebhookConfig.from_mapping(...)` to apply the preset."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        frozen=True,
        alias_generator=_kebab,
        validate_default=True,
    )

    preset: Preset = Preset.eks
    annotation_prefix: str = "resources.flyte.org/"
    gpu_resource_name: str = "nvidia.com/gpu"
    gpu_device_node_label: str = "k8s.amazonaws.com/accelerator"
    gpu_partition_size_node_label: str = "k8s.amazonaws.com/gpu-partition-size"
    gpu_unpartitioned_node_selector_requirement: NodeSelectorRequirement | None = None
    gpu_unpartitioned_toleration: Toleration | None = None
    accelerator_devices: dict[str, str] = Field(default_factory=dict)
    accelerator_device_classes: dict[DeviceClass, DeviceClassConfig] = Field(default_factory=dict)
    mig_strategy: Literal["single", "mixed"] = "single"
    accelerator_placement: Literal["affinity", "nodeSelector"] = "affinity"
    default_cpus: str = "1000m"
    default_memory: str = "1024Mi"
    default_requests: dict[str, str] = Field(default_factory=dict)
    platform_limits: dict[str, str] = Field(default_factory=dict)
    on_limit_exceeded: Literal["clamp", "reject"] = "clamp"
    resource_tolerations: dict[str, list[Toleration]] = Field(default_factory=dict)
    on_invalid: Literal["reject", "ignore"] = "reject"
    on_error: Literal["deny", "allow"] = "deny"

    @field_validator("annotation_prefix")
    @classmethod
    def _prefix_shape(cls, value: str) -> str:
        if not value.endswith("/") or value.count("/") != 1 or len(value) < 2:
            raise ValueError(f"{value!r} must be a DNS subdomain followed by '/', e.g. 'resources.flyte.org/'")
        return value

    @field_validator("default_cpus", "default_memory")
    @classmethod
    def _one_quantity(cls, value: str) -> str:
        parse_quantity(value)
        return canonical_quantity(value)

    @field_validator("default_requests", "platform_limits", mode="before")
    @classmethod
    def _quantity_map(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        out: dict[str, str] = {}
        for name, quantity in value.items():
            if isinstance(quantity, bool) or not isinstance(quantity, str | int | float):
                raise ValueError(f"{name}: {quantity!r} is not a Kubernetes quantity")
            try:
                parse_quantity(quantity)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
            out[str(name)] = canonical_quantity(quantity)
        return out

    @field_validator("accelerator_device_classes", mode="before")
    @classmethod
    def _class_names(cls, value: Any) -> Any:
        # Either spelling of a class, any case (Flyte upper-cases the keys too: viper lower-cases YAML keys).
        if not isinstance(value, dict):
            return value
        return {DeviceClass.parse(str(name)): entry for name, entry in value.items()}

    # `accelerator-devices` keyed by catalog device string, so that every spelling of a device finds its value.
    _device_labels: dict[str, str] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        for key, value in self.accelerator_devices.items():
            entry = find_device(key)
            self._device_labels[entry.device if entry is not None else key] = value

    @classmethod
    def from_mapping(cls, data: dict[str, Any] | None = None) -> WebhookConfig:
        """Validate user keys on top of the chosen preset; raises `ConfigError` naming the key and value."""
        data = dict(data or {})
        preset_name = data.get("preset", Preset.eks.value)
        try:
            preset = Preset(preset_name)
        except ValueError:
            choices = ", ".join(p.value for p in Preset)
            raise ConfigError(f"invalid configuration:\n  preset: {preset_name!r} is not one of {choices}") from None
        merged = {**PRESETS[preset], **data}
        try:
            return cls.model_validate(merged)
        except ValidationError as exc:
            raise ConfigError(_describe(exc, merged)) from None

    def device_label_value(self, device: str) -> str:
        """The node label value for a device on this cluster: `accelerator-devices` for the device under any
        of its spellings, else the catalog's device string (Flyte's normalisation table), else `device`."""
        entry = find_device(device)
        canonical = entry.device if entry is not None else device
        return self._device_labels.get(canonical, self._device_labels.get(device, canonical))

    def device_class_config(self, device_class: DeviceClass) -> DeviceClassConfig:
        """The resolved settings of a device class: the user's entry, else the class's built-in value (Flyte 2's
        defaults), else the global `gpu-*` keys."""
        given = self.accelerator_device_classes.get(device_class) or DeviceClassConfig()
        built_in = DEVICE_CLASS_DEFAULTS[device_class]
        return DeviceClassConfig(
            resource_name=given.resource_name or built_in.resource_name or self.gpu_resource_name,
            device_node_label=given.device_node_label or built_in.device_node_label or self.gpu_device_node_label,
            partition_size_node_label=given.partition_size_node_label
            or built_in.partition_size_node_label
            or self.gpu_partition_size_node_label,
            unpartitioned_node_selector_requirement=given.unpartitioned_node_selector_requirement
            or self.gpu_unpartitioned_node_selector_requirement,
            unpartitioned_toleration=given.unpartitioned_toleration or self.gpu_unpartitioned_toleration,
        )


class ConfigError(ValueError):
    """An invalid configuration; the message names each bad key and its value."""


def _describe(exc: ValidationError, data: dict[str, Any]) -> str:
    lines = []
    for error in exc.errors():
        path = [str(part) for part in error["loc"]]
        key = path[0] if path else "config"
        where = ".".join(path) or "config"
        if error["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown key (valid keys: {', '.join(sorted(_KEYS))})")
            continue
        shown = data.get(key, error.get("input"))
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{where}: {shown!r}: {message}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


_KEYS = frozenset(_kebab(name) for name in WebhookConfig.model_fields)
