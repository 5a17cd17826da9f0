"""Load scenarios shared by the load tests: many waiting workflows; a large finished database.

``python -m tests.chaos.load`` runs the full-size versions (10,000 waiting workflows, 100,000
finished ones) and prints the figures the README quotes.
"""

from __future__ import annotations

import asyncio
import gc
import io
import json
import os
import sqlite3
import statistics
import sys
import time
import tracemalloc
from contextlib import closing, redirect_stderr, redirect_stdout, suppress
from pathlib import Path
from typing import Any

import structlog

CHUNK = 500


def _rss() -> int:
    with Path("/proc/self/statm").open(encoding="ascii") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _define() -> Any:
    import flowcore

    @flowcore.activity
    async def ld_add(x: int, y: int) -> int:
        return x + y

    @flowcore.workflow
    async def ld_wait(x: int) -> int:
        got = await flowcore.wait_event("wake")
        return await ld_add(x, got)

    return ld_wait


async def waiting(db: Path, n: int, *, trace: bool = True) -> dict[str, float]:
    """Start ``n`` workflows that wait for an event, measure them, wake them all.

    Returns seconds to start them all, traced Python memory (and RSS growth) per waiting
    workflow, and seconds to wake them and collect every result.
    """
    from flowcore import Runtime

    wf = _define()
    async with Runtime(db) as rt:
        await rt.start(wf, 0, id="warm-up")
        await rt.send_event("warm-up", "wake", 1)
        await rt.result("warm-up", timeout=30)
        gc.collect()
        if trace:
            tracemalloc.start()
        rss0, began = _rss(), time.perf_counter()
        for at in range(0, n, CHUNK):
            ids = range(at, min(n, at + CHUNK))
            await asyncio.gather(*(rt.start(wf, i, id=f"w{i}") for i in ids))
        started = time.perf_counter() - began
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] if trace else 0
        rss = _rss() - rss0
        if trace:
            tracemalloc.stop()
        waiting_now = sum(1 for s in await rt.list(status="running", limit=n + 1))
        began = time.perf_counter()
        for at in range(0, n, CHUNK):
            ids = range(at, min(n, at + CHUNK))
            await asyncio.gather(*(rt.send_event(f"w{i}", "wake", 1) for i in ids))
        results = await asyncio.gather(*(rt.result(f"w{i}", timeout=120) for i in range(n)))
        woken = time.perf_counter() - began
    assert results == [i + 1 for i in range(n)], "a woken workflow returned the wrong result"
    return {
        "workflows": n,
        "waiting_at_once": waiting_now,
        "start_seconds": started,
        "traced_bytes_per_waiting_workflow": traced / n,
        "rss_bytes_per_waiting_workflow": rss / n,
        "wake_all_seconds": woken,
    }


async def finished_database(db: Path, total: int, real: int = 300) -> None:
    """Fill ``db`` with ``total`` finished workflows (a third failed).

    ``real`` of them run through a runtime; the rest are copies of their rows and events
    under new ids and later timestamps (what matters is the size and the indexes).
    """
    import flowcore
    from flowcore import Runtime

    @flowcore.activity(retry=flowcore.RetryPolicy(max_attempts=1))
    def ld_maybe(x: int) -> int:
        if x % 3 == 0:
            raise ValueError(f"planned failure {x}")
        return x

    @flowcore.workflow
    async def ld_done(x: int) -> int:
        return await ld_maybe(x)

    async with Runtime(db, durability="normal") as rt:
        handles = [await rt.start(ld_done, i, id=f"r{i}") for i in range(real)]
        for handle in handles:
            with suppress(flowcore.WorkflowFailedError):
                await handle.result(timeout=30)
    with closing(sqlite3.connect(db)) as con, con:
        rows = con.execute("SELECT * FROM workflows").fetchall()
        events = con.execute("SELECT * FROM events").fetchall()
        for copy in range(1, -(-total // real)):
            n = min(real, total - copy * real)
            suffix = f":c{copy}"
            con.executemany(
                "INSERT INTO workflows (id, name, version, status, input, output, error, "
                "current_activity, created_at, updated_at, parent_id, custom_status) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(r[0] + suffix, *r[1:8], r[8] + copy, r[9] + copy, *r[10:]) for r in rows[:n]],
            )
            ids = {r[0] for r in rows[:n]}
            con.executemany(
                "INSERT INTO events (workflow_id, seq, kind, data, at) VALUES (?, ?, ?, ?, ?)",
                [(e[0] + suffix, e[1], e[2], e[3], e[4] + copy) for e in events if e[0] in ids],
            )


def _median_ms(fn: Any, repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def inspection_times(db: Path, workflow_id: str) -> dict[str, Any]:
    """Median milliseconds of ``status`` and ``list --status failed``: the journal API and the
    CLI command run in this process (its interpreter start-up excluded), plus query plans."""
    from flowcore import _cli
    from flowcore.journal.sqlite import SqliteJournal

    async def both() -> tuple[float, float]:
        async with SqliteJournal(db, readonly=True) as journal:
            await journal.status(workflow_id)  # warm the page cache
            status_ms = await _amedian(lambda: journal.status(workflow_id))
            list_ms = await _amedian(lambda: journal.list(status="failed", limit=100))
        return status_ms, list_ms

    status_ms, list_ms = asyncio.run(both())
    saved = structlog.get_config()

    def cli(*args: str) -> None:
        with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            code = _cli.main([*args, "--db", str(db)])
        assert code == 0, f"CLI {args} exited {code}"

    try:
        cli_status = _median_ms(lambda: cli("status", workflow_id))
        cli_list = _median_ms(lambda: cli("list", "--status", "failed"))
    finally:
        structlog.configure(**saved)
    with closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as con:
        plans = {
            name: " / ".join(row[3] for row in con.execute("EXPLAIN QUERY PLAN " + sql, params))
            for name, sql, params in [
                ("status", "SELECT * FROM workflows WHERE id = ?", (workflow_id,)),
                ("list_failed", ("SELECT * FROM workflows WHERE status = ? "
                 "ORDER BY created_at DESC, id DESC LIMIT 100"), ("failed",)),
            ]
        }  # fmt: skip
        count = con.execute("SELECT count(*) FROM workflows").fetchone()[0]
    return {
        "workflows": count,
        "status_ms": status_ms,
        "list_failed_ms": list_ms,
        "cli_status_ms": cli_status,
        "cli_list_failed_ms": cli_list,
        "plans": plans,
    }


async def _amedian(fn: Any, repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        await fn()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def main() -> int:
    """Run the full-size load scenarios in a temporary directory; print their figures."""
    import logging
    import tempfile

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    with tempfile.TemporaryDirectory(prefix="flowcore-load-") as tmp:
        figures = {"waiting": asyncio.run(waiting(Path(tmp) / "wait.db", 10_000))}
        asyncio.run(finished_database(Path(tmp) / "done.db", 100_000))
        figures["finished"] = inspection_times(Path(tmp) / "done.db", "r7:c200")
    json.dump(figures, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
