"""Property tests: random workflow programs, random completion orders, replay of every prefix.

A program is a list of ops, encoded as JSON so it travels as the workflow's payload:

* ``["act", i, x]`` awaits activity ``ACTIVITIES[i](x)``;
* ``["acts", [[i, x], ...]]`` gathers plain activity calls;
* ``["gather", [program, ...]]`` gathers sub-coroutines, each running a program (nested up to
  ``MAX_DEPTH`` gathers deep).

A live run drives the executor the way the runtime does: whenever activities are pending,
hypothesis picks which one completes next, and the history is recorded as the runtime records it
(the outcome, then one ``activity_scheduled`` per new schedule in command order, and
``workflow_completed`` at the end). Replay of every prefix of that history must then agree with
the live run. No event loop is involved.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import flowcore
from flowcore import activity, serde, workflow
from flowcore.engine.commands import Command, CompleteWorkflow, ScheduleActivity
from flowcore.engine.events import (
    ActivityCompleted,
    ActivityScheduled,
    Event,
    WorkflowCompleted,
    WorkflowStarted,
)
from flowcore.engine.executor import WorkflowExecutor
from tests.helpers import T0

MAX_DEPTH = 3
"""How many gathers of sub-coroutines may nest."""
MAX_ACTIVITIES = 24
"""Upper bound on the activity calls of one program (keeps the quadratic prefix checks fast)."""
EXAMPLES = 150
"""Examples per property; the three properties together run in a few seconds."""
WORKFLOW_ID = "prop-1"


@activity(name="prop_echo")
def prop_echo(x: int) -> int:
    return x


@activity(name="prop_negate")
def prop_negate(x: int) -> int:
    return -x


@activity(name="prop_show")
def prop_show(x: int) -> str:
    return f"<{x}>"


ACTIVITIES = (prop_echo, prop_negate, prop_show)


async def run_program(program: list[Any]) -> list[Any]:
    """Interpret a program inside a workflow: one result per op, in op order."""
    results: list[Any] = []
    for op in program:
        match op:
            case ["act", index, arg]:
                results.append(await ACTIVITIES[index](arg))
            case ["acts", calls]:
                results.append(await flowcore.gather(*(ACTIVITIES[i](x) for i, x in calls)))
            case ["gather", branches]:
                results.append(await flowcore.gather(*(run_program(b) for b in branches)))
            case _:
                raise AssertionError(f"bad op {op!r}")
    return results


@workflow(name="prop_program")
async def prop_program(program: list[Any]) -> list[Any]:
    return await run_program(program)


def evaluate(program: list[Any]) -> Any:
    """What a program returns, computed directly (the model the engine must agree with)."""
    results: list[Any] = []
    for op in program:
        match op:
            case ["act", index, arg]:
                results.append(ACTIVITIES[index].fn(arg))
            case ["acts", calls]:
                results.append([ACTIVITIES[i].fn(x) for i, x in calls])
            case ["gather", branches]:
                results.append([evaluate(b) for b in branches])
    return serde.encode(results)


@st.composite
def programs(draw: st.DrawFn) -> list[Any]:
    """Programs nested at most MAX_DEPTH gathers deep, with at most MAX_ACTIVITIES calls."""
    budget = MAX_ACTIVITIES

    def call() -> list[Any]:
        nonlocal budget
        budget -= 1
        return [draw(st.integers(0, len(ACTIVITIES) - 1)), draw(st.integers(-9, 99))]

    def program(depth: int) -> list[Any]:
        ops: list[Any] = []
        for _ in range(draw(st.integers(0, 4))):
            kinds = ["act", "acts"] if depth == MAX_DEPTH else ["act", "acts", "gather"]
            kind = draw(st.sampled_from(kinds))
            if kind == "act" and budget > 0:
                ops.append(["act", *call()])
            elif kind == "acts":
                count = draw(st.integers(0, min(3, budget)))
                ops.append(["acts", [call() for _ in range(count)]])
            elif kind == "gather":
                count = draw(st.integers(0, 3))
                ops.append(["gather", [program(depth + 1) for _ in range(count)]])
        return ops

    return program(0)


@dataclass
class LiveRun:
    """A history recorded from a live run, and what the executor returned at each event."""

    history: list[Event]
    issued: list[list[Command]]
    """``issued[i]``: the commands returned when ``history[i]`` was processed ([] if not fed)."""
    schedules: dict[int, ScheduleActivity]
    """Every schedule the live run issued, by step."""
    result: Any


def live_run(program: list[Any], data: st.DataObject) -> LiveRun:
    """Drive a fresh executor to completion, completing pending activities in a drawn order."""
    executor = WorkflowExecutor(prop_program, WORKFLOW_ID)
    started = WorkflowStarted(at=T0, name="prop_program", version="1", input=program)
    history: list[Event] = [started]
    issued: list[list[Command]] = []
    schedules: dict[int, ScheduleActivity] = {}
    pending: dict[int, ScheduleActivity] = {}
    result: Any = None

    def record(commands: list[Command], at: float) -> None:
        nonlocal result
        issued.append(commands)
        for cmd in commands:
            if isinstance(cmd, ScheduleActivity):
                assert not cmd.recorded
                assert cmd.step not in schedules, f"step {cmd.step} issued twice"
                schedules[cmd.step] = pending[cmd.step] = cmd
                history.append(
                    ActivityScheduled(
                        at=at,
                        step=cmd.step,
                        name=cmd.activity.name,
                        args=cmd.encoded_args,
                        kwargs=cmd.encoded_kwargs,
                    )
                )
                issued.append([])
            else:
                assert isinstance(cmd, CompleteWorkflow), cmd
                result = cmd.result
                history.append(WorkflowCompleted(at=at, result=cmd.result))
                issued.append([])

    record(executor.start(started), T0)
    while not executor.done:
        assert pending, "the workflow waits for nothing but has not finished"
        step = data.draw(st.sampled_from(sorted(pending)), label="completes next")
        cmd = pending.pop(step)
        at = T0 + len(history)
        value = cmd.activity.fn(*cmd.args, **cmd.kwargs)
        outcome = ActivityCompleted(at=at, step=step, result=serde.encode(value))
        history.append(outcome)
        record(executor.apply(outcome), at)
    assert not pending, "the workflow finished with activities in flight"
    assert len(issued) == len(history)
    return LiveRun(history, issued, schedules, result)


def expected_replay(run: LiveRun, cut: int) -> list[Command]:
    """What replaying ``run.history[:cut]`` must return, derived from the live run."""
    prefix = run.history[:cut]
    scheduled = {e.step for e in prefix if isinstance(e, ActivityScheduled)}
    finished = {e.step for e in prefix if isinstance(e, ActivityCompleted)}
    # the last event the executor was fed: what it issued then is all the code did after it
    fed = max(i for i, e in enumerate(prefix) if isinstance(e, WorkflowStarted | ActivityCompleted))
    fresh = [
        cmd
        for cmd in run.issued[fed]
        if not (isinstance(cmd, ScheduleActivity) and cmd.step in scheduled)
    ]
    in_flight = [
        dataclasses.replace(run.schedules[step], recorded=True)
        for step in sorted(scheduled - finished)
    ]
    return fresh + in_flight


def show(commands: list[Command]) -> list[Any]:
    """A compact view for assertion messages: (step, name, encoded args, recorded) or result."""
    return [
        (c.step, c.activity.name, c.encoded_args, c.recorded)
        if isinstance(c, ScheduleActivity)
        else c
        for c in commands
    ]


class TestReplayProperties:
    @settings(max_examples=EXAMPLES, deadline=None)
    @given(programs(), st.data())
    def test_every_prefix_replays_to_the_live_commands(self, program, data):
        """Replaying any prefix returns in-flight schedules as recorded plus the missing new ones."""
        run = live_run(program, data)
        for cut in range(1, len(run.history) + 1):
            got = WorkflowExecutor(prop_program, WORKFLOW_ID).replay(run.history[:cut])
            want = expected_replay(run, cut)
            assert got == want, (cut, show(got), show(want))

    @settings(max_examples=EXAMPLES, deadline=None)
    @given(programs(), st.data())
    def test_full_history_replays_to_the_live_result(self, program, data):
        """Replaying a whole history completes with the live run's result, which the model predicts."""
        run = live_run(program, data)
        assert run.result == evaluate(program)
        replayed = WorkflowExecutor(prop_program, WORKFLOW_ID).replay(run.history)
        assert replayed == [CompleteWorkflow(result=run.result)]

    @settings(max_examples=EXAMPLES, deadline=None)
    @given(programs(), st.data())
    def test_replay_then_apply_continues_like_the_live_run(self, program, data):
        """After replaying any prefix, applying the rest of the history issues the live commands."""
        run = live_run(program, data)
        for cut in range(1, len(run.history) + 1):
            executor = WorkflowExecutor(prop_program, WORKFLOW_ID)
            executor.replay(run.history[:cut])
            for index in range(cut, len(run.history)):
                got = executor.apply(run.history[index])
                assert got == run.issued[index], (cut, index, show(got), show(run.issued[index]))
            assert executor.done
