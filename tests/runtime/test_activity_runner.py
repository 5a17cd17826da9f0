"""The task that runs a local async activity's attempt in its own frame (the hot path).

A local async activity without a timeout runs in its task's frame: the slot, ``activity_info()``,
the outcome, its judgement and its delivery, with no coroutine per layer. These tests pin what
that frame must keep: a real task around the activity (asyncio and anyio need one), suspension,
errors with their tracebacks, retries on the clock, cancellation, context isolation, and a long
sequential chain that never grows the stack.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import traceback
from typing import Any

import anyio
import pytest

import flowcore
from flowcore import (
    ActivityError,
    RetryPolicy,
    Runtime,
    WorkflowCanceledError,
    WorkflowFailedError,
    activity,
    workflow,
)
from flowcore.engine.events import ActivityAttemptFailed, ActivityCompleted, ActivityFailed
from flowcore.journal.memory import InMemoryJournal
from flowcore.testing import VirtualClock
from tests.helpers import assert_eventually

DISPATCH = pytest.mark.parametrize("dispatch", ["eager", "durable"])
LIMIT = 10.0
"""Seconds a test waits at most for something that should happen at once."""


class TestSuspension:
    @DISPATCH
    async def test_activity_suspending_half_way_finishes_with_its_info(self, dispatch):
        """An activity that yields twice (a bare yield, then a future) ends with its result and
        sees the same activity_info() before and after."""
        gate = asyncio.Event()
        keys: list[str | None] = []

        @activity
        async def ar_half(x: int) -> int:
            keys.append(flowcore.activity_info().idempotency_key)
            await asyncio.sleep(0)
            await asyncio.wait_for(gate.wait(), LIMIT)
            keys.append(flowcore.activity_info().idempotency_key)
            return x * 2

        @workflow
        async def ar_half_flow(x: int) -> int:
            return await ar_half(x) + 1

        async with Runtime(journal=InMemoryJournal(), dispatch=dispatch) as rt:
            handle = await rt.start(ar_half_flow, 20, id="half")
            await assert_eventually(lambda: len(keys) == 1)
            gate.set()
            assert await handle.result(timeout=LIMIT) == 41
        assert keys == ["half/1/1", "half/1/1"]

    async def test_task_scoped_asyncio_and_anyio_work_from_the_first_line(self):
        """asyncio.timeout, TaskGroup and anyio's cancel scopes need a current task: the
        activity has its own from its first line (none of them works in a plain callback)."""

        @activity
        async def ar_scoped() -> list[str]:
            seen = [type(asyncio.current_task()).__name__]
            async with asyncio.timeout(LIMIT):  # entered before any suspension
                seen.append("timeout")
                await asyncio.sleep(0)
            with anyio.fail_after(LIMIT):
                seen.append("anyio")
                await asyncio.sleep(0)
            async with asyncio.TaskGroup() as group:
                child = group.create_task(asyncio.sleep(0, "group"))
            seen.append(child.result())
            return seen

        @workflow
        async def ar_scoped_flow() -> Any:
            return await ar_scoped()

        async with Runtime(journal=InMemoryJournal()) as rt:
            result = await (await rt.start(ar_scoped_flow)).result(timeout=LIMIT)
        assert result == ["Task", "timeout", "anyio", "group"]

    async def test_activity_body_runs_outside_the_runtime_s_stack(self):
        """Under eager dispatch the first step is dispatched inside start(): the body still
        runs from its own loop callback, never inside a flowcore call (start, delivery)."""
        stacks: list[set[str]] = []

        @activity
        async def ar_where(x: int) -> int:
            stacks.append({frame.name for frame in traceback.extract_stack()})
            return x

        @workflow
        async def ar_where_flow(x: int) -> int:
            return await ar_where(await ar_where(x))

        async with Runtime(journal=InMemoryJournal(), dispatch="eager") as rt:
            assert await (await rt.start(ar_where_flow, 5)).result(timeout=LIMIT) == 5
        assert len(stacks) == 2
        for names in stacks:
            assert "_run_activity" in names
            assert not names & {"start", "_start", "_carry_out", "_dispatch", "_deliver_outcomes"}


class TestErrors:
    @pytest.mark.parametrize("where", ["before", "after"])
    async def test_error_before_or_after_suspending_is_retried_on_the_clock(self, where):
        """An error raised before or after the first suspension fails the attempt with its
        traceback; retries wait their journaled delay on the (virtual) clock."""
        attempts: list[int] = []

        @activity(
            retry=RetryPolicy(max_attempts=3, initial_interval=60.0, backoff=2.0, max_interval=600)
        )
        async def ar_broken(where: str) -> None:
            attempts.append(flowcore.activity_info().attempt)
            if where == "after":
                await asyncio.sleep(0)
            raise LookupError(f"broken {where}")

        @workflow
        async def ar_broken_flow(where: str) -> int:
            try:
                await ar_broken(where)
            except ActivityError as exc:
                return exc.attempts
            return 0

        async with Runtime(journal=InMemoryJournal(), clock=VirtualClock()) as rt:
            handle = await rt.start(ar_broken_flow, where, id=f"broken-{where}")
            assert await handle.result(timeout=LIMIT) == 3
            events = await rt.history(handle.id)
        assert attempts == [1, 2, 3]
        retried = [e for e in events if isinstance(e, ActivityAttemptFailed)]
        assert [e.attempt for e in retried] == [1, 2]
        assert [e.retry_at - e.at for e in retried] == [60.0, 120.0]
        [failed] = [e for e in events if isinstance(e, ActivityFailed)]
        assert failed.attempts == 3
        assert failed.failure.short_type == "LookupError"
        assert f"broken {where}" in failed.failure.traceback
        assert "ar_broken" in failed.failure.traceback  # the activity's own frame is recorded

    async def test_async_activity_gets_fresh_arguments_on_each_attempt(self):
        """A retried async activity that mutates its argument sees the original again."""
        seen: list[list[str]] = []

        @activity(retry=RetryPolicy(max_attempts=2, initial_interval=1.0))
        async def ar_scribble(items: list[str]) -> int:
            seen.append(list(items))
            items.append("mutated")
            if len(seen) == 1:
                raise RuntimeError("first attempt fails after mutating")
            return len(items)

        @workflow
        async def ar_scribble_flow() -> list[object]:
            items = ["a"]
            return [await ar_scribble(items), items]

        async with Runtime(journal=InMemoryJournal(), clock=VirtualClock()) as rt:
            result = await (await rt.start(ar_scribble_flow)).result(timeout=LIMIT)
        assert result == [2, ["a"]]
        assert seen == [["a"], ["a"]]

    async def test_result_over_the_payload_limit_fails_without_retry(self):
        """A result the journal refuses fails the activity at once (a retry gives the same)."""
        calls: list[int] = []

        @activity(retry=RetryPolicy(max_attempts=5, initial_interval=0.001))
        async def ar_huge() -> str:
            calls.append(1)
            return "x" * 5000

        @workflow
        async def ar_huge_flow() -> None:
            await ar_huge()

        async with Runtime(journal=InMemoryJournal(), max_payload_bytes=1024) as rt:
            handle = await rt.start(ar_huge_flow)
            with pytest.raises(WorkflowFailedError, match="ar_huge"):
                await handle.result(timeout=LIMIT)
        assert calls == [1]


class TestCancellation:
    async def test_cancel_while_suspended_cancels_the_activity_and_frees_its_slot(self):
        """Canceling the workflow throws CancelledError into the waiting activity; its slot is
        given back and its task leaves the runtime's set."""
        ended: list[str] = []
        running = asyncio.Event()

        @activity
        async def ar_waits() -> None:
            running.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                ended.append("cancelled")
                raise

        @workflow
        async def ar_waits_flow() -> None:
            await ar_waits()

        async with Runtime(journal=InMemoryJournal(), max_concurrent_activities=1) as rt:
            handle = await rt.start(ar_waits_flow, id="waits")
            await asyncio.wait_for(running.wait(), LIMIT)
            assert rt._limiter.locked()
            await rt.cancel("waits")
            with pytest.raises(WorkflowCanceledError):
                await handle.result(timeout=LIMIT)
            await assert_eventually(lambda: ended == ["cancelled"])
            await assert_eventually(lambda: not rt._jobs)
            assert not rt._limiter.locked()

    async def test_first_cancels_the_slower_activity(self):
        """first() keeps the quicker call; the slower one, suspended, is cancelled."""
        ended: list[str] = []

        @activity
        async def ar_slow() -> str:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                ended.append("slow cancelled")
                raise
            return "slow"

        @activity
        async def ar_quick() -> str:
            await asyncio.sleep(0)
            return "quick"

        @workflow
        async def ar_race() -> Any:
            won = await flowcore.first(ar_slow(), ar_quick())
            return [won.index, won.value]

        async with Runtime(journal=InMemoryJournal()) as rt:
            assert await (await rt.start(ar_race)).result(timeout=LIMIT) == [1, "quick"]
            await assert_eventually(lambda: ended == ["slow cancelled"])
            await assert_eventually(lambda: not rt._jobs)

    async def test_close_cancels_a_suspended_activity(self):
        """Closing the runtime cancels a waiting activity and waits for its task to end."""
        ended: list[str] = []
        running = asyncio.Event()

        @activity
        async def ar_hangs() -> None:
            running.set()
            try:
                await asyncio.sleep(3600)
            finally:
                ended.append("ended")

        @workflow
        async def ar_hangs_flow() -> None:
            await ar_hangs()

        rt = Runtime(journal=InMemoryJournal())
        async with rt:
            await rt.start(ar_hangs_flow)
            await asyncio.wait_for(running.wait(), LIMIT)
        assert ended == ["ended"]
        assert not rt._jobs


