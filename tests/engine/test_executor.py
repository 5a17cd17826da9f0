"""The executor, driven synchronously from hand-made histories: no event loop, no I/O."""

from __future__ import annotations

import asyncio
import gc
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

import flowcore
from flowcore import (
    ActivityError,
    NondeterminismError,
    WorkflowCanceledError,
    WorkflowDef,
    WorkflowFailedError,
    activity,
    workflow,
)
from flowcore.engine.commands import (
    CancelActivity,
    CancelChild,
    CancelTimer,
    CancelWorkflow,
    CompleteWorkflow,
    ContinueAsNew,
    FailWorkflow,
    ScheduleActivity,
    SetCustomStatus,
    StartChild,
    StartTimer,
    WaitForEvent,
)
from flowcore.engine.events import (
    CancelRequested,
    ChildCompleted,
    ChildFailed,
    ChildScheduled,
    CustomStatusSet,
    EventReceived,
    EventWaitStarted,
    TimerFired,
    TimerScheduled,
    WorkflowResumed,
    WorkflowSuspended,
)
from flowcore.engine.executor import WorkflowExecutor
from flowcore.errors import FailureInfo
from tests.helpers import T0, completed, failed, scheduled, started


@dataclass(frozen=True)
class Order:
    sku: str
    qty: int


@activity
def reserve(sku: str) -> str:
    return f"r-{sku}"


@activity
async def charge(order: Order) -> int:
    return order.qty * 10


@activity
def notify(msg: str) -> None:
    return None


@workflow
async def chain(order: Order) -> str:
    r = await reserve(order.sku)
    total = await charge(order)
    return f"{r}:{total}"


async def two_step(i: int) -> str:
    a = await reserve(f"a{i}")
    b = await reserve(f"b{i}")
    return a + b


@workflow
async def fan_pairs(n: int) -> list[str]:
    return await flowcore.gather(*(two_step(i) for i in range(n)))


def ops(commands: list) -> list[tuple[int, str, str]]:
    """(step, activity name, op) of each ScheduleActivity."""
    return [(c.step, c.activity.name, c.op) for c in commands if isinstance(c, ScheduleActivity)]


def kinds(commands: list) -> list[str]:
    out = []
    for c in commands:
        if isinstance(c, ScheduleActivity):
            out.append(f"{c.step}:{c.activity.name}")
        else:
            out.append(type(c).__name__)
    return out


class TestLiveRun:
    def test_first_command_is_the_first_activity(self):
        """Starting a workflow issues its first activity at step 1 with encoded arguments."""
        ex = WorkflowExecutor(chain, "w1")
        cmds = ex.start(started("chain", {"sku": "x", "qty": 2}))
        assert kinds(cmds) == ["1:reserve"]
        assert cmds[0].encoded_args == ["x"]
        assert not cmds[0].recorded

    def test_outcomes_drive_the_chain_to_completion(self):
        """Each completion resumes the workflow; the last returns the encoded result."""
        ex = WorkflowExecutor(chain, "w1")
        ex.start(started("chain", {"sku": "x", "qty": 2}))
        assert kinds(ex.apply(completed(1, "r-x"))) == ["2:charge"]
        done = ex.apply(completed(2, 20))
        assert done == [CompleteWorkflow(result="r-x:20")]
        assert ex.done

    def test_a_waiting_executor_keeps_no_empty_container(self):
        """Between steps the executor holds no empty run queue, command list or task set: a
        waiting workflow far outlives its steps, and each is one more object the garbage
        collector scans."""
        ex = WorkflowExecutor(chain, "w1")
        ex.start(started("chain", {"sku": "x", "qty": 2}))
        ex.apply(completed(1, "r-x"))
        held = [getattr(ex, name) for name in type(ex).__slots__]
        empty = [
            v
            for v in held
            if isinstance(v, list | set | deque | dict) and not v and gc.is_tracked(v)
        ]
        assert empty == []

    def test_activity_failure_surfaces_as_activity_error(self):
        """A failed activity raises ActivityError in the workflow with the original type name."""
        seen = {}

        @workflow
        async def careful() -> str:
            try:
                await reserve("x")
            except ActivityError as exc:
                seen["failure"] = exc.failure
                await notify("compensate")
                return "compensated"
            return "ok"

        ex = WorkflowExecutor(careful, "w2")
        ex.start(started("careful"))
        assert kinds(ex.apply(failed(1, "builtins.KeyError", "nope"))) == ["2:notify"]
        assert seen["failure"].short_type == "KeyError"
        assert ex.apply(completed(2)) == [CompleteWorkflow(result="compensated")]

    def test_uncaught_exception_fails_the_workflow(self):
        """An exception escaping the workflow becomes a FailWorkflow command."""

        @workflow
        async def broken() -> None:
            raise RuntimeError("bad input")

        [cmd] = WorkflowExecutor(broken, "w3").start(started("broken"))
        assert isinstance(cmd, FailWorkflow)
        assert cmd.failure.short_type == "RuntimeError"
        assert cmd.failure.message == "bad input"

    def test_gather_issues_all_branches_in_argument_order(self):
        """Gathered sub-coroutines issue their first activities in creation order."""
        ex = WorkflowExecutor(fan_pairs, "w4")
        assert ops(ex.start(started("fan_pairs", 3))) == [
            (1, "reserve", "1.1.1"),
            (2, "reserve", "1.2.1"),
            (3, "reserve", "1.3.1"),
        ]
        cmds = ex.apply(completed(2, "a1"))
        assert [c.args for c in cmds] == [("b1",)]
        assert ops(cmds) == [(4, "reserve", "1.2.2")]

    def test_gather_returns_results_in_argument_order(self):
        """Branch results come back in argument order whatever order they finish in."""
        ex = WorkflowExecutor(fan_pairs, "w5")
        ex.start(started("fan_pairs", 2))
        ex.apply(completed(2, "A1"))  # -> step 3: b1
        ex.apply(completed(1, "A0"))  # -> step 4: b0
        ex.apply(completed(3, "B1"))
        assert ex.apply(completed(4, "B0")) == [CompleteWorkflow(result=["A0B0", "A1B1"])]

    def test_empty_gather_returns_empty_list(self):
        """Gathering nothing returns an empty list at once."""

        @workflow
        async def nothing() -> list[int]:
            return await flowcore.gather()

        assert WorkflowExecutor(nothing, "w6").start(started("nothing")) == [
            CompleteWorkflow(result=[])
        ]

    def test_foreign_await_fails_with_misuse_error(self):
        """Awaiting asyncio.sleep inside a workflow fails it with a WorkflowMisuseError."""

        @workflow
        async def sleepy() -> None:
            await asyncio.sleep(0.5)

        async def run() -> list:
            return WorkflowExecutor(sleepy, "w7").start(started("sleepy"))

        [cmd] = asyncio.run(run())
        assert isinstance(cmd, FailWorkflow)
        assert cmd.failure.short_type == "WorkflowMisuseError"
        assert "flowcore.sleep()" in cmd.failure.message

    def test_now_is_the_time_of_the_event_being_processed(self):
        """flowcore.now() reports the start time, then each completion's time."""
        times = []

        @workflow
        async def clocked() -> None:
            times.append(flowcore.now())
            await notify("x")
            times.append(flowcore.now())

        ex = WorkflowExecutor(clocked, "w8")
        ex.start(started("clocked", at=T0))
        ex.apply(completed(1, at=T0 + 60))
        assert times == [
            datetime.fromtimestamp(T0, tz=UTC),
            datetime.fromtimestamp(T0 + 60, tz=UTC),
        ]

    def test_random_and_uuid_are_seeded_by_workflow_id(self):
        """Two runs of one workflow id draw the same random values; another id draws others."""

        @workflow
        async def dice() -> list[str]:
            return [str(flowcore.uuid4()), str(flowcore.random())]

        def draw(wid: str) -> list:
            return WorkflowExecutor(dice, wid).start(started("dice"))

        assert draw("a") == draw("a")
        assert draw("a") != draw("b")

    def test_info_reports_the_recorded_version(self):
        """info().version is the version recorded at start, not the code's."""

        @workflow(version="2")
        async def versioned() -> str:
            return flowcore.info().version

        ex = WorkflowExecutor(versioned, "w9")
        assert ex.start(started("versioned", version="1")) == [CompleteWorkflow(result="1")]

    def test_unencodable_argument_raises_payload_error_in_workflow(self):
        """An activity argument that cannot be encoded raises PayloadError at the await."""

        @workflow
        async def bad_arg() -> str:
            try:
                await reserve(object())  # type: ignore[arg-type]
            except flowcore.PayloadError as exc:
                return exc.path
            return "no error"

        [cmd] = WorkflowExecutor(bad_arg, "w10").start(started("bad_arg"))
        assert isinstance(cmd, CompleteWorkflow)
        assert "sku" in cmd.result


