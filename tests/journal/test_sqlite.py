"""SqliteJournal on real files: ownership, foreign files, schema versions, group commit, failures.

The behaviour it shares with InMemoryJournal is pinned in test_memory.py, on both.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sqlite3
import sys
import time
import types
import weakref
from contextlib import closing
from pathlib import Path

import aiosqlite
import pytest

import flowcore.journal.sqlite as sqlite_module
from flowcore.engine.events import CustomStatusSet, WorkflowStarted
from flowcore.errors import (
    JournalCorruptError,
    JournalError,
    JournalLockedError,
    SchemaVersionError,
    WorkflowAlreadyExistsError,
)
from flowcore.journal import schema
from flowcore.journal.sqlite import MAX_BATCH, SqliteJournal
from tests.helpers import Flow, record_statements


def start(wid, *, at=1.0):
    """The create op of a workflow."""
    return Flow(wid).start(at=at)


def schedule(wid, seq, *, at=2.0):
    """An op appending one ActivityScheduled at position ``seq`` (step ``seq - 1``)."""
    flow = Flow(wid)
    flow.start()
    for step in range(1, seq - 1):
        flow.schedule(step, at=at)
    return flow.schedule(seq - 1, at=at)


def sql(path, *statements):
    """Run statements on a plain sqlite3 connection of our own; return the last one's rows."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        rows = []
        for statement in statements:
            rows = conn.execute(statement).fetchall()
        return rows


def snapshot(directory):
    """Every file in ``directory`` with its bytes."""
    return {p.name: p.read_bytes() for p in sorted(Path(directory).iterdir())}


@pytest.fixture
def path(tmp_path):
    return tmp_path / "journal.db"


@pytest.fixture
async def journal(path):
    async with SqliteJournal(path) as journal:
        yield journal


class TestFile:
    @pytest.mark.usefixtures("journal")
    async def test_fresh_file_is_marked(self, path):
        """A new journal carries flowcore's application_id, the schema version and WAL mode."""
        assert sql(path, "PRAGMA application_id") == [(schema.APPLICATION_ID,)]
        assert sql(path, "PRAGMA user_version") == [(schema.SCHEMA_VERSION,)]
        assert sql(path, "PRAGMA journal_mode") == [("wal",)]

    @pytest.mark.parametrize(("durability", "level"), [("full", 2), ("normal", 1)])
    async def test_durability_sets_synchronous(self, path, durability, level):
        """The durability mode chooses the writer's synchronous level."""
        async with SqliteJournal(path, durability=durability) as journal:
            assert journal.durability == durability
            assert journal._writer is not None
            assert list(await journal._writer.execute_fetchall("PRAGMA synchronous")) == [(level,)]

    def test_unknown_durability(self, path):
        """An unknown durability mode is refused at construction."""
        with pytest.raises(ValueError, match="durability"):
            SqliteJournal(path, durability="eventually")

    async def test_empty_file_is_initialised(self, path):
        """An existing empty file becomes a journal."""
        path.touch()
        async with SqliteJournal(path) as journal:
            await journal.submit(start("w1"))
        assert sql(path, "SELECT id FROM workflows") == [("w1",)]

    async def test_group_commit_caps_batches(self, journal):
        """More ops than MAX_BATCH queued at once are committed in two transactions."""
        before = journal.commits
        ops = [start(f"w{i}") for i in range(MAX_BATCH + 10)]
        await asyncio.gather(*(journal.submit(op) for op in ops))
        assert journal.commits - before == 2

    async def test_the_cap_never_splits_one_workflows_queued_ops(self, journal):
        """Ops of one workflow queued together across the cap commit in the same transaction.

        A run continuing as new is journaled as several appends submitted at once; recovery
        trusts that a committed history holds every step the workflow took.
        """
        before = journal.commits
        flow = Flow("last")
        ops = [start(f"w{i}") for i in range(MAX_BATCH - 1)]
        ops += [flow.start(), flow.schedule(1), flow.schedule(2)]
        await asyncio.gather(*(journal.submit(op) for op in ops))
        assert journal.commits - before == 1
        assert len(await journal.history("last")) == 3


