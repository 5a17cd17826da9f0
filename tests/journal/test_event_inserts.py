"""The SQLite writer inserts a batch's events 50 rows per statement, the rest one per row."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing

import pytest

from flowcore.engine.events import ActivityScheduled
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
