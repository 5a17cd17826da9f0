"""When work starts relative to the commit of its schedule (``Runtime(dispatch=...)``)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

import flowcore
from flowcore import Runtime
from flowcore.journal.memory import InMemoryJournal
from flowcore.journal.sqlite import SqliteJournal

if TYPE_CHECKING:
    from flowcore.journal.base import Append


class GatedJournal(InMemoryJournal):
    """An in-memory journal whose commits are acknowledged only once ``gate`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.submitted = 0

    def submit(self, op: Append) -> asyncio.Future[None]:
        self.submitted += 1
        inner = super().submit(op)
        outer: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def relay() -> None:
            await self.gate.wait()
            try:
                await inner
            except Exception as exc:  # noqa: BLE001 - handed to the waiter
                outer.set_exception(exc)
            else:
                outer.set_result(None)

        task = asyncio.get_running_loop().create_task(relay())
        outer.add_done_callback(lambda _: task)  # keep a reference while pending
        return outer


@pytest.fixture
def dp_wf():
    ran: list[int] = []

    @flowcore.activity
    async def dp_record(x: int) -> int:
        ran.append(x)
        return x

    @flowcore.workflow
    async def dp_flow(x: int) -> int:
        return await dp_record(x)

    return dp_flow, ran


async def _loop_turns(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


class TestEagerStart:
    async def test_generated_id_runs_its_first_step_while_the_start_commits(self, dp_wf):
        """A generated id cannot be a duplicate: under eager dispatch the first activity runs
        before start() is acknowledged (one commit less per workflow); start() still waits."""
        flow, ran = dp_wf
        journal = GatedJournal()
        async with Runtime(journal=journal, dispatch="eager") as rt:
            starting = asyncio.ensure_future(rt.start(flow, 7))
            for _ in range(200):
                if ran:
                    break
                await asyncio.sleep(0)
            assert ran == [7]
            assert not starting.done()  # not acknowledged before its commit
            journal.gate.set()
            handle = await starting
            assert await handle.result(timeout=10) == 7

    @pytest.mark.parametrize("dispatch", ["eager", "durable"])
    async def test_explicit_id_waits_for_the_start_to_commit(self, dp_wf, dispatch):
        """An explicit id may be a duplicate (refused by the commit): its work waits."""
        flow, ran = dp_wf
        journal = GatedJournal()
        async with Runtime(journal=journal, dispatch=dispatch) as rt:
            starting = asyncio.ensure_future(rt.start(flow, 8, id="mine"))
            for _ in range(200):
                if journal.submitted:
                    break
                await asyncio.sleep(0)
            assert journal.submitted == 1
            await _loop_turns(50)  # a generated id's activity runs within a few turns
            assert ran == []
            journal.gate.set()
            await starting
            assert await rt.result("mine", timeout=10) == 8
            assert ran == [8]

    async def test_durable_dispatch_waits_even_for_a_generated_id(self, dp_wf):
        """Under durable dispatch an activity never starts before its schedule is durable."""
        flow, ran = dp_wf
        journal = GatedJournal()
        async with Runtime(journal=journal, dispatch="durable") as rt:
            starting = asyncio.ensure_future(rt.start(flow, 9))
            for _ in range(200):
                if journal.submitted:
                    break
                await asyncio.sleep(0)
            await _loop_turns(50)
            assert ran == []
            journal.gate.set()
            handle = await starting
            assert await handle.result(timeout=10) == 9


class TestOneCommitPerQuickWorkflow:
    async def test_eager_quick_steps_commit_with_the_start(self, tmp_path):
        """Under eager dispatch a workflow whose steps finish at once appends on every loop
        pass; the writer gathers while the batch grows, so its start, steps and end share one
        commit (the latency of one fsync, not four)."""

        @flowcore.activity
        async def dp_quick(x: int) -> int:
            return x + 1

        @flowcore.workflow
        async def dp_chain(x: int) -> int:
            for _ in range(3):
                x = await dp_quick(x)
            return x

        journal = SqliteJournal(tmp_path / "j.db")
        async with Runtime(journal=journal, workflows=[dp_chain], dispatch="eager") as rt:
            await (await rt.start(dp_chain, 0)).result(timeout=10)  # warm
            journal._commit_seconds = 60.0  # bound not reached (see test_sqlite.py)
            before = journal.commits
            handle = await rt.start(dp_chain, 0)
            assert journal.commits == before + 1
            assert (await handle.status()).status == "completed"  # in the start's commit
            assert await handle.result(timeout=10) == 3


class TestEagerBacklog:
    async def test_eager_waits_once_the_writer_is_a_batch_behind(self, monkeypatch):
        """Past EAGER_BACKLOG uncommitted appends, eager work waits for its schedule's commit:
        a loop that outruns the writer does not queue appends without bound."""
        from flowcore import _core

        monkeypatch.setattr(_core, "EAGER_BACKLOG", 5)
        ran: list[int] = []

        @flowcore.activity
        async def bl_record(x: int) -> int:
            ran.append(x)
            return x

        @flowcore.workflow
        async def bl_chain(n: int) -> int:
            for i in range(n):
                await bl_record(i)
            return n

        journal = GatedJournal()
        async with Runtime(journal=journal, dispatch="eager") as rt:
            starting = asyncio.ensure_future(rt.start(bl_chain, 50))
            await _loop_turns(300)  # unbounded, all 50 steps would run in these turns
            assert 0 < len(ran) < 50
            assert journal.submitted <= 6  # the start, then steps until the bound
            journal.gate.set()
            handle = await starting
            assert await handle.result(timeout=10) == 50
            assert ran == list(range(50))
