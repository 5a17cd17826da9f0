"""Far deadlines: a timer never wakes a workflow before the instant it asked for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import flowcore
from flowcore import Runtime, workflow
from flowcore.testing import InMemoryJournal, VirtualClock

FAR = datetime(9000, 1, 1, 0, 0, 0, 1, tzinfo=UTC)
"""An instant a float of epoch seconds cannot hold to the microsecond (spacing ~30 us)."""


@workflow
async def fd_until(when: datetime) -> bool:
    await flowcore.sleep_until(when)
    return flowcore.now() >= when


@workflow
async def fd_sleep(duration: timedelta) -> bool:
    asked = flowcore.now() + duration
    await flowcore.sleep(duration)
    return flowcore.now() >= asked


@workflow
async def fd_wait(duration: timedelta) -> bool:
    asked = flowcore.now() + duration
    got = await flowcore.wait_event("never", timeout=duration)
    return got is None and flowcore.now() >= asked


async def _run(wf: object, payload: object) -> object:
    async with Runtime(journal=InMemoryJournal(), clock=VirtualClock()) as runtime:
        return await (await runtime.start(wf, payload)).result(timeout=10)  # type: ignore[arg-type]


class TestFarDeadlines:
    async def test_sleep_until_far_instant_is_not_early(self):
        """sleep_until() of an instant in the year 9000 wakes at or after it, never before."""
        assert await _run(fd_until, FAR) is True

    async def test_sleep_long_timedelta_is_not_early(self):
        """sleep() of a timedelta reaching the year 9000 ends at or after now() + duration."""
        assert await _run(fd_sleep, FAR - datetime(2026, 1, 1, tzinfo=UTC)) is True

    async def test_wait_event_long_timeout_is_not_early(self):
        """A wait_event() timeout of such a timedelta expires at or after now() + timeout."""
        assert await _run(fd_wait, FAR - datetime(2026, 1, 1, tzinfo=UTC)) is True
