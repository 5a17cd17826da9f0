"""Slots: the runtime's bound on activity attempts running at once, taken without a coroutine.

An ``asyncio.Semaphore`` costs a coroutine and three Python frames per ``acquire`` even while a
slot is free (``acquire``, ``locked`` and its generator expression). An activity attempt takes
a slot first: :meth:`Slots.take` does so in one call while one is free and nobody waits, and
:meth:`Slots.acquire` waits in FIFO order otherwise, as the semaphore did.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import final

__all__ = ["Slots"]


@final
class Slots:
    """A FIFO counting semaphore with a synchronous fast path (:meth:`take`)."""

    __slots__ = ("_free", "_waiters")

    def __init__(self, count: int) -> None:
        if count < 1:
            msg = f"there must be at least one slot, not {count}"
            raise ValueError(msg)
        self._free = count
        self._waiters: deque[asyncio.Future[None]] | None = None
        """Callers of :meth:`acquire` waiting for a slot, in arrival order (None until one)."""

    @property
    def free(self) -> int:
        """Slots nobody holds (a slot handed to a waiter that has not resumed yet is held)."""
        return self._free

    def locked(self) -> bool:
        """Whether a caller of :meth:`acquire` would wait (no slot free, or others wait)."""
        return self._free == 0 or any(not w.cancelled() for w in self._waiters or ())

    def take(self) -> bool:
        """Take a slot if one is free and nobody waits for one; return whether it was taken."""
        if self._free and not self._waiters:
            self._free -= 1
            return True
        return False

    async def acquire(self) -> None:
        """Take a slot, waiting behind earlier callers for one to be released."""
        if self.take():
            return
        waiters = self._waiters
        if waiters is None:
            waiters = self._waiters = deque()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.cancelled():
                with contextlib.suppress(ValueError):  # a release() already dropped it
                    waiters.remove(waiter)
            else:  # handed a slot, then cancelled before resuming: pass it on
                self.release()
            raise

    def release(self) -> None:
        """Give a slot back: to the longest waiting caller, or to the free ones."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to it: `free` does not change
                return
        self._free += 1
