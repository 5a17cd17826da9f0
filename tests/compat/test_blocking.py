"""BlockingRuntime: the async runtime on a background thread, used from sync code and threads."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

import pytest

import flowcore
from flowcore import (
    ActivityError,
    BlockingRuntime,
    FlowcoreError,
    JournalLockedError,
    WorkflowAlreadyExistsError,
    WorkflowFailedError,
    WorkflowNotFoundError,
    WorkflowState,
    activity,
    workflow,
)

THREADS = 8
PER_THREAD = 5


@dataclass(frozen=True)
class Ticket:
    owner: str
    n: int


@activity
def blk_double(n: int) -> int:
    return 2 * n


@activity
async def blk_async_inc(n: int) -> int:
    return n + 1


@workflow
async def blk_compute(ticket: Ticket) -> Ticket:
    doubled = await blk_double(ticket.n)
    return Ticket(ticket.owner, await blk_async_inc(doubled))


@workflow
async def blk_wait(_: None = None) -> str:
    approval = await flowcore.wait_event("approve")
    return f"approved by {approval}"


@activity
def blk_fail() -> None:
    raise ValueError("no luck")


@workflow
async def blk_failing(_: None = None) -> None:
    await blk_fail()


@pytest.fixture
def runtime(db_path):
    with BlockingRuntime(db_path) as rt:
        yield rt


class TestBlockingRuntime:
    def test_start_result_status(self, runtime):
        """A sync caller starts a workflow, blocks for its typed result and reads its status."""
        wid = runtime.start(blk_compute, Ticket("ann", 20), id="t-1")
        assert wid == "t-1"
        assert runtime.result(wid, timeout=10) == Ticket("ann", 41)
        status = runtime.status(wid)
        assert status.status is WorkflowState.COMPLETED
        assert status.output == {"owner": "ann", "n": 41}
        assert [s.id for s in runtime.list(name="blk_compute")] == ["t-1"]
        assert type(runtime.history(wid)[0]).__name__ == "WorkflowStarted"

    def test_events_reach_a_waiting_workflow(self, runtime):
        """send_event returns once committed and the waiting workflow takes it."""
        wid = runtime.start("blk_wait")
        runtime.send_event(wid, "approve", "bob")
        assert runtime.result(wid, timeout=10) == "approved by bob"

    def test_errors_keep_their_flowcore_types(self, runtime):
        """Exceptions cross the thread boundary with the async API's types."""
        with pytest.raises(WorkflowNotFoundError):
            runtime.status("missing")
        wid = runtime.start(blk_failing)
        with pytest.raises(WorkflowFailedError) as caught:
            runtime.result(wid, timeout=10)
        assert caught.value.failure.is_caused_by(ValueError)
        with pytest.raises(WorkflowAlreadyExistsError):
            runtime.start(blk_failing, id=wid)
        waiting = runtime.start(blk_wait)
        with pytest.raises(TimeoutError):
            runtime.result(waiting, timeout=0.05)

    def test_a_second_owner_is_refused(self, runtime, db_path):
        """A second BlockingRuntime on the same database gets JournalLockedError."""
        with pytest.raises(JournalLockedError):
            BlockingRuntime(db_path)
        assert runtime.start(blk_compute, Ticket("x", 1))  # the first one still works

    def test_closed_runtime_refuses_calls(self, db_path):
        """After close(), calls raise FlowcoreError; close() may be repeated."""
        rt = BlockingRuntime(db_path)
        rt.close()
        rt.close()
        assert rt.closed
        with pytest.raises(FlowcoreError, match="closed"):
            rt.status("x")

    def test_unfinished_workflows_continue_after_reopen(self, db_path):
        """A workflow waiting when the runtime closed continues in the next one."""
        with BlockingRuntime(db_path) as rt:
            wid = rt.start(blk_wait, id="w-1")
        with BlockingRuntime(db_path) as rt:
            rt.send_event(wid, "approve", "carol")
            assert rt.result(wid, timeout=10) == "approved by carol"

    def test_call_from_the_loop_thread_is_refused(self, db_path):
        """An async activity calling the blocking API (its own loop) gets a clear error."""
        holder: dict[str, BlockingRuntime] = {}

        @activity
        async def blk_reenter() -> None:
            holder["rt"].status("anything")

        @workflow
        async def blk_reentrant(_: None = None) -> None:
            await blk_reenter()

        with BlockingRuntime(db_path) as rt:
            holder["rt"] = rt
            wid = rt.start(blk_reentrant)
            with pytest.raises(WorkflowFailedError) as caught:
                rt.result(wid, timeout=10)
        assert caught.value.failure.is_caused_by(ActivityError)
        assert "own event loop" in str(caught.value)

    def test_result_from_the_loop_thread_names_the_loop(self, db_path):
        """result() from an async activity says it runs on the runtime's own loop."""
        holder: dict[str, BlockingRuntime] = {}

        @activity
        async def blk_result_inside() -> None:
            holder["rt"].result("anything", timeout=1)

        @workflow
        async def blk_result_reentrant() -> None:
            await blk_result_inside()

        with BlockingRuntime(db_path) as rt:
            holder["rt"] = rt
            wid = rt.start(blk_result_reentrant)
            with pytest.raises(WorkflowFailedError) as caught:
                rt.result(wid, timeout=10)
        assert "own event loop" in str(caught.value)

    def test_result_in_async_code_is_refused_instead_of_deadlocking(self, runtime):
        """result() on a thread that runs an event loop raises; asyncio.to_thread works.

        It used to block the caller's loop: a workflow waiting for an event that the same loop
        was about to send never finished (until the timeout, or for ever without one).
        """
        wid = runtime.start("blk_wait")

        async def app() -> str:
            async def approver() -> None:
                await asyncio.sleep(0.05)
                runtime.send_event(wid, "approve", "dan")

            approving = asyncio.create_task(approver())
            with pytest.raises(FlowcoreError, match="event loop"):
                runtime.result(wid, timeout=5)
            await approving
            answer: str = await asyncio.to_thread(runtime.result, wid, timeout=10)
            return answer

        assert asyncio.run(app()) == "approved by dan"

    def test_close_from_the_loop_thread_is_refused_and_leaves_it_open(self, db_path):
        """close() from an async activity raises the same clear error; the runtime stays usable.

        It used to mark the runtime closed without closing it: the journal stayed locked, the
        workflow's result was out of reach, and a later close() did nothing.
        """
        holder: dict[str, BlockingRuntime] = {}

        @activity
        async def blk_close_self() -> str:
            try:
                holder["rt"].close()
            except FlowcoreError as exc:
                return str(exc)
            return "closed"

        @workflow
        async def blk_closer(_: None = None) -> str:
            return await blk_close_self()

        rt = holder["rt"] = BlockingRuntime(db_path)
        try:
            answer = rt.result(rt.start(blk_closer), timeout=10)
            assert "own event loop" in answer
            assert not rt.closed
        finally:
            rt.close()
        with BlockingRuntime(db_path) as again:  # the journal's lock was released
            assert again.list()[0].status is WorkflowState.COMPLETED


