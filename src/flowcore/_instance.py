"""_Instance: what the runtime holds in memory for one unfinished workflow, and its running work."""

from __future__ import annotations

import contextlib
import copy
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from flowcore import serde
from flowcore._context import Info
from flowcore.backends.base import ActivityTask, CancelFlag
from flowcore.engine.events import (
    ActivityAttemptFailed,
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    ChildCompleted,
    ChildFailed,
    ChildScheduled,
    EventWaitStarted,
    TimerFired,
    TimerScheduled,
    WorkflowCanceled,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowStarted,
    WorkflowTerminated,
)

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Sequence
    from typing import Any

    import anyio

    from flowcore.engine.commands import ScheduleActivity
    from flowcore.engine.events import Event
    from flowcore.engine.executor import WorkflowExecutor
    from flowcore.journal.projection import Projection

__all__ = [
    "TERMINAL_TYPES",
    "ActivityJob",
    "Terminal",
    "_Instance",
    "attempt_info",
    "retry_state",
    "waiting_only",
]

_MAKING: Final = threading.Lock()
"""Held while a job makes its CancelFlag (see ActivityJob.cancelled): rarely taken."""

_SCALARS = frozenset({int, float, str, bool, type(None)})
"""Argument types passed to an activity as they are (immutable)."""

Terminal = WorkflowCompleted | WorkflowFailed | WorkflowCanceled | WorkflowTerminated
"""The events that end a workflow."""
TERMINAL_TYPES = (WorkflowCompleted, WorkflowFailed, WorkflowCanceled, WorkflowTerminated)


@dataclass(slots=True, eq=False)
class ActivityJob:
    """One activity's attempt loop in flight: what it runs, where it stands, how to stop it."""

    inst: _Instance
    executor: WorkflowExecutor
    command: ScheduleActivity
    attempt: int
    """The attempt about to run (or running), from 1."""
    due: float | None
    """When that attempt may start (a journaled retry deadline), or None for now."""
    flag: CancelFlag | None = None
    """What :attr:`cancelled` returns, made when first asked for (most jobs never are)."""
    runner: asyncio.Task[None] | None = None
    """The task running the attempt loop."""
    stopped: bool = False
    """True once the workflow asked to stop it (its outcome is then dropped)."""
    running: bool = False
    """True once the task began: cancelled before that, a task would skip its own cleanup."""

    @property
    def cancelled(self) -> CancelFlag:
        """Set when the workflow no longer wants the result; sync activities may poll it.

        Made when first asked for (building the attempt's task, or ``activity_info()``, which
        may run in a thread of its own), under a lock so that two first callers share one;
        a job stopped before that gets it set.
        """
        flag = self.flag
        if flag is None:
            with _MAKING:
                flag = self.flag
                if flag is None:
                    flag = self.flag = CancelFlag()
            if self.stopped:  # stop() saw no flag, or sets this one too
                flag.set()
        return flag

    def stop(self) -> None:
        """Cancel the attempt loop: async attempts are cancelled, sync ones see ``cancelled``."""
        self.stopped = True
        if self.flag is not None:  # else it is made set, if ever asked for
            self.flag.set()
        if self.runner is not None and self.running:  # else it sees `stopped` when it begins
            self.runner.cancel()

    def arguments(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The arguments of the current attempt.

        Arguments other than immutable scalars are deep copies, fresh for each attempt: an
        activity that mutates its argument must not change the workflow's value (a replay,
        which does not run the activity, would see the unchanged one) nor its next attempt's.
        """
        command = self.command
        args, kwargs = command.args, command.kwargs
        if not _SCALARS.issuperset(map(type, args)) or (
            kwargs and not _SCALARS.issuperset(map(type, kwargs.values()))
        ):
            return _copy_args(command)
        return args, kwargs

    def task(self) -> ActivityTask:
        """The backend's view of the current attempt (its arguments: see :meth:`arguments`)."""
        command = self.command
        args, kwargs = self.arguments()
        return ActivityTask(
            workflow_id=self.inst.id,
            step=command.step,
            attempt=self.attempt,
            activity=command.activity,
            args=args,
            kwargs=kwargs,
            encoded_args=command.encoded_args,
            encoded_kwargs=command.encoded_kwargs,
            op=command.op,
            workflow_name=self.executor.definition.name,
            workflow_version=self.executor.version,
            cancelled=self.cancelled,
        )


