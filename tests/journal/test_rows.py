"""The SQLite writer's status rows: only what changed is written, NULL never bound, same values.

The writer updates a row with the columns that changed since the row it last wrote (see
flowcore.journal._rows); these tests pin that the stored rows stay exactly those the batch rules
give (the in-memory journal's), through column changes to and from NULL, renames, resets, several
ops of one id in a batch, finished workflows and a fresh writer that knows nothing yet.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from contextlib import closing

import pytest

import flowcore.journal._rows as rows_module
import flowcore.journal.sqlite as sqlite_module
from flowcore.engine.events import (
    ActivityCompleted,
    CustomStatusSet,
    WorkflowFailed,
    WorkflowParked,
    WorkflowResumed,
    WorkflowStarted,
)
from flowcore.errors import FailureInfo, WorkflowAlreadyExistsError
from flowcore.journal.memory import InMemoryJournal
from flowcore.journal.sqlite import SqliteJournal
from tests.helpers import Flow, record_statements

_COLUMNS = (
    "id", "name", "version", "status", "input", "output", "error", "current_activity",
    "created_at", "updated_at", "parent_id", "custom_status",
)  # fmt: skip
_TYPES = {type(None): "null", str: "text", float: "real"}


def stored(path):
    """Every row of ``workflows`` as (values, storage classes), by id."""
    typed = ", ".join(f"typeof({c})" for c in _COLUMNS)
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute(f"SELECT {', '.join(_COLUMNS)}, {typed} FROM workflows").fetchall()  # noqa: S608
    return {row[0]: (row[: len(_COLUMNS)], row[len(_COLUMNS) :]) for row in rows}


async def expected(memory):
    """The rows the batch rules give, as :func:`stored` reads them from SQLite."""
    rows = {}
    for wid, row in memory._rows.items():
        values = tuple(getattr(row, c) for c in _COLUMNS)
        rows[wid] = (values, tuple(_TYPES[type(v)] for v in values))
    return rows


def restart(flow, *, at, version="1", payload=None, name=None):
    """A continue-as-new of ``flow`` (optionally renamed, with another version and input)."""
    flow.next_seq = 1
    flow.name = name or flow.name
    started = WorkflowStarted(at=at, name=flow.name, version=version, input=payload)
    return dataclasses.replace(flow.ops(started), reset=True)


def scenario(parent, prefix=""):
    """Batches of ops that move every column of a row to and from NULL, and back."""
    a, b, c = Flow(f"{prefix}rows-a"), Flow(f"{prefix}rows-b"), Flow(f"{prefix}rows-c")
    c_start = c.ops(
        WorkflowStarted(at=1.5, name="wf", version="1", input=[1, "é"], parent_id=parent),
        create=True,
    )
    yield [a.start(at=1.0, payload={"x": 1}), b.start(at=1.0), c_start]
    yield [a.schedule(1, at=2.0), b.schedule(1, at=2.0, activity="first")]
    yield [
        a.ops(CustomStatusSet(at=3.0, step=2, value={"stage": "one"})),
        a.ops(WorkflowParked(at=3.5, reason="stuck \udc80 here")),  # same id, same batch
        b.schedule(2, at=3.0, activity="second"),
        c.schedule(1, at=3.0, activity="ünïcode"),
    ]
    yield [
        a.ops(WorkflowResumed(at=4.0)),
        b.ops(ActivityCompleted(at=4.0, step=2, result=None)),
        c.schedule(2, at=3.0, activity="ünïcode"),  # an unchanged row
    ]
    yield [
        restart(b, at=5.0, version="2", payload="again", name="renamed"),
        b.schedule(1, at=5.5, activity="after"),
        a.ops(CustomStatusSet(at=5.0, step=3, value=None)),
    ]
    yield [
        a.ops(WorkflowFailed(at=6.0, failure=FailureInfo(type_name="E", message="boom"))),
        restart(c, at=6.0, payload=None),
    ]
    yield [b.complete(at=7.0, result={"done": True}), c.schedule(1, at=7.0)]


def scaled(parent, copies):
    """The scenario's batches for ``copies`` sets of flows at once, each set's ops together: a
    shape's rows then fill multi-row statements (ROWS_PER_STATEMENT) and leave some over."""
    runs = [scenario(parent, f"{n}-") for n in range(copies)]
    for batches in zip(*runs, strict=True):
        yield [op for batch in batches for op in batch]


