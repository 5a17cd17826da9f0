"""Durable timers, external events and races (first/gather) on the real SQLite journal.

Timers run on a FakeClock (the test moves time) or a VirtualClock (time skips to the next
deadline while the test awaits a result), so nothing here really sleeps: a 24-hour approval
timeout takes milliseconds.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import pytest

import flowcore
from flowcore import (
    ActivityError,
    InvalidArgumentError,
    PayloadError,
    Runtime,
    WorkflowFinishedError,
    WorkflowNotFoundError,
    activity,
    workflow,
)
from flowcore.engine.events import (
    ActivityCompleted,
    ActivityScheduled,
    EventReceived,
    EventWaitStarted,
    TimerFired,
    TimerScheduled,
)
from flowcore.testing import FakeClock, VirtualClock
from tests.helpers import events_of, until_recorded

DAY = 86_400.0


@dataclass(frozen=True)
class Approval:
    by: str
    amount: int


def journal_kinds(db_path, wid: str) -> list[str]:
    """Event kinds of ``wid`` read straight from the database file, read-only."""
    con = sqlite3.connect(f"{db_path.as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        rows = con.execute(
            "SELECT kind FROM events WHERE workflow_id = ? ORDER BY seq", (wid,)
        ).fetchall()
    finally:
        con.close()
    return [kind for (kind,) in rows]


class TestSleep:
    async def test_sleep_journals_an_absolute_deadline(self, db_path):
        """sleep() journals fire_at as start time + duration and the timer fires exactly then."""
        clock = VirtualClock()
        t0 = clock.now()

        @workflow
        async def te_nap() -> float:
            await flowcore.sleep(3600)
            return flowcore.now().timestamp()

        async with Runtime(db_path, clock=clock) as rt:
            woke = await (await rt.start(te_nap, id="nap")).result(timeout=10)
            [scheduled] = await events_of(rt, "nap", TimerScheduled)
            [fired] = await events_of(rt, "nap", TimerFired)
        assert scheduled.fire_at == t0 + 3600
        assert fired.step == scheduled.step
        assert fired.at == woke == t0 + 3600

    async def test_long_timedelta_sleep_takes_no_real_time(self, db_path):
        """A two-day sleep given as a timedelta completes in virtual time within milliseconds."""
        clock = VirtualClock()

        @workflow
        async def te_weekend() -> float:
            began = flowcore.now()
            await flowcore.sleep(timedelta(days=2))
            return (flowcore.now() - began).total_seconds()

        async with Runtime(db_path, clock=clock) as rt:
            began = time.monotonic()
            assert await (await rt.start(te_weekend)).result(timeout=10) == 2 * DAY
            assert time.monotonic() - began < 2.0

    async def test_sleep_until_aware_and_naive_datetimes(self, db_path):
        """sleep_until wakes at an aware datetime's instant (any zone), a naive one read as UTC."""
        clock = VirtualClock()

        @workflow
        async def te_until() -> list[float]:
            start = flowcore.now()
            plus5 = timezone(timedelta(hours=5))
            await flowcore.sleep_until((start + timedelta(hours=1)).astimezone(plus5))
            first = (flowcore.now() - start).total_seconds()
            await flowcore.sleep_until((start + timedelta(hours=2)).replace(tzinfo=None))
            return [first, (flowcore.now() - start).total_seconds()]

        async with Runtime(db_path, clock=clock) as rt:
            assert await (await rt.start(te_until)).result(timeout=10) == [3600.0, 7200.0]

    async def test_timer_does_not_fire_before_its_deadline(self, db_path):
        """With a manual clock the timer fires only once time reaches its deadline."""
        clock = FakeClock()

        @workflow
        async def te_minute() -> str:
            await flowcore.sleep(60)
            return "rang"

        async with Runtime(db_path, clock=clock) as rt:
            handle = await rt.start(te_minute, id="m")
            await until_recorded(rt, "m", TimerScheduled)
            clock.advance(59.5)
            with pytest.raises(TimeoutError):
                await handle.result(timeout=0.05)
            assert await events_of(rt, "m", TimerFired) == []
            clock.advance(0.5)
            assert await handle.result(timeout=10) == "rang"

    @pytest.mark.parametrize("duration", ["nan", "inf", "1e12", "timedelta.max"])
    async def test_a_deadline_no_clock_can_reach_is_refused(self, db_path, duration):
        """sleep()/wait_event() with a NaN, infinite or out-of-range duration raise at the
        call: nothing is journaled that would hang the instance (NaN never fires under a
        VirtualClock), fire it at once (NaN under the system clock) or break `history`."""

        @workflow
        async def te_never(given: str) -> list[str]:
            seconds = timedelta.max if given == "timedelta.max" else float(given)
            refused = []
            for wait in (flowcore.sleep(seconds), flowcore.wait_event("x", timeout=seconds)):
                try:
                    await wait
                except InvalidArgumentError as exc:
                    refused.append(str(exc).split(" must ")[0])
            return refused

        async with Runtime(db_path, clock=VirtualClock()) as rt:
            handle = await rt.start(te_never, duration, id="never")
            assert await handle.result(timeout=10) == ["sleep()", "timeout"]
            assert await events_of(rt, "never", TimerScheduled) == []
            assert await events_of(rt, "never", EventWaitStarted) == []
        assert journal_kinds(db_path, "never")[-1] == "workflow_completed"

    @pytest.mark.parametrize("offset", [-5, 0, 5])
    async def test_sleep_until_a_datetime_no_clock_can_reach_is_refused(self, db_path, offset):
        """sleep_until() of an instant beyond the year 9999 (or before the year 1) in UTC
        raises at the call, as sleep() does: journaled, it broke `history` ("year 10000 is out
        of range") and hung the instance."""
        zone = timezone(timedelta(hours=offset))
        instant = (datetime.min if offset > 0 else datetime.max).replace(tzinfo=zone)  # noqa: DTZ901

        @workflow
        async def te_until_never() -> str:
            try:
                await flowcore.sleep_until(instant)
            except InvalidArgumentError as exc:
                return str(exc).split(" must ")[0]
            return "slept"

        async with Runtime(db_path, clock=VirtualClock()) as rt:
            handle = await rt.start(te_until_never, id="until-never")
            assert await handle.result(timeout=10) == "sleep_until()"
            assert await events_of(rt, "until-never", TimerScheduled) == []


