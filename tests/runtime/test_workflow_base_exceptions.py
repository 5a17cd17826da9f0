"""A workflow whose code raises a BaseException (not an Exception) fails, like any other error.

``sys.exit()``, ``KeyboardInterrupt``, ``CancelledError``, ``GeneratorExit`` or a custom
``BaseException`` subclass raised by workflow code must end that instance ``failed`` with the
exception recorded. It must not escape through the runtime into the host program: that took the
whole process down, and recovery replayed the instance into the same crash at every restart.
"""

from __future__ import annotations

import asyncio
import sys

import pytest

from flowcore import Runtime, WorkflowFailedError, activity, gather, workflow
from flowcore.journal.memory import InMemoryJournal

LIMIT = 10.0


class _Custom(BaseException):
    """A BaseException that is not one of Python's own."""


def _raise(kind: str) -> None:
    if kind == "exit":
        sys.exit(3)
    raise {
        "interrupt": KeyboardInterrupt,
        "cancelled": asyncio.CancelledError,
        "generator_exit": GeneratorExit,
        "custom": _Custom,
    }[kind]


_KINDS = {
    "exit": "SystemExit",
    "interrupt": "KeyboardInterrupt",
    "cancelled": "CancelledError",
    "generator_exit": "GeneratorExit",
    "custom": "_Custom",
}


@pytest.mark.parametrize("kind", sorted(_KINDS))
@pytest.mark.parametrize("where", ["first_step", "after_activity", "in_gather_branch"])
@pytest.mark.parametrize("dispatch", ["eager", "durable"])
async def test_base_exception_in_workflow_code_fails_the_instance(kind, where, dispatch):
    """The instance fails with the exception's type; the runtime keeps running others."""

    @activity(name="wbe_echo")
    async def wbe_echo(x: int) -> int:
        return x

    async def branch(what: str) -> int:
        await wbe_echo(1)
        _raise(what)
        return 0

    @workflow(name="wbe_flow")
    async def wbe_flow(what: str) -> int:
        if what == "ok":
            return await wbe_echo(7)
        if where == "after_activity":
            await wbe_echo(1)
        elif where == "in_gather_branch":
            await gather(branch(what), wbe_echo(2))
        _raise(what)
        return 0

    async with Runtime(journal=InMemoryJournal(), dispatch=dispatch) as rt:
        handle = await rt.start(wbe_flow, kind, id="bad")
        with pytest.raises(WorkflowFailedError) as caught:
            await handle.result(timeout=LIMIT)
        assert caught.value.failure.short_type == _KINDS[kind]
        assert (await rt.status("bad")).status == "failed"
        other = await rt.start(wbe_flow, "ok", id="good")
        assert await other.result(timeout=LIMIT) == 7
