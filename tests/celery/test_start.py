"""Starting workflows from the Celery side: ``send_task("flowcore.start", ...)``."""

from __future__ import annotations

import json
import sys

import anyio
import pytest
import structlog.testing

from flowcore import Runtime, workflow
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
