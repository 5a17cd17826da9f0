"""Runtime: the embedded engine host; its lifecycle and public API.

It is the only place that touches the event loop, the clock, the journal and the backend (its
machinery lives in :mod:`flowcore._core`). Each unfinished workflow stays in memory; anything the
caller is told (a start, a sent event, a result) waits for its commit. On open, every unfinished
workflow is replayed from the journal and continues.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any, Literal, final

import anyio

from flowcore import serde
from flowcore._context import version_text
from flowcore._core import Core, _DueTimers, check_id
from flowcore._definitions import Registry, WorkflowDef, default_registry
from flowcore._handle import WorkflowHandle
from flowcore._ids import new_workflow_id
from flowcore._inbox import InboxWatcher
from flowcore._limits import DEFAULT_MAX_PAYLOAD_BYTES
from flowcore._logging import get_logger, lazy_logger
from flowcore._slots import Slots
from flowcore.abc import SystemClock
from flowcore.backends.local import LocalBackend
from flowcore.engine import events as ev
from flowcore.errors import (
    FlowcoreError,
    InvalidArgumentError,
    RegistrationError,
    WorkflowCanceledError,
    WorkflowFailedError,
    WorkflowNotFoundError,
)
from flowcore.journal.sqlite import SqliteJournal

if TYPE_CHECKING:
    import builtins
    import os
    from collections.abc import Iterable, Mapping
    from types import TracebackType

    from flowcore._instance import Terminal
    from flowcore._status import WorkflowState, WorkflowStatus
    from flowcore.abc import Backend, Clock, Journal
    from flowcore.journal.base import Durability
    from flowcore.listeners import Listener

__all__ = ["Runtime"]


def _registry_of(workflows: Iterable[object]) -> Registry:
    """A registry of exactly ``workflows`` (``Runtime(workflows=...)``).

    Raises:
        RegistrationError: one is not a ``@workflow`` function, or two clash.
    """
    registry = Registry()
    for defn in workflows:
        if not isinstance(defn, WorkflowDef):  # Runtime's hint does not bind callers
            msg = (
                f"Runtime(workflows=...) takes @workflow functions, not {defn!r}; decorate it "
                "with @flowcore.workflow (activities need no registering)"
            )
            raise RegistrationError(msg)
        registry.add_workflow(defn)
    return registry


@final
class Runtime(Core):
    """Hosts durable workflows on an embedded SQLite journal.

    Use it as an async context manager (or call :meth:`open` and :meth:`close`)::

        async with Runtime("flowcore.db") as runtime:
            handle = await runtime.start("place_order", order, id="order-42")
            print(await handle.result())

    Opening replays every unfinished workflow in the journal and continues it.

    Args:
        db: Path of the SQLite journal file (created if missing; not ``:memory:``, which
            would vanish with the process: tests pass
            ``journal=flowcore.testing.InMemoryJournal()``).
        workflows: Workflow definitions this runtime serves; default: every ``@workflow``.
        durability: ``"full"`` fsyncs each group commit; ``"normal"`` survives process crashes
            but not power loss.
        max_concurrent_activities: Activity attempts allowed to run at once in this process
            (a backend whose ``remote`` attribute is true, like ``CeleryBackend``, is bounded by
            its workers instead).
        backend: Where activities run (default: in this process). It also serves activities
            that ask for it by its ``name`` (``CeleryBackend`` is ``"celery"``).
        backends: More backends by name, for activities declared with
            ``@activity(backend=NAME)`` (e.g. ``{"celery": CeleryBackend(app)}``). ``"local"``
            (this process) is always available.
        clock: Time source (default: the system clock; tests may pass
            ``flowcore.testing.VirtualClock()``).
        dispatch: ``"durable"`` (default) starts an activity, timer or child only once its
            schedule is committed: an idempotency key always names one call with one set of
            arguments. ``"eager"`` starts it at once, while the schedule commits (lower latency,
            one commit less per sequential step; with a generated id, the first step runs while
            ``start()`` commits); after a crash, a call whose arguments came from results the
            crash lost may be reissued under the same key with other arguments. Choose eager
            when activities are pure or deduplicate on their arguments.
        journal: A journal object to use instead of ``db`` (e.g. an in-memory one for tests).
        listeners: Who hears about progress (:mod:`flowcore.listeners`), e.g.
            ``flowcore.orchestra.OrchestraReporter()``; their reports commit with the events.
        max_payload_bytes: Largest encoded payload (UTF-8 JSON) accepted as a workflow input,
            an event payload or an activity result (default 4 MiB); a larger one raises
            PayloadError (an activity's result fails the activity, without retries). Workflow
            code is held to it too: activity arguments, ``set_status``, a child's input and
            ``continue_as_new`` over it raise PayloadError at that call, before anything is
            journaled; a workflow result over it fails the workflow. What a journal recorded
            replays whatever its size, so a smaller limit never stops a recovery.
        max_cached_workflows: Most unfinished workflows kept in memory (default 10,000; None:
            no bound). Beyond it, the least recently active idle ones (waiting only on timers
            or events) are evicted; an event, a cancel request or their earliest timer brings
            one back by replaying its journal. Workflows running activities or waiting on
            children are never evicted, so the bound can be exceeded while they are busy.
            Recovery keeps the bound too: idle workflows beyond it are not replayed at open
            but left evicted (a code change that diverges parks one when it comes back).
    """

    def __init__(
        self,
        db: str | os.PathLike[str] = "flowcore.db",
        *,
        workflows: Iterable[WorkflowDef[Any, Any]] | None = None,
        durability: Durability = "full",
        max_concurrent_activities: int = 100,
        backend: Backend | None = None,
        backends: Mapping[str, Backend] | None = None,
        clock: Clock | None = None,
        journal: Journal | None = None,
        dispatch: Literal["durable", "eager"] = "durable",
        listeners: Iterable[Listener] = (),
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        max_cached_workflows: int | None = 10_000,
    ) -> None:
        if durability not in ("full", "normal"):
            raise ValueError("durability must be 'full' or 'normal'")
        if max_concurrent_activities < 1:
            raise ValueError("max_concurrent_activities must be at least 1")
        if dispatch not in ("durable", "eager"):
            raise ValueError("dispatch must be 'durable' or 'eager'")
        if max_payload_bytes < 1:
            raise ValueError("max_payload_bytes must be at least 1")
        self._init_cache(max_cached_workflows)
        self._eager = dispatch == "eager"
        self._max_payload = max_payload_bytes
        self._journal: Journal = journal or SqliteJournal(db, durability=durability)
        self._registry = default_registry if workflows is None else _registry_of(workflows)
        self._backend: Backend = backend or LocalBackend(max_threads=max_concurrent_activities)
        self._backends = dict(backends or {})
        own_name = getattr(self._backend, "name", None)  # e.g. CeleryBackend.name == "celery"
        if isinstance(own_name, str):
            self._backends.setdefault(own_name, self._backend)
        if "local" not in self._backends:
            local = self._backend if backend is None else None
            self._backends["local"] = local or LocalBackend(max_threads=max_concurrent_activities)
        self._clock: Clock = clock or SystemClock()
        self._now = time.time if type(self._clock) is SystemClock else self._clock.now
        self._limiter = Slots(max_concurrent_activities)
        self._jobs = set()
        self._instances = {}
        self._state: Literal["new", "open", "closing", "closed"] = "new"
        self._failure: BaseException | None = None
        self._tg = None
        self._stop = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._after = {}
        self._busy = 0
        """Activity attempts running plus appends not yet committed (for virtual clocks)."""
        self._ready = []
        self._timing = _DueTimers()
        self._waiters = 0
        """Callers blocked in result() (a virtual clock skips time only for them)."""
        self._log = lazy_logger("flowcore")
        self._debug = True
        self._inbox: InboxWatcher | None = None
        """Applies requests other processes queue in the journal (``python -m flowcore``)."""
        self._listeners = tuple(listeners)
        self._listening: builtins.list[Listener] = []
        """Listeners opened so far (closed in reverse order)."""

    def __repr__(self) -> str:
        return f"<flowcore.Runtime {self._state} on {self._journal!r}>"

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the journal, take ownership and recover unfinished workflows.

        Then apply the requests other processes queued in the journal (``python -m flowcore
        start``, ``send-event`` ...) and keep applying new ones while open.

        Raises:
            JournalLockedError: another runtime serves this database.
            JournalCorruptError: the file is not a flowcore journal (it is left untouched).
        """
        if self._state != "new":
            raise FlowcoreError("a Runtime can be opened once; create a new one to reopen")
        self._log = get_logger("flowcore")  # resolved once: the hot path logs through it
        enabled = getattr(self._log, "is_enabled_for", None)  # FilteringBoundLogger has it
        self._debug = True if enabled is None else bool(enabled(logging.DEBUG))
        await self._journal.open()
        try:
            for each in self._all_backends():
                await each.open()
            for listener in self._listeners:
                await listener.open(self._journal)
                self._listening.append(listener)
            started = asyncio.Event()
            self._supervisor = asyncio.create_task(self._supervise(started))
            await started.wait()
            bind = getattr(self._clock, "bind", None)
            if bind is not None:
                bind(self._idle)
            self._state = "open"
            # Timers that expired while no runtime ran fire once the requests queued meanwhile
            # (python -m flowcore send-event ...) are applied, each in its time order.
            self._hold_timers()
            await self._recover()
            journal = self._journal
            if isinstance(journal, SqliteJournal) and not journal.readonly:
                self._inbox = InboxWatcher(self, journal.path)
                await self._inbox.open()
            self._release_timers()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop: in-flight work is abandoned (recovery resumes it), the journal is flushed.

        Workflows still running stay in the journal and continue when a runtime opens it again.
        """
        if self._state == "closed":
            return
        self._state = "closing"
        if self._inbox is not None:
            await self._inbox.close()
        self._stop.set()
        for runner in list(self._jobs):
            runner.cancel()
        await asyncio.gather(*self._jobs, return_exceptions=True)
        self._jobs.clear()  # a task cancelled before it began did not leave the set itself
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
                inst.abort(closed)
        self._instances.clear()
        try:
            while self._listening:  # their senders may read the journal until they are closed
                try:
                    await self._listening.pop().close()
                except Exception:  # noqa: BLE001 - a listener must not keep the journal open
                    self._log.exception("listener failed to close")
            await self._journal.close()
        finally:
            await self._close_backends()

    async def _close_backends(self) -> None:
        try:
            for each in self._all_backends():
                await each.close()
        finally:
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

    def _idle(self) -> bool:
        """True when nothing runs and someone waits for a result (a virtual clock may skip)."""
        return self._busy == 0 and self._waiters > 0

    # -- public API: starting and steering ------------------------------------------------------

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
            PayloadError: the payload cannot be encoded, is larger than ``max_payload_bytes``,
                or does not fit the type hint of the workflow's parameter; nothing was written.
            WorkflowAlreadyExistsError: ``id`` exists and ``if_exists="error"``.
            InvalidArgumentError: ``if_exists`` is neither ``"error"`` nor ``"return"``; a
                payload was given to a workflow that takes no input, or none to one that
                needs it (nothing was written).
        """
        self._check_open()
        if if_exists not in ("error", "return"):  # the hint does not bind callers from JSON
            msg = f"if_exists must be 'error' or 'return', not {if_exists!r}"
            raise InvalidArgumentError(msg)
        defn = self._resolve(workflow, version_text(version))
        defn.check_payload(payload, fix="call runtime.start() without one")
        encoded = serde.encode(payload)
        wid = check_id(id) if id is not None else new_workflow_id()
        inst = await self._start(
            defn, encoded, wid, if_exists=if_exists, fresh_id=id is None, check_input=True
        )
        return WorkflowHandle(self, wid, inst)

    async def send_event(self, workflow_id: str, name: str, payload: Any = None) -> None:
        """Send an external event; return once it is committed.

        Events sent before the workflow waits for them are kept, in order.

        Raises:
            WorkflowNotFoundError: no instance has this id.
            WorkflowFinishedError: the instance already ended.
            PayloadError: the payload cannot be encoded or is larger than ``max_payload_bytes``;
                nothing was written.
            InvalidArgumentError: the event name is not a non-empty string.
        """
        if not name or not isinstance(name, str):  # the hint does not bind callers from JSON
            msg = f"an event name must be a non-empty string, not {name!r}"
            raise InvalidArgumentError(msg)
        encoded = serde.encode(payload)
        await self._request(
            workflow_id, "send an event to", ev.EventReceived, name=name, payload=encoded
        )

    async def cancel(self, workflow_id: str, reason: str | None = None) -> None:
        """Request cancellation: the workflow's current awaits raise WorkflowCanceledError.

        ``except``/``finally`` blocks may still run activities (compensation); the instance then
        ends ``canceled``. Running async activities are cancelled; sync ones see
        ``flowcore.activity_info().cancelled``. Children are canceled too. Returns once the
        request is committed. A suspended instance takes the request when it is resumed.

        Raises:
            WorkflowNotFoundError: no instance has this id.
            WorkflowFinishedError: the instance already ended.
            InvalidArgumentError: the reason holds a NUL or a lone surrogate.
            PayloadError: the reason is over the payload limit (``max_payload_bytes``).
        """
        await self._request(workflow_id, "cancel", ev.CancelRequested, reason=reason)

    async def suspend(self, workflow_id: str) -> None:
        """Stop an instance from making progress; events still queue until :meth:`resume`."""
        await self._request(workflow_id, "suspend", ev.WorkflowSuspended)

    async def resume(self, workflow_id: str) -> None:
        """Let a suspended instance continue; what queued meanwhile is applied in order."""
        await self._request(workflow_id, "resume", ev.WorkflowResumed)

    async def terminate(self, workflow_id: str, reason: str | None = None) -> None:
        """End an instance at once, without running its cleanup; its children end too.

        Raises:
            WorkflowNotFoundError: no instance has this id.
            WorkflowFinishedError: the instance already ended.
            InvalidArgumentError: the reason holds a NUL or a lone surrogate.
            PayloadError: the reason is over the payload limit (``max_payload_bytes``).
        """
        await self._terminate_request(workflow_id, reason)

    def handle(self, workflow_id: str) -> WorkflowHandle:
        """A handle to an existing instance (not checked until used)."""
        return WorkflowHandle(self, workflow_id)

    # -- public API: inspection --------------------------------------------------------------

    async def status(self, workflow_id: str) -> WorkflowStatus:
        """The instance's committed status record.

        Raises:
            WorkflowNotFoundError: no instance has this id.
        """
        if self._state == "new":
            self._check_open()  # says how to open it, not that its journal is not open
        row = await self._journal.status(workflow_id)
        if row is None:
            raise WorkflowNotFoundError(workflow_id)
        if not row.is_finished:
            note = self._backend_note(workflow_id)
            if note is not None:
                row = dataclasses.replace(row, backend_note=note)
        return row

    async def list(
        self,
        name: str | None = None,
        status: WorkflowState | str | None = None,
        limit: int = 100,
    ) -> builtins.list[WorkflowStatus]:
        """Status records, newest first, optionally filtered by workflow name and state."""
        if self._state == "new":
            self._check_open()
        return await self._journal.list(name=name, status=status, limit=limit)

    async def history(self, workflow_id: str) -> builtins.list[ev.Event]:
        """Every committed event of an instance's current run, in order.

        Raises:
            WorkflowNotFoundError: no instance has this id.
        """
        if self._state == "new":
            self._check_open()
        events = await self._journal.history(workflow_id)
        if not events:
            raise WorkflowNotFoundError(workflow_id)
        return events

    async def result(self, workflow_id: str, *, timeout: float | None = None) -> Any:
        """Wait for an instance to finish and return its result, decoded by the return hint.

        Raises:
            WorkflowFailedError: the workflow raised; ``.failure`` describes it.
            WorkflowCanceledError: it was canceled or terminated.
            WorkflowNotFoundError: no instance has this id.
            TimeoutError: it did not finish within ``timeout`` seconds.
        """
        if self._state == "new":
            self._check_open()
        self._waiters += 1
        try:
            if timeout is None:  # no cancel scope on the common path: it costs ~50 us
                terminal, name, version = await self._terminal_event(workflow_id)
            else:
                with anyio.fail_after(timeout):
                    terminal, name, version = await self._terminal_event(workflow_id)
        finally:
            self._waiters -= 1
        return self._outcome(workflow_id, terminal, name, version)

    def _outcome(self, workflow_id: str, terminal: Terminal, name: str, version: str) -> Any:
        """What ``result()`` gives for a committed terminal event: the decoded result, or raises.

        ``name`` and ``version`` are those of the workflow's last run, whose return hint decodes.
        """
        match terminal:
            case ev.WorkflowFailed():
                raise WorkflowFailedError(workflow_id, terminal.failure)
            case ev.WorkflowCanceled() | ev.WorkflowTerminated():
                what = "canceled" if isinstance(terminal, ev.WorkflowCanceled) else "terminated"
                reason = f": {terminal.reason}" if terminal.reason else ""
                raise WorkflowCanceledError(
                    f"workflow {workflow_id!r} was {what}{reason}", workflow_id=workflow_id
                )
            case _:
                pass
        try:
            defn = self._registry.for_replay(name, version)
        except RegistrationError:
            return terminal.result  # no code to read its type from: plain JSON
        return serde.decode(terminal.result, serde.signature_hints(defn.fn)[2])
