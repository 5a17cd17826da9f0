"""An activity runner that crashes (a fault outside the activity) stops the runtime cleanly."""

from __future__ import annotations

import asyncio

import pytest

from flowcore import JournalError, RetryPolicy, Runtime, activity, workflow
from flowcore.engine.events import ActivityScheduled
from flowcore.journal.memory import InMemoryJournal
from tests.helpers import assert_eventually, until_recorded


class _BrokenPolicy(RetryPolicy):
    """A retry policy whose decision raises: the runner's own loop fails, not the activity."""

    def should_retry(self, failure, attempt):  # noqa: ARG002 - test double
        raise RuntimeError("policy exploded")


@activity(retry=_BrokenPolicy())
async def rc_always_fails() -> None:
    raise ValueError("activity error")


@workflow
async def rc_flow() -> None:
    await rc_always_fails()


async def test_runner_crash_fail_stops_and_leaks_no_task() -> None:
    """The crash fail-stops the runtime: result() raises, new work is refused, close is clean."""
    async with Runtime(journal=InMemoryJournal()) as rt:
        handle = await rt.start(rc_flow, id="rc-1")
        with pytest.raises(JournalError, match="policy exploded"):
            await handle.result(timeout=10)
        with pytest.raises(JournalError, match="stopped accepting work"):
            await rt.start(rc_flow, id="rc-2")
        assert not rt._jobs  # the runner left the set of running tasks


@activity
async def rc_slow() -> None:
    await asyncio.Event().wait()  # never set: only a stop ends it


@workflow
async def rc_slow_flow() -> None:
    await rc_slow()


async def test_activity_stopped_before_it_ran_leaves_no_task() -> None:
    """An activity whose workflow ends before its task first ran leaves the set of tasks."""
    async with Runtime(journal=InMemoryJournal()) as rt:
        for index in range(3):
            handle = await rt.start(rc_slow_flow, id=f"rc-stop-{index}")
            await rt.terminate(handle.id)  # its task may not have run yet
        handle = await rt.start(rc_slow_flow, id="rc-stop-late")
        await until_recorded(rt, "rc-stop-late", ActivityScheduled)
        await asyncio.sleep(0)  # it runs now
        await rt.terminate("rc-stop-late")
        await assert_eventually(lambda: not rt._jobs, message=f"tasks left: {rt._jobs}")
