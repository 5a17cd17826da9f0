"""Listeners and backends users write: what the runtime does when one misbehaves.

A plugin's fault is its own: it must not silence the other plugins, leave a workflow waiting
for ever, or fail-stop the runtime as if its journal had failed.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from flowcore import ActivityError, RetryPolicy, Runtime, activity, workflow
from flowcore.journal.base import OutboxRecord
from flowcore.journal.memory import InMemoryJournal

if TYPE_CHECKING:
    from collections.abc import Sequence

    from flowcore.abc import ActivityOutcome, ActivityTask, Append, Journal
    from flowcore.engine.events import Event

LIMIT = 10.0


@activity
async def bump(x: int) -> int:
    return x + 1


@workflow
async def one_step(x: int) -> int:
    return await bump(x)


class _Recording:
    """A listener that commits one record per append and counts its wake-ups."""

    def __init__(self, channel: str, *, fail: bool = False) -> None:
        self.channel = channel
        self.fail = fail
        self.woken = 0

    async def open(self, journal: Journal) -> None:
        """Nothing to start."""

    def recovered(self, workflow_id: str, history: Sequence[Event]) -> None:
        """Nothing to rebuild."""

    def journaling(self, op: Append) -> Sequence[OutboxRecord]:
        return [OutboxRecord(channel=self.channel, key=op.workflow_id, body="{}")]

    def committed(self) -> None:
        self.woken += 1
        if self.fail:
            msg = "sender is broken"
            raise RuntimeError(msg)

    async def close(self) -> None:
        """Nothing to stop."""


class TestListeners:
    async def test_a_failing_committed_hook_does_not_silence_the_others(self):
        """A listener raising in committed() is logged; the next listener is still woken."""
        broken, healthy = _Recording("a", fail=True), _Recording("b")
        unhandled: list[dict[str, object]] = []
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: unhandled.append(ctx))
        async with Runtime(journal=InMemoryJournal(), listeners=[broken, healthy]) as runtime:
            handle = await runtime.start(one_step, 1)
            assert await handle.result(timeout=LIMIT) == 2
        assert broken.woken > 0
        assert healthy.woken == broken.woken
        assert unhandled == []


class _Misbehaving:
    """A backend whose execute() raises ``error``, or returns it when it is not an exception."""

    def __init__(self, error: object) -> None:
        self.error = error

    async def open(self) -> None:
        """Nothing to prepare."""

    async def close(self) -> None:
        """Nothing to release."""

    async def execute(
        self,
        task: ActivityTask,  # noqa: ARG002 - the protocol's signature
        *,
        timeout: float | None,  # noqa: ARG002 - the protocol's signature
    ) -> ActivityOutcome:
        if isinstance(self.error, BaseException):
            raise self.error
        return self.error  # type: ignore[return-value]


@activity(retry=RetryPolicy(max_attempts=2, initial_interval=0.001))
def remote_step(x: int) -> int:
    return x


@workflow
async def catches(x: int) -> str:
    try:
        return str(await remote_step(x))
    except ActivityError as exc:
        return f"{exc.attempts} {exc.failure.short_type}"


class TestBackends:
    @pytest.mark.parametrize(
        ("error", "kind"),
        [
            (asyncio.CancelledError(), "CancelledError"),
            (KeyboardInterrupt(), "KeyboardInterrupt"),
            (None, "TypeError"),
            ("done", "TypeError"),
        ],
        ids=["cancelled", "interrupt", "none", "str"],
    )
    async def test_a_faulty_backend_fails_the_attempt(self, error, kind):
        """A BaseException out of execute() or a non-outcome returned is a failed attempt."""
        async with Runtime(journal=InMemoryJournal(), backend=_Misbehaving(error)) as runtime:
            handle = await runtime.start(catches, 1)
            assert await handle.result(timeout=LIMIT) == f"2 {kind}"
