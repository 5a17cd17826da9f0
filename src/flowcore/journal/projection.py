"""Pure projection of a workflow's events onto its status row (status, current activity, times)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, final

from flowcore._status import WorkflowState, WorkflowStatus, from_timestamp
from flowcore.engine.events import (
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    Event,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowParked,
    WorkflowStarted,
)
from flowcore.journal.base import StatusRow

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["Projection"]


@final
@dataclass(slots=True)
class Projection:
    """The status row of one workflow, folded from its events; rebuildable from the journal."""

    id: str
    name: str = ""
    version: str = ""
    status: WorkflowState = WorkflowState.PENDING
    input: Any = None
    output: Any = None
    error: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    parent_id: str | None = None
    pending: dict[int, str] = field(default_factory=dict)
    """Activities scheduled and not yet finished, step -> name, in schedule order."""
    _input_json: tuple[Any, str | None] | None = None
    """The input and its JSON text, encoded once rather than at every step."""

    @classmethod
    def from_events(cls, workflow_id: str, events: Iterable[Event]) -> Projection:
        """Fold a whole history."""
        proj = cls(workflow_id)
        for event in events:
            proj.apply(event)
        return proj

    @property
    def current_activity(self) -> str | None:
        """The latest scheduled activity still pending, if any."""
        if not self.pending:
            return None
        return self.pending[next(reversed(self.pending))]

    def apply(self, event: Event) -> None:
        """Fold one event into the row."""
        self.updated_at = event.at
        match event:
            case WorkflowStarted():
                self.name, self.version, self.input = event.name, event.version, event.input
                self.parent_id, self.created_at = event.parent_id, event.at
                self.status = WorkflowState.RUNNING
            case ActivityScheduled():
                self.pending[event.step] = event.name
                self._resume()
            case ActivityCompleted() | ActivityFailed():
                self.pending.pop(event.step, None)
                self._resume()
            case WorkflowCompleted():
                self.status, self.output = WorkflowState.COMPLETED, event.result
                self.pending.clear()
            case WorkflowFailed():
                self.status, self.error = WorkflowState.FAILED, str(event.failure)
                self.pending.clear()
            case WorkflowParked():
                self.status, self.error = WorkflowState.PARKED, event.reason
            case _:
                pass

    def _resume(self) -> None:
        if self.status is WorkflowState.PARKED:
            self.status, self.error = WorkflowState.RUNNING, None

    def snapshot(self) -> WorkflowStatus:
        """The public status record."""
        return WorkflowStatus(
            id=self.id,
            name=self.name,
            version=self.version,
            status=self.status,
            current_activity=self.current_activity,
            error=self.error,
            input=self.input,
            output=self.output,
            created_at=from_timestamp(self.created_at),
            updated_at=from_timestamp(self.updated_at),
            parent_id=self.parent_id,
        )

    def _input_text(self) -> str | None:
        cached = self._input_json
        if cached is None or cached[0] is not self.input:
            cached = (self.input, _json_text(self.input))
            self._input_json = cached
        return cached[1]

    def row(self) -> StatusRow:
        """The row to store, frozen as it is now."""
        return StatusRow(
            id=self.id,
            name=self.name,
            version=self.version,
            status=self.status.value,
            input=self._input_text(),
            output=_json_text(self.output),
            error=self.error,
            current_activity=self.current_activity,
            created_at=self.created_at,
            updated_at=self.updated_at,
            parent_id=self.parent_id,
        )


def _json_text(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
