"""LocalBackend: async activities on the event loop, sync ones in a bounded pool of threads."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import math
import threading
from typing import TYPE_CHECKING, Any, final

import anyio

from flowcore import _context, serde
from flowcore.backends.base import ActivityOutcome, ActivityTask
from flowcore.errors import FailureInfo, PayloadError

__all__ = ["LocalBackend", "cancels_attempt", "encode_result"]


@final
class LocalBackend:
    """Run activities in this process.

    Args:
        max_threads: How many sync activities may run at once in worker threads. A thread
            whose attempt timed out or was cancelled is abandoned, not stopped (Python cannot
            stop a thread): it keeps its place until its function returns, so activities that
            hang cannot pile up threads beyond this bound.
    """

    name = "local"
    """Activities declared with ``@activity(backend="local")`` run here."""

    def __init__(self, *, max_threads: int = 40) -> None:
        self._threads = anyio.CapacityLimiter(max_threads)
        self._pool = anyio.CapacityLimiter(math.inf)
        """anyio's own limit on the threads it hands work; ``_threads`` bounds them instead."""

    async def open(self) -> None:
        """Nothing to prepare."""

    async def close(self) -> None:
        """Nothing to release: running threads finish on their own."""

    async def execute(self, task: ActivityTask, *, timeout: float | None) -> ActivityOutcome:
        """Run one attempt; exceptions and timeouts become a failed outcome."""
        token = _context.enter_activity(functools.partial(_info, task))
        try:
            if timeout is None and task.activity.is_async:
                value = await task.activity.fn(*task.args, **task.kwargs)
            elif timeout is None:
                value = await self._call(task)
            else:
                with anyio.move_on_after(timeout) as scope:
                    value = await self._call(task)
                if scope.cancelled_caught:
                    error = TimeoutError(
                        f"activity {task.activity.name!r} exceeded its {timeout}s timeout"
                    )
                    return ActivityOutcome(
                        failure=FailureInfo.from_exception(error), timed_out=True
                    )
        except BaseException as exc:  # the activity's own error becomes its outcome
            if cancels_attempt(exc):
                raise
            return ActivityOutcome(failure=FailureInfo.from_exception(exc))
        finally:
            _context.exit_activity(token)
        result, failure = encode_result(value)
        return ActivityOutcome(result=result, failure=failure)

    async def _call(self, task: ActivityTask) -> Any:
        fn = task.activity.fn
        if task.activity.is_async:
            return await fn(*task.args, **task.kwargs)
        ctx = contextvars.copy_context()
        lease = _Lease(self._threads, asyncio.get_running_loop())
        await self._threads.acquire_on_behalf_of(lease)
        try:
            value = await anyio.to_thread.run_sync(
                lease.run,
                functools.partial(ctx.run, _in_thread, fn, task.args, task.kwargs),
                limiter=self._pool,
                abandon_on_cancel=True,
            )
        finally:
            lease.leave()
        if type(value) is _Raised:
            raise value.error  # here, in the attempt's own frame, where execute() catches it
        return value


@final
class _Lease:
    """A sync attempt's place in the thread limit, held until its thread is done with it.

    The attempt leaves (:meth:`leave`) when it ends, times out or is cancelled; the place goes
    back then unless the thread still runs the activity, which gives it back when it returns.
    A call the thread had not begun when the attempt left is skipped.
    """

    __slots__ = ("_limiter", "_lock", "_loop", "_state")

    def __init__(self, limiter: anyio.CapacityLimiter, loop: asyncio.AbstractEventLoop) -> None:
        self._limiter = limiter
        self._loop = loop
        self._lock = threading.Lock()
        self._state = "queued"  # -> running -> done | abandoned; or queued -> left

    def run(self, call: Callable[[], Any]) -> Any:
        """On the worker thread: make the call unless its attempt already left."""
        with self._lock:
            if self._state == "left":
                return None
            self._state = "running"
        try:
            return call()
        finally:
            with self._lock:
                abandoned, self._state = self._state == "abandoned", "done"
            if abandoned:
                with contextlib.suppress(RuntimeError):  # the loop closed: nothing to free
                    self._loop.call_soon_threadsafe(self._limiter.release_on_behalf_of, self)

    def leave(self) -> None:
        """On the loop: the attempt is over; free the place unless the thread still runs."""
        with self._lock:
            running = self._state == "running"
            self._state = "abandoned" if running else "left"
        if not running:
            self._limiter.release_on_behalf_of(self)


@final
class _Raised:
    """A BaseException (not an Exception) a sync activity raised on its thread."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _in_thread(fn: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    """Call a sync activity on its thread; a BaseException it raises comes back as a value.

    Sent through the thread's future, a ``GeneratorExit`` closes the coroutines awaiting it
    instead of raising into them, and the attempt would end with no outcome.
    """
    try:
        return fn(*args, **kwargs)
    except Exception:
        raise
    except BaseException as exc:  # noqa: BLE001 - handed back to the attempt, see above
        return _Raised(exc)


def encode_result(value: Any) -> tuple[Json, FailureInfo | None]:
    """An attempt returned ``value``: its encoding, or why it fails for good.

    A value that cannot be encoded fails the same way on every attempt, so that failure is not
    retried. The runtime calls it too, for the attempts it runs in its own task.
    """
    try:
        return serde.encode(value), None
    except PayloadError as exc:
        return None, FailureInfo.from_exception(exc, non_retryable=True)


def cancels_attempt(exc: BaseException) -> bool:
    """Whether ``exc``, raised out of an attempt, is its task being cancelled from outside.

    Only that passes through (the runtime stopping the attempt or closing). Any other
    BaseException is the activity's own failure, retried by its policy like an Exception:
    ``sys.exit()`` in a library it calls, a ``KeyboardInterrupt`` or ``CancelledError`` its
    code raises (a sync activity's thread receives no signals), a custom subclass. Let through,
    it would end the attempt's task with no outcome and leave the workflow waiting for ever.
    """
    if not isinstance(exc, asyncio.CancelledError):
        return False
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _info(task: ActivityTask) -> _context.Info:
    """What ``flowcore.activity_info()`` tells the attempt (built only when it asks)."""
    return _context.Info(
        workflow_id=task.workflow_id,
        workflow_name=task.workflow_name,
        version=task.workflow_version,
        activity=task.activity.name,
        step=task.step,
        attempt=task.attempt,
        op=task.op,
        _cancel=task.cancelled,
    )


if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from flowcore.backends.base import Backend
    from flowcore.engine.events import Json

    _check: Backend = LocalBackend()
