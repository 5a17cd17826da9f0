"""Starting workflows from the Celery side: ``send_task("flowcore.start", ...)``."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import anyio
import pytest
import structlog.testing

from flowcore import Runtime, steps, workflow
from flowcore.celery import CeleryBackend, CeleryStarter
from tests.celery.activities import cel_add
from tests.celery.conftest import REPO
from tests.helpers import assert_eventually

pytestmark = pytest.mark.celery


@workflow
async def cel_started(payload: dict[str, int]) -> int:
    return await cel_add(payload["a"], payload["b"])


class TestCeleryStart:
    async def test_start_from_another_process_twice_makes_one_workflow(
        self, tmp_path, redis_server, celery_app, start_worker, counts
    ):
        """Two requests with one id (one via a worker) start one workflow; junk is dropped."""
        start_worker()
        env = {"FLOWCORE_TEST_REDIS": redis_server.url, "PYTHONPATH": f"{REPO}/src:{REPO}"}
        with structlog.testing.capture_logs() as logs:
            async with (
                Runtime(tmp_path / "fc.db", backends={"celery": CeleryBackend(celery_app)}) as rt,
                CeleryStarter(celery_app, rt),
            ):
                proc = await anyio.run_process(
                    [sys.executable, "-m", "tests.celery.send_start", "cel_started",
                     json.dumps({"a": 2, "b": 3}), "from-celery"],
                    cwd=REPO, env=env, check=False,
                )  # fmt: skip
                assert proc.returncode == 0, proc.stderr.decode()

                def events(name: str) -> list[dict[str, object]]:
                    return [e for e in logs if e["event"] == name]

                def all_handled() -> bool:
                    # the copy sent to the workers' queue comes back through a worker
                    return (
                        len(events("flowcore.start request applied")) == 2
                        and len(events("dropped a flowcore.start request")) == 1
                    )

                await assert_eventually(all_handled, timeout=20, message="requests not handled")
                assert await rt.handle("from-celery").result(timeout=30) == 5
                assert [s.id for s in await rt.list(name="cel_started")] == ["from-celery"]
                assert await rt.list(name="cel_no_such_workflow") == []
        applied = events("flowcore.start request applied")
        assert {e["workflow_id"] for e in applied} == {"from-celery"}
        [dropped] = events("dropped a flowcore.start request")
        assert dropped["workflow"] == "cel_no_such_workflow"
        assert counts("cel_add") == {"2+3": 1}


class PipeState(steps.OrchestrationState):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.trail: list[str] = []

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> PipeState:
        return cls(payload["name"])


@steps.step(number=1, state_class=PipeState, orchestration="cel_pipeline")
def cel_pipe_hi(state: PipeState) -> None:
    state.trail.append(f"hi {state.name}")


@steps.step(number=2, state_class=PipeState, orchestration="cel_pipeline")
def cel_pipe_bye(state: PipeState) -> None:
    state.trail.append(f"bye {state.name}")


SEND_PIPELINE = """
import json, os, sys
from celery import Celery
app = Celery("client", broker=os.environ["FLOWCORE_TEST_REDIS"], set_as_current=False)
app.conf.update(task_serializer="json", accept_content=["json"])
for queue, name in [("flowcore.start", "Andrea"), ("celery", "Bo")]:
    app.send_task("orchestration.tasks.orchestrate",
                  args=["cel_pipeline", json.dumps({"name": name})], queue=queue)
