"""py-orchestrate's surface on flowcore: ``Orchestrator``, ``@workflow`` and ``@activity``.

Code written for py-orchestrate keeps its shape; only the import changes::

    from flowcore.compat.py_orchestrate import Orchestrator, activity, workflow

    @activity("fetch_user")
    def fetch_user(user_id: int) -> dict: ...

    @workflow("user_notification")
    def user_notification(user_id: int, message: str) -> dict:
        user = fetch_user(user_id)           # a journaled activity call
        return {"user": user}

    orchestrator = Orchestrator("app.db", max_workers=5)
    orchestrator.start()
    workflow_id = orchestrator.invoke_workflow("user_notification", user_id=1, message="hi")
    print(orchestrator.get_workflow_status(workflow_id))   # processing / done / failed
    orchestrator.stop()

How a *sync* workflow is made durable
-------------------------------------
flowcore replays workflows: after a restart it runs the workflow code again from the top and
answers each activity call with the result its journal recorded, matched by the call's position
(its step number). Async workflows hand each call to the engine with ``await``. A py-orchestrate
workflow is a plain function, so each one is registered as a flowcore workflow whose body is a
small awaitable, a *bridge*, that runs the function on a dedicated thread:

- The engine drives the bridge like any coroutine. ``send`` hands the value to the workflow
  thread and waits until the thread either calls an activity (the bridge yields that call to the
  engine, exactly as ``await activity(...)`` would) or returns or raises (the bridge finishes
  the same way). Workflow code and the engine thus take turns, never run at once, and the code
  between two activity calls runs while the engine waits, like the code of an async workflow
  between two awaits: keep it short and do I/O in activities. The engine, and so the whole
  runtime, is blocked meanwhile: a ``time.sleep()`` there stalls every workflow; sleep in an
  activity instead.
- An activity called on the workflow thread blocks on the bridge until the engine resumes it
  with the result (or raises :class:`~flowcore.ActivityError` into it). Calls are sequential:
  an activity called from another thread (a pool the workflow starts) is not journaled and
  simply runs; for parallel calls write an async workflow with ``flowcore.gather``.
- Results are keyed by call order, not by activity name: a loop calling one activity with five
  arguments gets its five results back, in order, after a restart. Falsy results (``0``, ``""``,
  ``None``, ``[]``) are recorded like any other. A replayed call whose activity name differs
  from the journal's is a :class:`~flowcore.NondeterminismError` (the instance is parked).
- A call that was in flight when the process died has no recorded result, so it runs again
  after the restart, with the same ``flowcore.activity_info().idempotency_key``.
- When the runtime closes (or the instance ends), the engine closes the bridge: the parked
  workflow thread is released and unwinds; threads are daemons and never block an exit.
- One runtime owns a database: a second ``Orchestrator`` (in this or another process) on the same
  file gets :class:`~flowcore.JournalLockedError` from ``start()``.

Statuses map onto py-orchestrate's three: pending, running, suspended and parked are
``processing``; completed is ``done``; failed, canceled and terminated are ``failed``.
"""

from __future__ import annotations

import contextvars
import enum
import functools
import queue
import threading
import time
import typing
import uuid
from typing import TYPE_CHECKING, Any, TypeVar, final, overload

from flowcore import serde
from flowcore._definitions import ActivityDef, WorkflowDef, default_registry
from flowcore._ids import new_workflow_id
from flowcore._status import WorkflowState
from flowcore.blocking import BlockingRuntime
from flowcore.engine._traps import ScheduleActivityTrap
from flowcore.errors import (
    FlowcoreError,
    WorkflowError,
    WorkflowMisuseError,
    WorkflowNotFoundError,
)
from flowcore.retry import NO_RETRY, RetryPolicy

if TYPE_CHECKING:
    from collections.abc import Callable, Generator
    from types import TracebackType

    from flowcore._status import WorkflowStatus as _Status

__all__ = ["Orchestrator", "WorkflowStatus", "activity", "workflow"]

