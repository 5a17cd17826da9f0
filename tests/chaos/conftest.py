"""Tests marked ``slow`` (the full-size load tests) run only when asked for.

Ask with ``FLOWCORE_SLOW=1`` or a ``-m`` expression naming ``slow`` (``nox -s chaos`` does).
"""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``slow`` tests unless they were asked for."""
    if os.environ.get("FLOWCORE_SLOW") == "1" or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow: set FLOWCORE_SLOW=1 or run nox -s chaos")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
