"""Listeners and backends users write: what the runtime does when one misbehaves.

A plugin's fault is its own: it must not silence the other plugins, leave a workflow waiting
for ever, or fail-stop the runtime as if its journal had failed.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from flowcore import Runtime, activity, workflow
from flowcore.journal.base import OutboxRecord
from flowcore.journal.memory import InMemoryJournal

if TYPE_CHECKING:
    from collections.abc import Sequence

    from flowcore.abc import Append, Journal
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
