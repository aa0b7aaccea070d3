"""`webhook.engine.config`: defaults (Flyte's `k8s` plugin keys), presets, overrides and error messages."""

from __future__ import annotations

from typing import Any

import pytest

from webhook.engine.config import (
    PRESETS,
    ConfigError,
    NodeSelectorRequirement,
    Preset,
    Toleration,
    WebhookConfig,
)


def test_defaults_are_flytes() -> None:
    config = WebhookConfig.from_mapping({})
    assert config == WebhookConfig.from_mapping(None)
    assert config.preset is Preset.eks
    assert config.annotation_prefix == "resources.flyte.org/"
    assert config.gpu_resource_name == "nvidia.com/gpu"
    assert config.gpu_device_node_label == "k8s.amazonaws.com/accelerator"
    assert config.gpu_partition_size_node_label == "k8s.amazonaws.com/gpu-partition-size"
    assert config.gpu_unpartitioned_node_selector_requirement is None
    assert config.gpu_unpartitioned_toleration is None
    assert config.mig_strategy == "single"
    assert config.accelerator_placement == "affinity"
    assert config.on_limit_exceeded == "clamp"
    assert config.accelerator_devices == {}
    assert config.default_requests == {}
    assert config.platform_limits == {}
    # Flyte's default-cpus 1000m / default-memory 1024Mi, as canonical quantities.
    assert (config.default_cpus, config.default_memory) == ("1", "1Gi")


# --- presets --------------------------------------------------------------------------------------------------

PRESET_LABELS = {
    "eks": ("nvidia.com/gpu", "k8s.amazonaws.com/accelerator", "k8s.amazonaws.com/gpu-partition-size", "single"),
    "gke": (
        "nvidia.com/gpu",
        "cloud.google.com/gke-accelerator",
        "cloud.google.com/gke-gpu-partition-size",
        "single",
    ),
    "karpenter": (
        "nvidia.com/gpu",
        "karpenter.k8s.aws/instance-gpu-name",
        "k8s.amazonaws.com/gpu-partition-size",
        "mixed",
    ),
    "gfd": ("nvidia.com/gpu", "nvidia.com/gpu.product", "k8s.amazonaws.com/gpu-partition-size", "mixed"),
    "amd": ("amd.com/gpu", "amd.com/gpu.product-name", "k8s.amazonaws.com/gpu-partition-size", "single"),
}


@pytest.mark.parametrize("preset", sorted(PRESET_LABELS))
def test_preset_sets_documented_keys(preset: str) -> None:
    config = WebhookConfig.from_mapping({"preset": preset})
    assert config.preset == Preset(preset)
    resource, device_label, partition_label, mig = PRESET_LABELS[preset]
    assert config.gpu_resource_name == resource
    assert config.gpu_device_node_label == device_label
    assert config.gpu_partition_size_node_label == partition_label
    assert config.mig_strategy == mig


def test_every_preset_is_covered() -> None:
    assert set(PRESET_LABELS) == {p.value for p in Preset} == {p.value for p in PRESETS}


@pytest.mark.parametrize(
    ("preset", "device", "label_value"),
    [
        ("karpenter", "nvidia-tesla-a100", "a100"),
        ("karpenter", "nvidia-a100-80gb", "a100"),
        ("karpenter", "nvidia-tesla-t4", "t4"),
        ("karpenter", "nvidia-h100", "h100"),
        ("gfd", "nvidia-tesla-t4", "Tesla-T4"),
        ("gfd", "nvidia-tesla-a100", "A100-SXM4-40GB"),
        ("gfd", "nvidia-h100", "NVIDIA-H100-80GB-HBM3"),
        ("eks", "nvidia-tesla-t4", "nvidia-tesla-t4"),
        ("gke", "nvidia-tesla-t4", "nvidia-tesla-t4"),
        ("karpenter", "some-new-gpu", "some-new-gpu"),  # unmapped: verbatim
    ],
)
def test_preset_device_label_values(preset: str, device: str, label_value: str) -> None:
    assert WebhookConfig.from_mapping({"preset": preset}).device_label_value(device) == label_value


def test_explicit_keys_override_the_preset() -> None:
    config = WebhookConfig.from_mapping(
        {
            "preset": "gke",
            "gpu-device-node-label": "example.com/gpu-type",
            "gpu-resource-name": "example.com/gpu",
        }
    )
    assert config.gpu_device_node_label == "example.com/gpu-type"
    assert config.gpu_resource_name == "example.com/gpu"
    # Keys not given still come from the preset.
    assert config.gpu_partition_size_node_label == "cloud.google.com/gke-gpu-partition-size"


