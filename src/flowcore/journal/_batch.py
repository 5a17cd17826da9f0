"""The storage-free rules every journal applies to a batch of appends, and row conversions.

Both journals (SQLite and in-memory) apply them. They decide, op by op in submission order,
what a batch writes:

* A ``create`` op is refused with ``WorkflowAlreadyExistsError`` when its id is already in the
  journal or was created by an earlier op of the same batch; its events and row are not written.
* Any other op is refused with ``WorkflowNotFoundError`` when its id was never created. Otherwise it
  belongs to the existing instance and is written, even right after a refused create of that id.
* An op whose ``first_seq`` does not continue its workflow's journal (1 for a create, last seq + 1
  otherwise) is refused with ``JournalError``, so a stale caller can neither overwrite nor leave
  holes in a history. An op with no events only updates the row.
* A ``reset`` op (continue-as-new) replaces its workflow's whole history. Like any non-create op
  it needs an existing id; it must also start at position 1, carry at least one event and not be
  a create, else it is refused with ``JournalError``. Once accepted, the workflow's last seq is
  ``len(events)``: later ops of the batch continue from there, and the events that earlier ops of
  the same batch appended to that workflow are wiped along with the stored ones (they are never
  written). The journal deletes the stored events of every id in :attr:`BatchPlan.resets` before
  it writes :attr:`BatchPlan.events`, in the same transaction.
* A refused op never stops the others of its batch; the last accepted op's row for an id wins.
* The ``consumed`` inbox ids of every accepted op are deleted in the batch's transaction (even
  when a later reset of the batch wipes the op's events: the run that consumed them saw them);
  a refused op consumes nothing.
* The ``outbox`` records of every accepted op are written in the batch's transaction, in
  submission order (:attr:`BatchPlan.outbox`); a refused op writes none.
* An update never changes a row's ``created_at``: the create op fixes it, and it stays the first
  run's across resets (each journal keeps the stored value).
"""

from __future__ import annotations

import builtins
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, final

from flowcore._status import WorkflowState, WorkflowStatus, from_timestamp
from flowcore.engine.events import encode_event_data
from flowcore.errors import (
    JournalCorruptError,
    JournalError,
    PayloadError,
    WorkflowAlreadyExistsError,
    WorkflowNotFoundError,
)

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Sequence

    from flowcore.journal.base import Append, OutboxRecord, StatusRow

__all__ = [
    "BatchPlan",
    "EventRow",
    "Known",
    "Queued",
    "check_list_args",
    "encode_append",
    "is_finished",
    "plan_batch",
    "to_status",
]

EventRow = tuple[str, int, str, str, float]
"""One ``events`` row: ``(workflow_id, seq, kind, data, at)``."""

_FINISHED: Final = frozenset(s.value for s in WorkflowState if s.is_finished)


Queued = tuple[
    str,  # workflow_id
    int,  # first_seq
    tuple[EventRow, ...],  # the events as rows, positions first_seq onwards
    "StatusRow",  # the row after them
    bool,  # create
    bool,  # reset
    tuple[int, ...],  # consumed inbox ids
    tuple["OutboxRecord", ...],  # outbox records
    "asyncio.Future[None]",  # resolved once the op committed (the rules never look at it)
]
"""An op as a journal queues it: its fields, its events encoded as rows, and its future.

A plain tuple, not the :class:`~flowcore.journal.base.Append` (and its events): a queued op
lives until its batch commits, and the garbage collector scans every object that lives that
long. Three objects stay tracked (the tuple, the row and the future); a tuple of scalars, like
an event row, is untracked by the collector's first pass over it."""

Known = tuple[str, int]
"""What the journal holds for one workflow id when a batch starts: ``(status, last_seq)``, the
stored status value and highest stored position (0 when it has no events). A plain tuple of
scalars: the writer keeps one per running workflow, and the collector untracks it."""


@final
@dataclass(slots=True)
class BatchPlan:
    """What one batch writes, and which of its ops are refused."""

    events: builtins.list[EventRow] = field(default_factory=builtins.list)
    """Event rows to write, in submission order (those of accepted ops not wiped by a reset)."""
    resets: builtins.list[str] = field(default_factory=builtins.list)
    """Ids whose stored events are deleted before ``events`` are written, each once."""
    inserts: dict[str, StatusRow] = field(default_factory=dict)
    """Final rows of ids the batch creates."""
    updates: dict[str, StatusRow] = field(default_factory=dict)
    """Final rows of ids that existed before the batch."""
    errors: dict[int, Exception] = field(default_factory=dict)
    """Index of a refused op in the batch -> why."""
    consumed: builtins.list[int] = field(default_factory=builtins.list)
    """Inbox request ids the accepted ops carry out (deleted in the batch's transaction)."""
    outbox: builtins.list[tuple[str, str, str, str]] = field(default_factory=builtins.list)
    """``(channel, key, workflow_id, body)`` of the accepted ops' outbox records, in order."""


def encode_append(op: Append, future: asyncio.Future[None]) -> Queued:
    """Encode an op's events as rows; return the op as queued, with ``future``.

    Raises:
        PayloadError: an event holds a value JSON cannot encode.
    """
    wid, first = op.workflow_id, op.first_seq
    try:
        rows = tuple(
            [
                (wid, first + i, event.kind, encode_event_data(event), event.at)
                for i, event in enumerate(op.events)
            ]
        )
    except (TypeError, ValueError):
        _raise_unencodable(op)
        raise
    return (wid, first, rows, op.row, op.create, op.reset, op.consumed, op.outbox, future)


