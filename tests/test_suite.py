"""The suite's own rules: tests/e2e/ is e2e and tests/chart/ is tools by their folders, property tests run
derandomized, tests import no tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from hypothesis import settings

TESTS = Path(__file__).parent


def test_make_unit_selects_nothing_under_e2e_or_chart() -> None:
    """`make unit` starts nothing and needs no binary: every test of these folders is marked by its folder."""
    for folder, marker in (("e2e", "e2e"), ("chart", "tools")):
        args = [str(TESTS / folder), "-m", f"not {marker}", "--collect-only", "-q", "-p", "no:cacheprovider"]
        done = subprocess.run(
            [sys.executable, "-m", "pytest", *args], capture_output=True, text=True, cwd=TESTS.parent, timeout=300
        )
        assert "no tests collected" in done.stdout and "deselected" in done.stdout, done.stdout + done.stderr


def test_property_tests_run_derandomized_unless_exploring() -> None:
    assert settings.get_profile("ci").derandomize is True
    assert settings.get_profile("explore").derandomize is False
    chosen = os.environ.get("FRW_HYPOTHESIS_PROFILE", "ci")
    assert settings.default.derandomize is settings.get_profile(chosen).derandomize


def test_tests_import_product_and_tooling_never_other_tests() -> None:
    offenders = [
        f"{path.relative_to(TESTS.parent)}:{n}"
        for path in TESTS.rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.match(r"\s*(from tests[. ]|import tests\b)", line)
    ]
    assert not offenders, offenders
