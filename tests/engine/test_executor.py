"""The executor, driven synchronously from hand-made histories: no event loop, no I/O."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

import flowcore
from flowcore import ActivityError, NondeterminismError, WorkflowDef, activity, workflow
from flowcore.engine.commands import CompleteWorkflow, FailWorkflow, ScheduleActivity
from flowcore.engine.executor import WorkflowExecutor
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
        assert kinds(ex.start(started("fan_pairs", 3))) == ["1:reserve", "2:reserve", "3:reserve"]
        assert [c.args for c in ex.apply(completed(2, "a1"))] == [("b1",)]

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
