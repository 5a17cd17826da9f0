"""Read-side queries the web API needs beyond ``Runtime.list``: keyset pages, counts, new events.

On the SQLite journal they are single indexed statements on the runtime's reader connection;
on any other journal (the in-memory one in tests) they fall back to filtering the full list.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, final

from flowcore._status import WorkflowState
from flowcore.engine.events import decode_event, encode_event
from flowcore.journal._batch import check_list_args, to_status
from flowcore.journal.base import StatusRow
from flowcore.journal.sqlite import SqliteJournal

if TYPE_CHECKING:
    from flowcore._status import WorkflowStatus
    from flowcore.engine.events import Event
    from flowcore.runtime import Runtime

__all__ = ["Page", "Slice", "count_by_status", "decode_cursor", "events_after", "list_page"]

_COLUMNS: Final = (
    "id", "name", "version", "status", "input", "output", "error", "current_activity",
    "created_at", "updated_at", "parent_id", "custom_status",
)  # fmt: skip
_SELECT: Final = f"SELECT {', '.join(_COLUMNS)} FROM workflows"  # noqa: S608 - fixed names
_EVENTS_AFTER: Final = (  # one statement: the run's first row, its last and those after ?
    "SELECT seq, kind, data, at FROM events WHERE workflow_id = ? AND (seq = 1 OR seq > ?"
    " OR seq = (SELECT MAX(seq) FROM events WHERE workflow_id = ?)) ORDER BY seq"
)  # plain ``?``: early 3.12 releases warn that ``?1`` bound from a sequence is named (gh-117995)
_FALLBACK_LIMIT: Final = 1_000_000
_CREATED: Final = _COLUMNS.index("created_at")


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class Page:
    """One page of a listing, newest first."""

    items: list[WorkflowStatus]
    """The status records of this page."""
    next_cursor: str | None
    """Pass it as ``cursor`` to get the next page; None on the last page."""


def encode_cursor(created: float, wid: str) -> str:
    """An opaque cursor pointing after instance ``wid`` (created at ``created``), newest first.

    ``created`` is the stored value: a datetime's microseconds would not compare exactly.
    """
    raw = json.dumps([created, wid]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """Decode a cursor made by :func:`encode_cursor`.

    Raises:
        ValueError: the text is not such a cursor.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, wid = json.loads(raw)
        if not isinstance(created, int | float) or not isinstance(wid, str):
            raise TypeError(cursor)  # noqa: TRY301 - one message for every malformed cursor
        if not math.isfinite(created):  # json reads NaN and Infinity; no page ends there
            raise ValueError(cursor)  # noqa: TRY301
        return float(created), wid  # OverflowError: an integer no float holds
    except (binascii.Error, ValueError, TypeError, OverflowError) as exc:
        raise ValueError(f"invalid cursor {cursor!r}: pass the next_cursor of a page") from exc


async def list_page(
    runtime: Runtime,
    *,
    name: str | None,
    status: str | None,
    since: float | None,
    limit: int,
    cursor: tuple[float, str] | None,
) -> Page:
    """Status records newest first (by creation time, then id), filtered, one page at a time.

    Raises:
        ValueError: an unknown status.
    """
    status = check_list_args(status, limit)
    journal = runtime._journal  # noqa: SLF001 - the web API is part of the package
    if isinstance(journal, SqliteJournal):
        found = await _sqlite_page(journal, name, status, since, limit + 1, cursor)
    else:
        listed = await runtime.list(name=name, status=status, limit=_FALLBACK_LIMIT)
        found = [(s.created_at.timestamp(), s) for s in listed]
        found = _filter(found, since, cursor)[: limit + 1]
    more = len(found) > limit
    page = found[:limit]
    after = encode_cursor(page[-1][0], page[-1][1].id) if more and page else None
    return Page(items=[s for _, s in page], next_cursor=after)


async def _sqlite_page(  # noqa: PLR0917 - private, called once
    journal: SqliteJournal,
    name: str | None,
    status: str | None,
    since: float | None,
    limit: int,
    cursor: tuple[float, str] | None,
) -> list[tuple[float, WorkflowStatus]]:
    where: list[str] = []
    params: list[Any] = []
    for clause, value in (("name = ?", name), ("status = ?", status), ("created_at >= ?", since)):
        if value is not None:
            where.append(clause)
            params.append(value)
    if cursor is not None:
        # The bare `created_at <= ?` lets SQLite seek the index to the cursor; an OR alone
        # made it walk every newer row, so each page cost its depth (paging all: quadratic).
        where.append("created_at <= ? AND (created_at < ? OR id < ?)")
        params.extend([cursor[0], cursor[0], cursor[1]])
    sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "")
    sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
    rows = await journal._read(sql, [*params, limit])  # noqa: SLF001
    statuses = [to_status(StatusRow(**dict(zip(_COLUMNS, row, strict=True)))) for row in rows]
    return [(row[_CREATED], status) for row, status in zip(rows, statuses, strict=True)]


def _filter(
    found: list[tuple[float, WorkflowStatus]],
    since: float | None,
    cursor: tuple[float, str] | None,
) -> list[tuple[float, WorkflowStatus]]:
    def keep(created: float, s: WorkflowStatus) -> bool:
        if since is not None and created < since:
            return False
        return cursor is None or (created, s.id) < cursor

    return [(c, s) for c, s in found if keep(c, s)]


async def count_by_status(runtime: Runtime, name: str | None = None) -> dict[str, int]:
    """How many instances are in each state (every state present, zeros included)."""
    counts = dict.fromkeys((s.value for s in WorkflowState), 0)
    journal = runtime._journal  # noqa: SLF001
    if isinstance(journal, SqliteJournal):
        sql = "SELECT status, COUNT(*) FROM workflows"
        sql += " WHERE name = ? GROUP BY status" if name is not None else " GROUP BY status"
        rows = await journal._read(sql, [name] if name is not None else [])  # noqa: SLF001
        for status, count in rows:
            counts[status] = count
    else:
        for s in await runtime.list(name=name, limit=_FALLBACK_LIMIT):
            counts[s.status.value] += 1
    return counts


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class Slice:
    """New events of a workflow's current run."""

    run: str
    """Names the run (a digest of its first event): it changes on continue-as-new."""
    last: int
    """The run's last position."""
    events: list[tuple[int, Event]]
    """``(position, event)`` after the position asked for."""


async def events_after(runtime: Runtime, wid: str, after: int) -> Slice:
    """The events of ``wid``'s current run after position ``after``."""
    journal = runtime._journal  # noqa: SLF001
    if isinstance(journal, SqliteJournal):
        # A single statement reads one snapshot: with the run's first row read apart from the
        # rest, a continue-as-new committed in between passed the new run's rows off as the old.
        rows = await journal._read(_EVENTS_AFTER, (wid, after, wid))  # noqa: SLF001
        run = _run_key(rows[0][3], rows[0][2]) if rows and rows[0][0] == 1 else ""
        found = [(q, decode_event(kind, data, at)) for q, kind, data, at in rows if q > after]
        return Slice(run=run, last=rows[-1][0] if rows else 0, events=found)
    history = await journal.history(wid)
    run = _run_key(history[0].at, encode_event(history[0])[1]) if history else ""
    return Slice(run=run, last=len(history), events=list(enumerate(history, start=1))[after:])


def _run_key(at: float, data: str) -> str:
    return hashlib.blake2b(f"{at!r}:{data}".encode(), digest_size=4).hexdigest()
