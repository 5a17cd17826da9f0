"""The inbox: steering requests that other processes (the CLI) leave in a journal for its owner.

A request is a row of the ``inbox`` table (schema version 3): a ``kind`` from :data:`KINDS`, the
target ``workflow_id`` and JSON ``data``. :func:`post` validates a request against what the file
holds and inserts it with its own short-lived connection (``synchronous=FULL``), in one
transaction: when it returns, the request is durable whether or not a runtime owns the file.

The owning runtime's :class:`InboxWatcher` applies pending requests when the runtime opens, then
whenever the file changes: it polls ``PRAGMA data_version`` on a dedicated connection (a counter
read, no table access) every :data:`POLL_INTERVAL` seconds and reads the table only when another
connection committed. Requests are applied in id order through the runtime's own machinery, and
the append that carries one out deletes its row in the same transaction (``Append.consumed``), so
each takes effect exactly once, across crashes. A request that cannot take effect (an unknown
workflow, a finished or unknown instance, a duplicate id) is logged and deleted.
"""

# ruff: noqa: SLF001 - the inbox is the runtime's own machinery: it calls the Core internals
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, final

from flowcore._core import check_id
from flowcore.engine import events as ev
from flowcore.errors import (
    FlowcoreError,
    JournalError,
    PayloadError,
    RegistrationError,
    WorkflowAlreadyExistsError,
    WorkflowFinishedError,
    WorkflowNotFoundError,
)
from flowcore.journal import _aio, schema

if TYPE_CHECKING:
    import aiosqlite

    from flowcore._core import Core

__all__ = [
    "KINDS",
    "POLL_INTERVAL",
    "InboxWatcher",
    "Request",
    "apply",
    "pending",
    "post",
    "schema_version",
]

KINDS: Final = ("start", "event", "cancel", "terminate", "suspend", "resume")
"""What a request asks for."""
POLL_INTERVAL: Final = 0.075
"""Seconds between two ``PRAGMA data_version`` reads of the watcher."""

_BUSY_TIMEOUT_MS: Final = 5_000
_INSERT: Final = "INSERT INTO inbox (workflow_id, kind, data, at) VALUES (?, ?, ?, ?)"
_SELECT: Final = "SELECT id, workflow_id, kind, data, at FROM inbox"
_PENDING: Final = _SELECT + " WHERE id > ? ORDER BY id"
_UNSEEN: Final = "SELECT 1 FROM inbox WHERE id > ? LIMIT 1"
_FOR_ID: Final = _SELECT + " WHERE workflow_id = ? ORDER BY id"
_STARTS: Final = _SELECT + " WHERE kind = 'start' ORDER BY id"
_DELETE: Final = "DELETE FROM inbox WHERE id = ?"
_STATUS: Final = "SELECT status FROM workflows WHERE id = ?"
_PENDING_START: Final = "SELECT 1 FROM inbox WHERE kind = 'start' AND workflow_id = ?"
_FINISHED: Final = frozenset({"completed", "failed", "canceled", "terminated"})
_ACTIONS: Final = {
    "event": "send an event to",
    "cancel": "cancel",
    "terminate": "terminate",
    "suspend": "suspend",
    "resume": "resume",
}
_DEFINITIVE = (
    RegistrationError,
    WorkflowNotFoundError,
    WorkflowFinishedError,
    WorkflowAlreadyExistsError,
    PayloadError,
    ValueError,
    TypeError,
    KeyError,
)
"""Failures a request can never recover from: it is deleted (other errors leave it queued)."""


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """One inbox row."""

    id: int
    """Its position: requests apply in id order."""
    workflow_id: str
    """The instance it targets (for ``start``, the id to give the new instance)."""
    kind: str
    """One of :data:`KINDS`."""
    data: dict[str, Any]
    """``start``: name, version, input; ``event``: name, payload; cancel/terminate: reason."""
    at: float
    """When it was posted (epoch seconds)."""


# -- the posting side (any process) -----------------------------------------------------------


def schema_version(path: str) -> int | None:
    """The schema version of the flowcore journal at ``path``; None if there is no file.

    Raises:
        JournalCorruptError: the file is not a flowcore journal.
        JournalError: it cannot be read.
    """
    if not os.path.exists(path):  # noqa: PTH110 - path is a plain str here
        return None
    schema.precheck(path)  # refuses a foreign file from its header bytes, touching nothing
    try:
        conn = _read_only(path)
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        msg = f"cannot read journal {path!r}: {exc}"
        raise JournalError(msg) from exc
    return int(version)


