"""The SQLite writer inserts a batch's events 50 rows per statement, the rest one per row."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing

import pytest

from flowcore.engine.events import ActivityScheduled
from flowcore.errors import JournalError
from flowcore.journal.sqlite import SqliteJournal
from tests.helpers import Flow


@pytest.mark.parametrize("events", [1, 49, 50, 51, 123])
async def test_every_event_is_stored_in_order(tmp_path, events):
    """Whole statements and the rows left over store every event once, at its position."""
    path = tmp_path / "events.db"
    flows = [Flow(f"ev-{i}") for i in range(3)]
    async with SqliteJournal(path) as journal:
        await asyncio.gather(*(journal.submit(f.start(at=1.0)) for f in flows))
        ops = []
        for n in range(events):  # spread over the flows, several ops of one flow per batch
            flow = flows[n % len(flows)]
            step = flow.next_seq
            ops.append(flow.ops(ActivityScheduled(at=2.0 + n, step=step, name=f"a{n}")))
        before = journal.commits
        await asyncio.gather(*(journal.submit(op) for op in ops))
        assert journal.commits == before + 1
        for i, flow in enumerate(flows):
            history = await journal.history(flow.wid)
            names = [e.name for e in history[1:]]
            assert names == [f"a{n}" for n in range(i, events, len(flows))]
    with closing(sqlite3.connect(path)) as conn:
        count, positions = conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT workflow_id || '/' || seq) FROM events"
        ).fetchone()
    assert count == positions == events + len(flows)


async def test_a_row_failing_mid_statement_leaves_nothing_of_its_batch(tmp_path):
    """A constraint failure halfway through a 50-row statement (OR FAIL keeps the rows before
    it) fails the batch, and its rollback leaves none of the batch's events or rows stored."""
    path = tmp_path / "events.db"
    flows = [Flow(f"ev-{i}") for i in range(60)]
    async with SqliteJournal(path) as journal:
        await asyncio.gather(*(journal.submit(f.start(at=1.0)) for f in flows))
        with closing(sqlite3.connect(path)) as conn, conn:  # behind the writer's back
            conn.execute("INSERT INTO events VALUES ('ev-30', 2, 'activity_scheduled', '{}', 0.0)")
        ops = [f.schedule(1, at=2.0) for f in flows]
        results = await asyncio.gather(*(journal.submit(op) for op in ops), return_exceptions=True)
        assert all(isinstance(r, JournalError) for r in results)
        assert isinstance(results[0].__cause__, sqlite3.IntegrityError)
    with closing(sqlite3.connect(path)) as conn:
        stored = conn.execute("SELECT workflow_id, seq FROM events WHERE seq > 1").fetchall()
        updated = conn.execute("SELECT COUNT(*) FROM workflows WHERE updated_at > 1.0").fetchone()
    assert stored == [("ev-30", 2)]
    assert updated == (0,)
