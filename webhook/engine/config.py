"""The webhook's configuration: Flyte's `k8s` plugin keys plus the webhook's own, with cluster presets.

Keys are spelled as in Flyte's plugin config (`gpu-resource-name`, ...) so a platform team can copy values from
its Flyte deployment. A preset only fills keys the user did not set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from webhook.engine.catalog import DEVICE_CLASS_DEFAULTS, DeviceClass, find_device
from webhook.engine.errors import Refusal
from webhook.engine.excerpt import bounded, excerpt
from webhook.engine.excerpt import shown as shown_value
from webhook.engine.kubenames import DNS_SUBDOMAIN_PATTERN, is_dns_subdomain
from webhook.engine.quantity import canonical_quantity, parse_quantity

# A resource → quantity map; it takes numbers too (`cpu: 4`), read as quantities and kept canonical strings.
QuantityMap = Annotated[
    dict[str, str], WithJsonSchema({"type": "object", "additionalProperties": {"type": ["string", "number"]}})
]


def _any_key_spelling(schema: dict[str, Any]) -> None:
    """A device class is taken in either spelling and any case: the schema names no keys."""
    schema.pop("propertyNames", None)


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


@dataclass(frozen=True)
class DeviceClassSettings:
    """A device class's settings with every fallback applied (`WebhookConfig.device_class_config`)."""

    resource_name: str
    device_node_label: str
    partition_size_node_label: str
    unpartitioned_node_selector_requirement: NodeSelectorRequirement | None
    unpartitioned_toleration: Toleration | None


_NO_CLASS_CONFIG: Final = DeviceClassConfig()


class Preset(StrEnum):
    eks = "eks"
    gke = "gke"
    karpenter = "karpenter"
    gfd = "gfd"
    amd = "amd"


def _tolerating(*resources: str) -> dict[str, list[dict[str, str]]]:
    """`resource-tolerations` that tolerate the `NoSchedule` taint named like each resource, whatever its value."""
    return {resource: [{"key": resource, "operator": "Exists", "effect": "NoSchedule"}] for resource in resources}


# What each preset changes from Flyte's defaults (which are the EKS / cluster-autoscaler labels).
# Device values follow the catalog's device strings (Flyte's table); `accelerator-devices` maps them to the
# label values a cluster really uses where those differ (GKE's memory-suffixed names, Karpenter's short names,
# GPU feature discovery's product names). A key is any spelling of a catalog device, so flytekit's
# `nvidia-h100` and the Flyte 2 SDK's `nvidia-tesla-h100` reach the same value. TPUs need no preset: every
# preset places them by Flyte 2's `GOOGLE_TPU` class labels, which are GKE's (`gke-tpu-accelerator`,
# `gke-tpu-topology`).
# EKS (managed node groups tainted as AWS's GPU guides show, EKS Auto Mode) and Karpenter's GPU NodePools taint
# accelerator nodes `nvidia.com/gpu:NoSchedule` / `aws.amazon.com/neuron:NoSchedule` and, unlike GKE, do not run
# the ExtendedResourceToleration admission plugin: their presets bring the tolerations, as Flyte's own EKS
# deployments configure `resource-tolerations` for this.
_ACCELERATOR_TAINTS_TOLERATED: Final = _tolerating("nvidia.com/gpu", "aws.amazon.com/neuron")
# GKE runs ExtendedResourceToleration: once our webhook has added `nvidia.com/gpu` or `google.com/tpu`, the
# apiserver's second admission pass adds that toleration, a change that calls every `reinvocationPolicy: IfNeeded`
# webhook (ours) a second time per GPU or TPU pod. The preset adds the very toleration the plugin would, so the pod
# ends the same and the second pass changes nothing: one call per pod.
_EXTENDED_RESOURCE_TOLERATIONS_OF_GKE: Final = _tolerating("nvidia.com/gpu", "google.com/tpu")

