"""`make run` / `make demo` as a showcase: every example placed on a node that fits it, under the preset it is
written for; a short summary; the logs kept and named on Ctrl-C; a suggested command that reaches the webhook."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from hack.cluster.chart import APPLIED_ANNOTATION
from hack.cluster.presets import preset_of
from hack.local_cluster import EXAMPLES_DIR, SUMMARY_FILE, TRY_NAMESPACE, load_examples, try_command, try_command_text

REPO_ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 60


def test_every_example_has_a_preset_that_places_it() -> None:
    for path, _ in load_examples(EXAMPLES_DIR):
        assert preset_of(path.name)  # raises when no preset has a place for it


def test_the_showcase_places_every_example_and_keeps_its_logs_on_ctrl_c(tmp_path: Path, bin_dir: Path) -> None:
    run_dir = tmp_path / "run"
    env = {**os.environ, "FRW_BIN_DIR": str(bin_dir), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "hack.local_cluster", "--serve", "--run-dir", str(run_dir)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
            if "Ctrl-C stops everything" in line:
                break
        assert any("Ctrl-C stops everything" in line for line in lines), "\n".join(lines)
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=120)
        lines += rest.splitlines()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = "\n".join(lines)
    assert process.returncode == 0, output
    assert len(lines) <= MAX_LINES, f"{len(lines)} lines:\n{output}"
    assert f"logs kept in {run_dir}" in output, output
    assert (run_dir / "webhook.log").stat().st_size > 0
    summary: list[dict[str, Any]] = json.loads((run_dir / SUMMARY_FILE).read_text())
    examples = sorted(path.name for path, _ in load_examples(EXAMPLES_DIR))
    assert sorted(entry["example"] for entry in summary) == examples
    misplaced = [e for e in summary if e["phase"] != "Running" or e["pool"] not in e["expected"]]
    assert not misplaced, json.dumps(misplaced, indent=2)
    assert {e["preset"] for e in summary} >= {"eks", "gke", "amd"}
    assert try_command_text().splitlines()[0].strip() in output


def test_the_suggested_command_reaches_the_webhook(cluster: Any) -> None:
    """A CREATE with --dry-run=server of a new pod: mutated, nothing stored; twice, with two new names."""
    cluster.ensure_namespace(TRY_NAMESPACE)
    for _ in range(2):
        name = f"try-{secrets.token_hex(3)}"
        result = cluster.kubectl(*try_command(name))
        assert result.returncode == 0, result.stderr
        pod = yaml.safe_load(result.stdout)
        assert APPLIED_ANNOTATION in pod["metadata"]["annotations"], result.stdout
        assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert cluster.kubectl("get", "pod", name, "-n", TRY_NAMESPACE).returncode != 0  # a dry run stores nothing
