"""OrchestraReporter end to end: a real runtime reporting to a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from contextlib import closing

import pytest

import flowcore
from flowcore import Runtime, activity, workflow
from flowcore.orchestra import OrchestraReporter, set_output
from tests.helpers import assert_eventually


@activity
async def orc_double(x: int) -> int:
    return x * 2


@activity
async def orc_explode(x: int) -> int:
    raise ValueError("boom " * 100)


GATE: dict[str, asyncio.Event] = {}


@activity
async def orc_gate() -> int:
    await GATE["open"].wait()
    return 1


@workflow
async def orc_gated() -> int:
    return await orc_gate()


@workflow
async def orc_flow(x: int) -> int:
    y = await orc_double(x)
    await set_output("doubled", y)
    return y + 1


@workflow
async def orc_failing(x: int) -> int:
    return await orc_explode(x)


@activity
async def orc_bad_text(x: int) -> int:
    raise ValueError(f"bad \ud800 text {x}")


@workflow
async def orc_failing_badly(x: int) -> int:
    return await orc_bad_text(x)


@workflow
async def orc_waiting() -> str:
    await flowcore.wait_event("never")
    return "unreachable"


@workflow
async def orc_parent() -> int:
    return await flowcore.child(orc_flow, 1)


def status(run_id, value, message):
    body = {"event_type": "UPDATE_STATUS", "metadata": {}, "task_run_id": run_id}
    body["status"] = value
    body["message"] = message
    return body


def output(run_id, name, value):
    body = {"event_type": "SET_OUTPUT", "metadata": {}, "task_run_id": run_id}
    body["output_name"] = name
    body["output_value"] = value
    return body


async def delivered(server, count):
    await assert_eventually(
        lambda: len(server.recorder.acknowledged()) >= count,
        message=f"{count} reports acknowledged",
    )
    return server.recorder.acknowledged()


def outbox_rows(db):
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute("SELECT count(*) FROM outbox").fetchone()[0]


class TestSequences:
    async def test_success_with_outputs(self, db_path, server, run_id, api_key, reporter_args):
        """A successful run: RUNNING, activity progress, outputs, then SUCCEEDED, in order."""
        reporter = OrchestraReporter(result_output="result", **reporter_args)
        async with Runtime(db_path, listeners=[reporter]) as rt:
            assert await (await rt.start(orc_flow, 2)).result(timeout=10) == 5
            got = await delivered(server, 6)
        assert got == [
            status(run_id, "RUNNING", "Workflow orc_flow started."),
            status(run_id, "RUNNING", "Activity orc_double started."),
            status(run_id, "RUNNING", "Activity orc_double succeeded."),
            output(run_id, "doubled", 4),
            output(run_id, "result", 5),
            status(run_id, "SUCCEEDED", "Workflow orc_flow succeeded."),
        ]
        requests = server.recorder.requests
        assert len(requests) == 6
        assert {(r.method, r.path, r.authorization) for r in requests} == {
            ("POST", "/webhook", f"Bearer {api_key}")
        }
        assert outbox_rows(db_path) == 0

    async def test_failure_message_is_truncated(self, db_path, server, run_id, reporter_args):
        """A failed run ends with FAILED and the error cut to 250 characters."""
        async with Runtime(db_path, listeners=[OrchestraReporter(**reporter_args)]) as rt:
            with pytest.raises(flowcore.WorkflowFailedError):
                await (await rt.start(orc_failing, 1)).result(timeout=10)
            got = await delivered(server, 4)
        assert got[:2] == [
            status(run_id, "RUNNING", "Workflow orc_failing started."),
            status(run_id, "RUNNING", "Activity orc_explode started."),
        ]
        assert got[2]["status"] == "RUNNING"
        assert got[2]["message"].startswith("Activity orc_explode failed. Error: ValueError: boom")
        final = got[3]
        assert final["status"] == "FAILED"
        prefix = "Workflow orc_failing failed. Error: "
        assert final["message"].startswith(prefix + "ActivityError")
        assert len(final["message"]) == len(prefix) + 250
        assert len(got) == 4

    async def test_error_with_a_lone_surrogate_is_reported(self, db_path, server, reporter_args):
        """An error message holding a lone surrogate is committed (escaped JSON) and sent."""
        async with Runtime(db_path, listeners=[OrchestraReporter(**reporter_args)]) as rt:
            with pytest.raises(flowcore.WorkflowFailedError):
                await (await rt.start(orc_failing_badly, 1)).result(timeout=10)
            got = await delivered(server, 4)
            assert await (await rt.start(orc_flow, 1)).result(timeout=10) == 3  # still healthy
        assert got[3]["status"] == "FAILED"
        assert "bad \ud800 text 1" in got[3]["message"]

    async def test_cancel(self, db_path, server, run_id, reporter_args):
        """A canceled run ends with CANCELLED and the reason."""
        async with Runtime(db_path, listeners=[OrchestraReporter(**reporter_args)]) as rt:
            handle = await rt.start(orc_waiting, id="orc-cancel")
            await rt.cancel("orc-cancel", reason="operator said so")
            with pytest.raises(flowcore.WorkflowCanceledError):
                await handle.result(timeout=10)
            got = await delivered(server, 2)
        assert got == [
            status(run_id, "RUNNING", "Workflow orc_waiting started."),
            status(run_id, "CANCELLED", "Workflow orc_waiting was canceled: operator said so."),
        ]

    async def test_children_are_not_reported_by_default(self, db_path, server, reporter_args):
        """Only top-level workflows report; a child's activities are not the task run's."""
        async with Runtime(db_path, listeners=[OrchestraReporter(**reporter_args)]) as rt:
            assert await (await rt.start(orc_parent)).result(timeout=10) == 3
        assert [b["message"] for b in server.recorder.acknowledged()] == [
            "Workflow orc_parent started.",
            "Workflow orc_parent succeeded.",
        ]

    async def test_only_the_chosen_workflows(self, db_path, server, reporter_args):
        """With workflows=[...], other instances report nothing."""
        reporter = OrchestraReporter(workflows=["orc-mine"], **reporter_args)
        async with Runtime(db_path, listeners=[reporter]) as rt:
            await (await rt.start(orc_flow, 1, id="orc-other")).result(timeout=10)
            await (await rt.start(orc_flow, 1, id="orc-mine")).result(timeout=10)
        assert len(server.recorder.acknowledged()) == 5
        assert outbox_rows(db_path) == 0


class TestDelivery:
    async def test_500s_then_recovering(self, db_path, server, reporter_args):
        """Failed posts are retried with backoff until a 2xx; order is kept, none is lost."""
        server.recorder.script = [500, 503, 502, 200, 500, 429]
        async with Runtime(db_path, listeners=[OrchestraReporter(**reporter_args)]) as rt:
            assert await (await rt.start(orc_flow, 2)).result(timeout=10) == 5
            got = await delivered(server, 5)
        assert [b.get("message", b.get("output_name")) for b in got] == [
            "Workflow orc_flow started.",
            "Activity orc_double started.",
            "Activity orc_double succeeded.",
            "doubled",
            "Workflow orc_flow succeeded.",
        ]
        answered = [r.answered for r in server.recorder.requests]
        assert answered == [500, 503, 502, 200, 500, 429, 200, 200, 200, 200]
        bodies = server.recorder.bodies()
        assert bodies[0] == bodies[1] == bodies[2] == bodies[3]  # the same report, retried

    async def test_hanging_endpoint(self, db_path, server, reporter_args):
        """A hanging webhook neither blocks the workflow nor the runtime; the timeout retries."""
        server.recorder.script = ["hang"]
        reporter_args["timeout"] = 1.0
        async with Runtime(db_path, listeners=[OrchestraReporter(**reporter_args)]) as rt:
            assert await (await rt.start(orc_flow, 2)).result(timeout=10) == 5
            assert server.recorder.acknowledged() == []  # done while the first report hangs
            got = await delivered(server, 5)
        first, second = server.recorder.requests[:2]
        assert first.body == second.body == got[0]
        assert first.answered is None  # still held when the client gave up and retried
        assert second.at - first.at >= 1.0  # the timeout, then a short backoff
        assert [b.get("status") for b in got][-1] == "SUCCEEDED"

    async def test_refused_report_is_dropped(self, db_path, server, reporter_args):
        """A 4xx other than 401/403 (a request Orchestra never takes) is dropped, not retried."""
        server.recorder.script = [400]
        async with Runtime(db_path, listeners=[OrchestraReporter(**reporter_args)]) as rt:
            await (await rt.start(orc_flow, 2)).result(timeout=10)
            got = await delivered(server, 4)
        assert [r.answered for r in server.recorder.requests] == [400, 200, 200, 200, 200]
        assert got[0]["message"] == "Activity orc_double started."

    @pytest.mark.parametrize("code", [401, 403, 301, 308])
    async def test_rejected_key_keeps_the_reports(self, db_path, server, reporter_args, code):
        """A 401/403 (the key) or a redirect (the URL) is not about the report: it is retried."""
        server.recorder.script = [code, code]
        async with Runtime(db_path, listeners=[OrchestraReporter(**reporter_args)]) as rt:
            await (await rt.start(orc_flow, 2)).result(timeout=10)
            got = await delivered(server, 5)
        assert [r.answered for r in server.recorder.requests][:3] == [code, code, 200]
        assert got[0]["message"] == "Workflow orc_flow started."
        assert got[-1]["status"] == "SUCCEEDED"
        assert outbox_rows(db_path) == 0

    async def test_down_on_close_then_sent_by_the_next_runtime(
        self, db_path, server, reporter_args
    ):
        """Reports undelivered when the runtime closes stay in the outbox for the next one."""
        server.recorder.default = 503
        reporter = OrchestraReporter(drain_timeout=0.2, **reporter_args)
        async with Runtime(db_path, listeners=[reporter]) as rt:
            await (await rt.start(orc_flow, 2)).result(timeout=10)
        assert server.recorder.acknowledged() == []
        assert outbox_rows(db_path) == 5
        server.recorder.default = 200
        async with Runtime(db_path, listeners=[OrchestraReporter(**reporter_args)]):
            got = await delivered(server, 5)
        assert got[-1]["status"] == "SUCCEEDED"
        assert len(server.recorder.acknowledged()) == 5
        assert outbox_rows(db_path) == 0

    async def test_without_a_listener_no_outbox(self, db_path):
        """A runtime without listeners writes no outbox rows."""
        async with Runtime(db_path) as rt:
            await (await rt.start(orc_flow, 2)).result(timeout=10)
        assert outbox_rows(db_path) == 0

    async def test_in_memory_journal(self, server, reporter_args):
        """The in-memory journal keeps an outbox too."""
        from flowcore.journal.memory import InMemoryJournal

        reporter = OrchestraReporter(**reporter_args)
        async with Runtime(journal=InMemoryJournal(), listeners=[reporter]) as rt:
            await (await rt.start(orc_flow, 2)).result(timeout=10)
            got = await delivered(server, 5)
        assert got[-1]["status"] == "SUCCEEDED"

    async def test_a_broken_listener_never_fails_a_workflow(self, db_path):
        """An exception from a listener is logged; the workflow completes."""

        class Broken:
            async def open(self, journal):
                pass

            def recovered(self, workflow_id, history):
                pass

            def journaling(self, _op):
                raise RuntimeError("listener bug")

            def committed(self):
                pass

            async def close(self):
                pass

        async with Runtime(db_path, listeners=[Broken()]) as rt:
            assert await (await rt.start(orc_flow, 2)).result(timeout=10) == 5


class TestRecovery:
    async def test_activity_running_across_a_restart(self, db_path, server, reporter_args):
        """An activity started before a restart is reported by name when it ends after it."""
        GATE["open"] = asyncio.Event()
        async with Runtime(db_path, listeners=[OrchestraReporter(**reporter_args)]) as rt:
            await rt.start(orc_gated, id="orc-gated")
            await delivered(server, 2)
        async with Runtime(db_path, listeners=[OrchestraReporter(**reporter_args)]) as rt:
            GATE["open"].set()
            assert await rt.result("orc-gated", timeout=10) == 1
            got = await delivered(server, 5)
        assert [b["message"] for b in got] == [
            "Workflow orc_gated started.",
            "Activity orc_gate started.",
            "Workflow orc_gated resumed.",
            "Activity orc_gate succeeded.",
            "Workflow orc_gated succeeded.",
        ]

    async def test_a_new_task_run_hears_running_first(self, db_path, server, reporter_args):
        """A runtime restarted for another task run reports RUNNING before the outcome."""
        async with Runtime(db_path, listeners=[OrchestraReporter(**reporter_args)]) as rt:
            await rt.start(orc_waiting, id="orc-w")
            await delivered(server, 1)
        second = {**reporter_args, "task_run_id": str(uuid.uuid4())}
        async with Runtime(db_path, listeners=[OrchestraReporter(**second)]) as rt:
            await rt.cancel("orc-w")
            got = (await delivered(server, 3))[1:]
        assert got == [
            status(second["task_run_id"], "RUNNING", "Workflow orc_waiting resumed."),
            status(second["task_run_id"], "CANCELLED", "Workflow orc_waiting was canceled."),
        ]

    async def test_workflows_left_evicted_at_open_hear_running(
        self, db_path, server, reporter_args
    ):
        """Idle workflows recovery leaves evicted (over max_cached_workflows) report RUNNING too."""
        async with Runtime(db_path, listeners=[OrchestraReporter(**reporter_args)]) as rt:
            for i in range(3):
                await rt.start(orc_waiting, id=f"orc-e{i}")
            await delivered(server, 3)
        second = {**reporter_args, "task_run_id": str(uuid.uuid4())}
        reporter = OrchestraReporter(**second)
        async with Runtime(db_path, listeners=[reporter], max_cached_workflows=1) as rt:
            got = (await delivered(server, 6))[3:]
            assert sum(1 for i in range(3) if rt._instances[f"orc-e{i}"].evicted) >= 1
        assert (
            got == [status(second["task_run_id"], "RUNNING", "Workflow orc_waiting resumed.")] * 3
        )

    async def test_unreported_workflows_are_not_announced(self, db_path, server, reporter_args):
        """A recovered workflow the reporter does not follow commits no report."""
        async with Runtime(db_path) as rt:
            await rt.start(orc_waiting, id="orc-quiet")
        chosen = OrchestraReporter(**reporter_args, workflows=["another"])
        async with Runtime(db_path, listeners=[chosen]) as rt:
            assert (await rt.status("orc-quiet")).status == "running"
        assert outbox_rows(db_path) == 0
        assert server.recorder.requests == []


class TestSetOutput:
    async def test_bad_name_fails_the_workflow(self, db_path):
        """An invalid output name is a clear error in the workflow."""

        @workflow
        async def orc_bad_output() -> None:
            await set_output("no spaces!", 1)

        async with Runtime(db_path) as rt:
            with pytest.raises(flowcore.WorkflowFailedError, match="letters, underscores"):
                await (await rt.start(orc_bad_output)).result(timeout=10)

    def test_outside_a_workflow(self):
        """set_output outside a workflow says what to use instead."""
        with pytest.raises(flowcore.FlowcoreError, match="for workflows"):
            set_output("x", 1)

    async def test_replayed_not_resent(self, db_path, server, reporter_args):
        """After a restart the recorded output is replayed, not reported again."""

        @workflow
        async def orc_out_then_wait() -> int:
            await set_output("early", {"a": [1, 2]})
            await flowcore.wait_event("go")
            return 1

        async with Runtime(db_path, listeners=[OrchestraReporter(**reporter_args)]) as rt:
            await rt.start(orc_out_then_wait, id="orc-o")
            await delivered(server, 2)
        async with Runtime(db_path, listeners=[OrchestraReporter(**reporter_args)]) as rt:
            await rt.send_event("orc-o", "go")
            assert await rt.result("orc-o", timeout=10) == 1
            got = await delivered(server, 4)
        assert [b.get("output_value") for b in got] == [None, {"a": [1, 2]}, None, None]
        assert got[2]["message"] == "Workflow orc_out_then_wait resumed."
        assert got[-1]["status"] == "SUCCEEDED"
        await asyncio.sleep(0)
