"""The journal contract, pinned on InMemoryJournal and SqliteJournal alike."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC

import pytest

from flowcore._status import WorkflowState
from flowcore.engine.events import (
    ActivityCompleted,
    ActivityScheduled,
    CustomStatusSet,
    WorkflowCompleted,
    WorkflowStarted,
    WorkflowSuspended,
)
from flowcore.errors import (
    JournalError,
    PayloadError,
    WorkflowAlreadyExistsError,
    WorkflowNotFoundError,
)
from flowcore.journal.base import Append
from flowcore.journal.memory import InMemoryJournal
from flowcore.journal.projection import Projection
from flowcore.journal.sqlite import SqliteJournal
from tests.helpers import Flow


def restart(flow, *, at=10.0, payload=None, more=()):
    """The reset op of a continue-as-new: a new run whose positions start again at 1."""
    flow.next_seq = 1
    started = WorkflowStarted(at=at, name=flow.name, version="1", input=payload)
    return dataclasses.replace(flow.ops(started, *more), reset=True)


@pytest.fixture(params=["memory", "sqlite"])
def make(request, tmp_path):
    """A factory of journals over the same storage, so a test can reopen it."""
    if request.param == "memory":
        shared = InMemoryJournal()
        return lambda: shared
    return lambda: SqliteJournal(tmp_path / "journal.db")


@pytest.fixture
async def journal(make):
    journal = make()
    await journal.open()
    yield journal
    await journal.close()


class TestRoundTrip:
    async def test_create_append_history(self, journal):
        """Events of a created workflow come back from history() equal and in order."""
        flow = Flow("w1")
        ops = [flow.start(payload={"n": 1}), flow.schedule(1), flow.schedule(2, activity="b")]
        for op in ops:
            await journal.submit(op)
        assert await journal.history("w1") == [e for op in ops for e in op.events]

    async def test_status_decodes_the_row(self, journal):
        """status() gives decoded JSON payloads, aware UTC times and the current activity."""
        flow = Flow("w1")
        await journal.submit(flow.start(at=10.0, payload={"items": [1, 2]}))
        await journal.submit(flow.schedule(1, at=12.5, activity="charge"))
        status = await journal.status("w1")
        assert status is not None
        assert (status.name, status.version, status.status) == ("wf", "1", WorkflowState.RUNNING)
        assert status.input == {"items": [1, 2]}
        assert status.current_activity == "charge"
        assert status.created_at.tzinfo is UTC
        assert status.created_at.timestamp() == 10.0
        assert status.updated_at.timestamp() == 12.5

    async def test_completed_output(self, journal):
        """A completed workflow reports its decoded output and no current activity."""
        flow = Flow("w1")
        await journal.submit(flow.start())
        await journal.submit(flow.schedule(1))
        await journal.submit(flow.ops(ActivityCompleted(at=2.5, step=1, result=7)))
        await journal.submit(flow.complete(result={"ok": True}))
        status = await journal.status("w1")
        assert status is not None
        assert status.is_finished
        assert status.output == {"ok": True}
        assert status.current_activity is None

    async def test_unknown_workflow(self, journal):
        """An unknown id has an empty history and no status."""
        assert await journal.history("nope") == []
        assert await journal.status("nope") is None

    async def test_row_only_update(self, journal):
        """An op without events updates the row and appends nothing."""
        flow = Flow("w1")
        await journal.submit(flow.start())
        flow.proj.error = "looked at"
        await journal.submit(flow.ops())
        status = await journal.status("w1")
        assert status is not None
        assert status.error == "looked at"
        assert len(await journal.history("w1")) == 1

    async def test_durable_after_reopen(self, make):
        """What was acknowledged is there after closing and opening the journal again."""
        flow = Flow("w1")
        async with make() as first:
            await first.submit(flow.start())
            await first.submit(flow.schedule(1))
        async with make() as second:
            assert [e.kind for e in await second.history("w1")] == [
                "workflow_started",
                "activity_scheduled",
            ]


class TestOrdering:
    async def test_order_across_batches(self, journal):
        """Ops of one workflow land in submission order though they span many batches."""
        flow = Flow("w1")
        await journal.submit(flow.start())
        before = journal.commits
        pending = []
        for step in range(1, 61):
            pending.append(journal.submit(flow.schedule(step, at=float(step))))
            if step % 7 == 0:
                await pending[-1]
        await asyncio.gather(*pending)
        history = await journal.history("w1")
        assert [e.step for e in history[1:]] == list(range(1, 61))
        assert journal.commits - before >= 60 // 7

    async def test_earlier_ops_resolve_first(self, journal):
        """When an op's future resolves, every op submitted before it has resolved too."""
        done: list[int] = []
        futures = []
        for i in range(40):
            future = asyncio.ensure_future(journal.submit(Flow(f"w{i}").start()))
            future.add_done_callback(lambda _, i=i: done.append(i))
            futures.append(future)
            if i % 9 == 0:
                await asyncio.sleep(0)
        await asyncio.gather(*futures)
        assert done == sorted(done)

    async def test_group_commit(self, journal):
        """Ops submitted together are committed in one transaction."""
        before = journal.commits
        await asyncio.gather(*(journal.submit(Flow(f"w{i}").start()) for i in range(500)))
        assert journal.commits - before == 1
        assert len(await journal.unfinished()) == 500

    async def test_canceled_waiter_keeps_its_op(self, journal):
        """Canceling the wait for an op does not withdraw the op."""
        flow = Flow("w1")
        await journal.submit(flow.start())
        journal.submit(flow.schedule(1)).cancel()
        await journal.submit(flow.schedule(2))
        assert [e.step for e in (await journal.history("w1"))[1:]] == [1, 2]