app.close()
"""


class TestPyorchestrationEntryPoint:
    async def test_orchestrate_task_starts_a_step_pipeline(
        self, tmp_path, redis_server, celery_app, start_worker
    ):
        """pyorchestration's send_task("orchestration.tasks.orchestrate", [name, json]) runs it.

        One message goes straight to the runtime's queue, one to the workers' default queue
        (a worker forwards it); each is a run of its own.
        """
        start_worker()
        env = {"FLOWCORE_TEST_REDIS": redis_server.url, "PYTHONPATH": f"{REPO}/src:{REPO}"}
        async with (
            Runtime(tmp_path / "fc.db", backends={"celery": CeleryBackend(celery_app)}) as rt,
            CeleryStarter(celery_app, rt),
        ):
            proc = await anyio.run_process(
                [sys.executable, "-c", SEND_PIPELINE], cwd=REPO, env=env, check=False
            )
            assert proc.returncode == 0, proc.stderr.decode()

            async def finished() -> list[str]:
                runs = await rt.list(name="cel_pipeline")
                return [r.id for r in runs if r.status == "completed"]

            async def both_finished() -> bool:
                return len(await finished()) == 2

            await assert_eventually(both_finished, timeout=30, message="pipelines not run")
            trails = []
            orchestration = steps.get_orchestration("cel_pipeline")
            for wid in await finished():
                result = await rt.handle(wid).result(timeout=5)
                trails.append(orchestration.load_state(result.state).trail)
        assert sorted(trails) == [["hi Andrea", "bye Andrea"], ["hi Bo", "bye Bo"]]


@workflow
async def cel_after_poison(n: int) -> int:
    return n + 1


class TestPoisonStartRequests:
    async def test_requests_that_can_never_start_do_not_block_the_queue(self, tmp_path, celery_app):
        """Payloads that blow up parsing or decoding are dropped; later requests still start."""
        app = celery_app
        deep = "[" * 100_000 + "]" * 100_000
        with structlog.testing.capture_logs() as logs:
            async with Runtime(tmp_path / "fc.db") as rt, CeleryStarter(app, rt):
                app.send_task("flowcore.start", args=["cel_after_poison", deep],
                              kwargs={"id": "deep"})  # fmt: skip
                app.send_task("flowcore.start", args=["cel_after_poison", "1"],
                              kwargs={"id": "pickled"}, serializer="pickle")  # fmt: skip
                app.send_task("flowcore.start", args=["cel_after_poison", "41"],
                              kwargs={"id": "after"})  # fmt: skip

                async def started() -> bool:
                    return bool(await rt.list(name="cel_after_poison"))

                await assert_eventually(started, timeout=20, message="later request not started")
                assert await rt.handle("after").result(timeout=10) == 42
                assert [s.id for s in await rt.list(name="cel_after_poison")] == ["after"]
        dropped = [e for e in logs if e["event"] == "dropped a flowcore.start request"]
        assert len(dropped) == 2, dropped
        assert not [e for e in logs if e["event"].startswith("flowcore.start consumer lost")]


class TestStarterCrash:
    async def test_request_a_killed_runtime_held_is_started_by_the_next(
        self, tmp_path, redis_server, celery_app
    ):
        """A start request taken but not acknowledged by a dead runtime is not stranded.

        Redis would give it back only after the transport's visibility timeout (an hour by
        default, set here so that waiting it out cannot pass the test).
        """
        celery_app.conf.broker_transport_options = {"visibility_timeout": 3600}
        celery_app.send_task(
            "flowcore.start", args=["cel_after_poison", "1"], kwargs={"id": "held"}
        )
        env = {"FLOWCORE_TEST_REDIS": redis_server.url, "PYTHONPATH": f"{REPO}/src:{REPO}"}
        proc = await anyio.run_process(
            [sys.executable, "-m", "tests.celery.dead_starter"], cwd=REPO, env=env, check=False
        )
        assert proc.returncode == -9, proc.stderr.decode()
        async with Runtime(tmp_path / "fc.db") as rt, CeleryStarter(celery_app, rt):

            async def started() -> bool:
                return bool(await rt.list(name="cel_after_poison"))

            await assert_eventually(started, timeout=20, message="held request never started")
            assert await rt.handle("held").result(timeout=10) == 2


@workflow
async def cel_other_start(n: int) -> int:
    return n - 1


class TestStartIdConflict:
    async def test_an_id_taken_by_another_workflow_is_reported_not_applied(
        self, tmp_path, celery_app
    ):
        """The same id under another workflow name starts nothing, and the log says so."""
        with structlog.testing.capture_logs() as logs:
            async with Runtime(tmp_path / "fc.db") as rt, CeleryStarter(celery_app, rt):
                celery_app.send_task("flowcore.start", args=["cel_after_poison", "1"],
                                     kwargs={"id": "taken"})  # fmt: skip
                celery_app.send_task("flowcore.start", args=["cel_other_start", "1"],
                                     kwargs={"id": "taken"})  # fmt: skip

                def both_handled() -> bool:
                    return len([e for e in logs if "flowcore.start request" in e["event"]]) == 2

                await assert_eventually(both_handled, timeout=20, message="requests not handled")
                assert await rt.handle("taken").result(timeout=10) == 2
        [applied] = [e for e in logs if e["event"] == "flowcore.start request applied"]
        assert applied["workflow"] == "cel_after_poison"
        [dropped] = [e for e in logs if e["event"] == "dropped a flowcore.start request"]
        assert dropped["workflow"] == "cel_other_start"
        assert "already a 'cel_after_poison' workflow" in dropped["reason"]


LOST = "flowcore.start consumer lost the broker; reconnecting"


class TestStarterBrokerOutages:
    async def test_dead_at_start_then_lost_twice(self, tmp_path, redis_server, celery_app):
        """A starter opened with the broker down starts requests once it is up; after a later
        outage it reconnects without the backoff the first outage reached; closing while the
        broker is down does not wait out kombu's connection retries (4 s and more)."""
        redis_server.stop()
        with structlog.testing.capture_logs() as logs:
            rt = Runtime(tmp_path / "fc.db")
            await rt.open()
            starter = CeleryStarter(celery_app, rt)
            await starter.open()

            def losses() -> list[float]:
                return [e["retry_in"] for e in logs if e["event"] == LOST]

            async def start(wid: str) -> None:
                celery_app.send_task("flowcore.start", args=["cel_after_poison", "1"],
                                     kwargs={"id": wid})  # fmt: skip

                async def started() -> bool:
                    return wid in {s.id for s in await rt.list(name="cel_after_poison")}

                await assert_eventually(started, timeout=20, message=f"{wid} never started")

            # Dead at start: the loop backs off (0.1, 0.2, 0.4 s, ...).
            await assert_eventually(lambda: max(losses(), default=0) >= 0.4, timeout=20,
                                    message="no growing backoff, broker down")  # fmt: skip
            redis_server.start()
            await start("after-start")
            seen = len(losses())
            redis_server.stop()  # lost mid-run, after a connection that worked
            await assert_eventually(lambda: len(losses()) > seen, timeout=20,
                                    message="the loss was not noticed")  # fmt: skip
            assert losses()[seen] == 0.1, losses()
            redis_server.start()
            await start("after-outage")
            assert await rt.handle("after-outage").result(timeout=10) == 2
            redis_server.stop()
            began = time.monotonic()
            await starter.close()
            assert time.monotonic() - began < 2.0, "close waited for kombu's retries"
            await rt.close()
