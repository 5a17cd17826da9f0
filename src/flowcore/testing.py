"""Helpers for users' tests: a manually driven clock."""

from __future__ import annotations

import asyncio
from typing import final

__all__ = ["FakeClock"]


@final
class FakeClock:
    """A clock that moves only when told to: ``advance(seconds)`` or ``set(timestamp)``.

    Pass it as ``Runtime(clock=FakeClock())``: retry delays (and timers) then wait for the test to
    move time instead of really sleeping.

    Args:
        start: The initial time, in seconds since the epoch.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._changed = asyncio.Event()

    def now(self) -> float:
        """The current fake time."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``."""
        self.set(self._now + seconds)

    def set(self, timestamp: float) -> None:
        """Jump to ``timestamp`` (never backwards)."""
        self._now = max(self._now, timestamp)
        self._changed.set()
        self._changed = asyncio.Event()

    async def sleep_until(self, deadline: float) -> None:
        """Wait until the fake time reaches ``deadline``."""
        while self._now < deadline:
            await self._changed.wait()
