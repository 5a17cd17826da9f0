"""Deadlines that passed while no runtime ran, and requests queued meanwhile, keep their order.

A workflow recovered after downtime must end as it would have without it: its expired timers
fire in deadline order, and a request acknowledged while it was down (``python -m flowcore
send-event``, queued in the journal's inbox) meets the workflow as it was when the request was
queued: before a wait's timeout it wins over the timeout, after it the wait has timed out.
The clock is a FakeClock set against the wall clock the inbox stamps requests with.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import flowcore
from flowcore import Runtime, workflow
from flowcore import _inbox as inbox
from flowcore._core import Core
from flowcore.engine.events import EventReceived, EventWaitStarted, TimerFired, TimerScheduled
from flowcore.testing import FakeClock
from tests.helpers import events_of, until_recorded


@workflow
async def dt_two_timers() -> int:
    won = await flowcore.first(flowcore.sleep(4), flowcore.sleep(2))
    return won.index


@workflow
async def dt_wait_or_sleep() -> int:
    won = await flowcore.first(
        flowcore.wait_event("never", timeout=timedelta(seconds=8)), flowcore.sleep(1.5)
    )
    return won.index


@workflow
async def dt_wait(_: int) -> Any:
    return await flowcore.wait_event("x", timeout=3)


class TestTimersAfterDowntime:
    async def test_expired_timers_fire_in_deadline_order(self, db_path):
        """first(sleep(4), sleep(2)), both expired during downtime: the 2 s one still wins."""
        clock = FakeClock()
        async with Runtime(db_path, clock=clock) as rt:
            await rt.start(dt_two_timers, id="t")
            await until_recorded(rt, "t", TimerScheduled, count=2)
        clock.advance(10)
        async with Runtime(db_path, clock=clock) as rt:
            assert await rt.handle("t").result(timeout=10) == 1
            [fired] = await events_of(rt, "t", TimerFired)
        assert fired.step == 2

    async def test_expired_wait_deadline_and_timer_keep_their_order(self, db_path):
        """first(wait_event(timeout=8), sleep(1.5)) after downtime: the sleep still wins."""
        clock = FakeClock()
        async with Runtime(db_path, clock=clock) as rt:
            await rt.start(dt_wait_or_sleep, id="r")
            await until_recorded(rt, "r", TimerScheduled)
        clock.advance(60)
        async with Runtime(db_path, clock=clock) as rt:
            assert await rt.handle("r").result(timeout=10) == 1


class TestRequestsQueuedDuringDowntime:
    async def test_event_queued_before_the_timeout_wins(self, db_path):
        """An event acknowledged while down, before the wait's deadline: the wait gets it."""
        clock = FakeClock(start=time.time())
        async with Runtime(db_path, clock=clock) as rt:
            await rt.start(dt_wait, 1, id="w")
            await until_recorded(rt, "w", EventWaitStarted)
        inbox.post(str(db_path), "event", "w", {"name": "x", "payload": {"v": 1}})
        clock.advance(10)  # the 3 s deadline passes while no runtime runs
        async with Runtime(db_path, clock=clock) as rt:
            assert await rt.handle("w").result(timeout=10) == {"v": 1}
            assert await events_of(rt, "w", TimerFired) == []

    async def test_event_queued_after_the_timeout_finds_it_timed_out(self, db_path):
        """An event queued after the wait's deadline: the wait timed out, as without downtime."""
        clock = FakeClock(start=time.time() - 100)  # the deadline is long past on the wall clock
        async with Runtime(db_path, clock=clock) as rt:
            await rt.start(dt_wait, 1, id="w")
            await until_recorded(rt, "w", EventWaitStarted)
        inbox.post(str(db_path), "event", "w", {"name": "x", "payload": {"v": 1}})
        clock.advance(10)
        async with Runtime(db_path, clock=clock) as rt:
            assert await rt.handle("w").result(timeout=10) is None
            assert await events_of(rt, "w", EventReceived) == []