class TestReplay:
    def test_full_replay_issues_nothing_new(self):
        """Replaying a history up to an in-flight activity re-dispatches only that activity."""
        history = [
            started("chain", {"sku": "x", "qty": 2}),
            scheduled(1, "reserve", "x"),
            completed(1, "r-x"),
            scheduled(2, "charge", {"sku": "x", "qty": 2}),
        ]
        cmds = WorkflowExecutor(chain, "w1").replay(history)
        assert kinds(cmds) == ["2:charge"]
        assert cmds[0].recorded

    def test_replay_with_unrecorded_tail_issues_new_command(self):
        """A completion whose follow-up schedule was not journaled yields a new command."""
        history = [
            started("chain", {"sku": "x", "qty": 2}),
            scheduled(1, "reserve", "x"),
            completed(1, "r-x"),
        ]
        [cmd] = WorkflowExecutor(chain, "w1").replay(history)
        assert (cmd.step, cmd.activity.name, cmd.recorded) == (2, "charge", False)

    def test_replay_of_finished_history_completes(self):
        """Replaying a whole history reproduces the completion command."""
        history = [
            started("chain", {"sku": "x", "qty": 2}),
            scheduled(1, "reserve", "x"),
            completed(1, "r-x"),
            scheduled(2, "charge", {"sku": "x", "qty": 2}),
            completed(2, 20),
        ]
        assert WorkflowExecutor(chain, "w1").replay(history) == [CompleteWorkflow(result="r-x:20")]

    def test_changed_activity_name_is_nondeterministic(self):
        """A recorded step whose activity the code no longer calls raises NondeterminismError."""
        history = [started("chain", {"sku": "x", "qty": 2}), scheduled(1, "notify", "x")]
        with pytest.raises(NondeterminismError) as info:
            WorkflowExecutor(chain, "w1").replay(history)
        err = info.value
        assert (err.step, err.recorded, err.attempted) == (
            1,
            "activity 'notify'",
            "activity 'reserve'",
        )
        assert "chain" in str(err)
        assert "w1" in str(err)

    def test_recorded_step_never_reissued_is_nondeterministic(self):
        """A recorded schedule the code no longer reaches raises NondeterminismError."""

        async def shorter_fn(order: Order) -> str:
            return "done"

        shorter = WorkflowDef(shorter_fn, name="chain", version="1")  # the changed code

        history = [started("chain", {"sku": "x", "qty": 2}), scheduled(1, "reserve", "x")]
        with pytest.raises(NondeterminismError) as info:
            WorkflowExecutor(shorter, "w1").replay(history)
        assert info.value.step == 1

    def test_replay_order_of_gather_follows_history(self):
        """Out-of-order completions in a gather replay to the same next commands."""
        history = [
            started("fan_pairs", 2),
            scheduled(1, "reserve", "a0"),
            scheduled(2, "reserve", "a1"),
            completed(2, "A1"),
            scheduled(3, "reserve", "b1"),
            completed(1, "A0"),
            scheduled(4, "reserve", "b0"),
            completed(4, "B0"),
        ]
        cmds = WorkflowExecutor(fan_pairs, "w5").replay(history)
        assert kinds(cmds) == ["3:reserve"]
        assert cmds[0].args == ("b1",)
        assert (cmds[0].op, cmds[0].recorded) == ("1.2.2", True)


# -- op names ---------------------------------------------------------------------------------


async def pipeline(sku: str) -> str:
    r = await reserve(sku)
    await notify(r)
    return r


@workflow
async def chain3(sku: str) -> str:
    a = await reserve(sku)
    await notify(a)
    await notify("done")
    return a


