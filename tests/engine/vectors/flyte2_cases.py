"""Parity cases for Flyte 2's accelerator forms: expressions evaluated against the real `flyte` SDK once, and
against `webhook.engine.flyte2` in tests.

Regenerate ``flyte_2.12.1.json`` (never needed at test time; `flyte` is not a project dependency)::

    python3 -m venv /tmp/f2 && /tmp/f2/bin/pip install flyte==2.12.1
    /tmp/f2/bin/python tests/engine/vectors/flyte2_cases.py > tests/engine/vectors/flyte_2.12.1.json

The namespace holds ``GPU``, ``TPU``, ``Neuron``, ``AMD_GPU``, ``HABANA_GAUDI``, ``string(text)`` (the device of
``Resources(gpu=text)``) and ``sends(device)`` (the device string of the IDL ``GPUAccelerator`` the SDK sends).
A result is ``{"quantity", "device_class", "device", "partition", "sends"}``; an error ``{"error", "message"}``.
"""

from __future__ import annotations

import json
from typing import Any

GPU_TYPES = [
    "A2", "A10", "A10G", "A100", "A100_80G", "B200", "H100", "H200", "L4", "L40s", "T4", "V100", "RTX_PRO_4500",
    "RTX_PRO_6000", "GB10", "T4 shared", "L4 shared", "A10G shared", "A10 shared", "L40S shared",
]  # fmt: skip
DEPRECATED = ["A100 80G", "RTX PRO 6000"]
NOT_GPU_TYPES = ["K80", "L4_VWS", "A999", "h100", "V6E"]
PARTITIONED = {
    "A100": ["1g.5gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"],
    "A100_80G": ["1g.10gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"],
    "H100": ["1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"],
    "H200": ["1g.18gb", "1g.35gb", "2g.35gb", "3g.71gb", "4g.71gb", "7g.141gb"],
    "RTX_PRO_6000": ["1g.24gb", "2g.48gb", "4g.96gb"],
}
TPUS = {
    "V5E": ["1x1", "2x2", "2x4", "4x4", "4x8", "8x8", "8x16", "16x16"],
    "V5P": ["2x2x1", "2x2x2", "2x4x4", "4x4x4", "4x4x8", "4x8x8", "8x8x8", "8x8x16", "8x16x16", "16x16x16", "16x16x24"],
    "V6E": ["1x1", "2x2", "2x4", "4x4", "4x8", "8x8", "8x16", "16x16"],
}
OTHERS = {
    "Neuron": ["Inf1", "Inf2", "Trn1", "Trn1n", "Trn2", "Trn2u", "Trn3", "inf1"],
    "AMD_GPU": ["MI100", "MI210", "MI250", "MI250X", "MI300A", "MI300X", "MI325X", "MI350X", "MI355X", "MI50"],
    "HABANA_GAUDI": ["Gaudi1", "Gaudi2"],
}
STRING_TYPES = [
    *GPU_TYPES, *DEPRECATED, "Inf1", "Inf2", "Trn1", "Trn1n", "Trn2", "Trn2u", *OTHERS["AMD_GPU"][:-1], "Gaudi1",
]  # fmt: skip


def _cases() -> list[tuple[str, str]]:
    cases: list[tuple[str, str]] = []
    for name in [*GPU_TYPES, *DEPRECATED, *NOT_GPU_TYPES]:
        for quantity in (0, 1, 2, 8, 16):
            cases.append((f"gpu[{name}]x{quantity}", f"GPU({name!r}, {quantity})"))
    for name in [*PARTITIONED, "T4", "B200", "T4 shared", "A100 80G"]:
        for partition in [*PARTITIONED.get(name, []), "1g.5gb", "9g.99gb", "2x4"]:
            cases.append((f"gpu[{name}]/{partition}", f"GPU({name!r}, 1, partition={partition!r})"))
    for name in [*TPUS, "V4", "v6e"]:
        for partition in [None, *TPUS.get(name, []), "2x4", "3x3", "1g.5gb"]:
            cases.append((f"tpu[{name}]/{partition}", f"TPU({name!r}, {partition!r})"))
    for constructor, names in OTHERS.items():
        for name in names:
            cases.append((f"{constructor.lower()}[{name}]", f"{constructor}({name!r})"))
    for name in [*STRING_TYPES, "A999", "V6E", "K80", "a100"]:
        for count in ("1", "2", "4", "8", "9", "12", "16", "0", ""):
            text = f"{name}:{count}" if count else name
            cases.append((f"string[{text}]", f"string({text!r})"))
    return cases


CASES: list[tuple[str, str]] = list(dict(_cases()).items())


def normalize(value: Any, sends: Any) -> Any:
    if value is None:
        return None
    device_class = value.device_class
    return {
        "quantity": value.quantity,
        "device_class": getattr(device_class, "sdk_name", device_class),
        "device": value.device,
        "partition": value.partition,
        "sends": sends(value) if value.device is not None else None,
    }


def evaluate(expr: str, namespace: dict[str, Any]) -> dict[str, Any]:
    try:
        value = eval(expr, dict(namespace))
    except Exception as exc:
        return {"error": type(exc).__name__, "message": str(exc)}
    return {"result": normalize(value, namespace["sends"])}


def _flyte_namespace() -> dict[str, Any]:  # pragma: no cover - runs only in the throwaway venv
    import logging

    import flyte
    from flyte._internal.runtime.resources_serde import _get_gpu_extended_resource_entry

    logging.disable(logging.WARNING)  # deprecation warnings for the space-separated names
    return {
        "GPU": flyte.GPU,
        "TPU": flyte.TPU,
        "Neuron": flyte.Neuron,
        "AMD_GPU": flyte.AMD_GPU,
        "HABANA_GAUDI": flyte.HABANA_GAUDI,
        "string": lambda text: flyte.Resources(gpu=text).get_device(),
        "sends": lambda device: _get_gpu_extended_resource_entry(flyte.Resources(gpu=device)).device,
    }


if __name__ == "__main__":  # pragma: no cover
    from importlib.metadata import version

    namespace = _flyte_namespace()
    recorded = {cid: {"expr": expr, **evaluate(expr, namespace)} for cid, expr in CASES}
    print(json.dumps({"flyte": version("flyte"), "cases": recorded}, indent=1, sort_keys=True))