class TestRefusedOps:
    async def test_duplicate_create_fails_alone(self, journal):
        """A create of an existing id fails while the other ops of its batch commit."""
        existing, twin, fresh = Flow("x"), Flow("x"), Flow("y")
        await journal.submit(existing.start())
        dup = journal.submit(twin.start(at=5.0))
        created = journal.submit(fresh.start())
        appended = journal.submit(existing.schedule(1))
        with pytest.raises(WorkflowAlreadyExistsError) as info:
            await dup
        assert (info.value.workflow_id, info.value.status) == ("x", "running")
        await created
        await appended
        history = await journal.history("x")
        assert [e.at for e in history] == [1.0, 2.0]
        assert await journal.status("y") is not None

    async def test_duplicate_create_in_one_batch(self, journal):
        """The second create of an id within one batch fails; the first commits."""
        first = journal.submit(Flow("x").start(at=1.0))
        second = journal.submit(Flow("x").start(at=9.0))
        await first
        with pytest.raises(WorkflowAlreadyExistsError):
            await second
        assert [e.at for e in await journal.history("x")] == [1.0]

    async def test_append_without_create(self, journal):
        """An append for an id that was never created fails with WorkflowNotFoundError."""
        flow = Flow("ghost")
        flow.start()
        with pytest.raises(WorkflowNotFoundError):
            await journal.submit(flow.schedule(1))
        assert await journal.status("ghost") is None

    async def test_out_of_sequence_append(self, journal):
        """An append that would overwrite positions fails; the others of its batch commit."""
        flow, other = Flow("w1"), Flow("w2")
        await journal.submit(flow.start())
        await journal.submit(other.start())
        stale = Append(
            workflow_id="w1",
            first_seq=1,
            events=(ActivityScheduled(at=2.0, step=1, name="a"),),
            row=flow.proj.row(),
        )
        refused = journal.submit(stale)
        accepted = journal.submit(other.schedule(1))
        with pytest.raises(JournalError, match="out-of-sequence"):
            await refused
        await accepted
        assert len(await journal.history("w1")) == 1
        assert len(await journal.history("w2")) == 2

    async def test_append_leaving_a_gap(self, journal):
        """An append that would skip positions fails and writes nothing."""
        flow = Flow("w1")
        await journal.submit(flow.start())
        flow.next_seq += 1
        with pytest.raises(JournalError, match="next position is 2"):
            await journal.submit(flow.schedule(1))
        assert len(await journal.history("w1")) == 1

    async def test_unencodable_payload(self, journal):
        """An event holding a value JSON cannot encode fails with PayloadError."""
        row = Projection.from_events("w1", Flow("w1").start().events).row()
        bad = WorkflowStarted(at=1.0, name="wf", version="1", input={"bad": object()})
        op = Append(workflow_id="w1", first_seq=1, events=(bad,), row=row, create=True)
        with pytest.raises(PayloadError, match="not JSON serializable"):
            await journal.submit(op)
        assert await journal.status("w1") is None


