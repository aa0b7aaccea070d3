"""Annotation parsing: every value form of the annotation table, and every error names annotation and value."""

from __future__ import annotations

import pytest

from webhook.engine.accelerators import Accelerator
from webhook.mutation.annotations import InvalidAnnotation, read_annotations

P = "resources.flyte.org/"


def read(**annotations: str):
    return read_annotations({P + k.replace("_", "-"): v for k, v in annotations.items()}, P)


def test_no_annotation_of_ours_is_none():
    assert read_annotations({"primary_container_name": "x", "other.io/resources": "cpu=1"}, P) is None
    assert read_annotations({}, P) is None


def test_applied_summary_alone_is_not_input():
    assert read_annotations({P + "applied": "{}"}, P) is None


@pytest.mark.parametrize(
    "value",
    [
        '{"cpu": ["1", "2"], "mem": "4Gi", "gpu": 1}',
        "cpu=1:2,mem=4Gi,gpu=1",
        " cpu = 1:2 , memory=4Gi, gpu=1 ",
        '{"cpu": [1, 2], "memory": "4Gi", "gpu": "1"}',
    ],
)
def test_resources_pairs_and_single_values(value):
    request = read(resources=value)
    assert request.requests == {"cpu": "1", "memory": "4Gi", "gpu": "1"}
    assert request.limits == {"cpu": "2", "memory": "4Gi", "gpu": "1"}


def test_quantities_are_canonical():
    request = read(resources="cpu=0.5:1000m,mem=1024Mi,ephemeral-storage=1.5Gi")
    assert request.requests == {"cpu": "500m", "memory": "1Gi", "ephemeral-storage": "1536Mi"}
    assert request.limits == {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "1536Mi"}


def test_requests_and_limits_separately():
    request = read(requests="cpu=4,mem=2Gi,ephemeral_storage=10Gi", limits='{"cpu": "2"}')
    assert request.requests == {"cpu": "4", "memory": "2Gi", "ephemeral-storage": "10Gi"}
    assert request.limits == {"cpu": "2"}


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        ({"resources": "cpu=1", "requests": "cpu=1"}, "can not be used together"),
        ({"resources": "cpu=abc"}, "'abc'"),
        ({"resources": "cpu=-1"}, "'-1'"),
        ({"resources": "mem=123Mb"}, "'123Mb'"),
        ({"resources": "gpu=0.5"}, "gpu"),
        ({"resources": '{"mem": 1.5}'}, "mem"),
        ({"resources": "cpu"}, "not of the form name=value"),
        ({"resources": "cpu=1,cpu=2"}, "cpu given twice"),
        ({"resources": "cpu=1:2:3"}, "must be request:limit"),
        ({"resources": "persistent_storage=1Gi"}, "persistent_storage"),
        ({"resources": "{not json"}, "invalid JSON"),
        ({"resources": "[1, 2]"}, "not of the form name=value"),
        ({"resources": '{"cpu": "1"'}, "invalid JSON"),
        ({"resources": "   "}, "empty value"),
        ({"requests": "cpu=1:2"}, "only allowed in `resources`"),
        ({"limits": '{"cpu": ["1", "2"]}'}, "only allowed in `resources`"),
        ({"accelerator": "A999"}, "A999"),
        ({"accelerator": "A100.partition_9g_99gb"}, "partition_9g_99gb"),
        ({"shared_memory": "lots"}, "true, false or a size"),
        ({"shared_memory": "0"}, "above zero"),
        ({"extended_resources": "{"}, "not flyteidl ExtendedResources JSON"),
        ({"extended_resources": '{"gpuAccelerator": {"vendor": "x"}}'}, "not flyteidl ExtendedResources JSON"),
        ({"extended_resources": '{"sharedMemory": {"mountPath": "/dev/shm"}}'}, "mount name is not set"),
        (
            {"extended_resources": '{"sharedMemory": {"mountName": "s", "mountPath": "/dev/shm", "sizeLimit": "abc"}}'},
            "Unable to parse size limit",
        ),
        ({"gpu_resource_key": "gpu"}, "not an extended resource name"),
        ({"gpu_resource_key": "nvidia.com/gpu x"}, "not an extended resource name"),
        ({"container": "Main_Container"}, "not a valid container name"),
        ({"cpu": "1"}, "unknown annotation"),
    ],
)
def test_errors_name_annotation_and_value(annotations, message):
    with pytest.raises(InvalidAnnotation) as caught:
        read(**annotations)
    text = str(caught.value)
    assert message in text
    assert text.startswith(f"annotation {P}")
    bad = caught.value.annotation.removeprefix(P).replace("-", "_")
    assert repr(annotations.get(bad, ""))[:20].strip("'") in text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("T4", Accelerator("nvidia-tesla-t4")),
        ("A100", Accelerator("nvidia-tesla-a100")),
        ("A100.unpartitioned", Accelerator("nvidia-tesla-a100", unpartitioned=True)),
        ("A100.partition_1g_5gb", Accelerator("nvidia-tesla-a100", "1g.5gb")),
        ("A100_80GB.partition_7g_80gb", Accelerator("nvidia-a100-80gb", "7g.80gb")),
        ("V5E.slice_2x4", Accelerator("tpu-v5-lite-podslice", "2x4")),
        ("nvidia-tesla-a100", Accelerator("nvidia-tesla-a100")),
        ("nvidia-tesla-a100:1g.5gb", Accelerator("nvidia-tesla-a100", "1g.5gb")),
    ],
)
def test_accelerator_forms(value, expected):
    assert read(accelerator=value).accelerator == expected


