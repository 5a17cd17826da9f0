"""Test helpers: deadline polling, history builders and journal-op builders."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

import flowcore.journal.sqlite as sqlite_module
from flowcore.engine.events import (
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    WorkflowCompleted,
    WorkflowStarted,
)
from flowcore.errors import FailureInfo
from flowcore.journal.base import Append
from flowcore.journal.memory import InMemoryJournal
from flowcore.journal.projection import Projection

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

T0 = 1_700_000_000.0


def run_app(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a test subprocess's main coroutine on the suite's loop (``FLOWCORE_TEST_LOOP``).

    ``asyncio`` (the default) or ``uvloop``: the chaos apps then run on the same loop as the
    in-process tests (see tests/conftest.py).
    """
    from flowcore import _loop

    return _loop.run(coro, os.environ.get("FLOWCORE_TEST_LOOP") or "asyncio")


async def assert_eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    *,
    timeout: float = 10.0,
    interval: float = 0.01,
    message: str = "condition not met",
) -> None:
    """Poll ``check`` until it is true, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} within {timeout}s")
        await anyio.sleep(interval)


def started(
    name: str, payload: Any = None, *, version: str = "1", at: float = T0
) -> WorkflowStarted:
    """A WorkflowStarted event."""
    return WorkflowStarted(at=at, name=name, version=version, input=payload)


def scheduled(step: int, name: str, *args: Any, at: float = T0) -> ActivityScheduled:
    """An ActivityScheduled event."""
    return ActivityScheduled(at=at, step=step, name=name, args=list(args), kwargs=None)


def completed(step: int, result: Any = None, *, at: float = T0) -> ActivityCompleted:
    """An ActivityCompleted event."""
    return ActivityCompleted(at=at, step=step, result=result)


def failed(
    step: int,
    type_name: str = "builtins.ValueError",
    message: str = "boom",
    *,
    attempts: int = 1,
    at: float = T0,
) -> ActivityFailed:
    """An ActivityFailed event."""
    return ActivityFailed(
        at=at,
        step=step,
        failure=FailureInfo(type_name=type_name, message=message),
        attempts=attempts,
    )


@dataclass
class Flow:
    """Builds the ops of one workflow the way a runtime would: contiguous positions, fresh rows."""

    wid: str
    name: str = "wf"
    proj: Projection = field(init=False)
    next_seq: int = 1

    def __post_init__(self):
        self.proj = Projection(self.wid)

    def ops(self, *events, create=False):
        first = self.next_seq
        for event in events:
            self.proj.apply(event)
        self.next_seq += len(events)
        row = self.proj.row()
        return Append(workflow_id=self.wid, first_seq=first, events=events, row=row, create=create)

    def start(self, *, at=1.0, payload=None):
        started = WorkflowStarted(at=at, name=self.name, version="1", input=payload)
        return self.ops(started, create=True)

    def schedule(self, step, *, at=2.0, activity="act"):
        return self.ops(ActivityScheduled(at=at, step=step, name=activity))

    def complete(self, *, at=3.0, result=None):
        return self.ops(WorkflowCompleted(at=at, result=result))


async def events_of(rt: Any, wid: str, kind: type) -> list[Any]:
    """The committed events of one kind in the instance's history."""
    return [e for e in await rt.history(wid) if isinstance(e, kind)]


async def until_recorded(rt: Any, wid: str, kind: type, count: int = 1) -> None:
    """Wait (with a deadline) until the history holds ``count`` events of ``kind``."""
    from flowcore import WorkflowNotFoundError

    async def check() -> bool:
        try:
            return len(await events_of(rt, wid, kind)) >= count
        except WorkflowNotFoundError:  # not started yet
            return False

    await assert_eventually(check, message=f"{wid} never recorded {count} {kind.__name__}")


def record_statements(monkeypatch: Any) -> list[tuple[str, str, list[Any] | None]]:
    """Make the SQLite writer note each statement it runs, until ``monkeypatch.undo()``.

    Returns the (live) list of ``(method, SQL on one line, parameter rows or None)``, in the
    order the writer's thread ran them.
    """
    seen: list[tuple[str, str, list[Any] | None]] = []
    real = sqlite_module._write_batch

    class Recorder:
        """The raw connection of the writer, noting what it is asked to run."""

        def __init__(self, conn: Any) -> None:
            self._conn = conn

        def execute(self, sql: str, *args: Any) -> Any:
            seen.append(("execute", " ".join(sql.split()), None))
            return self._conn.execute(sql, *args)

        def executemany(self, sql: str, rows: Any) -> Any:
            rows = list(rows)
            seen.append(("executemany", " ".join(sql.split()), rows))
            return self._conn.executemany(sql, rows)

        @property
        def in_transaction(self) -> bool:
            return bool(self._conn.in_transaction)

    monkeypatch.setattr(sqlite_module, "_write_batch", lambda c, w: real(Recorder(c), w))
    return seen


class ReadCountingJournal(InMemoryJournal):
    """An in-memory journal that counts the reads of histories and of status rows."""

    def __init__(self) -> None:
        super().__init__()
        self.history_reads = 0
        self.status_reads = 0
        self.bulk_reads = 0
        """``read_many`` calls (not counted in ``reads``)."""

    @property
    def reads(self) -> int:
        """History and status reads together."""
        return self.history_reads + self.status_reads

    async def history(self, workflow_id: str) -> Any:
        self.history_reads += 1
        return await super().history(workflow_id)

    async def status(self, workflow_id: str) -> Any:
        self.status_reads += 1
        return await super().status(workflow_id)

    async def read_many(self, workflow_ids: Any) -> Any:
        self.bulk_reads += 1
        return await super().read_many(workflow_ids)
