"""hack.cluster.flyte without a cluster: propeller's configuration and how an execution's end is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from hack.cluster import flyte
from hack.cluster.processes import MissingBinaries


def test_propeller_config_runs_without_flyteadmin_and_keeps_blobs_local(tmp_path: Path) -> None:
    cfg = flyte.propeller_config(tmp_path / "kc", tmp_path / "blobs", tmp_path / "events", 1234, 5678)
    assert cfg["propeller"]["kube-config"] == str(tmp_path / "kc")
    assert cfg["propeller"]["create-flyteworkflow-crd"] is True
    assert cfg["propeller"]["enable-admin-launcher"] is False
    assert cfg["propeller"]["prof-port"] == 1234
    assert cfg["admin"]["endpoint"].endswith(":5678")
    assert cfg["storage"]["stow"] == {"kind": "local", "config": {"path": str(tmp_path / "blobs")}}
    assert cfg["event"]["type"] == "file"
    plugins = cfg["tasks"]["task-plugins"]
    assert set(plugins["default-for-task-types"].values()) <= set(plugins["enabled-plugins"])


def test_phase_names_follow_propellers_workflow_phase_numbers() -> None:
    assert flyte.phase({}) == "Ready"
    assert flyte.phase({"status": {"phase": 3}}) == "Success"
    assert flyte.phase({"status": {"phase": 5}}) == "Failed"
    assert flyte.phase({"status": {"phase": 42}}) == "42"


def test_error_message_joins_kind_code_and_message_else_the_status_message() -> None:
    failed = {"status": {"error": {"kind": "USER", "code": "BadTaskFormat", "message": "denied"}}}
    assert flyte.error_message(failed) == "USER BadTaskFormat denied"
    assert flyte.error_message({"status": {"message": "Workflow Started"}}) == "Workflow Started"


def test_execution_names_are_dns_labels_like_flyteadmins() -> None:
    name = flyte.execution_name()
    assert len(name) == 20 and name[0].isalpha() and name.isalnum() and name.islower()


def test_missing_tools_name_make_flyte(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRW_FLYTE_BIN_DIR", str(tmp_path))
    with pytest.raises(MissingBinaries, match="make flyte"):
        flyte.FlyteTools.locate()
