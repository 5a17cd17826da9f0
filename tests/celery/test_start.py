"""Starting workflows from the Celery side: ``send_task("flowcore.start", ...)``."""

from __future__ import annotations

import json
import sys

import anyio
import pytest
import redis

from flowcore import Runtime, workflow
from flowcore.celery import START_QUEUE, CeleryBackend, CeleryStarter
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
        client = redis.Redis.from_url(redis_server.url)
        async with (
            Runtime(tmp_path / "fc.db", backends={"celery": CeleryBackend(celery_app)}) as rt,
            CeleryStarter(celery_app, rt),
        ):
            env = {"FLOWCORE_TEST_REDIS": redis_server.url, "PYTHONPATH": f"{REPO}/src:{REPO}"}
            proc = await anyio.run_process(
                [sys.executable, "-m", "tests.celery.send_start", "cel_started",
                 json.dumps({"a": 2, "b": 3}), "from-celery"],
                cwd=REPO, env=env, check=False,
            )  # fmt: skip
            assert proc.returncode == 0, proc.stderr.decode()

            async def started() -> bool:
                return bool(await rt.list(name="cel_started"))

            await assert_eventually(started, timeout=20, message="no workflow started")
            assert await rt.handle("from-celery").result(timeout=30) == 5

            async def all_consumed() -> bool:
                # the forwarded copy went through a worker and back to the start queue
                return (
                    client.llen(START_QUEUE) == 0
                    and client.llen("celery") == 0
                    and not client.hlen("unacked")
                )

            await assert_eventually(all_consumed, timeout=20, message="start requests left")
            assert [s.id for s in await rt.list(name="cel_started")] == ["from-celery"]
            assert await rt.list(name="cel_no_such_workflow") == []
        assert counts("cel_add") == {"2+3": 1}
        client.close()
