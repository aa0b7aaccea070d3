"""The package builds without warnings: `make install` shows nothing a user must wonder about."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_the_wheel_builds_without_setuptools_warnings(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr and "deprecated" not in done.stderr, done.stderr
    wheel = next(tmp_path.glob("flyte_resources_webhook-*.whl"))
    assert wheel.stat().st_size > 0


def test_an_editable_install_is_a_plain_path_entry() -> None:
    """setuptools warns about its import-hook editable strategy; packages at the top of the checkout with
    `package-dir = {"" = "."}` get a plain .pth entry instead, without the warning."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"] == {"": "."}
    assert (ROOT / "webhook" / "__init__.py").exists()
