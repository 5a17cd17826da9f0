"""Cancellation (with compensation), termination, and suspend/resume on the real SQLite journal."""

from __future__ import annotations

import contextlib
import threading
import time
import types
from collections import Counter
from typing import Any

import anyio
import pytest

import flowcore
from flowcore import (
    Runtime,
    WorkflowCanceledError,
    WorkflowFinishedError,
    WorkflowNotFoundError,
    WorkflowState,
    activity,
    workflow,
)
from flowcore.backends.base import CancelFlag
from flowcore.engine.events import (
    ActivityCompleted,
    ActivityScheduled,
    CancelRequested,
    EventReceived,
    EventWaitStarted,
    TimerFired,
    TimerScheduled,
    WorkflowCanceled,
    WorkflowResumed,
    WorkflowSuspended,
    WorkflowTerminated,
)
from flowcore.testing import FakeClock
from tests.helpers import assert_eventually, events_of, until_recorded

SYNC_LIMIT = 10.0
"""Seconds a sync activity polls its cancelled flag before it gives up (the test then fails)."""


async def scheduled_names(rt: Runtime, wid: str) -> list[str]:
    """Names of the activities the instance scheduled, in step order."""
    return [e.name for e in await events_of(rt, wid, ActivityScheduled)]


class TestCancel:
    async def test_cancel_ends_the_instance_canceled(self, db_path):
        """cancel() raises at the current await; the instance ends canceled with the reason."""

        @workflow
        async def cx_idle() -> Any:
            return await flowcore.wait_event("never")

        async with Runtime(db_path) as rt:
            handle = await rt.start(cx_idle, id="c1")
            await until_recorded(rt, "c1", EventWaitStarted)
            await rt.cancel("c1", reason="customer changed their mind")
            with pytest.raises(WorkflowCanceledError, match="customer changed their mind"):
                await handle.result(timeout=10)
            st = await rt.status("c1")
            kinds = [type(e) for e in await rt.history("c1")][-2:]
        assert st.status is WorkflowState.CANCELED
        assert st.error == "canceled: customer changed their mind"
        assert kinds == [CancelRequested, WorkflowCanceled]

    async def test_cancel_disarms_the_pending_timer(self, db_path):
        """Canceling a sleeping workflow disarms its timer: it never fires."""
        clock = FakeClock()

        @workflow
        async def cx_sleeper() -> None:
            await flowcore.sleep(3600)

        async with Runtime(db_path, clock=clock) as rt:
            handle = await rt.start(cx_sleeper, id="c2")
            await until_recorded(rt, "c2", TimerScheduled)
            await rt.cancel("c2")
            with pytest.raises(WorkflowCanceledError):
                await handle.result(timeout=10)
            clock.advance(7200)
            assert await events_of(rt, "c2", TimerFired) == []
            assert (await rt.status("c2")).status is WorkflowState.CANCELED

    async def test_finally_block_runs_a_compensation_activity(self, db_path):
        """A finally block may still run an activity after cancellation, once."""
        undone: list[str] = []

        @activity
        def cx_undo(what: str) -> None:
            undone.append(what)

        @workflow
        async def cx_tidy() -> None:
            try:
                await flowcore.wait_event("never")
            finally:
                await cx_undo("booking")

        async with Runtime(db_path) as rt:
            handle = await rt.start(cx_tidy, id="c3")
            await until_recorded(rt, "c3", EventWaitStarted)
            await rt.cancel("c3")
            with pytest.raises(WorkflowCanceledError):
                await handle.result(timeout=10)
            assert await scheduled_names(rt, "c3") == ["cx_undo"]
        assert undone == ["booking"]

    async def test_handled_cancellation_still_ends_canceled(self, db_path):
        """A workflow that catches the cancellation and returns ends canceled, with its value."""

        @workflow
        async def cx_polite() -> str:
            try:
                await flowcore.wait_event("never")
            except WorkflowCanceledError:
                return "cleaned up"
            return "finished"

        async with Runtime(db_path) as rt:
            handle = await rt.start(cx_polite, id="c4")
            await until_recorded(rt, "c4", EventWaitStarted)
            await rt.cancel("c4")
            with pytest.raises(WorkflowCanceledError):
                await handle.result(timeout=10)
            st = await rt.status("c4")
        assert (st.status, st.output) == (WorkflowState.CANCELED, "cleaned up")

    async def test_running_async_activity_is_cancelled(self, db_path):
        """cancel() cancels a running async activity."""
        started = anyio.Event()
        seen: list[str] = []

        @activity
        async def cx_forever() -> None:
            started.set()
            try:
                await anyio.sleep_forever()
            except anyio.get_cancelled_exc_class():
                seen.append("cancelled")
                raise

        @workflow
        async def cx_blocked() -> None:
            await cx_forever()

        async with Runtime(db_path) as rt:
            handle = await rt.start(cx_blocked, id="c5")
            with anyio.fail_after(10):
                await started.wait()
            await rt.cancel("c5")
            with pytest.raises(WorkflowCanceledError):
                await handle.result(timeout=10)
            await assert_eventually(lambda: seen == ["cancelled"])
            assert await events_of(rt, "c5", ActivityCompleted) == []

    async def test_sync_activity_sees_the_cancelled_flag(self, db_path):
        """A running sync activity sees activity_info().cancelled turn true and can stop early."""
        started = threading.Event()
        seen: list[str] = []

        @activity
        def cx_poller() -> str:
            started.set()
            deadline = time.monotonic() + SYNC_LIMIT
            while time.monotonic() < deadline:
                if flowcore.activity_info().cancelled:
                    seen.append("cancelled")
                    return "stopped early"
                time.sleep(0.005)  # a worker thread polling its flag, bounded by the deadline
            seen.append("gave up")
            return "never told"

        @workflow
        async def cx_sync_blocked() -> str:
            return await cx_poller()

        async with Runtime(db_path) as rt:
            handle = await rt.start(cx_sync_blocked, id="c6")
            await assert_eventually(started.is_set)
            await rt.cancel("c6")
            with pytest.raises(WorkflowCanceledError):
                await handle.result(timeout=10)
            await assert_eventually(lambda: seen != [], timeout=SYNC_LIMIT + 5)
        assert seen == ["cancelled"]

    async def test_cancel_of_finished_or_unknown_instance_raises(self, db_path):
        """cancel() of a finished or unknown instance raises WorkflowFinishedError or NotFound."""

        @workflow
        async def cx_quick() -> int:
            return 1

        async with Runtime(db_path) as rt:
            await (await rt.start(cx_quick, id="c7")).result(timeout=10)
            with pytest.raises(WorkflowFinishedError, match=r"'c7'.*completed"):
                await rt.cancel("c7")
            with pytest.raises(WorkflowNotFoundError, match="nobody"):
                await rt.cancel("nobody")
            assert await events_of(rt, "c7", CancelRequested) == []

    async def test_cancel_request_survives_restart(self, db_path):
        """A cancellation whose compensation was cut by a restart finishes after the restart."""
        gate = anyio.Event()
        undone: list[str] = []

        @activity
        async def cx_slow_undo() -> None:
            await gate.wait()
            undone.append(flowcore.activity_info().idempotency_key or "")

        @workflow
        async def cx_interrupted() -> None:
            try:
                await flowcore.wait_event("never")
            except WorkflowCanceledError:
                await cx_slow_undo()
                raise

        async with Runtime(db_path) as rt:
            await rt.start(cx_interrupted, id="c8")
            await until_recorded(rt, "c8", EventWaitStarted)
            await rt.cancel("c8", reason="stop")
            await until_recorded(rt, "c8", ActivityScheduled)
        gate.set()
        async with Runtime(db_path) as rt:
            with pytest.raises(WorkflowCanceledError, match="stop"):
                await rt.handle("c8").result(timeout=10)
            assert (await rt.status("c8")).status is WorkflowState.CANCELED
            assert len(await events_of(rt, "c8", CancelRequested)) == 1
        assert undone == ["c8/2/1"]


