"""CeleryStarter: start workflows from the Celery side with ``send_task("flowcore.start", ...)``.

A runtime consumes the ``flowcore.start`` queue itself, in one thread, with kombu's consumer.
A message is acknowledged only after ``runtime.start()`` committed the workflow (or found it
already started with that id): a crash before that leaves it on the broker for redelivery,
and a redelivered or repeated message starts nothing new. When the runtime cannot take work
at all (it is closing or closed, or its journal failed and it stopped accepting work), the
message goes back to the queue and the starter stops consuming, with one error logged: a
later runtime starts it. Retrying here could only requeue the same message in a tight loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from typing import TYPE_CHECKING, Any, final

import anyio
from kombu.messaging import Consumer
from kombu.transport.redis import Channel as RedisChannel

from flowcore._logging import lazy_logger
from flowcore.celery._protocol import START_QUEUE, START_TASKS
from flowcore.errors import FlowcoreError, PayloadError, RegistrationError

if TYPE_CHECKING:
    from types import TracebackType

    from celery import Celery

    from flowcore.runtime import Runtime

__all__ = ["CeleryStarter"]


class _BadRequestError(Exception):
    """A start message that can never succeed: it is acknowledged and dropped."""


@final
class CeleryStarter:
    """Start workflows on ``runtime`` for ``flowcore.start`` Celery messages.

    Any Celery client can then start one::

        celery_app.send_task("flowcore.start", args=["place_order", '{"id": 42}'],
                             kwargs={"id": "order-42"})

    ``args`` are the workflow name and its payload as JSON text (or a JSON value);
    ``kwargs["id"]`` is the instance id (default: the Celery task id). Sending the same id
    twice starts one workflow. Unknown workflow names and bad payloads are logged and dropped.
    pyorchestration's ``send_task("orchestration.tasks.orchestrate", args=[name,
    json_payload])`` is accepted too (each message a new run, keyed by its Celery task id): it
    starts the :mod:`flowcore.steps` orchestration of that name.
    Use it as an async context manager inside ``async with Runtime(...)``. If the runtime
    stops taking work (closed, or a journal failure), the starter stops consuming and leaves
    the requests queued for the next runtime; :attr:`consuming` turns false.

    Args:
        app: The Celery app whose broker carries the requests.
        runtime: An open runtime that serves the workflows.
        queue: The queue to consume (``flowcore.start``; workers forward stray requests there).
    """

    def __init__(self, app: Celery, runtime: Runtime, *, queue: str = START_QUEUE) -> None:
        self.app = app
        self.runtime = runtime
        self.queue = queue
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._connected = False  # the consumer thread's current connection worked
        self._loop: asyncio.AbstractEventLoop | None = None
        self._log = lazy_logger("flowcore.celery")

    async def open(self) -> None:
        """Start consuming in a background thread."""
        self._loop = asyncio.get_running_loop()
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._consume_loop, name="flowcore-celery-starter", daemon=True
        )
        self._thread.start()

    @property
    def consuming(self) -> bool:
        """Whether it takes requests.

        False before :meth:`open`, after :meth:`close`, and once the runtime could not take
        work (see the class docstring).
        """
        thread = self._thread
        return thread is not None and thread.is_alive() and not self._stop.is_set()

    async def close(self) -> None:
        """Stop consuming; unacknowledged requests go back to the broker."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            await anyio.to_thread.run_sync(thread.join, 10.0)

    async def __aenter__(self) -> CeleryStarter:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- consumer thread -----------------------------------------------------------------------

    def _consume_loop(self) -> None:
        delay = 0.0
        while not self._stop.is_set():
            self._connected = False
            try:
                self._consume()
            except Exception as exc:  # noqa: BLE001 - broker went away: reconnect with backoff
                # Back off while the broker stays down; a connection that worked is retried
                # at once, not after the longest backoff an earlier outage reached.
                grown = min(max(delay * 2, 0.1), 5.0)
                delay = 0.1 if self._connected else grown
                self._log.warning(
                    "flowcore.start consumer lost the broker; reconnecting",
                    error=str(exc),
                    retry_in=delay,
                )
                self._stop.wait(delay)
            else:
                delay = 0.0

    def _consume(self) -> None:
        queue = self.app.amqp.queues[self.queue]
        with self.app.connection_for_read() as conn:
            # One try: kombu's own connection retries (seconds, blind to close()) would hold
            # a runtime that stops while the broker is down; the loop above backs off instead.
            conn.ensure_connection(max_retries=0)
            with Consumer(
                conn, queues=[queue], callbacks=[self._on_message], accept=["json"],
                prefetch_count=64, on_decode_error=self._on_undecodable,
            ):  # fmt: skip
                self._connected = True
                self._consume_from(conn)

    def _consume_from(self, conn: Any) -> None:
        """Requeue what a dead runtime held, then take requests until stopped."""
        self._restore_unacked(conn)
        while not self._stop.is_set():
            with contextlib.suppress(socket.timeout, TimeoutError):
                conn.drain_events(timeout=0.5)

    def _restore_unacked(self, conn: Any) -> None:
        """Requeue start requests a consumer that died (this runtime, SIGKILLed) left unacked.

        The Redis transport would hand them back only after its ``visibility_timeout`` (an
        hour by default). Only runtimes consume the start queue and a start is idempotent by
        id, so requeueing them at once is safe.
        """
        channel = conn.default_channel
        if not isinstance(channel, RedisChannel):
            return
        with channel.conn_or_acquire() as client:
            entries = client.hgetall(channel.unacked_key)
        for tag, raw in entries.items():
            try:
                _payload, _exchange, routing_key = json.loads(raw)
            except (ValueError, TypeError):
                continue
            if routing_key == self.queue:
                channel.qos.restore_by_tag(tag)
                self._log.info("requeued an unacknowledged flowcore.start request")

    def _on_undecodable(self, message: Any, exc: Exception) -> None:
        """Not JSON (a pickle, say): it can never start anything, so drop it."""
        self._log.warning("dropped a flowcore.start request", reason=f"cannot decode: {exc}")
        message.ack()

    def _on_message(self, body: Any, message: Any) -> None:
        if self._stop.is_set():  # stopping: leave it to the next consumer
            message.requeue()
            return
        try:
            name, payload, wid = _parse(body, message.headers or {})
        except Exception as exc:  # noqa: BLE001 - a malformed message fails again if requeued
            self._log.warning("dropped a flowcore.start request", reason=str(exc))
            message.ack()
            return
        loop = self._loop
        assert loop is not None  # noqa: S101 - open() set it before starting this thread
        start = self._start(name, payload, wid)
        try:
            started = asyncio.run_coroutine_threadsafe(start, loop)
        except RuntimeError as exc:  # the loop is closed: the runtime's program has ended
            start.close()
            self._halt(message, FlowcoreError(f"the runtime's event loop is gone ({exc})"))
            return
        try:
            started.result()
        except (RegistrationError, PayloadError, ValueError, _BadRequestError) as exc:
            self._log.warning(
                "dropped a flowcore.start request", workflow=name, workflow_id=wid, reason=str(exc)
            )
        except FlowcoreError as exc:  # runtime closing or journal failure: leave it queued
            self._halt(message, exc)
            return
        except Exception as exc:  # noqa: BLE001 - it fails again on redelivery: never requeue
            self._log.warning(
                "dropped a flowcore.start request",
                workflow=name,
                workflow_id=wid,
                reason=f"{type(exc).__name__}: {exc}",
            )
        else:
            self._log.info("flowcore.start request applied", workflow=name, workflow_id=wid)
        message.ack()

    def _halt(self, message: Any, exc: FlowcoreError) -> None:
        """The runtime cannot take work: requeue ``message`` and stop consuming.

        Only a new runtime can take it (a closed or failed runtime never takes work again), so
        retrying here would requeue the same message in a tight loop.
        """
        message.requeue()
        self._stop.set()
        self._log.error(
            "stopped consuming flowcore.start: the runtime cannot start workflows; requests stay "
            "queued for the next runtime",
            error=str(exc),
        )

    async def _start(self, name: str, payload: Any, wid: str) -> None:
        handle = await self.runtime.start(name, payload, id=wid, if_exists="return")
        existing = (await handle.status()).name
        if existing != name:  # the id was taken: nothing of ``name`` started
            msg = f"id {wid!r} is already a {existing!r} workflow; nothing started"
            raise _BadRequestError(msg)


