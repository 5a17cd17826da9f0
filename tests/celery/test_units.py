"""The Celery integration's pure parts: task ids, messages, the worker task, configuration checks.

None of these needs Redis or a worker.
"""

from __future__ import annotations

import builtins

import pytest
from celery import Celery
from celery.exceptions import WorkerShutdown

import flowcore
from flowcore import Runtime, workflow
from flowcore.backends.base import ActivityTask
from flowcore.celery import CeleryBackend, register, run_activity, task_id_for
from flowcore.celery._protocol import activity_message
from flowcore.celery._starter import _BadRequestError, _parse
from flowcore.errors import BackendError, FailureInfo
from tests.celery.activities import cel_add, cel_async_double


def _task(defn=cel_add, *, wid="wf-1", op="3", attempt=1, args=(1, 2)) -> ActivityTask:
    return ActivityTask(
        workflow_id=wid, step=3, attempt=attempt, activity=defn, args=args, kwargs={},
        encoded_args=list(args), encoded_kwargs=None, op=op, workflow_name="w",
        workflow_version="1",
    )  # fmt: skip


class TestTaskIds:
    def test_same_attempt_same_id(self):
        """The id depends only on workflow id, op, attempt and the call: a recovery finds it."""
        assert task_id_for(_task()) == task_id_for(_task())
        assert task_id_for(_task()).startswith("flowcore/wf-1/3/1#")

    def test_other_attempt_or_call_other_id(self):
        """A retry, another place or other arguments never share a task id."""
        ids = {
            task_id_for(_task()),
            task_id_for(_task(attempt=2)),
            task_id_for(_task(op="4")),
            task_id_for(_task(args=(1, 3))),
            task_id_for(_task(wid="wf-2")),
            task_id_for(_task(op="r2.3")),  # the same place in the next run (continue-as-new)
        }
        assert len(ids) == 6

    def test_message_names_module_and_qualname(self):
        """The worker imports the activity by module and qualified name; info rides along."""
        args, kwargs = activity_message(_task())
        assert args == ["tests.celery.activities", "cel_add", [1, 2], None]
        assert kwargs["info"]["workflow_id"] == "wf-1"
        assert kwargs["info"]["attempt"] == 1

    def test_local_function_is_refused(self):
        """An activity a worker cannot import by name fails non-retryable, before sending."""

        def cel_nested(x: int) -> int:
            return x

        defn = flowcore.ActivityDef(cel_nested, name="cel_nested", retry=flowcore.RetryPolicy(),
                                    timeout=None)  # fmt: skip
        with pytest.raises(flowcore.RegistrationError, match="top level of an importable module"):
            activity_message(_task(defn))


class TestRunActivity:
    def test_sync_result_is_encoded(self, monkeypatch):
        """A sync activity runs and its result comes back as flowcore JSON."""
        monkeypatch.setattr("tests.celery.activities._count", lambda *_: None)
        assert run_activity("tests.celery.activities", "cel_add", [2, 3], None) == {"result": 5}

    def test_async_activity_runs_to_completion(self, monkeypatch):
        """An async activity is driven to completion on the worker."""
        monkeypatch.setattr("tests.celery.activities._count", lambda *_: None)
        out = run_activity("tests.celery.activities", "cel_async_double", [4], None)
        assert out == {"result": 8}

    def test_error_becomes_failure_info(self, monkeypatch):
        """The activity's exception comes back as FailureInfo JSON, never raised to Celery."""
        monkeypatch.setattr("tests.celery.activities._count", lambda *_: None)
        out = run_activity("tests.celery.activities", "cel_fail", ["bad"], None)
        failure = FailureInfo.from_json(out["failure"])
        assert failure.is_caused_by(ValueError)
        assert failure.message == "bad"
        assert not failure.non_retryable

    def test_unknown_module_is_non_retryable(self):
        """A worker that cannot import the activity reports it as a non-retryable failure."""
        out = run_activity("tests.celery.no_such_module", "f", [], None)
        failure = FailureInfo.from_json(out["failure"])
        assert failure.non_retryable
        assert "no_such_module" in failure.message

    def test_activity_info_is_visible_on_the_worker(self):
        """flowcore.activity_info() inside a Celery activity describes the attempt."""
        out = run_activity("tests.celery.test_units", "cel_report_info", [], None,
                           {"workflow_id": "w9", "step": 2, "attempt": 3, "op": "2"})  # fmt: skip
        assert out == {"result": "w9/2/3"}

    @pytest.mark.parametrize("raised", [SystemExit, KeyboardInterrupt, GeneratorExit])
    def test_base_exception_fails_the_attempt(self, raised):
        """``sys.exit()`` in an activity is its failure, as on the local backend.

        Raised out of the task, it ended the prefork pool process: the task was rejected,
        redelivered and ended the next process, for ever, and the workflow never moved.
        """
        out = run_activity("tests.celery.test_units", "cel_raise", [raised.__name__], None)
        failure = FailureInfo.from_json(out["failure"])
        assert failure.is_caused_by(raised)

    def test_worker_shutdown_passes_through(self):
        """The worker stopping (solo pool: raised in the task) stops it: the task is redelivered."""
        with pytest.raises(WorkerShutdown):
            run_activity("tests.celery.test_units", "cel_raise", ["WorkerShutdown"], None)

    @pytest.mark.parametrize(
        ("module", "qualname", "args"),
        [
            ("tests.celery.test_units", "cel_not_an_activity", ["ran"]),
            ("builtins", "exec", ["import tests.celery.test_units as m; m._RAN.append('exec')"]),
            ("tests.celery.test_units", "_RAN.append", ["append"]),
        ],
    )
    def test_only_activities_run(self, module, qualname, args):
        """A message naming any other callable (``os.system``, say) runs nothing.

        Whoever can write to the broker could otherwise run any function of any importable
        module on every worker.
        """
        _RAN.clear()
        out = run_activity(module, qualname, args, None)
        assert _RAN == []
        failure = FailureInfo.from_json(out["failure"])
        assert failure.non_retryable
        assert "not a flowcore activity" in failure.message


