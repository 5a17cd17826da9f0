"""Protocols users plug in: Backend, Journal, Clock and Listener.

Backend: where activities run; Journal: where history lives; Listener: who hears about progress.
"""

from __future__ import annotations

import time
from typing import Protocol, final

import anyio

from flowcore.backends.base import ActivityOutcome, ActivityTask, Backend
from flowcore.journal.base import Append, Journal
from flowcore.listeners import Listener, OutboxRecord

__all__ = [
    "ActivityOutcome",
    "ActivityTask",
    "Append",
    "Backend",
    "Clock",
    "Journal",
    "Listener",
    "OutboxRecord",
    "SystemClock",
]


class Clock(Protocol):
    """Wall-clock time for the runtime: event timestamps, retry delays and timers."""

    def now(self) -> float:
        """Seconds since the epoch (UTC)."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return once ``now() >= deadline``."""
        ...


@final
class SystemClock:
    """The real clock."""

    def now(self) -> float:
        """``time.time()``."""
        return time.time()

    async def sleep_until(self, deadline: float) -> None:
        """Sleep on the event loop until the deadline (re-checking after early wake-ups)."""
        while (left := deadline - time.time()) > 0:  # noqa: ASYNC110 - wall clock may lag the loop clock
            await anyio.sleep(left)
