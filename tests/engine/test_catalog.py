"""The device catalog and device classes: one entry per device, both SDKs' spellings, per-preset labels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from webhook.engine import accelerators
from webhook.engine.accelerators import H100, V5E, V6E, Accelerator, lookup_accelerator
from webhook.engine.catalog import CATALOG, DeviceClass, by_name, find_device
from webhook.engine.config import ConfigError, WebhookConfig
from webhook.engine.pod import accelerator_constraints, apply_accelerator, effective_gpu_resource_name

PRESETS = ("eks", "gke", "karpenter", "gfd", "amd")


def test_every_flytekit_constant_is_a_catalog_entry() -> None:
    constants = [n for n in accelerators.__all__ if isinstance(getattr(accelerators, n), accelerators.BaseAccelerator)]
    assert len(constants) == 18
    for name in constants:
        constant = getattr(accelerators, name)
        entry = find_device(constant.device)
        assert entry is not None and entry.flytekit == name, name
        assert lookup_accelerator(entry.name if entry.name == name else constant.device) == constant


def test_spellings_are_unique_across_entries() -> None:
    seen: dict[str, str] = {}
    for entry in CATALOG:
        for spelling in set(entry.names()):
            assert seen.setdefault(spelling.upper(), entry.name) == entry.name, spelling
        assert entry.device == entry.device.lower() and " " not in entry.device  # a valid label value


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("nvidia-h100", "H100"),  # flytekit 1.x
        ("nvidia-tesla-h100", "H100"),  # the Flyte 2 SDK
        ("H100", "H100"),
        ("h100", "H100"),  # Flyte's table is looked up upper-cased
        ("A100 80G", "A100_80G"),
        ("nvidia-a100-80gb", "A100_80G"),
        ("A100_80GB", "A100_80G"),  # flytekit's constant name
        ("RTX PRO 6000", "RTX_PRO_6000"),
        ("tpu-v6e-slice", "V6E"),
        ("TRN1", "Trn1"),
        ("aws-neuron-trn1", "Trn1"),
        ("GAUDI1", "Gaudi1"),
        ("amd-mi300x", "MI300X"),
    ],
)
def test_find_device_under_any_spelling(text: str, name: str) -> None:
    entry = find_device(text)
    assert entry is not None and entry.name == name


def test_unknown_devices_are_not_in_the_catalog() -> None:
    assert find_device("nvidia-x9000") is None
    assert by_name("h100") is None  # the SDK's type names are case-sensitive


@pytest.mark.parametrize(
    ("name", "device_class", "device", "partitions"),
    [
        ("H100", DeviceClass.NVIDIA_GPU, "nvidia-h100", 6),
        ("H200", DeviceClass.NVIDIA_GPU, "nvidia-h200", 6),
        ("A100", DeviceClass.NVIDIA_GPU, "nvidia-tesla-a100", 5),
        ("A100_80G", DeviceClass.NVIDIA_GPU, "nvidia-a100-80gb", 5),
        ("B200", DeviceClass.NVIDIA_GPU, "nvidia-b200", 0),
        ("V5E", DeviceClass.GOOGLE_TPU, "tpu-v5-lite-podslice", 8),
        ("V5P", DeviceClass.GOOGLE_TPU, "tpu-v5p-slice", 11),
        ("V6E", DeviceClass.GOOGLE_TPU, "tpu-v6e-slice", 8),
        ("Inf2", DeviceClass.AMAZON_NEURON, "aws-neuron-inf2", 0),
        ("MI355X", DeviceClass.AMD_GPU, "amd-mi355x", 0),
        ("Gaudi1", DeviceClass.HABANA_GAUDI, "habana-gaudi-dl1", 0),
    ],
)
def test_catalog_entries(name: str, device_class: DeviceClass, device: str, partitions: int) -> None:
    entry = by_name(name)
    assert entry is not None
    assert (entry.device_class, entry.device, len(entry.partitions)) == (device_class, device, partitions)


def test_device_class_spellings() -> None:
    assert DeviceClass.parse("TPU") is DeviceClass.GOOGLE_TPU
    assert DeviceClass.parse("google_tpu") is DeviceClass.GOOGLE_TPU
    assert DeviceClass.parse("GPU") is DeviceClass.NVIDIA_GPU
    assert DeviceClass.GOOGLE_TPU.sdk_name == "TPU"
    with pytest.raises(ValueError, match="'FPGA' is not a device class; valid: GPU/NVIDIA_GPU, TPU/GOOGLE_TPU"):
        DeviceClass.parse("FPGA")


def test_accelerators_carry_their_device_class() -> None:
    assert V5E.slice_2x4.device_class is DeviceClass.GOOGLE_TPU  # a flytekit TPU is a TPU, not an NVIDIA GPU
    assert H100.device_class is DeviceClass.NVIDIA_GPU
    assert lookup_accelerator("aws-neuron-trn1").device_class is DeviceClass.AMAZON_NEURON
    assert Accelerator("x").device_class is DeviceClass.NVIDIA_GPU  # the IDL default
    assert Accelerator("x", device_class=DeviceClass.AMD_GPU).device_class is DeviceClass.AMD_GPU
    assert V6E.slice_2x4.mig_profile is None and Accelerator("nvidia-h100", "1g.10gb").mig_profile == "1g.10gb"


# --- device classes in the backend ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accelerator", "resource"),
    [
        (Accelerator("nvidia-tesla-t4"), "nvidia.com/gpu"),
        (V6E.slice_2x4, "google.com/tpu"),
        (lookup_accelerator("Trn1"), "aws.amazon.com/neuron"),
        (lookup_accelerator("MI300X"), "amd.com/gpu"),
        (lookup_accelerator("Gaudi1"), "habana.ai/gaudi"),
    ],
)
@pytest.mark.parametrize("preset", PRESETS)
def test_resource_name_per_device_class(accelerator: Any, resource: str, preset: str) -> None:
    # A device's class decides its resource, also under the `amd` preset's global `gpu-resource-name`.
    config = WebhookConfig.from_mapping({"preset": preset})
    assert effective_gpu_resource_name(config, accelerator) == resource
    assert effective_gpu_resource_name(config, accelerator, "example.com/x") == "example.com/x"


@pytest.mark.parametrize("preset", PRESETS)
def test_tpus_are_placed_by_the_gke_tpu_labels(preset: str) -> None:
    config = WebhookConfig.from_mapping({"preset": preset})
    requirements, tolerations = accelerator_constraints(V6E.slice_2x4, config)
    assert requirements == [
        {"key": "cloud.google.com/gke-tpu-accelerator", "operator": "In", "values": ["tpu-v6e-slice"]},
        {"key": "cloud.google.com/gke-tpu-topology", "operator": "In", "values": ["2x4"]},
    ]
    assert [t["key"] for t in tolerations] == [
        "cloud.google.com/gke-tpu-accelerator",
        "cloud.google.com/gke-tpu-topology",
    ]


def test_gke_places_a_tpu_pod_and_a_gpu_pod_by_their_own_labels() -> None:
    config = WebhookConfig.from_mapping({"preset": "gke"})
    pod = {"spec": {"containers": [{"name": "p", "resources": {"limits": {"google.com/tpu": "4"}}}]}}
    result = apply_accelerator(pod, V5E.slice_2x4.to_flyte_idl(), config=config, gpu_resource_name="google.com/tpu")
    terms = result.pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"] == [
        {
            "matchExpressions": [
                {"key": "cloud.google.com/gke-tpu-accelerator", "operator": "In", "values": ["tpu-v5-lite-podslice"]},
                {"key": "cloud.google.com/gke-tpu-topology", "operator": "In", "values": ["2x4"]},
            ]
        }
    ]
    requirements, _ = accelerator_constraints(Accelerator("nvidia-tesla-a100", "1g.5gb"), config)
    assert [r["key"] for r in requirements] == [
        "cloud.google.com/gke-accelerator",
        "cloud.google.com/gke-gpu-partition-size",
    ]


def test_device_class_config_overrides_field_by_field() -> None:
    config = WebhookConfig.from_mapping(
        {
            "accelerator-device-classes": {
                "tpu": {"partition-size-node-label": "example.com/topology"},
                "NEURON": {"device-node-label": "karpenter.k8s.aws/instance-accelerator-name"},
            }
        }
    )
    tpu = config.device_class_config(DeviceClass.GOOGLE_TPU)
    assert (tpu.resource_name, tpu.device_node_label, tpu.partition_size_node_label) == (
        "google.com/tpu",
        "cloud.google.com/gke-tpu-accelerator",
        "example.com/topology",
    )
    neuron = config.device_class_config(DeviceClass.AMAZON_NEURON)
    assert neuron.device_node_label == "karpenter.k8s.aws/instance-accelerator-name"
    assert neuron.partition_size_node_label == "k8s.amazonaws.com/gpu-partition-size"  # the global key
    with pytest.raises(ConfigError, match="accelerator-device-classes"):
        WebhookConfig.from_mapping({"accelerator-device-classes": {"FPGA": {}}})
    with pytest.raises(ConfigError, match="accelerator-device-classes"):
        WebhookConfig.from_mapping({"accelerator-device-classes": {"TPU": {"resource": "x"}}})


# --- the H100 mismatch ----------------------------------------------------------------------------------------

H100_LABEL = {
    "eks": "nvidia-h100",
    "gke": "nvidia-h100-80gb",
    "karpenter": "h100",
    "gfd": "NVIDIA-H100-80GB-HBM3",
    "amd": "nvidia-h100",
}


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("spelling", ["nvidia-h100", "nvidia-tesla-h100", "H100"])
def test_both_h100_spellings_reach_one_label_value(preset: str, spelling: str) -> None:
    """flytekit 1.x sends nvidia-h100, the Flyte 2 SDK nvidia-tesla-h100: one device, one label per preset."""
    config = WebhookConfig.from_mapping({"preset": preset})
    requirements, _ = accelerator_constraints(lookup_accelerator(spelling), config)
    assert requirements[0]["values"] == [H100_LABEL[preset]]
    requirements, _ = accelerator_constraints(Accelerator(spelling), config)
    assert requirements[0]["values"] == [H100_LABEL[preset]]


def test_accelerator_devices_keys_match_any_spelling() -> None:
    config = WebhookConfig.from_mapping({"accelerator-devices": {"nvidia-tesla-h100": "h100-sxm", "X1": "x-one"}})
    assert config.device_label_value("nvidia-h100") == "h100-sxm"
    assert config.device_label_value("H100") == "h100-sxm"
    assert config.device_label_value("X1") == "x-one"  # not in the catalog: verbatim key
    assert config.device_label_value("nvidia-x9000") == "nvidia-x9000"


def test_amd_preset_uses_the_rocm_labeller_names() -> None:
    config = WebhookConfig.from_mapping({"preset": "amd"})
    requirements, _ = accelerator_constraints(lookup_accelerator("MI300X"), config)
    assert requirements == [
        {"key": "amd.com/gpu.product-name", "operator": "In", "values": ["AMD_Instinct_MI300X_OAM"]}
    ]
    assert effective_gpu_resource_name(config, lookup_accelerator("MI300X")) == "amd.com/gpu"


# --- Flyte's own tables (flyteplugins config.go defaults, recorded in vectors/flyteplugins_accelerators.json) ----

FLYTEPLUGINS = json.loads((Path(__file__).parent / "vectors" / "flyteplugins_accelerators.json").read_text())


@pytest.mark.parametrize(("name", "value"), sorted(FLYTEPLUGINS["accelerator_devices"].items()))
def test_flytes_device_table_gives_the_catalogs_device(name: str, value: str) -> None:
    """Every row of Flyte's device-name table: the catalog knows the name and gives the same label value."""
    entry = find_device(name)
    assert entry is not None, name
    assert entry.device == value
    assert WebhookConfig.from_mapping({}).device_label_value(name) == value


