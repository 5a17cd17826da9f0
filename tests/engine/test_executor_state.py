"""What an executor keeps per instance: replay bookkeeping exists only while replaying.

A live run carries no record of a history (recorded schedules, reissued steps, cancellations
seen on replay) and no queue of held events until one is held; after a replay the executor
goes on exactly as a live one.
"""

from __future__ import annotations

import pytest

from flowcore import activity, workflow
from flowcore.engine.commands import CompleteWorkflow, ScheduleActivity
from flowcore.engine.events import WorkflowResumed, WorkflowSuspended
from flowcore.engine.executor import WorkflowExecutor
from flowcore.errors import NondeterminismError
from tests.helpers import T0, completed, scheduled, started


@activity
def state_double(x: int) -> int:
    return 2 * x


@workflow
async def state_chain(x: int) -> int:
    a = await state_double(x)
    b = await state_double(a)
    return await state_double(b)


def history(steps: int) -> list:
    """The chain's history after ``steps`` completed activities (and the next scheduled)."""
    events: list = [started("state_chain", 1)]
    value = 1
    for step in range(1, steps + 2):
        events.append(scheduled(step, "state_double", value))
        if step <= steps:
            value *= 2
            events.append(completed(step, value))
    return events


class TestLiveState:
    def test_live_run_holds_no_replay_state(self):
        """Starting and stepping a live instance creates no replay bookkeeping."""
        executor = WorkflowExecutor(state_chain, "s1")
        executor.start(started("state_chain", 1))
        executor.apply(completed(1, 2))
        assert executor._replay is None
        assert executor._held is None

    def test_replay_then_live_continues_numbering(self):
        """After a replay the next commands get the next steps and results flow as in a live run."""
        executor = WorkflowExecutor(state_chain, "s2")
        resumed = executor.replay(history(1))
        assert [(c.step, c.recorded) for c in resumed if isinstance(c, ScheduleActivity)] == [
            (2, True)
        ]
        assert executor._replay is None
        third = executor.apply(completed(2, 4))
        assert [(c.step, c.recorded, c.encoded_args) for c in third] == [(3, False, [4])]
        assert executor.apply(completed(3, 8)) == [CompleteWorkflow(result=8)]

    def test_events_held_while_suspended_are_applied_on_resume(self):
        """A suspension holds outcomes until the resume, then applies them in order."""
        executor = WorkflowExecutor(state_chain, "s3")
        executor.start(started("state_chain", 1))
        assert executor.apply(WorkflowSuspended(at=T0)) == []
        assert executor.apply(completed(1, 2)) == []
        commands = executor.apply(WorkflowResumed(at=T0 + 1))
        assert [(c.step, c.encoded_args) for c in commands] == [(2, [2])]
        assert executor._held is None

    def test_replay_still_detects_a_changed_step(self):
        """A history whose step 2 ran another activity is refused, naming the step."""
        events = history(1)
        events[-1] = scheduled(2, "state_other", 2)
        with pytest.raises(NondeterminismError) as info:
            WorkflowExecutor(state_chain, "s4").replay(events)
        assert info.value.step == 2
