"""The event loop of the programs flowcore runs itself (its CLI): uvloop when it is installed.

flowcore's hot path is event-loop bookkeeping as much as its own code: a task per activity
attempt, a callback per resolved future, per commit and per wake-up. uvloop (``flowcore[speed]``)
does that bookkeeping in C; on the W1 benchmark it was worth 12% in an interleaved A/B. A
runtime embedded in an application runs on the application's loop (uvicorn picks uvloop by
itself when it is installed); ``FLOWCORE_LOOP`` chooses for the CLI: ``auto`` (the default:
uvloop when installed), ``uvloop`` (required) or ``asyncio`` (the standard library's).
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from typing import TYPE_CHECKING, Any, Final, TypeVar

from flowcore._logging import get_logger

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

__all__ = ["LOOPS", "LoopError", "loop_name", "run"]

_T = TypeVar("_T")

LOOPS: Final = ("auto", "uvloop", "asyncio")
"""The values ``FLOWCORE_LOOP`` takes."""


class LoopError(Exception):
    """``FLOWCORE_LOOP`` names no loop, or one that is not installed."""


def _uvloop_run() -> Callable[[Coroutine[Any, Any, Any]], Any] | None:
    if sys.platform == "win32":  # pragma: no cover - uvloop does not run there
        return None
    try:
        module = importlib.import_module("uvloop")
    except ImportError:
        return None
    return getattr(module, "run", None)  # uvloop.run: 0.18 and later


def loop_name(choice: str | None = None) -> str:
    """The loop :func:`run` uses: ``"uvloop"`` or ``"asyncio"``.

    Args:
        choice: One of :data:`LOOPS`; default: ``FLOWCORE_LOOP``, else ``"auto"``.

    Raises:
        LoopError: ``choice`` is not one of :data:`LOOPS`, or is ``"uvloop"`` and uvloop is not
            installed.
    """
    choice = choice or os.environ.get("FLOWCORE_LOOP") or "auto"
    if choice not in LOOPS:
        msg = f"FLOWCORE_LOOP must be one of {', '.join(LOOPS)}, not {choice!r}"
        raise LoopError(msg)
    if choice == "asyncio":
        return "asyncio"
    if _uvloop_run() is not None:
        return "uvloop"
    if choice == "uvloop":
        msg = "FLOWCORE_LOOP=uvloop, but uvloop is not installed: pip install 'flowcore[speed]'"
        raise LoopError(msg)
    return "asyncio"


def run(coro: Coroutine[Any, Any, _T], choice: str | None = None) -> _T:
    """Run ``coro`` to its end on a new event loop of the :func:`loop_name` kind.

    Raises:
        LoopError: see :func:`loop_name` (``coro`` is then closed, never started).
    """
    try:
        name = loop_name(choice)
    except LoopError:
        coro.close()
        raise
    get_logger("flowcore").debug("event loop", loop=name)
    runner = _uvloop_run() if name == "uvloop" else None
    if runner is not None:
        result: _T = runner(coro)
        return result
    return asyncio.run(coro)