def attempt_info(job: ActivityJob, attempt: int) -> Info:
    """What ``flowcore.activity_info()`` tells attempt ``attempt`` of ``job`` (built when asked)."""
    command = job.command
    return Info(
        workflow_id=job.inst.id,
        workflow_name=job.executor.definition.name,
        version=job.executor.version,
        activity=command.activity.name,
        step=command.step,
        attempt=attempt,
        op=command.op,
        _cancel=job.cancelled,
    )


def _copy_args(command: ScheduleActivity) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Fresh copies of a call's arguments: deep copies, else decoded from their journaled form.

    Some values that encode fine cannot be deep-copied (a ``MappingProxyType``, a dataclass with
    a lock in a non-init field); they get what a replay or a remote worker would get instead.
    """
    # any failure of __deepcopy__ or __reduce__ (not only TypeError): decode instead
    with contextlib.suppress(Exception):
        copied: tuple[tuple[Any, ...], dict[str, Any]] = copy.deepcopy(
            (command.args, command.kwargs)
        )
        return copied
    with contextlib.suppress(Exception):  # a hint that cannot rebuild the value
        return serde.decode_args(command.activity.fn, command.encoded_args, command.encoded_kwargs)
    return command.args, command.kwargs  # no better copy: the originals


@dataclass(slots=True, eq=False)
class _Instance:
    """A workflow held in memory while it is unfinished."""

    id: str
    projection: Projection
    done: asyncio.Future[Terminal]
    executor: WorkflowExecutor | None = None
    next_seq: int = 1
    parked: str | None = None
    """The reason of the last journaled event when it parks the workflow, else None (a park
    for the same reason again journals nothing). Not the event itself: a waiting workflow
    keeps one object less alive for the garbage collector."""
    retries: dict[int, tuple[int, float]] = field(default_factory=dict)
    """For recovery: step -> (next attempt, when it is due)."""
    activities: dict[int, ActivityJob] = field(default_factory=dict)
    """Running activity loops by step."""
    timers: dict[int, tuple[anyio.CancelScope, float]] = field(default_factory=dict)
    """Armed timers (and event-wait deadlines) by step: the scope that disarms it, its deadline."""
    children: dict[int, str] = field(default_factory=dict)
    """Child workflows awaited, step -> child id."""
    outcomes: list[tuple[ActivityJob, Event]] | None = None
    """Activity outcomes queued for delivery this loop tick, in arrival order (None while none
    is queued: a waiting workflow keeps no empty list alive for the garbage collector to scan)."""
    creating: asyncio.Future[None] | None = None
    """The commit of the start while it is pending (a duplicate id is refused by it)."""
    waiters: list[asyncio.Future[None]] | None = None
    """Callers blocked in :meth:`ended`, woken by :meth:`end` and :meth:`abort`."""
    last_commit: asyncio.Future[None] | None = None
    """The commit of its latest append (an instance whose append is in flight is not idle)."""
    evicted: bool = False
    """Idle and dropped from memory but for this record: its executor is rebuilt by replay."""
    evictions: int = 0
    """How often it was evicted (a wake-up of an earlier eviction is stale)."""
    loading: asyncio.Future[None] | None = None
    """Set while its history is read back to replay it after an eviction."""
    touched: float = 0.0
    """When it was last brought back from eviction (clock seconds): recency for the cache."""

    def end(self, terminal: Terminal) -> None:
        """Resolve ``done`` with the run's committed terminal event; wake the waiters."""
        self.done.set_result(terminal)
        self._wake()

    def abort(self, error: BaseException) -> None:
        """Resolve ``done`` with the error its waiters get (the runtime stops); wake them."""
        self.done.set_exception(error)
        self.done.exception()  # retrieved here: a waiter re-raises it, there may be none
        self._wake()

    def _wake(self) -> None:
        waiters, self.waiters = self.waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    async def ended(self) -> Terminal:
        """The terminal event once ``done`` resolves (or its error).

        Like ``asyncio.shield(done)``, cancelling the caller leaves ``done`` alone; a plain
        future per waiter costs one loop callback to wake it, where a shield costs three.
        """
        done = self.done
        if not done.done():
            waiter: asyncio.Future[None] = done.get_loop().create_future()
            waiters = self.waiters
            if waiters is None:
                waiters = self.waiters = []
            waiters.append(waiter)
            try:
                await waiter
            finally:
                if not done.done():  # cancelled while waiting: forget it
                    waiters.remove(waiter)
        return done.result()

    def cancel_work(self) -> None:
        """Stop every activity loop and timer of the instance (its run is over)."""
        for job in self.activities.values():
            job.stop()
        for scope, _ in self.timers.values():
            scope.cancel()
        self.activities.clear()
        self.timers.clear()

    def cancel_activity(self, step: int) -> None:
        """Stop one activity loop: async attempts are cancelled, sync ones see ``cancelled``."""
        job = self.activities.pop(step, None)
        if job is not None:
            job.stop()

    def cancel_timer(self, step: int) -> None:
        """Disarm one timer."""
        timer = self.timers.pop(step, None)
        if timer is not None:
            timer[0].cancel()


