"""The decorator for plain functions (sync and async), configuration, and reprs."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import structlog

from flowcore.orchestra import OrchestraConfigError, OrchestraReporter, task
from flowcore.orchestra import _task as task_module


def sdk_status(run_id, status, message):
    return {"event_type": "UPDATE_STATUS", "metadata": {}, "task_run_id": run_id,
            "status": status, "message": message}  # fmt: skip


class TestTaskDecorator:
    def test_sync_success(self, server, run_id, reporter_args):
        """A sync function reports RUNNING then SUCCEEDED, with the SDK's bodies."""
        reporter = OrchestraReporter(**reporter_args)

        @reporter.run()
        def load(n: int) -> int:
            assert len(server.recorder.acknowledged()) == 1  # RUNNING went first
            return n + 1

        assert load(1) == 2
        assert server.recorder.acknowledged() == [
            sdk_status(run_id, "RUNNING", "load started."),
            sdk_status(run_id, "SUCCEEDED", "load succeeded."),
        ]

    def test_sync_failure_reraises(self, server, reporter_args):
        """A failing sync function reports FAILED (truncated error) and re-raises."""
        reporter = OrchestraReporter(**reporter_args)

        @reporter.run()
        def load() -> None:
            raise KeyError("x" * 400)

        with pytest.raises(KeyError):
            load()
        got = server.recorder.acknowledged()
        assert [b["status"] for b in got] == ["RUNNING", "FAILED"]
        assert got[1]["message"] == "load failed. Error: " + str(KeyError("x" * 400))[:250]

    async def test_async_success_and_failure(self, server, run_id, reporter_args):
        """Async functions are reported too, and their exceptions re-raised."""
        reporter = OrchestraReporter(**reporter_args)

        @reporter.run()
        async def fetch(n: int) -> int:
            if n < 0:
                raise ValueError("negative")
            return n

        assert await fetch(3) == 3
        with pytest.raises(ValueError, match="negative"):
            await fetch(-1)
        assert server.recorder.acknowledged() == [
            sdk_status(run_id, "RUNNING", "fetch started."),
            sdk_status(run_id, "SUCCEEDED", "fetch succeeded."),
            sdk_status(run_id, "RUNNING", "fetch started."),
            sdk_status(run_id, "FAILED", "fetch failed. Error: negative"),
        ]

    def test_sys_exit_is_reported(self, server, reporter_args):
        """A script's sys.exit(): 0 is SUCCEEDED, another code FAILED; the exit propagates."""
        reporter = OrchestraReporter(**reporter_args)

        @reporter.run()
        def main(code: int | None) -> None:
            raise SystemExit(code)

        for code in (None, 0, 3):
            with pytest.raises(SystemExit):
                main(code)
        assert [(b["status"], b.get("message")) for b in server.recorder.acknowledged()][1::2] == [
            ("SUCCEEDED", "main succeeded."),
            ("SUCCEEDED", "main succeeded."),
            ("FAILED", "main failed. Error: exited with status 3"),
        ]

    async def test_cancelled_and_interrupted_are_reported(self, server, reporter_args):
        """A cancelled coroutine or a Ctrl-C ends the task run CANCELLED, then propagates."""
        reporter = OrchestraReporter(**reporter_args)

        @reporter.run()
        async def waits() -> None:
            raise asyncio.CancelledError

        @reporter.run()
        def interrupted() -> None:
            raise KeyboardInterrupt

        with pytest.raises(asyncio.CancelledError):
            await waits()
        with pytest.raises(KeyboardInterrupt):
            interrupted()
        assert [(b["status"], b.get("message")) for b in server.recorder.acknowledged()][1::2] == [
            ("CANCELLED", "waits was cancelled."),
            ("CANCELLED", "interrupted was cancelled."),
        ]

    def test_retries_then_gives_up_without_failing_the_function(self, server, reporter_args):
        """Orchestra down: a few tries per report, then the function still runs and returns."""
        server.recorder.default = 500
        reporter = OrchestraReporter(**reporter_args)

        @reporter.run()
        def work() -> str:
            return "done"

        assert work() == "done"
        assert len(server.recorder.requests) == 2 * task_module.ATTEMPTS

    async def test_from_environment(self, server, run_id, api_key, monkeypatch):
        """The bare decorator reads the ORCHESTRA_* variables at call time."""
        monkeypatch.setenv("ORCHESTRA_TASK_RUN_ID", run_id)
        monkeypatch.setenv("ORCHESTRA_API_KEY", api_key)
        monkeypatch.setenv("ORCHESTRA_WEBHOOK_URL", server.url)

        @task
        async def job() -> int:
            return 7

        assert await job() == 7
        assert [b["status"] for b in server.recorder.acknowledged()] == ["RUNNING", "SUCCEEDED"]

    def test_unconfigured_runs_unreported_with_one_warning(self, monkeypatch):
        """No settings: the function runs, one warning is logged for the whole process."""
        for name in ("ORCHESTRA_TASK_RUN_ID", "ORCHESTRA_API_KEY", "ORCHESTRA_WEBHOOK_URL"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setattr(task_module, "_warned", [])

        @task
        def job() -> int:
            return 1

        with structlog.testing.capture_logs() as logs:
            assert job() == 1
            assert job() == 1
        assert [e["event"] for e in logs] == ["orchestra reporting is off"]


class TestConfiguration:
    def test_missing_everything(self):
        """Every missing setting is named, with the variable to set."""
        with pytest.raises(OrchestraConfigError) as info:
            OrchestraReporter(env={})
        message = str(info.value)
        assert "ORCHESTRA_TASK_RUN_ID" in message
        assert "ORCHESTRA_API_KEY" in message

    def test_invalid_uuid(self, api_key):
        """A task-run id that is not a UUID is refused; the key is not in the message."""
        with pytest.raises(OrchestraConfigError, match="'nope' is not a UUID") as info:
            OrchestraReporter(env={"ORCHESTRA_TASK_RUN_ID": "nope", "ORCHESTRA_API_KEY": api_key})
        assert api_key not in str(info.value)

    def test_bad_webhook_url(self, run_id, api_key):
        """A webhook URL that is not http(s) is refused."""
        with pytest.raises(OrchestraConfigError, match="not an http"):
            OrchestraReporter(task_run_id=run_id, api_key=api_key, webhook_url="ftp://x", env={})

    @pytest.mark.parametrize(
        ("url", "wrong"),
        [
            ("http://127.0.0.1:notaport/x", "has a port that is not a number from 0 to 65535"),
            ("http://127.0.0.1:99999/x", "has a port that is not a number from 0 to 65535"),
            ("http://[::1/x", "is not a URL"),
        ],
    )
    def test_webhook_url_that_httpx_cannot_send_to(self, run_id, api_key, url, wrong):
        """A URL whose port is not a port is refused at startup, not by a crashed sender."""
        with pytest.raises(OrchestraConfigError, match=f"the webhook URL {wrong} "):
            OrchestraReporter(task_run_id=run_id, api_key=api_key, webhook_url=url, env={})

    @pytest.mark.parametrize("bad", ["sk-SEC RET", "sk-SECR\nET", "sk-SECRÉT"])
    def test_key_that_cannot_go_in_a_header(self, run_id, bad):
        """A key with spaces, control or non-ASCII characters is refused, and not shown."""
        with pytest.raises(OrchestraConfigError, match="ORCHESTRA_API_KEY") as info:
            OrchestraReporter(task_run_id=run_id, api_key=bad, env={})
        assert "SEC" not in str(info.value)

    def test_environment_and_defaults(self, run_id, api_key):
        """Settings come from the environment; the webhook defaults to Orchestra's."""
        env = {"ORCHESTRA_TASK_RUN_ID": run_id, "ORCHESTRA_API_KEY": api_key}
        reporter = OrchestraReporter(env=env)
        assert reporter.task_run_id == uuid.UUID(run_id)
        assert reporter.webhook_url == "https://webhook.getorchestra.io"

    def test_from_env_not_required(self, api_key):
        """Not required: nothing set is a quiet None; a bad setting one warning and None."""
        with structlog.testing.capture_logs() as logs:
            assert OrchestraReporter.from_env(required=False, env={}) is None
            assert logs == []
            bad = {"ORCHESTRA_API_KEY": api_key}
            assert OrchestraReporter.from_env(required=False, env=bad) is None
        assert len(logs) == 1
        assert logs[0]["log_level"] == "warning"
        assert api_key not in str(logs)

    def test_from_env_required(self):
        """Required: a missing setting raises."""
        with pytest.raises(OrchestraConfigError):
            OrchestraReporter.from_env(required=True, env={})

    def test_bad_output_name(self, reporter_args):
        """result_output must be a valid output name."""
        with pytest.raises(ValueError, match="letters, underscores and hyphens"):
            OrchestraReporter(result_output="a b", **reporter_args)


class TestSecrets:
    def test_reprs_hide_the_key(self, reporter_args, api_key):
        """Neither the reporter, its config nor the secret show the key."""
        reporter = OrchestraReporter(**reporter_args)
        shown = [repr(reporter), str(reporter), repr(reporter.config), str(reporter.config),
                 repr(reporter.config.api_key), f"{reporter.config.api_key}"]  # fmt: skip
        for text in shown:
            assert api_key not in text
        assert reporter.config.api_key.reveal() == api_key

    def test_key_is_not_pickled(self, reporter_args):
        """The key refuses pickling (it must never cross a process or disk boundary)."""
        import copy

        reporter = OrchestraReporter(**reporter_args)
        with pytest.raises(TypeError, match="not pickled"):
            copy.deepcopy(reporter.config.api_key)  # goes through __reduce_ex__, as pickle does