class TestTimersAcrossRestarts:
    async def test_downtime_counts_against_the_deadline(self, db_path):
        """After a restart a timer keeps its journaled deadline instead of starting over."""

        @workflow
        async def te_hour() -> None:
            await flowcore.sleep(3600)

        clock = FakeClock()
        async with Runtime(db_path, clock=clock) as rt:
            await rt.start(te_hour, id="d")
            await until_recorded(rt, "d", TimerScheduled)
            [scheduled] = await events_of(rt, "d", TimerScheduled)

        later = FakeClock(start=clock.now() + 1800)  # half an hour of downtime
        async with Runtime(db_path, clock=later) as rt:
            handle = rt.handle("d")
            with pytest.raises(TimeoutError):
                await handle.result(timeout=0.05)
            later.advance(1800)
            await handle.result(timeout=10)
            [fired] = await events_of(rt, "d", TimerFired)
        assert fired.at == scheduled.fire_at == clock.now() + 3600

    async def test_overdue_timer_fires_once_on_recovery(self, db_path):
        """A timer whose deadline passed while no runtime ran fires once, as soon as one reopens."""

        @workflow
        async def te_overdue() -> float:
            await flowcore.sleep(60)
            return flowcore.now().timestamp()

        clock = FakeClock()
        async with Runtime(db_path, clock=clock) as rt:
            await rt.start(te_overdue, id="o")
            await until_recorded(rt, "o", TimerScheduled)

        reopened_at = clock.now() + DAY
        async with Runtime(db_path, clock=FakeClock(start=reopened_at)) as rt:
            woke = await rt.handle("o").result(timeout=10)
            scheduled = await events_of(rt, "o", TimerScheduled)
            fired = await events_of(rt, "o", TimerFired)
        assert len(scheduled) == 1
        assert len(fired) == 1
        assert fired[0].at == woke == reopened_at >= scheduled[0].fire_at
        assert journal_kinds(db_path, "o").count("timer_fired") == 1


