"""WorkflowExecutor: drives one workflow coroutine against its history, with no I/O and no clock.

``replay(history)`` runs the code against what the journal recorded and returns the commands that
are still to carry out; ``apply(event)`` feeds a new event and returns the commands it causes.
Commands are numbered (``step``) in the order the code issues them; on replay each one must
match the recorded schedule at its step, else :class:`NondeterminismError`.

Workflow tasks (the main coroutine and gather branches) run from a strict FIFO queue ordered by
creation, so the same history always interleaves them the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import random as _random
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, final

from flowcore import _context, serde
from flowcore.engine._traps import GatherTrap, ScheduleActivityTrap
from flowcore.engine.commands import Command, CompleteWorkflow, FailWorkflow, ScheduleActivity
from flowcore.engine.events import (
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    Event,
    WorkflowStarted,
)
from flowcore.errors import (
    ActivityError,
    ActivityTimeoutError,
    FailureInfo,
    NondeterminismError,
    PayloadError,
    WorkflowMisuseError,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from flowcore._definitions import ActivityDef, WorkflowDef

__all__ = ["WorkflowExecutor"]


@dataclass(slots=True, eq=False)
class _Gather:
    parent: _Task
    results: list[Any]
    remaining: int
    done: bool = False


@dataclass(slots=True, eq=False)
class _Task:
    coro: Any
    """A coroutine (or generator-based coroutine) driven with send/throw."""
    gather: _Gather | None = None
    index: int = 0


@dataclass(slots=True, eq=False)
class _Pending:
    task: _Task
    trap: ScheduleActivityTrap
    encoded_args: Any
    encoded_kwargs: Any
    recorded: bool


@final
@dataclass(slots=True, eq=False)
class WorkflowExecutor:
    """Runs one workflow instance deterministically; see the module docstring."""

    definition: WorkflowDef[Any, Any]
    """The code to run."""
    workflow_id: str
    """The instance id."""
    version: str = ""
    """The version recorded by the instance (from WorkflowStarted)."""
    parent_id: str | None = None
    """The parent instance, for a child."""
    done: bool = False
    """True once the workflow returned or failed."""
    _now: float = 0.0
    _rng: _random.Random | None = None
    _next_step: int = 1
    _ready: deque[tuple[_Task, Any, BaseException | None]] = field(default_factory=deque)
    _pending: dict[int, _Pending] = field(default_factory=dict)
    _recorded: dict[int, ActivityScheduled] = field(default_factory=dict)
    _confirmed: set[int] = field(default_factory=set)
    _replaying: bool = False
    _tasks: list[_Task] = field(default_factory=list)
    _commands: list[Command] = field(default_factory=list)

    # -- the engine's public face -----------------------------------------------------------

    def replay(self, history: Sequence[Event]) -> list[Command]:
        """Run the code against a recorded history; return the commands still to carry out.

        In-flight activities (scheduled, never finished) come back as ``ScheduleActivity``
        commands with ``recorded=True``.

        Raises:
            NondeterminismError: the code issues other commands than the history recorded.
        """
        if not history or not isinstance(history[0], WorkflowStarted):
            msg = f"history of {self.workflow_id!r} does not begin with workflow_started"
            raise ValueError(msg)
        self._recorded = {e.step: e for e in history if isinstance(e, ActivityScheduled)}
        self._replaying = True
        try:
            self._start(history[0])
            for event in history[1:]:
                self._apply(event)
            self._check_all_reissued()
        finally:
            self._replaying = False
        for step, pending in self._pending.items():
            if pending.recorded:
                self._commands.append(self._schedule_command(step, pending))
        return self._take()

    def start(self, started: WorkflowStarted) -> list[Command]:
        """Begin a new instance; return its first commands."""
        self._start(started)
        return self._take()

    def apply(self, event: Event) -> list[Command]:
        """Feed one new event (an activity's outcome); return the commands it causes."""
        self._apply(event)
        return self._take()

    def close(self) -> None:
        """Abandon the instance: close every coroutine (e.g. on eviction or shutdown).

        ``finally`` blocks that await activities cannot run here; they are dropped, never run
        outside the journal.
        """
        token = _context.enter_workflow(self)
        try:
            for task in self._tasks:
                # RuntimeError: it awaited in a finally block while being closed
                with contextlib.suppress(RuntimeError):
                    task.coro.close()
        finally:
            _context.exit_workflow(token)
        self._tasks.clear()
        self._ready.clear()
        self._pending.clear()

    # -- the WorkflowContext protocol the ambient helpers use ----------------------------

    def now(self) -> float:
        """Epoch seconds of the event being processed."""
        return self._now

    def rng(self) -> _random.Random:
        """The workflow's deterministic random generator, seeded by the workflow id."""
        if self._rng is None:
            seed = int.from_bytes(hashlib.sha256(self.workflow_id.encode()).digest()[:8], "big")
            self._rng = _random.Random(seed)  # noqa: S311 - deterministic on purpose
        return self._rng

    def info(self) -> _context.Info:
        """The running workflow's description."""
        return _context.Info(
            workflow_id=self.workflow_id,
            workflow_name=self.definition.name,
            version=self.version,
            parent_id=self.parent_id,
            is_replaying=self._replaying,
        )

    # -- internals ------------------------------------------------------------------------

    def _take(self) -> list[Command]:
        out, self._commands = self._commands, []
        return out

    def _start(self, started: WorkflowStarted) -> None:
        self.version = started.version
        self.parent_id = started.parent_id
        self._now = started.at
        try:
            payload = serde.decode(started.input, _input_hint(self.definition))
        except PayloadError as exc:
            self._finish(None, exc)
            return
        main = _Task(self.definition(payload))
        self._tasks.append(main)
        self._ready.append((main, None, None))
        self._run()

    def _apply(self, event: Event) -> None:
        if self.done:
            return
        match event:
            case ActivityCompleted() | ActivityFailed():
                self._now = event.at
                self._on_activity_outcome(event)
            case _:
                return  # bookkeeping events (attempts, parking, scheduling) change nothing here
        self._run()

    def _run(self) -> None:
        ready = self._ready
        while ready and not self.done:
            task, value, exc = ready.popleft()
            self._step(task, value, exc)

    def _step(self, task: _Task, value: Any, exc: BaseException | None) -> None:
        token = _context.enter_workflow(self)
        try:
            trap = task.coro.send(value) if exc is None else task.coro.throw(exc)
        except StopIteration as stop:
            self._task_done(task, stop.value, None)
            return
        except Exception as error:  # noqa: BLE001 - workflow code may raise anything
            self._task_done(task, None, error)
            return
        finally:
            _context.exit_workflow(token)
        match trap:
            case ScheduleActivityTrap():
                self._on_schedule_activity(task, trap)
            case GatherTrap():
                self._on_gather(task, trap)
            case _:
                self._on_foreign_yield(trap)

    def _task_done(self, task: _Task, value: Any, exc: BaseException | None) -> None:
        group = task.gather
        if group is None:
            self._finish(value, exc)
            return
        if group.done:
            return
        if exc is not None:
            group.done = True
            self._ready.append((group.parent, None, exc))
            return
        group.results[task.index] = value
        group.remaining -= 1
        if group.remaining == 0:
            group.done = True
            self._ready.append((group.parent, group.results, None))

    def _finish(self, value: Any, exc: BaseException | None) -> None:
        if exc is None:
            try:
                self._commands.append(CompleteWorkflow(result=serde.encode(value)))
            except PayloadError as error:
                exc = error
        if exc is not None:
            self._commands.append(FailWorkflow(failure=FailureInfo.from_exception(exc)))
        self.done = True
        self.close()

    def _on_gather(self, task: _Task, trap: GatherTrap) -> None:
        count = len(trap.awaitables)
        if count == 0:
            self._ready.append((task, [], None))
            return
        group = _Gather(parent=task, results=[None] * count, remaining=count)
        for index, awaitable in enumerate(trap.awaitables):
            child = _Task(_as_coroutine(awaitable), gather=group, index=index)
            self._tasks.append(child)
            self._ready.append((child, None, None))

    def _on_schedule_activity(self, task: _Task, trap: ScheduleActivityTrap) -> None:
        defn = trap.activity
        try:
            args, kwargs = serde.encode_args(defn.fn, trap.args, trap.kwargs)
        except PayloadError as exc:
            self._ready.append((task, None, exc))
            return
        step = self._next_step
        self._next_step += 1
        recorded = self._recorded.get(step)
        if recorded is not None:
            if recorded.name != defn.name:
                raise self._mismatch(step, f"activity {recorded.name!r}", f"activity {defn.name!r}")
            self._confirmed.add(step)
        elif self._replaying and self._recorded and step < max(self._recorded):
            raise self._mismatch(step, "no command", f"activity {defn.name!r}")
        pending = _Pending(task, trap, args, kwargs, recorded=recorded is not None)
        self._pending[step] = pending
        if recorded is None:
            self._commands.append(self._schedule_command(step, pending))

    def _schedule_command(self, step: int, pending: _Pending) -> ScheduleActivity:
        trap = pending.trap
        return ScheduleActivity(
            step=step,
            activity=trap.activity,
            args=trap.args,
            kwargs=trap.kwargs,
            encoded_args=pending.encoded_args,
            encoded_kwargs=pending.encoded_kwargs,
            recorded=pending.recorded,
        )

    def _on_activity_outcome(self, event: ActivityCompleted | ActivityFailed) -> None:
        pending = self._pending.pop(event.step, None)
        if pending is None:
            recorded = self._recorded.get(event.step)
            if self._replaying and recorded is not None and event.step not in self._confirmed:
                raise self._mismatch(event.step, f"activity {recorded.name!r}", "no command")
            return  # a duplicate or late outcome: recorded once, ignored here
        defn = pending.trap.activity
        if isinstance(event, ActivityCompleted):
            try:
                value = serde.decode(event.result, _return_hint(defn))
            except PayloadError as exc:
                self._ready.append((pending.task, None, exc))
                return
            self._ready.append((pending.task, value, None))
            return
        error_type = ActivityTimeoutError if event.timed_out else ActivityError
        error = error_type(
            activity=defn.name, step=event.step, attempts=event.attempts, failure=event.failure
        )
        self._ready.append((pending.task, None, error))

    def _on_foreign_yield(self, trap: object) -> None:
        what = type(trap).__qualname__
        error = WorkflowMisuseError(
            f"workflow {self.definition.name!r} (id {self.workflow_id!r}) awaited a {what}, which "
            "is not a flowcore awaitable. Workflow code may only await activities, "
            "flowcore.gather(...) and its other helpers, and coroutines that do the same: use "
            "flowcore.sleep() instead of asyncio.sleep(), and move I/O (network calls, files, "
            "asyncio tasks) into an @flowcore.activity.",
            workflow_id=self.workflow_id,
        )
        self._finish(None, error)

    def _check_all_reissued(self) -> None:
        missing = sorted(set(self._recorded) - self._confirmed)
        if missing:
            step = missing[0]
            attempted = "nothing (the workflow ended)" if self.done else "no command"
            raise self._mismatch(step, f"activity {self._recorded[step].name!r}", attempted)

    def _mismatch(self, step: int, recorded: str, attempted: str) -> NondeterminismError:
        return NondeterminismError(
            workflow_id=self.workflow_id,
            workflow=self.definition.name,
            step=step,
            recorded=recorded,
            attempted=attempted,
        )


def _input_hint(defn: WorkflowDef[Any, Any]) -> Any:
    if not defn.takes_input:
        return Any
    signature, hints, _ = serde.signature_hints(defn.fn)
    first = next(iter(signature.parameters))
    return hints.get(first, Any)


def _return_hint(defn: ActivityDef[..., Any]) -> Any:
    return serde.signature_hints(defn.fn)[2]


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _as_coroutine(awaitable: Any) -> Any:
    if hasattr(awaitable, "send") and hasattr(awaitable, "throw"):
        return awaitable
    return _await(awaitable)
