"""Public value types that describe a workflow instance: its state and its status record."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, final

from flowcore._frozen import quick_init

__all__ = ["WorkflowState", "WorkflowStatus", "from_timestamp"]


@final
class WorkflowState(enum.StrEnum):
    """Lifecycle state of a workflow instance (persisted by value)."""

    PENDING = "pending"
    """Started, not yet picked up."""
    RUNNING = "running"
    """Making progress, or waiting on activities."""
    PARKED = "parked"
    """Replay found the code nondeterministic; waits for fixed code (see ``error``)."""
    SUSPENDED = "suspended"
    """Suspended on request; events queue until resumed."""
    COMPLETED = "completed"
    """Returned a result."""
    FAILED = "failed"
    """Raised an exception."""
    CANCELED = "canceled"
    """Canceled on request."""
    TERMINATED = "terminated"
    """Ended at once on request, without cleanup."""

    @property
    def is_finished(self) -> bool:
        """True for the terminal states."""
        return self in _TERMINAL


_TERMINAL = frozenset(
    {
        WorkflowState.COMPLETED,
        WorkflowState.FAILED,
        WorkflowState.CANCELED,
        WorkflowState.TERMINATED,
    }
)


def from_timestamp(ts: float) -> datetime:
    """Convert epoch seconds to an aware UTC datetime."""
    return datetime.fromtimestamp(ts, tz=UTC)


@final
@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowStatus:
    """A snapshot of one workflow instance, as kept in the journal's status table."""

    id: str
    """The instance id."""
    name: str
    """Registered workflow name."""
    version: str
    """Workflow version the instance started with."""
    status: WorkflowState
    """Lifecycle state."""
    current_activity: str | None = None
    """Name of the activity the workflow waits on (the latest scheduled one still pending)."""
    custom_status: Any = None
    """The value last given to flowcore.set_status()."""
    error: str | None = None
    """Why it failed or is parked."""
    input: Any = None
    """Encoded (JSON) input payload."""
    output: Any = None
    """Encoded (JSON) result, once completed."""
    created_at: datetime
    """When it was started (UTC)."""
    updated_at: datetime
    """When its journal last changed (UTC)."""
    parent_id: str | None = None
    """The parent workflow's id, for a child workflow."""
    backend_note: str | None = None
    """Why the current activity is not running yet, as its backend reports it (e.g. "celery
    broker unreachable ...; retrying"); from the serving runtime's memory, not journaled."""

    @property
    def is_finished(self) -> bool:
        """True once the instance reached a terminal state."""
        return self.status.is_finished