class TestWaitEvent:
    async def test_event_payload_is_returned(self, db_path):
        """wait_event returns the payload of the event sent to the waiting workflow."""

        @workflow
        async def te_go() -> Any:
            return await flowcore.wait_event("go")

        async with Runtime(db_path) as rt:
            handle = await rt.start(te_go, id="e1")
            await until_recorded(rt, "e1", EventWaitStarted)
            await rt.send_event("e1", "go", {"n": 1, "tags": ["a"]})
            assert await handle.result(timeout=10) == {"n": 1, "tags": ["a"]}

    async def test_typed_payload_is_decoded(self, db_path):
        """wait_event(type=...) decodes the payload into that type."""

        @workflow
        async def te_typed() -> str:
            approval = await flowcore.wait_event("approval", type=Approval)
            assert isinstance(approval, Approval)
            return f"{approval.by}:{approval.amount * 2}"

        async with Runtime(db_path) as rt:
            handle = await rt.start(te_typed, id="e2")
            await until_recorded(rt, "e2", EventWaitStarted)
            await rt.send_event("e2", "approval", Approval(by="maria", amount=21))
            assert await handle.result(timeout=10) == "maria:42"

    async def test_misfit_payload_for_a_pending_wait_is_refused(self, db_path):
        """An event the pending typed wait cannot decode is refused to its sender, not journaled;
        the workflow keeps waiting and takes the next event that fits."""

        @workflow
        async def te_typed_refuses() -> str:
            approval = await flowcore.wait_event("approval", type=Approval)
            return approval.by

        async with Runtime(db_path) as rt:
            handle = await rt.start(te_typed_refuses, id="e2b")
            await until_recorded(rt, "e2b", EventWaitStarted)
            with pytest.raises(PayloadError) as info:
                await rt.send_event("e2b", "approval", {"by": "maria"})  # no amount
            assert "cannot decode value at $.amount" in str(info.value)
            assert "waits for event 'approval' of this type" in str(info.value)
            assert journal_kinds(db_path, "e2b").count("event_received") == 0
            await rt.send_event("e2b", "other", "not checked: nobody waits for it")
            await rt.send_event("e2b", "approval", Approval(by="maria", amount=21))
            assert await handle.result(timeout=10) == "maria"

    async def test_misfit_payload_sent_before_the_wait_raises_at_the_wait(self, db_path):
        """An event sent before its wait is kept; a misfit then raises PayloadError there."""

        @workflow
        async def te_typed_late() -> str:
            await flowcore.wait_event("start")
            try:
                await flowcore.wait_event("approval", type=Approval)
            except PayloadError as exc:
                return f"refused: {exc.path}"
            return "taken"

        async with Runtime(db_path) as rt:
            handle = await rt.start(te_typed_late, id="e2c")
            await rt.send_event("e2c", "approval", {"by": "maria"})
            await rt.send_event("e2c", "start")
            assert await handle.result(timeout=10) == "refused: $.amount"

    async def test_timeout_returns_none(self, db_path):
        """A wait whose 24-hour timeout passes returns None at the deadline, in virtual time."""
        clock = VirtualClock()
        t0 = clock.now()

        @workflow
        async def te_ignored() -> Any:
            return await flowcore.wait_event("answer", timeout=timedelta(hours=24))

        async with Runtime(db_path, clock=clock) as rt:
            began = time.monotonic()
            assert await (await rt.start(te_ignored, id="e3")).result(timeout=10) is None
            assert time.monotonic() - began < 2.0
            [wait] = await events_of(rt, "e3", EventWaitStarted)
            [fired] = await events_of(rt, "e3", TimerFired)
        assert wait.deadline == t0 + DAY
        assert (fired.step, fired.at) == (wait.step, t0 + DAY)

    async def test_send_event_returns_once_committed(self, db_path):
        """When send_event returns, the event is already in the database file."""

        @workflow
        async def te_listener() -> Any:
            return await flowcore.wait_event("never")

        async with Runtime(db_path) as rt:
            await rt.start(te_listener, id="e4")
            await rt.send_event("e4", "note", 7)
            assert journal_kinds(db_path, "e4").count("event_received") == 1
            await rt.terminate("e4")

    async def test_early_events_are_kept_in_order(self, db_path):
        """Events sent before the workflow waits for them are queued and delivered in order."""
        clock = FakeClock()

        @workflow
        async def te_late_reader() -> list[str]:
            await flowcore.sleep(60)
            return [await flowcore.wait_event("item") for _ in range(3)]

        async with Runtime(db_path, clock=clock) as rt:
            handle = await rt.start(te_late_reader, id="e5")
            await until_recorded(rt, "e5", TimerScheduled)
            for item in ("a", "b", "c"):
                await rt.send_event("e5", "item", item)
            assert await events_of(rt, "e5", EventWaitStarted) == []
            clock.advance(60)
            assert await handle.result(timeout=10) == ["a", "b", "c"]

    async def test_several_waits_on_one_name_consume_fifo(self, db_path):
        """Concurrent waits on one name take events first in, first out, in the order they began."""

        @workflow
        async def te_slots() -> list[int]:
            return await flowcore.gather(*(flowcore.wait_event("slot") for _ in range(3)))

        async with Runtime(db_path) as rt:
            handle = await rt.start(te_slots, id="e6")
            await until_recorded(rt, "e6", EventWaitStarted, count=3)
            for n in (1, 2, 3):
                await rt.send_event("e6", "slot", n)
            assert await handle.result(timeout=10) == [1, 2, 3]

    async def test_events_are_matched_by_name(self, db_path):
        """An event of another name does not satisfy a wait; it stays queued for its own name."""

        @workflow
        async def te_by_name() -> list[str]:
            a = await flowcore.wait_event("a")
            b = await flowcore.wait_event("b")
            return [a, b]

        async with Runtime(db_path) as rt:
            handle = await rt.start(te_by_name, id="e7")
            await until_recorded(rt, "e7", EventWaitStarted)
            await rt.send_event("e7", "b", "B")
            await rt.send_event("e7", "a", "A")
            assert await handle.result(timeout=10) == ["A", "B"]

    async def test_event_for_finished_workflow_raises(self, db_path):
        """send_event to a finished workflow raises WorkflowFinishedError naming id and state."""

        @workflow
        async def te_quick() -> int:
            return 1

        async with Runtime(db_path) as rt:
            await (await rt.start(te_quick, id="done")).result(timeout=10)
            with pytest.raises(WorkflowFinishedError, match=r"'done'.*completed") as info:
                await rt.send_event("done", "go", 1)
            assert info.value.workflow_id == "done"
            assert "event_received" not in journal_kinds(db_path, "done")

    async def test_event_for_unknown_workflow_raises(self, db_path):
        """send_event to an unknown id raises WorkflowNotFoundError and writes nothing."""
        async with Runtime(db_path) as rt:
            with pytest.raises(WorkflowNotFoundError, match="ghost"):
                await rt.send_event("ghost", "go", 1)
            assert await rt.list() == []
        assert journal_kinds(db_path, "ghost") == []


