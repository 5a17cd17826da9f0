"""SqliteJournal: the embedded journal, one SQLite file in WAL mode with one writer task.

Ownership: a runtime owns the file through an exclusive ``flock`` on the sidecar ``<path>.lock``
(the kernel drops it when the process dies, so a SIGKILL never leaves a stale lock) and records
itself in the ``owner`` row, which only serves error messages. Read-only journals take no lock.

Writes: :meth:`SqliteJournal.submit` queues an op and returns a future. One writer task takes
everything queued, checks it against the batch rules of :mod:`flowcore.journal._batch` and writes
it in one ``BEGIN IMMEDIATE`` transaction with a few ``executemany`` statements whatever its size
(the events of reset workflows are deleted before the batch's events are inserted, 50 rows per
statement; the status rows take one or two statements per shape, also 50 rows per statement, see
:mod:`flowcore.journal._rows`; the inbox requests the batch carries out are deleted with it and
the outbox records it carries are inserted), then resolves every future of the batch (group
commit). A failed commit fails its whole batch and leaves the journal failed: nothing of that
batch was acknowledged, and the runtime must restart to recover.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import os
import signal
import socket
import sqlite3
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, Self, TypeVar, cast, final

from flowcore._status import WorkflowState
from flowcore.engine.events import decode_event
from flowcore.errors import (
    InvalidArgumentError,
    JournalCorruptError,
    JournalError,
    JournalLockedError,
    PayloadError,
)
from flowcore.journal import _aio, schema
from flowcore.journal._batch import (
    BatchPlan,
    EventRow,
    Known,
    Queued,
    check_list_args,
    encode_append,
    is_finished,
    plan_batch,
    to_status,
)
from flowcore.journal._rows import (
    ROWS_PER_STATEMENT,
    Statement,
    Written,
    per_statement,
    row_writes,
)
from flowcore.journal.base import OutboxEntry, StatusRow

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Sequence
    from types import TracebackType

    import aiosqlite

    from flowcore._status import WorkflowStatus
    from flowcore.engine.events import Event
    from flowcore.journal.base import Append, Durability

__all__ = ["MAX_BATCH", "SqliteJournal"]

MAX_BATCH: Final = 5_000
"""Ops one transaction takes at most, but for those of the last op's workflow queued right
after it (see ``SqliteJournal._take``); the rest wait for the next one."""

_BUSY_TIMEOUT_MS: Final = 5_000
_SYNCHRONOUS: Final = {"full": "FULL", "normal": "NORMAL"}
_INSERT_EVENTS: Final = (
    "INSERT OR FAIL INTO events (workflow_id, seq, kind, data, at) VALUES (?, ?, ?, ?, ?)"
)
"""Event rows: :data:`~flowcore.journal._rows.ROWS_PER_STATEMENT` per statement.

An executemany of a multi-row INSERT writes a big batch's events. One row per statement costs
SQLite a statement reset and the sqlite3 module a GIL release per row: about 15,500
instructions per event row against 12,600 in statements of 50 (callgrind, CPython 3.11, SQLite
3.40; 200 rows save no more). The rows that do not fill one (at most 49) are written one per
statement.