@pytest.mark.parametrize("device_class", list(DeviceClass))
def test_device_class_defaults_are_flytes(device_class: DeviceClass) -> None:
    flyte = FLYTEPLUGINS["accelerator_device_classes"][device_class.value]
    ours = WebhookConfig.from_mapping({}).device_class_config(device_class)
    assert ours.resource_name == flyte["ResourceName"]
    assert ours.device_node_label == flyte.get("DeviceNodeLabel", "k8s.amazonaws.com/accelerator")
    assert ours.partition_size_node_label == flyte.get("PartitionSizeNodeLabel", "k8s.amazonaws.com/gpu-partition-size")


def test_karpenter_places_neuron_devices_by_its_accelerator_labels() -> None:
    config = WebhookConfig.from_mapping({"preset": "karpenter"})
    requirements, _ = accelerator_constraints(lookup_accelerator("Trn1"), config)
    assert requirements == [
        {"key": "karpenter.k8s.aws/instance-accelerator-name", "operator": "In", "values": ["trainium"]}
    ]
    requirements, _ = accelerator_constraints(lookup_accelerator("T4"), config)
    assert requirements == [{"key": "karpenter.k8s.aws/instance-gpu-name", "operator": "In", "values": ["t4"]}]


# --- whole devices: `.unpartitioned` for every device with partitions, and the default without a partition ----