class TestCustomStatus:
    async def test_round_trip(self, journal):
        """status() and list() decode the custom status; a suspended workflow is unfinished."""
        flow = Flow("w1")
        await journal.submit(flow.start())
        await journal.submit(flow.ops(CustomStatusSet(at=2.0, step=1, value={"pct": 50})))
        status = await journal.status("w1")
        assert status is not None
        assert status.custom_status == {"pct": 50}
        await journal.submit(flow.ops(WorkflowSuspended(at=3.0)))
        [listed] = await journal.list(status=WorkflowState.SUSPENDED)
        assert (listed.id, listed.custom_status) == ("w1", {"pct": 50})
        assert await journal.unfinished() == ["w1"]

    async def test_unset_is_none(self, journal):
        """A workflow that never set a status has custom_status None."""
        await journal.submit(Flow("w1").start())
        status = await journal.status("w1")
        assert status is not None
        assert status.custom_status is None


class TestReset:
    async def test_replaces_history_and_row(self, journal):
        """A reset deletes the old events, writes the new run from 1 and updates the row."""
        flow = Flow("w1")
        await journal.submit(flow.start(at=1.0, payload={"run": 1}))
        await journal.submit(flow.ops(CustomStatusSet(at=1.5, step=1, value="old")))
        await journal.submit(flow.schedule(2, at=2.0, activity="old"))
        await journal.submit(flow.complete(at=3.0, result={"next": 2}))
        op = restart(
            flow,
            at=10.0,
            payload={"run": 2},
            more=[ActivityScheduled(at=11.0, step=1, name="new")],
        )
        await journal.submit(op)
        assert await journal.history("w1") == list(op.events)
        status = await journal.status("w1")
        assert status is not None
        assert status.status is WorkflowState.RUNNING
        assert status.input == {"run": 2}
        assert (status.output, status.error, status.custom_status) == (None, None, None)
        assert status.current_activity == "new"
        assert status.created_at.timestamp() == 1.0
        assert status.updated_at.timestamp() == 11.0
        assert await journal.unfinished() == ["w1"]

    async def test_seq_continues_across_batches(self, journal):
        """After a reset the next position is len(events) + 1; a stale position is refused."""
        flow = Flow("w1")
        await journal.submit(flow.start())
        for step in range(1, 5):
            await journal.submit(flow.schedule(step))
        await journal.submit(restart(flow))
        await journal.submit(flow.schedule(1, at=11.0))
        stale = dataclasses.replace(flow.schedule(2, at=12.0), first_seq=7)
        with pytest.raises(JournalError, match="next position is 3"):
            await journal.submit(stale)
        assert [e.kind for e in await journal.history("w1")] == [
            "workflow_started",
            "activity_scheduled",
        ]

    async def test_within_one_batch(self, journal):
        """Ops before a reset in its batch are wiped with the history; ops after it continue it."""
        flow, other = Flow("w1"), Flow("w2")
        await journal.submit(flow.start())
        await journal.submit(other.start())
        before = journal.commits
        wiped = journal.submit(flow.schedule(1, at=2.0, activity="wiped"))
        kept_other = journal.submit(other.schedule(1, at=2.0))
        first_reset = journal.submit(restart(flow, at=10.0))
        middle = journal.submit(flow.schedule(1, at=11.0, activity="also wiped"))
        op = restart(flow, at=20.0, payload=2)
        second_reset = journal.submit(op)
        after = [flow.schedule(1, at=21.0, activity="a"), flow.schedule(2, at=22.0, activity="b")]
        futures = [journal.submit(o) for o in after]
        await asyncio.gather(wiped, kept_other, first_reset, middle, second_reset, *futures)
        assert journal.commits - before == 1
        history = await journal.history("w1")
        assert history == [*op.events, *(e for o in after for e in o.events)]
        assert len(await journal.history("w2")) == 2
        status = await journal.status("w1")
        assert status is not None
        assert (status.input, status.current_activity) == (2, "b")
        assert status.created_at.timestamp() == 1.0

    async def test_create_then_reset_in_one_batch(self, journal):
        """A workflow created earlier in the batch can be reset later in it."""
        flow = Flow("w1")
        created = journal.submit(flow.start(at=1.0))
        scheduled = journal.submit(flow.schedule(1))
        op = restart(flow, at=5.0)
        reset = journal.submit(op)
        await asyncio.gather(created, scheduled, reset)
        assert await journal.history("w1") == list(op.events)
        status = await journal.status("w1")
        assert status is not None
        assert status.created_at.timestamp() == 1.0

    async def test_unknown_id_refused_alone(self, journal):
        """A reset of an id never created fails with WorkflowNotFoundError; the batch commits."""
        ghost, fresh = Flow("ghost"), Flow("fresh")
        ghost.start()
        refused = journal.submit(restart(ghost))
        created = journal.submit(fresh.start())
        with pytest.raises(WorkflowNotFoundError):
            await refused
        await created
        assert await journal.status("ghost") is None
        assert await journal.history("ghost") == []
        assert await journal.status("fresh") is not None

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            ({"first_seq": 2}, "starts at position 2, not 1"),
            ({"events": ()}, "has no events"),
            ({"create": True}, "is also a create"),
        ],
        ids=["first-seq", "no-events", "create"],
    )
    async def test_invalid_reset_refused_alone(self, journal, change, message):
        """A reset not starting at 1, without events or also creating is refused; others commit."""
        flow, other = Flow("w1"), Flow("w2")
        await journal.submit(flow.start())
        await journal.submit(flow.schedule(1))
        await journal.submit(other.start())
        bad = dataclasses.replace(restart(Flow("w1")), **change)
        refused = journal.submit(bad)
        accepted = journal.submit(other.schedule(1))
        with pytest.raises(JournalError, match=f"invalid reset of workflow 'w1': it {message}"):
            await refused
        await accepted
        assert len(await journal.history("w1")) == 2
        assert len(await journal.history("w2")) == 2

    async def test_update_keeps_created_at(self, journal):
        """A row update never moves created_at, even when a rebuilt projection lost it."""
        flow = Flow("w1")
        await journal.submit(flow.start(at=1.0))
        await journal.submit(restart(flow, at=10.0))
        rebuilt = Flow("w1")
        rebuilt.ops(*await journal.history("w1"))
        assert rebuilt.proj.created_at == 10.0
        await journal.submit(rebuilt.ops(WorkflowCompleted(at=12.0, result=1)))
        status = await journal.status("w1")
        assert status is not None
        assert status.created_at.timestamp() == 1.0
        assert status.updated_at.timestamp() == 12.0

    async def test_durable_after_reopen(self, make):
        """A committed reset is what a reopened journal holds."""
        flow = Flow("w1")
        async with make() as first:
            await first.submit(flow.start())
            await first.submit(flow.schedule(1))
            op = restart(flow, payload="again")
            await first.submit(op)
        async with make() as second:
            assert await second.history("w1") == list(op.events)


