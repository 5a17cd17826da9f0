"""Slots: the activity bound taken without a coroutine while free, FIFO once callers wait."""

from __future__ import annotations

import asyncio

import pytest

from flowcore._slots import Slots


async def settle() -> None:
    """Let every ready callback and task run (a few loop passes, no timer)."""
    for _ in range(5):
        await asyncio.sleep(0)


class TestSlots:
    def test_take_while_free(self):
        """take() takes free slots one by one and refuses once none is left."""
        slots = Slots(2)
        assert slots.take()
        assert slots.take()
        assert not slots.take()
        assert slots.locked()
        slots.release()
        assert slots.free == 1
        assert not slots.locked()

    def test_at_least_one_slot(self):
        """A bound below one is refused."""
        with pytest.raises(ValueError, match="at least one slot"):
            Slots(0)

    async def test_waiters_get_released_slots_in_order(self):
        """Callers waiting in acquire() get released slots first come, first served."""
        slots = Slots(1)
        assert slots.take()
        got: list[int] = []

        async def wait(i: int) -> None:
            await slots.acquire()
            got.append(i)

        tasks = [asyncio.create_task(wait(i)) for i in range(3)]
        await settle()
        assert not slots.take()  # others wait: no jumping the queue
        for expected in ([0], [0, 1], [0, 1, 2]):
            slots.release()
            await settle()
            assert got == expected
        await asyncio.gather(*tasks)
        slots.release()
        assert slots.free == 1

    async def test_a_cancelled_waiter_leaves_the_queue(self):
        """A waiter cancelled before it got a slot takes none; the next one does."""
        slots = Slots(1)
        assert slots.take()
        first = asyncio.create_task(slots.acquire())
        second = asyncio.create_task(slots.acquire())
        await settle()
        first.cancel()
        await settle()
        slots.release()
        await second
        assert first.cancelled()
        slots.release()
        assert slots.free == 1
        assert not slots.locked()

    async def test_a_slot_handed_to_a_cancelled_waiter_passes_on(self):
        """A waiter cancelled after it was handed a slot, before resuming, passes it on."""
        slots = Slots(1)
        assert slots.take()
        first = asyncio.create_task(slots.acquire())
        second = asyncio.create_task(slots.acquire())
        await settle()
        slots.release()  # handed to `first`, which has not resumed yet
        first.cancel()
        await second
        assert first.cancelled()
        slots.release()
        assert slots.free == 1