async def until_running(calls: Counter[str], *keys: str) -> None:
    """Wait (with a deadline) until each activity named by ``keys`` has begun."""
    await assert_eventually(lambda: all(calls[k] for k in keys), message=f"{keys} never ran")


def saga_activities(calls: Counter[str], gate: anyio.Event) -> tuple[Any, ...]:
    """The saga's activities; each counts its calls in ``calls``; release(1) waits for ``gate``."""

    @activity
    def cx_reserve(i: int) -> int:
        calls[f"reserve:{i}"] += 1
        return i

    @activity
    async def cx_reserve_slowly(i: int) -> int:
        calls[f"reserve:{i}"] += 1
        await anyio.sleep_forever()
        return i

    @activity
    async def cx_hold(i: int) -> None:
        calls[f"hold:{i}"] += 1
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            calls[f"hold-cancelled:{i}"] += 1
            raise

    @activity
    async def cx_release(i: int) -> None:
        if i == 1:
            await gate.wait()
        calls[f"release:{i}"] += 1

    return cx_reserve, cx_reserve_slowly, cx_hold, cx_release


def booking_saga(calls: Counter[str], gate: anyio.Event) -> Any:
    """Per item, reserve then hold, all in parallel; on cancellation release what was reserved.

    The last item's reservation never finishes, so it is never reserved nor released.
    """
    reserve_fast, reserve_slowly, hold, release = saga_activities(calls, gate)

    @workflow
    async def cx_book(n: int) -> str:
        reserved: list[int] = []

        async def branch(i: int) -> None:
            reserve = reserve_slowly if i == n - 1 else reserve_fast
            reserved.append(await reserve(i))
            await hold(i)

        try:
            await flowcore.gather(*(branch(i) for i in range(n)))
        except WorkflowCanceledError:
            for i in sorted(reserved):
                await release(i)
            raise
        return "booked"

    return cx_book


