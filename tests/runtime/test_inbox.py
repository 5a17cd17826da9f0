"""The inbox: requests queued in the journal by other processes, applied by the owning runtime."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import pytest
from structlog.testing import capture_logs

import flowcore
from flowcore import Runtime, workflow
from flowcore import _inbox as inbox
from flowcore.errors import WorkflowFinishedError, WorkflowNotFoundError
from flowcore.journal.sqlite import SqliteJournal
from tests.helpers import assert_eventually


@workflow
async def waiter(prefix: str) -> str:
    got = await flowcore.wait_event("go")
    return f"{prefix}{got}"


def pending(path) -> list[tuple[int, str]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute("SELECT id, kind FROM inbox ORDER BY id").fetchall()


@pytest.fixture
async def db(db_path):
    async with SqliteJournal(db_path):
        pass  # create the file with its schema
    return str(db_path)


class TestInbox:
    async def test_queued_requests_apply_in_order_on_open(self, db):
        """Requests posted with no owner are applied, in id order, when a runtime opens."""
        inbox.post(db, "start", "w1", {"name": "waiter", "input": "got "})
        inbox.post(db, "event", "w1", {"name": "go", "payload": "it"})
        async with Runtime(db) as rt:
            assert await rt.result("w1", timeout=5) == "got it"
        assert pending(db) == []

    async def test_request_reaches_an_open_runtime(self, db):
        """A request posted while a runtime owns the file is applied without a restart."""
        async with Runtime(db) as rt:
            await rt.start(waiter, "x-", id="w1")
            inbox.post(db, "event", "w1", {"name": "go", "payload": "y"})
            assert await rt.result("w1", timeout=2) == "x-y"
            await assert_eventually(lambda: pending(db) == [], timeout=2)

    async def test_failed_requests_are_logged_and_dropped(self, db):
        """A request that cannot take effect is deleted with a warning; later ones still apply."""
        inbox.post(db, "start", "bad", {"name": "no_such_workflow"})
        inbox.post(db, "start", "w1", {"name": "waiter", "input": ""})
        inbox.post(db, "suspend", "w1", {})
        inbox.post(db, "resume", "w1", {})
        inbox.post(db, "cancel", "w1", {"reason": "stop"})
        with capture_logs() as logs:
            async with Runtime(db) as rt:
                with pytest.raises(flowcore.WorkflowCanceledError, match="stop"):
                    await rt.result("w1", timeout=5)
        assert pending(db) == []
        failed = [e for e in logs if e["event"] == "inbox request failed; discarded"]
        assert [e["workflow_id"] for e in failed] == ["bad"]

    async def test_post_validates_against_the_journal(self, db):
        """post refuses unknown and finished ids before it queues anything."""
        with pytest.raises(WorkflowNotFoundError):
            inbox.post(db, "event", "nope", {"name": "go"})
        async with Runtime(db) as rt:
            await rt.start(waiter, "", id="w1")
            await rt.send_event("w1", "go", "!")
            await rt.result("w1", timeout=5)
        with pytest.raises(WorkflowFinishedError):
            inbox.post(db, "cancel", "w1", {})
        assert pending(db) == []

    async def test_in_memory_journal_ignores_consumed(self):
        """A runtime on another journal has no inbox and still works."""
        from flowcore.journal.memory import InMemoryJournal

        async with Runtime(journal=InMemoryJournal()) as rt:
            await rt.start(waiter, "", id="w1")
            await rt.send_event("w1", "go", "ok")
            assert await rt.result("w1", timeout=5) == "ok"
