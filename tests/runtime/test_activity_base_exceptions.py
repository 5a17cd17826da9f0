"""An activity that raises a BaseException (not an Exception) fails its attempt.

``sys.exit()`` in a library an activity calls, a ``KeyboardInterrupt`` or a ``CancelledError``
the activity's own code raises, or a custom ``BaseException`` subclass: each is the attempt's
failure, retried by its policy and then surfaced as :class:`ActivityError`. The workflow must
never be left ``running`` with nothing left to run it.
"""

from __future__ import annotations

import asyncio

import pytest

from flowcore import ActivityError, RetryPolicy, Runtime, activity, workflow
from flowcore.journal.memory import InMemoryJournal

LIMIT = 10.0


class _Custom(BaseException):
    """A BaseException that is not one of Python's own."""


_RAISED: dict[str, type[BaseException]] = {
    "exit": SystemExit,
    "interrupt": KeyboardInterrupt,
    "cancelled": asyncio.CancelledError,
    "generator_exit": GeneratorExit,
    "custom": _Custom,
}
_RETRY = RetryPolicy(max_attempts=2, initial_interval=0.001)


@pytest.mark.parametrize("kind", sorted(_RAISED))
@pytest.mark.parametrize("mode", ["async", "sync", "async_timeout"])
@pytest.mark.parametrize("dispatch", ["eager", "durable"])
async def test_base_exception_in_an_activity_fails_its_attempts(kind, mode, dispatch):
    """Each attempt fails with the BaseException's type; the workflow catches ActivityError."""
    calls: list[int] = []

    @activity(name="be_async", retry=_RETRY)
    async def be_async(what: str) -> str:
        calls.append(1)
        raise _RAISED[what]

    @activity(name="be_sync", retry=_RETRY)
    def be_sync(what: str) -> str:
        calls.append(1)
        raise _RAISED[what]

    @activity(name="be_async_timeout", retry=_RETRY, timeout=LIMIT)
    async def be_async_timeout(what: str) -> str:
        calls.append(1)
        raise _RAISED[what]

    chosen = {"async": be_async, "sync": be_sync, "async_timeout": be_async_timeout}[mode]

    @workflow(name="be_flow")
    async def be_flow(what: str) -> str:
        try:
            return await chosen(what)
        except ActivityError as exc:
            return f"{exc.failure.short_type} after {exc.attempts}"

    async with Runtime(journal=InMemoryJournal(), dispatch=dispatch) as rt:
        handle = await rt.start(be_flow, kind, id="be")
        outcome = await handle.result(timeout=LIMIT)
    assert outcome == f"{_RAISED[kind].__qualname__} after 2"
    assert len(calls) == 2
