"""WorkflowExecutor: drives one workflow coroutine against its history, with no I/O and no clock.

``replay(history)`` runs the code against what the journal recorded and returns the commands that
are still to carry out; ``apply(event)`` feeds a new event and returns the commands it causes.
Commands are numbered (``step``) in the order the code issues them; on replay each one must
match the recorded schedule at its step (kind and name), else :class:`NondeterminismError`.

Workflow tasks (the main coroutine and gather/first branches) run from a strict FIFO queue ordered
by creation, so the same history always interleaves them the same way. A task suspended on an
activity, a timer, an event wait or a child workflow is a *leaf* keyed by that step.

A gather/first branch that is a plain activity call (``gather(*(act(i) for i in ...))``) is a
*call task*: it holds the call's trap instead of a coroutine and takes the same places in the queue
as a coroutine branch would (issue on its first step, finish on the step after the outcome), so
steps, op names and command order are the same whichever way a branch is run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import random as _random
import warnings
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, final

from flowcore import _context, serde
from flowcore._limits import DEFAULT_MAX_PAYLOAD_BYTES, check_payload_size
from flowcore.engine import _traps as traps
from flowcore.engine import commands as cmd
from flowcore.engine import events as ev
from flowcore.errors import (
    ActivityError,
    ActivityTimeoutError,
    FailureInfo,
    NondeterminismError,
    PayloadError,
    WorkflowAlreadyExistsError,
    WorkflowCanceledError,
    WorkflowFailedError,
    WorkflowMisuseError,
)

if TYPE_CHECKING:
    from collections.abc import Generator, Sequence

    from flowcore._definitions import ActivityDef, WorkflowDef

__all__ = ["WorkflowExecutor"]

_Scheduling = (
    ev.ActivityScheduled
    | ev.TimerScheduled
    | ev.EventWaitStarted
    | ev.ChildScheduled
    | ev.CustomStatusSet
)
_SCHEDULING = (
    ev.ActivityScheduled,
    ev.TimerScheduled,
    ev.EventWaitStarted,
    ev.ChildScheduled,
    ev.CustomStatusSet,
)


_ENDS: dict[type[ev.Event], type[cmd.Command]] = {
    ev.WorkflowCompleted: cmd.CompleteWorkflow,
    ev.WorkflowFailed: cmd.FailWorkflow,
    ev.WorkflowCanceled: cmd.CancelWorkflow,
}
"""A recorded end the code itself made, and the command that makes it (a termination is not
the code's: a terminated history only has to agree up to its end)."""

_OUTCOMES = (
    ev.ActivityCompleted,
    ev.ActivityFailed,
    ev.TimerFired,
    ev.ChildCompleted,
    ev.ChildFailed,
)


@dataclass(slots=True, eq=False)
class _Task:
    coro: Any
    """A coroutine (or generator-based coroutine) driven with send/throw; None for a call task."""
    group: _Group | None = None
    index: int = 0
    children: Sequence[_Task] = ()
    leaf: int | None = None
    """The step this task is suspended on, if it waits on a leaf."""
    done: bool = False
    path: str = ""
    """Where the task sits in the tree of gather/first branches ("" for the main task)."""
    ops: int = 0
    """How many commands this task has issued."""
    call: traps.ScheduleActivityTrap | None = None
    """For a branch that is a plain activity call: that call, scheduled without a coroutine."""

    def hand_over(self) -> Generator[traps.ScheduleActivityTrap, Any, Any]:
        """The call is awaited elsewhere too: become a coroutine task driven by its generator.

        The generator is put in the state stepping it would have reached (not started, suspended
        on the trap, or finished), so sharing one call behaves as sharing one coroutine.
        """
        call, self.call = self.call, None
        assert call is not None  # noqa: S101 - only a call task is a claim
        self.coro = awaiting = traps.suspend_on(call)
        if self.done:
            awaiting.close()
        elif self.ops:
            next(awaiting)
        return awaiting

    def next_op(self) -> str:
        """Name this task's next command by its place in the program, not by timing.

        Unlike step numbers, which follow the order in which concurrent branches happen to run,
        an op name is the same on every replay even when outcomes arrive in another order, so
        it can key the outside world (idempotency keys, remote task ids) before it is durable.
        """
        self.ops += 1
        return f"{self.path}.{self.ops}" if self.path else str(self.ops)


@dataclass(slots=True, eq=False)
class _Group:
    parent: _Task
    results: list[Any]
    remaining: int
    first: bool
    collect: bool = False
    """``gather(return_exceptions=True)``: a branch's exception is its result."""
    done: bool = False


@dataclass(slots=True, eq=False)
class _Leaf:
    step: int
    kind: str
    """activity | timer | event | child"""
    task: _Task | None
    """None once abandoned: its outcome is then ignored."""
    command: cmd.Command
    hint: Any = Any
    name: str = ""
    deadline: float | None = None
    recorded: bool = False


@dataclass(slots=True, eq=False)
class _Replay:
    """What only a replay needs; a live executor holds none of it."""

    recorded: dict[int, _Scheduling]
    """Step -> the scheduling event the history recorded there."""
    last: int
    """The highest recorded step."""
    confirmed: set[int] = field(default_factory=set)
    """Recorded steps the code reissued."""
    unconfirmed_cancels: set[int] = field(default_factory=set)
    """Children whose cancellation replay saw requested (re-sent after recovery)."""
    ended: ev.Event | None = None
    """The end the history recorded (completed, failed, canceled), if it has one: the code
    must then end the same way, with no command after the recorded ones."""


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
    run: int = 1
    """Which run of the instance (from WorkflowStarted): more than 1 after continue-as-new."""
    max_payload: int = DEFAULT_MAX_PAYLOAD_BYTES
    """Largest encoded payload a new command may carry (``Runtime(max_payload_bytes=...)``);
    a command the history recorded is replayed whatever its size (see :meth:`_check_size`)."""
    done: bool = False
    """True once the workflow returned, failed, was canceled or continued as new."""
    cancel_requested: bool = False
    """True once a CancelRequested event was applied."""
    suspended: bool = False
    """True between WorkflowSuspended and WorkflowResumed: events queue up."""
    input_error: PayloadError | None = None
    """Why the input did not decode, when it did not (the run then fails at its start)."""
    calls: list[traps.ScheduleActivityTrap] | None = None
    """Activity calls the code made and did not yet await, kept by :class:`ActivityDef` (None
    while there is none): one dropped unawaited never runs, and :meth:`_run` warns of it."""
    _cancel_reason: str | None = None
    _now: float = 0.0
    _rng: _random.Random | None = None
    _rng_key: str = ""
    """Appended to the workflow id to seed the random generator: the run, for a RUN_SEEDED run."""
    _next_step: int = 1
    _ready: deque[tuple[_Task, Any, BaseException | None]] | None = None
    """Tasks to step, in order (None while none is: see :meth:`_push`)."""
    _leaves: dict[int, _Leaf] = field(default_factory=dict)
    _waits: dict[str, deque[_Leaf]] = field(default_factory=dict)
    _inbox: dict[str, deque[tuple[int, Any]]] = field(default_factory=dict)
    """Events received that no wait took yet, by name: ``(arrival number, encoded payload)``."""
    _arrivals: int = 0
    """Events queued in ``_inbox`` so far: the next one's arrival number."""
    _child_ids: set[str] | None = None
    """The ids of the children this run started (None until the first)."""
    _held: list[ev.Event] | None = None
    """Events applied while suspended, in order (None until the first)."""
    _replay: _Replay | None = None
    """What replay checks the code against; None outside :meth:`replay`."""
    _replaying: bool = False
    _main: _Task | None = None
    """The main task while it runs."""
    _branches: set[_Task] | None = None
    """The gather/first branches with a coroutine while they run (None until the first)."""
    _commands: list[cmd.Command] | None = None
    """Commands issued since the last :meth:`_take`, in order (None while none is)."""
    _current: _Task | None = None
    """The task being stepped (set_status is called from inside it)."""

    # -- the engine's public face -----------------------------------------------------------

    def replay(self, history: Sequence[ev.Event]) -> list[cmd.Command]:
        """Run the code against a recorded history; return the commands still to carry out.

        Work the history shows in flight (activities, timers, event waits, children) comes back
        as commands with ``recorded=True`` for the runtime to resume.

        Raises:
            NondeterminismError: the code issues other commands than the history recorded.
        """
        if not history or not isinstance(history[0], ev.WorkflowStarted):
            msg = f"history of {self.workflow_id!r} does not begin with workflow_started"
            raise ValueError(msg)
        recorded = {e.step: e for e in history if isinstance(e, _SCHEDULING)}
        ended = next((e for e in history if type(e) in _ENDS), None)
        self._replay = replay = _Replay(recorded, max(recorded, default=0), ended=ended)
        self._replaying = True
        try:
            self._start(history[0])
            for event in history[1:]:
                self._apply(event)
            self._check_all_reissued(replay)
            if ended is not None:
                self._check_end(ended)
        finally:
            self._replaying = False
        # Outcomes already journaled but held behind a suspension must not be redone.
        held = {e.step for e in self._held or () if isinstance(e, _OUTCOMES)}
        for leaf in self._leaves.values():
            if leaf.recorded and leaf.task is not None and leaf.step not in held:
                self._emit(_as_recorded(leaf.command))
            elif leaf.kind == "child" and leaf.step in replay.unconfirmed_cancels:
                self._emit(cmd.CancelChild(step=leaf.step, child_id=leaf.name))
        # Every recorded step was reissued: later steps are new, so the live run needs none of it.
        self._replay = None
        return self._take()

    def start(self, started: ev.WorkflowStarted) -> list[cmd.Command]:
        """Begin a new instance; return its first commands."""
        self._start(started)
        return self._take()

    def apply(self, event: ev.Event) -> list[cmd.Command]:
        """Feed one new event; return the commands it causes."""
        self._apply(event)
        return self._take()

    def unconsumed_events(self) -> list[tuple[str, Any]]:
        """Events received that no wait took: ``(name, encoded payload)``, in arrival order.

        Continue-as-new carries them to the next run.
        """
        queued = [(n, name, payload) for name, q in self._inbox.items() for n, payload in q]
        return [(name, payload) for _, name, payload in sorted(queued, key=lambda e: e[0])]

    def check_event(self, name: str, payload: Any) -> None:
        """Refuse an event the wait it would wake cannot decode (before it is journaled).

        Only a wait already pending is checked: the payload of an event nobody waits for yet is
        decoded when a wait takes it (and a misfit then raises PayloadError at that await). A
        suspended instance holds events until it resumes: with none held yet, this one is the
        first applied then and takes the wait, so it is checked too; behind held events (an
        outcome, a timeout, an earlier event) the wait may be gone by then, so it is not.

        Raises:
            PayloadError: the first wait on ``name`` expects a type ``payload`` does not fit.
        """
        waiting = self._waits.get(name)
        if not waiting or (self.suspended and self._held):  # held ones may take the wait first
            return
        hint = waiting[0].hint
        try:
            serde.decode(payload, hint)
        except PayloadError as exc:
            reason = (
                f"{exc.reason}; workflow {self.definition.name!r} (id {self.workflow_id!r}) "
                f"waits for event {name!r} of this type"
            )
            raise PayloadError(reason, path=exc.path, hint=exc.hint, decoding=True) from exc

    def close(self) -> None:
        """Abandon the instance: close every coroutine (e.g. on shutdown).

        ``finally`` blocks that await cannot run here; they are dropped, never run outside the
        journal.
        """
        tasks = [] if self._main is None else [self._main]
        tasks.extend(self._branches or ())
        token = _context.enter_workflow(self)
        try:
            for task in tasks:
                # RuntimeError: it awaited in a finally block while being closed
                with contextlib.suppress(RuntimeError):
                    task.coro.close()
        finally:
            _context.exit_workflow(token)
        self._main = self._branches = self._ready = None
        self._leaves.clear()
        self._waits.clear()

    # -- the WorkflowContext protocol the ambient helpers use ----------------------------

    def now(self) -> float:
        """Epoch seconds of the event being processed."""
        return self._now

    def rng(self) -> _random.Random:
        """The workflow's deterministic random generator, seeded by the workflow id and run.

        Runs journaled before :data:`~flowcore.engine.events.RUN_SEEDED` keep the id-only seed.
        """
        if self._rng is None:
            key = (self.workflow_id + self._rng_key).encode()
            seed = int.from_bytes(hashlib.sha256(key).digest()[:8], "big")
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

    def set_custom_status(self, value: Any) -> None:
        """Record a custom status (journaled as a step).

        Raises:
            PayloadError: the value cannot be encoded or is over the payload limit.
        """
        encoded = serde.encode(value)
        self._check_size(ev.CustomStatusSet, "", encoded, "the custom status of workflow {!r}",
                         self.definition.name)  # fmt: skip
        step, recorded = self._issue(ev.CustomStatusSet, "", "set_status()")
        if self._current is not None:
            self._current.next_op()
        if not recorded:
            self._emit(cmd.SetCustomStatus(step=step, value=encoded))

    def next_run_input(self, payload: Any) -> Any:
        """Encode the input of the next run (continue-as-new), checked against the limit.

        Raises:
            PayloadError: it cannot be encoded or is over :attr:`max_payload`.
        """
        encoded = serde.encode(payload)
        what = f"the input of the next run of workflow {self.definition.name!r} (continue_as_new)"
        check_payload_size(encoded, self.max_payload, what)
        return encoded

    # -- running tasks -------------------------------------------------------------------

    def _take(self) -> list[cmd.Command]:
        out, self._commands = self._commands, None
        return [] if out is None else out

    def _emit(self, command: cmd.Command) -> None:
        """Issue a command (a live executor keeps no empty list between steps: see _push)."""
        commands = self._commands
        if commands is None:
            self._commands = [command]
        else:
            commands.append(command)

    def _push(self, item: tuple[_Task, Any, BaseException | None]) -> None:
        """Queue a task to step with its value or error.

        The queue exists only while a task is in it: an executor waits far longer than it
        runs, and an empty container kept for every waiting workflow is one more object
        for the garbage collector to scan.
        """
        ready = self._ready
        if ready is None:
            self._ready = deque((item,))
        else:
            ready.append(item)

    def _start(self, started: ev.WorkflowStarted) -> None:
        self.version = started.version
        self.run = started.run
        self.parent_id = started.parent_id
        if ev.RUN_SEEDED in started.flags:
            self._rng_key = f"/r{started.run}"
        self._now = started.at
        try:
            payload = serde.decode(started.input, _input_hint(self.definition))
        except PayloadError as exc:
            self.input_error = exc
            self._finish(None, exc)
            return
        self._spawn(self.definition(payload), None, 0, "" if self.run == 1 else f"r{self.run}")
        self._run()

    def _spawn(self, coro: Any, group: _Group | None, index: int, path: str = "") -> _Task:
        task = _Task(coro, group=group, index=index, path=path)
        if group is None:
            self._main = task
        elif self._branches is None:
            self._branches = {task}
        else:
            self._branches.add(task)
        self._push((task, None, None))
        return task

    def _run(self) -> None:
        ready = self._ready
        while ready and not self.done:
            task, value, exc = ready.popleft()
            if task.done:
                continue
            if task.call is None:
                self._step(task, value, exc)
            else:
                self._step_call(task, task.call, value, exc)
        if self._ready is ready and not ready:
            self._ready = None
        calls = self.calls
        if calls is not None:  # inline, not a method: no Python frame per awaited call
            self.calls = None
            for call in calls:
                if call.claim is None:  # not awaited, nor a gather/first branch
                    del call  # a reference here would keep a dropped call alive
                    self._check_unawaited(calls)
                    break

    def _check_unawaited(self, calls: list[traps.ScheduleActivityTrap]) -> None:
        """Warn of activity calls dropped without an await; keep those the code still holds.

        A call nothing refers to any more (``charge(order)`` as a statement, or a local of a
        workflow that ended) can never be awaited: like a coroutine never awaited, it gets a
        ``RuntimeWarning``, as soon as it is dropped rather than when it is collected. A call
        something else holds once the run ended (a task of ``asyncio.gather``, which already
        failed the workflow) is let go without a warning.
        """
        pending = [call for call in calls if call.claim is None]
        calls.clear()
        names = [call.activity.fn.__name__ for call in pending]
        refs = [weakref.ref(call) for call in pending]
        pending.clear()  # now only the workflow's own references keep a call alive
        dropped = [name for name, ref in zip(names, refs, strict=True) if ref() is None]
        _warn_unawaited(self.definition, dropped)
        if not self.done:
            held = [ref() for ref in refs]
            self.calls = [call for call in held if call is not None] or None

    def _step_call(
        self, task: _Task, call: traps.ScheduleActivityTrap, value: Any, exc: BaseException | None
    ) -> None:
        """Step a call task exactly as stepping ``await call`` in its own coroutine would."""
        task.leaf = None
        if exc is not None:
            self._task_done(task, None, _raised_by(call, exc))
        elif task.ops == 0:  # first step: the awaitable yields its trap
            self._on_activity(task, call)
        else:  # resumed with the outcome: the awaitable returns it
            self._task_done(task, value, None)

    def _step(self, task: _Task, value: Any, exc: BaseException | None) -> None:
        task.leaf = None
        self._current = task
        token = _context.enter_workflow(self)
        try:
            trap = task.coro.send(value) if exc is None else task.coro.throw(exc)
        except StopIteration as stop:
            self._task_done(task, stop.value, None)
            return
        except _context.ContinueAsNewSignal as signal:
            self._continue_as_new(signal.payload, signal.version)
            return
        except BaseException as error:  # noqa: BLE001 - workflow code may raise anything
            # sys.exit(), KeyboardInterrupt, CancelledError too: they fail this instance, and
            # must not escape into the host's loop (recovery would replay into them again).
            self._task_done(task, None, error)
            return
        finally:
            _context.exit_workflow(token)
            self._current = None  # a finished task must not outlive its run here
        self._on_trap(task, trap)

    def _on_trap(self, task: _Task, trap: object) -> None:
        match trap:
            case traps.ScheduleActivityTrap():
                self._on_activity(task, trap)
            case traps.GatherTrap():
                self._on_group(task, trap.awaitables, first=False, collect=trap.return_exceptions)
            case traps.FirstTrap():
                self._on_group(task, trap.awaitables, first=True)
            case traps.TimerTrap():
                self._on_timer(task, trap)
            case traps.WaitEventTrap():
                self._on_wait_event(task, trap)
            case traps.ChildTrap():
                self._on_child(task, trap)
            case _:
                self._on_foreign_yield(trap)

    def _task_done(self, task: _Task, value: Any, exc: BaseException | None) -> None:
        task.done = True
        self._forget(task)
        group = task.group
        if group is None:
            self._finish(value, exc)
            return
        if group.done:
            return
        if exc is not None and group.collect and _collected(exc, self.workflow_id):
            value = exc  # in its branch's place: the gather waits for every branch
        elif group.first or exc is not None:
            group.done = True
            if group.first:
                for sibling in group.parent.children:
                    if not sibling.done:
                        self._abandon(sibling)
            outcome = traps.First(task.index, value) if group.first and exc is None else value
            self._push((group.parent, None if exc else outcome, exc))
            return
        group.results[task.index] = value
        group.remaining -= 1
        if group.remaining == 0:
            group.done = True
            self._push((group.parent, group.results, None))

    def _forget(self, task: _Task) -> None:
        """A task ended: it has no coroutine left to close."""
        if task is self._main:
            self._main = None
        elif self._branches is not None:
            self._branches.discard(task)

    def _abandon(self, task: _Task) -> None:
        """Stop a losing branch of first(): its timers and waits are cancelled, work ignored."""
        task.done = True
        self._forget(task)
        for child in task.children:
            if not child.done:
                self._abandon(child)
        if task.leaf is not None and task.leaf in self._leaves:
            self._detach(self._leaves[task.leaf], cancel_work=False)
        if task.coro is None:  # a call task: no coroutine to close
            return
        token = _context.enter_workflow(self)
        try:
            with contextlib.suppress(RuntimeError):
                task.coro.close()
        finally:
            _context.exit_workflow(token)

    def _finish(self, value: Any, exc: BaseException | None) -> None:
        if self.cancel_requested and (exc is None or isinstance(exc, WorkflowCanceledError)):
            result = None
            with contextlib.suppress(PayloadError):  # unencodable or too large: dropped
                encoded = serde.encode(value)
                what = f"the result of workflow {self.definition.name!r}"
                check_payload_size(encoded, self.max_payload, what)
                result = encoded
            self._emit(cmd.CancelWorkflow(reason=self._cancel_reason, result=result))
        else:
            if exc is None:
                try:
                    result = serde.encode(value)
                    what = "the result of workflow {!r}"
                    check_payload_size(result, self.max_payload, what, self.definition.name)
                    self._emit(cmd.CompleteWorkflow(result=result))
                except PayloadError as error:
                    exc = error
            if exc is not None:
                self._emit(cmd.FailWorkflow(failure=FailureInfo.from_exception(exc)))
        self.done = True
        self.close()

    def _continue_as_new(self, encoded: Any, version: str | None) -> None:
        self._emit(cmd.ContinueAsNew(input=encoded, version=version))
        self.done = True
        self.close()

    # -- traps -----------------------------------------------------------------------------

    def _issue(self, kind: type[_Scheduling], target: str, attempted: str) -> tuple[int, bool]:
        """Number a new command; check it against the recorded one. Returns (step, recorded).

        ``attempted`` describes the command for an error, formatted with ``target`` only then.
        """
        step = self._next_step
        self._next_step += 1
        replay = self._replay
        if replay is None:  # a live run: nothing recorded to check against
            return step, False
        recorded = replay.recorded.get(step)
        if recorded is not None:
            if type(recorded) is not kind or _target(recorded) != target:
                raise self._mismatch(step, _describe(recorded), attempted.format(target))
            replay.confirmed.add(step)
            return step, True
        if self._replaying and step < replay.last:
            raise self._mismatch(step, "no command", attempted.format(target))
        if replay.ended is not None:  # the recorded run ended before this command
            raise self._mismatch(step, _describe_end(replay.ended), attempted.format(target))
        return step, False

    def _check_size(
        self, kind: type[_Scheduling], target: str, encoded: Any, what: str, *subject: object
    ) -> None:
        """Refuse the payload of the next command if it is over the limit, unless it is recorded.

        On replay, a payload over the limit is accepted when the history recorded this very
        command at the next step (same kind, target and payload): a runtime with a higher limit
        made it, and refusing it now would change what the workflow did. Any other command over
        the limit is refused, as it was when the code first ran under this limit.

        Raises:
            PayloadError: the payload is over :attr:`max_payload` and not recorded.
        """
        try:
            check_payload_size(encoded, self.max_payload, what, *subject)
        except PayloadError:
            replay = self._replay
            recorded = None if replay is None else replay.recorded.get(self._next_step)
            if (
                recorded is None
                or type(recorded) is not kind
                or _target(recorded) != target
                or _payload(recorded) != encoded
            ):
                raise

    def _wait_on(self, task: _Task, leaf: _Leaf) -> None:
        self._leaves[leaf.step] = leaf
        task.leaf = leaf.step
        if not leaf.recorded:
            self._emit(leaf.command)

    def _on_group(
        self, task: _Task, awaitables: tuple[Any, ...], *, first: bool, collect: bool = False
    ) -> None:
        count = len(awaitables)
        if count == 0:
            error = WorkflowMisuseError("flowcore.first() needs at least one awaitable",
                                        workflow_id=self.workflow_id)  # fmt: skip
            self._push((task, None, error) if first else (task, [], None))
            return
        group = _Group(
            parent=task, results=[None] * count, remaining=count, first=first, collect=collect
        )
        op = task.next_op()
        children = []
        for index, aw in enumerate(awaitables, 1):
            if type(aw) is traps.ScheduleActivityTrap and aw.claim is None:
                # a plain call never awaited yet: no coroutine to step
                child = _Task(None, group, index - 1, path=f"{op}.{index}", call=aw)
                aw.claim = child
                self._push((child, None, None))
            else:
                child = self._spawn(_as_coroutine(aw), group, index - 1, f"{op}.{index}")
            children.append(child)
        task.children = children

    def _on_activity(self, task: _Task, trap: traps.ScheduleActivityTrap) -> None:
        defn = trap.activity
        try:
            args, kwargs = serde.encode_args(defn.fn, trap.args, trap.kwargs)
            self._check_size(ev.ActivityScheduled, defn.name,
                             args if kwargs is None else [args, kwargs],
                             "the argument list of activity {!r}", defn.name)  # fmt: skip
        except PayloadError as exc:
            self._push((task, None, exc))
            return
        step, recorded = self._issue(ev.ActivityScheduled, defn.name, "activity {!r}")
        command = cmd.ScheduleActivity(step=step, activity=defn, args=trap.args,
                                       kwargs=trap.kwargs, encoded_args=args,
                                       encoded_kwargs=kwargs, op=task.next_op())  # fmt: skip
        self._leaves[step] = _Leaf(step, "activity", task, command, _result_hint(defn),
                                   defn.name, recorded=recorded)  # fmt: skip
        task.leaf = step
        if not recorded:
            self._emit(command)

    def _on_timer(self, task: _Task, trap: traps.TimerTrap) -> None:
        step, recorded = self._issue(ev.TimerScheduled, "", "a timer")
        task.next_op()
        fire_at = trap.fire_at
        if recorded and self._replay is not None:  # the journal's deadline wins over the code's
            fire_at = self._replay.recorded[step].fire_at  # type: ignore[union-attr]
        command = cmd.StartTimer(step=step, fire_at=fire_at)
        self._wait_on(task, _Leaf(step, "timer", task, command, recorded=recorded))

    def _on_wait_event(self, task: _Task, trap: traps.WaitEventTrap) -> None:
        step, recorded = self._issue(ev.EventWaitStarted, trap.name, "wait_event({!r})")
        task.next_op()
        deadline = trap.deadline
        if recorded and self._replay is not None:  # the journal's deadline wins over the code's
            deadline = self._replay.recorded[step].deadline  # type: ignore[union-attr]
        queued = self._inbox.get(trap.name)
        if queued:  # an event sent earlier satisfies the wait at once
            if not recorded:
                self._emit(cmd.WaitForEvent(step=step, name=trap.name, deadline=None))
            self._resume_with_payload(task, queued.popleft()[1], trap.hint)
            return
        command = cmd.WaitForEvent(step=step, name=trap.name, deadline=deadline)
        leaf = _Leaf(step, "event", task, command, trap.hint, trap.name, deadline, recorded)
        self._waits.setdefault(trap.name, deque()).append(leaf)
        self._wait_on(task, leaf)

    def _on_child(self, task: _Task, trap: traps.ChildTrap) -> None:
        try:
            encoded = serde.encode(trap.payload)
            self._check_size(ev.ChildScheduled, trap.workflow, encoded,
                             "the input of child workflow {!r}", trap.workflow)  # fmt: skip
        except PayloadError as exc:
            self._push((task, None, exc))
            return
        if (
            trap.child_id is not None
            and trap.child_id in (self._child_ids or ())
            and not self._recorded_child(trap.workflow, trap.child_id)
        ):
            error = WorkflowAlreadyExistsError(
                trap.child_id,
                status="started by an earlier child() of this run",
                advice="each child workflow of a run needs its own id",
            )
            self._push((task, None, error))
            return
        step, recorded = self._issue(ev.ChildScheduled, trap.workflow, "child workflow {!r}")
        op = task.next_op()  # not the step: a default id must not depend on outcome order
        child_id = trap.child_id or f"{self.workflow_id}:{op}"
        if recorded and self._replay is not None:  # the journal's id wins: that child exists
            child_id = self._replay.recorded[step].child_id  # type: ignore[union-attr]
        if self._child_ids is None:
            self._child_ids = set()
        self._child_ids.add(child_id)
        command = cmd.StartChild(step=step, workflow=trap.workflow, version=trap.version,
                                 input=encoded, child_id=child_id)  # fmt: skip
        self._wait_on(task, _Leaf(step, "child", task, command, trap.hint, child_id,
                                  recorded=recorded))  # fmt: skip

    def _recorded_child(self, workflow: str, child_id: str) -> bool:
        """Whether the history records the next step as this very child (its workflow and id).

        A run journaled before child() refused an id the run had already used (older flowcore
        adopted that child) replays what it recorded: the journal wins over the newer rule.
        """
        replay = self._replay
        recorded = None if replay is None else replay.recorded.get(self._next_step)
        return (
            isinstance(recorded, ev.ChildScheduled)
            and recorded.name == workflow
            and recorded.child_id == child_id
        )

    def _on_foreign_yield(self, trap: object) -> None:
        what = type(trap).__qualname__
        hint = (
            "use flowcore.gather(...) instead of asyncio.gather(), "
            if what == "_GatheringFuture"
            else ""
        )
        error = WorkflowMisuseError(
            f"workflow {self.definition.name!r} (id {self.workflow_id!r}) awaited a {what}, which "
            "is not a flowcore awaitable. Workflow code may only await activities, "
            f"flowcore.gather(...) and its other helpers, and coroutines that do the same: {hint}"
            "use flowcore.sleep() instead of asyncio.sleep(), and move I/O (network calls, "
            "files, asyncio tasks) into an @flowcore.activity.",
            workflow_id=self.workflow_id,
        )
        _drop_future(trap)
        self._finish(None, error)

    # -- events ------------------------------------------------------------------------------

    def _apply(self, event: ev.Event, not_before: float = 0.0) -> None:
        if self.done:
            self._keep_for_next_run(event)
            return
        if self.suspended and not isinstance(event, ev.WorkflowResumed):
            if not isinstance(event, ev.WorkflowSuspended):  # suspending twice changes nothing
                if self._held is None:
                    self._held = []
                self._held.append(event)
            return
        self._now = max(event.at, not_before)
        match event:
            case ev.ActivityCompleted() | ev.ActivityFailed():
                self._on_activity_outcome(event)
            case ev.TimerFired():
                self._on_timer_fired(event.step)
            case ev.EventReceived():
                self._on_event_received(event)
            case ev.ChildCompleted() | ev.ChildFailed():
                self._on_child_outcome(event)
            case ev.CancelRequested():
                self._on_cancel(event.reason)
            case _:
                self._on_control(event)
                return
        self._run()

    def _keep_for_next_run(self, event: ev.Event) -> None:
        """After the end, an event received is kept: a run that continued as new passes it on."""
        if isinstance(event, ev.EventReceived):
            self._queue_event(event)

    def _on_control(self, event: ev.Event) -> None:
        """Suspension, resumption and termination; bookkeeping events change nothing here."""
        match event:
            case ev.WorkflowSuspended():
                self.suspended = True
            case ev.WorkflowResumed():
                self._on_resume(event.at)
            case ev.WorkflowTerminated():
                self.done = True  # replaying a terminated history: nothing is left to do
                self.close()
            case _:
                pass

    def _on_resume(self, resumed_at: float) -> None:
        self.suspended = False
        held, self._held = self._held or (), None
        for queued in held:  # processed now: their time is at least the resume time
            self._apply(queued, not_before=resumed_at)

    def _outcome_leaf(self, step: int, kind: str) -> _Leaf | None:
        leaf = self._leaves.get(step)
        if leaf is None or leaf.kind != kind:
            self._check_unexpected(step)
            return None  # a late or duplicate outcome: recorded once, ignored here
        del self._leaves[step]
        return leaf

    def _on_activity_outcome(self, event: ev.ActivityCompleted | ev.ActivityFailed) -> None:
        leaf = self._outcome_leaf(event.step, "activity")
        if leaf is None or leaf.task is None:
            return
        if isinstance(event, ev.ActivityCompleted):
            task = leaf.task
            try:
                value = serde.decode(event.result, leaf.hint)
            except PayloadError as exc:
                self._push((task, None, _result_error(exc, leaf.name, event.step)))
                return
            if task.call is not None and not self._ready:
                # A call task first in the queue would finish on its next step: finish it now.
                task.leaf = None
                self._task_done(task, value, None)
                return
            self._push((task, value, None))
            return
        error_type = ActivityTimeoutError if event.timed_out else ActivityError
        error = error_type(
            activity=leaf.name, step=event.step, attempts=event.attempts, failure=event.failure
        )
        self._push((leaf.task, None, error))

    def _on_timer_fired(self, step: int) -> None:
        leaf = self._leaves.get(step)
        if leaf is None or leaf.kind not in ("timer", "event"):
            self._check_unexpected(step)
            return  # a timer that was disarmed, or a wait already satisfied
        del self._leaves[step]
        if leaf.kind == "event":
            self._waits[leaf.name].remove(leaf)
        if leaf.task is not None:
            self._push((leaf.task, None, None))

    def _queue_event(self, event: ev.EventReceived) -> None:
        """Keep an event no wait takes yet, numbered so that its arrival order is known."""
        self._inbox.setdefault(event.name, deque()).append((self._arrivals, event.payload))
        self._arrivals += 1

    def _on_event_received(self, event: ev.EventReceived) -> None:
        waiting = self._waits.get(event.name)
        if not waiting:
            self._queue_event(event)
            return
        leaf = waiting.popleft()
        del self._leaves[leaf.step]
        if leaf.deadline is not None and not self._replaying:
            self._emit(cmd.CancelTimer(step=leaf.step))
        if leaf.task is not None:
            self._resume_with_payload(leaf.task, event.payload, leaf.hint)

    def _on_child_outcome(self, event: ev.ChildCompleted | ev.ChildFailed) -> None:
        leaf = self._outcome_leaf(event.step, "child")
        if leaf is None or leaf.task is None:
            return
        if isinstance(event, ev.ChildCompleted):
            self._resume_with_payload(leaf.task, event.result, leaf.hint)
            return
        error: Exception
        if event.canceled:
            error = WorkflowCanceledError(
                f"child workflow {leaf.name!r} was canceled: {event.failure.message}",
                workflow_id=leaf.name,
            )
        else:
            error = WorkflowFailedError(leaf.name, event.failure)
        self._push((leaf.task, None, error))

    def _on_cancel(self, reason: str | None) -> None:
        if self.cancel_requested:
            return
        self.cancel_requested = True
        self._cancel_reason = reason
        message = f"workflow {self.workflow_id!r} was canceled" + (f": {reason}" if reason else "")
        for leaf in sorted(self._leaves.values(), key=lambda lf: lf.step):
            task = leaf.task
            if task is None or task.done:
                continue
            self._detach(leaf, cancel_work=True)
            self._push((task, None, WorkflowCanceledError(message, workflow_id=self.workflow_id)))

    def _detach(self, leaf: _Leaf, *, cancel_work: bool) -> None:
        """Unhook a leaf from its task; disarm timers and waits, optionally cancel the work."""
        leaf.task = None
        notify = not self._replaying
        if leaf.kind in ("timer", "event"):
            del self._leaves[leaf.step]
            if leaf.kind == "event":
                self._waits[leaf.name].remove(leaf)
            if notify and (leaf.kind == "timer" or leaf.deadline is not None):
                self._emit(cmd.CancelTimer(step=leaf.step))
        elif cancel_work and notify and leaf.kind == "activity":
            self._emit(cmd.CancelActivity(step=leaf.step))
        elif cancel_work and leaf.kind == "child":
            if notify:
                self._emit(cmd.CancelChild(step=leaf.step, child_id=leaf.name))
            elif self._replay is not None:  # replay: it may not have reached the child
                self._replay.unconfirmed_cancels.add(leaf.step)

    def _resume_with_payload(self, task: _Task, payload: Any, hint: Any) -> None:
        try:
            value = serde.decode(payload, hint)
        except PayloadError as exc:
            self._push((task, None, exc))
            return
        self._push((task, value, None))

    # -- determinism checks -------------------------------------------------------------------

    def _check_unexpected(self, step: int) -> None:
        """An outcome with no leaf waiting: on replay, one for a step the code never reissued."""
        replay = self._replay
        if self._replaying and replay is not None:
            recorded = replay.recorded.get(step)
            if recorded is not None and step not in replay.confirmed:
                raise self._mismatch(step, _describe(recorded), "no command")

    def _check_all_reissued(self, replay: _Replay) -> None:
        missing = sorted(set(replay.recorded) - replay.confirmed)
        if missing:
            step = missing[0]
            attempted = "nothing (the workflow ended)" if self.done else "no command"
            raise self._mismatch(step, _describe(replay.recorded[step]), attempted)

    def _check_end(self, ended: ev.Event) -> None:
        """The history ended (``ended``): the code must have ended there too, the same way."""
        made = next((c for c in self._commands or () if type(c) in _END_COMMANDS), None)
        if made is not None and type(made) is _ENDS[type(ended)]:
            return
        attempted = "no end (it still waits)" if made is None else _describe_end_command(made)
        raise self._mismatch(self._next_step, _describe_end(ended), attempted)

    def _mismatch(self, step: int, recorded: str, attempted: str) -> NondeterminismError:
        return NondeterminismError(
            workflow_id=self.workflow_id,
            workflow=self.definition.name,
            step=step,
            recorded=recorded,
            attempted=attempted,
        )


def _target(event: _Scheduling) -> str:
    match event:
        case ev.ActivityScheduled() | ev.ChildScheduled() | ev.EventWaitStarted():
            return event.name
        case _:
            return ""


def _payload(event: _Scheduling) -> Any:
    """What :meth:`WorkflowExecutor._check_size` held to the limit when ``event`` was made."""
    match event:
        case ev.ActivityScheduled():
            return event.args if event.kwargs is None else [event.args, event.kwargs]
        case ev.ChildScheduled():
            return event.input
        case ev.CustomStatusSet():
            return event.value
        case _:
            return None


def _collected(exc: BaseException, workflow_id: str) -> bool:
    """Whether ``gather(return_exceptions=True)`` returns ``exc`` in place of a result.

    Any exception but the workflow's own cancellation (a ``WorkflowCanceledError`` naming
    ``workflow_id``), which still raises out of the gather, as it would out of the awaits the
    branches were at. A child's cancellation names the child: a branch's failure, collected.
    """
    if not isinstance(exc, Exception):
        return False
    return not (isinstance(exc, WorkflowCanceledError) and exc.workflow_id == workflow_id)


def _describe(event: _Scheduling) -> str:
    match event:
        case ev.ActivityScheduled():
            return f"activity {event.name!r}"
        case ev.TimerScheduled():
            return "a timer"
        case ev.EventWaitStarted():
            return f"wait_event({event.name!r})"
        case ev.ChildScheduled():
            return f"child workflow {event.name!r}"
        case _:
            return "set_status()"


_END_COMMANDS = (*_ENDS.values(), cmd.ContinueAsNew)


def _describe_end(event: ev.Event) -> str:
    return f"the workflow's end ({event.kind.removeprefix('workflow_')})"


def _describe_end_command(command: cmd.Command) -> str:
    match command:
        case cmd.CompleteWorkflow():
            return "an end as completed"
        case cmd.FailWorkflow():
            return f"an end as failed ({command.failure})"
        case cmd.CancelWorkflow():
            return "an end as canceled"
        case _:
            return "continue_as_new()"


def _drop_future(trap: object) -> None:
    """Cancel a foreign future the code awaited (an asyncio.gather's: its tasks never start).

    Its tasks would otherwise run flowcore calls outside the engine ("Task got bad yield") and
    log an exception nobody retrieved. Duck-typed: the engine does not import asyncio.
    """
    cancel, then = getattr(trap, "cancel", None), getattr(trap, "add_done_callback", None)
    if callable(cancel) and callable(then):
        cancel()  # a gather's future ends with an exception once its cancelled tasks end
        then(_retrieve)


def _retrieve(future: Any) -> None:
    """Mark a dropped future's exception retrieved (no "exception was never retrieved")."""
    with contextlib.suppress(BaseException):
        future.exception()


def _as_recorded(command: cmd.Command) -> cmd.Command:
    match command:
        case cmd.ScheduleActivity() | cmd.StartTimer() | cmd.WaitForEvent() | cmd.StartChild():
            return dataclasses.replace(command, recorded=True)
        case _:
            return command


@functools.lru_cache(maxsize=4096)
def _result_hint(defn: ActivityDef[..., Any]) -> Any:
    """The return hint of an activity, which decodes its results (one lookup per call)."""
    return serde.signature_hints(defn.fn)[2]


@functools.lru_cache(maxsize=4096)
def _input_hint(defn: WorkflowDef[Any, Any]) -> Any:
    """The hint of a workflow's payload parameter, which decodes its input."""
    if not defn.takes_input:
        return Any
    signature, hints, _ = serde.signature_hints(defn.fn)
    first = next(iter(signature.parameters))
    return hints.get(first, Any)


def _result_error(exc: PayloadError, activity: str, step: int) -> PayloadError:
    """``exc``, raised decoding an activity's result, saying which activity returned it."""
    reason = (
        f"{exc.reason} (the result of activity {activity!r} at step {step}: does what it returns "
        "match its return annotation?)"
    )
    error = PayloadError(reason, path=exc.path, hint=exc.hint, decoding=True)
    error.__cause__ = exc
    return error


def _raised_by(call: traps.ScheduleActivityTrap, exc: BaseException) -> BaseException:
    """``exc`` as raised out of ``await call``: thrown in, so its traceback names the await."""
    awaiting = traps.suspend_on(call)
    next(awaiting)
    try:
        awaiting.throw(exc)
    except BaseException as raised:  # noqa: BLE001 - it is exc itself, handed back
        return raised
    return exc  # pragma: no cover - the awaitable never catches


_UNAWAITED_WARNED: dict[Any, Any] = {}
"""The warnings registry of unawaited-call warnings (each shown once per workflow and activity
under the default filters)."""


def _warn_unawaited(defn: WorkflowDef[Any, Any], names: list[str]) -> None:
    """Warn, once per activity name, that calls of it in ``defn`` were never awaited.

    Warnings turned into errors (``-W error``) must not escape into the engine mid-step: such
    an error goes to ``sys.unraisablehook``, as CPython does for a coroutine never awaited.
    """
    code = getattr(defn.fn, "__code__", None)
    filename = "<unknown>" if code is None else code.co_filename
    lineno = 0 if code is None else code.co_firstlineno
    for name in dict.fromkeys(names):
        message = (
            f"activity {name!r} was called in workflow {defn.name!r} without await, so it never "
            f"ran; write 'await {name}(...)', or pass the call to flowcore.gather() or "
            "flowcore.first()"
        )
        try:
            warnings.warn_explicit(
                message, RuntimeWarning, filename, lineno, defn.fn.__module__, _UNAWAITED_WARNED
            )
        except Warning as error:
            _Unraisable(error)


class _Unraisable:
    """Hands an exception to ``sys.unraisablehook``: raised from ``__del__``, it is reported."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __del__(self) -> None:
        raise self.error


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _as_coroutine(awaitable: Any) -> Any:
    if hasattr(awaitable, "send") and hasattr(awaitable, "throw"):
        return awaitable
    return _await(awaitable)