F = TypeVar("F", bound="Callable[..., Any]")


@final
class WorkflowStatus(enum.StrEnum):
    """py-orchestrate's three workflow states (the ``"status"`` of a status dict)."""

    PROCESSING = "processing"
    """Not finished: pending, running, suspended, or parked waiting for fixed code."""
    DONE = "done"
    """Completed with a result (``"output"``)."""
    FAILED = "failed"
    """Raised, or was canceled or terminated (``"error_message"`` says why)."""


_STATUS: dict[WorkflowState, WorkflowStatus] = {
    WorkflowState.PENDING: WorkflowStatus.PROCESSING,
    WorkflowState.RUNNING: WorkflowStatus.PROCESSING,
    WorkflowState.SUSPENDED: WorkflowStatus.PROCESSING,
    WorkflowState.PARKED: WorkflowStatus.PROCESSING,
    WorkflowState.COMPLETED: WorkflowStatus.DONE,
    WorkflowState.FAILED: WorkflowStatus.FAILED,
    WorkflowState.CANCELED: WorkflowStatus.FAILED,
    WorkflowState.TERMINATED: WorkflowStatus.FAILED,
}
_PROGRESSING = frozenset({WorkflowState.PENDING, WorkflowState.RUNNING})


# -- the bridge between a sync workflow thread and the engine ---------------------------------


class _Abandoned(BaseException):
    """Raised in a workflow thread whose instance the engine closed: unwind and exit."""


_bridge: contextvars.ContextVar[_Bridge | None] = contextvars.ContextVar(
    "flowcore_py_orchestrate_bridge", default=None
)