class TestOwnership:
    @pytest.mark.usefixtures("journal")
    async def test_second_owner_refused(self, path):
        """A second open of an owned file fails with JournalLockedError naming the owner's pid."""
        with pytest.raises(JournalLockedError, match=f"pid {os.getpid()} on host"):
            await SqliteJournal(path).open()

    async def test_owner_released_on_close(self, path, journal):
        """Once the owner closes, another journal can own the file."""
        await journal.close()
        async with SqliteJournal(path) as other:
            assert await other.list() == []

    async def test_owner_row(self, path, journal):
        """The owner row names this process while it owns the file and is gone after close."""
        assert sql(path, "SELECT pid FROM owner") == [(os.getpid(),)]
        await journal.close()
        assert sql(path, "SELECT pid FROM owner") == []

    async def test_failed_open_releases_lock(self, path):
        """An open that fails validation leaves the file free for the next attempt."""
        async with SqliteJournal(path):
            pass
        sql(path, f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
        with pytest.raises(SchemaVersionError):
            await SqliteJournal(path).open()
        sql(path, f"PRAGMA user_version = {schema.SCHEMA_VERSION}")
        async with SqliteJournal(path):
            pass

    @pytest.mark.crash
    async def test_killed_owner_leaves_no_stale_lock(self, path):
        """After its owner is SIGKILLed, the file can be owned again."""
        src = Path(sqlite_module.__file__).parents[2]
        pythonpath = os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])
        env = {**os.environ, "PYTHONPATH": pythonpath}
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _OWNER_SCRIPT,
            str(path),
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        try:
            assert child.stdout is not None
            line = await asyncio.wait_for(child.stdout.readline(), timeout=60)
            assert line.strip() == b"ready"
            with pytest.raises(JournalLockedError, match=f"pid {child.pid} "):
                await SqliteJournal(path).open()
        finally:
            child.kill()
            await child.wait()
        async with SqliteJournal(path) as journal:
            assert await journal.unfinished() == ["w1"]
            await journal.submit(schedule("w1", 2))


_OWNER_SCRIPT = """
import asyncio, sys
from flowcore.journal.base import Append
from flowcore.journal.projection import Projection
from flowcore.engine.events import WorkflowStarted
from flowcore.journal.sqlite import SqliteJournal

async def main():
    journal = SqliteJournal(sys.argv[1])
    await journal.open()
    event = WorkflowStarted(at=1.0, name="wf", version="1")
    row = Projection.from_events("w1", [event]).row()
    op = Append(workflow_id="w1", first_seq=1, events=(event,), row=row, create=True)
    await journal.submit(op)
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


class TestReadonly:
    async def test_reads_beside_the_owner(self, path, journal):
        """A read-only journal opens while another owns the file and sees its commits."""
        await journal.submit(start("w1"))
        async with SqliteJournal(path, readonly=True) as reader:
            assert reader.readonly
            assert await reader.unfinished() == ["w1"]
            await journal.submit(schedule("w1", 2))
            assert len(await reader.history("w1")) == 2

    @pytest.mark.usefixtures("journal")
    async def test_submit_refused(self, path):
        """Submitting to a read-only journal fails with JournalError."""
        async with SqliteJournal(path, readonly=True) as reader:
            with pytest.raises(JournalError, match="read-only"):
                await reader.submit(start("w1"))

    async def test_missing_file(self, path):
        """Opening a missing file read-only fails and creates nothing."""
        with pytest.raises(JournalError, match="no flowcore journal"):
            await SqliteJournal(path, readonly=True).open()
        assert not path.parent.exists() or list(path.parent.iterdir()) == []


class TestForeignFiles:
    async def test_text_file(self, path):
        """A text file is refused with JournalCorruptError and left byte-for-byte as it was."""
        path.write_text("my notes\n" * 50)
        before = snapshot(path.parent)
        with pytest.raises(JournalCorruptError, match=r"not a SQLite database.*left untouched"):
            await SqliteJournal(path).open()
        assert snapshot(path.parent) == before

    @pytest.mark.parametrize(
        "setup",
        [
            ["CREATE TABLE notes (body TEXT)", "INSERT INTO notes VALUES ('keep me')"],
            ["PRAGMA application_id = 42"],
            ["PRAGMA journal_mode = WAL", "CREATE TABLE notes (body TEXT)"],
        ],
        ids=["tables", "other-app-id", "wal"],
    )
    async def test_other_sqlite_database(self, path, setup):
        """Another application's SQLite database is refused and left byte-for-byte as it was."""
        sql(path, *setup)
        before = snapshot(path.parent)
        with pytest.raises(JournalCorruptError, match="SQLite database but not a flowcore"):
            await SqliteJournal(path).open()
        with pytest.raises(JournalCorruptError):
            await SqliteJournal(path, readonly=True).open()
        assert snapshot(path.parent) == before

    async def test_newer_schema(self, path):
        """A journal from a newer flowcore fails with SchemaVersionError naming both versions."""
        async with SqliteJournal(path):
            pass
        newer = schema.SCHEMA_VERSION + 1
        sql(path, f"PRAGMA user_version = {newer}")
        expected = rf"version {newer} .* up to version {schema.SCHEMA_VERSION}\b"
        with pytest.raises(SchemaVersionError, match=expected):
            await SqliteJournal(path).open()

    async def test_unknown_event_kind(self, path, journal):
        """history() raises JournalCorruptError for an event kind this code does not know."""
        await journal.submit(start("w1"))
        sql(path, "INSERT INTO events VALUES ('w1', 2, 'teleported', '{}', 2.0)")
        with pytest.raises(JournalCorruptError, match="teleported"):
            await journal.history("w1")