async def submit_all(journal, batch):
    """Submit a batch's ops together; return what each raised (None if committed)."""
    results = await asyncio.gather(*(journal.submit(op) for op in batch), return_exceptions=True)
    return [type(r) if isinstance(r, BaseException) else r for r in results]


class TestRowsAsTheBatchRulesGive:
    @pytest.mark.parametrize(("reopen_at", "copies"), [(None, 1), (2, 1), (4, 1), (None, 53)])
    async def test_stored_rows_match_after_every_batch(self, tmp_path, reopen_at, copies):
        """After every batch the table holds the rows the in-memory journal holds, value and
        storage class alike; a writer reopened mid-way (knowing no row) writes them as well, and
        multi-row statements (53 copies of each op) write the same rows as single-row ones."""
        path = tmp_path / "rows.db"
        memory = InMemoryJournal()
        await memory.open()
        journal = SqliteJournal(path)
        await journal.open()
        try:
            for number, batch in enumerate(scaled("parent-1", copies)):
                if number == reopen_at:
                    await journal.close()
                    await journal.open()
                assert await submit_all(journal, batch) == await submit_all(memory, batch)
                assert stored(path) == await expected(memory), f"after batch {number}"
        finally:
            await journal.close()
            await memory.close()

    async def test_refused_ops_leave_the_record_exact(self, tmp_path):
        """A refused create names an existing id: the stored row stays, and the next update of
        that id still writes exactly the batch rules' row."""
        path = tmp_path / "rows.db"
        async with SqliteJournal(path) as journal, InMemoryJournal() as memory:
            first = Flow("rows-dup")
            batches = [
                [first.start(at=1.0, payload=1)],
                [Flow("rows-dup").start(at=2.0, payload=2), first.schedule(1, at=3.0)],
                [first.schedule(2, at=4.0, activity="other")],
            ]
            outcomes = []
            for batch in batches:
                outcomes.append(await submit_all(journal, batch))
                assert outcomes[-1] == await submit_all(memory, batch)
                assert stored(path) == await expected(memory)
        assert outcomes == [[None], [WorkflowAlreadyExistsError, None], [None]]


