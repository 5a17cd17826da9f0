"""Projection.apply finds each event's handler by its class: every kind is covered."""

from __future__ import annotations

import dataclasses

from flowcore._status import WorkflowState
from flowcore.engine.events import EVENT_TYPES, ActivityScheduled, WorkflowParked
from flowcore.journal.projection import Projection
from tests.helpers import started


class TestDispatch:
    def test_every_kind_has_a_handler(self):
        """A new event kind must say how it changes the row (or that it changes only the time)."""
        assert set(Projection._HANDLERS) == set(EVENT_TYPES.values())

    def test_subclass_is_applied_as_its_base(self):
        """An instance of a subclass of an event kind changes the row as the kind does."""

        @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
        class Scheduled(ActivityScheduled):
            pass

        proj = Projection.from_events("w1", [started("wf", None, at=1.0)])
        proj.apply(Scheduled(at=2.0, step=1, name="charge"))
        assert (proj.current_activity, proj.updated_at) == ("charge", 2.0)

    def test_park_then_progress(self):
        """A park sets the status and reason; the next scheduling ends it."""
        proj = Projection.from_events("w1", [started("wf", None, at=1.0)])
        proj.apply(WorkflowParked(at=2.0, reason="changed code", step=1))
        assert (proj.status, proj.error) == (WorkflowState.PARKED, "changed code")
        proj.apply(ActivityScheduled(at=3.0, step=2, name="charge"))
        assert (proj.status, proj.error) == (WorkflowState.RUNNING, None)
