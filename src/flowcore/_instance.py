"""_Instance: what the runtime holds in memory for one unfinished workflow, and its running work."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flowcore.engine.events import (
    ActivityAttemptFailed,
    ActivityCompleted,
    ActivityFailed,
    WorkflowCanceled,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowTerminated,
)

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Sequence

    import anyio

    from flowcore.engine.events import Event
    from flowcore.engine.executor import WorkflowExecutor
    from flowcore.journal.projection import Projection

__all__ = ["Terminal", "_Instance", "retry_state"]

Terminal = WorkflowCompleted | WorkflowFailed | WorkflowCanceled | WorkflowTerminated
"""The events that end a workflow."""
TERMINAL_TYPES = (WorkflowCompleted, WorkflowFailed, WorkflowCanceled, WorkflowTerminated)


@dataclass(slots=True, eq=False)
class _Running:
    """One activity attempt loop in flight: how to stop it."""

    scope: anyio.CancelScope
    cancelled: threading.Event = field(default_factory=threading.Event)


@dataclass(slots=True, eq=False)
class _Instance:
    """A workflow held in memory while it is unfinished."""

    id: str
    projection: Projection
    done: asyncio.Future[Terminal]
    executor: WorkflowExecutor | None = None
    next_seq: int = 1
    last_event: Event | None = None
    retries: dict[int, tuple[int, float]] = field(default_factory=dict)
    """For recovery: step -> (next attempt, when it is due)."""
    activities: dict[int, _Running] = field(default_factory=dict)
    """Running activity loops by step."""
    timers: dict[int, anyio.CancelScope] = field(default_factory=dict)
    """Armed timers (and event-wait deadlines) by step."""
    children: dict[int, str] = field(default_factory=dict)
    """Child workflows awaited, step -> child id."""

    def cancel_work(self) -> None:
        """Stop every activity loop and timer of the instance (its run is over)."""
        for running in self.activities.values():
            running.cancelled.set()
            running.scope.cancel()
        for scope in self.timers.values():
            scope.cancel()
        self.activities.clear()
        self.timers.clear()

    def cancel_activity(self, step: int) -> None:
        """Stop one activity loop: async attempts are cancelled, sync ones see ``cancelled``."""
        running = self.activities.pop(step, None)
        if running is not None:
            running.cancelled.set()
            running.scope.cancel()

    def cancel_timer(self, step: int) -> None:
        """Disarm one timer."""
        scope = self.timers.pop(step, None)
        if scope is not None:
            scope.cancel()


def retry_state(history: Sequence[Event]) -> dict[int, tuple[int, float]]:
    """Steps whose last attempt failed and was not yet retried: step -> (next attempt, due)."""
    state: dict[int, tuple[int, float]] = {}
    for event in history:
        if isinstance(event, ActivityAttemptFailed):
            state[event.step] = (event.attempt + 1, event.retry_at)
        elif isinstance(event, ActivityCompleted | ActivityFailed):
            state.pop(event.step, None)
    return state
