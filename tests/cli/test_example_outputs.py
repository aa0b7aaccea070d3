"""Every example's `mutate` answer under every preset and the policies example, kept in `example_outputs/`.

A refactoring of the engine or the planner must not change what any example gets: the patch, the warnings and the
exit status are compared to the letter. A change in behaviour that is meant shows up here as a reviewed diff:
regenerate with `FRW_UPDATE_OUTPUTS=1 .venv/bin/python -m pytest tests/cli/test_example_outputs.py`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from webhook.cli import main
from webhook.engine.config import Preset

ROOT = Path(__file__).parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
OUTPUTS = Path(__file__).parent / "example_outputs"
CONFIGS: dict[str, str] = {
    **{f"preset-{preset.value}": f"preset: {preset.value}\n" for preset in Preset},
    "legacy-amd-gpu-resource-name": "gpu-resource-name: amd.com/gpu\n",
    "policies": (ROOT / "examples" / "config" / "policies.yaml").read_text(),
}


def _answers(example: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    answers: dict[str, object] = {}
    for name, text in CONFIGS.items():
        config = tmp_path / f"{name}.yaml"
        config.write_text(text)
        status = main(["mutate", "-f", str(example), "-o", "patch", "--config", str(config)])
        out, err = capsys.readouterr()
        answers[name] = {
            "exit": status,
            "patch": json.loads(out) if out.strip() else None,
            "stderr": err.splitlines(),
        }
    return answers


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_example_output_is_kept(example: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    kept = OUTPUTS / f"{example.stem}.yaml"
    answers = _answers(example, tmp_path, capsys)
    if os.environ.get("FRW_UPDATE_OUTPUTS") == "1":
        OUTPUTS.mkdir(exist_ok=True)
        kept.write_text(yaml.safe_dump(answers, sort_keys=False, width=1000, allow_unicode=True))
    assert kept.exists(), f"{kept} missing: run with FRW_UPDATE_OUTPUTS=1 to record it"
    assert answers == yaml.safe_load(kept.read_text())


def test_every_kept_output_has_its_example():
    assert sorted(p.stem for p in OUTPUTS.glob("*.yaml")) == [p.stem for p in EXAMPLES]
