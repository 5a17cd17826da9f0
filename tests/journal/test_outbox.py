"""The outbox (schema v4): records commit with their op, are read in order and acknowledged."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from contextlib import closing

import aiosqlite
import pytest

from flowcore.errors import JournalError, WorkflowAlreadyExistsError
from flowcore.journal import schema
from flowcore.journal.base import OutboxRecord
from flowcore.journal.memory import InMemoryJournal
from flowcore.journal.sqlite import SqliteJournal
from flowcore.listeners import OutboxStore
from tests.helpers import Flow


def record(body, channel="orc", key="k"):
    return OutboxRecord(channel=channel, key=key, body=body)


def with_outbox(op, *bodies, channel="orc"):
    return dataclasses.replace(op, outbox=tuple(record(b, channel) for b in bodies))


@pytest.fixture(params=["sqlite", "memory"])
async def journal(request, tmp_path):
    journal = SqliteJournal(tmp_path / "j.db") if request.param == "sqlite" else InMemoryJournal()
    async with journal:
        yield journal


class TestOutbox:
    async def test_records_commit_with_their_op_in_order(self, journal):
        """Accepted ops write their records in submission order; a refused op writes none."""
        assert isinstance(journal, OutboxStore)
        flow = Flow("w1")
        ops = [
            with_outbox(flow.start(), "a", "b"),
            with_outbox(Flow("w1").start(), "refused"),
            with_outbox(flow.schedule(1), "c"),
            with_outbox(Flow("w2").start(), "other", channel="else"),
        ]
        results = await asyncio.gather(*(journal.submit(op) for op in ops), return_exceptions=True)
        assert isinstance(results[1], WorkflowAlreadyExistsError)
        entries = await journal.outbox("orc")
        assert [(e.body, e.key, e.workflow_id) for e in entries] == [
            ("a", "k", "w1"), ("b", "k", "w1"), ("c", "k", "w1"),
        ]  # fmt: skip
        assert [e.id for e in entries] == sorted(e.id for e in entries)
        assert [e.body for e in await journal.outbox("else")] == ["other"]
        assert [e.body for e in await journal.outbox("orc", limit=1)] == ["a"]

    async def test_ack_deletes(self, journal):
        """Acknowledged records are gone; the others stay, in order."""
        await journal.submit(with_outbox(Flow("w1").start(), "a", "b", "c"))
        first, second, third = await journal.outbox("orc")
        await journal.ack_outbox([first.id, third.id])
        assert await journal.outbox("orc") == [second]
        await journal.ack_outbox([second.id, second.id])
        assert await journal.outbox("orc") == []

    async def test_closed_journal_refuses(self, tmp_path):
        """Reading or acknowledging on a closed journal is a JournalError."""
        journal = SqliteJournal(tmp_path / "j.db")
        async with journal:
            pass
        with pytest.raises(JournalError):
            await journal.outbox("orc")
        with pytest.raises(JournalError):
            await journal.ack_outbox([1])


class TestSchema:
    async def test_v3_file_gains_the_outbox(self, tmp_path):
        """A version-3 journal gains an empty outbox on open, its data kept."""
        path = tmp_path / "old.db"
        async with aiosqlite.connect(path, isolation_level=None) as conn:
            assert await schema.migrate(conn, 0, schema.MIGRATIONS[:3]) == 3
        async with SqliteJournal(path) as journal:
            await journal.submit(with_outbox(Flow("w1").start(), "a"))
        with closing(sqlite3.connect(path)) as conn:
            assert conn.execute("PRAGMA user_version").fetchone() == (schema.SCHEMA_VERSION,)
            assert conn.execute(
                "SELECT channel, key, workflow_id, body FROM outbox"
            ).fetchall() == [("orc", "k", "w1", "a")]

    async def test_read_only_journal_refuses_acks(self, tmp_path):
        """An inspection-only journal reads the outbox but acknowledges nothing."""
        path = tmp_path / "j.db"
        async with SqliteJournal(path) as journal:
            await journal.submit(with_outbox(Flow("w1").start(), "a"))
        async with SqliteJournal(path, readonly=True) as reader:
            (entry,) = await reader.outbox("orc")
            with pytest.raises(JournalError, match="read-only"):
                await reader.ack_outbox([entry.id])