class TestCompensation:
    async def test_cancel_during_fan_out_compensates_exactly_once(self, db_path):
        """Canceling a fan-out releases each reserved item exactly once, cancels work in flight."""
        calls: Counter[str] = Counter()
        gate = anyio.Event()
        gate.set()
        book = booking_saga(calls, gate)

        async with Runtime(db_path) as rt:
            handle = await rt.start(book, 4, id="saga")
            await until_running(calls, "hold:0", "hold:1", "hold:2", "reserve:3")
            await rt.cancel("saga", reason="payment declined")
            with pytest.raises(WorkflowCanceledError, match="payment declined"):
                await handle.result(timeout=10)
            names = await scheduled_names(rt, "saga")
            assert (await rt.status("saga")).status is WorkflowState.CANCELED
        async with Runtime(db_path):  # a restart re-runs nothing of a finished saga
            pass
        assert names.count("cx_release") == 3
        assert calls == Counter(
            {
                **{f"reserve:{i}": 1 for i in range(4)},
                **{f"hold:{i}": 1 for i in range(3)},
                **{f"hold-cancelled:{i}": 1 for i in range(3)},
                **{f"release:{i}": 1 for i in range(3)},
            }
        )

    async def test_second_cancel_does_not_repeat_compensation(self, db_path):
        """A second cancel() during compensation changes nothing: each release still runs once."""
        calls: Counter[str] = Counter()
        gate = anyio.Event()
        book = booking_saga(calls, gate)

        async with Runtime(db_path) as rt:
            handle = await rt.start(book, 3, id="saga2")
            await until_running(calls, "hold:0", "hold:1", "reserve:2")
            await rt.cancel("saga2", reason="first")
            await until_recorded(rt, "saga2", ActivityScheduled, count=7)  # release(0), release(1)
            await rt.cancel("saga2", reason="second")
            gate.set()
            with pytest.raises(WorkflowCanceledError, match="first"):
                await handle.result(timeout=10)
            assert (await scheduled_names(rt, "saga2")).count("cx_release") == 2
        assert (calls["release:0"], calls["release:1"], calls["release:2"]) == (1, 1, 0)

    async def test_restart_during_compensation_does_not_repeat_finished_releases(self, db_path):
        """A restart in the middle of compensation re-runs only the release that was in flight."""
        calls: Counter[str] = Counter()
        gate = anyio.Event()
        book = booking_saga(calls, gate)

        async with Runtime(db_path) as rt:
            await rt.start(book, 4, id="saga3")
            await until_running(calls, "hold:0", "hold:1", "hold:2", "reserve:3")
            await rt.cancel("saga3")
            await until_recorded(rt, "saga3", ActivityScheduled, count=9)  # release(1) in flight
            assert calls["release:0"] == 1
        gate.set()
        async with Runtime(db_path) as rt:
            with pytest.raises(WorkflowCanceledError):
                await rt.handle("saga3").result(timeout=10)
            assert (await scheduled_names(rt, "saga3")).count("cx_release") == 3
        assert (calls["release:0"], calls["release:1"], calls["release:2"]) == (1, 1, 1)
        assert calls["release:3"] == 0
        # the work cut by the cancellation is not resurrected by the restart
        assert [calls[f"hold:{i}"] for i in range(3)] == [1, 1, 1]
        assert calls["reserve:3"] == 1