_RAN: list[str] = []


def cel_not_an_activity(what: str) -> None:
    _RAN.append(what)


@flowcore.activity
def cel_report_info() -> str | None:
    return flowcore.activity_info().idempotency_key


@flowcore.activity
def cel_raise(name: str) -> None:
    error: type[BaseException] = {"WorkerShutdown": WorkerShutdown, **vars(builtins)}[name]
    raise error


class TestConfiguration:
    def test_register_refuses_pickle(self):
        """A worker app that would pickle is refused with the setting to change."""
        app = Celery("t", set_as_current=False)
        app.conf.result_serializer = "pickle"
        with pytest.raises(BackendError, match="result_serializer='json'"):
            register(app)

    def test_start_forwarders_are_acknowledged_after_forwarding(self):
        """A worker that dies while forwarding a start request leaves it on the broker.

        Forwarding is idempotent (same task id, hence same workflow id), so a redelivery is
        harmless; an early ack would lose the request.
        """
        app = Celery("t", set_as_current=False)
        app.conf.update(task_serializer="json", result_serializer="json")
        register(app)
        for name in ("flowcore.start", "orchestration.tasks.orchestrate"):
            task = app.tasks[name]
            assert task.acks_late, name
            assert task.reject_on_worker_lost, name

    async def test_backend_needs_redis_results(self, tmp_path):
        """A runtime refuses a Celery app without a Redis result backend when it opens."""
        app = Celery("t", broker="memory://", set_as_current=False)
        with pytest.raises(BackendError, match="Redis result backend"):
            async with Runtime(tmp_path / "fc.db", backend=CeleryBackend(app)):
                pass

    async def test_unknown_backend_name_fails_the_activity(self, tmp_path):
        """An activity asking for a backend the runtime lacks fails at once, naming the fix."""

        @workflow
        async def cel_wrong_backend() -> int:
            return await cel_async_double(1)

        async with Runtime(tmp_path / "fc.db") as rt:
            handle = await rt.start(cel_wrong_backend, id="wrong")
            with pytest.raises(flowcore.WorkflowFailedError, match=r"backends=\{'celery'"):
                await handle.result(timeout=10)

    def test_activity_backend_must_be_a_name(self):
        """@activity(backend="") is a clear error."""
        with pytest.raises(ValueError, match="backend must be a non-empty string"):
            flowcore.activity(backend="")


class TestStartMessages:
    def test_protocol_two_message(self):
        """[args, kwargs, embed] with the task name in the headers; JSON text payload."""
        body = [["wf", '{"a": 1}'], {"id": "x"}, {}]
        assert _parse(body, {"task": "flowcore.start", "id": "t1"}) == ("wf", {"a": 1}, "x")

    def test_id_defaults_to_the_task_id(self):
        """Without kwargs['id'] the Celery task id names the workflow."""
        body = [["wf", {"a": 1}], {}, {}]
        assert _parse(body, {"task": "flowcore.start", "id": "t1"}) == ("wf", {"a": 1}, "t1")

    @pytest.mark.parametrize(
        ("body", "match"),
        [
            ([["wf", "{not json"], {}, {}], "not JSON"),
            ([[], {}, {}], "args must be"),
            ([["wf", "{}"], {"id": 5}, {}], "must be a non-empty string"),
            ("junk", "not a Celery task message"),
        ],
    )
    def test_bad_requests_are_refused(self, body, match):
        """Requests that can never start a workflow are recognised (and then dropped)."""
        with pytest.raises(_BadRequestError, match=match):
            _parse(body, {"task": "flowcore.start", "id": "t1"})


class TestSurface:
    def test_all_is_pinned(self):
        """flowcore.celery's public names are deliberate."""
        import flowcore.celery

        assert set(flowcore.celery.__all__) == {
            "ACTIVITY_TASK", "START_QUEUE", "START_TASK", "CeleryBackend", "CeleryStarter",
            "register", "run_activity", "task_id_for",
        }  # fmt: skip

    async def test_without_celery_the_error_says_what_to_install(self):
        """Importing flowcore.celery without Celery names the extra to install."""
        import sys

        import anyio

        code = "import sys; sys.modules['celery'] = None; import flowcore.celery"
        proc = await anyio.run_process([sys.executable, "-c", code], check=False)
        assert proc.returncode != 0
        assert b"pip install 'flowcore[celery]'" in proc.stderr