PRESETS: dict[Preset, dict[str, Any]] = {
    Preset.eks: {"resource-tolerations": _ACCELERATOR_TAINTS_TOLERATED},
    Preset.gke: {
        "resource-tolerations": _EXTENDED_RESOURCE_TOLERATIONS_OF_GKE,
        "gpu-device-node-label": "cloud.google.com/gke-accelerator",
        "gpu-partition-size-node-label": "cloud.google.com/gke-gpu-partition-size",
        "accelerator-devices": {
            "nvidia-h100": "nvidia-h100-80gb",
            "nvidia-h200": "nvidia-h200-141gb",
        },
    },
    Preset.karpenter: {
        "resource-tolerations": _ACCELERATOR_TAINTS_TOLERATED,
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
            # Neuron devices: EC2's accelerator names, lower-cased as Karpenter writes them.
            "aws-neuron-inf1": "inferentia",
            "aws-neuron-inf2": "inferentia2",
            "aws-neuron-trn1": "trainium",
            "aws-neuron-trn1n": "trainium",
            "aws-neuron-trn2": "trainium2",
            "aws-neuron-trn2u": "trainium2",
        },
        # Karpenter labels GPUs with instance-gpu-* and Neuron devices with instance-accelerator-*.
        "accelerator-device-classes": {
            "AMAZON_NEURON": {"device-node-label": "karpenter.k8s.aws/instance-accelerator-name"},
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
        # ROCm k8s-node-labeller's product names (spaces as `_`).
        "accelerator-devices": {"amd-mi300x": "AMD_Instinct_MI300X_OAM"},
    },
}


def _quantity_map(value: Any) -> Any:
    """A resource → quantity map with each quantity checked and canonical; other shapes are left to pydantic."""
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


# The default annotation prefix: every place that needs it (the CLI, `run --dev`, the chart via `make generate`)
# takes it from here.
DEFAULT_ANNOTATION_PREFIX: Final = "resources.flyte.org/"
ANNOTATION_PREFIX_PATTERN: Final = DNS_SUBDOMAIN_PATTERN + "/"


def check_annotation_prefix(value: str) -> str:
    """`value` when it is a DNS subdomain followed by `/` (an annotation key's prefix), else a ValueError."""
    if not value.endswith("/") or not is_dns_subdomain(value[:-1]):
        raise ValueError(f"{value!r} must be a DNS subdomain followed by '/', e.g. {DEFAULT_ANNOTATION_PREFIX!r}")
    return value


def sanitize_label_value(name: str) -> str:
    """flytepropeller's `SanitizeLabelValue` (utils/k8s.go): lower case, each run of characters other than
    `[-a-z0-9]` one `-`, at most 63 characters, no `-` at either end; how it writes `workflow-name` labels."""
    out: list[str] = []
    in_run = False  # inside a run of other characters, which becomes one "-"
    for char in name.lower():
        valid = char.isascii() and (char.isalnum() or char == "-")
        if valid or not in_run:
            out.append(char if valid else "-")
        in_run = not valid
    return "".join(out)[:63].strip("-")