def retry_state(history: Sequence[Event]) -> dict[int, tuple[int, float]]:
    """Steps whose last attempt failed and was not yet retried: step -> (next attempt, due)."""
    state: dict[int, tuple[int, float]] = {}
    for event in history:
        if isinstance(event, ActivityAttemptFailed):
            state[event.step] = (event.attempt + 1, event.retry_at)
        elif isinstance(event, ActivityCompleted | ActivityFailed):
            state.pop(event.step, None)
    return state


def waiting_only(history: Sequence[Event]) -> tuple[bool, float | None]:
    """Whether a run's journal shows it waiting only on events and timers; its earliest deadline.

    True when the run scheduled something (a wait, a timer, an activity or a child: its first
    step is journaled) and no activity or child it scheduled is unfinished, so no code of it
    runs until an event, a request or a deadline comes. It relies on the runtime journaling
    an outcome together with the commands the workflow issued on it (one append), so a
    committed history holds no step the workflow took but did not record; a journal is read
    from the current run's start (continue-as-new replaces the history).

    The deadline is the earliest of its timers and event-wait deadlines that did not fire.
    It may be earlier than the live run's (a timer a ``first()`` disarmed leaves no event),
    never later: waking early replays the run and finds nothing to do.
    """
    scheduled = False
    open_steps: set[int] = set()
    deadlines: dict[int, float] = {}
    for event in history:
        match event:
            case WorkflowStarted():
                scheduled = False
                open_steps.clear()
                deadlines.clear()
            case ActivityScheduled() | ChildScheduled():
                scheduled = True
                open_steps.add(event.step)
            case ActivityCompleted() | ActivityFailed() | ChildCompleted() | ChildFailed():
                open_steps.discard(event.step)
            case TimerScheduled():
                scheduled = True
                deadlines[event.step] = event.fire_at
            case EventWaitStarted():
                scheduled = True
                if event.deadline is not None:
                    deadlines[event.step] = event.deadline
            case TimerFired():
                deadlines.pop(event.step, None)
            case _:
                pass
    return scheduled and not open_steps, min(deadlines.values(), default=None)
