"""A request sent after a wait's deadline finds the wait timed out, even before its timer ran.

The live-path counterpart of tests/runtime/test_downtime_order.py. A timer's task wakes on a
later pass of the event loop, and reloading an evicted instance (``max_cached_workflows``)
re-arms an overdue timer only as such a task: an event delivered meanwhile must not be taken
by a wait whose deadline already passed (found by the kill-serve campaign, /tmp/hk).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import flowcore
from flowcore import Runtime, WorkflowFinishedError, workflow
from flowcore.engine.events import EventReceived, EventWaitStarted, TimerFired
from flowcore.testing import FakeClock
from tests.helpers import events_of, until_recorded


@workflow
async def ed_wait(_: int) -> Any:
    return await flowcore.wait_event("go", timeout=10)


@workflow
async def ed_two_waits(_: int) -> Any:
    first = await flowcore.wait_event("go", timeout=10)
    return [first, await flowcore.wait_event("go")]


@workflow
async def ed_idle(_: int) -> Any:
    return await flowcore.wait_event("never")


async def test_event_after_the_deadline_of_an_evicted_wait_finds_it_timed_out(db_path):
    clock = FakeClock(start=time.time())
    async with Runtime(db_path, clock=clock, max_cached_workflows=1) as rt:
        await rt.start(ed_wait, 0, id="a")
        await until_recorded(rt, "a", EventWaitStarted)
        for i in range(3):  # idle newcomers push "a" out of the cache
            await rt.start(ed_idle, 0, id=f"idle{i}")
            await until_recorded(rt, f"idle{i}", EventWaitStarted)
        await asyncio.sleep(0.05)
        clock.advance(11)  # the wait's deadline has passed
        with pytest.raises(WorkflowFinishedError):  # the wait timed out; the workflow ended
            await rt.send_event("a", "go", {"late": True})
        assert await rt.handle("a").result(timeout=5) is None
        assert len(await events_of(rt, "a", TimerFired)) == 1
        assert await events_of(rt, "a", EventReceived) == []


async def test_event_after_the_deadline_of_a_cached_wait_finds_it_timed_out(db_path):
    clock = FakeClock(start=time.time())
    async with Runtime(db_path, clock=clock) as rt:
        await rt.start(ed_wait, 0, id="a")
        await until_recorded(rt, "a", EventWaitStarted)
        clock.advance(11)  # the deadline passed; the timer's task has not run yet
        with pytest.raises(WorkflowFinishedError):
            await rt.send_event("a", "go", {"late": True})
        assert await rt.handle("a").result(timeout=5) is None


async def test_event_after_the_deadline_is_kept_for_a_later_wait(db_path):
    """The timed-out wait is journaled before the late event, which the next wait takes."""
    clock = FakeClock(start=time.time())
    async with Runtime(db_path, clock=clock) as rt:
        await rt.start(ed_two_waits, 0, id="b")
        await until_recorded(rt, "b", EventWaitStarted)
        clock.advance(11)
        await rt.send_event("b", "go", {"late": True})
        assert await rt.handle("b").result(timeout=5) == [None, {"late": True}]
        kinds = [type(e) for e in await rt.history("b")]
        assert kinds.index(TimerFired) < kinds.index(EventReceived), kinds
