"""The bounded cache of idle workflows (DESIGN invariant 4: replay only on recovery or eviction).

``Runtime(max_cached_workflows=N)`` keeps at most N unfinished workflows in memory while the
rest wait idle (on an event or a timer); an evicted one is replayed from its journal when an
event, a cancel request or its earliest timer wakes it. What it ran is not run again.
"""

from __future__ import annotations

import asyncio
import collections

import pytest

import flowcore
from flowcore import Runtime, WorkflowCanceledError, activity, workflow
from flowcore.engine.events import EventWaitStarted, TimerScheduled
from flowcore.testing import VirtualClock
from tests.helpers import assert_eventually, until_recorded

HOUR = 3600.0
calls: collections.Counter[str] = collections.Counter()


@pytest.fixture(autouse=True)
def _reset_calls():
    calls.clear()


@activity
async def ev_prepare(x: int) -> int:
    calls[f"prepare-{x}"] += 1
    return x * 10


@activity
async def ev_finish(x: int) -> int:
    calls[f"finish-{x}"] += 1
    return x + 1


@workflow
async def ev_approval(x: int) -> int:
    """Prepare, wait for a human, finish: the classic idle workflow."""
    prepared = await ev_prepare(x)
    extra = await flowcore.wait_event("go", type=int)
    return await ev_finish(prepared + (extra or 0))


@workflow
async def ev_reminder(x: int) -> int:
    """Prepare, then sleep an hour: a timer wakes it."""
    prepared = await ev_prepare(x)
    await flowcore.sleep(HOUR)
    return await ev_finish(prepared)


@workflow
async def ev_deadline(x: int) -> str:
    """Wait for an answer for at most an hour."""
    await ev_prepare(x)
    answer = await flowcore.wait_event("answer", type=str, timeout=HOUR)
    return answer or "timed out"


def in_memory(rt: Runtime) -> int:
    """Unfinished workflows whose executor is in memory (not evicted)."""
    return sum(1 for inst in rt._instances.values() if not inst.evicted)


async def start_waiting(rt: Runtime, wf, n: int, kind) -> list:
    handles = [await rt.start(wf, i, id=f"w{i}") for i in range(n)]
    for handle in handles:
        await until_recorded(rt, handle.id, kind)
    return handles