class _Bridge:
    """The awaitable body of a sync workflow: runs it on a thread, yields its activity calls."""

    def __init__(self, fn: Callable[..., Any], kwargs: dict[str, Any], name: str) -> None:
        self._fn = fn
        self._kwargs = kwargs
        self._name = name
        self._to_thread: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._from_thread: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._finished = False

    # The coroutine protocol ``await`` delegates to (PEP 342 generator methods).

    def __await__(self) -> Generator[Any, Any, Any]:
        return self  # type: ignore[return-value] # a generator-like iterator, as await needs

    def __iter__(self) -> _Bridge:
        return self

    def __next__(self) -> Any:
        return self.send(None)

    def send(self, value: Any) -> Any:
        """Engine side: resume the workflow thread with ``value``; return its next call."""
        if self._thread is None:
            ctx = contextvars.copy_context()  # keeps flowcore.info() working on the thread
            self._thread = threading.Thread(
                target=ctx.run, args=(self._main,), name=f"flowcore-workflow-{self._name}",
                daemon=True,
            )  # fmt: skip
            self._thread.start()
        else:
            self._to_thread.put(("value", value))
        return self._next_call()

    def throw(
        self,
        typ: type[BaseException] | BaseException,
        val: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> Any:
        """Engine side: raise an exception at the workflow thread's pending activity call."""
        exc = val if val is not None else typ if isinstance(typ, BaseException) else typ()
        if tb is not None:
            exc = exc.with_traceback(tb)
        if self._thread is None or self._finished:
            raise exc
        self._to_thread.put(("error", exc))
        return self._next_call()

    def close(self) -> None:
        """Engine side: the instance is abandoned; release the thread so it unwinds."""
        if self._thread is not None and not self._finished:
            self._finished = True
            self._to_thread.put(("abandon", None))

    def _next_call(self) -> Any:
        kind, item = self._from_thread.get()
        if kind == "call":
            return item
        self._finished = True
        if kind == "return":
            raise StopIteration(item)
        raise item

    # Workflow-thread side.

    def _main(self) -> None:
        _bridge.set(self)
        try:
            result = self._fn(**self._kwargs)
        except _Abandoned:
            return
        except BaseException as exc:  # noqa: BLE001 - handed to the engine, which fails the run
            self._from_thread.put(("raise", exc))
            return
        self._from_thread.put(("return", result))

    def call(self, trap: ScheduleActivityTrap) -> Any:
        """Workflow-thread side: hand an activity call to the engine; block for its outcome."""
        if self._finished:
            raise _Abandoned
        self._from_thread.put(("call", trap))
        kind, item = self._to_thread.get()
        if kind == "value":
            return item
        if kind == "error":
            raise item
        raise _Abandoned


# -- decorators -------------------------------------------------------------------------------


@overload
def activity(fn: F, /) -> F: ...
@overload
def activity(
    name: str | None = None, *, retry: RetryPolicy | None = None, timeout: float | None = None
) -> Callable[[F], F]: ...
def activity(
    name: str | Callable[..., Any] | None = None,
    *,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
) -> Any:
    """Mark a sync function as an activity: ``@activity``, ``@activity()`` or ``@activity("x")``.

    Called inside a ``@workflow`` it is journaled (and replayed after a restart); called
    anywhere else it simply runs. The function is registered as a flowcore activity.

    Args:
        name: Registered name; default: the function's ``__name__``.
        retry: flowcore retry policy (py-orchestrate had none; default: one attempt).
        timeout: Seconds one attempt may take.

    Returns:
        The decorated function (a wrapper), or a decorator.
    """
    if callable(name):
        return activity()(name)

    def decorate(fn: F) -> F:
        defn: ActivityDef[..., Any] = ActivityDef(
            fn, name=name or fn.__name__, retry=retry or NO_RETRY, timeout=timeout
        )
        default_registry.add_activity(defn)

        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            bridge = _bridge.get()
            if bridge is None:
                return fn(*args, **kwargs)
            return bridge.call(ScheduleActivityTrap(defn, args, kwargs))

        # py-orchestrate's markers, and the flowcore definition
        vars(call).update(_is_activity=True, _activity_name=defn.name, definition=defn)
        return typing.cast("F", call)

    return decorate


@overload
def workflow(fn: F, /) -> F: ...
@overload
def workflow(name: str | None = None) -> Callable[[F], F]: ...
def workflow(name: str | Callable[..., Any] | None = None) -> Any:
    """Mark a sync function as a workflow: ``@workflow``, ``@workflow()`` or ``@workflow("x")``.

    Its keyword arguments are the ``**kwargs`` of ``Orchestrator.invoke_workflow``; activity
    calls in its body are journaled by call order (see the module docstring). Calling the
    function directly still just runs it.

    Returns:
        The decorated function (a wrapper), or a decorator.
    """
    if callable(name):
        return workflow()(name)

    def decorate(fn: F) -> F:
        wf_name = name or fn.__name__
        default_registry.add_workflow(
            WorkflowDef(_workflow_body(fn, wf_name), name=wf_name, version="1")
        )

        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)

        vars(call).update(_is_workflow=True, _workflow_name=wf_name)  # py-orchestrate's markers
        return typing.cast("F", call)

    return decorate