class TestStatements:
    async def _statements(self, journal, monkeypatch, ops):
        """Submit ops as one batch; return (sql, parameter rows) of each executemany."""
        seen = record_statements(monkeypatch)
        await asyncio.gather(*(journal.submit(op) for op in ops))
        monkeypatch.undo()
        return [(sql, rows) for method, sql, rows in seen if method == "executemany"]

    async def test_a_step_sets_what_a_step_changes_and_binds_no_none(self, tmp_path, monkeypatch):
        """A running workflow's next step leaves its name, version, input, parent and status
        alone (so their indexes too), writes NULL as a literal, and runs one statement for many
        rows."""
        async with SqliteJournal(tmp_path / "rows.db") as journal:
            flows = [Flow(f"rows-s{i}") for i in range(10)]
            created = await self._statements(
                journal, monkeypatch, [f.start(at=1.0, payload=i) for i, f in enumerate(flows)]
            )
            steps = await self._statements(
                journal, monkeypatch, [f.schedule(1, at=2.0) for f in flows]
            )
        rows = [(sql, params) for sql, params in created + steps if "workflows" in sql]
        assert [sql.split()[0] for sql, _ in rows] == ["INSERT", "UPDATE"]
        assert rows[0][0] == (
            "INSERT INTO workflows (id, name, version, status, input, output, error, "
            "current_activity, created_at, updated_at, parent_id, custom_status) "
            "VALUES (?, ?, ?, ?, ?, NULL, NULL, NULL, ?, ?, NULL, NULL)"
        )
        assert rows[1][0] == (
            "UPDATE workflows SET output = NULL, error = NULL, current_activity = ?, "
            "updated_at = ?, custom_status = NULL WHERE id = ?"
        )
        assert rows[1][1] == [("act", 2.0, f.wid) for f in flows]
        for _, params in created + steps:
            assert all(None not in row for row in params)

    @pytest.mark.skipif(not rows_module.UPDATE_FROM, reason="SQLite < 3.33: no UPDATE ... FROM")
    async def test_whole_fifties_take_one_multi_row_statement(self, tmp_path, monkeypatch):
        """Rows of one shape are written 50 per statement (an INSERT of 50 rows, an UPDATE from
        50 VALUES rows, their parameters flattened in order), the rest one per row."""
        async with SqliteJournal(tmp_path / "rows.db") as journal:
            flows = [Flow(f"rows-m{i:02}") for i in range(53)]
            created = await self._statements(journal, monkeypatch, [f.start() for f in flows])
            steps = await self._statements(journal, monkeypatch, [f.schedule(1) for f in flows])
        inserts = [(sql, rows) for sql, rows in created if "workflows" in sql]
        updates = [(sql, rows) for sql, rows in steps if "workflows" in sql]
        assert [(sql.split(" (")[0], len(rows)) for sql, rows in inserts] == [
            ("INSERT OR FAIL INTO workflows", 1),
            ("INSERT INTO workflows", 3),
        ]
        assert inserts[0][0].count("(?, ?, ?, ?, NULL, NULL, NULL, NULL, ?, ?, NULL, NULL)") == 50
        assert inserts[0][1][0][:4] == ["rows-m00", "wf", "1", "running"]
        assert len(inserts[0][1][0]) == 50 * 6
        values = ", ".join(["(?, ?, ?)"] * 50)
        assert updates[0][0].replace(values, "<50 rows>") == (
            "UPDATE OR FAIL workflows SET output = NULL, error = NULL, current_activity = "
            "v.column1, updated_at = v.column2, custom_status = NULL FROM (VALUES <50 rows>) "
            "AS v WHERE workflows.id = v.column3"
        )
        assert updates[0][1] == [[v for f in flows[:50] for v in ("act", 2.0, f.wid)]]
        assert updates[1][1] == [("act", 2.0, f.wid) for f in flows[50:]]

    async def test_an_sqlite_without_update_from_updates_one_row_per_statement(
        self, tmp_path, monkeypatch
    ):
        """Before SQLite 3.33 (no UPDATE ... FROM) updates take the single-row statement, and
        the stored rows are the batch rules' all the same."""
        monkeypatch.setattr(rows_module, "UPDATE_FROM", False)
        path = tmp_path / "rows.db"
        async with SqliteJournal(path) as journal, InMemoryJournal() as memory:
            for number, batch in enumerate(scaled("parent-3", 53)):
                seen = record_statements(monkeypatch)
                assert await submit_all(journal, batch) == await submit_all(memory, batch)
                assert stored(path) == await expected(memory), f"after batch {number}"
                updates = [sql for _, sql, _ in seen if sql.startswith("UPDATE")]
                assert all(" FROM " not in sql for sql in updates)

    async def test_a_changed_status_is_set(self, tmp_path, monkeypatch):
        """The status (indexed) is set when it changes."""
        async with SqliteJournal(tmp_path / "rows.db") as journal:
            flow = Flow("rows-fin")
            await journal.submit(flow.start(at=1.0))
            await journal.submit(flow.schedule(1, at=2.0))
            seen = await self._statements(journal, monkeypatch, [flow.complete(at=3.0, result=5)])
        assert seen[-1][0] == (
            "UPDATE workflows SET status = ?, output = ?, error = NULL, current_activity = NULL, "
            "updated_at = ?, custom_status = NULL WHERE id = ?"
        )
        assert seen[-1][1] == [("completed", "5", 3.0, "rows-fin")]

    async def test_a_row_the_writer_did_not_write_gets_every_column(self, tmp_path, monkeypatch):
        """After a reopen the writer knows no row: the first update sets every column but
        created_at; the next one is a step again."""
        path = tmp_path / "rows.db"
        flow = Flow("rows-new")
        async with SqliteJournal(path) as journal:
            await journal.submit(flow.start(at=1.0, payload="in"))
        async with SqliteJournal(path) as journal:
            first = await self._statements(journal, monkeypatch, [flow.schedule(1, at=2.0)])
            second = await self._statements(journal, monkeypatch, [flow.schedule(2, at=3.0)])
        assert first[-1][0] == (
            "UPDATE workflows SET name = ?, version = ?, status = ?, input = ?, output = NULL, "
            "error = NULL, current_activity = ?, updated_at = ?, parent_id = NULL, "
            "custom_status = NULL WHERE id = ?"
        )
        assert first[-1][1] == [("wf", "1", "running", '"in"', "act", 2.0, "rows-new")]
        assert second[-1][0].startswith("UPDATE workflows SET output = NULL")