class TestQueries:
    async def _fill(self, journal):
        specs = [("a", "alpha", 1.0, True), ("b", "beta", 2.0, False), ("c", "alpha", 3.0, False)]
        for wid, name, at, done in specs:
            flow = Flow(wid, name=name)
            await journal.submit(flow.start(at=at))
            if done:
                await journal.submit(flow.complete(at=at + 10))

    async def test_list_newest_first(self, journal):
        """list() returns every workflow, newest first."""
        await self._fill(journal)
        assert [s.id for s in await journal.list()] == ["c", "b", "a"]

    async def test_list_filters(self, journal):
        """list() filters by name and by status, alone or together."""
        await self._fill(journal)
        assert [s.id for s in await journal.list(name="alpha")] == ["c", "a"]
        assert [s.id for s in await journal.list(status=WorkflowState.RUNNING)] == ["c", "b"]
        assert [s.id for s in await journal.list(name="alpha", status="completed")] == ["a"]

    async def test_list_limit(self, journal):
        """list() returns at most ``limit`` records."""
        await self._fill(journal)
        assert [s.id for s in await journal.list(limit=2)] == ["c", "b"]
        assert await journal.list(limit=0) == []

    async def test_list_rejects_bad_arguments(self, journal):
        """list() refuses an unknown status and a negative limit."""
        with pytest.raises(ValueError, match="unknown status 'sleeping'; the statuses are "):
            await journal.list(status="sleeping")
        with pytest.raises(ValueError, match="limit"):
            await journal.list(limit=-1)

    async def test_unfinished(self, journal):
        """unfinished() lists non-terminal workflows, oldest first."""
        await self._fill(journal)
        assert await journal.unfinished() == ["b", "c"]

    async def test_read_many_equals_history_and_status(self, journal):
        """read_many() gives what history() and status() give, for the ids that exist only."""
        await self._fill(journal)
        flow = Flow("d", name="delta")
        await journal.submit(flow.start(at=4.0))
        await journal.submit(flow.schedule(1, at=5.0, activity="x"))
        await journal.submit(restart(flow, at=6.0, payload={"run": 2}))  # the last run only
        got = await journal.read_many(["d", "nope", "a", "b", "d"])
        assert set(got) == {"a", "b", "d"}
        for wid in ("a", "b", "d"):
            assert got[wid] == (await journal.history(wid), await journal.status(wid))
        assert len(got["d"][0]) == 1
        assert await journal.read_many([]) == {}

    async def test_read_many_over_many_ids(self, journal):
        """More ids than one query binds (1,200, with the events of each in order)."""
        ids = [f"w{i:04}" for i in range(1200)]
        for i, wid in enumerate(ids):
            flow = Flow(wid)
            await journal.submit(flow.start(at=float(i), payload=i))
            if i % 3 == 0:
                await journal.submit(flow.schedule(1, at=i + 0.5, activity=f"a{i}"))
        got = await journal.read_many(ids[::-1])
        assert sorted(got) == ids
        for i, wid in enumerate(ids):
            history, status = got[wid]
            assert status.input == i
            assert [e.kind for e in history] == (
                ["workflow_started", "activity_scheduled"] if i % 3 == 0 else ["workflow_started"]
            )


class TestLifecycle:
    async def test_submit_before_open(self, make):
        """Submitting to a journal that is not open fails with JournalError."""
        with pytest.raises(JournalError, match="not open"):
            await make().submit(Flow("w1").start())

    async def test_submit_after_close(self, make):
        """Submitting after close() fails with JournalError."""
        journal = make()
        await journal.open()
        await journal.close()
        with pytest.raises(JournalError, match="closed"):
            await journal.submit(Flow("w1").start())

    async def test_close_commits_queued_ops(self, make):
        """close() commits what was queued before it."""
        journal = make()
        await journal.open()
        flow = Flow("w1")
        futures = [journal.submit(flow.start()), journal.submit(flow.schedule(1))]
        await journal.close()
        assert all(f.done() for f in futures)
        await asyncio.gather(*futures)
        async with make() as reopened:
            assert len(await reopened.history("w1")) == 2

    async def test_close_is_idempotent(self, make):
        """Closing twice, or closing a journal never opened, is harmless."""
        never = make()
        await never.close()
        journal = make()
        await journal.open()
        await journal.close()
        await journal.close()
