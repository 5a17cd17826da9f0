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
from flowcore.journal import sqlite as sqlite_module
from flowcore.web import _queries


@flowcore.activity
async def qp_echo(x: int) -> int:
    return x


@flowcore.workflow
async def qp_flow(x: int) -> int:
    return await qp_echo(x)


def _plan(db: Any, sql: str, params: Any) -> str:
    with closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as con:
        return " / ".join(row[3] for row in con.execute("EXPLAIN QUERY PLAN " + sql, params))


async def test_recovery_reads_only_unfinished_rows(db_path, monkeypatch):
    """Opening a runtime asks for unfinished ids through the status index, not a table scan."""
    async with Runtime(db_path, workflows=[qp_flow]) as runtime:
        for i in range(3):
            await (await runtime.start(qp_flow, i)).result(timeout=10)
    seen: list[tuple[str, Any]] = []
    real = sqlite_module.SqliteJournal._read

    async def noting(self: Any, sql: str, params: Any) -> Any:
        seen.append((sql, params))
        return await real(self, sql, params)

    monkeypatch.setattr(sqlite_module.SqliteJournal, "_read", noting)
    async with Runtime(db_path, workflows=[qp_flow]):
        pass
    monkeypatch.undo()
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