class TestEventsAcrossRestarts:
    async def test_wait_begun_before_restart_gets_event_sent_after(self, db_path):
        """A wait begun before a restart is satisfied by an event sent to the reopened runtime."""

        @workflow
        async def te_patient() -> str:
            return await flowcore.wait_event("go")

        async with Runtime(db_path) as rt:
            await rt.start(te_patient, id="r1")
            await until_recorded(rt, "r1", EventWaitStarted)
        async with Runtime(db_path) as rt:
            await rt.send_event("r1", "go", "after restart")
            assert await rt.handle("r1").result(timeout=10) == "after restart"
            assert len(await events_of(rt, "r1", EventWaitStarted)) == 1

    async def test_queued_events_survive_restart(self, db_path):
        """Events queued before the workflow waits survive a restart and arrive in order."""

        @workflow
        async def te_backlog() -> list[str]:
            await flowcore.sleep(60)
            return [await flowcore.wait_event("q"), await flowcore.wait_event("q")]

        clock = FakeClock()
        async with Runtime(db_path, clock=clock) as rt:
            await rt.start(te_backlog, id="r2")
            await until_recorded(rt, "r2", TimerScheduled)
            await rt.send_event("r2", "q", "x")
            await rt.send_event("r2", "q", "y")
        async with Runtime(db_path, clock=FakeClock(start=clock.now() + 60)) as rt:
            assert await rt.handle("r2").result(timeout=10) == ["x", "y"]

    async def test_wait_timeout_keeps_its_deadline_across_restart(self, db_path):
        """A wait's timeout is durable: after a restart it expires at the journaled deadline."""

        @workflow
        async def te_deadline() -> Any:
            return await flowcore.wait_event("reply", timeout=3600)

        clock = FakeClock()
        async with Runtime(db_path, clock=clock) as rt:
            await rt.start(te_deadline, id="r3")
            await until_recorded(rt, "r3", EventWaitStarted)
        later = FakeClock(start=clock.now() + 1800)
        async with Runtime(db_path, clock=later) as rt:
            handle = rt.handle("r3")
            with pytest.raises(TimeoutError):
                await handle.result(timeout=0.05)
            later.advance(1800)
            assert await handle.result(timeout=10) is None
            [fired] = await events_of(rt, "r3", TimerFired)
        assert fired.at == clock.now() + 3600


