"""Fixtures of the CLI tests: `cli(*args, stdin=None)` runs `flyte-resources-webhook` as users do, a subprocess."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]

RunCli = Callable[..., subprocess.CompletedProcess[str]]


def _run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webhook.cli", *args], input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=60
    )


@pytest.fixture
def cli() -> RunCli:
    return _run
