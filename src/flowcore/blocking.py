"""BlockingRuntime: the async :class:`~flowcore.Runtime` for synchronous code, on its own thread.

Flask and Django views, scripts and Celery tasks are not async. A :class:`BlockingRuntime` starts
an event loop on a background thread (an anyio blocking portal), opens a ``Runtime`` there and
forwards each call to it: every method blocks the calling thread until the runtime answers and
raises the same flowcore exceptions the async API raises. Any number of threads may call it at
once; the loop serialises the calls and the journal's group commit batches their writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar, final

from anyio.from_thread import start_blocking_portal

from flowcore.errors import FlowcoreError
from flowcore.runtime import Runtime

if TYPE_CHECKING:
    import builtins
    import os
    from collections.abc import Awaitable, Callable
    from types import TracebackType

    from anyio.from_thread import BlockingPortal

    from flowcore._definitions import WorkflowDef
    from flowcore._status import WorkflowState, WorkflowStatus
    from flowcore.engine.events import Event

__all__ = ["BlockingRuntime"]

P = ParamSpec("P")
T = TypeVar("T")


@final
class BlockingRuntime:
    """A :class:`~flowcore.Runtime` hosted on a background thread, with a blocking API.

    Use it as a context manager (or call :meth:`close`)::

        with BlockingRuntime("flowcore.db") as runtime:
            wid = runtime.start("place_order", order, id="order-42")
            print(runtime.result(wid, timeout=60))

    Constructing it opens the journal and recovers unfinished workflows, exactly as
    ``await Runtime(...).open()`` does. Every method may be called from any thread except the
    runtime's own loop thread (i.e. not from async activities it runs).

    Args:
        db: Path of the SQLite journal file (created if missing).
        **options: Keyword options of :class:`~flowcore.Runtime` (``workflows``, ``durability``,
            ``max_concurrent_activities``, ``backend``, ``clock``, ``journal``, ``dispatch``).

    Raises:
        JournalLockedError: another runtime (in this or another process) serves this database.
        JournalCorruptError: the file is not a flowcore journal.
    """

    def __init__(self, db: str | os.PathLike[str] = "flowcore.db", **options: Any) -> None:
        self._lock = threading.Lock()
        self._stack = contextlib.ExitStack()
        self._portal: BlockingPortal | None = None
        portal = self._stack.enter_context(start_blocking_portal(name="flowcore-runtime"))
        try:
            self._runtime: Runtime = portal.call(_open_runtime, db, options)
        except BaseException:
            self._stack.close()
            raise
        self._portal = portal
        self._loop_thread = portal.call(threading.get_ident)

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the runtime and stop its thread; unfinished workflows continue on next open.

        Idempotent; safe to call from any thread but the runtime's own.

        Raises:
            FlowcoreError: called from the runtime's own event loop (an async activity); the
                runtime stays open.
        """
        self._refuse_loop_thread()
        with self._lock:
            portal, self._portal = self._portal, None
        if portal is None:
            return
        try:
            portal.call(self._runtime.close)
        finally:
            self._stack.close()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._portal is None

    @property
    def runtime(self) -> Runtime:
        """The async runtime underneath (use it only from code running on its loop)."""
        return self._runtime

    def __enter__(self) -> BlockingRuntime:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` on the runtime's loop and wait for it, unless this is that loop's thread."""
        self._refuse_loop_thread()
        return self._submit(fn, *args, **kwargs)

    def _submit(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` on the runtime's loop and wait for it (the caller checked the thread)."""
        portal = self._portal
        if portal is None:
            raise FlowcoreError(
                "this BlockingRuntime is closed; create a new one to use the database again"
            )
        return portal.call(functools.partial(fn, *args, **kwargs))

    def _refuse_loop_thread(self) -> None:
        """Raise on the runtime's own loop thread, where a blocking call could never return."""
        if threading.get_ident() == self._loop_thread:
            raise FlowcoreError(
                "a BlockingRuntime method was called from the runtime's own event loop (an "
                "async activity?); await the async Runtime API there instead"
            )

    # -- starting and steering ---------------------------------------------------------------

    def start(
        self,
        workflow: str | WorkflowDef[Any, Any],
        payload: Any = None,
        *,
        id: str | None = None,  # noqa: A002 - the public name users expect
        version: str | None = None,
        if_exists: Literal["error", "return"] = "error",
    ) -> str:
        """Start a workflow; return its id once the start is durable.

        Arguments and errors are those of :meth:`flowcore.Runtime.start`.
        """
        handle = self._call(
            self._runtime.start, workflow, payload, id=id, version=version, if_exists=if_exists
        )
        return handle.id

    def send_event(self, workflow_id: str, name: str, payload: Any = None) -> None:
        """Send an external event; return once it is committed (see ``Runtime.send_event``)."""
        self._call(self._runtime.send_event, workflow_id, name, payload)

    def cancel(self, workflow_id: str, reason: str | None = None) -> None:
        """Request cancellation (see ``Runtime.cancel``)."""
        self._call(self._runtime.cancel, workflow_id, reason)

    def terminate(self, workflow_id: str, reason: str | None = None) -> None:
        """End an instance at once, without cleanup (see ``Runtime.terminate``)."""
        self._call(self._runtime.terminate, workflow_id, reason)

    def suspend(self, workflow_id: str) -> None:
        """Pause an instance (see ``Runtime.suspend``)."""
        self._call(self._runtime.suspend, workflow_id)

    def resume(self, workflow_id: str) -> None:
        """Continue a suspended instance (see ``Runtime.resume``)."""
        self._call(self._runtime.resume, workflow_id)

    # -- inspection --------------------------------------------------------------------------

    def status(self, workflow_id: str) -> WorkflowStatus:
        """The instance's committed status record.

        Raises:
            WorkflowNotFoundError: no instance has this id.
        """
        return self._call(self._runtime.status, workflow_id)

    def result(self, workflow_id: str, *, timeout: float | None = None) -> Any:
        """Block until the instance finishes; return its result, decoded by the return hint.

        Raises:
            WorkflowFailedError: the workflow raised; ``.failure`` describes it.
            WorkflowCanceledError: it was canceled or terminated.
            WorkflowNotFoundError: no instance has this id.
            TimeoutError: it did not finish within ``timeout`` seconds.
            FlowcoreError: called on a thread that runs an event loop (async code): waiting
                there would block that loop, and deadlock if the workflow waits for something
                the loop does; use ``await asyncio.to_thread(runtime.result, ...)`` instead.
        """
        self._refuse_loop_thread()  # first: on the runtime's own loop, say so
        _refuse_running_loop("result")
        return self._submit(self._runtime.result, workflow_id, timeout=timeout)

    def list(
        self,
        name: str | None = None,
        status: WorkflowState | str | None = None,
        limit: int = 100,
    ) -> builtins.list[WorkflowStatus]:
        """Status records, newest first, optionally filtered by workflow name and state."""
        return self._call(self._runtime.list, name, status, limit)

    def history(self, workflow_id: str) -> builtins.list[Event]:
        """Every committed event of an instance's current run, in order."""
        return self._call(self._runtime.history, workflow_id)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<flowcore.BlockingRuntime {state}>"


def _refuse_running_loop(method: str) -> None:
    """Raise when the calling thread runs an event loop, which ``method`` would block."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise FlowcoreError(
        f"BlockingRuntime.{method}() was called from async code (this thread runs an event "
        "loop): it would block that loop until the workflow ends, and never end if the workflow "
        f"waits for something that loop does; await asyncio.to_thread(runtime.{method}, ...) "
        "instead, or use the async Runtime"
    )


async def _open_runtime(db: str | os.PathLike[str], options: dict[str, Any]) -> Runtime:
    runtime = Runtime(db, **options)
    await runtime.open()
    return runtime