class TestTerminate:
    async def test_terminate_skips_cleanup(self, db_path):
        """terminate() ends the instance at once: its finally block and activities do not run."""
        undone: list[str] = []

        @activity
        def cx_never_undo() -> None:
            undone.append("ran")

        @workflow
        async def cx_doomed() -> None:
            try:
                await flowcore.wait_event("never")
            finally:
                await cx_never_undo()

        async with Runtime(db_path) as rt:
            handle = await rt.start(cx_doomed, id="t1")
            await until_recorded(rt, "t1", EventWaitStarted)
            await rt.terminate("t1", reason="operator")
            with pytest.raises(WorkflowCanceledError, match="terminated: operator"):
                await handle.result(timeout=10)
            st = await rt.status("t1")
            history = await rt.history("t1")
        assert (st.status, st.error) == (WorkflowState.TERMINATED, "terminated: operator")
        assert isinstance(history[-1], WorkflowTerminated)
        assert not any(isinstance(e, ActivityScheduled) for e in history)
        assert undone == []

    async def test_terminate_cancels_the_running_activity(self, db_path):
        """terminate() cancels a running async activity; its result is never recorded."""
        started = anyio.Event()
        seen: list[str] = []

        @activity
        async def cx_endless() -> None:
            started.set()
            try:
                await anyio.sleep_forever()
            except anyio.get_cancelled_exc_class():
                seen.append("cancelled")
                raise

        @workflow
        async def cx_busy() -> None:
            await cx_endless()

        async with Runtime(db_path) as rt:
            await rt.start(cx_busy, id="t2")
            with anyio.fail_after(10):
                await started.wait()
            await rt.terminate("t2")
            await assert_eventually(lambda: seen == ["cancelled"])
            assert (await rt.status("t2")).status is WorkflowState.TERMINATED

    async def test_terminated_instance_stays_ended(self, db_path):
        """A terminated instance takes no more requests and is not recovered by a new runtime."""

        @workflow
        async def cx_stopped() -> Any:
            return await flowcore.wait_event("never")

        async with Runtime(db_path) as rt:
            await rt.start(cx_stopped, id="t3")
            await rt.terminate("t3")
            with pytest.raises(WorkflowFinishedError, match="terminated"):
                await rt.terminate("t3")
        async with Runtime(db_path) as rt:
            assert (await rt.status("t3")).status is WorkflowState.TERMINATED
            with pytest.raises(WorkflowFinishedError):
                await rt.send_event("t3", "never", 1)


class TestSuspendResume:
    async def test_suspended_instance_makes_no_progress(self, db_path):
        """While suspended, a delivered event is journaled but the workflow does not move on."""

        @activity
        def cx_after(x: str) -> str:
            return x.upper()

        @workflow
        async def cx_pausable() -> str:
            value = await flowcore.wait_event("go")
            return await cx_after(value)

        async with Runtime(db_path) as rt:
            handle = await rt.start(cx_pausable, id="s1")
            await until_recorded(rt, "s1", EventWaitStarted)
            await rt.suspend("s1")
            assert (await rt.status("s1")).status is WorkflowState.SUSPENDED
            await rt.send_event("s1", "go", "later")
            assert len(await events_of(rt, "s1", EventReceived)) == 1
            assert await events_of(rt, "s1", ActivityScheduled) == []
            assert (await rt.status("s1")).status is WorkflowState.SUSPENDED
            await rt.resume("s1")
            assert await handle.result(timeout=10) == "LATER"

    async def test_timer_due_while_suspended_waits_for_resume(self, db_path):
        """A timer due while suspended is journaled; the workflow continues only on resume."""
        clock = FakeClock()

        @activity
        def cx_wake() -> str:
            return "awake"

        @workflow
        async def cx_napper() -> str:
            await flowcore.sleep(60)
            return await cx_wake()

        async with Runtime(db_path, clock=clock) as rt:
            handle = await rt.start(cx_napper, id="s2")
            await until_recorded(rt, "s2", TimerScheduled)
            await rt.suspend("s2")
            clock.advance(120)
            await until_recorded(rt, "s2", TimerFired)
            with pytest.raises(TimeoutError):
                await handle.result(timeout=0.05)
            assert await events_of(rt, "s2", ActivityScheduled) == []
            await rt.resume("s2")
            assert await handle.result(timeout=10) == "awake"
            kinds = [type(e) for e in await rt.history("s2")]
        assert (
            kinds.index(WorkflowSuspended) < kinds.index(TimerFired) < kinds.index(WorkflowResumed)
        )

    async def test_events_queued_while_suspended_arrive_in_order(self, db_path):
        """Events sent while suspended are applied in order on resume."""

        @workflow
        async def cx_collector() -> list[int]:
            return [await flowcore.wait_event("n") for _ in range(3)]

        async with Runtime(db_path) as rt:
            handle = await rt.start(cx_collector, id="s3")
            await until_recorded(rt, "s3", EventWaitStarted)
            await rt.suspend("s3")
            for n in (1, 2, 3):
                await rt.send_event("s3", "n", n)
            await rt.resume("s3")
            assert await handle.result(timeout=10) == [1, 2, 3]
            assert (await rt.status("s3")).status is WorkflowState.COMPLETED

    async def test_suspension_survives_restart(self, db_path):
        """A suspended instance stays suspended across a restart, then resumes with its event."""

        @workflow
        async def cx_frozen() -> str:
            return await flowcore.wait_event("go")

        async with Runtime(db_path) as rt:
            await rt.start(cx_frozen, id="s4")
            await until_recorded(rt, "s4", EventWaitStarted)
            await rt.suspend("s4")
            await rt.send_event("s4", "go", "queued")
        async with Runtime(db_path) as rt:
            handle = rt.handle("s4")
            assert (await rt.status("s4")).status is WorkflowState.SUSPENDED
            with pytest.raises(TimeoutError):
                await handle.result(timeout=0.05)
            await rt.resume("s4")
            assert await handle.result(timeout=10) == "queued"

    async def test_suspend_of_finished_instance_raises(self, db_path):
        """suspend() and resume() of a finished instance raise WorkflowFinishedError."""

        @workflow
        async def cx_over() -> int:
            return 1

        async with Runtime(db_path) as rt:
            await (await rt.start(cx_over, id="s5")).result(timeout=10)
            with pytest.raises(WorkflowFinishedError):
                await rt.suspend("s5")
            with pytest.raises(WorkflowFinishedError):
                await rt.resume("s5")