def pending(path: str, workflow_id: str) -> list[Request]:
    """The requests for ``workflow_id`` that no runtime has applied yet, oldest first.

    Raises:
        JournalError: the file cannot be read.
    """
    return _read_requests(path, _FOR_ID, (workflow_id,))


def pending_starts(path: str) -> list[Request]:
    """The start requests no runtime has applied yet, oldest first (``list`` mentions them).

    Raises:
        JournalError: the file cannot be read.
    """
    return _read_requests(path, _STARTS, ())


def _read_requests(path: str, sql: str, params: tuple[str, ...]) -> list[Request]:
    try:
        conn = _read_only(path)
        try:
            rows = conn.execute(sql, params).fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        msg = f"cannot read the inbox of journal {path!r}: {exc}"
        raise JournalError(msg) from exc
    return [
        Request(id=rid, workflow_id=wid, kind=kind, data=json.loads(data), at=at)
        for rid, wid, kind, data, at in rows
    ]


def post(path: str, kind: str, workflow_id: str, data: dict[str, Any]) -> int:
    """Validate a request and queue it durably; return its id.

    Args:
        path: The journal file (it must exist, at this code's schema version).
        kind: One of :data:`KINDS`.
        workflow_id: The target instance (for ``start``, the new instance's id).
        data: The request's JSON-compatible arguments.

    Raises:
        WorkflowAlreadyExistsError: ``start`` of an id that exists or is already requested.
        WorkflowNotFoundError: no instance (and no pending start) has this id.
        WorkflowFinishedError: the instance already ended.
        JournalError: the file cannot be written.
    """
    if kind not in KINDS:
        msg = f"unknown inbox request kind {kind!r}"
        raise ValueError(msg)
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)  # ASCII: always storable
    try:
        conn = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    except sqlite3.Error as exc:
        msg = f"cannot open journal {path!r}: {exc}"
        raise JournalError(msg) from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS:d}")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("BEGIN IMMEDIATE")
        _validate(conn, kind, workflow_id)
        rowid = conn.execute(_INSERT, (workflow_id, kind, text, time.time())).lastrowid
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        msg = f"cannot queue the request in journal {path!r}: {exc}"
        raise JournalError(msg) from exc
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()
    assert rowid is not None  # noqa: S101 - an INSERT always sets it
    return rowid


def _validate(conn: sqlite3.Connection, kind: str, workflow_id: str) -> None:
    row = conn.execute(_STATUS, (workflow_id,)).fetchone()
    requested = conn.execute(_PENDING_START, (workflow_id,)).fetchone() is not None
    if kind == "start":
        if row is not None:
            raise WorkflowAlreadyExistsError(workflow_id, status=row[0])
        if requested:
            raise WorkflowAlreadyExistsError(workflow_id, status="start requested")
        return
    if row is None and not requested:
        raise WorkflowNotFoundError(workflow_id)
    if row is not None and row[0] in _FINISHED:
        raise WorkflowFinishedError(workflow_id, status=row[0], action=_ACTIONS[kind])


# -- the owning side (the runtime) -----------------------------------------------------------