@workflow
async def mixed(sku: str) -> list[str]:
    """gather(a(), pipeline()) as the main task's first command, then one more call."""
    got = await flowcore.gather(reserve(f"a-{sku}"), pipeline(f"p-{sku}"))
    await notify("after")
    return got


class TestOpNames:
    """op: a command's place in the program ("n" in the main task, "K.i.n" in branch i of the
    gather/first issued as op K), whatever order outcomes arrive in."""

    def test_chain_ops_count_the_main_task_commands(self):
        """A chain's activities are ops "1", "2", "3"."""
        ex = WorkflowExecutor(chain3, "w")
        assert ops(ex.start(started("chain3", "x"))) == [(1, "reserve", "1")]
        assert ops(ex.apply(completed(1, "r-x"))) == [(2, "notify", "2")]
        assert ops(ex.apply(completed(2))) == [(3, "notify", "3")]

    def test_gather_branches_are_named_by_place_not_by_arrival(self):
        """Branch i of the gather issued as op 1 names its calls 1.i.1, 1.i.2 ...; the next call
        of the main task is op 2. The steps follow the arrival order; the ops do not."""
        ex = WorkflowExecutor(mixed, "w")
        assert ops(ex.start(started("mixed", "x"))) == [
            (1, "reserve", "1.1.1"),
            (2, "reserve", "1.2.1"),
        ]
        assert ops(ex.apply(completed(2, "r-p"))) == [(3, "notify", "1.2.2")]
        assert ops(ex.apply(completed(1, "r-a"))) == []
        assert ops(ex.apply(completed(3))) == [(4, "notify", "2")]

        other = WorkflowExecutor(mixed, "w")  # the pipeline's reserve reports last this time
        other.start(started("mixed", "x"))
        assert ops(other.apply(completed(1, "r-a"))) == []
        assert ops(other.apply(completed(2, "r-p"))) == [(3, "notify", "1.2.2")]
        assert ops(other.apply(completed(3))) == [(4, "notify", "2")]

    def test_the_same_call_keeps_its_op_when_its_step_changes(self):
        """Two pipelines finishing their first call in either order: each second call gets
        another step, but the same op."""

        def second_calls(first_done: int) -> dict[str, tuple[int, str]]:
            ex = WorkflowExecutor(fan_pairs, "w")
            ex.start(started("fan_pairs", 2))
            out = {}
            for step in (first_done, 3 - first_done):
                [cmd] = ex.apply(completed(step, "r"))
                out[cmd.args[0]] = (cmd.step, cmd.op)
            return out

        assert second_calls(1) == {"b0": (3, "1.1.2"), "b1": (4, "1.2.2")}
        assert second_calls(2) == {"b1": (3, "1.2.2"), "b0": (4, "1.1.2")}

    def test_every_command_takes_an_op_of_its_task(self):
        """Timers, set_status, event waits and children consume an op of the task issuing
        them; a sub-coroutine awaited directly runs in its caller's task."""

        @workflow
        async def busy() -> None:
            await flowcore.sleep(1)  # 1
            flowcore.set_status("waiting")  # 2
            await flowcore.wait_event("go")  # 3
            await flowcore.child(resize, "a.png")  # 4
            await pipeline("x")  # 5, 6

        ex = WorkflowExecutor(busy, "w")
        ex.start(started("busy"))
        ex.apply(fired(1))
        ex.apply(received("go"))
        assert ops(ex.apply(ChildCompleted(at=T0, step=4, result={"sku": "a", "qty": 1}))) == [
            (5, "reserve", "5")
        ]
        assert ops(ex.apply(completed(5, "r-x"))) == [(6, "notify", "6")]

    def test_nested_gathers_and_first_extend_the_path(self):
        """A gather inside a branch is that branch's command; its branches nest one level
        deeper. A first() names its branches like a gather."""

        async def inner() -> list[str]:
            await flowcore.sleep(1)  # 1.1.1
            return await flowcore.gather(reserve("p"), reserve("q"))  # 1.1.2 -> 1.1.2.i.1

        @workflow
        async def nested() -> None:
            await flowcore.gather(inner(), reserve("r"))  # 1 -> 1.1, 1.2
            await flowcore.first(reserve("s"), flowcore.sleep(5))  # 2 -> 2.1.1, 2.2.1
            await notify("t")  # 3

        ex = WorkflowExecutor(nested, "w")
        assert ops(ex.start(started("nested"))) == [(2, "reserve", "1.2.1")]
        assert ops(ex.apply(fired(1))) == [(3, "reserve", "1.1.2.1.1"), (4, "reserve", "1.1.2.2.1")]
        assert ex.apply(completed(2, "r")) == []
        assert ex.apply(completed(3, "p")) == []
        cmds = ex.apply(completed(4, "q"))
        assert ops(cmds) == [(5, "reserve", "2.1.1")]
        assert cmds[1] == StartTimer(step=6, fire_at=T0 + 5)  # branch 2.2's op 2.2.1
        assert ops(ex.apply(fired(6))) == [(7, "notify", "3")]

    def test_replay_reissues_in_flight_and_new_calls_with_their_live_ops(self):
        """Recovery dispatches an in-flight call and a not yet journaled one under the ops the
        live run gave them (the runtime keys idempotency by op before the schedule is durable)."""
        history = [
            started("mixed", "x"),
            scheduled(1, "reserve", "a-x"),
            scheduled(2, "reserve", "p-x"),
            completed(2, "r-p"),
        ]
        cmds = WorkflowExecutor(mixed, "w").replay(history)
        assert [(c.step, c.op, c.recorded) for c in cmds] == [
            (3, "1.2.2", False),  # issued by the last event, its row torn off by the crash
            (1, "1.1.1", True),  # in flight
        ]


# -- durable timers, external events, first(), cancellation, suspension, children ... --------


def fired(step: int, *, at: float = T0) -> TimerFired:
    return TimerFired(at=at, step=step)


def received(name: str, payload: Any = None, *, at: float = T0) -> EventReceived:
    return EventReceived(at=at, name=name, payload=payload)


def cancel(reason: str | None = "stop", *, at: float = T0) -> CancelRequested:
    return CancelRequested(at=at, reason=reason)


def child_failure(message: str = "boom") -> FailureInfo:
    return FailureInfo(type_name="builtins.ValueError", message=message)


