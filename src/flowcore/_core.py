"""The runtime's machinery: the step loop, dispatch of activities, timers and children, recovery.

:class:`flowcore.Runtime` is the public face; this base class holds what it does underneath.
An outcome (an activity result, a timer, an external event) is journaled, fed to the instance's
executor, and the commands it returns are journaled and carried out. Appends are pipelined
through the journal's group-commit writer; new work is dispatched only once its schedule is
durable, so a step number (an idempotency key) is never handed to two different calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import heapq
import importlib
import itertools
import time
from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, final

import anyio

from flowcore import _context, serde
from flowcore import listeners as _listeners
from flowcore._definitions import WorkflowDef
from flowcore._frozen import quick_new
from flowcore._instance import (
    TERMINAL_TYPES,
    ActivityJob,
    Terminal,
    _Instance,
    attempt_info,
    retry_state,
    waiting_only,
)
from flowcore._limits import check_payload_size, check_text
from flowcore._status import WorkflowState
from flowcore.backends.base import ActivityOutcome
from flowcore.backends.local import LocalBackend, cancels_attempt, encode_result
from flowcore.engine import commands as cmd
from flowcore.engine import events as ev
from flowcore.engine.executor import WorkflowExecutor
from flowcore.errors import (
    FailureInfo,
    FlowcoreError,
    InvalidArgumentError,
    JournalError,
    NondeterminismError,
    PayloadError,
    RegistrationError,
    WorkflowAlreadyExistsError,
    WorkflowFinishedError,
    WorkflowNotFoundError,
)
from flowcore.journal.base import Append
from flowcore.journal.projection import Projection

if TYPE_CHECKING:
    import builtins
    from collections.abc import Callable, Iterator, Sequence

    from anyio.abc import TaskGroup
    from structlog.typing import FilteringBoundLogger

    from flowcore._definitions import ActivityDef, Registry
    from flowcore._inbox import InboxWatcher
    from flowcore._slots import Slots
    from flowcore._status import WorkflowStatus
    from flowcore.abc import Backend, Clock, Journal
    from flowcore.backends.base import ActivityTask
    from flowcore.engine.events import Json
    from flowcore.journal.base import OutboxRecord

__all__ = ["MAX_ID", "Core", "check_id"]

MAX_ID = 512
"""Longest workflow id accepted."""
EAGER_BACKLOG: Final = 5_000
"""Appends not yet committed past which eager dispatch waits for the commit, as durable does.

