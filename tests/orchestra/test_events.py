"""Which report each journal event makes (the listener alone, on hand-built appends)."""

from __future__ import annotations

import json

import pytest

import flowcore
from flowcore import Runtime, workflow
from flowcore.engine import events as ev
from flowcore.errors import FailureInfo
from flowcore.orchestra import OrchestraReporter
from tests.helpers import Flow

BOOM = FailureInfo(type_name="builtins.ValueError", message="boom")


@pytest.fixture
def reporter(reporter_args):
    return OrchestraReporter(**reporter_args)


def messages(reporter, op):
    return [
        (b["status"], b["message"]) for b in (json.loads(r.body) for r in reporter.journaling(op))
    ]


class TestEvents:
    def test_retried_attempt_and_park(self, reporter):
        """A failed attempt is a RUNNING message; a parked workflow is FAILED with the reason."""
        flow = Flow("w1", name="orc_ev")
        assert messages(reporter, flow.start()) == [("RUNNING", "Workflow orc_ev started.")]
        assert messages(reporter, flow.schedule(1, activity="fetch")) == [
            ("RUNNING", "Activity fetch started.")
        ]
        failed = ev.ActivityAttemptFailed(at=3.0, step=1, attempt=1, failure=BOOM, retry_at=4.0)
        assert messages(reporter, flow.ops(failed)) == [
            ("RUNNING", "Activity fetch attempt 1 failed, retrying. Error: ValueError: boom")
        ]
        parked = ev.WorkflowParked(at=5.0, reason="step 2 was a timer, now an activity", step=2)
        assert messages(reporter, flow.ops(parked)) == [
            ("FAILED", ("Workflow orc_ev is parked and needs a code fix: step 2 was a timer, "
                        "now an activity")),
        ]  # fmt: skip

    def test_children_and_unchosen_workflows_are_silent(self, reporter, reporter_args):
        """A child (it has a parent) reports nothing by default; workflows=[...] filters by id."""
        child = Flow("c1", name="orc_child")
        op = child.ops(ev.WorkflowStarted(at=1.0, name="orc_child", version="1", parent_id="p"),
                       create=True)  # fmt: skip
        assert not reporter.journaling(op)
        chosen = OrchestraReporter(workflows=["mine"], **reporter_args)
        assert not chosen.journaling(Flow("other").start())
        assert len(chosen.journaling(Flow("mine").start())) == 1


@workflow
async def orc_again(n: int) -> int:
    if n == 0:
        flowcore.continue_as_new(1)
    return n


@workflow
async def orc_stuck() -> None:
    await flowcore.wait_event("never")


class TestLifecycle:
    async def test_continue_as_new_and_terminate(self, db_path, server, reporter_args):
        """Continue-as-new is a RUNNING message; terminate ends with CANCELLED."""
        async with Runtime(db_path, listeners=[OrchestraReporter(**reporter_args)]) as rt:
            assert await (await rt.start(orc_again, 0)).result(timeout=10) == 1
            await rt.start(orc_stuck, id="orc-stuck")
            await rt.terminate("orc-stuck", reason="enough")
        assert [(b["status"], b["message"]) for b in server.recorder.acknowledged()] == [
            ("RUNNING", "Workflow orc_again started."),
            ("RUNNING", "Workflow orc_again continued as new."),
            ("SUCCEEDED", "Workflow orc_again succeeded."),
            ("RUNNING", "Workflow orc_stuck started."),
            ("CANCELLED", "Workflow orc_stuck was terminated: enough."),
        ]