def run(defn: WorkflowDef, *events, payload: Any = None, wid: str = "w") -> list[list]:
    """Start ``defn`` and apply ``events`` one by one; return the commands of each step."""
    ex = WorkflowExecutor(defn, wid)
    out = [ex.start(started(defn.name, payload))]
    out.extend(ex.apply(event) for event in events)
    return out


@dataclass(frozen=True)
class Approval:
    by: str
    ok: bool


@workflow
async def nap(seconds: float) -> float:
    await flowcore.sleep(seconds)
    return flowcore.now().timestamp()


@workflow
async def approval() -> Approval | None:
    return await flowcore.wait_event("approve", type=Approval)


@workflow
async def race(timeout: float | None) -> list[Any]:
    index, value = await flowcore.first(
        flowcore.wait_event("ok", timeout=timeout), flowcore.sleep(60)
    )
    later = await flowcore.wait_event("ok")
    return [index, value, later]


@workflow(name="resize")
async def resize(path: str) -> Order:
    return Order(path, 1)


class TestTimers:
    def test_sleep_starts_a_timer_with_an_absolute_deadline(self):
        """sleep(s) issues StartTimer at the workflow's now + s."""
        [cmds] = run(nap, payload=30)
        assert cmds == [StartTimer(step=1, fire_at=T0 + 30)]

    def test_fired_timer_resumes_and_now_is_the_firing_time(self):
        """TimerFired resumes the sleeper; flowcore.now() then reports the firing time."""
        *_, last = run(nap, fired(1, at=T0 + 31), payload=30)
        assert last == [CompleteWorkflow(result=T0 + 31)]

    def test_sleep_until_uses_the_given_instant(self):
        """sleep_until(naive datetime) is taken as UTC and journaled as its epoch seconds."""

        @workflow
        async def until() -> None:
            await flowcore.sleep_until(datetime(2030, 1, 1))  # noqa: DTZ001 - naive on purpose

        [cmds] = run(until)
        assert cmds == [StartTimer(step=1, fire_at=datetime(2030, 1, 1, tzinfo=UTC).timestamp())]

    def test_duplicate_or_unknown_timer_firing_is_ignored(self):
        """A second TimerFired for one step, or one for no timer, changes nothing."""
        ex = WorkflowExecutor(fan_pairs, "w")
        ex.start(started("fan_pairs", 1))
        assert ex.apply(fired(1)) == []  # step 1 is an activity, not a timer
        assert ex.apply(fired(9)) == []
        assert kinds(ex.apply(completed(1, "a"))) == ["2:reserve"]


class TestEvents:
    def test_event_is_delivered_to_the_waiting_workflow_decoded(self):
        """wait_event issues WaitForEvent; a matching EventReceived resumes it with its payload."""
        ex = WorkflowExecutor(approval, "w")
        assert ex.start(started("approval")) == [
            WaitForEvent(step=1, name="approve", deadline=None)
        ]
        assert ex.apply(received("other", 1)) == []
        assert ex.apply(received("approve", {"by": "ann", "ok": True})) == [
            CompleteWorkflow(result={"by": "ann", "ok": True})
        ]

    def test_decoded_payload_has_the_requested_type(self):
        """type=... decodes the payload (here to a dataclass) before the workflow sees it."""
        seen = []

        @workflow
        async def typed() -> None:
            seen.append(await flowcore.wait_event("approve", type=Approval))

        run(typed, received("approve", {"by": "ann", "ok": False}))
        assert seen == [Approval("ann", ok=False)]

    def test_events_sent_before_the_wait_are_buffered_in_order(self):
        """Events arriving before any wait are kept; later waits take them first in, first out."""

        @workflow
        async def late_reader() -> list[int]:
            await notify("busy")
            first = await flowcore.wait_event("n", timeout=5)
            second = await flowcore.wait_event("n")
            return [first, second]

        ex = WorkflowExecutor(late_reader, "w")
        ex.start(started("late_reader"))
        assert ex.apply(received("n", 1)) == []
        assert ex.apply(received("n", 2)) == []
        assert ex.apply(completed(1)) == [
            # satisfied at once from the buffer: no deadline to arm
            WaitForEvent(step=2, name="n", deadline=None),
            WaitForEvent(step=3, name="n", deadline=None),
            CompleteWorkflow(result=[1, 2]),
        ]

    def test_two_waits_on_one_name_take_events_in_wait_order(self):
        """Concurrent waits on one name are served FIFO; other names do not disturb them."""

        @workflow
        async def readers() -> list[Any]:
            return await flowcore.gather(
                flowcore.wait_event("x"), flowcore.wait_event("y"), flowcore.wait_event("x")
            )

        ex = WorkflowExecutor(readers, "w")
        assert [c.name for c in ex.start(started("readers"))] == ["x", "y", "x"]
        assert ex.apply(received("x", "first")) == []
        assert ex.apply(received("y", "why")) == []
        assert ex.apply(received("x", "second")) == [
            CompleteWorkflow(result=["first", "why", "second"])
        ]

    def test_timeout_returns_none_and_disarms_nothing_else(self):
        """The wait's deadline fires as TimerFired(step): it returns None, other timers run on."""

        @workflow
        async def patient() -> list[Any]:
            return await flowcore.gather(flowcore.wait_event("x", timeout=10), flowcore.sleep(60))

        ex = WorkflowExecutor(patient, "w")
        assert ex.start(started("patient")) == [
            WaitForEvent(step=1, name="x", deadline=T0 + 10),
            StartTimer(step=2, fire_at=T0 + 60),
        ]
        assert ex.apply(fired(1, at=T0 + 10)) == []
        assert ex.apply(fired(2, at=T0 + 60)) == [CompleteWorkflow(result=[None, None])]

    def test_event_satisfying_a_wait_disarms_its_deadline(self):
        """An event that arrives in time cancels the wait's deadline; a late firing is ignored."""

        @workflow
        async def in_time() -> Any:
            got = await flowcore.wait_event("x", timeout=10)
            await notify("next")
            return got

        ex = WorkflowExecutor(in_time, "w")
        ex.start(started("in_time"))
        cmds = ex.apply(received("x", 5))
        assert cmds[0] == CancelTimer(step=1)
        assert kinds(cmds[1:]) == ["2:notify"]
        assert ex.apply(fired(1)) == []
        assert ex.apply(completed(2)) == [CompleteWorkflow(result=5)]

    def test_event_after_a_timeout_is_buffered_for_the_next_wait(self):
        """Once a wait timed out, a late event is not lost: the next wait on its name takes it."""

        @workflow
        async def retry_wait() -> list[Any]:
            first = await flowcore.wait_event("x", timeout=10)
            await notify("timed out")
            return [first, await flowcore.wait_event("x")]

        ex = WorkflowExecutor(retry_wait, "w")
        ex.start(started("retry_wait"))
        assert kinds(ex.apply(fired(1))) == ["2:notify"]
        assert ex.apply(received("x", "late")) == []
        assert ex.apply(completed(2)) == [
            WaitForEvent(step=3, name="x", deadline=None),
            CompleteWorkflow(result=[None, "late"]),
        ]