A plain (``OR ABORT``) statement that writes several rows inside a transaction opens a
statement journal, so that a failing row can undo the rows the statement wrote before it:
every page the statement touches is first copied there, which made W1's event inserts cost
a third more thread CPU than ``OR FAIL`` (39 ms against 25 ms per run). ``OR FAIL`` keeps those
rows instead; the writer rolls the whole transaction back on any error anyway, so a failed
batch still leaves nothing behind (tests/journal/test_event_inserts.py pins it)."""
_INSERT_EVENTS_MANY: Final = _INSERT_EVENTS + ", (?, ?, ?, ?, ?)" * (ROWS_PER_STATEMENT - 1)
_DELETE_EVENTS: Final = "DELETE FROM events WHERE workflow_id = ?"
_DELETE_REQUESTS: Final = "DELETE FROM inbox WHERE id = ?"
_INSERT_OUTBOX: Final = "INSERT INTO outbox (channel, key, workflow_id, body) VALUES (?, ?, ?, ?)"
_OUTBOX: Final = (
    "SELECT id, channel, key, workflow_id, body FROM outbox WHERE channel = ? ORDER BY id LIMIT ?"
)
_ACK_OUTBOX: Final = "DELETE FROM outbox WHERE id IN (SELECT value FROM json_each(?))"
_KNOWN: Final = """
    SELECT w.id, w.status,
           COALESCE((SELECT MAX(e.seq) FROM events e WHERE e.workflow_id = w.id), 0)
    FROM json_each(?) j JOIN workflows w ON w.id = j.value"""
"""The stored state of the ids of a JSON list without repeats. A join, not ``IN (SELECT ...)``,
which first copies the list into a temporary index: 0.74 against 1.56 ms for 2,000 new ids."""
_HISTORY: Final = "SELECT kind, data, at FROM events WHERE workflow_id = ? ORDER BY seq"
_SELECT_ROWS: Final = """
    SELECT id, name, version, status, input, output, error, current_activity,
           created_at, updated_at, parent_id, custom_status
    FROM workflows"""
_STATUS: Final = _SELECT_ROWS + " WHERE id = ?"
_HISTORIES: Final = (
    "SELECT workflow_id, kind, data, at FROM events WHERE workflow_id IN ({marks})"
    " ORDER BY workflow_id, seq"
)
_MANY: Final = 500
"""Ids per ``read_many`` query (under SQLite's oldest limit of 999 bound parameters)."""
_UNFINISHED: Final = (
    "SELECT id FROM workflows WHERE status IN ("  # noqa: S608 - constant names
    + ", ".join(f"'{s.value}'" for s in WorkflowState if not s.is_finished)
    + ") ORDER BY created_at, id"
)
"""Unfinished instances through the status index: a journal of finished ones is not read."""
_LIST_ORDER: Final = " ORDER BY created_at DESC, id DESC LIMIT ?"
_LIST: Final = {
    (False, False): _SELECT_ROWS + _LIST_ORDER,
    (True, False): _SELECT_ROWS + " WHERE name = ?" + _LIST_ORDER,
    (False, True): _SELECT_ROWS + " WHERE status = ?" + _LIST_ORDER,
    (True, True): _SELECT_ROWS + " WHERE name = ? AND status = ?" + _LIST_ORDER,
}
"""``list()`` statements by (filter on name, filter on status); values are always bound."""
_OWNER: Final = "SELECT pid, host, started_at FROM owner WHERE id = 1"

_ROW_FIELDS: Final = (
    "id", "name", "version", "status", "input", "output", "error", "current_activity",
    "created_at", "updated_at", "parent_id", "custom_status",
)  # fmt: skip

_A = TypeVar("_A")
_R = TypeVar("_R")
_State = Literal["new", "open", "closing", "closed"]


@final
class SqliteJournal:
    """The journal in one SQLite file: WAL, group commit, one owner at a time.

    Args:
        path: The database file; created (with its schema) if missing or empty.
        durability: ``"full"`` fsyncs every commit; ``"normal"`` survives process crashes only.
        readonly: Inspect without owning: no lock, no writer; works beside a running owner.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: Durability = "full",
        readonly: bool = False,
    ) -> None:
        if durability not in _SYNCHRONOUS:
            msg = f"durability must be 'full' or 'normal', got {durability!r}"
            raise ValueError(msg)
        self._path = os.fspath(path)
        if self._path in ("", ":memory:"):  # SQLite: a private database gone with the process
            msg = (
                f"{self._path!r} is not a journal file: a journal must outlive the process. "
                "Pass a file path (created if missing), or journal=InMemoryJournal() "
                "(flowcore.testing) for tests"
            )
            raise InvalidArgumentError(msg)
        self._wal_path = self._path + "-wal"
        self._ro_uri = Path(self._path).absolute().as_uri() + "?mode=ro"
        self._durability: Durability = durability
        self._readonly = readonly
        self._lock = _FileLock(self._path + ".lock")
        self._state: _State = "new"
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._acker: aiosqlite.Connection | None = None
        """Deletes delivered outbox records (opened on first use; see :meth:`ack_outbox`)."""
        self._queue: builtins.list[Queued] = []
        """Ops submitted and not yet taken by the writer, in submission order."""
        self._stopping = False
        """close() asked the writer to stop once the queue is empty."""
        self._wakeup: asyncio.Future[None] | None = None
        """What the writer awaits while the queue is empty (set by the next submit or close)."""
        self._known: dict[str, Known] = {}
        """Committed status and last position of the unfinished workflows this writer wrote
        (see :func:`_write_batch`); only the writer's thread touches it while open."""
        self._written: dict[str, Written] = {}
        """What the rows of the same workflows hold as this writer last wrote them (see
        :mod:`._rows`)."""
        self._task: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self._token = ""
        self._commits = 0
        self._commit_seconds = 0.0
        """How long the last commit took: the longest a growing batch waits (see _gather)."""
        self._crash_after = 0
        self._identity: tuple[int, int] | None = None
        """(device, inode) of the file when it was opened: a commit checks it is still there."""
        self._wal_identity: tuple[int, int] | None = None
        """The same for its ``-wal`` file, which holds the commits not yet checkpointed."""

    @property
    def path(self) -> str:
        """The database file."""
        return self._path

    @property
    def durability(self) -> Durability:
        """The durability mode commits use."""
        return self._durability

    @property
    def readonly(self) -> bool:
        """True for an inspection-only journal."""
        return self._readonly

    @property
    def commits(self) -> int:
        """How many batches (transactions) the writer has committed since ``open()``."""
        return self._commits

    def __repr__(self) -> str:
        mode = "readonly" if self._readonly else f"durability={self._durability!r}"
        return f"SqliteJournal({self._path!r}, {mode})"

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- opening --------------------------------------------------------------------------------

    async def open(self) -> None:
        """Open (creating if needed), check the schema and take ownership.

        Raises:
            JournalLockedError: another runtime owns it.
            JournalCorruptError: it is not a flowcore journal; it is left untouched.
            SchemaVersionError: a newer flowcore wrote it.
            JournalError: it cannot be opened (read-only and missing, unreadable, ...).
        """
        if self._state not in ("new", "closed"):
            msg = f"journal {self._path!r} is already open"
            raise JournalError(msg)
        try:
            if self._readonly:
                await self._open_readonly()
            else:
                await self._open_owner()
        except sqlite3.Error as exc:  # a full disk, an unwritable directory, an I/O error
            await self._release()
            msg = (
                f"journal {self._path!r} cannot be opened: {exc}; check that the disk has space "
                "and that the file and its directory are writable"
            )
            raise JournalError(msg) from exc
        except BaseException:
            await self._release()
            raise
        self._failure, self._commits, self._state = None, 0, "open"
        self._known.clear()  # the file may have changed while it was closed
        self._written.clear()
        self._crash_after = _crash_after_commit()  # test hook, see _crash_after_commit
        if not self._readonly:
            self._queue, self._stopping, self._wakeup = [], False, None
            name = f"flowcore journal writer {self._path}"
            self._task = asyncio.create_task(self._run(), name=name)

    async def _open_owner(self) -> None:
        schema.precheck(self._path)
        if not self._lock.acquire():
            raise JournalLockedError(self._path, await self._describe_owner())
        self._writer = writer = await self._connect(readonly=False)
        version = await schema.check(writer, self._path)
        if version < schema.SCHEMA_VERSION:
            await schema.migrate(writer, version)
        await schema.ensure_indexes(writer)
        mode = await schema.scalar(writer, "PRAGMA journal_mode = WAL")
        if str(mode).lower() != "wal":
            msg = f"journal {self._path!r} cannot use WAL mode (got {mode!r}); use a local disk"
            raise JournalError(msg)
        await writer.execute(f"PRAGMA synchronous = {_SYNCHRONOUS[self._durability]}")
        self._token = uuid.uuid4().hex
        await writer.execute(
            "INSERT OR REPLACE INTO owner (id, pid, host, started_at, token) "
            "VALUES (1, ?, ?, ?, ?)",
            (os.getpid(), socket.gethostname(), time.time(), self._token),
        )
        self._reader = await self._connect(readonly=False)
        await self._reader.execute("PRAGMA query_only = ON")
        self._identity = _identity(self._path)
        self._wal_identity = _identity(self._wal_path)  # the owner row above created it

    async def _open_readonly(self) -> None:
        if schema.precheck(self._path) is None:
            msg = f"no flowcore journal at {self._path!r} to open read-only"
            raise JournalError(msg)
        self._reader = reader = await self._connect(readonly=True)
        version = await schema.check(reader, self._path)
        if version == 0:
            msg = f"no flowcore journal at {self._path!r} (an empty database) to open read-only"
            raise JournalError(msg)
        if version < schema.READABLE_FROM:
            msg = (
                f"journal {self._path!r} has schema version {version}, older than this flowcore's "
                f"{schema.SCHEMA_VERSION}; open it read-write once to migrate it"
            )
            raise JournalError(msg)

    async def _connect(self, *, readonly: bool) -> aiosqlite.Connection:
        if readonly:
            conn = await _aio.connect(self._ro_uri, uri=True, isolation_level=None)
        else:
            conn = await _aio.connect(self._path, isolation_level=None)
        try:
            await conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS:d}")
            await conn.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _describe_owner(self) -> str:
        try:
            conn = await self._connect(readonly=True)
            try:
                rows = builtins.list(await conn.execute_fetchall(_OWNER))
            finally:
                await conn.close()
        except sqlite3.Error:
            return "an unknown process (its owner row cannot be read)"
        if not rows:
            return "a process that has not recorded itself yet"
        pid, host, started_at = rows[0]
        since = datetime.fromtimestamp(float(started_at), tz=UTC).isoformat(timespec="seconds")
        return f"pid {pid} on host {host} since {since}"

    # -- closing --------------------------------------------------------------------------------

    async def close(self) -> None:
        """Commit what is queued, stop the writer and release ownership. Idempotent."""
        if self._state in ("closing", "closed", "new"):
            self._state = "closed" if self._state == "new" else self._state
            return
        self._state = "closing"
        task = self._task
        try:
            if task is not None:
                self._stopping = True
                self._wake()
                await asyncio.wait({task})
        finally:
            if task is not None and not task.done():
                task.cancel()
            await self._release()
            self._task, self._state = None, "closed"

    async def _release(self) -> None:
        writer, reader, self._writer, self._reader = self._writer, self._reader, None, None
        acker, self._acker = self._acker, None
        try:
            if writer is not None and self._token:
                await _quietly(writer.execute("DELETE FROM owner WHERE token = ?", (self._token,)))
            for conn in (writer, reader, acker):
                if conn is not None:
                    await _quietly(conn.close())
        finally:
            self._token = ""
            self._lock.release()

    # -- writing --------------------------------------------------------------------------------

    def submit(self, op: Append) -> asyncio.Future[None]:
        """Queue ``op`` for the next group commit; the future resolves once it is durable.

        Never blocks. The future raises WorkflowAlreadyExistsError, WorkflowNotFoundError or an
        out-of-sequence JournalError for a refused op (see :mod:`flowcore.journal.memory`),
        PayloadError for an event JSON cannot encode, and JournalError when the journal is
        read-only, not open, closed, or failed, or when the batch's commit failed.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            self._check_writable()
            self._queue.append(encode_append(op, future))
        except (JournalError, PayloadError) as exc:
            future.set_exception(exc)
            return future
        if self._wakeup is not None:
            self._wake()
        return future

    def _wake(self) -> None:
        waiter, self._wakeup = self._wakeup, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _check_writable(self) -> None:
        if self._readonly:
            msg = f"journal {self._path!r} was opened read-only; it accepts no writes"
            raise JournalError(msg)
        if self._failure is not None:
            raise self._failed_error()
        if self._state != "open":
            msg = f"journal {self._path!r} is {'not open' if self._state == 'new' else 'closed'}"
            raise JournalError(msg)

    def _failed_error(self) -> JournalError:
        failure = self._failure
        if isinstance(failure, sqlite3.DatabaseError) and schema.is_damage(failure):
            # A restart would fail the same way: say so, and what to do instead.
            error: JournalError = JournalCorruptError(
                f"journal {self._path!r} failed to commit ({failure!r}) and accepts no more "
                "writes: the database file is damaged. The failed batch was not acknowledged. "
                f"Stop the runtime; 'python -m flowcore verify --db {self._path}' shows the "
                "damage; restore the file from a backup (sqlite3's .recover may save its rows)."
            )
        else:
            error = JournalError(
                f"journal {self._path!r} failed to commit ({failure!r}) and accepts no more "
                "writes; the failed batch was not acknowledged, and everything acknowledged "
                "before it is durable. Restart the runtime to recover from the journal."
            )
        error.__cause__ = failure
        return error

    async def _run(self) -> None:
        """The writer task: commit everything queued, batch after batch, in submission order."""
        try:
            while self._failure is None:
                if self._queue:
                    await self._gather()
                    await self._commit(self._take())
                elif self._stopping:
                    return
                else:
                    self._wakeup = asyncio.get_running_loop().create_future()
                    await self._wakeup
        finally:
            self._reject_queued()

    async def _gather(self) -> None:
        """Let a batch that is still growing grow before it commits (group commit).

        Work that is ready to run (an eager workflow running its next steps, a gather's
        branches completing) appends on every loop pass; committing after the first of them
        makes every later one wait for a commit of its own. So the writer waits one pass at a
        time while the queue keeps growing, never when it stopped (an op alone waits one pass),
        never past MAX_BATCH, and never longer than the last commit took: a steady stream of
        appends then commits at least every second commit time, not never.
        """
        size = len(self._queue)
        limit = time.perf_counter() + self._commit_seconds
        while size < MAX_BATCH and not self._stopping:
            await asyncio.sleep(0)
            grown = len(self._queue)
            if grown == size or time.perf_counter() >= limit:
                return
            size = grown

    def _take(self) -> builtins.list[Queued]:
        """The next batch: the oldest queued ops, MAX_BATCH of them, and the run of one id's.

        The cut never falls between two queued ops of one workflow: a step the runtime
        journals in several appends submitted at once (a run that continues as new: its last
        events, the reset to the next run, that run's first step) commits whole or not at
        all. Recovery relies on it: a committed history holds no step the workflow took but
        did not record (see :func:`flowcore._instance.waiting_only`).
        """
        batch = self._queue
        cut = MAX_BATCH
        while cut < len(batch) and batch[cut][0] == batch[cut - 1][0]:
            cut += 1
        if len(batch) <= cut:
            self._queue = []
            return batch
        self._queue = batch[cut:]
        return batch[:cut]

    def _reject_queued(self) -> None:
        error = self._failed_error if self._failure is not None else self._stopped_error
        queued, self._queue = self._queue, []
        for item in queued:
            _reject(item[-1], error())

    def _stopped_error(self) -> JournalError:
        return JournalError(f"journal {self._path!r} stopped its writer before this op committed")

    async def _commit(self, batch: Sequence[Queued]) -> None:
        started = time.perf_counter()
        try:
            errors = await self._transaction(batch)
        except BaseException as exc:
            self._failure = exc
            for item in batch:
                _reject(item[-1], self._failed_error())
            if not isinstance(exc, Exception):
                raise
            return
        self._commits += 1
        self._commit_seconds = time.perf_counter() - started
        if self._crash_after and self._commits >= self._crash_after:  # test hook
            os.kill(os.getpid(), signal.SIGKILL)
        _resolve(batch, errors)

    async def _transaction(self, batch: Sequence[Queued]) -> dict[int, Exception]:
        """Write ``batch`` in one transaction; return the refused ops' errors by index."""
        conn = self._writer
        if conn is None:
            msg = "the writer connection is closed"
            raise JournalError(msg)
        await self._check_files(conn)
        # The whole transaction is one call on the connection's thread: a round trip to that
        # thread costs about as much as the fsync itself, and a batch used to make seven.
        errors = await _on_thread(conn, _write_batch, [(batch, self._known, self._written)])
        # Deleted or replaced while this batch committed: its commit went to an unlinked
        # file and is lost when the process ends, so it must not be acknowledged.
        await self._check_files(conn)
        return errors

    async def _check_files(self, conn: aiosqlite.Connection) -> None:
        """:meth:`_check_identity`; a deleted ``-wal`` is first saved into the database file.

        The commits acknowledged so far may still live only in that (now unlinked) log: a
        checkpoint through the open connection copies them into the database file, which is
        still in place, so they survive the process.
        """
        try:
            self._check_identity()
        except JournalError:
            if _same_file(self._path, self._identity):
                await _quietly(conn.execute("PRAGMA wal_checkpoint(FULL)"))
            raise

    def _check_identity(self) -> None:
        """Refuse to commit into a file that was deleted or replaced since the journal opened.

        SQLite keeps writing to the open (possibly unlinked) inode, so such commits would succeed
        and be lost; a ``stat`` of the file and of its ``-wal`` (which holds every commit not yet
        checkpointed) before and after each batch catches it.
        """
        for path, known in ((self._path, self._identity),
                            (self._wal_path, self._wal_identity)):  # fmt: skip
            try:
                now = _identity(path)
            except OSError:
                now = None
            if now != known:
                what = "deleted" if now is None else "replaced by another file"
                fix = (
                    "Restore the file (or remove what replaced it) and open a new runtime"
                    if path == self._path
                    else "What it held was saved into the database file; remove what replaced "
                    "it (if anything) and open a new runtime"
                )
                msg = (
                    f"journal file {path!r} was {what} while this runtime had it open; nothing "
                    f"more is written. {fix}"
                )
                raise JournalError(msg)

    # -- reading --------------------------------------------------------------------------------

    async def _read(self, sql: str, params: Sequence[object]) -> builtins.list[Any]:
        if self._reader is None or self._state != "open":
            msg = f"journal {self._path!r} is {'not open' if self._state == 'new' else 'closed'}"
            raise JournalError(msg)
        try:
            return builtins.list(await self._reader.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            msg = f"reading journal {self._path!r} failed: {exc}"
            raise JournalError(msg) from exc

    async def history(self, workflow_id: str) -> builtins.list[Event]:
        """All events of a workflow in journal order (empty if unknown).

        Raises:
            JournalCorruptError: a stored event cannot be decoded.
        """
        rows = await self._read(_HISTORY, (workflow_id,))
        return [decode_event(kind, data, at) for kind, data, at in rows]

    async def status(self, workflow_id: str) -> WorkflowStatus | None:
        """The status of a workflow, or None if unknown."""
        rows = await self._read(_STATUS, (workflow_id,))
        return to_status(_status_row(rows[0])) if rows else None

    async def unfinished(self) -> builtins.list[str]:
        """Ids of instances not in a terminal state, oldest first (what recovery replays)."""
        return [wid for (wid,) in await self._read(_UNFINISHED, ())]

    async def read_many(
        self, workflow_ids: Sequence[str]
    ) -> dict[str, tuple[builtins.list[Event], WorkflowStatus]]:
        """The history and status of each of ``workflow_ids`` that exists, in two reads a chunk.

        A chunk is ``_MANY`` ids (two reads per id with ``history`` and ``status``).

        Raises:
            JournalCorruptError: a stored event cannot be decoded.
        """
        found: dict[str, tuple[builtins.list[Event], WorkflowStatus]] = {}
        ids = builtins.list(dict.fromkeys(workflow_ids))
        for start in range(0, len(ids), _MANY):
            chunk = ids[start : start + _MANY]
            marks = ", ".join("?" * len(chunk))
            rows = await self._read(_SELECT_ROWS + f" WHERE id IN ({marks})", chunk)
            events = await self._read(_HISTORIES.format(marks=marks), chunk)
            histories: dict[str, builtins.list[Event]] = {}
            for wid, kind, data, at in events:
                histories.setdefault(wid, []).append(decode_event(kind, data, at))
            for row in rows:
                found[row[0]] = (histories.get(row[0], []), to_status(_status_row(row)))
        return found

    async def list(
        self,
        *,
        name: str | None = None,
        status: WorkflowState | str | None = None,
        limit: int = 100,
    ) -> builtins.list[WorkflowStatus]:
        """Status records, newest first (by creation time, then id), filtered by name and status.

        Raises:
            ValueError: unknown status, or a negative limit.
        """
        wanted = check_list_args(status, limit)
        params = [p for p in (name, wanted) if p is not None]
        rows = await self._read(_LIST[name is not None, wanted is not None], [*params, limit])
        return [to_status(_status_row(row)) for row in rows]

    # -- the outbox (flowcore.listeners) --------------------------------------------------------

    async def outbox(self, channel: str, *, limit: int = 100) -> builtins.list[OutboxEntry]:
        """The oldest committed, unacknowledged outbox records of ``channel``, in commit order."""
        rows = await self._read(_OUTBOX, (channel, limit))
        return [
            OutboxEntry(id=i, channel=c, key=k, workflow_id=w, body=b) for i, c, k, w, b in rows
        ]

    async def ack_outbox(self, ids: Sequence[int]) -> None:
        """Delete delivered outbox records; durable once this returns.

        It runs on a connection of its own, outside the writer's group commit: the writer's
        transactions never wait for a sender, and SQLite serialises the two.

        Raises:
            JournalError: the journal is read-only, not open, or the delete failed.
        """
        if self._readonly or self._state != "open":
            msg = f"journal {self._path!r} is {'read-only' if self._readonly else 'not open'}"
            raise JournalError(msg)
        try:
            if self._acker is None:
                self._acker = await self._connect(readonly=False)
                await self._acker.execute(f"PRAGMA synchronous = {_SYNCHRONOUS[self._durability]}")
            await self._acker.execute(_ACK_OUTBOX, (json.dumps(builtins.list(ids)),))
        except sqlite3.Error as exc:
            msg = f"acknowledging outbox records in {self._path!r} failed: {exc}"
            raise JournalError(msg) from exc


def _write_batch(
    conn: sqlite3.Connection,
    work: builtins.list[tuple[Sequence[Queued], dict[str, Known], dict[str, Written]]],
) -> dict[int, Exception]:
    """Plan and write one batch in one transaction (runs on the writer connection's thread).

    ``work`` is the batch and the writer's record of the committed state (status, last position)
    of the unfinished workflows it wrote: the batch rules need that state for every id the
    batch mentions, and only the ids missing from the record are read from the database (into
    the record). The rules then bring the record to the state after the batch, in place. It
    stays exact because this writer is the only one: the file is owned (locked) while it is
    open, and the record is emptied when a batch fails (it may hold that batch's state) and at
    every ``open()``. After the commit it also holds the batch's unfinished ids; finished ones
    leave it (keeping it as small as the set of running workflows) and are read again should
    another op name them.

    ``written`` holds the rows of the same workflows as this writer last wrote them, kept and
    emptied with the record: an update then sets only the columns that changed (see
    :mod:`flowcore.journal._rows`, which also says what the commit changes in it). It lacks the
    ids whose state was read from the database, until the writer writes their row.

    ``work`` is a one-item list, emptied here, and only the refused ops' errors are returned:
    aiosqlite's thread keeps the call and its result until its next call, and the batch and its
    plan would otherwise stay alive (for the garbage collector to scan) until the next commit.
    """
    batch, record, written = work.pop()
    conn.execute("BEGIN IMMEDIATE")
    try:
        read = _read_missing(conn, batch, record)
        plan = plan_batch(batch, record)  # brings `record` to after the batch
        rows = row_writes(plan.inserts, plan.updates, written)
        _write_plan(conn, plan, rows.statements)
        conn.execute("COMMIT")
    except BaseException:
        record.clear()  # it holds the uncommitted state of this batch
        written.clear()
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise
    written.update(rows.written)
    for wid in rows.finished:
        del record[wid]
        written.pop(wid, None)
    for wid in read:  # finished, and only refused ops named it: no row of it was written
        state = record.get(wid)
        if state is not None and is_finished(state[0]):
            del record[wid]
    return plan.errors


def _read_missing(
    conn: sqlite3.Connection, batch: Sequence[Queued], record: dict[str, Known]
) -> builtins.list[str]:
    """Add the stored state of the ids ``batch`` mentions that ``record`` lacks.

    Returns:
        The ids found (the others do not exist).
    """
    missing = {item[0] for item in batch}.difference(record)
    if not missing:
        return []
    rows = conn.execute(_KNOWN, (json.dumps(builtins.list(missing)),)).fetchall()
    record.update((wid, (status, seq)) for wid, status, seq in rows)
    return [wid for wid, _, _ in rows]


def _write_plan(
    conn: sqlite3.Connection, plan: BatchPlan, row_statements: Iterable[Statement]
) -> None:
    """The batch's statements, in the order the batch rules need (deletions before inserts)."""
    if plan.resets:
        conn.executemany(_DELETE_EVENTS, [(wid,) for wid in plan.resets])
    if plan.events:
        _insert_events(conn, plan.events)
    for sql, rows in row_statements:
        conn.executemany(sql, rows)
    if plan.consumed:
        conn.executemany(_DELETE_REQUESTS, [(rid,) for rid in plan.consumed])
    if plan.outbox:
        conn.executemany(_INSERT_OUTBOX, plan.outbox)


def _insert_events(conn: sqlite3.Connection, events: builtins.list[EventRow]) -> None:
    """Insert event rows in submission order, ``ROWS_PER_STATEMENT`` per statement."""
    if len(events) < ROWS_PER_STATEMENT:
        conn.executemany(_INSERT_EVENTS, events)
        return
    for sql, rows in per_statement(_INSERT_EVENTS, _INSERT_EVENTS_MANY, iter(events), len(events)):
        conn.executemany(sql, rows)


async def _on_thread(
    conn: aiosqlite.Connection, fn: Callable[[sqlite3.Connection, _A], _R], arg: _A
) -> _R:
    """Run ``fn(raw_connection, arg)`` on ``conn``'s own thread, in one round trip.

    aiosqlite has no public call for this: ``_execute`` queues a function for its thread and
    ``_conn`` is the ``sqlite3.Connection`` that thread owns (both unchanged since aiosqlite
    0.17; tests/journal pin them, so an upgrade that drops them fails there, not here).
    """
    raw: sqlite3.Connection = conn._conn  # noqa: SLF001 - see the docstring
    run: Callable[..., Awaitable[object]] = conn._execute  # noqa: SLF001
    return cast("_R", await run(fn, raw, arg))


def _status_row(values: Iterable[Any]) -> StatusRow:
    return StatusRow(**dict(zip(_ROW_FIELDS, values, strict=True)))


# -- test hook: kill at the Nth commit (tests/chaos) ---------------------------------------------

CRASH_AFTER_COMMIT_ENV: Final = "FLOWCORE_CRASH_AFTER_COMMIT"
"""Environment variable: SIGKILL this process right after the journal's Nth commit (tests only)."""


def _crash_after_commit() -> int:
    """N from ``FLOWCORE_CRASH_AFTER_COMMIT``, read when a journal opens; 0 (off) when unset."""
    value = os.environ.get(CRASH_AFTER_COMMIT_ENV, "")
    return int(value) if value.isdigit() else 0


# -- end of test hook ---------------------------------------------------------------------------


def _identity(path: str) -> tuple[int, int]:
    stat = os.stat(path)  # noqa: PTH116 - twice per file and commit: no Path object each time
    return stat.st_dev, stat.st_ino


def _same_file(path: str, known: tuple[int, int] | None) -> bool:
    try:
        return _identity(path) == known
    except OSError:
        return False


def _resolve(batch: Sequence[Queued], errors: dict[int, Exception]) -> None:
    """Resolve the futures of a committed batch: refused ops get their error."""
    for index, item in enumerate(batch):
        future = item[-1]
        error = errors.get(index) if errors else None
        if error is not None:
            _reject(future, error)
        elif not future.done():
            future.set_result(None)


def _reject(future: asyncio.Future[None], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


async def _quietly(step: Awaitable[object]) -> None:
    """Await a best-effort cleanup step, ignoring database errors."""
    with contextlib.suppress(sqlite3.Error, ValueError):
        await step


@final
class _FileLock:
    """An exclusive, non-blocking lock on a sidecar file, dropped by the OS when the process dies.

    ``flock`` locks belong to an open file description, so two opens in one process conflict too.
    The file is never deleted: removing a lock file while others may hold it open is racy.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock; False when someone else holds it.

        Raises:
            JournalError: the lock file cannot be created or locked.
        """
        try:
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            msg = f"cannot create the journal's lock file {self._path!r}: {exc}"
            raise JournalError(msg) from exc
        try:
            taken = _lock_fd(fd)
        except OSError as exc:
            os.close(fd)
            msg = f"cannot lock {self._path!r}: {exc}; use a local file system"
            raise JournalError(msg) from exc
        if not taken:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        """Drop the lock (closing the descriptor releases it). Idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


if sys.platform == "win32":  # pragma: no cover
    import msvcrt

    def _lock_fd(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except PermissionError:
            return False
        return True

else:
    import fcntl

    def _lock_fd(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
