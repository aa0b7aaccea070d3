"""Parity with the real `flyte` SDK 2.12.1, recorded once in vectors/flyte_2.12.1.json (see vectors/README.md).

Every recorded expression is evaluated against `webhook.engine.flyte2`. Where the SDK accepts the value, so does
the engine, with the same device, count, class and partition, and a device string naming the same catalog device
(the SDK sends some names bare, such as `B200` or `Trn1`, which Flyte's backend then normalises; it sends
`nvidia-tesla-h100` where flytekit sends `nvidia-h100`: one device here). Where it refuses, the engine refuses
with the same words, except for the `"<Type>:<count>"` strings, where the SDK lists all 180 valid strings. The
documented exceptions: the engine refuses what no node could run (STRICTER), and it reads an NVIDIA GPU string
with any count the SDK's `GPU()` object takes (`"A2:2"`, `"RTX_PRO_6000:4"`: the SDK's string table stops lower).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from webhook.engine import flyte2
from webhook.engine.catalog import find_device

VECTORS_DIR = Path(__file__).parent / "vectors"
RECORDED = json.loads((VECTORS_DIR / "flyte_2.12.1.json").read_text())


def _load_cases_module() -> Any:
    spec = importlib.util.spec_from_file_location("flyte2_cases", VECTORS_DIR / "flyte2_cases.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CASES_MODULE = _load_cases_module()
NAMESPACE = {
    "GPU": flyte2.GPU,
    "TPU": flyte2.TPU,
    "Neuron": flyte2.Neuron,
    "AMD_GPU": flyte2.AMD_GPU,
    "HABANA_GAUDI": flyte2.HABANA_GAUDI,
    "string": flyte2.parse_accelerator,
    "sends": lambda device: device.accelerator().device,
}
# The SDK accepts these and builds a pod no node can run: a partition on a device that has none.
STRICTER = ("has no partitions",)
# The SDK's message for a bad "<Type>:<count>" string lists every valid string (~3 KB); ours names the problem.
STRING_REASONS = ("is not a Flyte 2 accelerator", "comes in counts of", "needs a count")


def test_recorded_with_the_sdk_version() -> None:
    assert RECORDED["flyte"] == "2.12.1"
    assert {cid: expr for cid, expr in CASES_MODULE.CASES} == {cid: c["expr"] for cid, c in RECORDED["cases"].items()}


@pytest.mark.parametrize(("case_id", "expected"), RECORDED["cases"].items(), ids=list(RECORDED["cases"]))
def test_parity(case_id: str, expected: dict[str, Any]) -> None:
    got = CASES_MODULE.evaluate(expected["expr"], NAMESPACE)
    if "error" not in expected:
        if "error" in got:
            assert any(reason in got["message"] for reason in STRICTER), got
            return
        ours, theirs = got["result"], expected["result"]
        assert {k: v for k, v in ours.items() if k != "sends"} == {k: v for k, v in theirs.items() if k != "sends"}
        assert find_device(ours["sends"]) is find_device(theirs["sends"]) is not None, (ours, theirs)
        return
    if "error" not in got:  # a string the SDK's table lacks, read as its GPU() object reads that count
        _assert_gpu_object_takes(expected["expr"], got["result"])
        return
    assert got.get("error") == expected["error"] == "ValueError", got
    message = expected["message"]
    if message.startswith("gpu must be one of"):
        assert any(reason in got["message"] for reason in STRING_REASONS), got
        return
    assert got["message"].startswith(message.split(" Must be one of ")[0]), (got["message"], message)


def _assert_gpu_object_takes(expr: str, ours: dict[str, Any]) -> None:
    """`string('<Type>:<n>')` refused by the SDK and read by us: an NVIDIA GPU type whose recorded `GPU()` cases
    take counts beyond its strings (2, 8, 16 recorded), read as our `GPU(type, n)`."""
    cases = RECORDED["cases"]
    name = ours["device"]
    assert ours["device_class"] == "GPU" and ours["partition"] is None, ours
    assert all("result" in cases[f"gpu[{name}]x{n}"] for n in (1, 2, 8, 16)), name
    assert "error" in cases[f"gpu[{name}]x0"]
    assert CASES_MODULE.evaluate(f"GPU({name!r}, {ours['quantity']})", NAMESPACE) == {"result": ours}, expr


def test_string_counts_beyond_the_sdk_table_are_those_gpu_takes() -> None:
    looser = [
        cid
        for cid, expected in RECORDED["cases"].items()
        if "error" in expected and "error" not in CASES_MODULE.evaluate(expected["expr"], NAMESPACE)
    ]
    assert looser and all(cid.startswith("string[") for cid in looser)
    assert {"string[A2:2]", "string[RTX_PRO_6000:4]", "string[RTX_PRO_4500:2]", "string[A100:16]"} <= set(looser)
    assert not any(cid.startswith(("string[Trn1", "string[Inf", "string[MI", "string[Gaudi")) for cid in looser)


def test_stricter_cases_are_few_and_named() -> None:
    stricter = [
        cid
        for cid, expected in RECORDED["cases"].items()
        if "error" not in expected and "error" in CASES_MODULE.evaluate(expected["expr"], NAMESPACE)
    ]
    assert stricter and all(cid.startswith("gpu[") for cid in stricter)
    assert "gpu[T4]/1g.5gb" in stricter and "gpu[A100]x16" not in stricter
