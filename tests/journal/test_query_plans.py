"""Reads whose cost must not grow with the finished instances a journal holds.

A long-running process piles up finished workflows. Opening a runtime (recovery's list of
unfinished ids) and paging through the web API must seek an index, not walk every row: these
tests read SQLite's plan for the statements the code runs, which does not depend on the size.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from typing import Any

import flowcore
from flowcore import Runtime
from flowcore.engine.events import EventWaitStarted
from flowcore.journal import schema
from flowcore.journal import sqlite as sqlite_module
from flowcore.web import _queries
from tests.helpers import until_recorded


@flowcore.activity
async def qp_echo(x: int) -> int:
    return x


@flowcore.workflow
async def qp_flow(x: int) -> int:
    return await qp_echo(x)


@flowcore.workflow
async def qp_waits(x: int) -> int:
    return x + await flowcore.wait_event("go", type=int)


def _plan(db: Any, sql: str, params: Any) -> str:
    with closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as con:
        return " / ".join(row[3] for row in con.execute("EXPLAIN QUERY PLAN " + sql, params))


async def _reads_of_an_open(db: Any, wf: Any, monkeypatch: Any) -> list[tuple[str, Any]]:
    """The statements and parameters the journal reads while a runtime opens ``db``."""
    seen: list[tuple[str, Any]] = []
    real = sqlite_module.SqliteJournal._read

    async def noting(self: Any, sql: str, params: Any) -> Any:
        seen.append((sql, params))
        return await real(self, sql, params)

    monkeypatch.setattr(sqlite_module.SqliteJournal, "_read", noting)
    async with Runtime(db, workflows=[wf]):
        pass
    monkeypatch.undo()
    return seen


async def test_recovery_reads_only_unfinished_rows(db_path, monkeypatch):
    """Opening a runtime asks for unfinished ids through the status index, not a table scan."""
    async with Runtime(db_path, workflows=[qp_flow]) as runtime:
        for i in range(3):
            await (await runtime.start(qp_flow, i)).result(timeout=10)
    seen = await _reads_of_an_open(db_path, qp_flow, monkeypatch)
    recovery = [(sql, p) for sql, p in seen if sql == sqlite_module._UNFINISHED]
    assert recovery, "recovery did not run the unfinished-ids statement"
    plan = _plan(db_path, *recovery[0])
    assert "SCAN workflows" not in plan, plan
    assert "workflows_by_status" in plan, plan


async def test_a_web_page_after_a_cursor_seeks_the_index(db_path, monkeypatch):
    """The page after a cursor starts at the cursor: its cost does not grow with the depth."""
    async with Runtime(db_path, workflows=[qp_flow]) as runtime:
        for i in range(5):
            await (await runtime.start(qp_flow, i)).result(timeout=10)
        first = await _queries.list_page(
            runtime, name=None, status=None, since=None, limit=2, cursor=None
        )
        assert first.next_cursor is not None
        seen: list[tuple[str, Any]] = []
        journal = runtime._journal
        real = journal._read  # type: ignore[attr-defined]

        async def noting(sql: str, params: Any) -> Any:
            seen.append((sql, params))
            return await real(sql, params)

        monkeypatch.setattr(journal, "_read", noting)
        cursor = _queries.decode_cursor(first.next_cursor)
        second = await _queries.list_page(
            runtime, name=None, status=None, since=None, limit=2, cursor=cursor
        )
        monkeypatch.undo()
    assert len(second.items) == 2
    assert not {s.id for s in second.items} & {s.id for s in first.items}
    assert len(seen) == 1
    plan = _plan(db_path, *seen[0])
    assert "SCAN workflows" not in plan, plan
    assert "SEARCH workflows USING INDEX workflows_by_created (created_at<?)" in plan, plan


def _noting_reads(journal: Any, monkeypatch: Any) -> list[tuple[str, Any]]:
    seen: list[tuple[str, Any]] = []
    real = journal._read

    async def noting(sql: str, params: Any) -> Any:
        seen.append((sql, params))
        return await real(sql, params)

    monkeypatch.setattr(journal, "_read", noting)
    return seen


class TestNameAndStatus:
    """A rare state of one workflow is found by seeking, however many rows the name has."""

    _SEEK = "SEARCH workflows USING INDEX workflows_by_name_status (name=? AND status=?"

    async def test_list_by_name_and_status_seeks_both(self, db_path, monkeypatch):
        """Runtime.list (the CLI's and py-orchestrate's list too) seeks name and status at once."""
        async with Runtime(db_path, workflows=[qp_flow]) as runtime:
            await (await runtime.start(qp_flow, 1)).result(timeout=10)
            seen = _noting_reads(runtime._journal, monkeypatch)
            found = await runtime.list(name="qp_flow", status="completed")
            monkeypatch.undo()
        assert len(found) == 1
        plan = _plan(db_path, *seen[0])
        assert "SCAN workflows" not in plan, plan
        assert self._SEEK + ")" in plan, plan

    async def test_a_web_page_by_name_and_status_seeks_to_the_cursor(self, db_path, monkeypatch):
        """The web API's filtered page after a cursor seeks name, status and creation time."""
        async with Runtime(db_path, workflows=[qp_flow]) as runtime:
            for i in range(3):
                await (await runtime.start(qp_flow, i)).result(timeout=10)
            first = await _queries.list_page(
                runtime, name="qp_flow", status="completed", since=None, limit=1, cursor=None
            )
            assert first.next_cursor is not None
            seen = _noting_reads(runtime._journal, monkeypatch)
            await _queries.list_page(
                runtime,
                name="qp_flow",
                status="completed",
                since=None,
                limit=1,
                cursor=_queries.decode_cursor(first.next_cursor),
            )
            monkeypatch.undo()
        plan = _plan(db_path, *seen[0])
        assert self._SEEK + " AND created_at<?)" in plan, plan

    async def test_counts_by_name_read_only_the_index(self, db_path, monkeypatch):
        """The web API's per-state counts of one workflow read its index entries, no row."""
        async with Runtime(db_path, workflows=[qp_flow]) as runtime:
            await (await runtime.start(qp_flow, 1)).result(timeout=10)
            seen = _noting_reads(runtime._journal, monkeypatch)
            counts = await _queries.count_by_status(runtime, "qp_flow")
            monkeypatch.undo()
        assert counts["completed"] == 1
        plan = _plan(db_path, *seen[0])
        assert "USING COVERING INDEX workflows_by_name_status (name=?)" in plan, plan

    async def test_an_owner_adds_the_index_to_a_file_without_it(self, db_path):
        """A journal written before the index gets it at its next open, same schema version."""
        async with Runtime(db_path, workflows=[qp_flow]) as runtime:
            await (await runtime.start(qp_flow, 1)).result(timeout=10)
        with closing(sqlite3.connect(db_path)) as con:
            con.execute("DROP INDEX workflows_by_name_status")
            con.commit()
        async with Runtime(db_path, workflows=[qp_flow]) as runtime:
            assert len(await runtime.list(name="qp_flow", status="completed")) == 1
        with closing(sqlite3.connect(f"{db_path.as_uri()}?mode=ro", uri=True)) as con:
            names = {n for (n,) in con.execute("SELECT name FROM sqlite_master")}
            (version,) = con.execute("PRAGMA user_version").fetchone()
        assert "workflows_by_name_status" in names
        assert version == schema.SCHEMA_VERSION == 5


async def test_recovery_reads_histories_by_key(db_path, monkeypatch):
    """Recovery's bulk reads seek each id through the primary keys, never a table scan."""
    async with Runtime(db_path, workflows=[qp_waits]) as runtime:
        for i in range(3):
            await runtime.start(qp_waits, i, id=f"qw{i}")
        for i in range(3):
            await until_recorded(runtime, f"qw{i}", EventWaitStarted)
    seen = await _reads_of_an_open(db_path, qp_waits, monkeypatch)
    bulk = [(sql, p) for sql, p in seen if " IN (" in sql and len(p) == 3]
    assert len(bulk) == 2, seen  # the status rows and the events of all three
    for sql, params in bulk:
        plan = _plan(db_path, sql, params)
        assert "SCAN" not in plan, plan