class TestFirst:
    def test_event_beats_timer(self):
        """The event wins: First(0, payload), and the losing timer is disarmed."""
        start, win, late = run(race, received("ok", "yes"), fired(2), payload=None)
        assert start == [
            WaitForEvent(step=1, name="ok", deadline=None),
            StartTimer(step=2, fire_at=T0 + 60),
        ]
        assert win == [CancelTimer(step=2), WaitForEvent(step=3, name="ok", deadline=None)]
        assert late == []  # the disarmed timer firing anyway is ignored

    def test_timer_beats_event_and_the_loser_wait_lets_go_of_its_event(self):
        """The timer wins: First(1, None); the losing wait's deadline is disarmed and it no
        longer consumes events (the next wait gets the event)."""
        start, win, event = run(race, fired(2, at=T0 + 60), received("ok", "late"), payload=120)
        assert start[0] == WaitForEvent(step=1, name="ok", deadline=T0 + 120)
        assert win == [CancelTimer(step=1), WaitForEvent(step=3, name="ok", deadline=None)]
        assert event == [CompleteWorkflow(result=[1, None, "late"])]

    def test_losing_wait_without_deadline_needs_no_disarming(self):
        """A losing wait with no timeout has no timer: nothing to cancel."""
        _, win = run(race, fired(2), payload=None)
        assert win == [WaitForEvent(step=3, name="ok", deadline=None)]

    def test_losing_activity_is_left_running_and_its_outcome_ignored(self):
        """An activity that loses is not cancelled; its late result changes nothing."""

        @workflow
        async def deadline_call() -> list[Any]:
            winner = await flowcore.first(reserve("x"), flowcore.sleep(5))
            await notify("after")
            return list(winner)

        start, win, late, done = run(deadline_call, fired(2), completed(1, "r-x"), completed(3))
        assert kinds(start) == ["1:reserve", "StartTimer"]
        assert kinds(win) == ["3:notify"]  # no CancelActivity for the loser
        assert late == []
        assert done == [CompleteWorkflow(result=[1, None])]

    def test_first_to_finish_raising_raises_and_disarms_the_others(self):
        """If the first branch to finish raised, first() raises it; the others are abandoned."""

        @workflow
        async def failing_race() -> str:
            try:
                await flowcore.first(reserve("x"), flowcore.sleep(5))
            except ActivityError:
                return "caught"
            return "no error"

        _, outcome = run(failing_race, failed(1))
        assert outcome == [CancelTimer(step=2), CompleteWorkflow(result="caught")]

    def test_branch_finishing_at_once_wins_without_the_others_running(self):
        """A branch that needs no await wins before the other branches issue anything."""

        async def instant() -> int:
            return 7

        @workflow
        async def quick() -> list[Any]:
            return list(await flowcore.first(instant(), flowcore.sleep(5)))

        assert run(quick) == [[CompleteWorkflow(result=[0, 7])]]


@workflow
async def provision(hosts: list[str]) -> list[str]:
    try:
        return await flowcore.gather(*(reserve(h) for h in hosts))
    except WorkflowCanceledError:
        await notify("rollback")
        raise


class TestCancellation:
    def test_cancel_during_gather_cancels_pending_leaves_then_compensates(self):
        """Every pending activity gets CancelActivity; the except block's compensation runs
        before the workflow ends with CancelWorkflow."""
        ex = WorkflowExecutor(provision, "w")
        assert kinds(ex.start(started("provision", ["a", "b", "c"]))) == [
            "1:reserve",
            "2:reserve",
            "3:reserve",
        ]
        assert ex.apply(completed(2, "r-b")) == []
        cmds = ex.apply(cancel("user asked"))
        assert cmds[:2] == [CancelActivity(step=1), CancelActivity(step=3)]
        assert kinds(cmds[2:]) == ["4:notify"]
        assert cmds[2].args == ("rollback",)
        assert cmds[2].op == "2"  # the main task's next command after its gather (op 1)
        assert ex.cancel_requested
        assert not ex.done
        assert ex.apply(failed(1, "builtins.CancelledError")) == []  # late outcome: ignored
        assert ex.apply(completed(4)) == [CancelWorkflow(reason="user asked", result=None)]
        assert ex.done

    def test_each_branch_except_block_issues_its_compensation(self):
        """Branches that catch the cancellation schedule their own compensation activities."""

        async def leg(host: str) -> str:
            try:
                return await reserve(host)
            except WorkflowCanceledError:
                await notify(f"undo {host}")
                raise

        @workflow
        async def legs(hosts: list[str]) -> list[str]:
            return await flowcore.gather(*(leg(h) for h in hosts))

        ex = WorkflowExecutor(legs, "w")
        ex.start(started("legs", ["a", "b"]))
        cmds = ex.apply(cancel())
        assert cmds[:2] == [CancelActivity(step=1), CancelActivity(step=2)]
        assert kinds(cmds[2:]) == ["3:notify", "4:notify"]
        assert [c.args for c in cmds[2:]] == [("undo a",), ("undo b",)]
        assert [c.op for c in cmds[2:]] == ["1.1.2", "1.2.2"]  # each in its own branch

    def test_cancel_disarms_timers_and_waits_and_cancels_children(self):
        """Timers and event deadlines get CancelTimer, children CancelChild, in step order."""

        @workflow
        async def busy() -> None:
            await flowcore.gather(
                flowcore.sleep(5),
                flowcore.wait_event("x"),
                flowcore.wait_event("y", timeout=9),
                flowcore.child(resize, "p"),
            )

        _, cmds = run(busy, cancel("bye"), wid="p1")
        assert cmds == [
            CancelTimer(step=1),
            CancelTimer(step=3),
            CancelChild(step=4, child_id="p1:1.4.1"),
            CancelWorkflow(reason="bye", result=None),
        ]

    def test_workflow_that_swallows_cancel_returns_its_result(self):
        """Catching the cancellation and returning ends the workflow canceled, with the result."""

        @workflow
        async def graceful() -> str:
            try:
                await flowcore.sleep(3600)
            except WorkflowCanceledError:
                return "stopped early"
            return "slept"

        _, cmds = run(graceful, cancel("enough"))
        assert cmds == [
            CancelTimer(step=1),
            CancelWorkflow(reason="enough", result="stopped early"),
        ]

    def test_other_error_raised_after_cancel_fails_the_workflow(self):
        """Raising something else than WorkflowCanceledError ends the workflow failed."""

        @workflow
        async def angry() -> None:
            try:
                await flowcore.sleep(3600)
            except WorkflowCanceledError:
                raise RuntimeError("cleanup failed") from None

        _, [cmd1, cmd2] = run(angry, cancel())
        assert cmd1 == CancelTimer(step=1)
        assert isinstance(cmd2, FailWorkflow)
        assert cmd2.failure.short_type == "RuntimeError"

    def test_second_cancel_is_ignored(self):
        """A cancel request during the compensation does not interrupt it."""
        ex = WorkflowExecutor(provision, "w")
        ex.start(started("provision", ["a"]))
        assert kinds(ex.apply(cancel("first"))) == ["CancelActivity", "2:notify"]
        assert ex.apply(cancel("second")) == []
        assert ex.apply(completed(2)) == [CancelWorkflow(reason="first", result=None)]

    def test_cancel_after_the_end_is_ignored(self):
        """A finished workflow ignores a cancellation request."""
        ex = WorkflowExecutor(chain, "w")
        ex.start(started("chain", {"sku": "x", "qty": 1}))
        ex.apply(completed(1, "r"))
        ex.apply(completed(2, 10))
        assert ex.apply(cancel()) == []