ar_tag: contextvars.ContextVar[str] = contextvars.ContextVar("ar_tag", default="unset")


class TestContext:
    async def test_concurrent_activities_keep_their_own_context(self):
        """Two activities of a gather set one context variable, then wait for each other: each
        reads back its own value and its own activity_info()."""
        both = asyncio.Barrier(2)

        @activity
        async def ar_tagged(tag: str) -> list[Any]:
            ar_tag.set(tag)
            await asyncio.wait_for(both.wait(), LIMIT)
            info = flowcore.activity_info()
            return [ar_tag.get(), info.op]

        @workflow
        async def ar_tagged_flow() -> Any:
            return await flowcore.gather(ar_tagged("one"), ar_tagged("two"))

        async with Runtime(journal=InMemoryJournal()) as rt:
            result = await (await rt.start(ar_tagged_flow)).result(timeout=LIMIT)
        assert result == [["one", "1.1.1"], ["two", "1.2.1"]]

    @DISPATCH
    async def test_workflow_code_after_an_activity_sees_no_activity(self, dispatch):
        """The activity's description is gone once it returned: the workflow step its outcome
        runs (in the activity's task) describes the workflow, and activity_info() refuses."""

        @activity
        async def ar_plain(x: int) -> int:
            return x

        @workflow
        async def ar_after_flow() -> Any:
            await ar_plain(1)
            info = flowcore.info()
            return [info.activity, info.workflow_name]

        async with Runtime(journal=InMemoryJournal(), dispatch=dispatch) as rt:
            result = await (await rt.start(ar_after_flow)).result(timeout=LIMIT)
        assert result == [None, "ar_after_flow"]
        with pytest.raises(flowcore.WorkflowMisuseError):
            flowcore.activity_info()


class TestLongChain:
    @DISPATCH
    async def test_a_long_chain_does_not_grow_the_stack(self, dispatch):
        """A chain three times longer than the recursion limit ends: each step is started from
        a loop callback of its own, never by a nested call (that would raise RecursionError)."""
        steps = 3 * sys.getrecursionlimit()

        @activity
        async def ar_inc(x: int) -> int:
            return x + 1

        @workflow
        async def ar_chain(n: int) -> int:
            total = 0
            for _ in range(n):
                total = await ar_inc(total)
            return total

        async with Runtime(journal=InMemoryJournal(), dispatch=dispatch) as rt:
            handle = await rt.start(ar_chain, steps, id="chain")
            assert await handle.result(timeout=60) == steps
            events = await rt.history("chain")
        assert sum(isinstance(e, ActivityCompleted) for e in events) == steps
