"""Flyte 2 spellings in the `resources` annotation (JSON and compact), read and applied to pods."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from webhook.engine.accelerators import Accelerator
from webhook.engine.catalog import DeviceClass
from webhook.engine.config import WebhookConfig
from webhook.mutation.annotations import InvalidAnnotation, read_annotations, shared_memory_message
from webhook.mutation.decision import Denied
from webhook.mutation.plan import plan_mutation

P = "resources.flyte.org/"
TPU = DeviceClass.GOOGLE_TPU


def read(value: str, name: str = "resources") -> Any:
    request = read_annotations({P + name: value}, P)
    assert request is not None
    return request


@pytest.mark.parametrize(
    ("value", "requests", "limits", "accelerator"),
    [
        (
            "cpu=1:2,memory=8Gi,gpu=A100:2,disk=10Gi",
            {"cpu": "1", "memory": "8Gi", "gpu": "2", "ephemeral-storage": "10Gi"},
            {"cpu": "2", "memory": "8Gi", "gpu": "2", "ephemeral-storage": "10Gi"},
            Accelerator("nvidia-tesla-a100"),
        ),
        (
            '{"cpu": [1, 2], "memory": ["4Gi", "8Gi"], "gpu": "H100:8", "disk": "100Gi"}',
            {"cpu": "1", "memory": "4Gi", "gpu": "8", "ephemeral-storage": "100Gi"},
            {"cpu": "2", "memory": "8Gi", "gpu": "8", "ephemeral-storage": "100Gi"},
            Accelerator("nvidia-h100"),
        ),
        (
            '{"gpu": {"device": "H100", "quantity": 1, "partition": "1g.10gb", "device_class": "GPU"}}',
            {"gpu": "1"},
            {"gpu": "1"},
            Accelerator("nvidia-h100", "1g.10gb"),
        ),
        (
            '{"gpu": {"device": "V6E", "partition": "2x4", "device_class": "TPU"}}',
            {"gpu": "1"},
            {"gpu": "1"},
            Accelerator("tpu-v6e-slice", "2x4", device_class=TPU),
        ),
        ("gpu=A100 80G:8", {"gpu": "8"}, {"gpu": "8"}, Accelerator("nvidia-a100-80gb")),
        ("gpu=T4 shared:1", {"gpu": "1"}, {"gpu": "1"}, Accelerator("nvidia-tesla-t4-shared")),
        ('{"gpu": "Trn1:16"}', {"gpu": "16"}, {"gpu": "16"}, Accelerator("aws-neuron-trn1")),
        ('{"gpu": 2}', {"gpu": "2"}, {"gpu": "2"}, None),  # a bare count places nothing
        ("gpu=1:2", {"gpu": "1"}, {"gpu": "2"}, None),  # numbers: flytekit's request:limit pair
    ],
)
def test_flyte2_resources(value: str, requests: dict[str, str], limits: dict[str, str], accelerator: Any) -> None:
    request = read(value)
    assert (dict(request.requests), dict(request.limits)) == (requests, limits)
    assert request.accelerator == accelerator
    assert request.accelerator_from == ("resources" if accelerator is not None else None)


@pytest.mark.parametrize(
    ("value", "size"),
    [("cpu=1,shm=auto", None), ('{"shm": "auto"}', None), ("shm=2Gi", "2Gi"), ('{"shm": "2048Mi"}', "2Gi")],
)
def test_flyte2_shm(value: str, size: str | None) -> None:
    request = read(value)
    assert request.shared_memory == shared_memory_message(size_limit=size, mount_name="flyte-shm")
    assert request.shared_memory_from == "resources"


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("resources", "gpu=A999:1", "'A999:1' is not a Flyte 2 accelerator: 'A999' is not one of A2, A10,"),
        ("resources", "gpu=A100:1000", "'A100:1000': A100 comes in counts of 1 to 999"),
        ("resources", "gpu=A100", "'A100': a Flyte 2 accelerator needs a count, e.g. 'A100:1'"),
        (
            "resources",
            '{"gpu": {"device": "A100", "quantity": 1, "partition": "1g.10gb"}}',
            "Invalid partition for A100: 1g.10gb. Must be one of 1g.5gb, 2g.10gb,",
        ),
        ("resources", '{"gpu": {"device": "A999", "quantity": 1}}', "Invalid GPU type: A999. Must be one of"),
        ("resources", '{"gpu": {"device": "A100", "quantity": 0}}', "GPU quantity must be at least 1"),
        ("resources", '{"gpu": {"device": "T4", "quantity": 1, "partition": "1g.5gb"}}', "T4 has no partitions"),
        ("resources", '{"gpu": {"device": "A100", "quantity": 1000}}', "A100: quantity 1000 is more than any node has"),
        ("resources", '{"gpu": {"device": "V6E", "device_class": "GPU"}}', "Invalid GPU type: V6E. Must be one of A2,"),
        ("resources", '{"gpu": {"device": "A100", "count": 1}}', "gpu: unknown device field 'count'; valid: device,"),
        ("resources", '{"gpu": {"quantity": 1}}', 'gpu: a device object needs "device"'),
        ("resources", '{"gpu": {"device": "A100", "quantity": "1"}}', "gpu: quantity must be a whole number, got '1'"),
        ("resources", "shm=0", "shm: expected a size above zero like '2Gi', or 'auto', got '0'"),
        ("resources", "shm=lots", "shm: expected a size like '2Gi' or 'auto'"),
        (
            "resources",
            "disk=1Gi,ephemeral_storage=2Gi",
            "Resources: 'disk' sets ephemeral_storage, which is already set",
        ),
        ("limits", "gpu=A100:2", "gpu: a device (e.g. 'A100:2') is only allowed in `resources`"),
        ("requests", '{"shm": "auto"}', "shm: shared memory is only allowed in `resources`"),
        (
            "resources",
            "cpu=1,storage=1Gi",
            "Resources: unknown key 'storage'; valid keys: cpu, mem, memory, gpu, ephemeral_storage, "
            "ephemeral-storage, disk, shm",
        ),
    ],
)
def test_flyte2_errors(name: str, value: str, reason: str) -> None:
    with pytest.raises(InvalidAnnotation) as error:
        read(value, name)
    assert error.value.annotation == P + name
    assert error.value.reason.startswith(reason), error.value.reason


def test_extended_resources_accept_the_device_class() -> None:
    request = read(
        '{"gpuAccelerator": {"device": "tpu-v6e-slice", "partitionSize": "2x4", "deviceClass": "GOOGLE_TPU"}}',
        "extended-resources",
    )
    assert request.accelerator == Accelerator("tpu-v6e-slice", "2x4", device_class=TPU)
    request = read('{"gpuAccelerator": {"device": "my-tpu", "deviceClass": "TPU"}}', "extended-resources")
    assert request.accelerator.device_class is TPU  # a device the catalog lacks, classed by the annotation
    with pytest.raises(InvalidAnnotation, match="'FPGA' is not a device class"):
        read('{"gpuAccelerator": {"device": "x", "deviceClass": "FPGA"}}', "extended-resources")


def test_specific_annotations_replace_the_flyte2_parts() -> None:
    request = read_annotations(
        {
            P + "resources": "gpu=A100:1,shm=auto",
            P + "accelerator": "A100.partition_1g_5gb",
            P + "shared-memory": "1Gi",
        },
        P,
    )
    assert request is not None
    wanted = Accelerator("nvidia-tesla-a100", "1g.5gb")
    assert (request.accelerator, request.accelerator_from) == (wanted, "accelerator")
    assert request.shared_memory == shared_memory_message(size_limit="1Gi")


# --- applied to pods --------------------------------------------------------------------------------------------


def pod(annotations: dict[str, str]) -> dict[str, Any]:
    container = {"name": "primary", "image": "x", "resources": {"requests": {"cpu": "1", "memory": "4Gi"}}}
    return {"metadata": {"name": "t", "annotations": annotations}, "spec": {"containers": [container]}}


def expressions(result: Any) -> list[dict[str, Any]]:
    affinity = result.pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    return list(affinity["nodeSelectorTerms"][0]["matchExpressions"])


def test_tpu_device_object_under_gke() -> None:
    config = WebhookConfig.from_mapping({"preset": "gke"})
    result = plan_mutation(pod({P + "resources": '{"gpu": {"device": "V6E", "partition": "2x4"}}'}), config)
    primary = result.pod["spec"]["containers"][0]
    assert primary["resources"]["limits"]["google.com/tpu"] == "1"
    assert expressions(result) == [
        {"key": "cloud.google.com/gke-tpu-accelerator", "operator": "In", "values": ["tpu-v6e-slice"]},
        {"key": "cloud.google.com/gke-tpu-topology", "operator": "In", "values": ["2x4"]},
    ]
    applied = json.loads(result.pod["metadata"]["annotations"][P + "applied"])
    assert applied["accelerator"] == {"device": "tpu-v6e-slice", "partitionSize": "2x4", "deviceClass": "GOOGLE_TPU"}
    assert applied["gpuResource"] == "google.com/tpu"


@pytest.mark.parametrize(("strategy", "resource"), [("single", "nvidia.com/gpu"), ("mixed", "nvidia.com/mig-1g.10gb")])
def test_h100_mig_device_object(strategy: str, resource: str) -> None:
    config = WebhookConfig.from_mapping({"mig-strategy": strategy})
    value = '{"gpu": {"device": "H100", "quantity": 1, "partition": "1g.10gb"}}'
    result = plan_mutation(pod({P + "resources": value}), config)
    assert result.pod["spec"]["containers"][0]["resources"]["limits"][resource] == "1"
    assert expressions(result)[0] == {
        "key": "k8s.amazonaws.com/accelerator",
        "operator": "In",
        "values": ["nvidia-h100"],
    }


def test_neuron_string_counts_neuron_devices() -> None:
    result = plan_mutation(pod({P + "resources": "gpu=Trn1:16"}), WebhookConfig.from_mapping({}))
    assert result.pod["spec"]["containers"][0]["resources"]["limits"]["aws.amazon.com/neuron"] == "16"
    assert expressions(result)[0]["values"] == ["aws-neuron-trn1"]


def test_shm_auto_adds_a_memory_volume_without_size() -> None:
    result = plan_mutation(pod({P + "resources": "memory=8Gi,shm=auto"}), WebhookConfig.from_mapping({}))
    assert result.pod["spec"]["volumes"] == [{"name": "flyte-shm", "emptyDir": {"medium": "Memory"}}]
    assert result.pod["spec"]["containers"][0]["volumeMounts"] == [{"name": "flyte-shm", "mountPath": "/dev/shm"}]
    again = plan_mutation(result.pod, WebhookConfig.from_mapping({}))
    assert again.ops == []


def test_invalid_flyte2_value_is_denied_with_the_annotation_named() -> None:
    with pytest.raises(Denied, match=r"resources.flyte.org/resources='gpu=A100:0': 'A100:0': A100 comes in"):
        plan_mutation(pod({P + "resources": "gpu=A100:0"}), WebhookConfig.from_mapping({}))


# --- the Flyte 2 examples, under every preset -------------------------------------------------------------------

EXAMPLES = Path(__file__).parents[2] / "examples"
# example -> preset -> (resource counted, device requirement) ; the partition requirement follows when there is one
EXAMPLE_PLACEMENT = {
    "flyte2-h100-mig.yaml": {
        "eks": ("nvidia.com/gpu", "k8s.amazonaws.com/accelerator", "nvidia-h100"),
        "gke": ("nvidia.com/gpu", "cloud.google.com/gke-accelerator", "nvidia-h100-80gb"),
        "karpenter": ("nvidia.com/mig-1g.10gb", "karpenter.k8s.aws/instance-gpu-name", "h100"),
        "gfd": ("nvidia.com/mig-1g.10gb", "nvidia.com/gpu.product", "NVIDIA-H100-80GB-HBM3"),
    },
    "flyte2-tpu-v6e.yaml": {
        preset: ("google.com/tpu", "cloud.google.com/gke-tpu-accelerator", "tpu-v6e-slice")
        for preset in ("eks", "gke", "karpenter", "gfd", "amd")
    },
    "flyte2-neuron.yaml": {
        "eks": ("aws.amazon.com/neuron", "k8s.amazonaws.com/accelerator", "aws-neuron-trn1"),
        "karpenter": ("aws.amazon.com/neuron", "karpenter.k8s.aws/instance-accelerator-name", "trainium"),
    },
}


@pytest.mark.parametrize(
    ("example", "preset", "expected"),
    [(e, p, x) for e, per in EXAMPLE_PLACEMENT.items() for p, x in per.items()],
)
def test_flyte2_examples_per_preset(example: str, preset: str, expected: tuple[str, str, str]) -> None:
    pod = yaml.safe_load((EXAMPLES / example).read_text())
    result = plan_mutation(pod, WebhookConfig.from_mapping({"preset": preset}))
    resource, label, value = expected
    assert resource in result.pod["spec"]["containers"][0]["resources"]["limits"]
    assert expressions(result)[0] == {"key": label, "operator": "In", "values": [value]}
    assert plan_mutation(result.pod, WebhookConfig.from_mapping({"preset": preset})).ops == []  # idempotent


@pytest.mark.parametrize("key", ["memory", "disk"])
@pytest.mark.parametrize("number", [20, 1024, 1.5])
def test_a_json_number_for_flyte2_memory_or_disk_is_refused_as_flyte2_refuses_it(key: str, number: float) -> None:
    # Taken as bytes it made `ephemeral-storage: "20"`: the pod evicted at its first write.
    from webhook.mutation.flyte2 import split_flyte2_fields

    with pytest.raises(ValueError, match=f"{key} must be a Kubernetes quantity string such as '1Gi'"):
        split_flyte2_fields({"cpu": "1", key: number}, in_resources=True)
    assert split_flyte2_fields({"mem": 1024}, in_resources=True)[0] == {"mem": 1024}  # flytekit's int stays bytes