class TestMigrations:
    async def test_steps_run_in_order(self, path):
        """migrate() applies the steps past the file's version and records the new version."""
        async with SqliteJournal(path):
            pass
        seen = []

        async def add_index(conn):
            seen.append("callable")
            await conn.execute("CREATE INDEX events_by_kind ON events (kind)")

        steps = [*schema.MIGRATIONS, ("ALTER TABLE workflows ADD COLUMN tags TEXT",), add_index]
        async with aiosqlite.connect(path, isolation_level=None) as conn:
            assert await schema.migrate(conn, schema.SCHEMA_VERSION, steps) == len(steps)
        assert seen == ["callable"]
        assert sql(path, "PRAGMA user_version") == [(len(steps),)]
        assert ("tags",) in sql(path, "SELECT name FROM pragma_table_info('workflows')")

    async def test_failed_step_changes_nothing(self, path):
        """A failing step rolls back every step of the migration and the version."""
        async with SqliteJournal(path):
            pass
        steps = [*schema.MIGRATIONS, ("ALTER TABLE workflows ADD COLUMN tags TEXT",), ("BOGUS",)]
        async with aiosqlite.connect(path, isolation_level=None) as conn:
            with pytest.raises(sqlite3.OperationalError):
                await schema.migrate(conn, schema.SCHEMA_VERSION, steps)
        assert sql(path, "PRAGMA user_version") == [(schema.SCHEMA_VERSION,)]
        assert ("tags",) not in sql(path, "SELECT name FROM pragma_table_info('workflows')")


