"""The README stays true to the code: its Python runs, and its table names every annotation (the config table is
generated from the config model: `make generate`)."""

from __future__ import annotations

import re
from pathlib import Path

from webhook.engine.config import WebhookConfig
from webhook.mutation.annotations import APPLIED, INPUT_KEYS

README = (Path(__file__).parents[1] / "README.md").read_text()


def first_cells(heading: str) -> set[str]:
    """The backticked names in the first column of the tables under a README heading."""
    section = README.split(heading, 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([^`]+)`", line.split("|")[1]))
    return names


def test_python_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def test_annotation_table_names_every_annotation():
    assert {*INPUT_KEYS, APPLIED} <= first_cells("## Annotations")


def test_make_help_prints_what_a_shell_would_show():
    import subprocess

    root = Path(__file__).parents[1]
    done = subprocess.run(["make", "-s", "-C", str(root), "help"], capture_output=True, text=True, check=True)
    assert "$KUBECONFIG's cluster" in done.stdout and "$$" not in done.stdout, done.stdout
    targets = re.findall(r"^  make (\S+)", done.stdout, re.M)
    assert {"run", "test", "image", "push", "package"} <= set(targets)
    assert all(f"make {name}" in README for name in ("image", "push", "package")), "README, Install in a cluster"


def test_the_policy_example_is_the_one_make_fuzz_runs():
    import yaml

    section = README.split("## Policies", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    shown = yaml.safe_load(block.group(1))
    fuzzed = yaml.safe_load((Path(__file__).parents[1] / "examples" / "config" / "policies.yaml").read_text())
    assert fuzzed.pop("flyte-task-pods") is True
    assert shown == fuzzed
    WebhookConfig.from_mapping(fuzzed)
