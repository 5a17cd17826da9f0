"""Runtime: the embedded engine host; lifecycle, public API, recovery and activity dispatch.

It is the only place that touches the event loop, the clock, the journal and the backend. Each
running workflow stays in memory (its executor); an activity outcome is journaled, fed to the
executor and the commands it returns are journaled and carried out. Appends are pipelined through
the journal's group-commit writer; anything the caller is told (a start, a result) waits for its
commit. On open, every unfinished workflow is replayed from its journal and continues.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, final

import anyio
import structlog

from flowcore import serde
from flowcore._definitions import Registry, WorkflowDef, default_registry
from flowcore._handle import WorkflowHandle
from flowcore.abc import SystemClock
from flowcore.backends.base import ActivityOutcome, ActivityTask
from flowcore.backends.local import LocalBackend
from flowcore.engine.commands import CompleteWorkflow, FailWorkflow, ScheduleActivity
from flowcore.engine.events import (
    ActivityAttemptFailed,
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    Event,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowParked,
    WorkflowStarted,
)
from flowcore.engine.executor import WorkflowExecutor
from flowcore.errors import (
    FailureInfo,
    FlowcoreError,
    JournalError,
    NondeterminismError,
    RegistrationError,
    WorkflowAlreadyExistsError,
    WorkflowFailedError,
    WorkflowNotFoundError,
)
from flowcore.journal.base import Append
from flowcore.journal.projection import Projection
from flowcore.journal.sqlite import SqliteJournal

if TYPE_CHECKING:
    import builtins
    import os
    from collections.abc import Iterable, Sequence
    from types import TracebackType

    from anyio.abc import TaskGroup

    from flowcore._status import WorkflowState, WorkflowStatus
    from flowcore.abc import Backend, Clock, Journal
    from flowcore.engine.commands import Command
    from flowcore.journal.base import Durability

__all__ = ["Runtime"]

_Terminal = WorkflowCompleted | WorkflowFailed
_MAX_ID = 512


@dataclass(slots=True, eq=False)
class _Instance:
    """A workflow held in memory while it runs."""

    id: str
    projection: Projection
    done: asyncio.Future[_Terminal]
    executor: WorkflowExecutor | None = None
    next_seq: int = 1
    parked: bool = False
    last_event: Event | None = None
    retries: dict[int, tuple[int, float]] = field(default_factory=dict)
    """For recovery: step -> (next attempt, when it is due)."""


@final
class Runtime:
    """Hosts durable workflows on an embedded SQLite journal.

    Use it as an async context manager (or call :meth:`open` and :meth:`close`)::

        async with Runtime("flowcore.db") as runtime:
            handle = await runtime.start("place_order", order, id="order-42")
            print(await handle.result())

    Opening replays every unfinished workflow in the journal and continues it.

    Args:
        db: Path of the SQLite journal file (created if missing).
        workflows: Workflow definitions this runtime serves; default: every ``@workflow``.
        durability: ``"full"`` fsyncs each group commit; ``"normal"`` survives process crashes
            but not power loss.
        max_concurrent_activities: Activity attempts allowed to run at once.
        backend: Where activities run (default: in this process).
        clock: Time source (default: the system clock; tests may pass a fake one).
        journal: A journal object to use instead of ``db`` (e.g. an in-memory one for tests).
    """

    def __init__(
        self,
        db: str | os.PathLike[str] = "flowcore.db",
        *,
        workflows: Iterable[WorkflowDef[Any, Any]] | None = None,
        durability: Durability = "full",
        max_concurrent_activities: int = 100,
        backend: Backend | None = None,
        clock: Clock | None = None,
        journal: Journal | None = None,
    ) -> None:
        if durability not in ("full", "normal"):
            raise ValueError("durability must be 'full' or 'normal'")
        if max_concurrent_activities < 1:
            raise ValueError("max_concurrent_activities must be at least 1")
        self._journal: Journal = journal or SqliteJournal(db, durability=durability)
        if workflows is None:
            self._registry = default_registry
        else:
            self._registry = Registry()
            for defn in workflows:
                self._registry.add_workflow(defn)
        self._backend: Backend = backend or LocalBackend(max_threads=max_concurrent_activities)
        self._clock: Clock = clock or SystemClock()
        self._limiter = anyio.CapacityLimiter(max_concurrent_activities)
        self._instances: dict[str, _Instance] = {}
        self._state: Literal["new", "open", "closing", "closed"] = "new"
        self._failure: BaseException | None = None
        self._tg: TaskGroup | None = None
        self._stop = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._log = structlog.get_logger("flowcore")

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the journal, take ownership and recover unfinished workflows.

        Raises:
            JournalLockedError: another runtime serves this database.
            JournalCorruptError: the file is not a flowcore journal (it is left untouched).
        """
        if self._state != "new":
            raise FlowcoreError("a Runtime can be opened once; create a new one to reopen")
        await self._journal.open()
        try:
            await self._backend.open()
            started = asyncio.Event()
            self._supervisor = asyncio.create_task(self._supervise(started))
            await started.wait()
            self._state = "open"
            await self._recover()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop: in-flight activities are abandoned (recovery retries them), the journal is flushed.

        Workflows still running stay in the journal and continue when a runtime opens it again.
        """
        if self._state == "closed":
            return
        self._state = "closing"
        self._stop.set()
        if self._supervisor is not None:
            await self._supervisor
        closed = FlowcoreError(
            "the runtime closed before the workflow finished; it continues when a runtime "
            "opens the same database again"
        )
        for inst in self._instances.values():
            if inst.executor is not None:
                inst.executor.close()
            if not inst.done.done():
                inst.done.set_exception(closed)
                inst.done.exception()  # mark retrieved: nobody may be waiting
        self._instances.clear()
        try:
            await self._journal.close()
        finally:
            await self._backend.close()
            self._state = "closed"

    async def __aenter__(self) -> Runtime:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _supervise(self, started: asyncio.Event) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            started.set()
            await self._stop.wait()
            tg.cancel_scope.cancel()
        self._tg = None

    # -- public API -------------------------------------------------------------------------

    async def start(
        self,
        workflow: str | WorkflowDef[Any, Any],
        payload: Any = None,
        *,
        id: str | None = None,  # noqa: A002 - the public name users expect
        version: str | None = None,
        if_exists: Literal["error", "return"] = "error",
    ) -> WorkflowHandle:
        """Start a workflow; return once its start is durable.

        Args:
            workflow: The registered name, or the ``@workflow`` function itself.
            payload: The workflow's input (any value flowcore can encode).
            id: The instance id; a random one when omitted.
            version: Which registered version to run; default: the latest.
            if_exists: What to do when ``id`` exists: ``"error"`` raises, ``"return"`` returns a
                handle to the existing instance.

        Returns:
            A handle to the instance.

        Raises:
            RegistrationError: no workflow of that name (or version) is registered.
            PayloadError: the payload cannot be encoded; nothing was written.
            WorkflowAlreadyExistsError: ``id`` exists and ``if_exists="error"``.
        """
        self._check_open()
        defn = self._resolve(workflow, version)
        encoded = serde.encode(payload)
        wid = _check_id(id) if id is not None else uuid.uuid4().hex
        inst = self._instances.get(wid)
        if inst is not None:
            return self._exists(wid, inst.projection.status.value, if_exists)
        inst = _Instance(wid, Projection(wid), asyncio.get_running_loop().create_future())
        self._instances[wid] = inst
        started = WorkflowStarted(
            at=self._clock.now(), name=defn.name, version=defn.version, input=encoded
        )
        executor = WorkflowExecutor(defn, wid)
        commit = self._append(inst, [started], create=True)
        if id is None:
            # A fresh random id cannot collide: run the first step while the start commits.
            inst.executor = executor
            self._carry_out(inst, executor.start(started), [])
            await commit
        else:
            # The journal refuses a duplicate id atomically; only then may the workflow run.
            try:
                await commit
            except WorkflowAlreadyExistsError as exc:
                if self._instances.get(wid) is inst:
                    del self._instances[wid]
                return self._exists(wid, exc.status, if_exists)
            inst.executor = executor
            self._carry_out(inst, executor.start(started), [])
        self._log.info("workflow started", workflow_id=wid, workflow=defn.name)
        return WorkflowHandle(self, wid)

    def _exists(self, wid: str, status: str, if_exists: str) -> WorkflowHandle:
        if if_exists == "return":
            return WorkflowHandle(self, wid)
        raise WorkflowAlreadyExistsError(wid, status=status)

    def handle(self, workflow_id: str) -> WorkflowHandle:
        """A handle to an existing instance (not checked until used)."""
        return WorkflowHandle(self, workflow_id)

    async def status(self, workflow_id: str) -> WorkflowStatus:
        """The instance's committed status record.

        Raises:
            WorkflowNotFoundError: no instance has this id.
        """
        row = await self._journal.status(workflow_id)
        if row is None:
            raise WorkflowNotFoundError(workflow_id)
        return row

    async def list(
        self,
        name: str | None = None,
        status: WorkflowState | str | None = None,
        limit: int = 100,
    ) -> builtins.list[WorkflowStatus]:
        """Status records, newest first, optionally filtered by workflow name and state."""
        return await self._journal.list(name=name, status=status, limit=limit)

    async def history(self, workflow_id: str) -> builtins.list[Event]:
        """Every committed event of an instance, in order.

        Raises:
            WorkflowNotFoundError: no instance has this id.
        """
        events = await self._journal.history(workflow_id)
        if not events:
            raise WorkflowNotFoundError(workflow_id)
        return events

    async def result(self, workflow_id: str, *, timeout: float | None = None) -> Any:
        """Wait for an instance to finish and return its result, decoded by the return hint.

        Raises:
            WorkflowFailedError: the workflow raised; ``.failure`` describes it.
            WorkflowNotFoundError: no instance has this id.
            TimeoutError: it did not finish within ``timeout`` seconds.
        """
        with anyio.fail_after(timeout):
            terminal, name, version = await self._terminal_event(workflow_id)
        if isinstance(terminal, WorkflowFailed):
            raise WorkflowFailedError(workflow_id, terminal.failure)
        try:
            defn = self._registry.for_replay(name, version)
        except RegistrationError:
            return terminal.result  # no code to read its type from: plain JSON
        return serde.decode(terminal.result, serde.signature_hints(defn.fn)[2])

    # -- internals: starting and resolving -------------------------------------------------------

    def _check_open(self) -> None:
        if self._failure is not None:
            raise JournalError(
                f"the runtime stopped accepting work after a journal failure ({self._failure}); "
                "nothing acknowledged was lost: fix the cause and open a new Runtime"
            ) from self._failure
        if self._state != "open":
            raise FlowcoreError(
                f"the runtime is {self._state}; use 'async with Runtime(...)' or await open() first"
            )

    def _resolve(
        self, workflow: str | WorkflowDef[Any, Any], version: str | None
    ) -> WorkflowDef[Any, Any]:
        if isinstance(workflow, WorkflowDef):
            if version is None or version == workflow.version:
                if workflow.name not in self._registry.workflows:
                    self._registry.add_workflow(workflow)
                return workflow
            return self._registry.workflow(workflow.name, version)
        return self._registry.workflow(workflow, version)

    async def _terminal_event(self, wid: str) -> tuple[_Terminal, str, str]:
        inst = self._instances.get(wid)
        if inst is not None:
            terminal = await asyncio.shield(inst.done)
            return terminal, inst.projection.name, inst.projection.version
        events = await self._journal.history(wid)
        if not events:
            raise WorkflowNotFoundError(wid)
        first, last = events[0], events[-1]
        assert isinstance(first, WorkflowStarted)  # noqa: S101 - decode guarantees the kind
        if isinstance(last, WorkflowCompleted | WorkflowFailed):
            return last, first.name, first.version
        raise FlowcoreError(
            f"workflow {wid!r} is unfinished but not running in this runtime; open a runtime "
            "that serves it to continue it"
        )

    # -- internals: the step loop ------------------------------------------------------------

    def _append(
        self, inst: _Instance, events: Sequence[Event], *, create: bool = False
    ) -> asyncio.Future[None]:
        for event in events:
            inst.projection.apply(event)
        op = Append(
            workflow_id=inst.id,
            first_seq=inst.next_seq,
            events=tuple(events),
            row=inst.projection.row(),
            create=create,
        )
        inst.next_seq += len(events)
        if events:
            inst.last_event = events[-1]
        future = asyncio.ensure_future(self._journal.submit(op))
        future.add_done_callback(self._on_commit)
        return future

    def _on_commit(self, future: asyncio.Future[None]) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if (
            exc is not None
            and not isinstance(exc, WorkflowAlreadyExistsError)
            and self._failure is None
        ):
            self._fail_stop(exc)

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
            if not inst.done.done():
                inst.done.set_exception(error)
                inst.done.exception()  # retrieved here; result() re-raises it to any waiter

    def _carry_out(
        self, inst: _Instance, commands: Sequence[Command], events: builtins.list[Event]
    ) -> None:
        now = self._clock.now()
        dispatch: builtins.list[ScheduleActivity] = []
        terminal: _Terminal | None = None
        for cmd in commands:
            match cmd:
                case ScheduleActivity():
                    if not cmd.recorded:
                        events.append(
                            ActivityScheduled(
                                at=now,
                                step=cmd.step,
                                name=cmd.activity.name,
                                args=cmd.encoded_args,
                                kwargs=cmd.encoded_kwargs,
                            )
                        )
                    dispatch.append(cmd)
                case CompleteWorkflow():
                    terminal = WorkflowCompleted(at=now, result=cmd.result)
                    events.append(terminal)
                case FailWorkflow():
                    terminal = WorkflowFailed(at=now, failure=cmd.failure)
                    events.append(terminal)
        commit = self._append(inst, events) if events else None
        if terminal is not None and commit is not None:
            commit.add_done_callback(functools.partial(self._finished, inst, terminal))
            return
        if not dispatch:
            return
        if commit is None:  # recovery: every command is already recorded
            self._dispatch(inst, dispatch)
        else:
            # An activity may run only once its step number is durable: otherwise a crash could
            # hand the same step (and so the same idempotency key) to another call on replay.
            commit.add_done_callback(functools.partial(self._dispatch_after, inst, dispatch))

    def _dispatch_after(
        self, inst: _Instance, dispatch: Sequence[ScheduleActivity], commit: asyncio.Future[None]
    ) -> None:
        if commit.cancelled() or commit.exception() is not None:
            return  # not durable: the runtime fail-stops and recovery re-issues the commands
        self._dispatch(inst, dispatch)

    def _dispatch(self, inst: _Instance, dispatch: Sequence[ScheduleActivity]) -> None:
        tg = self._tg
        if tg is None or self._failure is not None or self._instances.get(inst.id) is not inst:
            return
        for cmd in dispatch:
            attempt, due = inst.retries.pop(cmd.step, (1, None))
            tg.start_soon(self._run_activity, inst, cmd, attempt, due)

    def _finished(self, inst: _Instance, terminal: _Terminal, commit: asyncio.Future[None]) -> None:
        if commit.cancelled() or commit.exception() is not None:
            return
        if not inst.done.done():
            inst.done.set_result(terminal)
        if self._instances.get(inst.id) is inst:
            del self._instances[inst.id]
        if isinstance(terminal, WorkflowCompleted):
            self._log.info("workflow completed", workflow_id=inst.id, workflow=inst.projection.name)
        else:
            self._log.warning(
                "workflow failed",
                workflow_id=inst.id,
                workflow=inst.projection.name,
                error=str(terminal.failure),
            )

    async def _run_activity(
        self, inst: _Instance, cmd: ScheduleActivity, attempt: int, due: float | None
    ) -> None:
        defn = cmd.activity
        executor = inst.executor
        assert executor is not None  # noqa: S101 - dispatch happens only with an executor
        while True:
            if due is not None:
                await self._clock.sleep_until(due)
            task = ActivityTask(
                workflow_id=inst.id,
                step=cmd.step,
                attempt=attempt,
                activity=defn,
                args=cmd.args,
                kwargs=cmd.kwargs,
                encoded_args=cmd.encoded_args,
                encoded_kwargs=cmd.encoded_kwargs,
                workflow_name=executor.definition.name,
                workflow_version=executor.version,
            )
            began = time.perf_counter()
            async with self._limiter:
                try:
                    outcome = await self._backend.execute(task, timeout=defn.timeout)
                except Exception as exc:  # noqa: BLE001 - a backend fault is a failed attempt
                    outcome = ActivityOutcome(failure=FailureInfo.from_exception(exc))
            log = self._log.bind(
                workflow_id=inst.id,
                step=cmd.step,
                activity=defn.name,
                attempt=attempt,
                duration_ms=round((time.perf_counter() - began) * 1000, 3),
            )
            now = self._clock.now()
            if outcome.failure is None:
                log.debug("activity completed")
                event: Event = ActivityCompleted(
                    at=now, step=cmd.step, result=outcome.result, attempt=attempt
                )
                break
            failure = outcome.failure
            if defn.retry.should_retry(failure, attempt):
                due = now + defn.retry.delay(attempt)
                log.info("activity attempt failed; retrying", error=str(failure), retry_at=due)
                failed = ActivityAttemptFailed(
                    at=now, step=cmd.step, attempt=attempt, failure=failure, retry_at=due
                )
                try:
                    # The next attempt's idempotency key is valid only once this is durable.
                    await self._append(inst, [failed])
                except Exception:  # noqa: BLE001 - _on_commit fail-stops; recovery retries
                    return
                attempt += 1
                continue
            log.warning("activity failed", error=str(failure))
            event = ActivityFailed(
                at=now,
                step=cmd.step,
                failure=failure,
                attempts=attempt,
                timed_out=outcome.timed_out,
            )
            break
        self._deliver(inst, event)

    def _deliver(self, inst: _Instance, event: Event) -> None:
        executor = inst.executor
        if executor is None or executor.done or self._instances.get(inst.id) is not inst:
            return
        try:
            commands = executor.apply(event)
        except Exception as exc:  # noqa: BLE001 - an engine bug must not stop other workflows
            self._log.exception("engine error; workflow parked", workflow_id=inst.id)
            executor.close()
            inst.executor = None
            self._park(inst, f"internal engine error: {exc!r}", 0)
            return
        self._carry_out(inst, commands, [event])

    # -- internals: recovery -------------------------------------------------------------------

    async def _recover(self) -> None:
        parks = []
        for wid in await self._journal.unfinished():
            history = await self._journal.history(wid)
            if history:
                park = self._recover_one(wid, history)
                if park is not None:
                    parks.append(park)
        for park in parks:  # open() returns once every parked status is visible
            await park

    def _recover_one(self, wid: str, history: builtins.list[Event]) -> asyncio.Future[None] | None:
        loop = asyncio.get_running_loop()
        inst = _Instance(wid, Projection.from_events(wid, history), loop.create_future())
        inst.next_seq = len(history) + 1
        inst.last_event = history[-1]
        self._instances[wid] = inst
        started = history[0]
        assert isinstance(started, WorkflowStarted)  # noqa: S101 - decode guarantees the kind
        try:
            defn = self._registry.for_replay(started.name, started.version)
            executor = WorkflowExecutor(defn, wid)
            commands = executor.replay(history)
        except NondeterminismError as exc:
            return self._park(inst, str(exc), exc.step)
        except FlowcoreError as exc:
            return self._park(inst, str(exc), 0)
        except Exception as exc:  # noqa: BLE001 - one broken instance must not block the others
            self._log.exception("replay error", workflow_id=wid)
            return self._park(inst, f"replay failed: {exc!r}", 0)
        inst.executor = executor
        inst.retries = _retry_state(history)
        self._log.info(
            "workflow recovered", workflow_id=wid, workflow=started.name, events=len(history)
        )
        self._carry_out(inst, commands, [])
        return None

    def _park(self, inst: _Instance, reason: str, step: int) -> asyncio.Future[None] | None:
        inst.parked = True
        self._log.error("workflow parked", workflow_id=inst.id, reason=reason)
        last = inst.last_event
        if isinstance(last, WorkflowParked) and last.reason == reason:
            return None
        return self._append(inst, [WorkflowParked(at=self._clock.now(), reason=reason, step=step)])


def _retry_state(history: Sequence[Event]) -> dict[int, tuple[int, float]]:
    """Steps whose last attempt failed and was not yet retried: step -> (next attempt, due)."""
    state: dict[int, tuple[int, float]] = {}
    for event in history:
        if isinstance(event, ActivityAttemptFailed):
            state[event.step] = (event.attempt + 1, event.retry_at)
        elif isinstance(event, ActivityCompleted | ActivityFailed):
            state.pop(event.step, None)
    return state


def _check_id(workflow_id: object) -> str:
    if not isinstance(workflow_id, str) or not workflow_id or len(workflow_id) > _MAX_ID:
        raise ValueError(
            f"a workflow id must be a non-empty string of at most 512 characters, not "
            f"{workflow_id!r}"
        )
    return workflow_id