class TestSchemaV2:
    async def test_v1_file_is_upgraded_in_place(self, path):
        """A version-1 journal gains custom_status on open; its rows and events are intact."""
        async with aiosqlite.connect(path, isolation_level=None) as conn:
            assert await schema.migrate(conn, 0, schema.MIGRATIONS[:1]) == 1
        sql(
            path,
            "INSERT INTO workflows (id, name, version, status, input, output, error, "
            "current_activity, created_at, updated_at, parent_id) "
            """VALUES ('old', 'wf', '1', 'running', '{"n":1}', NULL, NULL, 'charge', 1.0, 2.0, """
            "NULL)",
            "INSERT INTO events VALUES ('old', 1, 'workflow_started', "
            """'{"name":"wf","version":"1","input":{"n":1}}', 1.0)""",
        )
        assert ("custom_status",) not in sql(
            path, "SELECT name FROM pragma_table_info('workflows')"
        )
        with pytest.raises(JournalError, match="open it read-write once to migrate it"):
            await SqliteJournal(path, readonly=True).open()
        async with SqliteJournal(path) as journal:
            status = await journal.status("old")
            assert status is not None
            assert (status.name, status.input, status.current_activity) == (
                "wf",
                {"n": 1},
                "charge",
            )
            assert status.created_at.timestamp() == 1.0
            assert status.custom_status is None
            assert [e.kind for e in await journal.history("old")] == ["workflow_started"]
        assert sql(path, "PRAGMA user_version") == [(schema.SCHEMA_VERSION,)]
        assert sql(path, "SELECT custom_status FROM workflows") == [(None,)]

    def test_version(self):
        """This code writes schema version 5."""
        assert schema.SCHEMA_VERSION == len(schema.MIGRATIONS) == 5

    async def test_custom_status_stored_as_json_text(self, path, journal):
        """The column holds the compact, ASCII JSON text of the value."""
        flow = Flow("w1")
        await journal.submit(flow.start())
        await journal.submit(flow.ops(CustomStatusSet(at=2.0, step=1, value={"a": [1, "é"]})))
        assert sql(path, "SELECT custom_status FROM workflows") == [('{"a":[1,"\\u00e9"]}',)]


class TestInbox:
    async def test_v2_file_gains_the_inbox(self, path):
        """A version-2 journal gains an empty inbox table on open."""
        async with aiosqlite.connect(path, isolation_level=None) as conn:
            assert await schema.migrate(conn, 0, schema.MIGRATIONS[:2]) == 2
        async with SqliteJournal(path):
            pass
        assert sql(path, "PRAGMA user_version") == [(schema.SCHEMA_VERSION,)]
        assert sql(path, "SELECT count(*) FROM inbox") == [(0,)]

    async def test_consumed_requests_go_with_their_op(self, path, journal):
        """An accepted op deletes its consumed inbox rows in its transaction; a refused one not."""
        sql(
            path,
            "INSERT INTO inbox (workflow_id, kind, data, at) VALUES ('w1', 'start', '', 1)",
            "INSERT INTO inbox (workflow_id, kind, data, at) VALUES ('w1', 'start', '', 1)",
            "INSERT INTO inbox (workflow_id, kind, data, at) VALUES ('w1', 'event', '', 1)",
        )
        flow = Flow("w1")
        first = dataclasses.replace(flow.start(), consumed=(1,))
        await journal.submit(first)
        again = dataclasses.replace(Flow("w1").start(), consumed=(2,))
        with pytest.raises(WorkflowAlreadyExistsError):
            await journal.submit(again)
        assert sql(path, "SELECT id FROM inbox ORDER BY id") == [(2,), (3,)]
        await journal.submit(dataclasses.replace(flow.schedule(1), consumed=(3,)))
        assert sql(path, "SELECT id FROM inbox ORDER BY id") == [(2,)]


class TestOneRoundTrip:
    async def test_a_batch_is_one_call_on_the_writer_thread(self, journal, monkeypatch):
        """A commit used to make seven round trips to aiosqlite's thread, each costing about as
        much as the fsync; it makes one (this also pins aiosqlite's private ``_execute``)."""
        writer = journal._writer
        assert writer is not None
        calls = []
        real = writer._execute

        async def counting(fn, *args, **kwargs):
            calls.append(fn)
            return await real(fn, *args, **kwargs)

        monkeypatch.setattr(writer, "_execute", counting)
        flows = [Flow(f"w{i}") for i in range(20)]
        await asyncio.gather(*(journal.submit(f.start()) for f in flows))
        await asyncio.gather(*(journal.submit(f.schedule(1)) for f in flows))
        assert calls == [sqlite_module._write_batch] * journal.commits

    async def test_a_committed_batch_is_not_kept_alive_until_the_next_one(self, journal):
        """aiosqlite's thread holds its last call and result until its next call: the writer
        hands it nothing that keeps a committed batch (its futures, ops, rows) alive, which the
        garbage collector would otherwise scan for as long as the journal stays idle."""
        flows = [Flow(f"w{i}") for i in range(5)]
        futures = [journal.submit(f.start()) for f in flows]
        for future in futures:
            await future
        refs = [weakref.ref(future) for future in futures]
        del futures, future
        await asyncio.sleep(0)  # the loop's handle that woke this task held the first future
        assert [ref() for ref in refs] == [None] * len(refs)


