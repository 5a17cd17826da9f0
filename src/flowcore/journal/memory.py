"""InMemoryJournal: the journal protocol in memory, with the same batch rules as SQLite."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import TYPE_CHECKING, Self, final

from flowcore.engine.events import decode_event
from flowcore.errors import (
    JournalError,
    PayloadError,
)
from flowcore.journal._batch import (
    EventRow,
    Known,
    Queued,
    check_list_args,
    encode_append,
    is_finished,
    plan_batch,
    to_status,
)
from flowcore.journal.base import OutboxEntry

if TYPE_CHECKING:
    import builtins
    from collections.abc import Sequence
    from types import TracebackType

    from flowcore._status import WorkflowState, WorkflowStatus
    from flowcore.engine.events import Event
    from flowcore.journal.base import Append, StatusRow

__all__ = ["InMemoryJournal"]


@final
class InMemoryJournal:
    """A journal kept in memory with the same semantics as SqliteJournal, for fast tests.

    Ops submitted during one loop iteration commit together on the next one, in submission order,
    under the batch rules of this module. Data survives ``close()`` and a later ``open()`` of the
    same object, as a file would; nothing survives the process.
    """

    def __init__(self, path: str = ":memory:") -> None:
        self._path = path
        self._opened = False
        self._closed = False
        self._events: dict[str, builtins.list[EventRow]] = {}
        self._rows: dict[str, StatusRow] = {}
        self._known: dict[str, Known] = {}
        """Status and last position of every stored id (what the batch rules check)."""
        self._pending: builtins.list[Queued] = []
        self._commits = 0
        self._outbox: dict[int, OutboxEntry] = {}
        self._outbox_next = 1

    def __repr__(self) -> str:
        return f"InMemoryJournal({self._path!r})"

    @property
    def path(self) -> str:
        """A name for messages (nothing is stored there)."""
        return self._path

    @property
    def commits(self) -> int:
        """How many batches have been committed."""
        return self._commits

    async def open(self) -> None:
        """Start accepting ops (again, after a close)."""
        self._opened, self._closed = True, False

    async def close(self) -> None:
        """Commit what is queued and stop accepting ops. Idempotent."""
        self._flush()
        self._closed = True

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

    def submit(self, op: Append) -> asyncio.Future[None]:
        """Queue ``op`` for the next batch; the future resolves once it is committed."""
        future = asyncio.get_running_loop().create_future()
        try:
            self._check_open()
            queued = encode_append(op, future)
        except (JournalError, PayloadError) as exc:
            future.set_exception(exc)
            return future
        if not self._pending:
            future.get_loop().call_soon(self._flush)
        self._pending.append(queued)
        return future

    def _check_open(self) -> None:
        if self._closed or not self._opened:
            state = "closed" if self._closed else "not open; call open() first (or 'async with')"
            msg = f"journal {self._path!r} is {state}"
            raise JournalError(msg)

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        plan = plan_batch(batch, self._known)  # updates self._known
        for wid in plan.resets:
            self._events.pop(wid, None)
        stored = self._events
        for event in plan.events:
            events = stored.get(event[0])
            if events is None:
                stored[event[0]] = [event]
            else:
                events.append(event)
        self._rows.update(plan.inserts)
        for wid, row in plan.updates.items():
            created_at = self._rows[wid].created_at
            self._rows[wid] = (
                row if row.created_at == created_at else replace(row, created_at=created_at)
            )
        for channel, key, wid, body in plan.outbox:
            entry = OutboxEntry(id=self._outbox_next, channel=channel, key=key, workflow_id=wid,
                                body=body)  # fmt: skip
            self._outbox[entry.id] = entry
            self._outbox_next += 1
        self._commits += 1
        for index, item in enumerate(batch):
            future = item[-1]
            if future.done():
                continue
            error = plan.errors.get(index)
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    async def history(self, workflow_id: str) -> builtins.list[Event]:
        """All events of a workflow in journal order (empty if unknown)."""
        self._check_open()
        rows = self._events.get(workflow_id, ())
        return [decode_event(kind, data, at) for _, _, kind, data, at in rows]

    async def status(self, workflow_id: str) -> WorkflowStatus | None:
        """The status of a workflow, or None if unknown."""
        self._check_open()
        row = self._rows.get(workflow_id)
        return None if row is None else to_status(row)

    async def read_many(
        self, workflow_ids: Sequence[str]
    ) -> dict[str, tuple[builtins.list[Event], WorkflowStatus]]:
        """The history and status of each of ``workflow_ids`` that exists."""
        self._check_open()
        found: dict[str, tuple[builtins.list[Event], WorkflowStatus]] = {}
        for wid in workflow_ids:
            row = self._rows.get(wid)
            if row is not None:
                events = self._events.get(wid, ())
                found[wid] = ([decode_event(k, d, at) for _, _, k, d, at in events], to_status(row))
        return found

    async def unfinished(self) -> builtins.list[str]:
        """Ids of instances not in a terminal state, oldest first."""
        self._check_open()
        rows = sorted(self._rows.values(), key=lambda r: (r.created_at, r.id))
        return [r.id for r in rows if not is_finished(r.status)]

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
        self._check_open()
        wanted = check_list_args(status, limit)
        rows = sorted(self._rows.values(), key=lambda r: (r.created_at, r.id), reverse=True)
        chosen = [
            r for r in rows if (name is None or r.name == name) and wanted in (None, r.status)
        ]
        return [to_status(r) for r in chosen[:limit]]

    async def outbox(self, channel: str, *, limit: int = 100) -> builtins.list[OutboxEntry]:
        """The oldest committed, unacknowledged outbox records of ``channel``, in commit order."""
        self._check_open()
        return [e for e in self._outbox.values() if e.channel == channel][:limit]

    async def ack_outbox(self, ids: Sequence[int]) -> None:
        """Delete delivered outbox records."""
        self._check_open()
        for rid in ids:
            self._outbox.pop(rid, None)
