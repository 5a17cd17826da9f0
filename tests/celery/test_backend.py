"""CeleryBackend end to end: real redis-server, real celery worker processes."""

from __future__ import annotations

import threading

import pytest

import flowcore
from flowcore import Runtime, workflow
from flowcore.celery import CeleryBackend
from tests.celery.activities import cel_add, cel_async_double, cel_fail, cel_square
from tests.helpers import assert_eventually

pytestmark = pytest.mark.celery


@flowcore.activity(backend="local")
def cel_local_note(x: int) -> str:
    return f"local {x}"


@workflow
async def cel_chain(x: int) -> list[object]:
    a = await cel_add(x, 1)
    b = await cel_async_double(a)
    c = await cel_local_note(b)
    return [a, b, c]


@workflow
async def cel_fan_out(n: int) -> int:
    return sum(await flowcore.gather(*(cel_square(i) for i in range(n))))


@workflow
async def cel_failing() -> str:
    try:
        await cel_fail("nope")
    except flowcore.ActivityError as exc:
        return f"{exc.failure.short_type}: {exc.failure.message}"
    return "no error"


class TestCeleryBackend:
    async def test_chain_mixes_celery_queues_and_local(
        self, tmp_path, celery_app, start_worker, counts
    ):
        """A 3-step chain runs two steps on workers (two queues, sync and async) and one locally."""
        start_worker()
        async with Runtime(
            tmp_path / "fc.db", backends={"celery": CeleryBackend(celery_app)}
        ) as rt:
            handle = await rt.start(cel_chain, 4, id="chain-1")
            assert await handle.result(timeout=30) == [5, 10, "local 10"]
        assert counts("cel_add") == {"4+1": 1}
        assert counts("cel_async_double") == {"5": 1}

    async def test_fan_out_of_200(self, tmp_path, celery_app, start_worker, counts):
        """200 activities gathered at once run on workers, each once, without a thread per task."""
        start_worker(concurrency=8)
        backend = CeleryBackend(celery_app)
        threads = []
        async with Runtime(tmp_path / "fc.db", backend=backend) as rt:
            handle = await rt.start(cel_fan_out, 200, id="fan-1")

            async def watch() -> bool:
                threads.append(threading.active_count())
                return handle.id not in rt._instances

            await assert_eventually(watch, timeout=60, interval=0.02)
            assert await handle.result(timeout=5) == sum(i * i for i in range(200))
        assert max(threads) < 40, "a thread per Celery task?"
        done = counts("cel_square")
        assert len(done) == 200
        assert set(done.values()) == {1}

    async def test_activity_error_comes_back_as_failure_info(
        self, tmp_path, celery_app, start_worker
    ):
        """An exception on the worker reaches the workflow as an ActivityError with its type."""
        start_worker(concurrency=1)
        async with Runtime(
            tmp_path / "fc.db", backends={"celery": CeleryBackend(celery_app)}
        ) as rt:
            handle = await rt.start(cel_failing, id="fail-1")
            assert await handle.result(timeout=30) == "ValueError: nope"
