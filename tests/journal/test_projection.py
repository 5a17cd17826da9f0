"""The pure fold of events onto a status row: lifecycle states, custom status, continue-as-new."""

from __future__ import annotations

import pytest

from flowcore._status import WorkflowState
from flowcore.engine.events import (
    CancelRequested,
    ChildCompleted,
    ChildScheduled,
    CustomStatusSet,
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
)
from flowcore.errors import FailureInfo
from flowcore.journal._batch import to_status
from flowcore.journal.projection import Projection
from tests.helpers import completed, scheduled, started


def fold(*events):
    return Projection.from_events("w1", events)


class TestStart:
    def test_started_is_running(self):
        """The first WorkflowStarted fills the row and sets created_at."""
        proj = fold(started("wf", {"n": 1}, version="2", at=10.0))
        assert (proj.name, proj.version, proj.input) == ("wf", "2", {"n": 1})
        assert proj.status is WorkflowState.RUNNING
        assert proj.created_at == proj.updated_at == 10.0
        assert proj.custom_status is None
        assert proj.row().custom_status is None

    def test_new_run_keeps_created_at(self):
        """A WorkflowStarted after a finished run (continue-as-new) keeps the first created_at."""
        proj = fold(
            started("wf", {"n": 1}, at=10.0),
            CustomStatusSet(at=11.0, step=1, value="halfway"),
            scheduled(2, "charge", at=12.0),
            WorkflowFailed(at=13.0, failure=FailureInfo(type_name="builtins.E", message="x")),
            started("wf", {"n": 2}, version="3", at=20.0),
        )
        assert proj.created_at == 10.0
        assert proj.updated_at == 20.0
        assert (proj.version, proj.input) == ("3", {"n": 2})
        assert proj.status is WorkflowState.RUNNING
        assert (proj.output, proj.error, proj.custom_status) == (None, None, None)
        assert proj.current_activity is None

    def test_new_run_clears_output(self):
        """A new run after a completed one drops the previous output and is running again."""
        proj = fold(started("wf", at=1.0), WorkflowCompleted(at=2.0, result={"next": 1}))
        assert proj.output == {"next": 1}
        proj.apply(started("wf", {"next": 1}, at=3.0))
        assert (proj.status, proj.output, proj.created_at) == (WorkflowState.RUNNING, None, 1.0)

    def test_seeded_created_at_is_kept(self):
        """A projection seeded with the stored created_at keeps it through a reset history."""
        proj = Projection("w1", created_at=5.0)
        proj.apply(started("wf", at=50.0))
        assert proj.created_at == 5.0
        assert proj.row().created_at == 5.0


class TestCustomStatus:
    def test_set_and_replace(self):
        """CustomStatusSet records the latest value, in the snapshot and as JSON text in the row."""
        proj = fold(started("wf"), CustomStatusSet(at=2.0, step=1, value={"done": 1}))
        proj.apply(CustomStatusSet(at=3.0, step=2, value={"done": 2, "of": "é"}))
        assert proj.custom_status == {"done": 2, "of": "é"}
        assert proj.snapshot().custom_status == {"done": 2, "of": "é"}
        row = proj.row()
        assert row.custom_status == '{"done":2,"of":"\\u00e9"}'  # ASCII JSON: always storable
        assert to_status(row) == proj.snapshot()

    def test_set_to_none(self):
        """Setting None clears the stored value."""
        proj = fold(
            started("wf"),
            CustomStatusSet(at=2.0, step=1, value=[1]),
            CustomStatusSet(at=3.0, step=2, value=None),
        )
        assert proj.custom_status is None
        assert proj.row().custom_status is None

    def test_does_not_touch_current_activity(self):
        """A custom status leaves the pending activity alone."""
        proj = fold(
            started("wf"), scheduled(1, "charge"), CustomStatusSet(at=2.0, step=2, value="x")
        )
        assert proj.current_activity == "charge"


class TestSuspend:
    def test_suspend_and_resume(self):
        """WorkflowSuspended -> SUSPENDED (not finished); WorkflowResumed -> RUNNING."""
        proj = fold(started("wf"), scheduled(1, "charge"), WorkflowSuspended(at=5.0))
        assert proj.status is WorkflowState.SUSPENDED
        assert not proj.snapshot().is_finished
        assert proj.current_activity == "charge"
        assert proj.row().status == "suspended"
        proj.apply(WorkflowResumed(at=6.0))
        assert proj.status is WorkflowState.RUNNING
        assert proj.updated_at == 6.0

    @pytest.mark.parametrize(
        "event",
        [
            completed(1, "ok"),
            EventReceived(at=7.0, name="go", payload=1),
            TimerFired(at=7.0, step=2),
            CustomStatusSet(at=7.0, step=3, value=1),
        ],
        ids=lambda e: e.kind,
    )
    def test_events_while_suspended_stay_suspended(self, event):
        """Events journaled while suspended do not end the suspension."""
        proj = fold(started("wf"), scheduled(1, "charge"), WorkflowSuspended(at=5.0), event)
        assert proj.status is WorkflowState.SUSPENDED

    def test_resume_clears_a_park_reason(self):
        """Resuming a workflow that was parked before its suspension starts it afresh."""
        proj = fold(
            started("wf"),
            WorkflowParked(at=2.0, reason="diverged"),
            WorkflowSuspended(at=3.0),
        )
        assert (proj.status, proj.error) == (WorkflowState.SUSPENDED, "diverged")
        proj.apply(WorkflowResumed(at=4.0))
        assert (proj.status, proj.error) == (WorkflowState.RUNNING, None)


