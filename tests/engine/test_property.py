"""Property tests: random workflow programs, random completion orders, replay of every prefix.

A program is a list of ops, encoded as JSON so that it travels as the workflow's payload:

* ``["act", i, x]`` awaits ``ACTIVITIES[i](x)``;
* ``["acts", [[i, x], ...]]`` gathers plain activity calls;
* ``["gather", [program, ...]]`` gathers sub-coroutines, each running a program;
* ``["try", program, [i, x]]`` runs a program and, if an ActivityError escapes it, awaits
  ``ACTIVITIES[i](x)`` as compensation.

Gathers and trys nest at most ``MAX_DEPTH`` deep. ``prop_fail`` always raises, so programs also
exercise failed activities, failing gathers whose other branches run on, and caught errors.

A live run drives the executor the way the runtime does: while activities are pending, hypothesis
picks which one reports next, and whether that report is a failed attempt (journaled, retried, not
fed to the executor) or the final outcome. The history is recorded as the runtime records it: the
outcome, then one ``activity_scheduled`` per new schedule in command order, then the terminal
event. Replay of every prefix of that history must agree with the live run. No event loop.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import flowcore
from flowcore import ActivityError, activity, serde, workflow
from flowcore.engine.commands import Command, CompleteWorkflow, FailWorkflow, ScheduleActivity
from flowcore.engine.events import (
    ActivityAttemptFailed,
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    Event,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowStarted,
)
from flowcore.engine.executor import WorkflowExecutor
from flowcore.errors import FailureInfo
from tests.helpers import T0

MAX_DEPTH = 3
"""How deep gathers of sub-coroutines and trys may nest."""
MAX_ACTIVITIES = 24
"""Upper bound on the activity calls of one program (keeps the quadratic prefix checks fast)."""
MAX_RETRIES = 2
"""Failed attempts journaled at most per activity before its outcome."""
EXAMPLES = 150
"""Examples per property; the three properties together run in a few seconds."""
WORKFLOW_ID = "prop-1"
FLAKY = FailureInfo(type_name="builtins.ConnectionError", message="flaky")


@activity(name="prop_echo")
def prop_echo(x: int) -> int:
    return x


@activity(name="prop_negate")
def prop_negate(x: int) -> int:
    return -x


@activity(name="prop_show")
def prop_show(x: int) -> str:
    return f"<{x}>"


@activity(name="prop_fail")
def prop_fail(x: int) -> int:
    raise ValueError(f"no {x}")


ACTIVITIES = (prop_echo, prop_negate, prop_show, prop_fail)


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
            case ["try", body, [index, arg]]:
                try:
                    results.append(await run_program(body))
                except ActivityError:
                    results.append(["caught", await ACTIVITIES[index](arg)])
            case _:
                raise AssertionError(f"bad op {op!r}")
    return results


@workflow(name="prop_program")
async def prop_program(program: list[Any]) -> list[Any]:
    return await run_program(program)


class EscapedError(Exception):
    """In the model: an activity failure escaping the program being evaluated."""


def model_call(index: int, arg: int) -> Any:
    """Run an activity's function directly; its failure escapes as EscapedError."""
    try:
        return ACTIVITIES[index].fn(arg)
    except ValueError:
        raise EscapedError from None


def model_all(thunks: list[Any]) -> list[Any]:
    """Run every branch of a gather (each to its own end); fail if any of them failed."""
    values, failed = [], False
    for thunk in thunks:
        try:
            values.append(thunk())
        except EscapedError:
            failed = True
    if failed:
        raise EscapedError
    return values


def evaluate(program: list[Any]) -> list[Any]:
    """What a program returns, computed directly, or EscapedError if an activity error escapes.

    The outcome does not depend on completion order: a gather fails if any branch fails (each
    branch runs on its own), and a sequence stops at its first failing op.
    """
    results: list[Any] = []
    for op in program:
        match op:
            case ["act", index, arg]:
                results.append(model_call(index, arg))
            case ["acts", calls]:
                results.append(model_all([lambda i=i, x=x: model_call(i, x) for i, x in calls]))
            case ["gather", branches]:
                results.append(model_all([lambda b=b: evaluate(b) for b in branches]))
            case ["try", body, [index, arg]]:
                try:
                    results.append(evaluate(body))
                except EscapedError:
                    results.append(["caught", model_call(index, arg)])
    return results


@st.composite
def programs(draw: st.DrawFn) -> list[Any]:
    """Programs nested at most MAX_DEPTH deep, with at most MAX_ACTIVITIES activity calls."""
    budget = MAX_ACTIVITIES

    def call() -> list[Any]:
        nonlocal budget
        budget -= 1
        return [draw(st.integers(0, len(ACTIVITIES) - 1)), draw(st.integers(-9, 99))]

    def program(depth: int) -> list[Any]:
        ops: list[Any] = []
        for _ in range(draw(st.integers(0, 4))):
            nested = depth < MAX_DEPTH
            kind = draw(st.sampled_from(["act", "acts", "gather", "try"] if nested else ["act"]))
            if kind == "act" and budget > 0:
                ops.append(["act", *call()])
            elif kind == "acts":
                count = draw(st.integers(0, min(3, budget)))
                ops.append(["acts", [call() for _ in range(count)]])
            elif kind == "gather":
                count = draw(st.integers(0, 3))
                ops.append(["gather", [program(depth + 1) for _ in range(count)]])
            elif kind == "try" and budget > 0:
                handler = call()
                ops.append(["try", program(depth + 1), handler])
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
    terminal: CompleteWorkflow | FailWorkflow


