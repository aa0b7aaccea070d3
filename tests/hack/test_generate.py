"""`make generate`: the files it writes are in sync, a stale one is named with the fix, regions keep their markers."""

from __future__ import annotations

from pathlib import Path

import pytest

from hack import generate
from webhook.engine.config import WebhookConfig


def test_every_generated_file_is_in_sync() -> None:
    assert generate.check() == []


def test_a_stale_region_is_reported_with_a_diff(monkeypatch: pytest.MonkeyPatch) -> None:
    readme = generate.REPO_ROOT / "README.md"
    stale = readme.read_text().replace("| `on-error` | `deny` |", "| `on-error` | `allow` |")
    original = Path.read_text
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: stale if self == readme else original(self, *a, **k))
    (problem,) = generate.check()
    assert problem.startswith("README.md is out of date") and "-| `on-error` | `allow` |" in problem
    assert generate.main(["--check"]) == 1


def test_a_region_is_replaced_between_its_markers_only() -> None:
    region = generate.Region(generate.REPO_ROOT / "x", lambda: "new\n", "<a>\n", "<b>")
    assert region.apply("head <a>\nold\n<b> tail") == "head <a>\nnew\n<b> tail"
    with pytest.raises(SystemExit, match="markers"):
        region.apply("no markers")


def test_every_config_key_is_documented_and_in_every_table() -> None:
    tables = generate.render_readme_table() + generate.render_chart_readme_table() + generate.render_values_keys()
    for name, field in WebhookConfig.model_fields.items():
        key = name.replace("_", "-")
        assert field.description, f"{key}: no description in webhook/engine/config.py"
        assert f"| `{key}` |" in tables and f"| `config.{key}` |" in tables and f"#   {key}: " in tables