class TestFirst:
    async def test_approval_wins_and_the_timer_is_cancelled(self, db_path):
        """When the approval wins first(), it is returned and the 24-hour timer never fires."""
        clock = FakeClock()

        @workflow
        async def te_approve() -> list[Any]:
            index, value = await flowcore.first(
                flowcore.wait_event("approve"), flowcore.sleep(timedelta(hours=24))
            )
            closing = await flowcore.wait_event("close")
            return [index, value, closing]

        async with Runtime(db_path, clock=clock) as rt:
            handle = await rt.start(te_approve, id="f1")
            await until_recorded(rt, "f1", TimerScheduled)
            await rt.send_event("f1", "approve", "yes")
            await until_recorded(rt, "f1", EventWaitStarted, count=2)  # first() returned
            clock.advance(2 * DAY)
            with pytest.raises(TimeoutError):  # give a still-armed timer the chance to fire
                await handle.result(timeout=0.05)
            await rt.send_event("f1", "close", "bye")
            assert await handle.result(timeout=10) == [0, "yes", "bye"]
            assert await events_of(rt, "f1", TimerFired) == []

    async def test_timeout_wins_when_nobody_approves(self, db_path):
        """With no approval, the 24-hour timer wins first() in virtual time, within milliseconds."""
        clock = VirtualClock()
        t0 = clock.now()

        @workflow
        async def te_unanswered() -> list[Any]:
            winner = await flowcore.first(
                flowcore.wait_event("approve"), flowcore.sleep(timedelta(hours=24))
            )
            return [winner.index, winner.value, flowcore.now().timestamp()]

        async with Runtime(db_path, clock=clock) as rt:
            began = time.monotonic()
            result = await (await rt.start(te_unanswered)).result(timeout=10)
            assert time.monotonic() - began < 2.0
        assert result == [1, None, t0 + DAY]

    async def test_abandoned_wait_does_not_swallow_a_later_event(self, db_path):
        """An event wait that lost first() is cancelled: a later event reaches the next wait."""
        clock = FakeClock()

        @workflow
        async def te_second_chance() -> list[Any]:
            index, _ = await flowcore.first(flowcore.wait_event("approve"), flowcore.sleep(60))
            late = await flowcore.wait_event("approve")
            return [index, late]

        async with Runtime(db_path, clock=clock) as rt:
            handle = await rt.start(te_second_chance, id="f3")
            await until_recorded(rt, "f3", TimerScheduled)
            clock.advance(60)
            await until_recorded(rt, "f3", EventWaitStarted, count=2)
            await rt.send_event("f3", "approve", "late")
            assert await handle.result(timeout=10) == [1, "late"]

    async def test_losing_activity_finishes_and_is_ignored(self, db_path):
        """A losing activity is left to finish; its result is journaled but not returned."""
        gate = anyio.Event()
        finished: list[str] = []

        @activity
        async def te_slow_quote() -> str:
            await gate.wait()
            finished.append("slow")
            return "slow"

        @activity
        def te_fast_quote() -> str:
            return "fast"

        @workflow
        async def te_race() -> list[Any]:
            index, value = await flowcore.first(te_slow_quote(), te_fast_quote())
            await flowcore.wait_event("end")
            return [index, value]

        async with Runtime(db_path) as rt:
            handle = await rt.start(te_race, id="f4")
            await until_recorded(rt, "f4", EventWaitStarted)  # first() returned
            gate.set()
            await until_recorded(rt, "f4", ActivityCompleted, count=2)
            await rt.send_event("f4", "end")
            assert await handle.result(timeout=10) == [1, "fast"]
            completed = {e.step: e.result for e in await events_of(rt, "f4", ActivityCompleted)}
        assert completed == {1: "slow", 2: "fast"}
        assert finished == ["slow"]

    async def test_first_raises_the_winners_error(self, db_path):
        """If the first awaitable to finish raised, first() raises that error."""

        @activity
        def te_broken() -> None:
            raise ValueError("quote service down")

        @workflow
        async def te_fragile() -> str:
            try:
                await flowcore.first(te_broken(), flowcore.sleep(DAY))
            except ActivityError as exc:
                return exc.failure.message
            return "no error"

        async with Runtime(db_path, clock=FakeClock()) as rt:
            assert await (await rt.start(te_fragile)).result(timeout=10) == "quote service down"