class TestRowsAfterAFailedCommit:
    @pytest.mark.parametrize("fail_at", [1, 3, 4, 5])
    async def test_a_batch_failing_half_written_leaves_rows_exact_after_reopen(
        self, tmp_path, monkeypatch, fail_at
    ):
        """A batch whose row statements fail after the first one ran (a full disk) is rolled
        back and fails the writer; once reopened, the same batch and the rest write exactly the
        batch rules' rows: the writer's record of written rows changes only after a COMMIT."""
        real = sqlite_module.row_writes
        failing = {"on": False}

        def writes(*args):
            result = real(*args)
            if not failing["on"]:
                return result

            def broken():
                yield from result.statements[:1]
                raise sqlite3.OperationalError("database or disk is full")

            return dataclasses.replace(result, statements=broken())

        monkeypatch.setattr(sqlite_module, "row_writes", writes)
        path = tmp_path / "rows.db"
        async with InMemoryJournal() as memory:
            journal = SqliteJournal(path)
            await journal.open()
            try:
                for number, batch in enumerate(scenario("parent-2")):
                    if number == fail_at:
                        failing["on"] = True
                        assert set(await submit_all(journal, batch)) != {None}
                        failing["on"] = False
                        await journal.close()
                        await journal.open()
                    assert await submit_all(journal, batch) == await submit_all(memory, batch)
                    assert stored(path) == await expected(memory), f"after batch {number}"
            finally:
                await journal.close()


class TestWriterRecord:
    async def test_the_record_holds_the_unfinished_ids_exactly(self, tmp_path):
        """After each commit the writer's record holds the committed (status, last seq) and
        written values of every unfinished id it wrote or read, and nothing of finished ones."""
        path = tmp_path / "rows.db"
        done, idle = Flow("rec-done"), Flow("rec-idle")
        async with SqliteJournal(path) as journal:
            await asyncio.gather(journal.submit(done.start()), journal.submit(idle.start()))
            await journal.submit(done.complete())
        async with SqliteJournal(path) as journal:  # a fresh writer knows nothing yet
            running, step = Flow("rec-run"), Flow("rec-step")
            await asyncio.gather(journal.submit(running.start()), journal.submit(step.start()))
            batch = [
                Flow("rec-done").start(),  # refused: finished, read from the file
                Flow("rec-idle").start(),  # refused: unfinished, read from the file
                step.schedule(1),  # a step keeping its status and written values
            ]
            assert await submit_all(journal, batch) == [
                WorkflowAlreadyExistsError,
                WorkflowAlreadyExistsError,
                None,
            ]
            assert journal._known == {
                "rec-idle": ("running", 1),
                "rec-run": ("running", 1),
                "rec-step": ("running", 2),
            }
            assert set(journal._written) == {"rec-run", "rec-step"}
            assert journal._written["rec-step"] == ("wf", "1", None, None, "running")
            await journal.submit(step.complete())
            assert set(journal._known) == {"rec-idle", "rec-run"}
            assert set(journal._written) == {"rec-run"}
