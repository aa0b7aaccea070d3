"""The annotation builder: what it returns is what the webhook reads back, and what the webhook denies it refuses."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webhook.engine.accelerators import A100, V5E, Accelerator, BaseAccelerator, known_accelerators
from webhook.engine.catalog import CATALOG, DeviceClass
from webhook.engine.flyte2 import GPU, TPU, Device, device, parse_accelerator
from webhook.engine.quantity import canonical_quantity
from webhook.engine.resources import Resources
from webhook.mutation.annotations import read_annotations, shared_memory_message
from webhook.mutation.builder import DEFAULT_PREFIX, accelerator_annotation, flyte2_annotations, flytekit_annotations

P = DEFAULT_PREFIX


def test_examples() -> None:
    assert flyte2_annotations(cpu=(2, 4), memory="8Gi", gpu="A100:2", shm="auto") == {
        P + "resources": "cpu=2:4,memory=8Gi,gpu=A100:2,shm=auto"
    }
    assert flyte2_annotations(gpu=GPU("H100", 1, partition="1g.10gb")) == {
        P + "resources": '{"gpu":{"device":"H100","quantity":1,"partition":"1g.10gb","device_class":"GPU"}}'
    }
    assert flyte2_annotations(gpu="A100 80G:8", disk="10Gi") == {P + "resources": "disk=10Gi,gpu=A100_80G:8"}
    assert flytekit_annotations(
        Resources(cpu=("1", "2"), mem="4Gi", gpu="1"), accelerator=A100.partition_1g_5gb, shared_memory=True
    ) == {
        P + "resources": "cpu=1:2,mem=4Gi,gpu=1",
        P + "accelerator": "A100.partition_1g_5gb",
        P + "shared-memory": "true",
    }
    assert flytekit_annotations(requests=Resources(cpu="1"), limits=Resources(mem="2Gi"), container="main") == {
        P + "requests": "cpu=1",
        P + "limits": "mem=2Gi",
        P + "container": "main",
    }
    assert flyte2_annotations(cpu=1, prefix="example.com/") == {"example.com/resources": "cpu=1"}


@pytest.mark.parametrize(
    ("accelerator", "expected"),
    [
        (V5E.slice_2x4, ("accelerator", "V5E.slice_2x4")),
        (Accelerator("nvidia-h100", "1g.10gb"), ("accelerator", "nvidia-h100:1g.10gb")),
        ("nvidia-tesla-h100", ("accelerator", "H100")),
        (Accelerator("my-gpu", unpartitioned=True), ("extended-resources", '{"gpuAccelerator":{"device":"my-gpu","unpartitioned":true}}')),  # noqa: E501
        (
            Accelerator("my-tpu", "2x2", device_class=DeviceClass.GOOGLE_TPU),
            ("extended-resources", '{"gpuAccelerator":{"device":"my-tpu","partitionSize":"2x2","deviceClass":"GOOGLE_TPU"}}'),  # noqa: E501
        ),
    ],
)  # fmt: skip
def test_accelerator_annotation(accelerator: BaseAccelerator | str, expected: tuple[str, str]) -> None:
    assert accelerator_annotation(accelerator) == expected


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: flyte2_annotations(cpu="abc"), "Resources.cpu: 'abc' is not a valid Kubernetes quantity"),
        (lambda: flyte2_annotations(gpu="A100:1000"), "'A100:1000': A100 comes in counts of 1 to 999"),
        (lambda: flyte2_annotations(shm="0"), "shm: expected a size above zero"),
        (lambda: flyte2_annotations(cpu=True), "cpu: True is not a quantity"),
        (lambda: flyte2_annotations(memory=("1Gi", "2Gi", "3Gi")), "memory: a pair is (request, limit), got 3"),
        (lambda: flyte2_annotations(container="Main"), "not a valid container name"),
        (lambda: flytekit_annotations(requests=Resources(cpu=("1", "2"))), "a request:limit pair is only allowed"),
        (lambda: flytekit_annotations(Resources(cpu="1"), limits=Resources(cpu="2")), "`resource` can not be used"),
        (lambda: flytekit_annotations(accelerator="A999"), "'A999' is not a known accelerator name"),
    ],
)
def test_what_the_webhook_denies_is_refused(call: Any, message: str) -> None:
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value)


# --- the round trip ---------------------------------------------------------------------------------------------

QUANTITIES = {
    "cpu": st.sampled_from(["1", "500m", "2", "0.5", "250m", "16"]) | st.sampled_from([1, 2, 0.5, 0.25]),
    "memory": st.sampled_from(["4Gi", "512Mi", "1G", "1024", "16Gi"]),
    "disk": st.sampled_from(["10Gi", "1Ti", "500M"]),
}
STRINGS = [f"{e.name}:{count}" for e in CATALOG for count in e.counts]
SDK_DEVICES = [
    (e.name, e.device_class, e.partitions) for e in CATALOG if e.counts or e.device_class is DeviceClass.GOOGLE_TPU
]


@st.composite
def devices(draw: st.DrawFn) -> Device:
    name, device_class, partitions = draw(st.sampled_from(SDK_DEVICES))
    by_class = next(e for e in CATALOG if e.name == name)
    quantity = draw(st.sampled_from(by_class.counts or (1,)))
    partition = draw(st.sampled_from((None, *partitions)))
    return device(name, quantity, partition, draw(st.sampled_from((None, device_class.sdk_name))))


def values(key: str) -> st.SearchStrategy[Any]:
    one = QUANTITIES[key]
    return st.none() | one | (st.tuples(one, one) if key != "disk" else one)


gpus = st.none() | st.integers(1, 8) | st.sampled_from(STRINGS) | devices()
accelerators = (
    st.none()
    | st.sampled_from(sorted(known_accelerators()))
    | st.builds(
        Accelerator, st.sampled_from(["nvidia-x1", "my-tpu", "amd-mi300x"]), st.sampled_from([None, "2x2", "1g.5gb"])
    )
)


def expected_resources(fields: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    for key, value in fields.items():
        request, limit = value if isinstance(value, tuple) else (value, value)
        requests[key] = canonical_quantity(request)
        limits[key] = canonical_quantity(limit)
    return requests, limits


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cpu=values("cpu"),
    memory=values("memory"),
    disk=values("disk"),
    gpu=gpus,
    shm=st.none() | st.sampled_from(["auto", "2Gi", "512Mi"]),
    accelerator=accelerators,
    shared_memory=st.none() | st.just(True) | st.sampled_from(["1Gi"]),
)
def test_the_webhook_reads_back_what_the_builder_was_given(**given: Any) -> None:
    if isinstance(given["accelerator"], str):
        given["accelerator"] = known_accelerators()[given["accelerator"]]
    device = parse_accelerator(given["gpu"]) if isinstance(given["gpu"], str) else given["gpu"]
    if isinstance(device, Device) and given["accelerator"] is not None:
        # two devices: refused when they contradict (tests/mutation/test_annotations.py), so give the same one
        given["accelerator"] = device.accelerator()
    built = flyte2_annotations(**given)
    request = read_annotations(built, P)
    gpu = given["gpu"]
    found = parse_accelerator(gpu) if isinstance(gpu, str) else gpu
    count = found.quantity if isinstance(found, Device) else found
    fields = {"cpu": given["cpu"], "memory": given["memory"], "ephemeral-storage": given["disk"], "gpu": count}
    if not any(v is not None for v in (*fields.values(), given["shm"], given["accelerator"], given["shared_memory"])):
        assert request is None
        return
    assert request is not None
    requests, limits = expected_resources({k: v for k, v in fields.items() if v is not None})
    assert (dict(request.requests), dict(request.limits)) == (requests, limits)
    device_accelerator = found.accelerator() if isinstance(found, Device) else None
    assert request.accelerator == (given["accelerator"] or device_accelerator)
    if given["shared_memory"] is not None:
        size = given["shared_memory"] if isinstance(given["shared_memory"], str) else None
        assert request.shared_memory == shared_memory_message(size_limit=size)
    elif given["shm"] is not None:
        size = None if given["shm"] == "auto" else canonical_quantity(given["shm"])
        assert request.shared_memory == shared_memory_message(size_limit=size, mount_name="flyte-shm")
    else:
        assert request.shared_memory is None


flytekit_values = st.none() | st.sampled_from(["1", "2", "500m"]) | st.tuples(st.just("1"), st.just("2"))


@settings(max_examples=150, deadline=None)
@given(
    cpu=flytekit_values,
    mem=st.none() | st.sampled_from(["1Gi", 1024]) | st.tuples(st.just("1Gi"), st.just("2Gi")),
    gpu=st.none() | st.sampled_from(["1", 2]),
    ephemeral_storage=st.none() | st.sampled_from(["10Gi"]),
)
def test_flytekit_round_trip(**given: Any) -> None:
    resources = Resources(**given)
    built = flytekit_annotations(resources)
    fields = {"cpu": "cpu", "mem": "memory", "gpu": "gpu", "ephemeral_storage": "ephemeral-storage"}
    expected = expected_resources({fields[k]: v for k, v in given.items() if v is not None})
    request = read_annotations(built, P)
    if request is None:
        assert expected == ({}, {})
    else:
        assert (dict(request.requests), dict(request.limits)) == expected


def test_tpu_device_round_trip() -> None:
    built = flyte2_annotations(gpu=TPU("V6E", "2x4"))
    request = read_annotations(built, P)
    assert request is not None
    assert request.accelerator == Accelerator("tpu-v6e-slice", "2x4", device_class=DeviceClass.GOOGLE_TPU)