class TestVirtualClock:
    async def test_timers_of_several_workflows_fire_in_deadline_order(self, db_path):
        """With several workflows asleep, virtual time visits each deadline in turn, exactly."""
        clock = VirtualClock()
        t0 = clock.now()

        @workflow
        async def te_dozer(hours: int) -> float:
            await flowcore.sleep(timedelta(hours=hours))
            return flowcore.now().timestamp() - t0

        async with Runtime(db_path, clock=clock) as rt:
            handles = [await rt.start(te_dozer, h) for h in (3, 1, 2)]
            woke = [await h.result(timeout=10) for h in handles]
        assert woke == [3 * 3600.0, 3600.0, 2 * 3600.0]

    async def test_time_does_not_skip_while_an_activity_runs(self, db_path):
        """Virtual time stands still while an activity runs, so it beats a long timer."""
        clock = VirtualClock()

        @activity
        async def te_real_work() -> str:
            await anyio.sleep(0.05)
            return "worked"

        @workflow
        async def te_busy() -> list[Any]:
            winner = await flowcore.first(te_real_work(), flowcore.sleep(60))
            return [winner.index, winner.value]

        async with Runtime(db_path, clock=clock) as rt:
            assert await (await rt.start(te_busy)).result(timeout=10) == [0, "worked"]

    async def test_time_does_not_skip_while_the_test_sends_the_event(self, db_path):
        """Virtual time skips only while a result is awaited, so the test can answer in time."""
        clock = VirtualClock()
        t0 = clock.now()

        @workflow
        async def te_answered() -> list[Any]:
            winner = await flowcore.first(
                flowcore.wait_event("approve"), flowcore.sleep(timedelta(hours=24))
            )
            return [winner.index, winner.value]

        async with Runtime(db_path, clock=clock) as rt:
            handle = await rt.start(te_answered, id="vc3")
            await until_recorded(rt, "vc3", TimerScheduled)
            await rt.send_event("vc3", "approve", "in time")
            assert await handle.result(timeout=10) == [0, "in time"]
            assert clock.now() == t0
            assert await events_of(rt, "vc3", TimerFired) == []


class TestPatterns:
    async def test_fan_out_with_a_deadline_per_branch(self, db_path):
        """gather of first(activity, timer) branches fans out and in with a deadline per branch."""
        clock = FakeClock()
        gate = anyio.Event()

        @activity
        async def te_work(i: int) -> int:
            if i == 2:
                await gate.wait()  # this branch misses its deadline
            return 10 * i

        @workflow
        async def te_fan(n: int) -> list[Any]:
            async def branch(i: int) -> Any:
                winner = await flowcore.first(te_work(i), flowcore.sleep(30))
                return winner.value if winner.index == 0 else "late"

            return await flowcore.gather(*(branch(i) for i in range(n)))

        async with Runtime(db_path, clock=clock) as rt:
            handle = await rt.start(te_fan, 4, id="p1")
            await until_recorded(rt, "p1", ActivityCompleted, count=3)
            await until_recorded(rt, "p1", TimerScheduled, count=4)
            clock.advance(30)
            assert await handle.result(timeout=10) == [0, 10, "late", 30]
            assert len(await events_of(rt, "p1", ActivityScheduled)) == 4
            assert len(await events_of(rt, "p1", TimerFired)) == 1
            assert len(await events_of(rt, "p1", EventReceived)) == 0
        gate.set()

    async def test_approval_chain_after_restart(self, db_path):
        """A human-interaction step sits between two activities and survives a restart."""
        done: list[str] = []

        @activity
        def te_submit(doc: str) -> str:
            done.append(f"submit:{doc}")
            return doc.upper()

        @activity
        def te_publish(doc: str) -> str:
            done.append(f"publish:{doc}")
            return f"published {doc}"

        @workflow
        async def te_review(doc: str) -> str:
            draft = await te_submit(doc)
            verdict = await flowcore.wait_event("review", timeout=timedelta(hours=24))
            if verdict != "ok":
                return "expired"
            return await te_publish(draft)

        clock = FakeClock()
        async with Runtime(db_path, clock=clock) as rt:
            await rt.start(te_review, "memo", id="p2")
            await until_recorded(rt, "p2", EventWaitStarted)
        async with Runtime(db_path, clock=FakeClock(start=clock.now() + 3600)) as rt:
            await rt.send_event("p2", "review", "ok")
            assert await rt.handle("p2").result(timeout=10) == "published MEMO"
        assert done == ["submit:memo", "publish:MEMO"]
