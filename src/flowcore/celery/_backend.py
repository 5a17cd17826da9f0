"""CeleryBackend: activity attempts as Celery tasks, results collected by one thread for all.

Two threads serve every attempt in flight, however many there are:

* the **dispatcher** takes attempts from a queue in batches. For each task id it first asks
  the result backend (one ``MGET``) whether a result is already stored, then whether the id
  was already sent (a marker key). Only ids with neither are published, with
  ``retry=False``; a broker or Redis failure keeps the batch and retries it with backoff,
  and the affected workflows' ``status().backend_note`` says why.
* the **collector** subscribes to the result keys of every flowcore task id (one Redis
  ``PSUBSCRIBE``, as Celery's own Redis result consumer does per task), reads each notified
  result from its own database with ``MGET`` (pub/sub crosses database numbers), and sweeps
  the pending ids the same way after each (re)connection and every few seconds, so a result
  published while it was disconnected is still found. It resolves the waiting asyncio futures with
  ``loop.call_soon_threadsafe``.

Task ids are deterministic (:func:`~flowcore.celery._protocol.task_id_for`), so a runtime that
recovers after a crash re-attaches to the tasks it had sent instead of sending them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue as _queue
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, final

import anyio
from celery.backends.redis import RedisBackend

from flowcore._logging import lazy_logger
from flowcore.backends.base import ActivityOutcome, ActivityTask
from flowcore.celery._protocol import (
    ACTIVITY_TASK,
    SENT_PREFIX,
    TASK_ID_PREFIX,
    activity_message,
    task_id_for,
)
from flowcore.errors import BackendError, FailureInfo, RegistrationError

if TYPE_CHECKING:
    from celery import Celery

__all__ = ["CeleryBackend"]

_READY = frozenset({"SUCCESS", "FAILURE", "REVOKED"})
_BATCH = 500


@dataclass(slots=True)
class _Send:
    task_id: str
    workflow_id: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str | None
    expires: datetime | None = None
    """When the attempt times out: a worker that receives it later discards it unrun."""
    sent: bool = False
    """The dispatcher sent it (or found it sent): the broker holds it, or a worker does."""


@final
class CeleryBackend:
    """Run activity attempts as Celery tasks on any number of workers, on any hosts.

    The app's broker may be anything Celery supports; its result backend must be Redis (the
    backend reads results in bulk and subscribes to their notifications). Workers run
    ``celery -A yourapp worker`` where ``yourapp`` calls :func:`flowcore.celery.register`.

    Args:
        app: The Celery app (JSON serializer).
        queue: Queue for activities that name none (default: the app's default queue).
        sweep_interval: Seconds between two safety sweeps of all pending results.
        max_backoff: Longest wait between two dispatch attempts while the broker is down.
        sent_marker_ttl: Seconds a "sent" marker lives (default: the app's ``result_expires``
            or one day).
    """

    name = "celery"
    """Activities declared with ``@activity(backend="celery")`` run here."""
    remote = True
    """The workers bound how many attempts run at once; the runtime's
    ``max_concurrent_activities`` does not hold back Celery tasks."""

    def __init__(
        self,
        app: Celery,
        *,
        queue: str | None = None,
        sweep_interval: float = 2.0,
        max_backoff: float = 5.0,
        sent_marker_ttl: float | None = None,
    ) -> None:
        self.app = app
        self.queue = queue
        self._sweep_interval = sweep_interval
        self._max_backoff = max_backoff
        expires = app.conf.result_expires
        seconds = expires.total_seconds() if hasattr(expires, "total_seconds") else expires
        self._marker_ttl = int(sent_marker_ttl or seconds or 86_400)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._sends: dict[str, _Send] = {}  # the message of each pending task id
        self._lock = threading.Lock()
        self._outbox: _queue.SimpleQueue[_Send] = _queue.SimpleQueue()
        self._notes: dict[str, str] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._subscribed = False  # the collector's current connection subscribed (its thread)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._log = lazy_logger("flowcore.celery")

    # -- Backend protocol ---------------------------------------------------------------------

    async def open(self) -> None:
        """Check the app's configuration and start the dispatcher and collector threads.

        Raises:
            BackendError: the result backend is not Redis, or the app does not use JSON.
        """
        conf = self.app.conf
        if conf.task_serializer != "json" or conf.result_serializer != "json":
            raise BackendError(
                "CeleryBackend sends and reads JSON only; set task_serializer='json' and "
                "result_serializer='json' on the Celery app"
            )
        if not isinstance(self.app.backend, RedisBackend):
            raise BackendError(
                "CeleryBackend needs a Redis result backend (result_backend='redis://...'); "
                f"the app has {type(self.app.backend).__name__}"
            )
        self._loop = asyncio.get_running_loop()
        self._stop.clear()
        for target, name in (
            (self._dispatch_loop, "dispatcher"),
            (self._collect_loop, "collector"),
        ):
            thread = threading.Thread(target=target, name=f"flowcore-celery-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    async def close(self) -> None:
        """Stop both threads; tasks already sent keep running on the workers."""
        self._stop.set()
        threads, self._threads = self._threads, []
        for thread in threads:
            await anyio.to_thread.run_sync(thread.join, 10.0)

    async def execute(self, task: ActivityTask, *, timeout: float | None) -> ActivityOutcome:
        """Send the attempt (unless already sent or done) and wait for its result."""
        try:
            args, kwargs = activity_message(task)
        except RegistrationError as exc:
            return ActivityOutcome(failure=FailureInfo.from_exception(exc, non_retryable=True))
        loop = asyncio.get_running_loop()
        task_id = task_id_for(task)
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        queue_name = task.activity.queue or self.queue
        expires = None if timeout is None else datetime.now(UTC) + timedelta(seconds=timeout)
        send = _Send(task_id, task.workflow_id, args, kwargs, queue_name, expires)
        with self._lock:
            self._pending[task_id] = future
            self._sends[task_id] = send
        self._outbox.put(send)
        try:
            if timeout is None:
                meta = await future
            else:
                with anyio.move_on_after(timeout) as scope:
                    meta = await future
                if scope.cancelled_caught:
                    error = TimeoutError(
                        f"activity {task.activity.name!r} exceeded its {timeout}s timeout "
                        f"(Celery task {task_id})"
                    )
                    return ActivityOutcome(
                        failure=FailureInfo.from_exception(error), timed_out=True
                    )
        finally:
            with self._lock:
                if self._pending.get(task_id) is future:
                    del self._pending[task_id]
                    self._sends.pop(task_id, None)
        return _outcome(meta, task_id)

    def pending_note(self, workflow_id: str) -> str | None:
        """Why this workflow's activities are not sent yet (the broker is down), if they are not."""
        return self._notes.get(workflow_id)

    # -- loop side -----------------------------------------------------------------------------

    def _resolve(self, task_id: str, meta: dict[str, Any]) -> None:
        with self._lock:
            future = self._pending.get(task_id)
        if future is not None and not future.done():
            future.set_result(meta)

    def _post(self, task_id: str, meta: dict[str, Any]) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
                loop.call_soon_threadsafe(self._resolve, task_id, meta)

    def _is_pending(self, task_id: str) -> bool:
        with self._lock:
            return self._is_waited(task_id)

    def _is_waited(self, task_id: str) -> bool:
        """Whether a caller still waits for ``task_id`` (hold the lock)."""
        future = self._pending.get(task_id)
        return future is not None and not future.done()

    # -- dispatcher thread ---------------------------------------------------------------------

    def _dispatch_loop(self) -> None:
        batch: list[_Send] = []
        delay = 0.0
        while not self._stop.is_set():
            batch = self._fill(batch)
            if not batch:
                continue
            try:
                self._send_batch(batch)
            except Exception as exc:  # noqa: BLE001 - any broker/Redis fault: keep and retry
                delay = min(max(delay * 2, 0.1), self._max_backoff)
                self._broker_down(batch, exc, delay)
                self._stop.wait(delay)
                continue
            if delay:
                self._log.warning("celery broker reachable again; dispatching")
            delay = 0.0
            for item in batch:
                self._notes.pop(item.workflow_id, None)
            batch = []

    def _fill(self, batch: list[_Send]) -> list[_Send]:
        """Top ``batch`` up from the outbox; drop attempts nobody waits for any more."""
        if not batch:
            with contextlib.suppress(_queue.Empty):
                batch.append(self._outbox.get(timeout=0.2))
        while len(batch) < _BATCH:
            try:
                batch.append(self._outbox.get_nowait())
            except _queue.Empty:
                break
        kept = []
        for item in batch:
            if self._is_pending(item.task_id):
                kept.append(item)
            else:  # timed out or cancelled while waiting: forget its note
                self._notes.pop(item.workflow_id, None)
        return kept

    def _broker_down(self, batch: list[_Send], exc: Exception, delay: float) -> None:
        note = (
            f"celery broker or result backend unreachable ({type(exc).__name__}: {exc}); "
            f"{len(batch)} activity task(s) wait, next try in {delay:.1f}s"
        )
        for item in batch:
            self._notes[item.workflow_id] = note
        self._log.warning("celery dispatch failed; retrying", error=str(exc), retry_in=delay)

    def _send_batch(self, batch: list[_Send]) -> None:
        backend = self.app.backend
        client = backend.client
        ids = [item.task_id for item in batch]
        found = client.mget(
            [backend.get_key_for_task(i) for i in ids] + [SENT_PREFIX + i for i in ids]
        )
        to_send: dict[str, _Send] = {}  # one send per task id (a lost task comes back here)
        for item, raw, marker in zip(batch, found[: len(ids)], found[len(ids) :], strict=True):
            meta = _decode(backend, raw)
            if meta is not None:
                self._post(item.task_id, meta)  # computed before a crash: take it
            elif marker is None:
                to_send.setdefault(item.task_id, item)
            else:  # sent before (a crash, a resend) and not finished yet: the collector sees it
                item.sent = True
        if not to_send:
            return
        with self.app.producer_or_acquire() as producer:
            for item in to_send.values():
                self.app.send_task(
                    ACTIVITY_TASK,
                    args=item.args,
                    kwargs=item.kwargs,
                    task_id=item.task_id,
                    queue=item.queue,
                    expires=item.expires,
                    serializer="json",
                    producer=producer,
                    retry=False,
                )
                # Marked right after its send: a crash in between only means this one task
                # may be sent once more after recovery (at least once, same task id).
                client.set(SENT_PREFIX + item.task_id, b"1", ex=self._marker_ttl)
                item.sent = True

    # -- collector thread ----------------------------------------------------------------------

    def _collect_loop(self) -> None:
        delay = 0.0
        while not self._stop.is_set():
            self._subscribed = False
            try:
                self._collect(check_lost=delay > 0)
            except Exception as exc:  # noqa: BLE001 - Redis went away: reconnect with backoff
                # Back off while Redis stays unreachable; a connection that worked (Redis
                # drops a subscriber whose notifications outgrow its pubsub output buffer
                # limit: a large result) is retried at once, not after the last backoff.
                grown = min(max(delay * 2, 0.1), self._max_backoff)
                delay = 0.1 if self._subscribed else grown
                self._log.warning(
                    "celery result collector lost Redis; reconnecting",
                    error=str(exc),
                    retry_in=delay,
                )
                self._stop.wait(delay)
            else:
                delay = 0.0

    def _collect(self, *, check_lost: bool = False) -> None:
        backend = self.app.backend
        client = backend.client
        pattern = _text(backend.get_key_for_task(TASK_ID_PREFIX)) + "*"
        prefix = _text(backend.get_key_for_task(TASK_ID_PREFIX))[: -len(TASK_ID_PREFIX)]
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.psubscribe(pattern)
            self._subscribed = True
            last_sweep = 0.0
            if check_lost:  # reconnected: Redis may have come back without some writes
                self._send_lost(backend, client)
            while not self._stop.is_set():
                if time.monotonic() - last_sweep >= self._sweep_interval:
                    self._sweep(backend, client)
                    last_sweep = time.monotonic()
                ready: list[str] = []
                message = pubsub.get_message(timeout=0.2)
                while message is not None:
                    if message.get("type") == "pmessage":
                        task_id = _text(message["channel"])[len(prefix) :]
                        if self._is_pending(task_id):
                            ready.append(task_id)
                    message = pubsub.get_message(timeout=0)
                if ready:  # read from our database: pub/sub reaches every database's clients
                    self._fetch(backend, client, ready)
        finally:
            with contextlib.suppress(Exception):
                pubsub.close()

    def _send_lost(self, backend: Any, client: Any) -> None:
        """Send again the tasks Redis lost: sent, yet with neither a result nor a "sent" marker.

        The marker is written after its message, so a Redis that came back without the marker
        (killed with ``appendfsync everysec``, a failover to a lagging replica, no
        persistence) lost the message too, and no worker will ever answer it. A worker that
        had already taken it runs it twice at worst (at least once, same task id).
        """
        with self._lock:
            sent = [s for s in self._sends.values() if s.sent and self._is_waited(s.task_id)]
        lost: list[_Send] = []
        for start in range(0, len(sent), _BATCH):
            chunk = sent[start : start + _BATCH]
            ids = [s.task_id for s in chunk]
            found = client.mget(
                [backend.get_key_for_task(i) for i in ids] + [SENT_PREFIX + i for i in ids]
            )
            for item, raw, marker in zip(chunk, found[: len(ids)], found[len(ids) :], strict=True):
                if raw is None and marker is None:
                    lost.append(item)
        for item in lost:
            item.sent = False
            self._outbox.put(item)
        if lost:
            self._log.warning(
                "celery broker lost tasks it had accepted (Redis restarted without them); "
                "sending them again",
                tasks=len(lost),
            )

    def _sweep(self, backend: Any, client: Any) -> None:
        with self._lock:
            ids = [i for i, f in self._pending.items() if not f.done()]
        self._fetch(backend, client, ids)

    def _fetch(self, backend: Any, client: Any, ids: list[str]) -> None:
        """Post the results of ``ids`` stored in this app's result database (``MGET``s).

        A notification's own data is not trusted: Redis delivers ``PUBLISH`` to subscribers
        on every database number, so another runtime's result for the same task id (another
        journal on another database of this server) would arrive here too.
        """
        for start in range(0, len(ids), _BATCH):
            chunk = ids[start : start + _BATCH]
            for task_id, raw in zip(
                chunk, client.mget([backend.get_key_for_task(i) for i in chunk]), strict=True
            ):
                meta = _decode(backend, raw)
                if meta is not None:
                    self._post(task_id, meta)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _decode(backend: Any, raw: bytes | None) -> dict[str, Any] | None:
    """A ready task's meta dict, or None when there is none yet (or it is not final)."""
    if raw is None:
        return None
    meta = backend.decode(raw)
    if not isinstance(meta, dict) or meta.get("status") not in _READY:
        return None
    return meta


def _outcome(meta: dict[str, Any], task_id: str) -> ActivityOutcome:
    status, result = meta.get("status"), meta.get("result")
    if status == "SUCCESS" and isinstance(result, dict):
        if "failure" in result:
            return ActivityOutcome(failure=FailureInfo.from_json(result["failure"]))
        if "result" in result:
            return ActivityOutcome(result=result["result"])
    if status == "FAILURE" and isinstance(result, dict):
        exc_type = str(result.get("exc_type", "Exception"))
        module = result.get("exc_module") or "builtins"
        failure = FailureInfo(
            type_name=f"{module}.{exc_type}",
            message=f"{result.get('exc_message')} (Celery task {task_id})",
            traceback=str(meta.get("traceback") or ""),
        )
        return ActivityOutcome(failure=failure)
    if status == "REVOKED":
        error = BackendError(
            f"Celery task {task_id} was revoked, or expired (its attempt had timed out) "
            "before a worker started it"
        )
        return ActivityOutcome(failure=FailureInfo.from_exception(error))
    error = BackendError(
        f"Celery task {task_id} ended {status} with an unexpected result {result!r}; is the "
        "worker's app set up with flowcore.celery.register(app)?"
    )
    return ActivityOutcome(failure=FailureInfo.from_exception(error))