class TestSuspension:
    def test_suspension_holds_an_activity_completion_until_resume(self):
        """While suspended, outcomes queue up; resuming applies them in order."""
        ex = WorkflowExecutor(chain, "w")
        ex.start(started("chain", {"sku": "x", "qty": 2}))
        assert ex.apply(WorkflowSuspended(at=T0 + 1)) == []
        assert ex.suspended
        assert ex.apply(completed(1, "r-x", at=T0 + 2)) == []
        cmds = ex.apply(WorkflowResumed(at=T0 + 3))
        assert not ex.suspended
        assert kinds(cmds) == ["2:charge"]

    def test_held_events_apply_in_arrival_order(self):
        """Several held events are applied in the order they arrived."""

        @workflow
        async def both() -> list[Any]:
            return await flowcore.gather(flowcore.wait_event("x"), flowcore.wait_event("x"))

        ex = WorkflowExecutor(both, "w")
        ex.start(started("both"))
        ex.apply(WorkflowSuspended(at=T0))
        assert ex.apply(received("x", 1)) == []
        assert ex.apply(received("x", 2)) == []
        assert ex.apply(WorkflowResumed(at=T0)) == [CompleteWorkflow(result=[1, 2])]

    def test_cancel_while_suspended_takes_effect_on_resume(self):
        """A cancellation is an event like any other: it waits for the resume."""
        ex = WorkflowExecutor(nap, "w")
        ex.start(started("nap", 5))
        ex.apply(WorkflowSuspended(at=T0))
        assert ex.apply(cancel("later")) == []
        assert ex.apply(WorkflowResumed(at=T0)) == [
            CancelTimer(step=1),
            CancelWorkflow(reason="later", result=None),
        ]


class TestChildren:
    def test_child_starts_with_default_id(self):
        """child() issues StartChild with the encoded input and id '<workflow id>:<step>'."""

        @workflow
        async def parent() -> Order:
            await notify("first")
            return await flowcore.child(resize, "a.png")

        ex = WorkflowExecutor(parent, "p1")
        ex.start(started("parent"))
        assert ex.apply(completed(1)) == [
            StartChild(step=2, workflow="resize", version="1", input="a.png", child_id="p1:2")
        ]

    def test_default_child_id_does_not_depend_on_the_report_order(self):
        """The same child call gets the same default id whichever branch reports first."""

        async def leg(path: str) -> Order:
            await reserve(path)
            return await flowcore.child(resize, path)

        @workflow
        async def gallery() -> list[Order]:
            return await flowcore.gather(leg("a.png"), leg("b.png"))

        def child_ids(order: tuple[int, int]) -> dict[str, str]:
            ex = WorkflowExecutor(gallery, "g")
            ex.start(started("gallery"))
            return {
                c.input: c.child_id
                for step in order
                for c in ex.apply(completed(step, "r"))
                if isinstance(c, StartChild)
            }

        assert child_ids((1, 2)) == child_ids((2, 1))  # today: a.png -> g:3 vs g:4

    def test_child_by_name_with_explicit_id_and_version(self):
        """A name, an explicit id and a version are passed through as given."""

        @workflow
        async def parent() -> Any:
            return await flowcore.child("resize", {"p": 1}, id="thumb-1", version="3")

        [cmds] = run(parent)
        assert cmds == [
            StartChild(step=1, workflow="resize", version="3", input={"p": 1}, child_id="thumb-1")
        ]

    def test_child_completed_value_is_decoded_with_the_child_return_type(self):
        """ChildCompleted's result is decoded as the child workflow's return type."""
        seen = []

        @workflow
        async def parent() -> None:
            seen.append(await flowcore.child(resize, "a.png"))

        run(parent, ChildCompleted(at=T0, step=1, result={"sku": "a.png", "qty": 1}))
        assert seen == [Order("a.png", 1)]

    def test_child_failed_raises_workflow_failed_error(self):
        """ChildFailed raises WorkflowFailedError carrying the child's id and failure."""
        seen = []

        @workflow
        async def parent() -> str:
            try:
                await flowcore.child(resize, "a.png")
            except WorkflowFailedError as exc:
                seen.append(exc)
                return "handled"
            return "no error"

        _, cmds = run(parent, ChildFailed(at=T0, step=1, failure=child_failure("bad png")))
        assert cmds == [CompleteWorkflow(result="handled")]
        [err] = seen
        assert err.workflow_id == "w:1"
        assert err.failure == child_failure("bad png")

    def test_uncaught_child_failure_fails_the_parent(self):
        """A child failure the parent does not catch fails it with WorkflowFailedError."""

        @workflow
        async def parent() -> None:
            await flowcore.child(resize, "a.png")

        _, [cmd] = run(parent, ChildFailed(at=T0, step=1, failure=child_failure()))
        assert isinstance(cmd, FailWorkflow)
        assert cmd.failure.short_type == "WorkflowFailedError"

    def test_canceled_child_raises_workflow_canceled_error(self):
        """ChildFailed(canceled=True) raises WorkflowCanceledError in the parent."""

        @workflow
        async def parent() -> str:
            try:
                await flowcore.child(resize, "a.png")
            except WorkflowCanceledError as exc:
                return f"{exc.workflow_id}: {exc}"
            return "no error"

        failure = FailureInfo(type_name="flowcore.WorkflowCanceledError", message="by ops")
        _, cmds = run(parent, ChildFailed(at=T0, step=1, failure=failure, canceled=True))
        assert cmds == [CompleteWorkflow(result="w:1: child workflow 'w:1' was canceled: by ops")]


