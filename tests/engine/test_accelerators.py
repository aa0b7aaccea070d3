"""flytekit accelerators (its `extras.accelerators` constants, checked against the recorded flytekit vectors) plus
annotation lookup and IDL decoding."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from flyteidl.core import tasks_pb2
from google.protobuf import text_format

from webhook.engine import accelerators as acc
from webhook.engine.accelerators import (
    A100,
    A100_80GB,
    T4,
    V5E,
    V5P,
    V6E,
    BaseAccelerator,
    GPUAccelerator,
    MultiInstanceGPUAccelerator,
    accelerator_from_idl,
    known_accelerators,
    lookup_accelerator,
)

RECORDED = json.loads((Path(__file__).parent / "vectors" / "flytekit_1.16.31.json").read_text())["cases"]
# `acc_*` cases: flytekit's `<NAME>.to_flyte_idl()` and `<NAME>.<partition>.to_flyte_idl()` for every constant.
_ACCELERATOR_EXPR = re.compile(r"([A-Z][A-Z0-9_]*)(?:\.((?:partition|slice)_[0-9a-z_]+))?\.to_flyte_idl\(\)")


def _recorded() -> dict[str, tasks_pb2.GPUAccelerator]:
    """flytekit's own IDL for each constant (`A100`) and named partition (`A100.partition_1g_5gb`)."""
    found = {}
    for case in RECORDED.values():
        match = _ACCELERATOR_EXPR.fullmatch(case["expr"])
        if match and "result" in case:
            path = ".".join(part for part in match.groups() if part)
            found[path] = text_format.Parse(case["result"]["text"], tasks_pb2.GPUAccelerator())
    return found


FLYTEKIT = _recorded()


def test_the_constants_and_partitions_are_flytekits() -> None:
    """Built from the catalog: exactly flytekit's names, each encoding as flytekit encodes it."""
    ours = {name: value for name, value in known_accelerators().items() if not name.endswith(".unpartitioned")}
    assert set(ours) == set(FLYTEKIT)
    assert {name: value.to_flyte_idl() for name, value in ours.items()} == FLYTEKIT
    assert {n for n in FLYTEKIT if "." not in n} == set(acc._CONSTANTS)


@pytest.mark.parametrize("path", sorted(FLYTEKIT))
def test_lookup_by_name_and_by_device_string(path: str) -> None:
    message = FLYTEKIT[path]
    found = lookup_accelerator(path)
    assert found.to_flyte_idl() == message
    assert (found.device, found.partition_size, found.is_unpartitioned) == (
        message.device,
        message.partition_size or None,
        False,
    )
    spelled = f"{message.device}:{message.partition_size}" if message.partition_size else message.device
    assert lookup_accelerator(spelled) == found
    assert (
        found.unpartitioned.to_flyte_idl() == tasks_pb2.GPUAccelerator(device=message.device, unpartitioned=True)
        if isinstance(found, MultiInstanceGPUAccelerator)
        else True
    )


def test_vectors_35_to_38() -> None:
    assert A100.unpartitioned.to_flyte_idl() == tasks_pb2.GPUAccelerator(device="nvidia-tesla-a100", unpartitioned=True)
    assert A100.partition_2g_10gb.unpartitioned.to_flyte_idl().unpartitioned is True
    assert A100.partitioned("9g.99gb").to_flyte_idl().partition_size == "9g.99gb"
    assert A100_80GB.partition_7g_80gb.to_flyte_idl().device == "nvidia-a100-80gb"
    assert V5E.slice_2x4.to_flyte_idl() == tasks_pb2.GPUAccelerator(device="tpu-v5-lite-podslice", partition_size="2x4")
    assert V5P.slice_2x2x1.to_flyte_idl().partition_size == "2x2x1"
    assert V6E.slice_16x16.to_flyte_idl().device == "tpu-v6e-slice"
    assert GPUAccelerator("").to_flyte_idl() == tasks_pb2.GPUAccelerator()
    with pytest.raises(AttributeError):
        MultiInstanceGPUAccelerator().to_flyte_idl()


def test_unpartitioned_is_a_copy() -> None:
    whole = A100.unpartitioned
    assert whole is not A100 and not A100.is_unpartitioned and whole.is_unpartitioned
    assert isinstance(whole, type(A100))
    assert A100.partitioned("1g.5gb").is_unpartitioned is False


def test_equality_hash_repr() -> None:
    assert A100.partitioned("1g.5gb") == A100.partition_1g_5gb
    assert hash(A100.partitioned("1g.5gb")) == hash(A100.partition_1g_5gb)
    assert A100.unpartitioned != A100
    assert GPUAccelerator("nvidia-tesla-t4") == T4
    assert repr(A100.partition_1g_5gb).endswith("(device='nvidia-tesla-a100', partition_size='1g.5gb')")
    assert repr(A100.partition_1g_5gb.unpartitioned).endswith("(device='nvidia-tesla-a100', unpartitioned=True)")
    assert A100.partition_1g_5gb.unpartitioned == A100.unpartitioned
    assert isinstance(T4, BaseAccelerator)