def _parse(body: Any, headers: dict[str, Any]) -> tuple[str, Any, str]:
    """``(workflow name, payload, id)`` of a Celery message (protocol 2, or 1's dict body)."""
    if isinstance(body, dict):  # protocol 1
        task, task_id = body.get("task"), body.get("id")
        args, kwargs = body.get("args") or [], body.get("kwargs") or {}
    elif isinstance(body, list | tuple) and len(body) >= 2:  # noqa: PLR2004 - [args, kwargs, embed]
        task, task_id = headers.get("task"), headers.get("id")
        args, kwargs = body[0] or [], body[1] or {}
    else:
        raise _BadRequestError(f"not a Celery task message: {body!r:.200}")
    if task not in START_TASKS:
        raise _BadRequestError(f"task {task!r} is not one of {START_TASKS!r}")
    if not args or not isinstance(args[0], str) or len(args) > 2:  # noqa: PLR2004
        raise _BadRequestError(f"args must be [workflow name, json payload], not {args!r:.200}")
    payload = args[1] if len(args) > 1 else None
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except (ValueError, RecursionError) as exc:
            raise _BadRequestError(f"payload is not JSON text: {exc}") from None
    wid = kwargs.get("id") or task_id
    if not isinstance(wid, str) or not wid:
        raise _BadRequestError(f"kwargs['id'] must be a non-empty string, not {wid!r}")
    return args[0], payload, wid
