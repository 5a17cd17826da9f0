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
* A refused op never stops the others of its batch; the last accepted op's row for an id wins.
"""

from __future__ import annotations

import builtins
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, final

from flowcore._status import WorkflowState, WorkflowStatus, from_timestamp
from flowcore.engine.events import encode_event
from flowcore.errors import (
    JournalCorruptError,
    JournalError,
    PayloadError,
    WorkflowAlreadyExistsError,
    WorkflowNotFoundError,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from flowcore.journal.base import Append, StatusRow

__all__ = [
    "BatchPlan",
    "Encoded",
    "EventRow",
    "Known",
    "check_list_args",
    "encode_append",
    "is_finished",
    "plan_batch",
    "to_status",
]

EventRow = tuple[str, int, str, str, float]
"""One ``events`` row: ``(workflow_id, seq, kind, data, at)``."""

_FINISHED: Final = frozenset(s.value for s in WorkflowState if s.is_finished)


@final
@dataclass(frozen=True, slots=True)
class Encoded:
    """An op with its events already encoded as journal rows."""

    op: Append
    """The submitted op."""
    events: tuple[EventRow, ...]
    """``op.events`` as rows, positions ``op.first_seq`` onwards."""


@final
@dataclass(slots=True)
class Known:
    """What the journal holds for one workflow id when a batch starts."""

    status: str
    """The stored status value."""
    last_seq: int
    """The highest stored position (0 when it has no events)."""


@final
@dataclass(slots=True)
class BatchPlan:
    """What one batch writes, and which of its ops are refused."""

    events: builtins.list[EventRow] = field(default_factory=builtins.list)
    """Event rows of the accepted ops, in submission order."""
    inserts: dict[str, StatusRow] = field(default_factory=dict)
    """Final rows of ids the batch creates."""
    updates: dict[str, StatusRow] = field(default_factory=dict)
    """Final rows of ids that existed before the batch."""
    errors: dict[int, Exception] = field(default_factory=dict)
    """Index of a refused op in the batch -> why."""


def encode_append(op: Append) -> Encoded:
    """Encode an op's events as rows.

    Raises:
        PayloadError: an event holds a value JSON cannot encode.
    """
    rows: builtins.list[EventRow] = []
    for i, event in enumerate(op.events):
        try:
            kind, data = encode_event(event)
        except (TypeError, ValueError) as exc:
            raise PayloadError(
                f"event {type(event).__name__} of workflow {op.workflow_id!r}: {exc}",
                path=f"$.events[{i}]",
            ) from exc
        rows.append((op.workflow_id, op.first_seq + i, kind, data, event.at))
    return Encoded(op, tuple(rows))


def plan_batch(batch: Sequence[Encoded], known: Mapping[str, Known]) -> BatchPlan:
    """Apply the batch rules (see the module docstring) to ops in submission order.

    Args:
        batch: The ops, in submission order.
        known: The stored state of every id the batch mentions that exists.

    Returns:
        What to write and what to refuse.
    """
    plan = BatchPlan()
    state = {wid: Known(k.status, k.last_seq) for wid, k in known.items()}
    for index, item in enumerate(batch):
        op = item.op
        error = _refusal(op, state.get(op.workflow_id))
        if error is not None:
            plan.errors[index] = error
            continue
        current = state.setdefault(op.workflow_id, Known(op.row.status, 0))
        current.status = op.row.status
        current.last_seq += len(item.events)
        plan.events.extend(item.events)
        target = plan.updates if op.workflow_id in known else plan.inserts
        target[op.workflow_id] = op.row
    return plan


def _refusal(op: Append, current: Known | None) -> Exception | None:
    if op.create and current is not None:
        return WorkflowAlreadyExistsError(op.workflow_id, status=current.status)
    if not op.create and current is None:
        return WorkflowNotFoundError(op.workflow_id)
    expected = 1 if current is None else current.last_seq + 1
    if op.events and op.first_seq != expected:
        return JournalError(
            f"out-of-sequence append for workflow {op.workflow_id!r}: it starts at position "
            f"{op.first_seq} but the journal's next position is {expected}; the caller's view of "
            "this workflow is stale (reload it from the journal)"
        )
    return None


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
    return None if status is None else WorkflowState(status).value


def is_finished(status: str) -> bool:
    """Tell whether a stored status value is terminal."""
    return status in _FINISHED
