"""Callers blocked in result(): cancelling one leaves the others and the workflow alone."""

from __future__ import annotations

import asyncio

import pytest

import flowcore
from flowcore import Runtime, WorkflowFinishedError, workflow
from flowcore.engine.events import EventWaitStarted
from flowcore.journal.memory import InMemoryJournal
from tests.helpers import until_recorded


@workflow
async def rw_wait_go() -> str:
    return str(await flowcore.wait_event("go"))


async def test_cancelled_waiter_leaves_others_and_the_run() -> None:
    """A timed-out and a cancelled result() do not end the run; the other waiters get it."""
    async with Runtime(journal=InMemoryJournal()) as rt:
        handle = await rt.start(rw_wait_go, id="rw-1")
        await until_recorded(rt, "rw-1", EventWaitStarted)
        first = asyncio.create_task(handle.result())
        second = asyncio.create_task(handle.result())
        doomed = asyncio.create_task(handle.result())
        with pytest.raises(TimeoutError):
            await handle.result(timeout=0.01)
        await asyncio.sleep(0)  # all three wait now
        doomed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await doomed
        assert len(rt._instances["rw-1"].waiters or ()) == 2  # the cancelled ones left
        await rt.send_event("rw-1", "go", "ok")
        assert await first == "ok"
        assert await second == "ok"
        assert await handle.result() == "ok"  # after the end: no wait at all
        with pytest.raises(WorkflowFinishedError):
            await rt.send_event("rw-1", "go", "again")