A loop that outruns the writer (one workflow's long chain of steps that finish at once) would
otherwise queue appends without bound: memory, the garbage collector's work and the time to
acknowledge would all grow with the length of the run. One full batch of the SQLite writer
(:data:`flowcore.journal.sqlite.MAX_BATCH`) behind, new work waits for its schedule's commit."""
_Work = cmd.ScheduleActivity | cmd.StartTimer | cmd.WaitForEvent | cmd.StartChild


class Core:
    """State and machinery shared by :class:`flowcore.Runtime`; not used on its own."""

    _journal: Journal
    _registry: Registry
    _backend: Backend
    _backends: dict[str, Backend]
    """Named backends for ``@activity(backend=NAME)``; always holds ``"local"``."""
    _clock: Clock
    _now: Callable[[], float]
    """``_clock.now``; for the real clock ``time.time`` itself (no Python frame per call)."""
    _limiter: Slots
    """Activity attempts running at once (``Runtime(max_concurrent_activities=...)``)."""
    _jobs: set[asyncio.Task[None]]
    """Running activity loops (plain tasks), cancelled on close."""
    _instances: dict[str, _Instance]
    _state: Literal["new", "open", "closing", "closed"]
    _failure: BaseException | None
    _tg: TaskGroup | None
    _eager: bool
    """Dispatch new work before its schedule is durable (``Runtime(dispatch="eager")``)."""
    _max_payload: int
    """Largest encoded payload accepted (``Runtime(max_payload_bytes=...)``)."""
    _busy: int
    _ready: builtins.list[_Instance]
    """Instances with activity outcomes queued for this loop tick (see _deliver_soon)."""
    _waiters: int
    _log: FilteringBoundLogger
    _debug: bool
    """Whether debug logs are on (set at open): per-attempt debug fields cost otherwise."""
    _listeners: tuple[_listeners.Listener, ...]
    """Listeners (flowcore.listeners) handed every append; empty: no listener hook runs."""
    _commit_hook: Callable[[], None] | None = None
    """Called after each successful commit; :mod:`flowcore.web` wakes its live streams with it."""
    _in_flight: deque[asyncio.Future[None]] | None = None
    """Appends not yet seen committed, in submission order (see :meth:`_on_commit`)."""
    _after: dict[asyncio.Future[None], Callable[[asyncio.Future[None]], None]]
    """What to do once an append ended, run by :meth:`_on_commit` (see :meth:`_when_ended`)."""
    _max_cached: int | None
    """Most unfinished workflows kept in memory before idle ones are evicted (None: no bound)."""
    _evicted: int = 0
    """Instances in ``_instances`` that are evicted (``_Instance.evicted``)."""
    _next_sweep: float = 0.0
    """perf_counter time before which no eviction sweep runs (one that fell short waits)."""
    _wakeups: builtins.list[tuple[float, int, _Instance, int]]
    """Evicted instances by their earliest timer deadline: (deadline, tie, instance, eviction)."""
    _wake_tie: itertools.count[int]
    _wake_scope: anyio.CancelScope | None = None
    """The wake-up runner's sleep while it runs (cancelled when an earlier deadline arrives)."""
    _wake_running: bool = False
    _sweep_deferred: bool = False
    """A sweep put off by :attr:`_next_sweep` is scheduled."""
    _timing: _DueTimers
    """Timers whose deadline passed, fired in deadline order (see :meth:`_timer_due`)."""
    _inbox: InboxWatcher | None
    """Applies the requests other processes queue in the journal (set by Runtime.open)."""

    # -- internals: starting -------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._failure is not None:
            raise JournalError(
                f"the runtime stopped accepting work after a journal failure ({self._failure}); "
                "nothing acknowledged was lost: fix the cause and open a new Runtime"
            ) from self._failure
        if self._state != "open":
            raise FlowcoreError(
                f"the runtime is {self._state}; use 'async with Runtime(...)' or await open() "
                "first (in a web app: Starlette(lifespan=flowcore.lifespan(runtime)))"
            )

    def _resolve(
        self, workflow: str | WorkflowDef[Any, Any], version: str | None
    ) -> WorkflowDef[Any, Any]:
        if isinstance(workflow, WorkflowDef):
            if version is None or version == workflow.version:
                known = self._registry.workflows.get(workflow.name, {})
                if known.get(workflow.version) is not workflow:
                    # recovery and result() need it; starting it leaves the default version
                    self._registry.add_workflow(workflow, latest=False)
                return workflow
            return self._registry.workflow(workflow.name, version)
        return self._registry.workflow(workflow, version)

    async def _start(
        self,
        defn: WorkflowDef[Any, Any],
        encoded: Any,
        wid: str,
        *,
        if_exists: str,
        fresh_id: bool = False,
        parent_id: str | None = None,
        consumed: tuple[int, ...] = (),
        check_input: bool = False,
    ) -> _Instance | None:
        """Journal a workflow's start (and its first step); return once it is committed.

        Returns the instance this call created, or None when ``wid`` existed already (with
        ``if_exists="return"``): a handle may keep it to answer ``result()`` without the journal.
        With ``check_input``, an input the workflow's parameter cannot decode is refused before
        anything is written (else the run is journaled as failed at its start).
        """
        if parent_id is None:  # a child's input: checked by its parent's engine, unless recorded
            check_payload_size(encoded, self._max_payload, f"the input of workflow {defn.name!r}")
        inst = self._instances.get(wid)
        if inst is not None:
            if inst.creating is not None:  # another start of this id: answer once it is durable
                try:
                    await _shielded(inst.creating)
                except WorkflowAlreadyExistsError as exc:  # the id was taken before either
                    self._exists(wid, exc.status, if_exists)
                    return None
            self._exists(wid, inst.projection.status.value, if_exists)
            return None
        inst = _Instance(wid, Projection(wid), asyncio.get_running_loop().create_future())
        self._instances[wid] = inst
        started = ev.WorkflowStarted(
            at=self._now(),
            name=defn.name,
            version=defn.version,
            input=encoded,
            parent_id=parent_id,
        )
        executor = WorkflowExecutor(defn, wid, max_payload=self._max_payload)
        inst.executor = executor
        commands = executor.start(started)
        if check_input and executor.input_error is not None:
            del self._instances[wid]  # nothing of it was journaled: as if never started
            executor.close()
            await self._refuse_input(defn, encoded, wid, executor.input_error, if_exists,
                                     fresh_id=fresh_id)  # fmt: skip
            return None
        if fresh_id or not any(isinstance(c, cmd.ContinueAsNew) for c in commands):
            # One append holds the start and the first step's schedules; work is dispatched only
            # once it commits, so a duplicate id (refused atomically by the journal) runs nothing.
            # A fresh id cannot be a duplicate: eager dispatch starts its work at once.
            commit = self._carry_out(inst, executor, commands, [started], consumed, create=True,
                                     unique=fresh_id)  # fmt: skip
            assert commit is not None  # noqa: S101 - it holds `started`
            later = None
        else:
            # A run that continues as new at once appends more than its start: commit the start
            # alone first, so a duplicate id is refused before anything else is queued.
            commit = self._append(inst, [started], create=True, consumed=consumed)
            later = commands
        if not fresh_id:  # a generated id cannot be a duplicate: nothing to forget
            inst.creating = commit
            commit.add_done_callback(functools.partial(self._created, inst))
        if later is not None:
            commit.add_done_callback(
                functools.partial(self._carry_out_later, inst, executor, later)
            )
        # Not kept alive while the start commits (the garbage collector would scan them); the
        # instance is alive anyway, in _instances.
        del started, executor, commands, later
        try:
            await _shielded(commit)  # a cancelled caller must not cancel what commits anyway
        except WorkflowAlreadyExistsError as exc:
            self._exists(wid, exc.status, if_exists)
            return None  # the instance made here was dropped (see _created)
        self._log.info("workflow started", workflow_id=wid, workflow=defn.name)
        return inst

    async def _refuse_input(
        self,
        defn: WorkflowDef[Any, Any],
        encoded: Any,
        wid: str,
        error: PayloadError,
        if_exists: str,
        *,
        fresh_id: bool,
    ) -> None:
        """Refuse an input ``defn`` cannot take, unless ``wid`` exists: answered as ever then.

        ``run --id`` resumes an instance without its payload: the input is refused only for
        a workflow this call would have created.
        """
        row = None if fresh_id else await self._journal.status(wid)
        if row is None:
            raise unfit_input(defn, encoded, error)
        self._exists(wid, row.status.value, if_exists)

    def _carry_out_later(
        self,
        inst: _Instance,
        executor: WorkflowExecutor,
        commands: Sequence[cmd.Command],
        commit: asyncio.Future[None],
    ) -> None:
        """The start committed alone: carry out the rest of its first step (continue-as-new)."""
        if not commit.cancelled() and commit.exception() is None and inst.executor is executor:
            self._carry_out(inst, executor, commands, [])

    def _created(self, inst: _Instance, commit: asyncio.Future[None]) -> None:
        """The start's commit ended: on a duplicate id, forget the instance that never was."""
        inst.creating = None
        if commit.cancelled() or not isinstance(commit.exception(), WorkflowAlreadyExistsError):
            return
        if inst.executor is not None:
            inst.executor.close()
            inst.executor = None
        inst.cancel_work()
        if self._instances.get(inst.id) is inst:
            del self._instances[inst.id]
            if inst.evicted:
                self._unevict(inst)

    def _exists(self, wid: str, status: str, if_exists: str) -> None:
        if if_exists != "return":
            raise WorkflowAlreadyExistsError(wid, status=status)

    async def _settled(self, wid: str) -> _Instance | None:
        """The instance in memory for ``wid``, once its start (if still in flight) committed.

        A start not yet committed may be refused as a duplicate (the id belongs to a finished
        workflow): that instance is then dropped and never ends, so nobody may wait on it.
        """
        inst = self._instances.get(wid)
        if inst is not None and inst.creating is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(inst.creating)
            inst = self._instances.get(wid)
        return inst

    async def _unfinished(self, wid: str, action: str) -> _Instance:
        self._check_open()
        inst = await self._settled(wid)
        if inst is not None and not inst.done.done():
            return inst
        row = await self._journal.status(wid)
        if row is None:
            raise WorkflowNotFoundError(wid)
        raise WorkflowFinishedError(wid, status=row.status.value, action=action)

    async def _request(
        self,
        wid: str,
        action: str,
        event_type: Callable[..., ev.Event],
        *,
        consumed: tuple[int, ...] = (),
        until: float | None = None,
        **fields: Any,
    ) -> None:
        """Journal a request event and feed it to the instance (``consumed``: inbox ids).

        Timers of the instance whose deadline passed by ``until`` (the time an inbox request
        was queued; by default now) fire first if their tasks have not yet: an event sent
        after a wait's deadline finds the wait timed out, even while the loop lags behind
        the clock or the instance was just reloaded after an eviction.
        """
        if "payload" in fields:
            check_payload_size(fields["payload"], self._max_payload, "the event's payload")
        for key, what in (("name", "the event name"), ("reason", "the reason")):
            if isinstance(fields.get(key), str):
                self._check_label(fields[key], what)
        inst = await self._unfinished(wid, action)
        while inst.evicted:  # idle and evicted: replay it, then deliver
            await self._reload(inst)
            inst = await self._unfinished(wid, action)
        event = event_type(at=self._now(), **fields)
        executor = inst.executor
        if executor is not None and not executor.done:
            # Due by the runtime's own clock too: an inbox request's time is the wall clock's,
            # which a test's virtual clock may lag far behind.
            self._fire_overdue(inst, executor, event.at if until is None else min(until, event.at))
        if executor is not None and executor.done:  # its end is being committed
            terminal = await inst.ended()
            raise WorkflowFinishedError(wid, status=terminal.kind.removeprefix("workflow_"),
                                        action=action)  # fmt: skip
        if executor is None:  # parked: the event waits in the journal for fixed code
            await asyncio.shield(self._append(inst, [event], consumed=consumed))
            return
        if type(event) is ev.EventReceived:  # a wait that cannot take it: refused, not journaled
            executor.check_event(event.name, event.payload)
        commit = self._deliver(inst, executor, event, consumed=consumed)
        if commit is not None:  # shielded: the commit's callbacks dispatch what the event woke
            await asyncio.shield(commit)

    def _check_label(self, text: str, what: str) -> None:
        """Refuse an event name or a reason that cannot be stored, or over the payload limit."""
        check_text(text, what)
        check_payload_size(text, self._max_payload, what)

    async def _terminate_request(
        self, wid: str, reason: str | None, consumed: tuple[int, ...] = ()
    ) -> None:
        """Terminate ``wid`` as asked (``Runtime.terminate``, the inbox): checked, then done."""
        if isinstance(reason, str):
            self._check_label(reason, "the reason")
        inst = await self._unfinished(wid, "terminate")
        await self._terminate(inst, reason, consumed)

    async def _terminate(
        self, inst: _Instance, reason: str | None, consumed: tuple[int, ...] = ()
    ) -> None:
        if inst.evicted:  # no code of it runs on terminate: no need to replay it
            self._unevict(inst)
        if inst.executor is not None:
            inst.executor.close()
            inst.executor = None
        inst.cancel_work()
        children = list(inst.children.values())
        terminal = ev.WorkflowTerminated(at=self._now(), reason=reason)
        commit = self._append(inst, [terminal], consumed=consumed)
        commit.add_done_callback(functools.partial(self._finished, inst, terminal))
        # A task of its own: should the caller be cancelled, the children still end with it.
        await asyncio.shield(self._terminate_children(commit, inst.id, children))

    async def _terminate_children(
        self, commit: asyncio.Future[None], parent_id: str, children: Sequence[str]
    ) -> None:
        await commit
        for child_id in children:
            child = self._instances.get(child_id)
            if child is not None and not child.done.done():
                await self._terminate(child, f"parent {parent_id!r} was terminated")

    # -- internals: the step loop ------------------------------------------------------------

    def _append(
        self,
        inst: _Instance,
        events: Sequence[ev.Event],
        *,
        create: bool = False,
        reset: bool = False,
        consumed: tuple[int, ...] = (),
        outbox: tuple[OutboxRecord, ...] = (),
    ) -> asyncio.Future[None]:
        for event in events:
            inst.projection.apply(event)
        if reset:
            inst.next_seq = 1
        op = _new_append(
            workflow_id=inst.id,
            first_seq=inst.next_seq,
            events=tuple(events),
            row=inst.projection.row(),
            create=create,
            reset=reset,
            consumed=consumed,
            outbox=outbox,
        )
        inst.next_seq += len(events)
        if events:
            inst.parked = _park_reason(events[-1])
        if self._listeners and events:  # listener hook: outbox records commit with the op
            op = _listeners.collect(self._listeners, op, self._log)
        future = self._journal.submit(op)  # both journals return a future: no ensure_future
        if not isinstance(future, asyncio.Future):
            future = asyncio.ensure_future(future)
        inst.last_commit = future
        if op.outbox:
            _listeners.notify_committed(self._listeners, future, self._log)
        self._busy += 1
        if future.done():  # refused at once: seen on its own
            future.add_done_callback(self._on_commit)
            return future
        in_flight = self._in_flight
        if in_flight is None:
            in_flight = self._in_flight = deque()
        in_flight.append(future)
        if len(in_flight) == 1:
            future.add_done_callback(self._on_commit)
        return future

    def _when_ended(
        self, commit: asyncio.Future[None], action: Callable[[asyncio.Future[None]], None]
    ) -> None:
        """Call ``action(commit)`` once the append ``commit`` ended (committed, failed or not).

        :meth:`_on_commit` calls it with the rest of the batch: no loop callback of its own. It
        runs after the runtime fail-stopped on a failed batch, and after the waiters of an
        append that was handed the batch callback late (see :meth:`_on_commit`).
        """
        self._after[commit] = action

    def _on_commit(self, future: asyncio.Future[None]) -> None:
        """Account for ended appends: fail-stop on a failed one, tell the commit hook otherwise.

        Only the oldest append in flight has this callback: a journal resolves its ops in
        submission order, a batch at once, so one call (a loop callback costs more than the
        rest of it) sees every append the batch ended and hands the callback on to the oldest
        one still in flight. An append refused at submit has its own call. Then it runs what
        was asked of the ended appends (:meth:`_when_ended`), in submission order.
        """
        in_flight = self._in_flight
        ended: builtins.list[asyncio.Future[None]] = [future]
        if in_flight and in_flight[0] is future:
            ended.clear()
            while in_flight and in_flight[0].done():
                ended.append(in_flight.popleft())
            if in_flight:
                in_flight[0].add_done_callback(self._on_commit)
        for each in ended:
            self._busy -= 1
            if each.cancelled():
                continue
            exc = each.exception()
            if (
                exc is not None
                and not isinstance(exc, WorkflowAlreadyExistsError)
                and self._failure is None
            ):
                self._fail_stop(exc)
            elif exc is None and self._commit_hook is not None:
                self._commit_hook()
        if self._after:
            self._run_after(ended)
        if self._max_cached is not None:
            self._keep_bound()

    def _run_after(self, ended: Sequence[asyncio.Future[None]]) -> None:
        """Run what :meth:`_when_ended` asked of the ended appends, in submission order."""
        after = self._after
        for each in ended:
            action = after.pop(each, None)
            if action is not None:
                action(each)

    def _fail_stop(self, exc: BaseException) -> None:
        """The journal can no longer be trusted: stop all progress; waiters get the error."""
        self._failure = exc
        self._log.error("journal commit failed; runtime stops accepting work", error=str(exc))
        error = JournalError(
            f"the journal failed ({exc}); the workflow continues when a runtime is opened on "
            "the database again"
        )
        for inst in self._instances.values():
            if inst.executor is not None:
                inst.executor.close()
                inst.executor = None
            inst.cancel_work()
            if not inst.done.done():
                inst.abort(error)  # result() re-raises it to any waiter

    def _deliver(
        self,
        inst: _Instance,
        executor: WorkflowExecutor,
        event: ev.Event,
        *,
        consumed: tuple[int, ...] = (),
    ) -> asyncio.Future[None] | None:
        """Journal ``event`` and feed it to the instance's current run (``consumed``: inbox ids)."""
        if inst.executor is not executor or executor.done:
            return None
        try:
            commands = executor.apply(event)
        except Exception as exc:  # noqa: BLE001 - an engine bug must not stop other workflows
            return self._engine_failed(inst, executor, exc, [event], consumed)
        return self._carry_out(inst, executor, commands, [event], consumed)

    def _engine_failed(
        self,
        inst: _Instance,
        executor: WorkflowExecutor,
        exc: Exception,
        events: Sequence[ev.Event],
        consumed: tuple[int, ...] = (),
    ) -> asyncio.Future[None] | None:
        """The engine raised applying ``events``' last one: journal them and park the instance."""
        self._log.exception("engine error; workflow parked", workflow_id=inst.id)
        executor.close()
        inst.executor = None
        inst.cancel_work()
        return self._park(inst, f"internal engine error: {exc!r}", 0, events, consumed)

    def _carry_out(
        self,
        inst: _Instance,
        executor: WorkflowExecutor,
        commands: Sequence[cmd.Command],
        events: builtins.list[ev.Event],
        consumed: tuple[int, ...] = (),
        *,
        create: bool = False,
        unique: bool = False,
        work: builtins.list[_Work] | None = None,
    ) -> asyncio.Future[None] | None:
        """Journal what the commands record, then carry them out; return the commit.

        ``consumed`` (inbox ids) and ``create`` apply to the first append, the one that holds
        ``events``; the work of a creating append waits for its commit (which may refuse a
        duplicate id) unless the id is ``unique`` (generated) and dispatch is eager. ``work``:
        what earlier commands of ``events`` asked for.
        """
        work = [] if work is None else work
        while True:  # a loop, not recursion: a run may continue as new many times at once
            now = self._now()
            restart: cmd.ContinueAsNew | None = None
            for command in commands:
                if type(command) is cmd.ScheduleActivity and not command.recorded:
                    events.append(_activity_scheduled(command, now))  # the usual: no _record
                    work.append(command)
                elif isinstance(command, cmd.ContinueAsNew):
                    restart = self._continuing(executor, command, now, events)
                else:
                    self._record(inst, command, now, events, work)
            if events:
                commit = self._append(inst, events, consumed=consumed, create=create)
            else:
                commit = None
            eager = (
                self._eager
                and (unique or not create)
                and (self._in_flight is None or len(self._in_flight) < EAGER_BACKLOG)
            )
            consumed, create = (), False
            if restart is None:
                break
            executor, commands = self._new_run(inst, restart.input, restart.version)
            events, work = [], []
        terminal = events[-1] if events and isinstance(events[-1], TERMINAL_TYPES) else None
        if terminal is not None and commit is not None:
            inst.cancel_work()
            self._when_ended(commit, _FinishAfter(self, inst, terminal))
        elif work and (commit is None or eager):
            # Recovered work is already durable. Eager work starts before its schedule is: it is
            # keyed by its op, which replay reproduces whatever order outcomes arrive in.
            self._dispatch(inst, executor, work)
        elif work and commit is not None:
            # Durable dispatch: work starts once its schedule is committed, so a key can never
            # be reissued to a call whose arguments came from results a crash lost.
            self._when_ended(commit, _DispatchAfter(self, inst, executor, work))
        return commit

    def _continuing(
        self,
        executor: WorkflowExecutor,
        command: cmd.ContinueAsNew,
        now: float,
        events: builtins.list[ev.Event],
    ) -> cmd.ContinueAsNew | None:
        """The continue-as-new to carry out, or None if no code is registered for its version.

        Then the run fails with UnknownVersionError (added to ``events``) instead of the next
        run silently taking the latest version.
        """
        if command.version is not None:
            try:
                self._registry.workflow(executor.definition.name, command.version)
            except RegistrationError as exc:
                events.append(ev.WorkflowFailed(at=now, failure=FailureInfo.from_exception(exc)))
                return None
        return command

    def _record(
        self,
        inst: _Instance,
        command: cmd.Command,
        now: float,
        events: builtins.list[ev.Event],
        work: builtins.list[_Work],
    ) -> None:
        """Sort one command: an event to journal, work to start, or a cancellation to apply."""
        match command:
            case cmd.ScheduleActivity() | cmd.StartTimer() | cmd.WaitForEvent() | cmd.StartChild():
                if not command.recorded:
                    events.append(_scheduling_event(command, now))
                work.append(command)
            case cmd.SetCustomStatus():
                events.append(ev.CustomStatusSet(at=now, step=command.step, value=command.value))
            case cmd.CancelTimer():
                inst.cancel_timer(command.step)
                # armed and disarmed in one batch (first() found its event waiting): skip it
                work[:] = [w for w in work if w.step != command.step]
            case cmd.CancelActivity():
                inst.cancel_activity(command.step)
                work[:] = [w for w in work if w.step != command.step]  # not started yet: skip
            case cmd.CancelChild():
                self._spawn(self._cancel_child, command.child_id, inst.id)
            case _:
                events.append(_terminal_event(command, now))

    def _dispatch(self, inst: _Instance, executor: WorkflowExecutor, work: Sequence[_Work]) -> None:
        if inst.executor is not executor or executor.done:
            return
        for command in work:
            match command:
                case cmd.ScheduleActivity():
                    attempt, due = inst.retries.pop(command.step, (1, None))
                    job = ActivityJob(inst, executor, command, attempt, due)
                    inst.activities[command.step] = job
                    self._start_job(job)
                case cmd.StartTimer():
                    self._arm(inst, executor, command.step, command.fire_at)
                case cmd.WaitForEvent():
                    if command.deadline is not None:
                        self._arm(inst, executor, command.step, command.deadline)
                case cmd.StartChild():
                    inst.children[command.step] = command.child_id
                    self._spawn(self._await_child, inst, executor, command)

    def _spawn(self, fn: Callable[..., Any], *args: Any) -> None:
        tg = self._tg
        if tg is not None and self._failure is None:
            _on_asyncio(tg.start_soon, fn, *args)  # also from loop callbacks (a commit's)

    def _start_job(self, job: ActivityJob) -> None:
        """Run an activity's attempt loop as a plain task: the hot path skips task-group upkeep.

        A task even for an attempt that ends without suspending: asyncio.timeout, TaskGroup and
        anyio's cancel scopes (httpx) need a current task from the activity's first line, which
        driving its coroutine from a plain loop callback would not give.
        """
        if self._tg is None or self._failure is not None:
            return
        # The activity runs in a copy of the starter's context and its outcome is applied in
        # the starter's: context variables the activity body sets stay in the activity.
        starter = contextvars.copy_context()
        runner = job.runner = asyncio.get_running_loop().create_task(
            self._run_activity(job, starter), context=starter.copy()
        )
        self._jobs.add(runner)  # the task leaves the set itself: no done callback

    def _finished(self, inst: _Instance, terminal: Terminal, commit: asyncio.Future[None]) -> None:
        if commit.cancelled() or commit.exception() is not None:
            return
        if not inst.done.done():
            inst.end(terminal)
        if self._instances.get(inst.id) is inst:
            del self._instances[inst.id]
        log, ids = self._log, {"workflow_id": inst.id, "workflow": inst.projection.name}
        match terminal:  # no bound logger per workflow: a filtered line then costs nothing more
            case ev.WorkflowCompleted():
                log.info("workflow completed", **ids)
            case ev.WorkflowFailed():
                log.warning("workflow failed", error=str(terminal.failure), **ids)
            case ev.WorkflowCanceled():
                log.info("workflow canceled", reason=terminal.reason, **ids)
            case ev.WorkflowTerminated():
                log.info("workflow terminated", reason=terminal.reason, **ids)

    def _new_run(
        self, inst: _Instance, encoded: Any, version: str | None
    ) -> tuple[WorkflowExecutor, builtins.list[cmd.Command]]:
        """Continue as new: journal the next run's start; return its executor and commands.

        Events the ending run received but did not take are acknowledged: the next run gets
        them, journaled right after its start, in the order they arrived.
        """
        previous = inst.executor
        unconsumed = [] if previous is None else previous.unconsumed_events()
        inst.cancel_work()
        inst.retries.clear()
        inst.children.clear()
        # default: the current run's version, even where its code is the latest's (for_replay)
        version = version or inst.projection.version
        defn = self._registry.for_replay(inst.projection.name, version)
        started = ev.WorkflowStarted(
            at=self._now(),
            name=defn.name,
            version=version,
            input=encoded,
            parent_id=inst.projection.parent_id,
            run=(1 if inst.executor is None else inst.executor.run) + 1,
            flags=(ev.RUN_SEEDED,),
        )
        carried = [
            ev.EventReceived(at=started.at, name=name, payload=payload)
            for name, payload in unconsumed
        ]
        executor = WorkflowExecutor(defn, inst.id, max_payload=self._max_payload)
        inst.executor = executor
        self._append(inst, [started, *carried], reset=True)
        self._log.info("workflow continued as new", workflow_id=inst.id, workflow=defn.name)
        commands = executor.start(started)
        for event in carried:  # replay applies them in this order, after the start
            commands.extend(executor.apply(event))
        return executor, commands

    # -- internals: running work ----------------------------------------------------------------

    async def _run_activity(self, job: ActivityJob, starter: contextvars.Context) -> None:
        """The body of an activity's task (see :meth:`_start_job`); it leaves ``_jobs`` itself.

        A local async activity without a timeout or a retry due runs its attempt in this frame
        (what :meth:`_attempts`, :meth:`_attempt` and the backend do, in one frame: no coroutine
        per layer on the hot path); a retry continues in :meth:`_attempts`. An outcome with no
        running sibling is applied at once, in this task's pass (:meth:`_settle`).
        """
        job.running = True
        try:
            if job.stopped:  # stopped before the task began: it was not cancelled
                return
            defn = job.command.activity
            if job.due is None and defn.is_async and defn.timeout is None and self._here(defn):
                began = time.perf_counter()
                limiter = self._limiter
                if not limiter.take():  # a free slot is taken without a coroutine
                    await limiter.acquire()
                self._busy += 1
                token = _context.enter_activity(functools.partial(attempt_info, job, job.attempt))
                try:
                    args, kwargs = job.arguments()
                    result, failure = encode_result(await defn.fn(*args, **kwargs))
                except BaseException as exc:  # the activity's error is its outcome
                    if cancels_attempt(exc):
                        raise
                    result, failure = None, FailureInfo.from_exception(exc)
                finally:
                    _context.exit_activity(token)
                    self._busy -= 1
                    limiter.release()
                seconds = time.perf_counter() - began
                event: ev.Event | None = self._judge(job, result, failure, seconds)
                if type(event) is ev.ActivityAttemptFailed:  # journal it, retry in the loop
                    event = await self._attempts(job, self._append(job.inst, [event]))
            else:
                event = await self._attempts(job)
            starter.run(self._settle, job, event)
        except asyncio.CancelledError:
            if not job.stopped:
                raise  # the runtime is closing
        except Exception as exc:  # noqa: BLE001 - a runtime fault: stop, recovery re-runs it
            self._log.error("activity runner crashed", error=repr(exc))
            self._fail_stop(exc)
        finally:
            self._jobs.discard(job.runner)  # set before the task first runs

    def _settle(self, job: ActivityJob, event: ev.Event | None) -> None:
        """The attempt loop ended: apply its event now, or with its siblings' later this tick."""
        inst, step = job.inst, job.command.step
        if inst.activities.get(step) is job:
            del inst.activities[step]
        if event is None or job.stopped:
            pass
        elif inst.activities or inst.outcomes:
            self._deliver_soon(job, event)  # siblings may finish this tick: apply together
        elif self._failure is None:  # nothing to wait for: applied now, a loop pass less
            self._deliver(inst, job.executor, event)  # what _deliver_outcomes does for one

    def _here(self, defn: ActivityDef[..., Any]) -> bool:
        """Whether ``defn`` runs on this runtime's LocalBackend (its task may then run it)."""
        name = defn.backend
        backend = self._backend if name is None else self._backends.get(name)
        return type(backend) is LocalBackend

    def _deliver_soon(self, job: ActivityJob, event: ev.Event) -> None:
        """Queue an activity's outcome: the outcomes of one loop tick are applied together.

        A fan-out's completions then become one journal append per workflow per tick (not one
        each), in the order they arrived, as if delivered one by one.
        """
        inst = job.inst
        outcomes = inst.outcomes
        if outcomes is None:
            if not self._ready:
                asyncio.get_running_loop().call_soon(self._deliver_ready)
            self._ready.append(inst)
            outcomes = inst.outcomes = []
        outcomes.append((job, event))
        self._busy += 1  # undelivered work: a virtual clock must not skip ahead

    def _deliver_ready(self) -> None:
        ready, self._ready = self._ready, []
        for inst in ready:
            outcomes, inst.outcomes = inst.outcomes or [], None
            self._busy -= len(outcomes)
            if self._failure is None:
                self._deliver_outcomes(inst, outcomes)

    def _deliver_outcomes(
        self, inst: _Instance, outcomes: Sequence[tuple[ActivityJob, ev.Event]]
    ) -> None:
        """Apply queued outcomes in order; journal them (and what they cause) in one append."""
        executor = inst.executor
        events: builtins.list[ev.Event] = []
        work: builtins.list[_Work] = []
        commands: Sequence[cmd.Command] | None = None
        for job, event in outcomes:
            if executor is None or job.executor is not executor or executor.done or job.stopped:
                continue  # a run that ended (or continued as new) takes no more outcomes
            if commands is not None:
                now = self._now()
                for command in commands:
                    self._record(inst, command, now, events, work)
            events.append(event)
            try:
                commands = executor.apply(event)
            except Exception as exc:  # noqa: BLE001 - an engine bug must not stop other workflows
                self._engine_failed(inst, executor, exc, events)
                return
        if executor is not None and commands is not None:
            self._carry_out(inst, executor, commands, events, work=work)

    async def _attempts(
        self, job: ActivityJob, retry: asyncio.Future[None] | None = None
    ) -> ev.Event | None:
        """Run attempts through the backend until one ends the activity; return its event.

        ``retry``: the commit of a failed attempt already judged (:meth:`_run_activity`); the
        next one runs once it is durable. None: the workflow's wish to stop is a cancellation.
        """
        timeout = job.command.activity.timeout
        while True:
            if retry is not None:
                try:
                    # The next attempt's idempotency key is valid only once this is durable.
                    await retry
                except Exception:  # noqa: BLE001 - _on_commit fail-stops; recovery retries
                    return None
                job.attempt += 1
            if job.due is not None:
                await self._clock.sleep_until(job.due)
            began = time.perf_counter()
            outcome = await self._attempt(job.task(), timeout)
            seconds = time.perf_counter() - began
            event = self._judge(job, outcome.result, outcome.failure, seconds, outcome.timed_out)
            if type(event) is not ev.ActivityAttemptFailed:
                return event
            retry = self._append(job.inst, [event])

    def _judge(
        self,
        job: ActivityJob,
        result: Json,
        failure: FailureInfo | None,
        seconds: float,
        timed_out: bool = False,  # noqa: FBT001, FBT002 - a private hot-path call
    ) -> ev.Event:
        """The event an attempt's outcome makes, logged: completed, failed, or to be retried.

        A retried failure (:class:`~flowcore.engine.events.ActivityAttemptFailed`) sets
        ``job.due`` to its retry's deadline; the caller journals it.
        """
        command, defn = job.command, job.command.activity
        now = self._now()
        if failure is None:
            try:  # over the limit, it fails for good (a retry gives the same result)
                check_payload_size(result, self._max_payload, "the result of {!r}", defn.name)
            except PayloadError as exc:
                failure = FailureInfo.from_exception(exc, non_retryable=True)
        if failure is None:
            if self._debug:  # the fields are built only when they are logged
                self._log.debug("activity completed", **_attempt_fields(job, seconds))
            return _new_activity_completed(
                at=now, step=command.step, result=result, attempt=job.attempt
            )
        if not defn.retry.should_retry(failure, job.attempt):
            fields = _attempt_fields(job, seconds)
            self._log.warning("activity failed", error=str(failure), **fields)
            return ev.ActivityFailed(
                at=now,
                step=command.step,
                failure=failure,
                attempts=job.attempt,
                timed_out=timed_out,
            )
        delay = defn.retry.delay(job.attempt)
        job.due = now + delay
        self._log.info(
            "activity attempt failed; retrying",
            error=str(failure),
            retry_in_s=round(delay, 3),
            retry_at=datetime.fromtimestamp(job.due, UTC).isoformat(timespec="milliseconds"),
            **_attempt_fields(job, seconds),
        )
        return ev.ActivityAttemptFailed(
            at=now, step=command.step, attempt=job.attempt, failure=failure, retry_at=job.due
        )

    def _all_backends(self) -> builtins.list[Backend]:
        """The default backend and the named ones, each once."""
        found = {id(self._backend): self._backend}
        found.update((id(b), b) for b in self._backends.values())
        return list(found.values())

    def _backend_note(self, workflow_id: str) -> str | None:
        """What a backend says holds up the instance's activities (``pending_note``), if any."""
        for each in self._all_backends():
            describe = getattr(each, "pending_note", None)
            note = describe(workflow_id) if describe is not None else None
            if note is not None:
                return str(note)
        return None

    async def _attempt(self, task: ActivityTask, timeout: float | None) -> ActivityOutcome:
        name = task.activity.backend
        backend = self._backend if name is None else self._backends.get(name)
        if backend is None:
            error = RegistrationError(
                f"activity {task.activity.name!r} wants backend {name!r}, but the runtime has "
                f"only {sorted(self._backends)}; pass Runtime(backends={{{name!r}: ...}})"
            )
            return ActivityOutcome(failure=FailureInfo.from_exception(error, non_retryable=True))
        limiter = None if getattr(backend, "remote", False) else self._limiter
        if limiter is not None and not limiter.take():  # remote: bounded by its workers
            await limiter.acquire()
        self._busy += 1
        try:
            outcome: object = await backend.execute(task, timeout=timeout)  # checked below
        except BaseException as exc:  # a backend fault is a failed attempt, as in LocalBackend
            if cancels_attempt(exc):
                raise
            return ActivityOutcome(failure=FailureInfo.from_exception(exc))
        finally:
            self._busy -= 1
            if limiter is not None:
                limiter.release()
        if type(outcome) is not ActivityOutcome:
            wrong = TypeError(
                f"backend {type(backend).__qualname__} returned {type(outcome).__qualname__} "
                "from execute(), not an ActivityOutcome"
            )
            return ActivityOutcome(failure=FailureInfo.from_exception(wrong))
        return outcome

    def _arm(self, inst: _Instance, executor: WorkflowExecutor, step: int, fire_at: float) -> None:
        scope: anyio.CancelScope = _on_asyncio(anyio.CancelScope)
        inst.timers[step] = (scope, fire_at)
        self._spawn(self._run_timer, inst, executor, step, fire_at, scope)

    async def _run_timer(
        self,
        inst: _Instance,
        executor: WorkflowExecutor,
        step: int,
        fire_at: float,
        scope: anyio.CancelScope,
    ) -> None:
        with scope:
            await self._clock.sleep_until(fire_at)
        if not scope.cancel_called:
            self._timer_due((fire_at, step, inst, executor, scope))

    def _timer_due(self, timer: _Due) -> None:
        """Queue a timer whose deadline passed; the timers due in one loop pass fire together.

        They fire in deadline order (then step order): timers that expired while no runtime
        ran all come due at once when recovery arms them, and ``first(sleep(4), sleep(2))``
        must still be won by the earlier deadline, as it would have been without the downtime.
        """
        timing = self._timing
        timing.due.append(timer)
        self._busy += 1  # undelivered: a virtual clock must not skip ahead
        if not timing.scheduled:
            timing.scheduled = True
            asyncio.get_running_loop().call_soon(self._fire_due)

    def _fire_due(self) -> None:
        timing = self._timing
        due, timing.due, timing.scheduled = timing.due, [], False
        self._busy -= len(due)
        due.sort(key=_deadline_order)
        held = timing.held
        inbox = self._inbox
        if held is None and inbox is not None and inbox.has_unseen():
            # A request queued (and acknowledged) before these deadlines may not be applied
            # yet: apply the inbox first, in time order with the timers (see _fire_overdue).
            held = timing.held = {}
            self._spawn(self._catch_up, inbox)
        for timer in due:
            if held is None:
                self._fire(timer)
            else:  # wait for the inbox (opening, or a catch-up in progress)
                held.setdefault(timer[2].id, []).append(timer)

    async def _catch_up(self, inbox: InboxWatcher) -> None:
        self._busy += 1  # held timers: a virtual clock must not skip ahead meanwhile
        try:
            await inbox.catch_up()
        except asyncio.CancelledError:  # closing: recovery arms the held timers again
            self._timing.held = None
            raise
        except Exception:  # noqa: BLE001 - the timers fire anyway; the watch loop retries
            self._log.exception("applying the inbox before due timers failed")
        finally:
            self._busy -= 1
        self._release_timers()

    def _fire(self, timer: _Due) -> None:
        _, step, inst, executor, scope = timer
        armed = inst.timers.get(step)
        if scope.cancel_called or armed is None or armed[0] is not scope:
            return  # disarmed meanwhile (a first() another branch won ...)
        del inst.timers[step]
        self._deliver(inst, executor, ev.TimerFired(at=self._now(), step=step))

    def _fire_overdue(self, inst: _Instance, executor: WorkflowExecutor, until: float) -> None:
        """Fire ``inst``'s armed timers due by ``until`` now, in deadline order.

        Called before a request is delivered: a timer's task wakes on a later pass of the
        event loop (or is just re-armed by a reload), so a request handled meanwhile would
        otherwise overtake a deadline that had already passed. Timers held for the inbox (a
        runtime opening, a catch-up) are armed too: for a request acknowledged while no
        runtime ran (``until`` is when it was queued), those due by then fire first and those
        due after it wait, so an event sent before a wait's timeout wins over the timeout and
        one sent after it finds the wait timed out, as without the downtime.
        """
        due = [(fire_at, step, inst, executor, scope)
               for step, (scope, fire_at) in inst.timers.items() if fire_at <= until]  # fmt: skip
        for timer in sorted(due, key=_deadline_order):
            if inst.executor is not executor or executor.done:
                return
            self._fire(timer)

    def _hold_timers(self) -> None:
        """Opening: due timers wait until the inbox's backlog is applied (:meth:`_fire_overdue`)."""
        self._timing.held = {}

    def _release_timers(self) -> None:
        """The inbox's backlog is applied: fire the held timers, each instance's in order."""
        held, self._timing.held = self._timing.held, None
        for timers in (held or {}).values():
            for timer in sorted(timers, key=_deadline_order):
                self._fire(timer)

    async def _await_child(
        self, inst: _Instance, executor: WorkflowExecutor, command: cmd.StartChild
    ) -> None:
        try:
            try:
                defn = self._registry.workflow(command.workflow, command.version)
            except RegistrationError:
                # A recorded child may run already (its version since dropped, say: it replays
                # on the latest code): re-attach to it; only a child never started fails here.
                if not command.recorded or not await self._exists_now(command.child_id):
                    raise
                defn = None
            created = None
            if defn is not None:
                created = await self._start(defn, command.input, command.child_id,
                                            if_exists="return", parent_id=inst.id)  # fmt: skip
            if created is None:
                await self._check_own_child(inst.id, command)
            terminal, _, _ = await self._terminal_event(command.child_id)
        except FlowcoreError as exc:
            self._deliver_child(inst, executor, command, ev.ChildFailed(
                at=self._now(), step=command.step,
                failure=FailureInfo.from_exception(exc)))  # fmt: skip
            return
        now = self._now()
        event: ev.Event
        match terminal:
            case ev.WorkflowCompleted():
                event = ev.ChildCompleted(at=now, step=command.step, result=terminal.result)
            case ev.WorkflowFailed():
                event = ev.ChildFailed(at=now, step=command.step, failure=terminal.failure)
            case _:
                failure = FailureInfo(type_name="flowcore.WorkflowCanceledError",
                                      message=terminal.reason or terminal.kind)  # fmt: skip
                event = ev.ChildFailed(at=now, step=command.step, failure=failure, canceled=True)
        self._deliver_child(inst, executor, command, event)

    async def _exists_now(self, wid: str) -> bool:
        """Whether instance ``wid`` is in memory or in the journal."""
        return wid in self._instances or await self._journal.status(wid) is not None

    async def _check_own_child(self, parent_id: str, command: cmd.StartChild) -> None:
        """Accept an existing child id only if this step of ``parent_id`` started it.

        It did when its journal recorded the step (``command.recorded``: the parent recovered,
        or was reloaded, while the child ran): the parent's ``child_scheduled`` always commits
        before the child's start. Any other instance is a collision whose result must not
        pass for the child's: a stranger's, or a child an earlier run of the parent started
        under the same id before continuing as new.

        Raises:
            WorkflowAlreadyExistsError: the instance is not this step's child.
        """
        child_id = command.child_id
        await self._settled(child_id)
        row = await self._journal.status(child_id)
        if row is None or row.parent_id != parent_id or not command.recorded:
            status = "unknown" if row is None else row.status.value
            whose = "an earlier run's child" if row and row.parent_id == parent_id else "taken"
            advice = (
                f"the id is {whose}; child workflows of {parent_id!r} need an id no other "
                "instance has (each run of a workflow that continues as new, too)"
            )
            raise WorkflowAlreadyExistsError(child_id, status=status, advice=advice)

    def _deliver_child(
        self, inst: _Instance, executor: WorkflowExecutor, command: cmd.StartChild, event: ev.Event
    ) -> None:
        inst.children.pop(command.step, None)
        self._deliver(inst, executor, event)

    async def _cancel_child(self, child_id: str, parent_id: str) -> None:
        # FlowcoreError: already finished, or never started: nothing to cancel
        with contextlib.suppress(FlowcoreError):
            reason = f"parent {parent_id!r} was canceled"
            await self._request(child_id, "cancel", ev.CancelRequested, reason=reason)

    async def _terminal_event(self, wid: str) -> tuple[Terminal, str, str]:
        """How ``wid`` ended, and its (last run's) workflow name and version, once it ended.

        A workflow that is no longer in memory and completed is read from its status row (one
        row, not its whole history); the event is then rebuilt from it, ``at`` being the row's
        ``updated_at``. Any other ending is read from the history, for its failure details.
        """
        inst = await self._settled(wid)
        if inst is not None:
            terminal = await inst.ended()
            return terminal, inst.projection.name, inst.projection.version
        row = await self._journal.status(wid)
        if row is not None and row.status is _COMPLETED:
            done = ev.WorkflowCompleted(at=row.updated_at.timestamp(), result=row.output)
            return done, row.name, row.version
        events = await self._journal.history(wid)
        if not events:
            raise WorkflowNotFoundError(wid)
        first, last = events[0], events[-1]
        assert isinstance(first, ev.WorkflowStarted)  # noqa: S101 - decode guarantees the kind
        if isinstance(last, TERMINAL_TYPES):
            return last, first.name, first.version
        raise FlowcoreError(
            f"workflow {wid!r} is unfinished but not running in this runtime; open a runtime "
            "that serves it to continue it"
        )

    # -- internals: the cache of idle workflows (eviction) ----------------------------------

    def _init_cache(self, max_cached: int | None) -> None:
        if max_cached is not None and max_cached < 1:
            raise ValueError("max_cached_workflows must be at least 1, or None for no bound")
        self._max_cached = max_cached
        self._wakeups = []
        self._wake_tie = itertools.count()

    def _sweep(self, limit: int) -> None:
        """More than ``limit`` workflows in memory: evict the least recently active idle ones.

        It evicts down to 90% of ``limit`` so that sweeps stay rare. Busy workflows are never
        evicted; a sweep that could not get under ``limit`` is not repeated for ten times its
        own duration (it scans every instance: at most ~10% of the loop's time).
        """
        began = time.perf_counter()
        if began < self._next_sweep:
            if not self._sweep_deferred:  # the last commit may be this one: look again then
                self._sweep_deferred = True
                asyncio.get_running_loop().call_later(
                    self._next_sweep - began, self._deferred_sweep
                )
            return
        now = self._now()
        idle = [inst for inst in self._instances.values() if _idle_at(inst, now)]
        live = len(self._instances) - self._evicted
        surplus = live - (limit - limit // 10)
        if surplus < len(idle):
            idle.sort(key=_recency)
            del idle[surplus:]
        for inst in idle:
            self._evict(inst)
        if len(self._instances) - self._evicted > limit:
            self._next_sweep = time.perf_counter() + 10 * (time.perf_counter() - began)
        else:
            self._next_sweep = 0.0

    def _deferred_sweep(self) -> None:
        self._sweep_deferred = False
        self._keep_bound()

    def _keep_bound(self) -> None:
        """Sweep if more workflows than the bound are in memory and every ended append was seen.

        An append that ended but is not yet seen by :meth:`_on_commit` may still have work to
        dispatch (see :func:`_idle_at`): that call comes next and sweeps then.
        """
        limit, in_flight = self._max_cached, self._in_flight
        if (
            limit is None
            or len(self._instances) - self._evicted <= limit
            or self._state != "open"
            or self._failure is not None
            or (in_flight and in_flight[0].done())
        ):
            return
        self._sweep(limit)

    def _evict(self, inst: _Instance) -> None:
        """Drop an idle instance's executor and timers; its journal brings it back (_reload)."""
        executor = inst.executor
        assert executor is not None  # noqa: S101 - _idle_at checked it
        deadline = min((fire_at for _, fire_at in inst.timers.values()), default=None)
        inst.cancel_work()  # its timers' tasks end; the earliest deadline wakes it instead
        inst.executor = None
        inst.last_commit = None  # it ended: nothing to keep alive
        inst.evicted = True
        inst.evictions += 1
        self._evicted += 1
        try:
            executor.close()
        except Exception:  # noqa: BLE001 - a finally block in workflow code raised on close
            self._log.exception("workflow code raised while being evicted", workflow_id=inst.id)
        if deadline is not None:
            self._wake_at(inst, deadline)
        if self._debug:
            self._log.debug("workflow evicted", workflow_id=inst.id)

    def _unevict(self, inst: _Instance) -> None:
        inst.evicted = False
        self._evicted -= 1

    def _wake_at(self, inst: _Instance, deadline: float) -> None:
        """Reload the evicted ``inst`` at ``deadline`` (its earliest timer): one runner for all."""
        heap = self._wakeups
        earliest = heap[0][0] if heap else None
        heapq.heappush(heap, (deadline, next(self._wake_tie), inst, inst.evictions))
        if not self._wake_running:
            self._wake_running = True
            self._spawn(self._run_wakeups)
        elif earliest is not None and deadline < earliest and self._wake_scope is not None:
            self._wake_scope.cancel()  # the runner sleeps until a later deadline: wake it

    async def _run_wakeups(self) -> None:
        """Sleep until the earliest deadline of an evicted instance; reload those that are due."""
        heap = self._wakeups
        try:
            while heap:
                with anyio.CancelScope() as scope:
                    self._wake_scope = scope
                    await self._clock.sleep_until(heap[0][0])
                self._wake_scope = None
                now = self._now()
                while heap and heap[0][0] <= now:
                    _, _, inst, evictions = heapq.heappop(heap)
                    if inst.evicted and inst.evictions == evictions:
                        self._spawn(self._wake, inst)
        finally:
            self._wake_running = False
            self._wake_scope = None

    async def _wake(self, inst: _Instance) -> None:
        try:
            await self._reload(inst)
        except Exception as exc:  # noqa: BLE001 - a journal failure: the runtime fail-stops
            self._log.error("could not reload an evicted workflow", workflow_id=inst.id,
                            error=str(exc))  # fmt: skip

    async def _reload(self, inst: _Instance) -> None:
        """Bring an evicted instance back: read its history, replay it, re-arm its work."""
        loading = inst.loading
        if loading is not None:  # another caller reloads it: wait for that
            await asyncio.shield(loading)
            return
        self._check_open()
        loading = inst.loading = asyncio.get_running_loop().create_future()
        self._busy += 1  # a virtual clock must not skip ahead while the history is read
        try:
            history = await self._journal.history(inst.id)
        finally:
            self._busy -= 1
            inst.loading = None
            loading.set_result(None)
        if not inst.evicted or self._instances.get(inst.id) is not inst:
            return  # terminated while its history was read
        self._check_open()
        if len(history) + 1 != inst.next_seq:
            raise JournalError(
                f"workflow {inst.id!r} has {len(history)} events in the journal where the runtime "
                f"appended {inst.next_seq - 1}; the journal was changed under the runtime: "
                "restart the runtime to recover from the journal"
            )
        self._unevict(inst)
        inst.touched = self._now()
        replayed = self._replay(inst, history)
        if not isinstance(replayed, tuple):
            return  # parked
        executor, commands = replayed
        if self._debug:
            self._log.debug("workflow reloaded", workflow_id=inst.id, events=len(history))
        self._carry_out(inst, executor, commands, [])

    # -- internals: recovery -------------------------------------------------------------------

    async def _recover(self) -> None:
        """Bring back every unfinished instance; leave idle ones beyond the cache bound evicted.

        With ``max_cached_workflows`` set, an instance whose journal shows it waiting only on
        events and timers (:func:`waiting_only`), none due, is registered evicted, as an
        eviction leaves it: no replay, its earliest deadline in the wake-up heap, its journal
        replayed when an event, a request or that deadline comes. The most recently active
        ones still fill the cache up to what a sweep keeps (90% of the bound, after the busy
        ones); everything else (activities to run or retry, children, due timers, parked or
        suspended instances, code the registry lacks) is replayed and resumes at once.
        """
        found = await self._read_unfinished()
        asleep = self._asleep(found)
        kept = [item for item in found if item.history is None and item not in asleep]
        for chunk in _chunks(kept, _RECOVERY_CHUNK):  # kept in memory after all: read again
            records = await self._journal.read_many([item.wid for item in chunk])
            for item in chunk:
                item.history = records[item.wid][0] if item.wid in records else []
        # Every instance is registered before any recovered work runs (a parent's child-waiter
        # must find its recovered child in memory): no await from here to the last one.
        parks = []
        for item in found:
            if item.history is None:
                self._recover_evicted(item)
            else:
                parks.append(self._recover_one(item.wid, item.history, item.projection,
                                               told=item.told))  # fmt: skip
        for park in parks:  # open() returns once every parked status is visible
            if park is not None:
                await park
        self._keep_bound()

    async def _read_unfinished(self) -> builtins.list[_Found]:
        """Read every unfinished instance; drop the histories of those that may stay evicted."""
        now, limit, ids = self._now(), self._max_cached, await self._journal.unfinished()
        bounded = limit is not None and len(ids) > limit - limit // 10  # else all fit: keep all
        found: builtins.list[_Found] = []
        for chunk in _chunks(ids, _RECOVERY_CHUNK):
            records = await self._journal.read_many(chunk)
            for wid in chunk:
                item = self._found(wid, records.get(wid), now, bounded=bounded)
                if item is not None:
                    found.append(item)
        return found

    def _found(
        self,
        wid: str,
        record: tuple[builtins.list[ev.Event], WorkflowStatus] | None,
        now: float,
        *,
        bounded: bool,
    ) -> _Found | None:
        """An unfinished instance as read; its history dropped if it may stay evicted."""
        if record is None or not record[0]:
            return None
        history, row = record
        # A continued-as-new history starts at its last run: keep the first created_at.
        projection = Projection(wid, created_at=row.created_at.timestamp())
        for event in history:
            projection.apply(event)
        item = _Found(wid, history, projection)
        if bounded and self._sleeps(item, history, now):
            if self._listeners:  # told now: its history is not kept (see _recover_one)
                item.told = _listeners.notify_recovered(self._listeners, wid, history, self._log)
            else:
                item.told = ()
            item.history = None
        return item

    def _sleeps(self, item: _Found, history: builtins.list[ev.Event], now: float) -> bool:
        """Whether ``item`` may stay evicted at open: it waits on events or timers not yet due."""
        projection = item.projection
        if projection.status is not WorkflowState.RUNNING:
            return False  # parked (recovery retries the code), suspended, ...
        idle, deadline = waiting_only(history)
        if not idle or (deadline is not None and deadline <= now):
            return False
        try:  # code the registry lacks parks the instance at open, as before
            self._registry.for_replay(projection.name, projection.version)
        except RegistrationError:
            return False
        item.idle, item.deadline = True, deadline
        return True

    def _asleep(self, found: Sequence[_Found]) -> builtins.set[_Found]:
        """The idle instances left evicted: all but the most recently active that fit the cache."""
        limit = self._max_cached
        idle = [item for item in found if item.idle]
        if limit is None or not idle:
            return set()
        room = max(0, limit - limit // 10 - (len(found) - len(idle)))
        idle.sort(key=lambda item: item.projection.updated_at, reverse=True)
        return set(idle[room:])

    def _recover_evicted(self, item: _Found) -> None:
        """Register an idle instance as evicted, with its earliest deadline to wake it."""
        wid, deadline = item.wid, item.deadline
        inst = _Instance(wid, item.projection, asyncio.get_running_loop().create_future())
        inst.next_seq = item.events + 1
        inst.evicted = True
        inst.evictions = 1
        self._evicted += 1
        self._instances[wid] = inst
        if deadline is not None:
            self._wake_at(inst, deadline)
        if item.told:  # what listeners asked at recovery (Orchestra's RUNNING) commits now
            self._append(inst, [], outbox=item.told)
        self._log.info("workflow recovered", workflow_id=wid, workflow=item.projection.name,
                       events=item.events, evicted=True)  # fmt: skip

    def _recover_one(
        self,
        wid: str,
        history: builtins.list[ev.Event],
        projection: Projection,
        *,
        told: tuple[OutboxRecord, ...] | None = None,
    ) -> asyncio.Future[None] | None:
        loop = asyncio.get_running_loop()
        inst = _Instance(wid, projection, loop.create_future())
        inst.next_seq = len(history) + 1
        inst.parked = _park_reason(history[-1])
        self._instances[wid] = inst
        replayed = self._replay(inst, history)
        if not isinstance(replayed, tuple):
            return replayed  # parked
        executor, commands = replayed
        if told is None and self._listeners:
            told = _listeners.notify_recovered(self._listeners, wid, history, self._log)
        if told:  # e.g. Orchestra's RUNNING: committed before the workflow's next step
            self._append(inst, [], outbox=told)
        self._log.info("workflow recovered", workflow_id=wid,
                       workflow=executor.definition.name, events=len(history))  # fmt: skip
        self._carry_out(inst, executor, commands, [])
        return None

    def _replay(
        self, inst: _Instance, history: builtins.list[ev.Event]
    ) -> tuple[WorkflowExecutor, builtins.list[cmd.Command]] | asyncio.Future[None] | None:
        """Rebuild ``inst``'s executor from its journal (recovery, reload after eviction).

        Returns the executor, now ``inst``'s, and the commands the replay left to carry out;
        or, if the code cannot replay the history, parks ``inst`` and returns :meth:`_park`'s.
        """
        started = history[0]
        assert isinstance(started, ev.WorkflowStarted)  # noqa: S101 - decode guarantees the kind
        try:
            defn = self._registry.for_replay(started.name, started.version)
            executor = WorkflowExecutor(defn, inst.id, max_payload=self._max_payload)
            commands = executor.replay(history)
        except NondeterminismError as exc:
            note = self._registry.fallback_note(started.name, started.version)
            return self._park(inst, str(exc) + note, exc.step)
        except FlowcoreError as exc:
            return self._park(inst, str(exc), 0)
        except Exception as exc:  # noqa: BLE001 - one broken instance must not block the others
            self._log.exception("replay error", workflow_id=inst.id)
            return self._park(inst, f"replay failed: {exc!r}", 0)
        inst.executor = executor
        inst.retries = retry_state(history)
        return executor, commands

    def _park(
        self,
        inst: _Instance,
        reason: str,
        step: int,
        events: Sequence[ev.Event] = (),
        consumed: tuple[int, ...] = (),
    ) -> asyncio.Future[None] | None:
        self._log.error("workflow parked", workflow_id=inst.id, reason=reason)
        if not events and inst.parked == reason:
            return None
        parked = ev.WorkflowParked(at=self._now(), reason=reason, step=step)
        return self._append(inst, [*events, parked], consumed=consumed)


_T = TypeVar("_T")

_RECOVERY_CHUNK: Final = 500
"""Unfinished instances read per ``Journal.read_many`` at open (a bounded share in memory)."""


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _sniffio_cvar() -> contextvars.ContextVar[str | None] | None:
    try:
        sniffio = importlib.import_module("sniffio")
    except ImportError:
        return None
    cvar: contextvars.ContextVar[str | None] = sniffio.current_async_library_cvar
    return cvar


_SNIFFIO_LIBRARY: Final = _sniffio_cvar()
"""sniffio's "running async library" variable, when sniffio is installed (anyio then asks it)."""


def _on_asyncio(fn: Callable[..., _T], *args: Any) -> _T:
    """Call an anyio API that needs to know the running async library, even from a loop callback.

    With sniffio installed (trio, the openai SDK and many others bring it) anyio asks sniffio
    which library runs, and sniffio finds asyncio only from inside a task: a cancel scope made
    or a task started in a plain loop callback (a commit's done callback arms timers and starts
    children) raised instead. There, the call runs in a copy of the callback's context that
    names asyncio, so the tasks it starts inherit the callback's context variables as before.
    """
    if _SNIFFIO_LIBRARY is None or asyncio.current_task() is not None:
        return fn(*args)
    context = contextvars.copy_context()
    context.run(_SNIFFIO_LIBRARY.set, "asyncio")
    return context.run(fn, *args)


_Due = tuple[float, int, _Instance, WorkflowExecutor, anyio.CancelScope]
"""A timer whose deadline passed: (deadline, step, instance, executor, its scope)."""


def _deadline_order(timer: _Due) -> tuple[float, int]:
    return timer[0], timer[1]


@final
class _DueTimers:
    """Timers whose deadline passed, to fire together in deadline order (Core._timer_due)."""

    __slots__ = ("due", "held", "scheduled")

    def __init__(self) -> None:
        self.due: builtins.list[_Due] = []
        self.scheduled = False
        self.held: dict[str, builtins.list[_Due]] | None = None
        """Due timers by instance id while the inbox is applied first (a runtime opening, or a
        catch-up before timers fire); None otherwise."""


@final
class _Found:
    """An unfinished instance read at open (see :meth:`Core._recover`)."""

    __slots__ = ("deadline", "events", "history", "idle", "projection", "told", "wid")

    def __init__(self, wid: str, history: builtins.list[ev.Event], projection: Projection) -> None:
        self.wid = wid
        self.history: builtins.list[ev.Event] | None = history
        """Its journal; None once it is known idle (read again if it is replayed after all)."""
        self.projection = projection
        self.events = len(history)
        self.idle = False
        """It waits only on events and timers not yet due: it may stay evicted."""
        self.deadline: float | None = None
        """Its earliest deadline, when idle (None: it waits on events only)."""
        self.told: tuple[OutboxRecord, ...] | None = None
        """What listeners asked to commit when told of its recovery (None: not told yet)."""


def _idle_at(inst: _Instance, now: float) -> bool:
    """Whether ``inst`` may be evicted at clock time ``now``: it waits on nothing in memory.

    Idle: it runs (not parked, not ending), and no activity, child, queued outcome, append in
    flight (its durable dispatch may be pending), retry or reload is on; every timer it waits
    on is still in the future (a due one is about to fire). Called where every ended append
    has been seen (:meth:`Core._on_commit`), so a committed append left nothing to run.
    """
    executor = inst.executor
    if (
        executor is None
        or executor.done
        or inst.activities
        or inst.children
        or inst.outcomes is not None
        or inst.retries
        or inst.loading is not None
    ):
        return False
    creating = inst.creating  # its commit ended: _created is about to forget it or not
    if creating is not None and (
        not creating.done() or creating.cancelled() or creating.exception() is not None
    ):
        return False
    commit = inst.last_commit
    if commit is not None and not commit.done():
        return False
    return all(fire_at > now for _, fire_at in inst.timers.values())


def _recency(inst: _Instance) -> float:
    """When ``inst`` was last active (clock seconds): its last event or its last reload."""
    return max(inst.touched, inst.projection.updated_at)


class _DispatchAfter:
    """Dispatch ``work`` once the append holding its schedule committed (see _when_ended).

    One object per waiting step, where a partial of a bound method is three (the partial, its
    arguments and the method), and a step's only command is held without its list: it lives
    until the commit, long enough for the garbage collector to scan it.
    """

    __slots__ = ("core", "executor", "inst", "work")

    def __init__(
        self, core: Core, inst: _Instance, executor: WorkflowExecutor, work: builtins.list[_Work]
    ) -> None:
        self.core, self.inst, self.executor = core, inst, executor
        self.work: _Work | builtins.list[_Work] = work[0] if len(work) == 1 else work

    def __call__(self, commit: asyncio.Future[None]) -> None:
        if commit.cancelled() or commit.exception() is not None:
            return  # not durable: the runtime fail-stops and recovery re-issues the commands
        work = self.work
        self.core._dispatch(  # noqa: SLF001 - its helper
            self.inst, self.executor, work if isinstance(work, list) else (work,)
        )


class _FinishAfter:
    """End the instance once the append holding its terminal event committed (_when_ended).

    One object, where a partial of a bound method is three, alive until that commit.
    """

    __slots__ = ("core", "inst", "terminal")

    def __init__(self, core: Core, inst: _Instance, terminal: Terminal) -> None:
        self.core, self.inst, self.terminal = core, inst, terminal

    def __call__(self, commit: asyncio.Future[None]) -> None:
        self.core._finished(self.inst, self.terminal, commit)  # noqa: SLF001 - its helper


_COMPLETED: Final = WorkflowState.COMPLETED
"""Looked up once: a member looked up on its enum class is slow."""

_new_append: Final = quick_new(Append)
_new_activity_scheduled: Final = quick_new(ev.ActivityScheduled)
_new_activity_completed: Final = quick_new(ev.ActivityCompleted)
"""The values made at every step, built without a class call (see flowcore._frozen)."""

_RELAY_CONTEXT: Final = contextvars.Context()
"""The context :func:`_shielded`'s relay runs in (it reads no context variable): a callback
added without one copies the current context, one more object per start."""


def _shielded(commit: asyncio.Future[None]) -> asyncio.Future[None]:
    """What ``asyncio.shield(commit)`` gives an awaiting caller, for a fraction of its objects.

    Cancelling the caller cancels the returned waiter, never ``commit``. A shield costs two
    closures, their cells, an outer future and a context copy per callback; this is a waiter
    and a partial. Each lives until the commit, long enough for the garbage collector to scan.
    """
    waiter: asyncio.Future[None] = commit.get_loop().create_future()
    commit.add_done_callback(functools.partial(_relay, waiter), context=_RELAY_CONTEXT)
    return waiter


def _relay(waiter: asyncio.Future[None], commit: asyncio.Future[None]) -> None:
    """Hand ``commit``'s outcome to ``waiter`` (a cancelled waiter: mark it retrieved)."""
    if commit.cancelled():
        waiter.cancel()
        return
    exc = commit.exception()
    if waiter.done():
        return
    if exc is None:
        waiter.set_result(None)
    else:
        waiter.set_exception(exc)


def _park_reason(last: ev.Event) -> str | None:
    """What :attr:`_Instance.parked` records of a workflow whose last event is ``last``."""
    return last.reason if isinstance(last, ev.WorkflowParked) else None


def _attempt_fields(job: ActivityJob, seconds: float) -> dict[str, Any]:
    """The log fields of the attempt that just ended (built only when it is logged)."""
    return {
        "workflow_id": job.inst.id,
        "step": job.command.step,
        "activity": job.command.activity.name,
        "attempt": job.attempt,
        "duration_ms": round(seconds * 1000, 3),
    }


def _scheduling_event(command: _Work, now: float) -> ev.Event:
    match command:
        case cmd.ScheduleActivity():
            return _activity_scheduled(command, now)
        case cmd.StartTimer():
            return ev.TimerScheduled(at=now, step=command.step, fire_at=command.fire_at)
        case cmd.WaitForEvent():
            return ev.EventWaitStarted(at=now, step=command.step, name=command.name,
                                       deadline=command.deadline)  # fmt: skip
        case cmd.StartChild():
            return ev.ChildScheduled(at=now, step=command.step, name=command.workflow,
                                     child_id=command.child_id, version=command.version,
                                     input=command.input)  # fmt: skip


def _activity_scheduled(command: cmd.ScheduleActivity, now: float) -> ev.ActivityScheduled:
    return _new_activity_scheduled(
        at=now,
        step=command.step,
        name=command.activity.name,
        args=command.encoded_args,
        kwargs=command.encoded_kwargs,
        op=command.op,
    )


def _terminal_event(command: cmd.Command, now: float) -> Terminal:
    match command:
        case cmd.CompleteWorkflow():
            return ev.WorkflowCompleted(at=now, result=command.result)
        case cmd.FailWorkflow():
            return ev.WorkflowFailed(at=now, failure=command.failure)
        case cmd.CancelWorkflow():
            return ev.WorkflowCanceled(at=now, reason=command.reason, result=command.result)
        case _:
            msg = f"not a terminal command: {command!r}"
            raise TypeError(msg)


def unfit_input(defn: WorkflowDef[Any, Any], encoded: Any, exc: PayloadError) -> FlowcoreError:
    """The error refusing to start ``defn`` with an input its parameter cannot decode."""
    param = next(iter(serde.signature_hints(defn.fn)[0].parameters.values()))
    if encoded is None:
        msg = (
            f"workflow {defn.name!r} takes an input ({param}) but none was given; pass it as "
            f"the payload: runtime.start({defn.name!r}, payload)"
        )
        if param.default is not param.empty:
            msg += " (the default is not used: a workflow always gets the payload, None if none)"
        return InvalidArgumentError(msg)
    reason = f"{exc.reason} (the input of workflow {defn.name!r}, parameter {param}; not started)"
    return PayloadError(reason, path=exc.path, hint=exc.hint, decoding=True)


def check_id(workflow_id: object) -> str:
    if not isinstance(workflow_id, str) or not workflow_id or len(workflow_id) > MAX_ID:
        raise InvalidArgumentError(
            f"a workflow id must be a non-empty string of at most {MAX_ID} characters, not "
            f"{workflow_id!r}"
        )
    check_text(workflow_id, "a workflow id")
    return workflow_id
