"""Property tests: random workflow programs, random report orders, replay of every prefix.

A program is a list of ops, encoded as JSON so that it travels as the workflow's payload:

* ``["act", i, x]`` awaits ``ACTIVITIES[i](x)``;
* ``["acts", [[i, x], ...]]`` gathers plain activity calls;
* ``["gather", [program, ...]]`` gathers sub-coroutines, each running a program;
* ``["try", program, [i, x]]`` runs a program and, if an ActivityError escapes it, awaits
  ``ACTIVITIES[i](x)`` as compensation;
* ``["sleep", s]`` sleeps ``s`` seconds on a durable timer;
* ``["wait", name, timeout]`` waits for an external event (``timeout`` seconds, or None);
* ``["first", name, timeout, s]`` races a wait for ``name`` (always with a timeout, so that a
  losing wait is disarmed by a visible CancelTimer) against ``sleep(s)``.

Gathers and trys nest at most ``MAX_DEPTH`` deep. ``prop_fail`` always raises, so programs also
exercise failed activities, failing gathers whose other branches run on, and caught errors.

A live run drives the executor the way the runtime does: while work is pending, hypothesis picks
what reports next: an activity (a failed attempt, journaled and retried but not fed to the
executor, or its final outcome), an armed timer or event-wait deadline firing, or an external
event (``EventReceived`` with a unique payload, for a name someone may or may not wait on). The
history is recorded as the runtime records it: the reported event, then one scheduling row per
new command in command order, then the terminal event; cancel commands only disarm. The driver
keeps its own model of who waits for which name and what is buffered, so that it knows, from the
commands alone, which steps are still in flight after each event. Replay of every prefix of that
history must agree with the live run. No event loop.

Op names: with ``programs(unique_args=True)`` every activity call has its own argument, which
identifies the call across runs; ``model_ops`` derives each call's op from the program text alone
(the main task's n-th command is ``"n"``, branch i of the gather/first issued as op K names its
commands ``K.i.1``, ``K.i.2`` ...). Live runs in any report order, replays of any prefix, and
recoveries from any commit that then go on in another order must all give each call that op.
"""

from __future__ import annotations