@pytest.mark.parametrize(
    ("text", "device", "partition", "unpartitioned"),
    [
        ("T4", "nvidia-tesla-t4", None, False),
        ("A100", "nvidia-tesla-a100", None, False),
        ("A100.unpartitioned", "nvidia-tesla-a100", None, True),
        ("A100.partition_1g_5gb", "nvidia-tesla-a100", "1g.5gb", False),
        ("A100.partition_1g_5gb.unpartitioned", "nvidia-tesla-a100", None, True),  # as the IDL oneof says
        ("V5E.slice_2x4", "tpu-v5-lite-podslice", "2x4", False),
        ("nvidia-tesla-a100", "nvidia-tesla-a100", None, False),
        ("nvidia-tesla-a100:1g.5gb", "nvidia-tesla-a100", "1g.5gb", False),
        ("nvidia-tesla-a100:9g.99gb", "nvidia-tesla-a100", "9g.99gb", False),
        ("nvidia-tesla-t4:1x", "nvidia-tesla-t4", "1x", False),
        ("amd-mi300x", "amd-mi300x", None, False),
        ("amd-mi300x:cpx", "amd-mi300x", "cpx", False),
        ("NVIDIA-A100-SXM4-80GB", "NVIDIA-A100-SXM4-80GB", None, False),
        ("a100", "nvidia-tesla-a100", None, False),  # not a constant: a device name, found as Flyte's table does
        ("nvidia-tesla-h100", "nvidia-h100", None, False),  # the Flyte 2 SDK's H100 is flytekit's H100
        ("B200", "nvidia-b200", None, False),  # a Flyte 2 type name
        ("tpu-v6e-slice:2x4", "tpu-v6e-slice", "2x4", False),
    ],
)
def test_lookup(text: str, device: str, partition: str | None, unpartitioned: bool) -> None:
    found = lookup_accelerator(text)
    assert (found.device, found.partition_size, found.is_unpartitioned) == (device, partition, unpartitioned)
    assert accelerator_from_idl(found.to_flyte_idl()) == found


def test_lookup_returns_the_constants() -> None:
    assert lookup_accelerator("A100") is A100
    assert lookup_accelerator("nvidia-tesla-t4") is T4
    assert lookup_accelerator("A100.partition_1g_5gb") is A100.partition_1g_5gb


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("A999", ["'A999' is not a known accelerator name", "known: A10G, A100"]),
        ("H10", ["did you mean H100"]),
        # suggestions are bounded (at most 2 edits): far ones give none, the list of valid names instead
        ("A100.partition_9g", ["name; valid: A100.partition_1g_5gb", "A100.unpartitioned"]),
        ("A100.partition_1g_5g", ["did you mean A100.partition_1g_5gb? valid:"]),
        ("A10O", ["did you mean A10G, A100, A10?"]),
        ("A100.unpartitioned.partition_1g_5gb", ["is not a known accelerator name"]),
        ("T4.unpartitioned", ["T4 has no partitions"]),
        ("a b", ["neither a known accelerator name", "nor a device name"]),
        ("-gpu", ["nor a device name"]),
        ("x" * 64, ["at most 63 characters"]),
        ("nvidia-tesla-a100:", ["invalid partition ''"]),
        ("nvidia-tesla-a100:1g 5gb", ["invalid partition '1g 5gb'"]),
    ],
)
def test_lookup_errors(text: str, fragments: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        lookup_accelerator(text)
    for fragment in fragments:
        assert fragment in str(info.value)
    assert repr(text) in str(info.value)


def test_known_accelerators() -> None:
    names = known_accelerators()
    assert names["A100.partition_1g_5gb"] == A100.partition_1g_5gb
    assert names["V5P.slice_16x16x24"].partition_size == "16x16x24"
    assert names["A100.unpartitioned"].is_unpartitioned
    for name, accelerator in names.items():
        assert lookup_accelerator(name) == accelerator


@pytest.mark.parametrize(
    "message",
    [
        tasks_pb2.GPUAccelerator(device="nvidia-tesla-a100", partition_size="1g.5gb"),
        tasks_pb2.GPUAccelerator(device="nvidia-tesla-a100", unpartitioned=True),
        tasks_pb2.GPUAccelerator(device="nvidia-tesla-a100"),
        tasks_pb2.GPUAccelerator(device="nvidia-tesla-t4"),
        tasks_pb2.GPUAccelerator(partition_size="2x4"),  # vector 78: no device
        tasks_pb2.GPUAccelerator(device="amd-mi300x", unpartitioned=True),
        tasks_pb2.GPUAccelerator(),
    ],
)
def test_from_idl_round_trip(message: tasks_pb2.GPUAccelerator) -> None:
    assert accelerator_from_idl(message).to_flyte_idl() == message


def test_from_idl_unpartitioned_false_reads_as_unset() -> None:
    decoded = accelerator_from_idl(tasks_pb2.GPUAccelerator(device="nvidia-tesla-a100", unpartitioned=False))
    assert decoded is A100 and not decoded.is_unpartitioned
