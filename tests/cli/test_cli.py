"""The CLI end to end, as users run it: a subprocess per call, files and stdin, exit codes, --help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
P = "resources.flyte.org/"


def test_examples_exist_for_every_annotation():
    used = set()
    for path in EXAMPLES:
        pod = yaml.safe_load(path.read_text())
        used |= {k.removeprefix(P) for k in pod["metadata"]["annotations"] if k.startswith(P)}
    assert used == {
        "resources",
        "requests",
        "limits",
        "accelerator",
        "shared-memory",
        "extended-resources",
        "gpu-resource-key",
        "container",
    }


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_mutate_every_example(cli, example: Path):
    done = cli("mutate", "-f", str(example))
    assert done.returncode == 0, done.stderr
    original = yaml.safe_load(example.read_text())
    mutated = yaml.safe_load(done.stdout)
    assert mutated != original
    applied = json.loads(mutated["metadata"]["annotations"][P + "applied"])
    assert applied
    patch = json.loads(cli("mutate", "-f", str(example), "-o", "patch").stdout)
    assert patch and all(op["op"] in ("add", "replace", "remove") for op in patch)
    again = cli("mutate", "-f", "-", "-o", "patch", stdin=done.stdout)
    assert json.loads(again.stdout) == [], f"{example.name} is not idempotent"


def test_mutate_shows_warnings_on_stderr_only(cli):
    done = cli("mutate", "-f", str(ROOT / "examples" / "requests-limits-compact.yaml"))
    assert done.returncode == 0
    assert "Warning: flytesnacks-development/a8x2kq9fz4rtw-n1-0: " in done.stderr
    assert "cpu request 4 lowered to its limit 2" in done.stderr
    assert "Warning" not in done.stdout


def test_mutate_reads_lists_and_multi_document_files_item_by_item(cli):
    pods = [yaml.safe_load(p.read_text()) for p in EXAMPLES[:3]]
    listing = yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": pods})
    done = cli("mutate", "-f", "-", "-o", "json", stdin=listing)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["kind"] == "List" and len(out["items"]) == 3
    assert all(P + "applied" in item["metadata"]["annotations"] for item in out["items"])
    multi = yaml.safe_dump_all([*pods, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}])
    docs = list(yaml.safe_load_all(cli("mutate", "-f", "-", stdin=multi).stdout))
    assert len(docs) == 4 and docs[3]["kind"] == "ConfigMap"
    assert all(P + "applied" in d["metadata"]["annotations"] for d in docs[:3])


def test_denied_pod_exits_1_with_the_message_and_others_still_print(cli):
    good = yaml.safe_load(EXAMPLES[0].read_text())
    bad = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bad", "annotations": {P + "accelerator": "A999"}},
        "spec": {"containers": [{"name": "a"}]},
    }
    done = cli("mutate", "-f", "-", stdin=yaml.safe_dump_all([good, bad]))
    assert done.returncode == 1
    assert "Denied: the webhook would deny pod default/bad: annotation resources.flyte.org/accelerator='A999'" in (
        done.stderr
    )
    assert "Error from server" not in done.stderr  # offline: no server was asked
    assert "Traceback" not in done.stderr
    assert len(list(yaml.safe_load_all(done.stdout))) == 2


def test_explain_prints_a_table_per_pod(cli):
    done = cli("explain", "-f", str(ROOT / "examples" / "gpu-a100-mig.yaml"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("pod flytesnacks-development/a8x2kq9fz4rtw-n2-0 (container a8x2kq9fz4rtw-n2-0): patched")
    assert lines[1].split() == ["ANNOTATION", "VALUE", "EFFECT"]
    assert any("node affinity added: k8s.amazonaws.com/accelerator In [nvidia-tesla-a100]" in line for line in lines)


def test_config_file_and_environment_override(cli, tmp_path: Path):
    config = tmp_path / "config.yaml"
    config.write_text("preset: gke\nmig-strategy: mixed\n")
    example = str(ROOT / "examples" / "gpu-a100-mig.yaml")
    mutated = yaml.safe_load(cli("mutate", "-f", example, "--config", str(config)).stdout)
    assert mutated["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/mig-1g.5gb"] == "1"
    terms = mutated["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"][0]["key"] == "cloud.google.com/gke-accelerator"
    done = subprocess.run(
        [sys.executable, "-m", "webhook.cli", "mutate", "-f", example, "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**__import__("os").environ, "FRW_MIG_STRATEGY": "single"},
    )
    assert "nvidia.com/gpu" in yaml.safe_load(done.stdout)["spec"]["containers"][0]["resources"]["limits"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mig-strategy: both\n", "mig-strategy: 'both'"),
        ("gpu-resource-nam: x\n", "gpu-resource-nam: unknown key"),
        ("platform-limits: {cpu: lots}\n", "cpu: 'lots' is not a valid Kubernetes quantity"),
        ("preset: azure\n", "preset: 'azure' is not one of"),
        ("- a list\n", "must hold a mapping"),
    ],
)
def test_invalid_config_is_one_clear_error(cli, tmp_path: Path, text: str, message: str):
    config = tmp_path / "config.yaml"
    config.write_text(text)
    done = cli("mutate", "-f", str(EXAMPLES[0]), "--config", str(config))
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_file_and_bad_yaml_are_clear_errors(cli):
    done = cli("mutate", "-f", "/nonexistent.yaml")
    assert done.returncode == 2 and "cannot read /nonexistent.yaml" in done.stderr
    done = cli("mutate", "-f", "-", stdin="a: [")
    assert done.returncode == 2 and "is not valid YAML" in done.stderr


def test_run_without_tls_files_says_what_to_do(cli, tmp_path: Path):
    done = cli("run", "--cert-dir", str(tmp_path))
    assert done.returncode == 2
    assert "TLS files not found" in done.stderr and "--dev" in done.stderr


@pytest.mark.parametrize("command", [[], ["run"], ["mutate"], ["explain"]])
def test_help_for_every_command_has_examples(cli, command):
    done = cli(*command, "--help")
    assert done.returncode == 0
    assert "usage: flyte-resources-webhook" in done.stdout
    if command:
        assert "examples:" in done.stdout


def test_input_without_a_pod_says_so(cli):
    deployment = yaml.safe_dump({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}})
    done = cli("mutate", "-f", "-", stdin=deployment)
    assert done.returncode == 2
    assert "no Pod to mutate (found Deployment)" in done.stderr
