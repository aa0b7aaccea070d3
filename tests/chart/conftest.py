"""Every test in this folder is marked `tools` here (by its folder): the chart checks run helm (from the binary
cache, `make control-plane`) and promtool (`make prometheus`), so `make unit` (`-m 'not e2e and not tools'`)
leaves them to `make e2e` and `make test`, and needs no binary."""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(pytest.mark.tools)