def test_shared_memory_forms():
    assert read(shared_memory="true").shared_memory.size_limit == ""
    assert read(shared_memory="True").shared_memory.size_limit == ""
    assert read(shared_memory="false").shared_memory is None
    assert read(shared_memory="2048Mi").shared_memory.size_limit == "2Gi"


def test_extended_resources_and_specific_override():
    ext = '{"gpuAccelerator": {"device": "nvidia-l4"}, "sharedMemory": {"mountPath": "/dev/shm", "mountName": "shm"}}'
    request = read(extended_resources=ext)
    assert request.accelerator == Accelerator("nvidia-l4")
    assert request.shared_memory.mount_name == "shm"
    overridden = read(extended_resources=ext, accelerator="T4")
    assert overridden.accelerator == Accelerator("nvidia-tesla-t4")
    assert overridden.accelerator_from == "accelerator"
    assert overridden.shared_memory_from == "extended-resources"


def test_gpu_key_and_container():
    request = read(gpu_resource_key="amd.com/gpu", container="primary")
    assert request.gpu_resource_key == "amd.com/gpu"
    assert request.container == "primary"


def test_custom_prefix():
    request = read_annotations({"acme.io/resources": "cpu=1"}, "acme.io/")
    assert request.requests == {"cpu": "1"}


@pytest.mark.parametrize(
    ("resources", "accelerator", "there", "here"),
    [
        ("gpu=A100:2", "H100", "A100", "H100"),
        (
            '{"gpu": {"device": "H100", "partition": "1g.10gb"}}',
            "H100.partition_2g_20gb",
            "H100 1g.10gb",
            "H100 2g.20gb",
        ),
        (
            '{"gpu": {"device": "A100", "partition": "1g.5gb"}}',
            "A100.unpartitioned",
            "A100 1g.5gb",
            "A100 unpartitioned",
        ),
        ("gpu=L4:1", "nvidia-tesla-t4", "L4", "T4"),
    ],
)
def test_contradicting_devices_are_refused_naming_both_fields(resources, accelerator, there, here):
    with pytest.raises(InvalidAnnotation) as info:
        read_annotations({P + "resources": resources, P + "accelerator": accelerator}, P)
    message = str(info.value)
    assert message.startswith(f"annotation {P}accelerator=")
    assert f"contradicts the gpu device of {P}resources ({there} there, {here} here)" in message


@pytest.mark.parametrize(
    ("resources", "accelerator", "wanted"),
    [
        ("gpu=A100:2", "A100.partition_1g_5gb", Accelerator("nvidia-tesla-a100", "1g.5gb")),  # a slice of it
        ("gpu=H100:1", "nvidia-tesla-h100", Accelerator("nvidia-h100")),  # one device, two spellings
        ("gpu=A100:2", "A100.unpartitioned", Accelerator("nvidia-tesla-a100", unpartitioned=True)),
    ],
)
def test_the_same_device_in_both_places_is_one_request(resources, accelerator, wanted):
    request = read_annotations({P + "resources": resources, P + "accelerator": accelerator}, P)
    assert request.accelerator == wanted
    assert request.limits["gpu"] == resources.rsplit(":", 1)[1]