def test_explicit_mig_strategy_overrides_karpenter() -> None:
    config = WebhookConfig.from_mapping({"preset": "karpenter", "mig-strategy": "single"})
    assert config.mig_strategy == "single"
    assert config.gpu_device_node_label == "karpenter.k8s.aws/instance-gpu-name"


def test_explicit_accelerator_devices_replace_the_preset_map() -> None:
    # A preset only fills keys the user did not set: a user map replaces the preset's map as a whole.
    config = WebhookConfig.from_mapping({"preset": "karpenter", "accelerator-devices": {"nvidia-l4": "L4"}})
    assert config.accelerator_devices == {"nvidia-l4": "L4"}
    assert config.device_label_value("nvidia-tesla-a100") == "nvidia-tesla-a100"


def test_presets_are_not_mutated_by_configs() -> None:
    before = {k: dict(v) for k, v in PRESETS.items()}
    WebhookConfig.from_mapping({"preset": "karpenter", "accelerator-devices": {"x": "y"}})
    WebhookConfig.from_mapping({"preset": "gfd", "gpu-device-node-label": "z"})
    assert {k: dict(v) for k, v in PRESETS.items()} == before


def test_snake_case_names_are_accepted() -> None:
    config = WebhookConfig.from_mapping({"gpu_resource_name": "amd.com/gpu"})
    assert config.gpu_resource_name == "amd.com/gpu"


def test_config_is_frozen() -> None:
    config = WebhookConfig.from_mapping({})
    with pytest.raises(ValueError):
        config.gpu_resource_name = "x"  # type: ignore[misc]


# --- typed keys -----------------------------------------------------------------------------------------------


def test_quantity_maps_are_canonical() -> None:
    config = WebhookConfig.from_mapping(
        {
            "default-requests": {"cpu": 0.5, "memory": "1024Mi"},
            "platform-limits": {"cpu": 2, "memory": "2048Mi", "nvidia.com/gpu": "1", "gpu": 4},
            "default-cpus": "500m",
            "default-memory": "2048Mi",
        }
    )
    assert config.default_requests == {"cpu": "500m", "memory": "1Gi"}
    assert config.platform_limits == {"cpu": "2", "memory": "2Gi", "nvidia.com/gpu": "1", "gpu": "4"}
    assert (config.default_cpus, config.default_memory) == ("500m", "2Gi")


def test_unpartitioned_requirement_and_toleration() -> None:
    config = WebhookConfig.from_mapping(
        {
            "gpu-unpartitioned-node-selector-requirement": {
                "key": "gpu-unpartitioned",
                "operator": "In",
                "values": ["true"],
            },
            "gpu-unpartitioned-toleration": {"key": "gpu-unpartitioned", "value": "true", "effect": "NoSchedule"},
        }
    )
    assert config.gpu_unpartitioned_node_selector_requirement is not None
    assert config.gpu_unpartitioned_node_selector_requirement.to_pod() == {
        "key": "gpu-unpartitioned",
        "operator": "In",
        "values": ["true"],
    }
    assert config.gpu_unpartitioned_toleration is not None
    assert config.gpu_unpartitioned_toleration.to_pod() == {
        "key": "gpu-unpartitioned",
        "operator": "Equal",
        "value": "true",
        "effect": "NoSchedule",
    }


