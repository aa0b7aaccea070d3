"""Parity with real flytekit 1.16.31, recorded once in vectors/flytekit_1.16.31.json (see vectors/README.md).

Each recorded expression is evaluated against the engine and must give the same normalized result or raise
the same exception type (and message), except for the documented deviations below.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from webhook.engine import accelerators, resources
from webhook.engine.resources import InvalidResource

VECTORS_DIR = Path(__file__).parent / "vectors"
RECORDED = json.loads((VECTORS_DIR / "flytekit_1.16.31.json").read_text())


def _load_cases_module() -> Any:
    spec = importlib.util.spec_from_file_location("flytekit_cases", VECTORS_DIR / "flytekit_cases.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CASES_MODULE = _load_cases_module()

# flytekit accepts these; Kubernetes would reject the value, so the engine raises InvalidResource.
STRICTER = {
    "v7a": "Resources.cpu: -1 is not a valid Kubernetes quantity",
    "v7b": "Resources.cpu: 'abc' is not a valid Kubernetes quantity",
    "v7c": "Resources.cpu: True is not a valid Kubernetes quantity",
    "v7d": "Resources.ephemeral_storage: '123Mb' is not a valid Kubernetes quantity",
    "v14b": "Resources.cpu: 'True' is not a valid Kubernetes quantity",
    "v14c": "Resources.ephemeral_storage: \"['1Gi', '2Gi']\" is not a valid Kubernetes quantity",
    "v19b": "Resources.cpu: '' is not a valid Kubernetes quantity",
    "v33b": "shared_memory: 'abc' is not a valid Kubernetes quantity",
}
# flytekit (run with kubernetes client 36) puts raw numbers into the pod spec; client 37 needs strings.
STRINGIFIED = {"v41", "v42"}
# Same exception type, different wording.
OTHER_MESSAGE = {"mig_bare"}


def _engine_namespace() -> dict[str, Any]:
    namespace: dict[str, Any] = {name: getattr(accelerators, name) for name in accelerators.__all__}
    for name in (
        "Resources",
        "ResourceSpec",
        "convert_resources_to_resource_model",
        "construct_extended_resources",
        "pod_spec_from_resources",
    ):
        namespace[name] = getattr(resources, name)
    return namespace


def _stringify_numbers(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _stringify_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_stringify_numbers(item) for item in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def test_recorded_with_the_contract_versions() -> None:
    assert RECORDED["flytekit"] == "1.16.31"
    assert len(RECORDED["cases"]) == len(CASES_MODULE.CASES)


@pytest.mark.parametrize(("case_id", "expected"), RECORDED["cases"].items(), ids=list(RECORDED["cases"]))
def test_parity(case_id: str, expected: dict[str, Any]) -> None:
    expr = expected["expr"]
    assert dict(CASES_MODULE.CASES)[case_id] == expr, "vectors are stale: regenerate them"
    got = CASES_MODULE.evaluate(expr, _engine_namespace())
    if case_id in STRICTER:
        assert got["error"] == InvalidResource.__name__, got
        assert got["message"].startswith(STRICTER[case_id])
        return
    if case_id in STRINGIFIED:
        expected = {**expected, "result": _stringify_numbers(expected["result"])}
    if "error" in expected:
        assert got.get("error") == expected["error"], got
        if case_id not in OTHER_MESSAGE:
            assert got["message"] == expected["message"]
        return
    assert "error" not in got, got
    assert got["result"] == expected["result"]
