"""Wrong arguments to the workflow helpers raise InvalidArgumentError at the call, with a fix."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

import pytest

import flowcore
from flowcore import InvalidArgumentError, Runtime, activity, workflow
from flowcore.testing import InMemoryJournal, VirtualClock

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


@activity
async def ha_echo(x: int) -> int:
    return x


BAD_CALLS: dict[str, Callable[[], Awaitable[Any]]] = {
    "sleep(None)": lambda: flowcore.sleep(None),  # type: ignore[arg-type]
    "sleep('soon')": lambda: flowcore.sleep("soon"),  # type: ignore[arg-type]
    "wait_event timeout": lambda: flowcore.wait_event("x", timeout=[1]),  # type: ignore[arg-type]
    "sleep_until(date)": lambda: flowcore.sleep_until(date(2030, 1, 1)),  # type: ignore[arg-type]
    "wait_event('')": lambda: flowcore.wait_event(""),
    "wait_event(5)": lambda: flowcore.wait_event(5),  # type: ignore[arg-type]
    "gather(function)": lambda: flowcore.gather(ha_echo),  # type: ignore[arg-type]
    "gather(list)": lambda: flowcore.gather([1, 2]),  # type: ignore[arg-type]
    "first(int)": lambda: flowcore.first(5),  # type: ignore[arg-type]
    "child(int)": lambda: flowcore.child(5),
}
EXPECTED = {
    "sleep(None)": "sleep() takes seconds (an int or a float) or a timedelta, not None",
    "sleep('soon')": "sleep() takes seconds (an int or a float) or a timedelta, not 'soon'",
    "wait_event timeout": "timeout takes seconds (an int or a float) or a timedelta, not [1]",
    "sleep_until(date)": "sleep_until() takes a datetime, not datetime.date(2030, 1, 1)",
    "wait_event('')": "wait_event() needs an event name, a non-empty string, not ''",
    "wait_event(5)": "wait_event() needs an event name, a non-empty string, not 5",
    "gather(function)": "argument 0 is <flowcore activity 'ha_echo'",
    "gather(list)": "argument 0 is a list of 2, which cannot be awaited; unpack it: flowcore",
    "first(int)": "flowcore.first() argument 0 is 5, which cannot be awaited",
    "child(int)": "child() takes a @flowcore.workflow function or a registered name, not 5",
}


@workflow
async def ha_try(case: str) -> str:
    try:
        await BAD_CALLS[case]()
    except InvalidArgumentError as exc:
        return str(exc)
    return "accepted"


class TestHelperArguments:
    @pytest.mark.parametrize("case", sorted(BAD_CALLS))
    async def test_bad_argument_is_refused_at_the_call(self, case):
        """The workflow can catch InvalidArgumentError; its message names the argument."""
        async with Runtime(journal=InMemoryJournal(), clock=VirtualClock()) as runtime:
            message = await (await runtime.start(ha_try, case)).result(timeout=10)
        assert EXPECTED[case] in message
