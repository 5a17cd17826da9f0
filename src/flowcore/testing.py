"""Helpers for users' tests: fake clocks, a journal in memory, replay of recorded histories."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, final

from flowcore._limits import DEFAULT_MAX_PAYLOAD_BYTES
from flowcore.engine.events import WorkflowStarted, decode_event
from flowcore.engine.executor import WorkflowExecutor
from flowcore.errors import NondeterminismError
from flowcore.journal.memory import InMemoryJournal

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from flowcore._definitions import WorkflowDef
    from flowcore.engine.events import Event

__all__ = ["FakeClock", "InMemoryJournal", "VirtualClock", "replay"]

_DEFAULT_START = 1_700_000_000.0
_SETTLE_ROUNDS = 8


class _ManualClock:
    """A clock whose time moves only when told; sleepers wake when it passes their deadline."""

    def __init__(self, start: float = _DEFAULT_START) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        """The current fake time, in seconds since the epoch."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` and wake the sleepers that are due."""
        self.set(self._now + seconds)

    def set(self, timestamp: float) -> None:
        """Jump to ``timestamp`` (never backwards) and wake the sleepers that are due."""
        self._now = max(self._now, timestamp)
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, waiter = heapq.heappop(self._sleepers)
            if not waiter.done():
                waiter.set_result(None)

    async def sleep_until(self, deadline: float) -> None:
        """Wait until the fake time reaches ``deadline``."""
        if deadline <= self._now:
            return
        waiter = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline, next(self._order), waiter))
        self._sleeping()
        try:
            await waiter
        finally:
            waiter.cancel()  # a cancelled sleeper is skipped when popped

    def _sleeping(self) -> None:
        """Hook: a sleeper was added."""

    def _next_deadline(self) -> float | None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None


@final
class FakeClock(_ManualClock):
    """A clock that moves only when the test says so: ``advance(seconds)`` or ``set(timestamp)``.

    Pass it as ``Runtime(clock=FakeClock())``: timers and retry delays wait for the test to move
    time instead of really sleeping.

    Args:
        start: The initial time, in seconds since the epoch.
    """


@final
class VirtualClock(_ManualClock):
    """A clock that skips ahead when there is nothing else to do.

    Pass it as ``Runtime(clock=VirtualClock())``. While a caller waits in ``result()`` and no
    activity runs and no journal write is pending, time jumps to the next timer's deadline, so
    a test of a 24-hour approval timeout runs in milliseconds. Time never skips while the test
    itself is doing something else (such as sending an event), because nobody waits for a
    result then. ``advance`` and ``set`` work too.

    Args:
        start: The initial time, in seconds since the epoch.
    """

    def __init__(self, start: float = _DEFAULT_START) -> None:
        super().__init__(start)
        self._idle: Callable[[], bool] = lambda: False
        self._skipper: asyncio.Task[None] | None = None

    def bind(self, idle: Callable[[], bool]) -> None:
        """Runtime hook: how to tell that the runtime has nothing to do but wait."""
        self._idle = idle

    def _sleeping(self) -> None:
        if self._skipper is None or self._skipper.done():
            self._skipper = asyncio.get_running_loop().create_task(self._skip())

    async def _skip(self) -> None:
        while (deadline := self._next_deadline()) is not None:
            for _ in range(_SETTLE_ROUNDS):  # let callbacks and fresh tasks run first
                await asyncio.sleep(0)
            if self._idle() and self._next_deadline() == deadline:
                self.set(deadline)
            else:
                await asyncio.sleep(0.001)  # real work is running: look again shortly


def replay(
    history: Iterable[Event | Mapping[str, Any]],
    workflow: WorkflowDef[Any, Any],
    *,
    workflow_id: str = "replay",
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
) -> None:
    """Replay a recorded history against a workflow's current code, as recovery would.

    Use it in a test suite to catch a code change that would break instances in flight::

        rows = json.loads(Path("tests/histories/order-42.json").read_text())
        flowcore.testing.replay(rows, place_order)   # `python -m flowcore export order-42`

    Nothing runs for real: activities, timers and children are not carried out.

    Args:
        history: Journal events, or the ``{kind, data, at}`` rows ``python -m flowcore export``
            prints.
        workflow: The ``@workflow`` definition to check.
        workflow_id: The instance id the history was recorded under (``flowcore.random()`` and
            ``uuid4()`` are seeded by it; pass it when the code branches on them).
        max_payload_bytes: The payload limit of the runtime that recorded the history: a call
            it refused (a PayloadError the code caught) must be refused here too.

    Raises:
        NondeterminismError: the code now issues other commands than the history recorded
            (``.step``, ``.recorded`` and ``.attempted`` say where and how), or the workflow
            has another name than the recorded one (step 0: recovery would find no code).
        JournalCorruptError: a row is not a valid journal event.
        ValueError: the history does not begin with ``workflow_started``.
    """
    events = [_as_event(item) for item in history]
    started = events[0] if events else None
    if isinstance(started, WorkflowStarted) and started.name != workflow.name:
        # Recovery looks code up by the recorded name: a renamed workflow would not run at all.
        raise NondeterminismError(
            workflow_id=workflow_id,
            workflow=workflow.name,
            step=0,
            recorded=f"workflow {started.name!r}",
            attempted=f"workflow {workflow.name!r}",
        )
    executor = WorkflowExecutor(workflow, workflow_id, max_payload=max_payload_bytes)
    try:
        executor.replay(events)
    finally:
        executor.close()


def _as_event(item: Event | Mapping[str, Any]) -> Event:
    if not isinstance(item, Mapping):
        return item
    data = item.get("data", {})
    text = data if isinstance(data, str) else json.dumps(data)
    return decode_event(str(item["kind"]), text, float(item["at"]))