class TestGatherWhileGrowing:
    """Group commit: a batch that grows on every loop pass waits for the next pass, bounded."""

    async def test_ops_submitted_on_consecutive_passes_share_one_commit(self, journal):
        """Work that is ready to run appends pass after pass; it commits once, not per op."""
        await journal.submit(start("warm"))
        journal._commit_seconds = 60.0  # the bound is the last commit's duration: not reached
        before = journal.commits
        flow = Flow("w")
        ops = [flow.start(), *(flow.schedule(step) for step in range(1, 6))]
        futures = []
        for op in ops:
            futures.append(journal.submit(op))
            await asyncio.sleep(0)
        await asyncio.gather(*futures)
        assert journal.commits == before + 1

    async def test_a_batch_that_stopped_growing_commits_at_once(self, journal):
        """An op nothing follows waits one pass, not for a later op."""
        first = journal.submit(start("a"))
        for _ in range(20):
            await asyncio.sleep(0)
        second = journal.submit(start("b"))
        await asyncio.gather(first, second)
        assert journal.commits == 2

    async def test_a_steady_stream_still_commits(self, journal, monkeypatch):
        """An op appended on every pass for ever does not hold the first one back for ever:
        a batch gathers for at most as long as the last commit took (on a virtual clock)."""
        await journal.submit(start("warm"))
        now = [0.0]
        clock = types.SimpleNamespace(perf_counter=lambda: now[0], time=time.time)
        monkeypatch.setattr(sqlite_module, "time", clock)
        journal._commit_seconds = 1.0
        first = journal.submit(start("s0"))
        submitted = 1

        async def grow(passes):
            nonlocal submitted
            for _ in range(passes):
                if first.done():
                    return
                journal.submit(start(f"s{submitted}"))
                submitted += 1
                await asyncio.sleep(0)

        await grow(50)
        assert not first.done(), "a growing batch committed before its bound"
        now[0] = 1.0  # as long as the last commit took has passed
        await grow(2)
        taken = all(item[-1] is not first for item in journal._queue)
        assert taken, f"the first op still waits after {submitted} growing passes"
        await first


