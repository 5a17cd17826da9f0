"""An activity runner that crashes (a fault outside the activity) stops the runtime cleanly."""

from __future__ import annotations

import pytest

from flowcore import JournalError, RetryPolicy, Runtime, activity, workflow
from flowcore.journal.memory import InMemoryJournal


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