def test_toleration_to_pod_drops_unset_fields() -> None:
    assert Toleration(operator="Exists").to_pod() == {"operator": "Exists"}
    assert Toleration(key="k", operator="Exists", effect="NoExecute", tolerationSeconds=30).to_pod() == {
        "key": "k",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 30,
    }


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"key": "k", "operator": "In"}, "operator In needs values"),
        ({"key": "k", "operator": "In", "values": []}, "operator In needs values"),
        ({"key": "k", "operator": "Exists", "values": ["a"]}, "operator Exists takes no values"),
    ],
)
def test_node_selector_requirement_shape(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NodeSelectorRequirement(**data)
    with pytest.raises(ConfigError, match="gpu-unpartitioned-node-selector-requirement") as info:
        WebhookConfig.from_mapping({"gpu-unpartitioned-node-selector-requirement": data})
    assert message in str(info.value)


def test_resource_tolerations() -> None:
    config = WebhookConfig.from_mapping(
        {"resource-tolerations": {"nvidia.com/gpu": [{"key": "nvidia.com/gpu", "operator": "Exists"}]}}
    )
    assert [t.to_pod() for t in config.resource_tolerations["nvidia.com/gpu"]] == [
        {"key": "nvidia.com/gpu", "operator": "Exists"}
    ]


@pytest.mark.parametrize("resource", ["nvidia.com/gpu", "google.com/tpu"])
def test_gke_tolerates_what_extended_resource_toleration_adds(resource: str) -> None:
    """GKE's ExtendedResourceToleration adds `{key: <resource>, operator: Exists, effect: NoSchedule}` to a pod asking
    for the resource; the preset adds that very toleration, so the plugin changes nothing after us and the apiserver
    has no reason to call the webhook again."""
    config = WebhookConfig.from_mapping({"preset": "gke"})
    assert [t.to_pod() for t in config.resource_tolerations[resource]] == [
        {"key": resource, "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert WebhookConfig.from_mapping({"preset": "gke", "resource-tolerations": {}}).resource_tolerations == {}


# --- errors name the key and the value -----------------------------------------------------------------------


def config_error(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        WebhookConfig.from_mapping(data)
    return str(info.value)


def test_bad_mig_strategy() -> None:
    message = config_error({"mig-strategy": "both"})
    assert "mig-strategy" in message
    assert "'both'" in message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("accelerator-placement", "taints"),
        ("on-limit-exceeded", "ignore"),
        ("on-invalid", "warn"),
        ("on-error", "retry"),
    ],
)
def test_bad_choice_names_key_and_value(key: str, value: str) -> None:
    message = config_error({key: value})
    assert key in message
    assert repr(value) in message


def test_unknown_key() -> None:
    message = config_error({"gpu-resource": "nvidia.com/gpu"})
    assert "gpu-resource" in message
    assert "unknown key" in message
    assert "gpu-resource-name" in message  # the valid keys are listed


def test_bad_quantity_in_platform_limits() -> None:
    message = config_error({"platform-limits": {"cpu": "2", "memory": "lots"}})
    assert "platform-limits" in message
    assert "memory" in message
    assert "lots" in message


@pytest.mark.parametrize("value", ["-1", "1.5.5", "", "1Gb"])
def test_bad_quantities_in_default_requests(value: str) -> None:
    message = config_error({"default-requests": {"cpu": value}})
    assert "default-requests" in message
    assert "cpu" in message
    assert repr(value) in message


@pytest.mark.parametrize("value", [True, None, ["1"], {"a": 1}])
def test_non_quantity_types_in_platform_limits(value: Any) -> None:
    message = config_error({"platform-limits": {"cpu": value}})
    assert "platform-limits" in message
    assert "cpu" in message
    assert repr(value) in message


@pytest.mark.parametrize("key", ["default-cpus", "default-memory"])
def test_bad_default_quantity(key: str) -> None:
    message = config_error({key: "abc"})
    assert key in message
    assert "'abc'" in message


def test_bad_preset() -> None:
    message = config_error({"preset": "openshift"})
    assert "preset" in message
    assert "'openshift'" in message
    for name in PRESET_LABELS:
        assert name in message


@pytest.mark.parametrize("prefix", ["resources.flyte.org", "a/b/", "/", "x"])
def test_bad_annotation_prefix(prefix: str) -> None:
    message = config_error({"annotation-prefix": prefix})
    assert "annotation-prefix" in message
    assert repr(prefix) in message


def test_every_bad_key_is_reported() -> None:
    message = config_error({"mig-strategy": "both", "on-limit-exceeded": "explode", "nope": 1})
    assert "mig-strategy" in message and "'both'" in message
    assert "on-limit-exceeded" in message and "'explode'" in message
    assert "nope" in message


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_nested_errors_name_the_path_and_the_value() -> None:
    message = config_error({"resource-tolerations": {"nvidia.com/gpu": [{"operator": "Bogus"}]}})
    assert "resource-tolerations.nvidia.com/gpu.0.operator" in message
    assert "Bogus" in message


@pytest.mark.parametrize("value", ["2", ["cpu"], 3])
def test_quantity_map_must_be_a_mapping(value: Any) -> None:
    message = config_error({"platform-limits": value})
    assert "platform-limits" in message
    assert repr(value) in message


def test_zero_platform_values_are_allowed() -> None:
    config = WebhookConfig.from_mapping({"platform-limits": {"ephemeral-storage": "0"}})
    assert config.platform_limits == {"ephemeral-storage": "0"}