class TestResetStatements:
    async def _count(self, journal, monkeypatch, ops):
        """Submit ops as one batch; return the first word of each statement the writer ran."""
        seen = record_statements(monkeypatch)
        before = journal.commits
        await asyncio.gather(*(journal.submit(op) for op in ops))
        assert journal.commits - before == 1
        monkeypatch.undo()
        return [sql.split()[0] for _, sql, _ in seen]

    async def test_delete_precedes_inserts_and_is_one_statement(self, journal, monkeypatch):
        """Any number of resets costs one DELETE, before the events' INSERT; none costs nothing."""
        flows = [Flow(f"w{i}") for i in range(50)]
        await asyncio.gather(*(journal.submit(f.start()) for f in flows))
        plain = await self._count(journal, monkeypatch, [f.schedule(1) for f in flows])
        assert "DELETE" not in plain
        many = await self._count(journal, monkeypatch, [_restart(f) for f in flows])
        one = await self._count(journal, monkeypatch, [_restart(flows[0])])
        # No SELECT: the writer knows the state of the unfinished workflows it wrote itself.
        assert many == one == ["BEGIN", "DELETE", "INSERT", "UPDATE", "COMMIT"]
        assert plain == ["BEGIN", "INSERT", "UPDATE", "COMMIT"]

    async def test_consumed_requests_cost_one_statement(self, journal, monkeypatch):
        """Any number of consumed inbox ids costs one DELETE after the rows' update."""
        flows = [Flow(f"w{i}") for i in range(20)]
        await asyncio.gather(*(journal.submit(f.start()) for f in flows))
        ops = [dataclasses.replace(f.schedule(1), consumed=(i + 1,)) for i, f in enumerate(flows)]
        seen = await self._count(journal, monkeypatch, ops)
        assert seen == ["BEGIN", "INSERT", "UPDATE", "DELETE", "COMMIT"]

    async def test_state_is_read_only_for_ids_the_writer_does_not_know(self, path, monkeypatch):
        """One SELECT reads the ids the writer did not write since open() or that finished.

        The refusals stay exact: a duplicate create names the stored status (also of an id that
        finished and left the writer's record), a stale op is out of sequence, in both cases.
        """
        flows = [Flow(f"w{i}") for i in range(3)]
        async with SqliteJournal(path) as journal:
            await asyncio.gather(*(journal.submit(f.start()) for f in flows))
            await journal.submit(flows[2].complete())
        async with SqliteJournal(path) as journal:  # a fresh writer knows nothing yet
            seen = await self._count(journal, monkeypatch, [flows[0].schedule(1)])
            assert seen == ["BEGIN", "SELECT", "INSERT", "UPDATE", "COMMIT"]
            seen = await self._count(journal, monkeypatch, [flows[0].schedule(2)])
            assert seen == ["BEGIN", "INSERT", "UPDATE", "COMMIT"]
            running = Flow("w0").start()
            with pytest.raises(WorkflowAlreadyExistsError) as exc_info:
                await journal.submit(running)
            assert exc_info.value.status == "running"
            with pytest.raises(JournalError, match=r"position 1 but the journal's next .* is 4"):
                await journal.submit(Flow("w0").schedule(1))  # a stale view of w0
            await journal.submit(flows[0].complete())
            for wid in ("w0", "w2"):  # finished: read again from the file
                with pytest.raises(WorkflowAlreadyExistsError) as exc_info:
                    await journal.submit(Flow(wid).start())
                assert exc_info.value.status == "completed"
            assert [e.kind for e in await journal.history("w0")] == [
                "workflow_started", "activity_scheduled", "activity_scheduled",
                "workflow_completed",
            ]  # fmt: skip


def _restart(flow):
    flow.next_seq = 1
    started = WorkflowStarted(at=10.0, name=flow.name, version="1")
    return dataclasses.replace(flow.ops(started), reset=True)


class TestCommitFailure:
    async def test_failed_commit_fails_the_batch_and_the_journal(self, path, journal):
        """A commit that fails fails every op of its batch, and later submits fail at once."""
        await journal.submit(start("before"))
        sql(
            path,
            "CREATE TRIGGER doom BEFORE INSERT ON events WHEN NEW.workflow_id = 'doomed' "
            "BEGIN SELECT RAISE(ABORT, 'simulated I/O failure'); END",
        )
        commits = journal.commits
        fine, doomed = journal.submit(start("fine")), journal.submit(start("doomed"))
        for future in (fine, doomed):
            with pytest.raises(JournalError, match="simulated I/O failure"):
                await future
        assert journal.commits == commits
        later = journal.submit(start("later"))
        assert later.done()
        with pytest.raises(JournalError, match="accepts no more writes"):
            await later
        await journal.close()
        sql(path, "DROP TRIGGER doom")
        async with SqliteJournal(path) as reopened:
            assert [s.id for s in await reopened.list()] == ["before"]

    async def test_disk_full(self, journal):
        """A full disk fails the batch with a JournalError caused by the SQLite error."""
        await journal.submit(start("w1"))
        assert journal._writer is not None
        await journal._writer.execute("PRAGMA max_page_count = 1")
        with pytest.raises(JournalError) as info:
            await asyncio.gather(*(journal.submit(start(f"big{i}")) for i in range(2000)))
        assert isinstance(info.value.__cause__, sqlite3.Error)
        assert "full" in str(info.value.__cause__)