def live_run(program: list[Any], data: st.DataObject) -> LiveRun:
    """Drive a fresh executor to its end, with outcomes and retries in a drawn order."""
    executor = WorkflowExecutor(prop_program, WORKFLOW_ID)
    started = WorkflowStarted(at=T0, name="prop_program", version="1", input=program)
    history: list[Event] = [started]
    issued: list[list[Command]] = []
    schedules: dict[int, ScheduleActivity] = {}
    pending: dict[int, ScheduleActivity] = {}
    attempts: dict[int, int] = {}
    terminal: list[CompleteWorkflow | FailWorkflow] = []

    def record(commands: list[Command], at: float) -> None:
        """Journal what the commands cause, as the runtime's _carry_out does."""
        issued.append(commands)
        for cmd in commands:
            match cmd:
                case ScheduleActivity():
                    assert not cmd.recorded
                    assert cmd.step not in schedules, f"step {cmd.step} issued twice"
                    assert cmd.step == len(schedules) + 1, f"step {cmd.step} out of sequence"
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
                case CompleteWorkflow():
                    terminal.append(cmd)
                    history.append(WorkflowCompleted(at=at, result=cmd.result))
                case FailWorkflow():
                    terminal.append(cmd)
                    history.append(WorkflowFailed(at=at, failure=cmd.failure))
            issued.append([])

    record(executor.start(started), T0)
    while not executor.done:
        assert pending, "the workflow waits for nothing but has not finished"
        step = data.draw(st.sampled_from(sorted(pending)), label="reports next")
        at = T0 + len(history)
        attempt = attempts[step] = attempts.get(step, 0) + 1
        if attempt <= MAX_RETRIES and data.draw(st.booleans(), label="attempt fails"):
            retry = ActivityAttemptFailed(
                at=at, step=step, attempt=attempt, failure=FLAKY, retry_at=at + 1
            )
            history.append(retry)
            issued.append([])  # the runtime journals it without feeding the executor
            continue
        cmd = pending.pop(step)
        outcome: ActivityCompleted | ActivityFailed
        try:
            value = cmd.activity.fn(*cmd.args, **cmd.kwargs)
        except ValueError as exc:
            failure = FailureInfo.from_exception(exc)
            outcome = ActivityFailed(at=at, step=step, failure=failure, attempts=attempt)
        else:
            outcome = ActivityCompleted(
                at=at, step=step, result=serde.encode(value), attempt=attempt
            )
        history.append(outcome)
        record(executor.apply(outcome), at)
    # activities still pending belong to gather branches orphaned by the workflow's end
    assert len(terminal) == 1
    assert len(issued) == len(history)
    return LiveRun(history, issued, schedules, terminal[0])


def expected_replay(run: LiveRun, cut: int) -> list[Command]:
    """What replaying ``run.history[:cut]`` must return, derived from the live run."""
    prefix = run.history[:cut]
    scheduled = {e.step for e in prefix if isinstance(e, ActivityScheduled)}
    finished = {e.step for e in prefix if isinstance(e, ActivityCompleted | ActivityFailed)}
    # the last event the executor was fed: what it issued then is all the code did after it
    fed = max(
        i
        for i, e in enumerate(prefix)
        if isinstance(e, WorkflowStarted | ActivityCompleted | ActivityFailed)
    )
    fresh = [
        cmd
        for cmd in run.issued[fed]
        if not (isinstance(cmd, ScheduleActivity) and cmd.step in scheduled)
    ]
    if any(isinstance(cmd, CompleteWorkflow | FailWorkflow) for cmd in fresh):
        return fresh  # a finished workflow dispatches nothing, in flight or not
    in_flight = [
        dataclasses.replace(run.schedules[step], recorded=True)
        for step in sorted(scheduled - finished)
    ]
    return fresh + in_flight


def show(commands: list[Command]) -> list[Any]:
    """A compact view for assertion messages: (step, name, encoded args, recorded) or the end."""
    out: list[Any] = []
    for cmd in commands:
        match cmd:
            case ScheduleActivity():
                out.append((cmd.step, cmd.activity.name, cmd.encoded_args, cmd.recorded))
            case CompleteWorkflow():
                out.append(cmd)
            case FailWorkflow():
                out.append(("FailWorkflow", str(cmd.failure)))
    return out


class TestReplayProperties:
    @settings(max_examples=EXAMPLES, deadline=None)
    @given(programs(), st.data())
    def test_every_prefix_replays_to_the_live_commands(self, program, data):
        """Replaying any prefix returns in-flight steps as recorded, plus unjournaled new ones."""
        run = live_run(program, data)
        for cut in range(1, len(run.history) + 1):
            got = WorkflowExecutor(prop_program, WORKFLOW_ID).replay(run.history[:cut])
            want = expected_replay(run, cut)
            assert got == want, (cut, show(got), show(want))

    @settings(max_examples=EXAMPLES, deadline=None)
    @given(programs(), st.data())
    def test_full_history_replays_to_the_live_outcome(self, program, data):
        """Replaying a whole history ends as the live run did, which the model predicts."""
        run = live_run(program, data)
        replayed = WorkflowExecutor(prop_program, WORKFLOW_ID).replay(run.history)
        assert replayed == [run.terminal]
        try:
            expected = evaluate(program)
        except EscapedError:
            assert isinstance(run.terminal, FailWorkflow)
            assert run.terminal.failure.short_type == "ActivityError"
            assert run.terminal.failure.cause is not None
            assert run.terminal.failure.cause.type_name == "builtins.ValueError"
        else:
            assert run.terminal == CompleteWorkflow(result=serde.encode(expected))

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