class TestStatusAndContinueAsNew:
    def test_set_status_emits_a_numbered_command(self):
        """set_status() issues SetCustomStatus with the encoded value and takes a step."""

        @workflow
        async def reporter() -> None:
            flowcore.set_status({"phase": "reserving", "at": Order("x", 1)})
            await notify("x")

        [cmds] = run(reporter)
        assert cmds[0] == SetCustomStatus(
            step=1, value={"phase": "reserving", "at": {"sku": "x", "qty": 1}}
        )
        assert kinds(cmds[1:]) == ["2:notify"]

    def test_set_status_replays_without_reemitting(self):
        """A recorded status is confirmed by replay, not issued again."""

        @workflow
        async def reporter() -> None:
            flowcore.set_status("one")
            await notify("x")
            flowcore.set_status("two")

        history = [
            started("reporter"),
            CustomStatusSet(at=T0, step=1, value="one"),
            scheduled(2, "notify", "x"),
        ]
        [cmd] = WorkflowExecutor(reporter, "w").replay(history)
        assert (cmd.step, cmd.recorded) == (2, True)
        done = WorkflowExecutor(reporter, "w").replay([*history, completed(2)])
        assert done == [SetCustomStatus(step=3, value="two"), CompleteWorkflow(result=None)]
        full = [*history, completed(2), CustomStatusSet(at=T0, step=3, value="two")]
        assert WorkflowExecutor(reporter, "w").replay(full) == [CompleteWorkflow(result=None)]

    def test_continue_as_new_emits_the_encoded_input_and_ends_the_run(self):
        """continue_as_new(payload) ends the run with ContinueAsNew; except Exception cannot eat
        it and nothing after it runs."""

        @workflow
        async def looping(state: Order) -> None:
            await flowcore.sleep(60)
            try:
                flowcore.continue_as_new(Order(state.sku, state.qty + 1))
            except Exception:  # noqa: BLE001 - the point: it is not an Exception
                await notify("swallowed")

        ex = WorkflowExecutor(looping, "w")
        ex.start(started("looping", {"sku": "x", "qty": 1}))
        assert ex.apply(fired(1)) == [ContinueAsNew(input={"sku": "x", "qty": 2})]
        assert ex.done

    def test_continue_as_new_replays_to_the_same_command(self):
        """A run whose last event made it continue replays to ContinueAsNew (crash before reset)."""

        @workflow
        async def again(n: int) -> None:
            await flowcore.sleep(60)
            flowcore.continue_as_new(n + 1)

        history = [started("again", 1), TimerScheduled(at=T0, step=1, fire_at=T0 + 60)]
        ex = WorkflowExecutor(again, "w")
        assert ex.replay(history) == [StartTimer(step=1, fire_at=T0 + 60, recorded=True)]
        ex = WorkflowExecutor(again, "w")
        assert ex.replay([*history, fired(1, at=T0 + 60)]) == [ContinueAsNew(input=2)]
        assert ex.done

    def test_continue_as_new_with_unencodable_input_fails(self):
        """An input that cannot be encoded fails the workflow with PayloadError."""

        @workflow
        async def bad() -> None:
            flowcore.continue_as_new(object())

        [[cmd]] = run(bad)
        assert isinstance(cmd, FailWorkflow)
        assert cmd.failure.short_type == "PayloadError"