import dataclasses
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import flowcore
from flowcore import ActivityError, activity, serde, workflow
from flowcore.engine.commands import (
    CancelTimer,
    Command,
    CompleteWorkflow,
    FailWorkflow,
    ScheduleActivity,
    StartTimer,
    WaitForEvent,
)
from flowcore.engine.events import (
    ActivityAttemptFailed,
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    Event,
    EventReceived,
    EventWaitStarted,
    TimerFired,
    TimerScheduled,
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
MAX_TIMED = 8
"""Upper bound on the sleep, wait and first ops of one program."""
MAX_RETRIES = 2
"""Failed attempts journaled at most per activity before its outcome."""
MAX_EVENTS = 6
"""External events the driver sends at random points (more are sent if a wait needs one)."""
NAMES = ("a", "b")
"""Event names the programs wait on (and the driver sends)."""
EXAMPLES = 150
"""Examples per property; the three properties together run in a few seconds."""
WORKFLOW_ID = "prop-1"
FLAKY = FailureInfo(type_name="builtins.ConnectionError", message="flaky")
FIRST_PAYLOAD = 1000
"""Event payloads are FIRST_PAYLOAD, FIRST_PAYLOAD + 1 ...: each identifies one event."""


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
            case ["sleep", seconds]:
                results.append(await flowcore.sleep(seconds))
            case ["wait", name, timeout]:
                results.append(await flowcore.wait_event(name, timeout=timeout))
            case ["first", name, timeout, seconds]:
                race = flowcore.first(
                    flowcore.wait_event(name, timeout=timeout), flowcore.sleep(seconds)
                )
                results.append(list(await race))
            case _:
                raise AssertionError(f"bad op {op!r}")
    return results


@workflow(name="prop_program")
async def prop_program(program: list[Any]) -> list[Any]:
    return await run_program(program)


class EscapedError(Exception):
    """In the model: an activity failure escaping the program being evaluated."""


@dataclass(frozen=True)
class Timed:
    """In the model: the result of an op whose value depends on when events and timers came."""

    op: str
    """wait (with or without a timeout) or first."""
    timeout: int | None = None


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

    The outcome does not depend on report order: a gather fails if any branch fails (each
    branch runs on its own), a sequence stops at its first failing op, and waits and timers never
    fail. Only the values of waits and races do; the model leaves a ``Timed`` in their place.
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
            case ["sleep", _]:
                results.append(None)
            case ["wait", _, timeout]:
                results.append(Timed("wait", timeout))
            case ["first", _, timeout, _]:
                results.append(Timed("first", timeout))
    return results


FAIL = ACTIVITIES.index(prop_fail)


def model_ops(program: list[Any]) -> dict[int, str]:
    """Argument -> op of every call a unique-argument program may issue, from its text alone.

    Each task counts its commands: activities, sleeps, waits, and each non-empty gather or first
    (an empty gather issues nothing). Branch i of the gather issued as op ``K`` is task ``K.i``;
    ``try`` runs its body in the same task, and its handler (issued only if an ActivityError
    escapes the body, which ``evaluate`` also decides) is the task's next command after the op
    the error escaped from. Calls the program never reaches still get the op they would have.
    """
    model = OpModel()
    model.run(program, Counter(""))
    return model.ops


@dataclass
class Counter:
    """In the op model: one task, and how many commands it issued."""

    path: str
    issued: int = 0

    def next_op(self) -> str:
        self.issued += 1
        return f"{self.path}.{self.issued}" if self.path else str(self.issued)


@dataclass
class OpModel:
    ops: dict[int, str] = field(default_factory=dict)

    def run(self, program: list[Any], task: Counter) -> bool:
        """Name the calls of ``program`` in ``task``; True if an error escapes (which ends it)."""
        return any(self.step(op, task) for op in program)

    def step(self, op: list[Any], task: Counter) -> bool:
        match op:
            case ["act", index, arg]:
                self.ops[arg] = task.next_op()
                return index == FAIL
            case ["acts", calls] if calls:
                group = task.next_op()
                for branch, (_, arg) in enumerate(calls, 1):
                    self.ops[arg] = f"{group}.{branch}.1"
                return any(index == FAIL for index, _ in calls)
            case ["gather", branches] if branches:
                group = task.next_op()
                # every branch runs on to its own end, even once another one failed
                escaped = [self.run(b, Counter(f"{group}.{i}")) for i, b in enumerate(branches, 1)]
                return any(escaped)
            case ["try", body, [index, arg]] if self.run(body, task):
                self.ops[arg] = task.next_op()  # the handler
                return index == FAIL
            case ["sleep" | "wait" | "first", *_]:  # one command each
                task.next_op()
        return False  # also an empty gather (no command) and a try whose body succeeded


OP_FORMAT = re.compile(r"[1-9][0-9]*(\.[1-9][0-9]*\.[1-9][0-9]*)*")
"""An op: the main task's command number, then (branch, command number) per nested gather."""


def call_ops(commands: Any) -> dict[int, str]:
    """Argument -> op of the ScheduleActivity commands (unique arguments), checked consistent."""
    out: dict[int, str] = {}
    for cmd in commands:
        if isinstance(cmd, ScheduleActivity):
            [arg] = cmd.args
            assert out.setdefault(arg, cmd.op) == cmd.op, (arg, out[arg], cmd.op)
    return out


def assert_same_names(one: dict[int, str], other: dict[int, str]) -> None:
    """Two runs agree: a call both issued has one op, and an op both used names one call."""
    for arg in one.keys() & other.keys():
        assert one[arg] == other[arg], f"call {arg}: op {one[arg]!r} vs {other[arg]!r}"
    by_op = {op: arg for arg, op in one.items()}
    for arg, op in other.items():
        assert by_op.get(op, arg) == arg, f"op {op!r}: call {by_op[op]} vs call {arg}"


def is_payload(value: Any) -> bool:
    return isinstance(value, int) and value >= FIRST_PAYLOAD


def matches(model: Any, actual: Any, payloads: list[int]) -> bool:
    """Whether an encoded result fits the model; collect the event payloads it holds."""
    match model:
        case Timed("wait", timeout):
            if is_payload(actual):
                payloads.append(actual)
                return True
            return actual is None and timeout is not None  # only a timeout returns None
        case Timed("first"):
            # the timer won, or the wait's own deadline came first, or an event
            if actual in ([1, None], [0, None]):
                return True
            return actual[0] == 0 and matches(Timed("wait"), actual[1], payloads)
        case list():
            return (
                isinstance(actual, list)
                and len(actual) == len(model)
                and all(matches(m, a, payloads) for m, a in zip(model, actual, strict=True))
            )
        case _:
            return model == actual


def timed_op(draw: st.DrawFn, kind: str) -> list[Any]:
    """A sleep, wait or first op with drawn durations (a first's wait always has a timeout)."""
    name = draw(st.sampled_from(NAMES))
    seconds = draw(st.integers(1, 90))
    if kind == "sleep":
        return ["sleep", seconds]
    if kind == "wait":
        return ["wait", name, draw(st.none() | st.integers(1, 90))]
    return ["first", name, draw(st.integers(1, 90)), seconds]


@st.composite
def programs(draw: st.DrawFn, *, unique_args: bool = False) -> list[Any]:
    """Programs nested at most MAX_DEPTH deep, with at most MAX_ACTIVITIES activity calls and
    MAX_TIMED sleeps, waits and firsts. With ``unique_args`` the k-th call written in the program
    gets argument k, so an argument identifies one call (otherwise arguments are drawn)."""
    budget = MAX_ACTIVITIES
    timed = MAX_TIMED

    def call() -> list[Any]:
        nonlocal budget
        budget -= 1
        index = draw(st.integers(0, len(ACTIVITIES) - 1))
        return [index, MAX_ACTIVITIES - budget if unique_args else draw(st.integers(-9, 99))]

    def program(depth: int) -> list[Any]:
        nonlocal timed
        ops: list[Any] = []
        for _ in range(draw(st.integers(0, 4))):
            nested = ["acts", "gather", "try"] if depth < MAX_DEPTH else []
            kind = draw(st.sampled_from(["act", *nested, "sleep", "wait", "first"]))
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
            elif kind in ("sleep", "wait", "first") and timed > 0:
                timed -= 1
                ops.append(timed_op(draw, kind))
        return ops

    return program(0)


Scheduling = ScheduleActivity | StartTimer | WaitForEvent


@dataclass
class LiveRun:
    """A history recorded from a live run, and what the executor returned at each event."""

    history: list[Event]
    issued: list[list[Command]]
    """``issued[i]``: the commands returned when ``history[i]`` was processed ([] if not fed)."""
    schedules: dict[int, Scheduling]
    """Every scheduling command the live run issued, by step."""
    ended: dict[int, int]
    """Step -> index of the fed event after which it no longer waited (finished or disarmed)."""
    terminal: CompleteWorkflow | FailWorkflow


@dataclass
class Driver:
    """The runtime's side of a live run: journals, pending work, and a model of event delivery."""

    executor: WorkflowExecutor
    history: list[Event] = field(default_factory=list)
    issued: list[list[Command]] = field(default_factory=list)
    schedules: dict[int, Scheduling] = field(default_factory=dict)
    ended: dict[int, int] = field(default_factory=dict)
    terminal: list[CompleteWorkflow | FailWorkflow] = field(default_factory=list)
    pending: dict[int, ScheduleActivity] = field(default_factory=dict)
    """Activities running."""
    attempts: dict[int, int] = field(default_factory=dict)
    armed: dict[int, float] = field(default_factory=dict)
    """Timers and event-wait deadlines that may fire: step -> fire_at."""
    waits: dict[str, deque[int]] = field(default_factory=dict)
    """The model: per event name, the steps waiting for it, first in first out."""
    inbox: dict[str, deque[int]] = field(default_factory=dict)
    """The model: per event name, payloads sent while nobody waited."""
    sent: int = 0

    def feed(self, event: Event) -> None:
        """Journal ``event``, apply it, and journal what its commands record."""
        index = len(self.history)
        self.history.append(event)
        expect_cancel: int | None = None
        match event:
            case EventReceived(name=name, payload=payload):
                waiting = self.waits.get(name)
                if waiting:
                    step = waiting.popleft()
                    self.ended[step] = index
                    if step in self.armed:  # its deadline must be disarmed
                        expect_cancel = step
                else:
                    self.inbox.setdefault(name, deque()).append(payload)
            case TimerFired(step=step):
                del self.armed[step]
                self.ended[step] = index
                self._unwait(step)
            case ActivityCompleted(step=step) | ActivityFailed(step=step):
                self.ended[step] = index
        commands = self.executor.apply(event) if index else self.executor.start(event)
        if expect_cancel is not None:
            assert CancelTimer(step=expect_cancel) in commands, (event, commands)
        self.record(commands, event.at, index)

    def record(self, commands: list[Command], at: float, index: int) -> None:
        """Journal what the commands cause, as the runtime's _carry_out does."""
        self.issued.append(commands)
        for cmd in commands:
            match cmd:
                case ScheduleActivity() | StartTimer() | WaitForEvent():
                    assert not cmd.recorded
                    assert cmd.step not in self.schedules, f"step {cmd.step} issued twice"
                    assert cmd.step == len(self.schedules) + 1, f"step {cmd.step} out of order"
                    self.schedules[cmd.step] = cmd
                    self.journal(self.schedule(cmd, at, index))
                case CancelTimer(step=step):  # carried out, not journaled
                    assert step in self.armed, f"CancelTimer({step}) for nothing armed"
                    del self.armed[step]
                    self.ended.setdefault(step, index)
                    self._unwait(step)
                case CompleteWorkflow() | FailWorkflow():
                    self.terminal.append(cmd)
                    self.journal(terminal_event(cmd, at))
                case _:
                    raise AssertionError(f"unexpected command {cmd!r}")

    def journal(self, row: Event) -> None:
        """Journal a row the executor is not fed."""
        self.history.append(row)
        self.issued.append([])

    def schedule(self, cmd: Scheduling, at: float, index: int) -> Event:
        """The scheduling row of ``cmd``; start tracking its work."""
        match cmd:
            case ScheduleActivity():
                self.pending[cmd.step] = cmd
                return ActivityScheduled(
                    at=at,
                    step=cmd.step,
                    name=cmd.activity.name,
                    args=cmd.encoded_args,
                    kwargs=cmd.encoded_kwargs,
                    op=cmd.op,  # as the runtime's _scheduling_event records it
                )
            case StartTimer():
                self.armed[cmd.step] = cmd.fire_at
                return TimerScheduled(at=at, step=cmd.step, fire_at=cmd.fire_at)
            case WaitForEvent():
                buffered = self.inbox.get(cmd.name)
                if buffered:  # satisfied at once: no deadline to arm
                    buffered.popleft()
                    assert cmd.deadline is None
                    self.ended[cmd.step] = index
                else:
                    self.waits.setdefault(cmd.name, deque()).append(cmd.step)
                    if cmd.deadline is not None:
                        self.armed[cmd.step] = cmd.deadline
                return EventWaitStarted(at=at, step=cmd.step, name=cmd.name, deadline=cmd.deadline)

    def _unwait(self, step: int) -> None:
        cmd = self.schedules[step]
        if isinstance(cmd, WaitForEvent) and step in self.waits.get(cmd.name, ()):
            self.waits[cmd.name].remove(step)

    def waited_names(self) -> list[str]:
        return sorted(name for name, steps in self.waits.items() if steps)


def terminal_event(cmd: CompleteWorkflow | FailWorkflow, at: float) -> Event:
    if isinstance(cmd, CompleteWorkflow):
        return WorkflowCompleted(at=at, result=cmd.result)
    return WorkflowFailed(at=at, failure=cmd.failure)


def live_run(program: list[Any], data: st.DataObject) -> LiveRun:
    """Drive a fresh executor to its end, with reports, retries and events in a drawn order."""
    driver = Driver(WorkflowExecutor(prop_program, WORKFLOW_ID))
    driver.feed(WorkflowStarted(at=T0, name="prop_program", version="1", input=program))
    drive(driver, data)
    return finish(driver)


def drive(driver: Driver, data: st.DataObject) -> None:
    """Report work, timers and events in a drawn order until the workflow ends."""
    while not driver.executor.done:
        at = T0 + len(driver.history)
        choices = [
            *(["activity"] if driver.pending else []),
            *(["timer"] if driver.armed else []),
            *(["event"] if driver.sent < MAX_EVENTS else []),
        ]
        if not choices:
            names = driver.waited_names()
            assert names, "the workflow waits for nothing but has not finished"
            choices = ["event"]
        else:
            names = list(NAMES)
        match data.draw(st.sampled_from(choices), label="reports next"):
            case "activity":
                report_activity(driver, data, at)
            case "timer":
                step = data.draw(st.sampled_from(sorted(driver.armed)), label="fires")
                driver.feed(TimerFired(at=at, step=step))
            case _:
                name = data.draw(st.sampled_from(names), label="event")
                driver.feed(EventReceived(at=at, name=name, payload=FIRST_PAYLOAD + driver.sent))
                driver.sent += 1


def finish(driver: Driver) -> LiveRun:
    """The run a driver recorded, once its workflow ended."""
    # work still pending belongs to gather branches orphaned by the workflow's end
    assert len(driver.terminal) == 1
    assert len(driver.issued) == len(driver.history)
    return LiveRun(
        driver.history, driver.issued, driver.schedules, driver.ended, driver.terminal[0]
    )


def report_activity(driver: Driver, data: st.DataObject, at: float) -> None:
    """One pending activity reports: a failed attempt (journaled only) or its outcome."""
    step = data.draw(st.sampled_from(sorted(driver.pending)), label="activity reports")
    attempt = driver.attempts[step] = driver.attempts.get(step, 0) + 1
    if attempt <= MAX_RETRIES and data.draw(st.booleans(), label="attempt fails"):
        retry = ActivityAttemptFailed(
            at=at, step=step, attempt=attempt, failure=FLAKY, retry_at=at + 1
        )
        driver.history.append(retry)
        driver.issued.append([])  # the runtime journals it without feeding the executor
        return
    cmd = driver.pending.pop(step)
    outcome: ActivityCompleted | ActivityFailed
    try:
        value = cmd.activity.fn(*cmd.args, **cmd.kwargs)
    except ValueError as exc:
        failure = FailureInfo.from_exception(exc)
        outcome = ActivityFailed(at=at, step=step, failure=failure, attempts=attempt)
    else:
        outcome = ActivityCompleted(at=at, step=step, result=serde.encode(value), attempt=attempt)
    driver.feed(outcome)


FED = (WorkflowStarted, ActivityCompleted, ActivityFailed, TimerFired, EventReceived)
"""The events the runtime feeds to the executor (the others are bookkeeping)."""


def expected_replay(run: LiveRun, cut: int) -> list[Command]:
    """What replaying ``run.history[:cut]`` must return, derived from the live run."""
    prefix = run.history[:cut]
    journaled = {
        e.step
        for e in prefix
        if isinstance(e, ActivityScheduled | TimerScheduled | EventWaitStarted)
    }
    # the last event the executor was fed: what it issued then is all the code did after it
    fed = max(i for i, e in enumerate(prefix) if isinstance(e, FED))
    fresh = [
        cmd
        for cmd in run.issued[fed]
        # replay issues what the journal lacks, and never a cancellation (so a timer started and
        # abandoned within a torn commit comes back without its CancelTimer: its firing is
        # ignored anyway)
        if not isinstance(cmd, CancelTimer)
        and not (isinstance(cmd, Scheduling) and cmd.step in journaled)
    ]
    if any(isinstance(cmd, CompleteWorkflow | FailWorkflow) for cmd in fresh):
        return fresh  # a finished workflow dispatches nothing, in flight or not
    in_flight = [
        dataclasses.replace(run.schedules[step], recorded=True)
        for step in sorted(journaled)
        if step not in run.ended or run.ended[step] > fed  # still waited on after ``fed``
    ]
    return fresh + in_flight


def show(commands: list[Command]) -> list[Any]:
    """A compact view for assertion messages."""
    out: list[Any] = []
    for cmd in commands:
        match cmd:
            case ScheduleActivity():
                out.append((cmd.step, cmd.op, cmd.activity.name, cmd.encoded_args, cmd.recorded))
            case FailWorkflow():
                out.append(("FailWorkflow", str(cmd.failure)))
            case _:
                out.append(cmd)
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
            assert isinstance(run.terminal, CompleteWorkflow)
            payloads: list[int] = []
            assert matches(expected, run.terminal.result, payloads), run.terminal.result
            # every event is delivered to at most one wait
            assert len(payloads) == len(set(payloads)), payloads

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


def recover(run: LiveRun, cut: int, data: st.DataObject) -> tuple[list[Command], Driver]:
    """Crash with ``run.history[:cut]`` durable (``cut`` starts a commit: what that commit's
    event caused was dispatched, then lost), recover by replay, and go on in a new drawn order.

    Returns what replay dispatched, and the driver of the continuation once the workflow ended.
    """
    prefix = run.history[:cut]
    # The runtime's view of the prefix (pending work, armed timers, who waits for what), rebuilt
    # by feeding it to a live executor: by determinism it issues what the journal holds.
    driver = Driver(WorkflowExecutor(prop_program, WORKFLOW_ID))
    for event in prefix:
        if isinstance(event, FED):
            if isinstance(event, ActivityCompleted | ActivityFailed):
                del driver.pending[event.step]  # as report_activity does
            driver.feed(event)
            driver.sent += isinstance(event, EventReceived)
        elif isinstance(event, ActivityAttemptFailed):
            driver.journal(event)
            driver.attempts[event.step] = event.attempt
    assert driver.history == prefix
    executor = WorkflowExecutor(prop_program, WORKFLOW_ID)
    dispatched = executor.replay(prefix)
    assert all(getattr(cmd, "recorded", False) for cmd in dispatched), show(dispatched)
    assert {c.step for c in dispatched if isinstance(c, ScheduleActivity)} == set(driver.pending)
    driver.executor = executor
    drive(driver, data)
    return dispatched, driver


def commit_starts(run: LiveRun) -> list[int]:
    """Cuts a crash can leave: each commit starts with a reported event or a failed attempt."""
    return [
        index
        for index, event in enumerate(run.history)
        if index and isinstance(event, (*FED, ActivityAttemptFailed))
    ]


class TestOpProperties:
    @settings(max_examples=EXAMPLES, deadline=None)
    @given(programs(unique_args=True), st.data())
    def test_op_names_the_call_whatever_the_report_order(self, program, data):
        """Two live runs of one program, reported in independently drawn orders, give every
        call both issue the same op (and no op to two calls): the one the program text gives."""
        one, other = live_run(program, data), live_run(program, data)
        names = call_ops(one.schedules.values())
        assert_same_names(names, call_ops(other.schedules.values()))
        model = model_ops(program)
        for run in (one, other):
            issued = call_ops(run.schedules.values())
            assert issued == {arg: model[arg] for arg in issued}, (program, issued)

    @settings(max_examples=EXAMPLES, deadline=None)
    @given(programs(), st.data())
    def test_ops_are_distinct_within_a_run(self, program, data):
        """Within one run no two activity calls share an op (even with equal arguments), ops
        are well formed, and each journaled row holds its command's op."""
        run = live_run(program, data)
        ops = [c.op for c in run.schedules.values() if isinstance(c, ScheduleActivity)]
        assert len(ops) == len(set(ops)), ops
        assert all(OP_FORMAT.fullmatch(op) for op in ops), ops
        rows = {e.step: e.op for e in run.history if isinstance(e, ActivityScheduled)}
        assert rows == {c.step: c.op for c in run.schedules.values() if c.step in rows}
        assert rows.keys() == {
            c.step for c in run.schedules.values() if isinstance(c, ScheduleActivity)
        }

    @settings(max_examples=EXAMPLES, deadline=None)
    @given(programs(), st.data())
    def test_every_prefix_reissues_activities_with_their_live_op(self, program, data):
        """Replaying any prefix dispatches each recorded in-flight activity, and each one the
        journal lacks, with the op the live run gave it (the op its row journaled)."""
        run = live_run(program, data)
        rows = {e.step: e.op for e in run.history if isinstance(e, ActivityScheduled)}
        for cut in range(1, len(run.history) + 1):
            got = WorkflowExecutor(prop_program, WORKFLOW_ID).replay(run.history[:cut])
            for cmd in got:
                if isinstance(cmd, ScheduleActivity):
                    live = run.schedules[cmd.step]
                    assert isinstance(live, ScheduleActivity)
                    assert (cmd.op, cmd.args) == (live.op, live.args), (cut, show(got))
                    assert cmd.op == rows[cmd.step]
                    if cmd.recorded:
                        assert any(
                            isinstance(e, ActivityScheduled) and e.step == cmd.step
                            for e in run.history[:cut]
                        )

    @settings(max_examples=EXAMPLES, deadline=None)
    @given(programs(unique_args=True), st.data())
    def test_recovery_in_another_order_keeps_the_names_of_lost_dispatches(self, program, data):
        """The runtime dispatches before the commit is durable. Crash at any commit, recover
        and go on in another order: in-flight calls come back with their live op, and every
        call dispatched before or after the crash keeps the name the live run gave it."""
        run = live_run(program, data)
        cuts = commit_starts(run)
        if not cuts:
            return  # the workflow ended in its first commit
        live = call_ops(run.schedules.values())
        model = model_ops(program)
        crashes = st.lists(st.sampled_from(cuts), min_size=1, max_size=3, unique=True)
        for cut in data.draw(crashes, label="crash before"):
            dispatched, recovered = recover(run, cut, data)
            for cmd in dispatched:
                if isinstance(cmd, ScheduleActivity):
                    assert cmd.op == live[cmd.args[0]]
            names = call_ops(recovered.schedules.values())
            assert_same_names(live, names)
            assert names == {arg: model[arg] for arg in names}