class PolicyMatch(BaseModel):
    """Which Flyte task pods a policy applies to; every field given must hold. Project, domain and workflow
    are read from the labels flytepropeller puts on task pods (`project`, `domain`, `workflow-name`), the
    namespace from the review, `labels` from the pod."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    project: str | None = Field(default=None, min_length=1, max_length=63)
    domain: str | None = Field(default=None, min_length=1, max_length=63)
    # A workflow's name as registered (`workflows.train.wf`): compared the way flytepropeller writes the label.
    workflow: str | None = Field(default=None, min_length=1, max_length=512)
    namespace: str | None = Field(default=None, min_length=1, max_length=63)
    labels: dict[str, str] = Field(default_factory=dict, max_length=16)

    @model_validator(mode="after")
    def _not_empty(self) -> PolicyMatch:
        if not (self.project or self.domain or self.workflow or self.namespace or self.labels):
            raise ValueError("match needs at least one of project, domain, workflow, namespace, labels")
        return self

    @property
    def workflow_label(self) -> str | None:
        return sanitize_label_value(self.workflow) if self.workflow else None


class Policy(BaseModel):
    """One entry of `policies`: what Flyte task pods of a project, domain, workflow (or namespace, labels) get
    instead of the global keys. Unset keys keep the global value; maps merge per resource name."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True, alias_generator=_kebab)

    name: str = Field(min_length=1, max_length=63)
    match: PolicyMatch
    default_requests: QuantityMap | None = None
    platform_limits: QuantityMap | None = None
    on_limit_exceeded: Literal["clamp", "reject"] | None = None
    # Catalog names (`A100`, `T4`), device strings (`nvidia-tesla-a100`) or device classes (`GPU`, `TPU`,
    # `GOOGLE_TPU`); None allows every accelerator, [] none.
    allowed_accelerators: list[str] | None = Field(default=None, max_length=64)
    max_gpus: int | None = Field(default=None, ge=0)
    # `true` (a `/dev/shm` sized by the kubelet), a size such as `2Gi`, or `false`: for pods that ask for none.
    shared_memory: bool | str | None = None

    @field_validator("default_requests", "platform_limits", mode="before")
    @classmethod
    def _quantities(cls, value: Any) -> Any:
        return _quantity_map(value)

    @field_validator("allowed_accelerators")
    @classmethod
    def _known_accelerators(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        for entry in value:
            if not _is_device_class(entry) and find_device(entry) is None and not _DEVICE_STRING.match(entry):
                raise ValueError(
                    f"{entry!r} is neither a device class (GPU, TPU, ...), a catalog name (A100, T4, ...) "
                    "nor a device string (nvidia-tesla-a100)"
                )
        return value

    @field_validator("shared_memory")
    @classmethod
    def _shm_size(cls, value: bool | str | None) -> bool | str | None:
        if isinstance(value, str):
            if parse_quantity(value) <= 0:
                raise ValueError("a shared memory size must be above zero (use true for the default size)")
            return canonical_quantity(value)
        return value

    @property
    def changed_keys(self) -> list[str]:
        """The config keys this policy sets, spelled as in the config file."""
        skip = {"name", "match"}
        return [_kebab(k) for k in type(self).model_fields if k not in skip and getattr(self, k) is not None]


# A device string outside the catalog, as a node label value spells it (`nvidia-a100g`): lower case, a dash.
_DEVICE_STRING = re.compile(r"^[a-z0-9][a-z0-9.]*(-[a-z0-9.]+)+$")


def _is_device_class(text: str) -> bool:
    try:
        DeviceClass.parse(text)
    except ValueError:
        return False
    return True


# flyteadmin's default `namespace_mapping.template`: every task of a project's domain runs in `<project>-<domain>`.
DEFAULT_NAMESPACE_TEMPLATE: Final = "{{ project }}-{{ domain }}"
_NAMESPACE_TEMPLATE_TEXT = re.compile(r"[a-z0-9.-]*")


class WebhookConfig(BaseModel):
    """Validated configuration. Construct with `WebhookConfig.from_mapping(...)` to apply the preset."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        frozen=True,
        alias_generator=_kebab,
        validate_default=True,
    )

    # Each key's `description` is its documentation: `make generate` renders the README tables, the chart's
    # values.schema.json and the key list in values.yaml from this model.
    preset: Preset = Field(
        Preset.eks,
        description="label keys of a cluster flavour: `eks` (Flyte's defaults, cluster-autoscaler), `gke`, "
        "`karpenter`, `gfd` (NVIDIA GPU feature discovery), `amd`; a preset only fills the keys not set",
    )
    annotation_prefix: str = Field(
        DEFAULT_ANNOTATION_PREFIX,
        description="prefix of the annotations (a DNS subdomain followed by `/`); the chart's `matchConditions` "
        "use it too",
        json_schema_extra={"pattern": f"^{ANNOTATION_PREFIX_PATTERN}$", "maxLength": 254},
    )
    gpu_resource_name: str = Field(
        "nvidia.com/gpu",
        min_length=1,
        description="extended resource name a GPU with no device of a known class is counted as (the generic "
        "`gpu`, the IDL GPU); a device counts under its class's resource, an NVIDIA one under `nvidia.com/gpu` "
        "whatever this key says, as in Flyte 2",
    )
    gpu_device_node_label: str = Field(
        "k8s.amazonaws.com/accelerator",
        min_length=1,
        description="node label of the device requirement and toleration",
    )
    gpu_partition_size_node_label: str = Field(
        "k8s.amazonaws.com/gpu-partition-size",
        min_length=1,
        description="node label of the partition requirement and toleration",
    )
    gpu_unpartitioned_node_selector_requirement: NodeSelectorRequirement | None = Field(
        None,
        description="node selector requirement (`{key, operator, values}`) for `.unpartitioned`; unset: "
        "`<partition label> DoesNotExist`",
    )
    gpu_unpartitioned_toleration: Toleration | None = Field(
        None, description="toleration (`{key, operator, value, effect}`) added for `.unpartitioned`"
    )
    accelerator_devices: dict[str, str] = Field(
        default_factory=dict,
        description="device → node label value; a key is any spelling of a catalog device (`nvidia-h100`, `H100`, "
        "`nvidia-tesla-h100` are one device); the presets fill the label values their clusters use",
    )
    accelerator_device_classes: dict[DeviceClass, DeviceClassConfig] = Field(
        default_factory=dict,
        description="device class (`NVIDIA_GPU`, `GOOGLE_TPU`, `AMAZON_NEURON`, `AMD_GPU`, `HABANA_GAUDI`) → "
        "`resource-name`, `device-node-label`, `partition-size-node-label`, "
        "`unpartitioned-node-selector-requirement`, `unpartitioned-toleration`; unset fields take Flyte 2's "
        "defaults (`GOOGLE_TPU` → `google.com/tpu`, `cloud.google.com/gke-tpu-accelerator`, "
        "`cloud.google.com/gke-tpu-topology`; `AMAZON_NEURON` → `aws.amazon.com/neuron`; `AMD_GPU` → "
        "`amd.com/gpu`; `HABANA_GAUDI` → `habana.ai/gaudi`; `NVIDIA_GPU` → `nvidia.com/gpu`), then the `gpu-*` "
        "node label keys",
        json_schema_extra=_any_key_spelling,
    )
    mig_strategy: Literal["single", "mixed"] = Field(
        "single",
        description="`single`: keep `nvidia.com/gpu` + the partition label; `mixed`: count a MIG slice as "
        "`nvidia.com/mig-<profile>`",
    )
    accelerator_placement: Literal["affinity", "nodeSelector"] = Field(
        "affinity", description="`affinity` (Flyte's), or `nodeSelector` for single-value requirements"
    )
    default_cpus: str = Field("1000m", description="Flyte's fallback CPU request when neither request nor limit is set")
    default_memory: str = Field(
        "1024Mi", description="Flyte's fallback memory request when neither request nor limit is set"
    )
    default_requests: QuantityMap = Field(
        default_factory=dict,
        description="resource → default request (flyteadmin's `task_resources.defaults`)",
    )
    platform_limits: QuantityMap = Field(
        default_factory=dict,
        description="resource → maximum (flyteadmin's `task_resources.limits`): values above are clamped, or rejected",
    )
    on_limit_exceeded: Literal["clamp", "reject"] = Field(
        "clamp", description="`clamp` (Flyte's runtime behaviour, with a warning) or `reject` (deny the pod)"
    )
    resource_tolerations: dict[str, list[Toleration]] = Field(
        default_factory=dict,
        description="resource name → tolerations added when a container uses it; the `eks` and `karpenter` "
        "presets tolerate `nvidia.com/gpu` and `aws.amazon.com/neuron` (`Exists`, `NoSchedule`): AWS's guides, "
        "EKS Auto Mode and Karpenter's GPU NodePools taint those nodes so and run no ExtendedResourceToleration "
        "admission plugin (GKE does), so a GPU count without an accelerator is not left Pending; the `gke` preset "
        "tolerates `nvidia.com/gpu` and `google.com/tpu` as GKE's ExtendedResourceToleration would after us, so "
        "the apiserver calls the webhook once per GPU or TPU pod, not twice; setting the key replaces the preset's",
    )
    on_invalid: Literal["reject", "ignore"] = Field(
        "reject", description="`reject` (deny bad annotations) or `ignore` (admit unchanged, with a warning)"
    )
    on_error: Literal["deny", "allow"] = Field(
        "deny", description="our own bug: `deny`, or `allow` unchanged with a warning"
    )
    warnings: Literal["changes", "all"] = Field(
        "changes",
        description="which notes `kubectl` (and flytepropeller's log) get as admission warnings: `changes`, only "
        "what alters the request (a value clamped, lowered or raised, dropped or replaced; a request above every "
        "configured limit), or `all`, routine fills too (a request set from its limit, a default, an affinity or "
        "toleration added); `explain` lists every note and the `applied` annotation the result either way",
    )
    flyte_task_pods: bool = Field(
        False,
        description="also mutate Flyte task pods without an annotation of ours (the chart's `matchConditions` then "
        'send pods labelled `project`, `domain` and `task-name`, or `flyte.org/managed: "true"`): the defaults '
        "and limits of the matching policy, or the global ones, hold for every task pod",
    )
    namespace_template: str = Field(
        DEFAULT_NAMESPACE_TEMPLATE,
        max_length=253,
        description="the namespace Flyte runs a project's domain in (flyteadmin's `namespace_mapping.template`): "
        "a pod's `project` and `domain` labels count only there, for policies and `flyte-task-pods`; empty trusts "
        "the labels anywhere (a convenience, not a boundary)",
    )
    policies: list[Policy] = Field(
        default_factory=list,
        max_length=256,
        description="per project, domain, workflow, namespace or pod labels: `default-requests`, "
        "`platform-limits`, `on-limit-exceeded`, `allowed-accelerators`, `max-gpus`, `shared-memory`; the most "
        'specific match wins, merged key by key onto the global keys (README, "Policies")',
    )

    @field_validator("annotation_prefix")
    @classmethod
    def _prefix_shape(cls, value: str) -> str:
        return check_annotation_prefix(value)

    @field_validator("namespace_template")
    @classmethod
    def _namespace_template(cls, value: str) -> str:
        rest = value.replace("{{ project }}", "").replace("{{ domain }}", "")
        if value and not _NAMESPACE_TEMPLATE_TEXT.fullmatch(rest):
            raise ValueError("a namespace name around '{{ project }}' and '{{ domain }}': lower case, digits, '-', '.'")
        return value

    @field_validator("default_cpus", "default_memory")
    @classmethod
    def _one_quantity(cls, value: str) -> str:
        parse_quantity(value)
        return canonical_quantity(value)

    @field_validator("default_requests", "platform_limits", mode="before")
    @classmethod
    def _quantity_map(cls, value: Any) -> Any:
        return _quantity_map(value)

    @field_validator("policies")
    @classmethod
    def _unique_policy_names(cls, value: list[Policy]) -> list[Policy]:
        seen: set[str] = set()
        for policy in value:
            if policy.name in seen:
                raise ValueError(f"policy name {policy.name!r} is used twice; names identify policies in messages")
            seen.add(policy.name)
        return value

    @field_validator("accelerator_devices")
    @classmethod
    def _canonical_devices(cls, value: dict[str, str]) -> dict[str, str]:
        # Each key also under its catalog device string, so that every spelling of a device finds its value
        # with one lookup (an admission asks on every pod); a key the user wrote wins over a derived one.
        derived = {}
        for key, label in value.items():
            entry = find_device(key)
            if entry is not None:
                derived[entry.device] = label
        return {**derived, **value}

    @field_validator("accelerator_device_classes", mode="before")
    @classmethod
    def _class_names(cls, value: Any) -> Any:
        # Either spelling of a class, any case (Flyte upper-cases the keys too: viper lower-cases YAML keys).
        if not isinstance(value, dict):
            return value
        return {DeviceClass.parse(str(name)): entry for name, entry in value.items()}

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
        devices = self.accelerator_devices
        return devices[canonical] if canonical in devices else devices.get(device, canonical)

    def device_class_config(self, device_class: DeviceClass) -> DeviceClassSettings:
        """The resolved settings of a device class: the user's entry, else the class's built-in value (Flyte 2's
        defaults), else the global `gpu-*` keys. A plain dataclass: it is asked for on every admission."""
        given = self.accelerator_device_classes.get(device_class) or _NO_CLASS_CONFIG
        built_in = DEVICE_CLASS_DEFAULTS[device_class]
        return DeviceClassSettings(
            resource_name=given.resource_name or built_in.resource_name or self.gpu_resource_name,
            device_node_label=given.device_node_label or built_in.device_node_label or self.gpu_device_node_label,
            partition_size_node_label=given.partition_size_node_label
            or built_in.partition_size_node_label
            or self.gpu_partition_size_node_label,
            unpartitioned_node_selector_requirement=given.unpartitioned_node_selector_requirement
            or self.gpu_unpartitioned_node_selector_requirement,
            unpartitioned_toleration=given.unpartitioned_toleration or self.gpu_unpartitioned_toleration,
        )


class ConfigError(Refusal):
    """An invalid configuration; the message names each bad key and its value."""


_ERRORS_SHOWN: Final = 10


def _describe(exc: ValidationError, data: dict[str, Any]) -> str:
    """One line per error (at most ten), each value shown bounded: a config can be a megabyte of YAML."""
    errors = exc.errors()
    lines = []
    for error in errors[:_ERRORS_SHOWN]:
        path = [str(part) for part in error["loc"]]
        key = path[0] if path else "config"
        where = ".".join(path) or "config"
        nested = len(path) > 1  # inside a policy or a map: show the offending value, not the whole key's
        if error["type"] == "extra_forbidden":
            valid = "" if nested else f" (valid keys: {', '.join(sorted(_KEYS))})"
            lines.append(f"{excerpt(where, 200)}: unknown key{valid}")
            continue
        value = error.get("input") if nested else data.get(key, error.get("input"))
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(bounded(f"{excerpt(where, 200)}: {shown_value(value)}: {message}", 512))
    if len(errors) > _ERRORS_SHOWN:
        lines.append(f"... and {len(errors) - _ERRORS_SHOWN} more errors")
    return "invalid configuration:\n  " + "\n  ".join(lines)


_KEYS = frozenset(_kebab(name) for name in WebhookConfig.model_fields)