class TestCancelFlag:
    """The flag a backend hands each attempt: an Event's answers, its lock made only on wait."""

    def test_set_wakes_a_thread_waiting_on_it(self):
        flag = CancelFlag()
        woke: list[bool] = []
        waiter = threading.Thread(target=lambda: woke.append(flag.wait(timeout=SYNC_LIMIT)))
        waiter.start()
        deadline = time.monotonic() + SYNC_LIMIT
        while flag._event is None and time.monotonic() < deadline:  # the waiter made its lock
            time.sleep(0.001)
        flag.set()
        waiter.join(timeout=SYNC_LIMIT)
        assert woke == [True]
        assert flag.is_set()

    def test_wait_on_a_set_flag_returns_at_once_and_unset_times_out(self):
        unset = CancelFlag()
        assert unset.wait(timeout=0.01) is False
        assert not unset.is_set()
        done = CancelFlag()
        done.set()
        assert done.wait() is True
        assert done._event is None  # nobody had to wait: no lock was ever made
        assert repr(done) == "<CancelFlag set>"

    def test_set_wakes_two_threads_that_began_waiting_together(self, monkeypatch):
        """Two first waiters racing to make the lock both wake on set(), none waits in vain."""
        import flowcore.backends.base as base_module

        made = threading.Barrier(2)
        waiting = threading.Semaphore(0)

        class Event(threading.Event):
            def __init__(self) -> None:
                super().__init__()
                with contextlib.suppress(threading.BrokenBarrierError):
                    made.wait(timeout=0.5)  # both waiters inside wait(), each making a lock

            def wait(self, timeout: float | None = None) -> bool:
                waiting.release()
                return super().wait(timeout)

        monkeypatch.setattr(base_module, "threading", types.SimpleNamespace(Event=Event))
        flag = CancelFlag()
        woke: list[bool] = []
        waiters = [
            threading.Thread(target=lambda: woke.append(flag.wait(timeout=SYNC_LIMIT)))
            for _ in range(2)
        ]
        for waiter in waiters:
            waiter.start()
        assert waiting.acquire(timeout=SYNC_LIMIT)
        assert waiting.acquire(timeout=SYNC_LIMIT)  # both block in Event.wait now
        began = time.monotonic()
        flag.set()
        for waiter in waiters:
            waiter.join(timeout=SYNC_LIMIT + 1)
        assert woke == [True, True]
        assert time.monotonic() - began < SYNC_LIMIT / 2
