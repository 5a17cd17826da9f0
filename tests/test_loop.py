"""``flowcore._loop``: the CLI's event loop is uvloop when installed, chosen by FLOWCORE_LOOP."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest

from flowcore import _loop

HAS_UVLOOP = importlib.util.find_spec("uvloop") is not None


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWCORE_LOOP", raising=False)


def test_asyncio_is_the_standard_librarys_loop():
    assert _loop.loop_name("asyncio") == "asyncio"
    assert _loop.run(_loop_module(), "asyncio").startswith("asyncio")


@pytest.mark.skipif(not HAS_UVLOOP, reason="uvloop is not installed (flowcore[speed])")
@pytest.mark.parametrize("choice", [None, "auto", "uvloop"])
def test_uvloop_when_installed(choice: str | None):
    assert _loop.loop_name(choice) == "uvloop"
    assert _loop.run(_loop_module(), choice).startswith("uvloop")


def test_the_environment_chooses(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FLOWCORE_LOOP", "asyncio")
    assert _loop.run(_loop_module()).startswith("asyncio")


def test_without_uvloop_auto_falls_back_and_uvloop_is_refused(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(_loop, "_uvloop_run", lambda: None)
    assert _loop.run(_loop_module(), "auto").startswith("asyncio")
    coro = _loop_module()
    with pytest.raises(_loop.LoopError, match=r"pip install 'flowcore\[speed\]'"):
        _loop.run(coro, "uvloop")
    assert coro.cr_frame is None  # closed, never started: no "never awaited" warning


def test_an_unknown_loop_is_refused(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FLOWCORE_LOOP", "trio")
    with pytest.raises(_loop.LoopError, match="must be one of auto, uvloop, asyncio, not 'trio'"):
        _loop.run(_loop_module())
