"""Recovery within the cache bound: idle workflows beyond it are not replayed at open.

With ``Runtime(max_cached_workflows=N)``, an unfinished workflow whose journal shows it waiting
only on events and timers, none due, is recovered as an eviction leaves it: a small record, its
earliest deadline in the wake-up heap. So a journal of many waiting workflows opens without
replaying them all (memory stays within the bound, open is fast), while those with work to do
(an activity cut by the restart, a retry, a timer that came due while down) resume at once.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import pytest

import flowcore
from flowcore import RetryPolicy, Runtime, activity, workflow
from flowcore._instance import waiting_only
from flowcore.engine.events import (
    ActivityAttemptFailed,
    ChildCompleted,
    ChildScheduled,
    EventReceived,
    EventWaitStarted,
    FailureInfo,
    TimerFired,
    TimerScheduled,
)
from flowcore.engine.executor import WorkflowExecutor
from flowcore.testing import FakeClock, VirtualClock
from tests.helpers import (
    ReadCountingJournal,
    assert_eventually,
    completed,
    scheduled,
    started,
    until_recorded,
)

HOUR = 3600.0
calls: collections.Counter[str] = collections.Counter()


@pytest.fixture(autouse=True)
def _reset_calls():
    calls.clear()


@activity
async def lz_prepare(x: int) -> int:
    calls[f"prepare-{x}"] += 1
    return x * 10


@workflow
async def lz_approval(x: int) -> int:
    prepared = await lz_prepare(x)
    return prepared + (await flowcore.wait_event("go", type=int) or 0)


@workflow
async def lz_reminder(x: int) -> int:
    prepared = await lz_prepare(x)
    await flowcore.sleep(HOUR)
    return prepared + 1


@workflow
async def lz_deadline(x: int) -> str:
    await lz_prepare(x)
    return await flowcore.wait_event("answer", type=str, timeout=HOUR) or "timed out"


def in_memory(rt: Runtime) -> int:
    """Unfinished workflows whose executor is in memory (not evicted)."""
    return sum(1 for inst in rt._instances.values() if not inst.evicted)


async def start_waiting(rt: Runtime, wf: Any, ids: list[str], kind: type, base: int = 0) -> None:
    for i, wid in enumerate(ids):
        await rt.start(wf, base + i, id=wid)
    for wid in ids:
        await until_recorded(rt, wid, kind)


def count_replays(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Ids of the workflows replayed from now on."""
    replayed: list[str] = []
    replay = WorkflowExecutor.replay

    def counting(self: WorkflowExecutor, history: Any) -> Any:
        replayed.append(self.workflow_id)
        return replay(self, history)

    monkeypatch.setattr(WorkflowExecutor, "replay", counting)
    return replayed