class TestReplayOfNewKinds:
    def test_in_flight_timer_comes_back_recorded(self):
        """A scheduled, unfired timer is re-armed from the same deadline."""
        history = [started("nap", 30), TimerScheduled(at=T0, step=1, fire_at=T0 + 30)]
        assert WorkflowExecutor(nap, "w").replay(history) == [
            StartTimer(step=1, fire_at=T0 + 30, recorded=True)
        ]
        fired_history = [*history, fired(1, at=T0 + 30)]
        assert WorkflowExecutor(nap, "w").replay(fired_history) == [
            CompleteWorkflow(result=T0 + 30)
        ]

    def test_in_flight_wait_comes_back_recorded_and_consumed_wait_does_not(self):
        """A pending wait is returned recorded; one the history satisfied completes the run."""
        history = [
            started("race", 120),
            EventWaitStarted(at=T0, step=1, name="ok", deadline=T0 + 120),
            TimerScheduled(at=T0, step=2, fire_at=T0 + 60),
        ]
        assert WorkflowExecutor(race, "w").replay(history) == [
            WaitForEvent(step=1, name="ok", deadline=T0 + 120, recorded=True),
            StartTimer(step=2, fire_at=T0 + 60, recorded=True),
        ]
        won = [
            *history,
            received("ok", "yes", at=T0 + 1),
            EventWaitStarted(at=T0 + 1, step=3, name="ok"),
        ]
        # the loser timer is disarmed silently: no CancelTimer, no StartTimer
        assert WorkflowExecutor(race, "w").replay(won) == [
            WaitForEvent(step=3, name="ok", deadline=None, recorded=True)
        ]
        done = [*won, received("ok", "again", at=T0 + 2)]
        assert WorkflowExecutor(race, "w").replay(done) == [
            CompleteWorkflow(result=[0, "yes", "again"])
        ]

    def test_buffered_event_in_history_satisfies_the_later_wait(self):
        """An event recorded before its wait is buffered again by replay."""

        @workflow
        async def late_reader() -> Any:
            await notify("busy")
            return await flowcore.wait_event("n")

        history = [
            started("late_reader"),
            scheduled(1, "notify", "busy"),
            received("n", 42),
            completed(1),
            EventWaitStarted(at=T0, step=2, name="n"),
        ]
        assert WorkflowExecutor(late_reader, "w").replay(history) == [CompleteWorkflow(result=42)]

    def test_canceled_history_redispatches_only_the_compensation(self):
        """Activities cancelled by the request are not re-dispatched; no Cancel* is re-issued."""
        history = [
            started("provision", ["a", "b", "c"]),
            scheduled(1, "reserve", "a"),
            scheduled(2, "reserve", "b"),
            scheduled(3, "reserve", "c"),
            completed(2, "r-b"),
            cancel("user asked"),
            scheduled(4, "notify", "rollback"),
        ]
        cmds = WorkflowExecutor(provision, "w").replay(history)
        assert kinds(cmds) == ["4:notify"]
        assert cmds[0].recorded
        full = [*history, completed(4)]
        assert WorkflowExecutor(provision, "w").replay(full) == [
            CancelWorkflow(reason="user asked", result=None)
        ]

    def test_suspended_history_replays_suspended(self):
        """Replay ends suspended when the history does; a later resume applies what was held."""
        history = [
            started("chain", {"sku": "x", "qty": 2}),
            scheduled(1, "reserve", "x"),
            WorkflowSuspended(at=T0 + 1),
        ]
        ex = WorkflowExecutor(chain, "w")
        cmds = ex.replay(history)
        assert kinds(cmds) == ["1:reserve"]
        assert cmds[0].recorded
        assert ex.suspended
        resumed = [*history, completed(1, "r-x"), WorkflowResumed(at=T0 + 3)]
        assert kinds(WorkflowExecutor(chain, "w").replay(resumed)) == ["2:charge"]

    def test_suspended_history_does_not_redispatch_work_with_a_held_outcome(self):
        """Work whose outcome is journaled but held behind the suspension is not redone; work
        still running is; the held outcomes apply on resume."""
        history = [
            started("fan_pairs", 2),
            scheduled(1, "reserve", "a0"),
            scheduled(2, "reserve", "a1"),
            WorkflowSuspended(at=T0 + 1),
            completed(1, "A0", at=T0 + 2),
        ]
        ex = WorkflowExecutor(fan_pairs, "w")
        cmds = ex.replay(history)
        assert kinds(cmds) == ["2:reserve"]
        assert cmds[0].recorded
        assert kinds(ex.apply(WorkflowResumed(at=T0 + 3))) == ["3:reserve"]

    def test_in_flight_child_comes_back_recorded(self):
        """A started, unfinished child is re-attached with its recorded id."""

        @workflow
        async def parent() -> Order:
            return await flowcore.child(resize, "a.png")

        history = [
            started("parent"),
            ChildScheduled(at=T0, step=1, name="resize", child_id="p:1", input="a.png"),
        ]
        assert WorkflowExecutor(parent, "p").replay(history) == [
            StartChild(
                step=1,
                workflow="resize",
                version="1",
                input="a.png",
                child_id="p:1",
                recorded=True,
            )
        ]
        done = [*history, ChildCompleted(at=T0, step=1, result={"sku": "a.png", "qty": 1})]
        assert WorkflowExecutor(parent, "p").replay(done) == [
            CompleteWorkflow(result={"sku": "a.png", "qty": 1})
        ]

    def test_timer_recorded_but_activity_now_is_nondeterministic(self):
        """A step recorded as a timer and now issued as an activity raises NondeterminismError."""

        async def changed_fn(seconds: float) -> None:
            await notify("no more sleeping")

        changed = WorkflowDef(changed_fn, name="nap", version="1")  # the changed code

        history = [started("nap", 30), TimerScheduled(at=T0, step=1, fire_at=T0 + 30)]
        with pytest.raises(NondeterminismError) as info:
            WorkflowExecutor(changed, "w").replay(history)
        err = info.value
        assert (err.step, err.recorded, err.attempted) == (1, "a timer", "activity 'notify'")

    @pytest.mark.parametrize(
        ("recorded", "describe"),
        [
            (EventWaitStarted(at=T0, step=1, name="approve"), "wait_event('approve')"),
            (
                ChildScheduled(at=T0, step=1, name="resize", child_id="w:1"),
                "child workflow 'resize'",
            ),
            (CustomStatusSet(at=T0, step=1, value="x"), "set_status()"),
            (scheduled(1, "notify", "x"), "activity 'notify'"),
        ],
    )
    def test_other_command_at_a_recorded_step_is_nondeterministic(self, recorded, describe):
        """Each scheduling kind is checked: a timer where the journal has another kind fails."""
        with pytest.raises(NondeterminismError) as info:
            WorkflowExecutor(nap, "w").replay([started("nap", 30), recorded])
        assert (info.value.step, info.value.recorded, info.value.attempted) == (
            1,
            describe,
            "a timer",
        )

    def test_wait_on_another_name_is_nondeterministic(self):
        """The event name is part of a wait's identity."""
        history = [started("approval"), EventWaitStarted(at=T0, step=1, name="reject")]
        with pytest.raises(NondeterminismError) as info:
            WorkflowExecutor(approval, "w").replay(history)
        assert info.value.recorded == "wait_event('reject')"
        assert info.value.attempted == "wait_event('approve')"

    def test_firing_of_a_timer_the_code_no_longer_reaches_is_nondeterministic(self):
        """A recorded timer the code stopped issuing fails replay, fired or not."""

        async def changed_fn(seconds: float) -> float:
            return seconds

        changed = WorkflowDef(changed_fn, name="nap", version="1")  # the changed code

        history = [
            started("nap", 30),
            TimerScheduled(at=T0, step=1, fire_at=T0 + 30),
            fired(1, at=T0 + 30),
        ]
        with pytest.raises(NondeterminismError) as info:
            WorkflowExecutor(changed, "w").replay(history)
        assert (info.value.step, info.value.recorded) == (1, "a timer")
