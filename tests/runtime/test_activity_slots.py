"""Activity slots (``max_concurrent_activities``) and ``activity_info()`` under cancellation.

The runtime takes and gives back a slot by hand around each attempt, and builds the attempt's
``activity_info()`` only when asked: cancelling workflows whose activities wait for a slot or
hold one must give every slot back, and the info must stay right through the cancellation.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import flowcore
from flowcore import Runtime, WorkflowCanceledError
from tests.helpers import assert_eventually

DISPATCH = pytest.mark.parametrize("dispatch", ["eager", "durable"])
LIMIT = 10.0
"""Seconds a blocked activity waits before it gives up (the test then fails)."""


class TestSlotsUnderCancellation:
    @DISPATCH
    async def test_canceled_fan_outs_give_every_slot_back(self, db_path, dispatch):
        """One slot, three fan-outs of 20 calls (one running, the rest queued for the slot),
        canceled one by one: the slot is free again and a later fan-out runs every call."""
        gate = asyncio.Event()
        running: list[int] = []

        @flowcore.activity
        async def as_block(i: int) -> int:
            running.append(i)
            await asyncio.wait_for(gate.wait(), LIMIT)
            return i

        @flowcore.activity
        def as_step(i: int) -> int:
            info = flowcore.activity_info()
            assert info.activity == "as_step"
            assert not info.cancelled
            return i

        @flowcore.workflow
        async def as_fan_out(n: int) -> Any:
            return await flowcore.gather(*(as_block(i) for i in range(n)))

        @flowcore.workflow
        async def as_later(n: int) -> Any:
            return await flowcore.gather(*(as_step(i) for i in range(n)))

        async with Runtime(db_path, max_concurrent_activities=1, dispatch=dispatch) as rt:
            handles = [await rt.start(as_fan_out, 20) for _ in range(3)]
            await assert_eventually(lambda: len(running) == 1)
            for handle in handles:
                await rt.cancel(handle.id)
            for handle in handles:
                with pytest.raises(WorkflowCanceledError):
                    await handle.result(timeout=LIMIT)
            assert len(running) <= len(handles)  # at most each one's first call got the slot
            later = await rt.start(as_later, 20)
            assert await later.result(timeout=LIMIT) == list(range(20))
            assert rt._limiter.free == 1  # no slot leaked

    async def test_activity_info_before_and_after_cancellation(self, db_path):
        """A sync and an async activity read activity_info() before and after their workflow is
        canceled: the same description, ``cancelled`` turning true, ending their wait."""
        seen: dict[str, list[tuple[str, bool]]] = {"sync": [], "async": []}
        started = threading.Barrier(2 + 1)

        @flowcore.activity
        def ai_sync() -> None:
            info = flowcore.activity_info()
            seen["sync"].append((info.idempotency_key or "", info.cancelled))
            started.wait(timeout=LIMIT)
            flag = info._cancel  # the flag cancellation sets
            assert flag is not None
            assert flag.wait(timeout=LIMIT)
            after = flowcore.activity_info()
            seen["sync"].append((after.idempotency_key or "", after.cancelled))

        @flowcore.activity
        async def ai_async() -> None:
            info = flowcore.activity_info()
            seen["async"].append((info.idempotency_key or "", info.cancelled))
            try:  # canceled in either await, as the test may be quicker than this thread
                await asyncio.to_thread(started.wait, LIMIT)
                await asyncio.sleep(LIMIT)
            finally:
                after = flowcore.activity_info()
                seen["async"].append((after.idempotency_key or "", after.cancelled))

        @flowcore.workflow
        async def ai_both() -> Any:
            return await flowcore.gather(ai_sync(), ai_async())

        async with Runtime(db_path) as rt:
            handle = await rt.start(ai_both, id="ai")
            await asyncio.to_thread(started.wait, LIMIT)
            await rt.cancel("ai")
            with pytest.raises(WorkflowCanceledError):
                await handle.result(timeout=LIMIT)
            await assert_eventually(lambda: len(seen["sync"]) == 2 and len(seen["async"]) == 2)
        for kind, step in (("sync", 1), ("async", 2)):
            key = f"ai/1.{step}.1/1"
            assert seen[kind] == [(key, False), (key, True)], kind
