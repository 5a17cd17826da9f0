"""The executor holds new commands to ``max_payload``; recorded ones replay whatever their size."""

from __future__ import annotations

from typing import Any

import pytest

import flowcore
import flowcore.testing
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


@activity
def pe_other(text: str) -> str:
    return text


@workflow
async def pe_fallback() -> str:
    try:
        return await pe_echo(BIG)
    except PayloadError:
        return await pe_other("a reference")


class TestCaughtRefusals:
    HISTORY = (started("pe_fallback"), scheduled(1, "pe_other", "a reference"))
    """Recorded under a 64-byte limit: the big call was refused, the fallback scheduled."""

    def test_a_caught_refusal_is_refused_again_on_replay(self):
        """Replayed under the same limit, the big call is refused again: the fallback matches."""
        ex = WorkflowExecutor(pe_fallback, "w", max_payload=LIMIT)
        [resumed] = ex.replay(self.HISTORY)
        assert isinstance(resumed, ScheduleActivity)
        assert (resumed.step, resumed.activity.name, resumed.recorded) == (1, "pe_other", True)

    def test_testing_replay_takes_the_recording_limit(self):
        """flowcore.testing.replay replays such a history given the recording runtime's limit."""
        flowcore.testing.replay(self.HISTORY, pe_fallback, max_payload_bytes=LIMIT)

    def test_a_higher_limit_changes_what_the_code_does(self):
        """Under a higher limit the refused call goes through: the history no longer matches."""
        with pytest.raises(flowcore.NondeterminismError) as info:
            flowcore.testing.replay(self.HISTORY, pe_fallback)
        assert info.value.step == 1