class TestRequestsQueuedWhileRunning:
    async def test_event_queued_just_before_the_timeout_wins(self, db_path):
        """An event queued (acknowledged) before a wait's deadline, which the owner has not
        seen yet when the deadline passes, is applied before the timeout fires."""
        clock = FakeClock(start=time.time())
        async with Runtime(db_path, clock=clock) as rt:
            handle = await rt.start(dt_wait, 1, id="w")
            await until_recorded(rt, "w", EventWaitStarted)
            inbox.post(str(db_path), "event", "w", {"name": "x", "payload": {"v": 2}})
            clock.advance(10)  # no await in between: the watcher has not looked yet
            assert await handle.result(timeout=10) == {"v": 2}
            assert await events_of(rt, "w", TimerFired) == []

    async def test_event_queued_after_the_timeout_finds_it_timed_out(self, db_path):
        """Queued after the deadline (by the clocks' reckoning): the timeout fires first."""
        clock = FakeClock(start=time.time() - 100)
        async with Runtime(db_path, clock=clock) as rt:
            handle = await rt.start(dt_wait, 1, id="w")
            await until_recorded(rt, "w", EventWaitStarted)
            inbox.post(str(db_path), "event", "w", {"name": "x", "payload": {"v": 2}})
            clock.advance(10)
            assert await handle.result(timeout=10) is None


@workflow
async def dt_wait_long(_: int) -> Any:
    return await flowcore.wait_event("x", timeout=1000)


@workflow
async def dt_wait_or_hour() -> int:
    won = await flowcore.first(flowcore.wait_event("x"), flowcore.sleep(3600))
    return won.index


class TestRequestsUnderAClockBehindTheWallClock:
    async def test_a_queued_request_fires_no_timer_the_runtime_clock_has_not_reached(self, db_path):
        """A test clock far behind the wall clock that stamps inbox requests: an event queued
        now does not make the hour-long sleep count as overdue; the event wins the race."""
        clock = FakeClock(start=time.time() - 100_000)
        async with Runtime(db_path, clock=clock) as rt:
            handle = await rt.start(dt_wait_or_hour, id="h")
            await until_recorded(rt, "h", TimerScheduled)
            inbox.post(str(db_path), "event", "h", {"name": "x", "payload": 1})
            assert await handle.result(timeout=10) == 0
            assert await events_of(rt, "h", TimerFired) == []


class TestRequestsToEvictedWorkflows:
    async def test_events_queued_while_down_reach_workflows_recovery_evicted(
        self, db_path, monkeypatch
    ):
        """Over the cache bound, recovery leaves the idle workflows evicted (their deadlines
        lie ahead); an event queued for each while no runtime ran reloads it and is taken.

        (A workflow whose deadline passed while down is never idle, so never evicted: its
        held timer keeps its order with the requests, as tested above.)"""
        clock = FakeClock(start=time.time())
        ids = [f"w{i}" for i in range(4)]
        async with Runtime(db_path, clock=clock) as rt:
            for wid in ids:
                await rt.start(dt_wait_long, 1, id=wid)
            for wid in ids:
                await until_recorded(rt, wid, EventWaitStarted)
        for wid in ids:
            inbox.post(str(db_path), "event", wid, {"name": "x", "payload": {"v": 1}})
        clock.advance(10)
        reloaded: list[str] = []
        reload = Core._reload  # watched, to know the bound took effect

        async def watched(core: Core, inst: Any) -> None:
            reloaded.append(inst.id)
            await reload(core, inst)

        monkeypatch.setattr(Core, "_reload", watched)
        async with Runtime(db_path, clock=clock, max_cached_workflows=1) as rt:
            for wid in ids:
                assert await rt.handle(wid).result(timeout=10) == {"v": 1}, wid
                assert await events_of(rt, wid, TimerFired) == []
        assert len(reloaded) >= 3
