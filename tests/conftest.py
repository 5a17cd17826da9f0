"""Shared fixtures: a fresh global registry and logging configuration per test, a journal path."""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

import pytest
import structlog

from flowcore import _definitions

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    """Each test registers its own workflows and activities; restore the registry after it."""
    saved = _definitions.default_registry.copy()
    yield
    _definitions.default_registry.workflows = saved.workflows
    _definitions.default_registry.activities = saved.activities


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """Restore structlog's configuration after each test: the CLI's ``main``, called in process
    by some tests and harnesses, configures it (a WARNING filter would hide later tests' logs)."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A journal file path in a fresh temporary directory."""
    return tmp_path / "flowcore.db"


def pytest_asyncio_loop_factories(config: object, item: object) -> dict[str, object]:
    """``FLOWCORE_TEST_LOOP=uvloop`` runs every async test on uvloop (the CLI's loop)."""
    if os.environ.get("FLOWCORE_TEST_LOOP", "asyncio") != "uvloop":
        return {"asyncio": asyncio.new_event_loop}
    import uvloop  # only for that run

    return {"uvloop": uvloop.new_event_loop}
