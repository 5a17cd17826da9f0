"""gather/first branches that are plain activity calls run as *call tasks* (no coroutine).

Each workflow here takes ``wrap``: with ``wrap=True`` every plain call is passed through a
one-line coroutine, which forces the coroutine path the engine has always used for branches. A
call task must be indistinguishable from it: the same steps, op names and command order, the same
outcome for failures, payload errors, cancellation and first()'s abandoned losers, and histories
recorded by either path replay identically under the other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import flowcore
from flowcore import ActivityError, WorkflowDef, activity, workflow
from flowcore.engine.commands import (
    CancelActivity,
    CancelTimer,
    CancelWorkflow,
    CompleteWorkflow,
    FailWorkflow,
    ScheduleActivity,
)
from flowcore.engine.events import (
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    CancelRequested,
    Event,
    TimerFired,
    TimerScheduled,
    WorkflowResumed,
    WorkflowSuspended,
)
from flowcore.engine.executor import WorkflowExecutor
from flowcore.errors import FailureInfo
from tests.helpers import T0, started


@activity
def cb_double(x: int) -> int:
    return 2 * x


@activity
def cb_echo(s: str) -> str:
    return s


async def _through(aw: Awaitable[Any]) -> Any:
    return await aw


def _branch(aw: Awaitable[Any], wrap: bool) -> Awaitable[Any]:
    return _through(aw) if wrap else aw


async def cb_pair(x: int) -> int:
    first = await cb_double(x)
    return await cb_double(first)


@workflow
async def cb_mixed(wrap: bool) -> list[Any]:
    head = await cb_double(1)
    rest = await flowcore.gather(
        _branch(cb_double(2), wrap),
        cb_pair(3),
        _branch(cb_echo("x"), wrap),
        flowcore.gather(_branch(cb_double(4), wrap), _branch(cb_double(5), wrap)),
    )
    return [head, *rest]


@workflow
async def cb_race(wrap: bool) -> list[Any]:
    index, value = await flowcore.first(
        _branch(cb_double(1), wrap),
        cb_pair(2),
        _branch(cb_echo("slow"), wrap),
        flowcore.sleep(60),
    )
    after = await cb_double(10)
    return [index, value, after]


@workflow
async def cb_guarded(wrap: bool) -> list[Any]:
    try:
        values = await flowcore.gather(*(_branch(cb_double(i), wrap) for i in range(4)))
    except ActivityError as error:
        return ["failed", error.activity, error.step, await cb_echo("cleanup")]
    except flowcore.PayloadError:
        return ["undecodable", await cb_echo("cleanup")]
    return ["ok", values]


@workflow
async def cb_bad_args(wrap: bool) -> list[Any]:
    try:
        await flowcore.gather(_branch(cb_double(2), wrap), _branch(cb_double(object()), wrap))  # type: ignore[arg-type]
    except flowcore.PayloadError:
        return ["unencodable", await cb_echo("after")]
    return ["encoded?"]


@workflow
async def cb_reuse(wrap: bool) -> list[Any]:
    """One call awaited twice behaves as one coroutine would: the second await gets None."""
    once = cb_double(1)
    out = [await once, await once]
    shared = cb_double(2)
    out.append(await flowcore.gather(_branch(shared, wrap), _branch(shared, wrap)))
    raced = cb_double(3)
    out.append(list(await flowcore.first(_branch(raced, wrap), _branch(raced, wrap))))
    out.append(await raced)
    before = cb_double(4)
    out.append(await before)
    out.append(await flowcore.gather(_branch(before, wrap), _branch(cb_double(5), wrap)))
    after = cb_double(6)
    out.append(await flowcore.gather(_branch(after, wrap), _branch(cb_double(7), wrap)))
    out.append(await after)
    loser = cb_double(8)
    out.append(list(await flowcore.first(_branch(cb_double(9), wrap), _branch(loser, wrap))))
    out.append(await flowcore.gather(_branch(loser, wrap)))
    return out


# -- a scripted world: completes the outstanding work in a chosen order ---------------------------

Pick = Callable[[list[int]], int]


def fifo(pending: list[int]) -> int:
    return pending[0]


def lifo(pending: list[int]) -> int:
    return pending[-1]


def middle(pending: list[int]) -> int:
    return pending[len(pending) // 2]


def _failure() -> FailureInfo:
    return FailureInfo(type_name="builtins.ValueError", message="boom")


def _view(command: Any) -> Any:
    """A command as comparable data (a failure without its machine-specific traceback)."""
    if isinstance(command, ScheduleActivity):
        return ("activity", command.step, command.activity.name, command.args, command.op,
                command.recorded)  # fmt: skip
    if isinstance(command, FailWorkflow):
        return ("fail", command.failure.type_name, command.failure.message)
    return command


def _scheduled(command: ScheduleActivity) -> ActivityScheduled:
    return ActivityScheduled(at=T0, step=command.step, name=command.activity.name,
                             args=command.encoded_args, kwargs=command.encoded_kwargs,
                             op=command.op)  # fmt: skip


def drive(
    defn: WorkflowDef[Any, Any],
    wrap: bool,
    pick: Pick,
    *,
    fail: set[int] = frozenset(),  # type: ignore[assignment]
    garble: set[int] = frozenset(),  # type: ignore[assignment]
    cancel_after: int | None = None,
) -> tuple[list[list[Any]], list[Event]]:
    """Run ``defn`` to its end; return each batch of commands and the history it journaled.

    Activities listed in ``fail`` fail, those in ``garble`` return an undecodable result; the
    workflow is canceled after ``cancel_after`` outcomes; timers fire when nothing else is left.
    """
    ex = WorkflowExecutor(defn, "wf-1")
    history: list[Event] = [started(defn.name, wrap)]
    batches: list[list[Any]] = []
    pending: dict[int, Any] = {}
    outcomes = 0

    def take(commands: list[Any]) -> None:
        batches.append([_view(c) for c in commands])
        for c in commands:
            if isinstance(c, ScheduleActivity):
                history.append(_scheduled(c))
                pending[c.step] = c
            elif isinstance(c, CancelActivity | CancelTimer):
                pending.pop(c.step, None)
            elif hasattr(c, "fire_at"):
                history.append(TimerScheduled(at=T0, step=c.step, fire_at=c.fire_at))
                pending[c.step] = c

    take(ex.start(history[0]))  # type: ignore[arg-type]
    while not ex.done:
        event: Event
        if cancel_after is not None and outcomes == cancel_after:
            event = CancelRequested(at=T0, reason="stop")
            cancel_after = None
        else:
            event = _outcome(pending, pick, fail, garble)
            outcomes += 1
        history.append(event)
        take(ex.apply(event))
    return batches, history


def _outcome(pending: dict[int, Any], pick: Pick, fail: set[int], garble: set[int]) -> Event:
    """The outcome of the next piece of work to finish (removed from ``pending``)."""
    activities = sorted(s for s, c in pending.items() if isinstance(c, ScheduleActivity))
    step = pick(activities) if activities else min(pending)
    command = pending.pop(step)
    if not isinstance(command, ScheduleActivity):
        return TimerFired(at=T0, step=step)
    if step in fail:
        return ActivityFailed(at=T0, step=step, failure=_failure())
    result = {"not": "an int"} if step in garble else command.activity.fn(*command.args)
    return ActivityCompleted(at=T0, step=step, result=result)


CASES = [
    pytest.param(cb_mixed, fifo, {}, id="mixed-fifo"),
    pytest.param(cb_mixed, lifo, {}, id="mixed-lifo"),
    pytest.param(cb_mixed, middle, {}, id="mixed-middle"),
    pytest.param(cb_mixed, lifo, {"fail": {4}}, id="mixed-sub-coroutine-fails"),
    pytest.param(cb_mixed, fifo, {"fail": {5}}, id="mixed-call-fails"),
    pytest.param(cb_mixed, middle, {"cancel_after": 3}, id="mixed-canceled"),
    pytest.param(cb_race, fifo, {}, id="race-call-wins"),
    pytest.param(cb_race, lifo, {}, id="race-last-call-wins"),
    pytest.param(cb_race, middle, {}, id="race-sub-coroutine-wins"),
    pytest.param(cb_race, fifo, {"fail": {2}}, id="race-call-fails-first"),
    pytest.param(cb_race, fifo, {"cancel_after": 0}, id="race-canceled"),
    pytest.param(cb_guarded, lifo, {}, id="guarded-ok"),
    pytest.param(cb_guarded, lifo, {"fail": {3}}, id="guarded-call-fails"),
    pytest.param(cb_guarded, fifo, {"garble": {2}}, id="guarded-undecodable-result"),
    pytest.param(cb_guarded, middle, {"cancel_after": 1}, id="guarded-canceled"),
    pytest.param(cb_bad_args, fifo, {}, id="unencodable-arguments"),
    pytest.param(cb_reuse, lifo, {}, id="reused-calls-lifo"),
    pytest.param(cb_reuse, fifo, {}, id="reused-calls-fifo"),
]


@pytest.mark.parametrize(("defn", "pick", "options"), CASES)
def test_call_branches_run_exactly_like_coroutine_branches(
    defn: WorkflowDef[Any, Any], pick: Pick, options: dict[str, Any]
) -> None:
    """Same commands, steps, ops and ending whether a branch is a plain call or a coroutine."""
    calls, _ = drive(defn, False, pick, **options)
    coroutines, _ = drive(defn, True, pick, **options)
    assert calls == coroutines
    assert isinstance(calls[-1][-1], CompleteWorkflow | CancelWorkflow | tuple)  # it ended


@pytest.mark.parametrize(("defn", "pick", "options"), CASES)
@pytest.mark.parametrize("recorded_wrapped", [True, False])
def test_histories_replay_the_same_under_both_paths(
    defn: WorkflowDef[Any, Any], pick: Pick, options: dict[str, Any], recorded_wrapped: bool
) -> None:
    """A history journaled by either path, cut anywhere, replays the same under both."""
    batches, history = drive(defn, recorded_wrapped, pick, **options)
    for cut in range(1, len(history) + 1):
        replays = []
        for wrap in (True, False):  # the input tells the code which path to take
            head = [dataclasses.replace(history[0], input=wrap), *history[1:cut]]
            replays.append([_view(c) for c in WorkflowExecutor(defn, "wf-1").replay(head)])
        assert replays[0] == replays[1], f"cut at {cut}"
    assert replays[1][-1] == batches[-1][-1]


def test_plain_calls_get_their_branch_op_names() -> None:
    """Ops name the branch ("2.1.1"); steps follow the queue: calls, then nested branches."""
    batches, _ = drive(cb_mixed, False, fifo)
    scheduled = [(v[1], v[2], v[4]) for batch in batches for v in batch
                 if isinstance(v, tuple) and v[0] == "activity"]  # fmt: skip
    assert scheduled == [
        (1, "cb_double", "1"),
        (2, "cb_double", "2.1.1"),
        (3, "cb_double", "2.2.1"),
        (4, "cb_echo", "2.3.1"),
        (5, "cb_double", "2.4.1.1.1"),
        (6, "cb_double", "2.4.1.2.1"),
        (7, "cb_double", "2.2.2"),
    ]
    assert batches[-1][-1] == CompleteWorkflow(result=[2, 4, 12, "x", [8, 10]])


def test_first_abandons_plain_call_losers_and_ignores_their_outcomes() -> None:
    """A plain call wins first(): losers are left to finish, their late results ignored."""
    ex = WorkflowExecutor(cb_race, "wf-1")
    commands = ex.start(started(cb_race.name, False))
    assert [(type(c).__name__, c.step) for c in commands] == [
        ("ScheduleActivity", 1), ("ScheduleActivity", 2), ("ScheduleActivity", 3),
        ("StartTimer", 4),
    ]  # fmt: skip
    won = ex.apply(ActivityCompleted(at=T0, step=3, result="slow"))
    # the third branch won: only the timer is disarmed, and the follow-up call is op "2"
    assert won[0] == CancelTimer(step=4)
    assert [(type(c).__name__, c.step, c.op) for c in won[1:]] == [("ScheduleActivity", 5, "2")]
    assert ex.apply(ActivityCompleted(at=T0, step=1, result=2)) == []
    assert ex.apply(ActivityFailed(at=T0, step=2, failure=_failure())) == []
    done = ex.apply(ActivityCompleted(at=T0, step=5, result=20))
    assert done == [CompleteWorkflow(result=[2, "slow", 20])]


@pytest.mark.parametrize("wrap", [True, False])
def test_outcomes_held_by_a_suspension_finish_call_branches_in_order(wrap: bool) -> None:
    """Outcomes queued while suspended are applied on resume, one by one, as if live."""
    ex = WorkflowExecutor(cb_guarded, "wf-1")
    assert len(ex.start(started(cb_guarded.name, wrap))) == 4
    assert ex.apply(WorkflowSuspended(at=T0)) == []
    for step in (4, 2, 1):
        assert ex.apply(ActivityCompleted(at=T0, step=step, result=2 * (step - 1))) == []
    assert ex.apply(ActivityFailed(at=T0, step=3, failure=_failure())) == []
    resumed = [_view(c) for c in ex.apply(WorkflowResumed(at=T0 + 1))]
    assert resumed == [("activity", 5, "cb_echo", ("cleanup",), "2", False)]
    assert ex.apply(ActivityCompleted(at=T0, step=5, result="cleanup")) == [
        CompleteWorkflow(result=["failed", "cb_double", 3, "cleanup"])
    ]


def test_a_call_awaited_twice_is_one_generator_as_before() -> None:
    """Reusing one call (awaited again, or twice in one gather/first) gives what it always did.

    The expected values are what the engine returned when every call was a generator.
    """
    expected = [2, None, [None, None], [1, None], None, 8, [None, 10], [12, 14], None, [1, 16]]
    for wrap in (False, True):
        batches, _ = drive(cb_reuse, wrap, lifo)
        assert batches[-1] == [CompleteWorkflow(result=[*expected, [None]])]
