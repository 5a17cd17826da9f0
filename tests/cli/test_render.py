"""The timeline the CLI's ``history`` and the web dashboard draw from a history."""

from __future__ import annotations

from flowcore import _cli_render as render
from flowcore.engine.events import (
    ActivityScheduled,
    EventReceived,
    EventWaitStarted,
    TimerScheduled,
    WorkflowCompleted,
    WorkflowStarted,
)


def _race(*ending: object) -> list[object]:
    """An event raced against a timer (``first``); the event wins at t=5."""
    return [
        WorkflowStarted(at=0.0, name="wf", version="1", input=None),
        EventWaitStarted(at=0.0, step=1, name="go", deadline=None),
        TimerScheduled(at=0.0, step=2, fire_at=86400.0),
        EventReceived(at=5.0, name="go", payload=1),
        ActivityScheduled(at=5.0, step=3, name="after", args=[], kwargs=None, op="3"),
        *ending,
    ]


def test_what_a_finished_run_still_waited_on_is_abandoned():
    """A race's losing timer, never fired, is not shown waiting after the run completed."""
    items = render.timeline(_race(WorkflowCompleted(at=6.0, result=None)))
    states = {(i.what, i.step): i.state for i in items if i.step is not None}
    assert states == {("wait_event", 1): "received", ("timer", 2): "abandoned",
                      ("activity", 3): "abandoned"}  # fmt: skip
    lines = "\n".join(render.timeline_lines(items))
    assert "timer                          abandoned after 6.000s" in lines
    assert "until" not in lines


def test_a_running_workflow_keeps_its_timer_waiting():
    """While the run goes on the timer may still be pending (a gather): shown waiting."""
    items = render.timeline(_race())
    timer = next(i for i in items if i.what == "timer")
    assert (timer.state, timer.next_at) == ("waiting", 86400.0)