def _workflow_body(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    async def body(kwargs: dict[str, Any] | None = None) -> Any:
        _, typed = serde.decode_args(fn, (), kwargs)  # each keyword by its parameter's hint
        return await _Bridge(fn, typed, name)

    try:
        returns = typing.get_type_hints(fn).get("return", Any)
    except Exception:  # noqa: BLE001 - unresolvable hints: results come back as plain JSON
        returns = Any
    body.__annotations__ = {"kwargs": dict[str, Any] | None, "return": returns}
    body.__module__ = fn.__module__  # registration conflicts name the user's function
    body.__qualname__ = fn.__qualname__
    body.__doc__ = fn.__doc__
    return body


# -- the Orchestrator ---------------------------------------------------------------------------


@final
class Orchestrator:
    """py-orchestrate's engine object, hosting a flowcore runtime on a background thread.

    Args:
        db_path: The journal file (a flowcore SQLite journal, not py-orchestrate's schema).
        max_workers: How many activities may run at once.
    """

    def __init__(self, db_path: str = "py_orchestrate.db", max_workers: int = 5) -> None:
        self.db_path = db_path
        self.max_workers = max_workers
        self._runtime: BlockingRuntime | None = None
        self._lock = threading.Lock()

    @property
    def runtime(self) -> BlockingRuntime:
        """The blocking flowcore runtime underneath (after :meth:`start`).

        Raises:
            FlowcoreError: the orchestrator is not started.
        """
        if _bridge.get() is not None:
            raise WorkflowMisuseError(
                "a workflow called its Orchestrator; a workflow may only call activities "
                "(the engine waits for the workflow while it runs, so this would deadlock)",
                workflow_id="",
            )
        runtime = self._runtime
        if runtime is None:
            raise FlowcoreError("the Orchestrator is not started; call orchestrator.start()")
        return runtime

    def start(self) -> None:
        """Open the journal and resume every unfinished workflow (no-op when started).

        Raises:
            JournalLockedError: another runtime serves this database.
        """
        with self._lock:
            if self._runtime is None:
                self._runtime = BlockingRuntime(
                    self.db_path, max_concurrent_activities=self.max_workers
                )

    def stop(self, timeout: float = 5.0) -> None:
        """Wait up to ``timeout`` seconds for running workflows to finish, then close.

        Parked and suspended workflows are not waited for: they cannot finish on their own.

        Workflows still unfinished then stay in the journal and resume on the next
        :meth:`start`.
        """
        with self._lock:
            runtime, self._runtime = self._runtime, None
        if runtime is None:
            return
        try:
            deadline = time.monotonic() + timeout
            # only unfinished ones that can progress (parked or suspended ones cannot finish now)
            waiting = [
                s.id for state in _PROGRESSING for s in runtime.list(status=state, limit=1_000_000)
            ]
            for wid in waiting:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    runtime.result(wid, timeout=left)
                except (FlowcoreError, TimeoutError):
                    continue
        finally:
            runtime.close()

    def __enter__(self) -> Orchestrator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def invoke_workflow(self, name: str, /, **kwargs: Any) -> str:
        """Start workflow ``name`` with ``kwargs``; return its id once the start is durable.

        ``name`` is positional-only, so a workflow may itself take a ``name`` keyword.

        Raises:
            RegistrationError: no workflow of that name is registered.
            PayloadError: an argument cannot be encoded as JSON.
        """
        # py-orchestrate's dashed form; time-ordered, as every generated id (flowcore._ids)
        return self.runtime.start(name, kwargs, id=str(uuid.UUID(hex=new_workflow_id())))

    def get_workflow_status(self, workflow_id: str) -> dict[str, Any] | None:
        """py-orchestrate's status dict, or None when no workflow has this id."""
        try:
            return _as_dict(self.runtime.status(workflow_id))
        except WorkflowNotFoundError:
            return None

    def list_workflows(self, name: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Status dicts, newest first; all workflows, or those named ``name``."""
        return [_as_dict(s) for s in self.runtime.list(name=name, limit=limit)]

    def wait_for_workflow(self, workflow_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Block until the workflow ends; return its status dict (a flowcore addition).

        Raises:
            WorkflowNotFoundError: no workflow has this id.
            TimeoutError: it did not end within ``timeout`` seconds.
            FlowcoreError: called from async code (see ``BlockingRuntime.result``).
        """
        runtime = self.runtime
        try:
            runtime.result(workflow_id, timeout=timeout)
        except WorkflowError as exc:
            if isinstance(exc, WorkflowNotFoundError):
                raise
        return _as_dict(runtime.status(workflow_id))


def _as_dict(status: _Status) -> dict[str, Any]:
    return {
        "id": status.id,
        "name": status.name,
        "status": _STATUS[status.status].value,
        "current_activity": status.current_activity,
        "error_message": status.error,
        "output": status.output,
        "created_at": status.created_at.isoformat(),
        "updated_at": status.updated_at.isoformat(),
    }