# Names with spaces (`H100 80G`) have no dotted form; they are asked for by their device string.
DOTTED = [e for e in CATALOG if e.partitions and " " not in (e.flytekit or e.name)]


@pytest.mark.parametrize("entry", DOTTED, ids=lambda e: e.name)
def test_every_device_with_partitions_accepts_unpartitioned(entry: Any) -> None:
    name = entry.flytekit or entry.name
    accelerator = lookup_accelerator(f"{name}.unpartitioned")
    assert accelerator.is_unpartitioned and accelerator.partition_size is None
    assert find_device(accelerator.device) is entry
    assert accelerator.to_flyte_idl().unpartitioned  # what flytekit sends for `.unpartitioned`


def test_a_named_partition_of_a_device_flytekit_has_no_partitioned_constant_for() -> None:
    assert lookup_accelerator("H100.partition_1g_10gb") == Accelerator("nvidia-h100", "1g.10gb")
    with pytest.raises(ValueError, match=r"did you mean H100\.partition_1g_10gb"):
        lookup_accelerator("H100.partition_1g_10g")
    with pytest.raises(ValueError, match="T4 has no partitions"):
        lookup_accelerator("T4.unpartitioned")


PARTITION_ABSENT = {"key": "cloud.google.com/gke-gpu-partition-size", "operator": "DoesNotExist"}


@pytest.mark.parametrize("text", ["H100", "H100.unpartitioned", "nvidia-tesla-h100", "A100"])
def test_a_device_with_mig_profiles_and_no_partition_is_held_to_whole_devices(text: str) -> None:
    requirements, _ = accelerator_constraints(lookup_accelerator(text), WebhookConfig.from_mapping({"preset": "gke"}))
    assert PARTITION_ABSENT in requirements


@pytest.mark.parametrize(
    ("text", "config"),
    [
        ("T4", {"preset": "gke"}),  # no MIG profiles
        ("H100.partition_1g_10gb", {"preset": "gke"}),  # a slice asked for
        ("H100", {"preset": "gfd"}),  # mixed: the slice is its own resource, nvidia.com/gpu never lands there
        ("V5E", {"preset": "gke"}),  # a TPU topology is not a slice of a device
    ],
)
def test_no_whole_device_requirement_where_it_is_not_needed(text: str, config: dict[str, str]) -> None:
    requirements, _ = accelerator_constraints(lookup_accelerator(text), WebhookConfig.from_mapping(config))
    assert all(r["operator"] != "DoesNotExist" for r in requirements), requirements
