"""The executor holds new commands to ``max_payload``; recorded ones replay whatever their size."""

from __future__ import annotations

from typing import Any

import flowcore
from flowcore import PayloadError, activity, workflow
from flowcore.engine.commands import CompleteWorkflow, FailWorkflow, ScheduleActivity
from flowcore.engine.events import CustomStatusSet
from flowcore.engine.executor import WorkflowExecutor
from tests.helpers import T0, completed, scheduled, started

LIMIT = 64
BIG = "x" * 100


@activity
def pe_echo(text: str) -> str:
    return text


@workflow
async def pe_flow() -> list[Any]:
    out: list[Any] = [len(await pe_echo(BIG))]
    try:
        flowcore.set_status(BIG)
    except PayloadError:
        out.append("status refused")
    try:
        out.append(len(await pe_echo(BIG)))
    except PayloadError:
        out.append("call refused")
    return out


class TestPayloadLimit:
    def test_a_new_oversize_call_is_thrown_in_and_takes_no_step(self):
        """Live, the oversize call raises in the workflow; the next command takes its step."""
        ex = WorkflowExecutor(pe_flow, "w", max_payload=LIMIT)
        [failed] = ex.start(started("pe_flow"))
        assert isinstance(failed, FailWorkflow)
        assert failed.failure.is_caused_by(PayloadError)
        assert "the argument list of activity 'pe_echo'" in failed.failure.message

    def test_recorded_commands_replay_whatever_their_size(self):
        """Replayed under a smaller limit, recorded calls and statuses are reissued, not refused."""
        history = [
            started("pe_flow"),
            scheduled(1, "pe_echo", BIG),
            completed(1, BIG),
            CustomStatusSet(at=T0, step=2, value=BIG),
            scheduled(3, "pe_echo", BIG),
        ]
        ex = WorkflowExecutor(pe_flow, "w", max_payload=LIMIT)
        [resumed] = ex.replay(history)
        assert isinstance(resumed, ScheduleActivity)
        assert (resumed.step, resumed.recorded, resumed.encoded_args) == (3, True, [BIG])

    def test_steps_after_the_recorded_ones_are_checked(self):
        """Past the history's end the limit holds again: a new oversize status is refused."""
        history = [started("pe_flow"), scheduled(1, "pe_echo", BIG), completed(1, BIG)]
        ex = WorkflowExecutor(pe_flow, "w", max_payload=LIMIT)
        [done] = ex.replay(history)
        assert isinstance(done, CompleteWorkflow)
        assert done.result == [100, "status refused", "call refused"]
