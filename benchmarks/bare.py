"""W1-bare: the W1 workload on a bare prototype of flowcore's design, not on flowcore.

The issue sets W1's target from "a bare prototype of this design (one writer task, executemany
per batch, workflows resumed in memory)". This is such a prototype, measured in the same run as
flowcore so that the engine's overhead is a ratio, not a guess across machines and days:

- each workflow is an asyncio task running its coroutine; an activity appends its schedule,
  awaits the commit, runs the function in the task and keeps its completion for the next append
  (as flowcore's steps do: 4 appends per 3-step workflow);
- one writer drains the appends of a loop pass into one transaction on a worker thread
  (``executemany`` of event rows and status rows), WAL with ``synchronous=FULL``, then resolves
  their futures;
- events are JSON text, a status row per workflow is kept current, and nothing else: no
  projection, codec checks, retries, limits, replay, listeners, logs or recovery.

It is a yardstick for the engine's budget, not something to run workflows on.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from typing import TYPE_CHECKING, Any

from benchmarks.common import Run, run_loop, scratch_dir

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

_SCHEMA = (
    (
        "CREATE TABLE events (workflow_id TEXT, seq INTEGER, kind TEXT, data TEXT, at REAL, "
        "PRIMARY KEY (workflow_id, seq)) WITHOUT ROWID"
    ),
    "CREATE TABLE workflows (workflow_id TEXT PRIMARY KEY, name TEXT, status TEXT, at REAL)",
)
_Row = tuple[str, int, str, str, float]


class _Writer:
    """One writer: the appends of a loop pass become one transaction on a worker thread."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        for statement in _SCHEMA:
            self.db.execute(statement)
        self.rows: list[_Row] = []
        self.status: dict[str, tuple[str, str, str, float]] = {}
        self.waiting: list[asyncio.Future[None]] = []
        self.wake = asyncio.Event()

    def append(self, rows: list[_Row], status: tuple[str, str, str, float]) -> asyncio.Future[None]:
        self.rows += rows
        self.status[status[0]] = status
        future = asyncio.get_running_loop().create_future()
        self.waiting.append(future)
        self.wake.set()
        return future

    def _commit(self, rows: list[_Row], status: list[tuple[str, str, str, float]]) -> None:
        self.db.execute("BEGIN")
        self.db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", rows)
        self.db.executemany("INSERT OR REPLACE INTO workflows VALUES (?, ?, ?, ?)", status)
        self.db.execute("COMMIT")

    async def run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            rows, status, waiting = self.rows, list(self.status.values()), self.waiting
            self.rows, self.status, self.waiting = [], {}, []
            await asyncio.to_thread(self._commit, rows, status)
            for future in waiting:
                future.set_result(None)


class _Context:
    """One workflow's journal position and the events of its next append."""

    def __init__(self, writer: _Writer, workflow_id: str) -> None:
        self.writer, self.id, self.seq = writer, workflow_id, 0
        self.pending: list[_Row] = []

    def event(self, kind: str, **data: Any) -> None:
        self.seq += 1
        self.pending.append((self.id, self.seq, kind, json.dumps(data), time.time()))

    def commit(self, status: str) -> asyncio.Future[None]:
        rows, self.pending = self.pending, []
        return self.writer.append(rows, (self.id, "bench_three_steps", status, time.time()))

    async def activity(self, fn: Callable[[int], Awaitable[int]], arg: int) -> int:
        step = self.seq
        self.event("ActivityScheduled", step=step, name=fn.__name__, args=[arg])
        await self.commit("running")
        result = await fn(arg)
        self.event("ActivityCompleted", step=step, result=result)
        return result


async def _noop(x: int) -> int:
    return x


async def _three_steps(ctx: _Context, x: int) -> int:
    a = await ctx.activity(_noop, x)
    b = await ctx.activity(_noop, a)
    return await ctx.activity(_noop, b)


async def _workflow(writer: _Writer, i: int) -> int:
    ctx = _Context(writer, f"wf-{i}")
    ctx.event("WorkflowStarted", name="bench_three_steps", input=i)
    result = await _three_steps(ctx, i)
    ctx.event("WorkflowCompleted", result=result)
    await ctx.commit("completed")
    return result


async def _w1_bare(db: Path, workflows: int) -> Run:
    writer = _Writer(db)
    runner = asyncio.create_task(writer.run())
    try:
        began = time.perf_counter()
        await asyncio.gather(*(_workflow(writer, i) for i in range(workflows)))
        elapsed = time.perf_counter() - began
    finally:
        runner.cancel()
        writer.db.close()
    return {"seconds": elapsed, "workflows_per_s": workflows / elapsed,
            "steps_per_s": 3 * workflows / elapsed}  # fmt: skip


def w1_bare(workflows: int) -> Run:
    """W1-bare: W1 on the bare prototype, on a fresh SQLite file."""
    with scratch_dir() as tmp:
        return run_loop(_w1_bare(tmp / "bare.db", workflows))