class TestThreads:
    def test_eight_threads_at_once(self, runtime):
        """Eight threads start, signal, await and list workflows concurrently on one runtime."""
        barrier = threading.Barrier(THREADS)
        errors: list[BaseException] = []
        results: dict[str, object] = {}
        lock = threading.Lock()

        def worker(t: int) -> None:
            try:
                barrier.wait(timeout=10)
                ids = [
                    runtime.start(blk_compute, Ticket(f"u{t}", t * 100 + i), id=f"c-{t}-{i}")
                    for i in range(PER_THREAD)
                ]
                waiter = runtime.start(blk_wait, id=f"w-{t}")
                runtime.send_event(waiter, "approve", f"t{t}")
                got = {wid: runtime.result(wid, timeout=30) for wid in [*ids, waiter]}
                assert runtime.status(waiter).status is WorkflowState.COMPLETED
                assert len(runtime.list(name="blk_compute", limit=1000)) >= PER_THREAD
                with lock:
                    results.update(got)
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors
        assert len(results) == THREADS * (PER_THREAD + 1)
        for t in range(THREADS):
            assert results[f"w-{t}"] == f"approved by t{t}"
            for i in range(PER_THREAD):
                assert results[f"c-{t}-{i}"] == Ticket(f"u{t}", 2 * (t * 100 + i) + 1)
        assert len(runtime.list(limit=1000)) == THREADS * (PER_THREAD + 1)