class TestOpen:
    async def test_idle_workflows_beyond_the_bound_are_not_replayed(self, db_path, monkeypatch):
        """Open replays no more idle workflows than the cache keeps; the rest stay evicted."""
        ids = [f"w{i}" for i in range(30)]
        async with Runtime(db_path, max_cached_workflows=None) as rt:
            await start_waiting(rt, lz_approval, ids, EventWaitStarted)
        replayed = count_replays(monkeypatch)
        async with Runtime(db_path, max_cached_workflows=5) as rt:
            assert len(replayed) <= 5, replayed  # was all 30, evicted only after replay
            assert in_memory(rt) <= 5
            assert len(rt._instances) == 30  # every one has its small record
            assert (await rt.status("w0")).status == "running"
            for i, wid in enumerate(ids):
                await rt.send_event(wid, "go", i)
            results = [await rt.result(wid, timeout=10) for wid in ids]
        assert results == [i * 10 + i for i in range(30)]
        assert set(calls.values()) == {1}  # no completed activity ran again
        assert len(calls) == 30

    async def test_open_reads_the_journal_in_bulk(self):
        """Open reads the unfinished instances a chunk at a time, not two round trips each
        (20,000 waiting workflows opened in 2-4 s that way, 0.5-0.6 s in bulk)."""
        journal = ReadCountingJournal()
        ids = [f"w{i}" for i in range(30)]
        async with Runtime(journal=journal, max_cached_workflows=None) as rt:
            await start_waiting(rt, lz_approval, ids, EventWaitStarted)
        journal.history_reads = journal.status_reads = journal.bulk_reads = 0
        async with Runtime(journal=journal, max_cached_workflows=5) as rt:
            assert (journal.reads, journal.bulk_reads) == (0, 2)  # all; those kept after all
            assert 0 < in_memory(rt) <= 5
            for i, wid in enumerate(ids):
                await rt.send_event(wid, "go", i)
            results = [await rt.result(wid, timeout=10) for wid in ids]
        assert results == [i * 10 + i for i in range(30)]
        assert set(calls.values()) == {1}

    async def test_the_most_recently_active_stay_in_memory(self, db_path, monkeypatch):
        """The cache is filled with the idle workflows last active, as a sweep would keep."""
        ids = [f"w{i}" for i in range(10)]
        async with Runtime(db_path, max_cached_workflows=None) as rt:
            await start_waiting(rt, lz_approval, ids, EventWaitStarted)
            await rt.send_event("w0", "nudge", 1)  # buffered: w0 is now the most recent
            await until_recorded(rt, "w0", EventReceived)
        replayed = count_replays(monkeypatch)
        async with Runtime(db_path, max_cached_workflows=2) as rt:
            assert sorted(replayed) == ["w0", "w9"]  # w0, the oldest, was active last
            assert not rt._instances["w0"].evicted
            assert rt._instances["w8"].evicted

    async def test_timers_and_deadlines_still_fire(self, db_path):
        """Evicted at open, timers and event-wait deadlines fire at their recorded time."""
        clock = VirtualClock()
        reminders, deadlines = [f"r{i}" for i in range(6)], [f"d{i}" for i in range(6)]
        began = clock.now()
        async with Runtime(db_path, clock=clock, max_cached_workflows=None) as rt:
            await start_waiting(rt, lz_reminder, reminders, TimerScheduled)
            await start_waiting(rt, lz_deadline, deadlines, EventWaitStarted, base=100)
        async with Runtime(db_path, clock=clock, max_cached_workflows=2) as rt:
            assert in_memory(rt) <= 2
            await rt.send_event("d5", "answer", "yes")
            assert await rt.result("d5", timeout=10) == "yes"
            results = [await rt.result(wid, timeout=10) for wid in reminders + deadlines[:5]]
            assert clock.now() - began >= HOUR  # nobody woke early
        assert results == [i * 10 + 1 for i in range(6)] + ["timed out"] * 5
        assert set(calls.values()) == {1}
        assert len(calls) == 12

    async def test_work_to_do_resumes_over_the_bound(self, db_path):
        """An activity cut by the restart, a due retry and a timer due while down resume at
        open without any event, though idle workflows fill the cache."""
        gate = asyncio.Event()
        attempts: list[int] = []

        @activity
        async def lz_blocked(x: int) -> int:
            await gate.wait()
            return x

        @activity(retry=RetryPolicy(max_attempts=3, initial_interval=60, max_interval=60))
        async def lz_flaky() -> str:
            attempts.append(flowcore.activity_info().attempt)
            if len(attempts) == 1:
                raise ConnectionError("down")
            return "up"

        @workflow
        async def lz_cut(x: int) -> int:
            return await lz_blocked(x)

        @workflow
        async def lz_retried() -> str:
            return await lz_flaky()

        clock = FakeClock()
        idle = [f"w{i}" for i in range(8)]
        async with Runtime(db_path, clock=clock, max_cached_workflows=None) as rt:
            await start_waiting(rt, lz_approval, idle, EventWaitStarted)
            await rt.start(lz_reminder, 1, id="timer")
            await until_recorded(rt, "timer", TimerScheduled)
            await rt.start(lz_retried, id="retry")
            await until_recorded(rt, "retry", ActivityAttemptFailed)
            await rt.start(lz_cut, 7, id="cut")
            await assert_eventually(lambda: bool(rt._instances["cut"].activities))
        clock.advance(HOUR + 1)  # the timer and the retry came due while no runtime ran
        gate.set()
        async with Runtime(db_path, clock=clock, max_cached_workflows=1) as rt:
            assert await rt.result("cut", timeout=10) == 7
            assert await rt.result("timer", timeout=10) == 11
            assert await rt.result("retry", timeout=10) == "up"
            assert all(rt._instances[wid].evicted for wid in idle[:-1])
        assert attempts == [1, 2]


class TestWaitingOnly:
    """The journal analysis that decides whether a workflow may stay evicted at open."""

    def test_a_wait_after_completed_activities_is_idle(self):
        """Every scheduled activity finished and a wait is open: idle, no deadline."""
        history = [
            started("wf"),
            scheduled(1, "act"),
            completed(1, 5),
            EventWaitStarted(at=2.0, step=2, name="go"),
        ]
        assert waiting_only(history) == (True, None)

    def test_an_unfinished_activity_or_retry_is_busy(self):
        """An activity scheduled and not finished (its retry pending, too) is work to do."""
        failure = FailureInfo(type_name="E", message="m")
        retry = ActivityAttemptFailed(at=2.0, step=1, attempt=1, failure=failure, retry_at=9.0)
        assert waiting_only([started("wf"), scheduled(1, "act")]) == (False, None)
        assert waiting_only([started("wf"), scheduled(1, "act"), retry]) == (False, None)

    def test_an_unfinished_child_is_busy(self):
        """A parent waiting on a child stays in memory (as eviction never drops it)."""
        child = ChildScheduled(at=1.0, step=1, name="kid", child_id="k")
        assert waiting_only([started("wf"), child]) == (False, None)
        ended = ChildCompleted(at=2.0, step=1, result=1)
        wait = EventWaitStarted(at=2.0, step=2, name="go")
        assert waiting_only([started("wf"), child, ended, wait]) == (True, None)

    def test_a_start_alone_is_busy(self):
        """A run whose first step is not journaled (it continued as new at once) must replay."""
        received = EventReceived(at=1.0, name="go", payload=1)
        assert waiting_only([started("wf")]) == (False, None)
        assert waiting_only([started("wf"), received]) == (False, None)

    def test_the_earliest_deadline_not_fired(self):
        """Timers and wait deadlines count until their TimerFired; the earliest is returned."""
        history = [
            started("wf"),
            TimerScheduled(at=1.0, step=1, fire_at=50.0),
            EventWaitStarted(at=1.0, step=2, name="go", deadline=80.0),
            TimerFired(at=50.0, step=1),
            TimerScheduled(at=50.0, step=3, fire_at=120.0),
        ]
        assert waiting_only(history) == (True, 80.0)