def _raise_unencodable(op: Append) -> None:
    """Raise PayloadError for the first event of ``op`` JSON cannot encode."""
    for i, event in enumerate(op.events):
        try:
            encode_event_data(event)
        except (TypeError, ValueError) as exc:
            raise PayloadError(
                f"event {type(event).__name__} of workflow {op.workflow_id!r}: {exc}",
                path=f"$.events[{i}]",
            ) from exc


def plan_batch(batch: Sequence[Queued], known: dict[str, Known]) -> BatchPlan:
    """Apply the batch rules (see the module docstring) to ops in submission order.

    Args:
        batch: The ops, in submission order.
        known: The stored state of every id the batch mentions that exists. It is updated to
            the state after the batch: its entries are replaced and the ids the batch creates
            are added (pass a copy to keep the original).

    Returns:
        What to write and what to refuse.
    """
    plan = BatchPlan()
    created: set[str] = set()  # ids not stored before the batch (their rows are inserts)
    accepted: builtins.list[Queued] = []
    reset_at: dict[str, int] = {}  # id -> index in `accepted` of its last reset (wipes earlier)
    for index, item in enumerate(batch):
        wid, first_seq, rows, row, create, reset, consumed, outbox, _ = item
        current = known.get(wid)
        if (
            current is None or create or reset or (rows and first_seq != current[1] + 1)
        ):  # the common case (continuing an existing history) needs no closer look
            error = _refusal(item, current)
            if error is not None:
                plan.errors[index] = error
                continue
            if current is None:
                created.add(wid)
        if reset:
            known[wid] = (row.status, len(rows))
            reset_at[wid] = len(accepted)
        else:
            known[wid] = (row.status, (0 if current is None else current[1]) + len(rows))
        accepted.append(item)
        if consumed:
            plan.consumed.extend(consumed)
        if outbox:
            plan.outbox.extend((r.channel, r.key, wid, r.body) for r in outbox)
        (plan.inserts if wid in created else plan.updates)[wid] = row
    plan.resets.extend(reset_at)
    for position, item in enumerate(accepted):
        if not reset_at or position >= reset_at.get(item[0], 0):
            plan.events.extend(item[2])
    return plan


def _refusal(item: Queued, current: Known | None) -> Exception | None:
    wid, create, reset = item[0], item[4], item[5]
    if create and reset:
        return _invalid_reset(wid, "it is also a create (a reset replaces an existing history)")
    if create and current is not None:
        return WorkflowAlreadyExistsError(wid, status=current[0])
    if not create and current is None:
        return WorkflowNotFoundError(wid)
    return _sequence_refusal(item, 0 if current is None else current[1])


def _sequence_refusal(item: Queued, last_seq: int) -> JournalError | None:
    wid, first_seq, rows, _, _, reset = item[:6]
    if reset:
        if first_seq != 1:
            return _invalid_reset(wid, f"it starts at position {first_seq}, not 1")
        if not rows:
            return _invalid_reset(wid, "it has no events (a new history starts with one)")
        return None
    if rows and first_seq != last_seq + 1:
        return JournalError(
            f"out-of-sequence append for workflow {wid!r}: it starts at position "
            f"{first_seq} but the journal's next position is {last_seq + 1}; the caller's view "
            "of this workflow is stale (reload it from the journal)"
        )
    return None


def _invalid_reset(wid: str, problem: str) -> JournalError:
    return JournalError(f"invalid reset of workflow {wid!r}: {problem}")


def to_status(row: StatusRow) -> WorkflowStatus:
    """Turn a stored row into the public status record.

    Raises:
        JournalCorruptError: the row holds an unknown status or invalid JSON.
    """
    try:
        return WorkflowStatus(
            id=row.id,
            name=row.name,
            version=row.version,
            status=WorkflowState(row.status),
            current_activity=row.current_activity,
            custom_status=None if row.custom_status is None else json.loads(row.custom_status),
            error=row.error,
            input=None if row.input is None else json.loads(row.input),
            output=None if row.output is None else json.loads(row.output),
            created_at=from_timestamp(row.created_at),
            updated_at=from_timestamp(row.updated_at),
            parent_id=row.parent_id,
        )
    except ValueError as exc:
        msg = f"status row of workflow {row.id!r} cannot be read ({exc}); the database is damaged"
        raise JournalCorruptError(msg) from exc


def check_list_args(status: WorkflowState | str | None, limit: int) -> str | None:
    """Validate ``list()`` arguments; return the status value to filter on.

    Raises:
        ValueError: unknown status, or a negative limit.
    """
    if limit < 0:
        msg = f"limit must be >= 0, got {limit}"
        raise ValueError(msg)
    if status is None:
        return None
    try:
        return WorkflowState(status).value
    except ValueError:
        known = ", ".join(state.value for state in WorkflowState)
        msg = f"unknown status {status!r}; the statuses are {known}"
        raise ValueError(msg) from None


def is_finished(status: str) -> bool:
    """Tell whether a stored status value is terminal."""
    return status in _FINISHED