class TestCancelTerminate:
    def test_canceled_with_reason(self):
        """WorkflowCanceled -> CANCELED with its result as output and the reason as error."""
        proj = fold(
            started("wf"),
            scheduled(1, "charge"),
            CancelRequested(at=3.0, reason="user asked"),
        )
        assert proj.status is WorkflowState.RUNNING
        proj.apply(WorkflowCanceled(at=4.0, reason="user asked", result={"refunded": True}))
        assert proj.status is WorkflowState.CANCELED
        assert proj.snapshot().is_finished
        assert proj.output == {"refunded": True}
        assert proj.error == "canceled: user asked"
        assert proj.current_activity is None
        assert proj.pending == {}

    def test_canceled_without_reason(self):
        """Without a reason the error is just ``canceled``."""
        proj = fold(started("wf"), WorkflowCanceled(at=2.0))
        assert (proj.status, proj.output, proj.error) == (
            WorkflowState.CANCELED,
            None,
            "canceled",
        )

    def test_terminated(self):
        """WorkflowTerminated -> TERMINATED with the reason as error and nothing pending."""
        proj = fold(started("wf"), scheduled(1, "charge"), WorkflowTerminated(at=3.0, reason="ops"))
        assert proj.status is WorkflowState.TERMINATED
        assert proj.snapshot().is_finished
        assert proj.error == "terminated: ops"
        assert proj.current_activity is None

    def test_terminated_without_reason(self):
        """Without a reason the error is just ``terminated``."""
        proj = fold(started("wf"), WorkflowSuspended(at=2.0), WorkflowTerminated(at=3.0))
        assert (proj.status, proj.error) == (WorkflowState.TERMINATED, "terminated")


class TestCurrentActivity:
    def test_children_timers_and_waits_are_not_activities(self):
        """current_activity names activities only, not children, timers or event waits."""
        proj = fold(
            started("wf"),
            scheduled(1, "charge"),
            ChildScheduled(at=2.0, step=2, name="child", child_id="c1"),
            TimerScheduled(at=2.0, step=3, fire_at=100.0),
            EventWaitStarted(at=2.0, step=4, name="go"),
        )
        assert proj.current_activity == "charge"
        proj.apply(completed(1))
        assert proj.current_activity is None
        proj.apply(ChildCompleted(at=3.0, step=2, result=1))
        assert proj.current_activity is None


class TestPark:
    @pytest.mark.parametrize(
        "event",
        [
            TimerScheduled(at=5.0, step=1, fire_at=9.0),
            EventWaitStarted(at=5.0, step=1, name="go"),
            ChildScheduled(at=5.0, step=1, name="child", child_id="c1"),
            CustomStatusSet(at=5.0, step=1, value="fixed"),
        ],
        ids=lambda e: e.kind,
    )
    def test_new_commands_end_a_park(self, event):
        """Like ActivityScheduled, any new command of the (fixed) code ends a park."""
        proj = fold(started("wf"), WorkflowParked(at=2.0, reason="diverged"), event)
        assert (proj.status, proj.error) == (WorkflowState.RUNNING, None)

    def test_external_event_keeps_the_park(self):
        """An external event delivered to a parked workflow says nothing about its code."""
        proj = fold(
            started("wf"),
            WorkflowParked(at=2.0, reason="diverged"),
            EventReceived(at=3.0, name="go"),
            CancelRequested(at=4.0),
        )
        assert (proj.status, proj.error) == (WorkflowState.PARKED, "diverged")


def test_replay_equals_incremental():
    """Folding a history at once equals applying it event by event (a reset included)."""
    events = [
        started("wf", at=1.0),
        CustomStatusSet(at=2.0, step=1, value=1),
        WorkflowSuspended(at=3.0),
        WorkflowResumed(at=4.0),
        WorkflowStarted(at=5.0, name="wf", version="1", input=2),
        WorkflowCanceled(at=6.0, reason="r", result=3),
    ]
    proj = Projection("w1")
    rows = []
    for event in events:
        proj.apply(event)
        rows.append(proj.row())
    assert Projection.from_events("w1", events).row() == rows[-1]
    assert rows[-1].created_at == 1.0
