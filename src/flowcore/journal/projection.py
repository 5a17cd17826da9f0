"""Pure projection of a workflow's events onto its status row (status, current activity, times).

A ``WorkflowStarted`` that arrives after the first one starts a new run of the same instance
(continue-as-new, journaled as a reset): it begins afresh (running, no output, error, custom status
or pending activities) but keeps the first run's ``created_at``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Final, final

from flowcore._frozen import quick_new
from flowcore._status import WorkflowState, WorkflowStatus, from_timestamp
from flowcore.engine.events import (
    ActivityAttemptFailed,
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    CancelRequested,
    ChildCompleted,
    ChildFailed,
    ChildScheduled,
    CustomStatusSet,
    Event,
    EventReceived,
    EventWaitStarted,
    TimerFired,
    TimerScheduled,
    WorkflowCanceled,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowParked,
    WorkflowResumed,
    WorkflowStarted,
    WorkflowSuspended,
    WorkflowTerminated,
    json_text,
)
from flowcore.journal.base import StatusRow

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = ["Projection"]

_RUNNING: Final = WorkflowState.RUNNING
_PARKED: Final = WorkflowState.PARKED
"""States the hot path tests and sets (a member looked up on its enum class is slow)."""


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
    custom_status: Any = None
    """The value last given to ``flowcore.set_status()`` (encoded JSON)."""
    created_at: float = 0.0
    """When the first run started (0.0 until a WorkflowStarted is applied, unless seeded)."""
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
        handler = self._HANDLERS.get(type(event))
        if handler is None:  # a subclass of an event kind: handled as its nearest base
            found = (self._HANDLERS[cls] for cls in type(event).__mro__ if cls in self._HANDLERS)
            handler = next(found, Projection._on_other)
        handler(self, event)

    def _on_activity_scheduled(self, event: ActivityScheduled) -> None:
        self.pending[event.step] = event.name
        if self.status is _PARKED:
            self._unpark()

    def _on_activity_ended(self, event: ActivityCompleted | ActivityFailed) -> None:
        self.pending.pop(event.step, None)
        if self.status is _PARKED:
            self._unpark()

    def _on_custom_status(self, event: CustomStatusSet) -> None:
        self.custom_status = event.value
        if self.status is _PARKED:
            self._unpark()

    def _on_progress(self, _event: Event) -> None:
        if self.status is _PARKED:
            self._unpark()

    def _on_parked(self, event: WorkflowParked) -> None:
        self.status, self.error = WorkflowState.PARKED, event.reason

    def _on_suspended(self, _event: WorkflowSuspended) -> None:
        self.status = WorkflowState.SUSPENDED

    def _on_resumed(self, _event: WorkflowResumed) -> None:
        self.status, self.error = WorkflowState.RUNNING, None

    def _on_other(self, _event: Event) -> None:
        pass

    def _start(self, event: WorkflowStarted) -> None:
        """Start the first run, or a new run after a reset (keeping the first run's created_at)."""
        self.name, self.version, self.input = event.name, event.version, event.input
        self.parent_id = event.parent_id
        self.created_at = self.created_at or event.at
        self.status = _RUNNING
        self.output = self.error = self.custom_status = None
        self.pending.clear()

    def _finish(
        self, event: WorkflowCompleted | WorkflowFailed | WorkflowCanceled | WorkflowTerminated
    ) -> None:
        """Record a terminal event: nothing is pending any more."""
        self.pending.clear()
        match event:
            case WorkflowCompleted():
                self.status, self.output = WorkflowState.COMPLETED, event.result
            case WorkflowFailed():
                self.status, self.error = WorkflowState.FAILED, str(event.failure)
            case WorkflowCanceled():
                self.status, self.output = WorkflowState.CANCELED, event.result
                self.error = f"canceled: {event.reason}" if event.reason else "canceled"
            case WorkflowTerminated():
                self.status = WorkflowState.TERMINATED
                self.error = f"terminated: {event.reason}" if event.reason else "terminated"

    def _unpark(self) -> None:
        """Progress of the workflow's code ends a park (a suspension ends only on resume).

        The handlers test for a park themselves: a call per event costs more than the test.
        """
        self.status, self.error = _RUNNING, None

    _HANDLERS: ClassVar[dict[type[Any], Callable[[Projection, Any], None]]] = {
        WorkflowStarted: _start,
        ActivityScheduled: _on_activity_scheduled,
        ActivityCompleted: _on_activity_ended,
        ActivityFailed: _on_activity_ended,
        CustomStatusSet: _on_custom_status,
        TimerScheduled: _on_progress,
        TimerFired: _on_progress,
        EventWaitStarted: _on_progress,
        ChildScheduled: _on_progress,
        ChildCompleted: _on_progress,
        ChildFailed: _on_progress,
        WorkflowCompleted: _finish,
        WorkflowFailed: _finish,
        WorkflowCanceled: _finish,
        WorkflowTerminated: _finish,
        WorkflowParked: _on_parked,
        WorkflowSuspended: _on_suspended,
        WorkflowResumed: _on_resumed,
        ActivityAttemptFailed: _on_other,
        EventReceived: _on_other,
        CancelRequested: _on_other,
    }
    """Event class -> how it changes the row: one dict lookup per event, not a chain of class tests
    (the last three kinds change only ``updated_at``)."""

    def snapshot(self) -> WorkflowStatus:
        """The public status record."""
        return WorkflowStatus(
            id=self.id,
            name=self.name,
            version=self.version,
            status=self.status,
            current_activity=self.current_activity,
            custom_status=self.custom_status,
            error=self.error,
            input=self.input,
            output=self.output,
            created_at=from_timestamp(self.created_at),
            updated_at=from_timestamp(self.updated_at),
            parent_id=self.parent_id,
        )

    def row(self) -> StatusRow:
        """The row to store, frozen as it is now."""
        cached = self._input_json
        if cached is None or cached[0] is not self.input:
            cached = self._input_json = (self.input, _json_text(self.input))
        output, error, custom = self.output, self.error, self.custom_status
        pending = self.pending
        current = pending[next(reversed(pending))] if pending else None
        return _new_row(
            id=self.id,
            name=self.name,
            version=self.version,
            status=_STATUS_VALUES[self.status],
            input=cached[1],
            output=None if output is None else json_text(output),
            error=error if error is None or error.isascii() else _escaped(error),
            current_activity=(
                current if current is None or current.isascii() else _escaped(current)
            ),
            created_at=self.created_at,
            updated_at=self.updated_at,
            parent_id=self.parent_id,
            custom_status=None if custom is None else json_text(custom),
        )


_new_row: Final = quick_new(StatusRow)
"""``StatusRow(...)`` without the class call: one row is made per append (see flowcore._frozen)."""

_STATUS_VALUES: Final = {state: state.value for state in WorkflowState}
"""State -> its stored value (``.value`` of an enum member is a Python-level property)."""


def _escaped(text: str) -> str:
    """Text SQLite can store: a lone surrogate (say, in an exception message) is escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _json_text(value: Any) -> str | None:
    if value is None:
        return None
    return json_text(value)
