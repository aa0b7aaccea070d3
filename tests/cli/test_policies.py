"""`mutate` and `explain` with a `--config` holding policies: the policy is named and what it changed is shown."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[2]
P = "resources.flyte.org/"
CONFIG = {
    "flyte-task-pods": True,
    "policies": [
        {
            "name": "development",
            "match": {"domain": "development"},
            "platform-limits": {"cpu": "2"},
            "default-requests": {"memory": "1Gi"},
            "allowed-accelerators": ["T4"],
        }
    ],
}
LABELS = {"project": "ml", "domain": "development", "task-name": "train"}


def pod(name: str, annotations: dict[str, str] | None = None) -> dict[str, object]:
    metadata: dict[str, object] = {"name": name, "namespace": "ml-development", "labels": LABELS}
    if annotations:
        metadata["annotations"] = annotations
    container = {"name": "primary", "image": "x", "resources": {"limits": {"cpu": "6"}}}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": {"containers": [container]}}


def cli(tmp_path: Path, *args: str, pods: list[dict[str, object]]) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    source = tmp_path / "pods.yaml"
    source.write_text(yaml.safe_dump_all(pods))
    argv = [sys.executable, "-m", "webhook.cli", *args, "-f", str(source), "--config", str(config)]
    return subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)


def test_explain_names_the_policy_and_each_value_it_set(tmp_path: Path) -> None:
    done = cli(tmp_path, "explain", pods=[pod("unannotated"), pod("annotated", {P + "resources": "cpu=4"})])
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.split("\n\n")
    assert first.startswith("pod ml-development/unannotated (container primary, policy development): patched")
    assert "matched domain=development (domain level); sets default-requests, platform-limits" in first
    assert "limits.cpu: 6 -> 2 (policy development)" in first
    assert "requests.memory: - -> 1Gi (policy development)" in first
    assert "cpu limit 6 clamped to the limit of policy development 2" in first
    assert "resources.flyte.org/resources" in second and "requests.cpu: - -> 2 (policy development)" in second


def test_explain_and_mutate_show_a_policy_denial(tmp_path: Path) -> None:
    denied = pod("a100", {P + "accelerator": "A100"})
    done = cli(tmp_path, "explain", pods=[denied])
    assert done.returncode == 1
    denial = "policy development (domain=development): accelerator 'A100' (nvidia-tesla-a100) is not allowed"
    assert f"denied\n  {denial}" in done.stdout
    assert cli(tmp_path, "mutate", pods=[denied]).returncode == 1


def test_mutate_records_the_policy_in_the_applied_summary(tmp_path: Path) -> None:
    done = cli(tmp_path, "mutate", "-o", "json", pods=[pod("unannotated")])
    assert done.returncode == 0, done.stderr
    mutated = json.loads(done.stdout)
    assert json.loads(mutated["metadata"]["annotations"][P + "applied"])["policy"] == "development"
    assert mutated["spec"]["containers"][0]["resources"]["limits"] == {"cpu": "2", "memory": "1Gi"}