@final
class InboxWatcher:
    """Applies a journal's inbox requests through its owning runtime; see the module docstring.

    Args:
        core: The runtime that owns the journal.
        path: The journal file.
        interval: Seconds between two checks of ``PRAGMA data_version``.
    """

    def __init__(self, core: Core, path: str, interval: float = POLL_INTERVAL) -> None:
        self._core = core
        self._path = path
        self._interval = interval
        self._conn: aiosqlite.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._seen = 0
        """Highest request id applied or discarded by this watcher."""
        self._version: object = None
        self._draining = asyncio.Lock()
        """One drain at a time: the watch loop's and :meth:`catch_up`'s."""
        self._peek: sqlite3.Connection | None = None
        """A read-only connection for :meth:`has_unseen`, a quick check on the loop's thread."""

    async def open(self) -> None:
        """Connect, apply every pending request, then start watching for new ones."""
        conn = await _aio.connect(self._path, isolation_level=None)
        self._conn = conn
        await conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS:d}")
        self._version = await schema.scalar(conn, "PRAGMA data_version")
        self._peek = _read_only(self._path)
        await self.catch_up()
        self._task = asyncio.create_task(self._watch(), name=f"flowcore inbox {self._path}")

    def has_unseen(self) -> bool:
        """Whether a request this watcher has not applied yet is queued (a quick read).

        The runtime asks before it fires timers, so that a request queued before a timer's
        deadline but not yet seen (the watch loop looks every :data:`POLL_INTERVAL`) is
        applied first.
        """
        peek = self._peek
        if peek is None:
            return False
        try:
            return peek.execute(_UNSEEN, (self._seen,)).fetchone() is not None
        except sqlite3.Error:
            return False  # the watch loop will find it (or report what is wrong)

    async def catch_up(self) -> None:
        """Apply every request queued so far (waits for a drain in progress first)."""
        async with self._draining:
            await self._drain()

    async def close(self) -> None:
        """Stop watching (a request being applied is left to its commit, or to the next owner)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error, ValueError):
                await conn.close()
        peek, self._peek = self._peek, None
        if peek is not None:
            peek.close()

    async def _watch(self) -> None:
        conn = self._conn
        assert conn is not None  # noqa: S101 - open() set it
        while True:
            await asyncio.sleep(self._interval)
            try:
                version = await schema.scalar(conn, "PRAGMA data_version")
                if version != self._version:
                    self._version = version
                    await self.catch_up()
            except Exception:  # noqa: BLE001 - log it: a dead watcher must not go unnoticed
                self._core._log.exception("inbox watcher stopped")
                return

    async def _drain(self) -> None:
        conn = self._conn
        assert conn is not None  # noqa: S101 - open() set it
        rows = list(await conn.execute_fetchall(_PENDING, (self._seen,)))
        for rid, workflow_id, kind, data, at in rows:
            try:
                request = Request(
                    id=rid, workflow_id=workflow_id, kind=kind, data=json.loads(data), at=at
                )
            except ValueError as exc:
                await self._discard(rid, kind, workflow_id, exc)
                continue
            if not await self._apply(request):
                return  # the runtime cannot take work now: leave it for later
            self._seen = rid

    async def _apply(self, request: Request) -> bool:
        """Carry one request out; False when it must stay queued (the runtime is stopping)."""
        log = self._core._log
        try:
            await apply(self._core, request)  # due timers fire first: Core._fire_overdue
        except _DEFINITIVE as exc:
            await self._discard(request.id, request.kind, request.workflow_id, exc)
            return True
        except FlowcoreError as exc:
            log.warning("inbox request deferred", request=request.id, error=str(exc))
            return False
        log.info(
            "inbox request applied",
            request=request.id,
            kind=request.kind,
            workflow_id=request.workflow_id,
        )
        return True

    async def _discard(self, rid: int, kind: str, workflow_id: str, exc: Exception) -> None:
        self._core._log.warning(
            "inbox request failed; discarded",
            request=rid,
            kind=kind,
            workflow_id=workflow_id,
            error=str(exc),
        )
        conn = self._conn
        assert conn is not None  # noqa: S101 - open() set it
        await conn.execute(_DELETE, (rid,))
        self._seen = rid


def _read_only(path: str) -> sqlite3.Connection:
    """A read-only connection to the journal (a local file: opening it does not wait)."""
    uri = f"file:{os.path.abspath(path)}?mode=ro"  # noqa: PTH100
    return sqlite3.connect(uri, uri=True, timeout=_BUSY_TIMEOUT_MS / 1000)


async def apply(core: Core, request: Request) -> None:
    """Carry out one request through the runtime; its row goes with the effect's commit.

    Raises:
        FlowcoreError: the request cannot take effect (see the runtime's public methods).
        ValueError: the request is malformed.
    """
    core._check_open()
    data, wid, consumed = request.data, check_id(request.workflow_id), (request.id,)
    match request.kind:
        case "start":
            defn = core._resolve(data["name"], data.get("version"))
            await core._start(defn, data.get("input"), wid, if_exists="error", consumed=consumed)
        case "event":
            await core._request(
                wid, _ACTIONS["event"], ev.EventReceived, consumed=consumed, until=request.at,
                name=data["name"], payload=data.get("payload"),
            )  # fmt: skip
        case "cancel":
            await core._request(
                wid, "cancel", ev.CancelRequested, consumed=consumed, until=request.at,
                reason=_reason(data),
            )  # fmt: skip
        case "suspend":
            await core._request(
                wid, "suspend", ev.WorkflowSuspended, consumed=consumed, until=request.at
            )
        case "resume":
            await core._request(
                wid, "resume", ev.WorkflowResumed, consumed=consumed, until=request.at
            )
        case "terminate":
            await core._terminate_request(wid, _reason(data), consumed)
        case _:
            msg = f"unknown inbox request kind {request.kind!r}"
            raise ValueError(msg)


def _reason(data: dict[str, Any]) -> str | None:
    """A cancel or terminate request's reason: text or none.

    Raises:
        ValueError: it is something else.
    """
    reason = data.get("reason")
    if reason is not None and not isinstance(reason, str):
        msg = f"a reason must be text, not {type(reason).__name__}"
        raise ValueError(msg)
    return reason
