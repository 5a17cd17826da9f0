"""``python -m flowcore run ... --orchestra``: a workflow run as an Orchestra task, end to end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

APP = """
import flowcore
from flowcore import activity, workflow
from flowcore.orchestra import set_output


@activity
def orc_cli_square(x: int) -> int:
    return x * x


@workflow
async def orc_cli_flow(x: int) -> int:
    y = await orc_cli_square(x)
    await set_output("squared", y)
    return y


@workflow
async def orc_cli_boom() -> None:
    raise ValueError("kaput")


@workflow
async def orc_cli_sleepy() -> None:
    await flowcore.sleep(60)


@workflow
async def orc_cli_waiting() -> str:
    got = await flowcore.wait_event("go")
    if got == "boom":
        raise ValueError("kaput")
    return f"got {got}"
"""


@pytest.fixture
def app(tmp_path):
    (tmp_path / "orc_cli_app.py").write_text(APP)
    return tmp_path


def cli_env(env):
    base = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRA_")}
    return {**base, "PYTHONDONTWRITEBYTECODE": "1", **env}


def run_cli(cwd, *args, env):
    return subprocess.run(
        [sys.executable, "-m", "flowcore", *args],
        cwd=cwd,
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def spawn_cli(cwd, *args, env):
    return subprocess.Popen(
        [sys.executable, "-m", "flowcore", *args],
        cwd=cwd, env=cli_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for_reports(server, count, timeout=30.0):
    """Poll the recorder until ``count`` reports were acknowledged (a deadline, not a sleep)."""
    deadline = time.monotonic() + timeout
    while len(server.recorder.acknowledged()) < count:
        assert time.monotonic() < deadline, f"{count} reports not acknowledged in {timeout} s"
        time.sleep(0.02)


@pytest.fixture
def orchestra_env(server, run_id, api_key):
    return {
        "ORCHESTRA_TASK_RUN_ID": run_id,
        "ORCHESTRA_API_KEY": api_key,
        "ORCHESTRA_WEBHOOK_URL": server.url,
    }


class TestRunAsOrchestraTask:
    def test_success(self, app, server, run_id, api_key, orchestra_env):
        """--orchestra reports start, progress, outputs and success before the CLI exits."""
        done = run_cli(app, "run", "orc_cli_app:orc_cli_flow", "--payload", "3", "--orchestra",
                       "-vv", env=orchestra_env)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "9"
        got = server.recorder.acknowledged()
        assert [(b["event_type"], b.get("status"), b.get("message")) for b in got] == [
            ("UPDATE_STATUS", "RUNNING", "Workflow orc_cli_flow started."),
            ("UPDATE_STATUS", "RUNNING", "Activity orc_cli_square started."),
            ("UPDATE_STATUS", "RUNNING", "Activity orc_cli_square succeeded."),
            ("SET_OUTPUT", None, None),
            ("UPDATE_STATUS", "SUCCEEDED", "Workflow orc_cli_flow succeeded."),
        ]
        assert got[3] == {"event_type": "SET_OUTPUT", "metadata": {}, "task_run_id": run_id,
                          "output_name": "squared", "output_value": 9}  # fmt: skip
        assert {r.authorization for r in server.recorder.requests} == {f"Bearer {api_key}"}
        assert api_key not in done.stdout + done.stderr
        for path in app.glob("flowcore.db*"):
            assert api_key.encode() not in path.read_bytes()

    def test_rerun_of_a_finished_instance_reports_its_outcome(self, app, server, orchestra_env):
        """Orchestra re-running the task (a new task run, same --id) learns the final status."""
        first = run_cli(app, "run", "orc_cli_app:orc_cli_boom", "--id", "daily", env=orchestra_env)
        assert first.returncode == 1
        assert len(server.recorder.acknowledged()) == 2
        retry_env = {**orchestra_env, "ORCHESTRA_TASK_RUN_ID": str(uuid.uuid4())}
        again = run_cli(app, "run", "orc_cli_app:orc_cli_boom", "--id", "daily", env=retry_env)
        assert again.returncode == 1
        got = server.recorder.acknowledged()[2:]
        assert [(b["task_run_id"], b["status"], b["message"]) for b in got] == [
            (retry_env["ORCHESTRA_TASK_RUN_ID"], "FAILED",
             "Workflow orc_cli_boom failed. Error: ValueError: kaput"),
        ]  # fmt: skip

    def test_automatic_from_the_environment(self, app, server, orchestra_env):
        """With the variables set, reporting needs no flag; a failure ends with FAILED."""
        done = run_cli(app, "run", "orc_cli_app:orc_cli_boom", env=orchestra_env)
        assert done.returncode == 1
        got = server.recorder.acknowledged()
        assert [b["status"] for b in got] == ["RUNNING", "FAILED"]
        assert got[1]["message"] == "Workflow orc_cli_boom failed. Error: ValueError: kaput"

    def test_requested_without_settings(self, app, server):
        """--orchestra with nothing configured: one clear line, exit 2, nothing run."""
        done = run_cli(app, "run", "orc_cli_app:orc_cli_flow", "--payload", "3", "--orchestra",
                       env={})  # fmt: skip
        assert done.returncode == 2
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert "ORCHESTRA_TASK_RUN_ID" in lines[0]
        assert "ORCHESTRA_API_KEY" in lines[0]
        assert not (app / "flowcore.db").exists()
        assert server.recorder.requests == []

    def test_requested_with_a_bad_task_run_id(self, app, orchestra_env, api_key):
        """A task-run id that is not a UUID is named in the error; the key is not."""
        env = {**orchestra_env, "ORCHESTRA_TASK_RUN_ID": "run-42"}
        done = run_cli(app, "run", "orc_cli_app:orc_cli_flow", "--payload", "3", "--orchestra",
                       env=env)  # fmt: skip
        assert done.returncode == 2
        assert "'run-42' is not a UUID" in done.stderr
        assert api_key not in done.stderr
        assert "Traceback" not in done.stderr

    def test_not_requested_and_misconfigured(self, app, server, orchestra_env, api_key):
        """Not requested and misconfigured: one warning, the workflow runs, nothing is sent."""
        env = {**orchestra_env, "ORCHESTRA_TASK_RUN_ID": "not-a-uuid"}
        done = run_cli(app, "run", "orc_cli_app:orc_cli_flow", "--payload", "3", env=env)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "9"
        # log lines only: a slow run also prints progress lines naming the set_output activity
        warnings = [
            line
            for line in done.stderr.splitlines()
            if "orchestra" in line.lower() and "[warning" in line
        ]
        assert not [line for line in done.stderr.splitlines() if "[error" in line], done.stderr
        assert len(warnings) == 1, done.stderr
        assert "reporting is off" in warnings[0]
        assert api_key not in done.stderr
        assert server.recorder.requests == []

    def test_interrupted_run_ends_the_task_run(self, app, server, run_id, orchestra_env):
        """SIGTERM (Orchestra or a supervisor stopping the task) ends the process with 143; the
        task run must not stay RUNNING for ever: it ends CANCELLED, saying how to resume."""
        proc = spawn_cli(app, "run", "orc_cli_app:orc_cli_sleepy", "--id", "nap", "--orchestra",
                         env=orchestra_env)  # fmt: skip
        wait_for_reports(server, 1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 143, err
        got = [(b["task_run_id"], b["status"]) for b in server.recorder.acknowledged()]
        assert got == [(run_id, "RUNNING"), (run_id, "CANCELLED")]
        last = server.recorder.acknowledged()[-1]["message"]
        assert "interrupted" in last
        assert "--id nap" in last

    @pytest.mark.parametrize(
        ("payload", "code", "final"),
        [('"yes"', 0, ("SUCCEEDED", "Workflow orc_cli_waiting succeeded.")),
         ('"boom"', 1, ("FAILED", "Workflow orc_cli_waiting failed. Error: ValueError: kaput"))],
        ids=["succeeded", "failed"],
    )  # fmt: skip
    def test_resumed_run_reports_running_then_its_end(  # noqa: PLR0917 - fixtures and parameters
        self, app, server, run_id, orchestra_env, payload, code, final
    ):
        """A run resumed with --id (a new task run) is told RUNNING first, then its outcome once,
        like a fresh run (also when the queued event ends the workflow as the runtime opens)."""
        first = spawn_cli(app, "run", "orc_cli_app:orc_cli_waiting", "--id", "later",
                          "--orchestra", env=orchestra_env)  # fmt: skip
        wait_for_reports(server, 1)
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=30)
        assert first.returncode == 143, err
        sent = run_cli(app, "send-event", "later", "go", "--payload", payload, env={})
        assert sent.returncode == 0, sent.stderr
        second_run = str(uuid.uuid4())
        resumed = run_cli(app, "run", "orc_cli_app:orc_cli_waiting", "--id", "later",
                          "--orchestra", env={**orchestra_env,
                                              "ORCHESTRA_TASK_RUN_ID": second_run})  # fmt: skip
        assert resumed.returncode == code, resumed.stderr
        got = [(b["task_run_id"], b["status"], b["message"])
               for b in server.recorder.acknowledged()]  # fmt: skip
        assert got[:2] == [
            (run_id, "RUNNING", "Workflow orc_cli_waiting started."),
            (run_id, "CANCELLED", got[1][2]),
        ]
        assert got[2:] == [
            (second_run, "RUNNING", "Workflow orc_cli_waiting resumed."),
            (second_run, *final),
        ]

    def test_rerun_of_a_parked_instance_reports_failed(self, app, server, orchestra_env):
        """A new task run of an instance that stays parked ends FAILED (it heard nothing: the
        runtime journals no second park for the same reason, so the outbox sent nothing)."""
        first = spawn_cli(app, "run", "orc_cli_app:orc_cli_waiting", "--id", "drift",
                          "--orchestra", env=orchestra_env)  # fmt: skip
        wait_for_reports(server, 1)
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=30)
        module = app / "orc_cli_app.py"  # the code changes under the unfinished instance
        text = module.read_text().replace('got = await flowcore.wait_event("go")',
                                          "got = await orc_cli_square(2)")  # fmt: skip
        module.write_text(text)
        runs = []
        for _ in range(2):
            runs.append(str(uuid.uuid4()))
            done = run_cli(app, "run", "orc_cli_app:orc_cli_waiting", "--id", "drift",
                           "--orchestra", env={**orchestra_env,
                                               "ORCHESTRA_TASK_RUN_ID": runs[-1]})  # fmt: skip
            assert done.returncode == 1, done.stderr
            assert "is parked" in done.stderr
        got = [(b["task_run_id"], b["status"], b["message"].split(":")[0])
               for b in server.recorder.acknowledged()[2:]]  # fmt: skip
        assert got == [
            (run, "FAILED", "Workflow orc_cli_waiting is parked and needs a code fix")
            for run in runs
        ]