class TestEviction:
    async def test_idle_workflows_beyond_the_bound_leave_memory(self, db_path):
        async with Runtime(db_path, max_cached_workflows=10) as rt:
            await start_waiting(rt, ev_approval, 40, EventWaitStarted)
            await assert_eventually(lambda: in_memory(rt) <= 10, message="cache over its bound")
            assert len(rt._instances) == 40  # evicted ones keep a small record
            assert (await rt.status("w0")).status == "running"

    async def test_events_wake_evicted_workflows_without_rerunning_activities(self, db_path):
        async with Runtime(db_path, max_cached_workflows=5) as rt:
            handles = await start_waiting(rt, ev_approval, 30, EventWaitStarted)
            await assert_eventually(lambda: in_memory(rt) <= 5, message="nothing evicted")
            evicted = [h for h in handles if rt._instances[h.id].evicted]
            assert len(evicted) >= 25
            for i, handle in enumerate(handles):
                await rt.send_event(handle.id, "go", i)
            results = [await h.result(timeout=10) for h in handles]
        assert results == [i * 10 + i + 1 for i in range(30)]
        assert set(calls.values()) == {1}  # each activity ran once, though most were replayed
        assert len(calls) == 60

    async def test_a_result_waiter_on_an_evicted_workflow_gets_its_result(self, db_path):
        async with Runtime(db_path, max_cached_workflows=2) as rt:
            handles = await start_waiting(rt, ev_approval, 6, EventWaitStarted)
            await assert_eventually(lambda: rt._instances["w0"].evicted)
            waiter = asyncio.ensure_future(handles[0].result(timeout=10))
            await rt.send_event("w0", "go", 5)
            assert await waiter == 0 * 10 + 5 + 1

    async def test_timers_of_evicted_workflows_fire_at_their_deadline(self, db_path):
        clock = VirtualClock()
        async with Runtime(db_path, clock=clock, max_cached_workflows=3) as rt:
            began = clock.now()
            handles = await start_waiting(rt, ev_reminder, 12, TimerScheduled)
            await assert_eventually(lambda: in_memory(rt) <= 3, message="nothing evicted")
            results = [await h.result(timeout=10) for h in handles]
            assert clock.now() - began >= HOUR  # nobody woke early
        assert results == [i * 10 + 1 for i in range(12)]
        assert set(calls.values()) == {1}

    async def test_an_event_wait_times_out_while_evicted(self, db_path):
        clock = VirtualClock()
        async with Runtime(db_path, clock=clock, max_cached_workflows=2) as rt:
            handles = await start_waiting(rt, ev_deadline, 8, EventWaitStarted)
            await assert_eventually(lambda: in_memory(rt) <= 2, message="nothing evicted")
            await rt.send_event("w7", "answer", "yes")
            assert await handles[7].result(timeout=10) == "yes"
            assert [await h.result(timeout=10) for h in handles[:7]] == ["timed out"] * 7

    async def test_cancel_and_terminate_reach_evicted_workflows(self, db_path):
        async with Runtime(db_path, max_cached_workflows=2) as rt:
            await start_waiting(rt, ev_approval, 8, EventWaitStarted)
            await assert_eventually(
                lambda: rt._instances["w0"].evicted and rt._instances["w1"].evicted
            )
            await rt.cancel("w0", reason="no longer needed")
            with pytest.raises(WorkflowCanceledError):
                await rt.result("w0", timeout=10)
            await rt.terminate("w1", reason="stop")
            with pytest.raises(WorkflowCanceledError):
                await rt.result("w1", timeout=10)
            assert (await rt.status("w1")).status == "terminated"
            for i in range(2, 8):  # the others are unharmed
                await rt.send_event(f"w{i}", "go", 0)
                assert await rt.result(f"w{i}", timeout=10) == i * 10 + 1

    async def test_suspend_and_resume_an_evicted_workflow(self, db_path):
        async with Runtime(db_path, max_cached_workflows=1) as rt:
            await start_waiting(rt, ev_approval, 4, EventWaitStarted)
            await assert_eventually(lambda: rt._instances["w0"].evicted)
            await rt.suspend("w0")
            await rt.send_event("w0", "go", 1)  # kept while suspended
            await rt.start(ev_approval, 9, id="w9")  # over the bound: the oldest idle one goes
            await assert_eventually(lambda: rt._instances["w0"].evicted)
            await rt.resume("w0")
            assert await rt.result("w0", timeout=10) == 2

    async def test_recovery_keeps_the_bound(self, db_path):
        async with Runtime(db_path, max_cached_workflows=None) as rt:
            await start_waiting(rt, ev_approval, 20, EventWaitStarted)
            assert in_memory(rt) == 20  # None: no bound
        async with Runtime(db_path, max_cached_workflows=4) as rt:
            assert in_memory(rt) <= 4  # evicted right after replay, before open() returned
            for i in range(20):
                await rt.send_event(f"w{i}", "go", 0)
            assert [await rt.result(f"w{i}", timeout=10) for i in range(20)] == [
                i * 10 + 1 for i in range(20)
            ]
        assert all(count == 1 for count in calls.values())

    async def test_busy_workflows_are_never_evicted(self, db_path):
        gate = asyncio.Event()

        @activity
        async def ev_blocked(x: int) -> int:
            await gate.wait()
            return x

        @workflow
        async def ev_busy(x: int) -> int:
            return await ev_blocked(x)

        async with Runtime(db_path, max_cached_workflows=2) as rt:
            handles = [await rt.start(ev_busy, i) for i in range(6)]
            await assert_eventually(
                lambda: sum(len(i.activities) for i in rt._instances.values()) == 6
            )
            assert in_memory(rt) == 6  # over the bound: nothing was idle
            gate.set()
            assert [await h.result(timeout=10) for h in handles] == list(range(6))

    async def test_an_evicted_child_wakes_its_waiting_parent(self, db_path):
        @workflow
        async def ev_parent(x: int) -> int:
            return await flowcore.child(ev_approval, x, id=f"child-{x}") + 1000

        async with Runtime(db_path, max_cached_workflows=1) as rt:
            parents = [await rt.start(ev_parent, i, id=f"p{i}") for i in range(3)]
            for i in range(3):
                await until_recorded(rt, f"child-{i}", EventWaitStarted)
            await start_waiting(rt, ev_approval, 3, EventWaitStarted)  # push children out
            await assert_eventually(lambda: rt._instances["child-0"].evicted)
            assert not rt._instances["p0"].evicted  # a parent waiting on a child stays
            for i in range(3):
                await rt.send_event(f"child-{i}", "go", 0)
            assert [await p.result(timeout=10) for p in parents] == [
                i * 10 + 1 + 1000 for i in range(3)
            ]

    async def test_a_continued_run_is_replayed_from_its_own_history(self, db_path):
        @workflow
        async def ev_rounds(n: int) -> int:
            await ev_prepare(n)
            go = await flowcore.wait_event("go", type=int)
            if n < 2:
                flowcore.continue_as_new(n + 1)
            return n * 100 + (go or 0)

        async with Runtime(db_path, max_cached_workflows=1) as rt:
            handle = await rt.start(ev_rounds, 0, id="rounds")
            for rnd in range(3):
                await assert_eventually(lambda rnd=rnd: calls[f"prepare-{rnd}"] == 1)
                await until_recorded(rt, "rounds", EventWaitStarted)  # this run's history
                await rt.start(ev_approval, 100 + rnd, id=f"other{rnd}")  # evicts "rounds"
                await assert_eventually(lambda: rt._instances["rounds"].evicted)
                await rt.send_event("rounds", "go", 7)
            assert await handle.result(timeout=10) == 207
        assert [calls[f"prepare-{n}"] for n in range(3)] == [1, 1, 1]

    def test_the_bound_is_checked(self, db_path):
        with pytest.raises(ValueError, match="max_cached_workflows"):
            Runtime(db_path, max_cached_workflows=0)
