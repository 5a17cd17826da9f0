"""CeleryBackend end to end: real redis-server, real celery worker processes."""

from __future__ import annotations

import threading
import time

import pytest

import flowcore
from flowcore import Runtime, workflow
from flowcore.celery import CeleryBackend
from flowcore.engine.events import ActivityAttemptFailed
from tests.celery.activities import (
    cel_add,
    cel_async_double,
    cel_fail,
    cel_flaky,
    cel_square,
    cel_too_slow,
)
from tests.celery.app import make_app
from tests.celery.conftest import CeleryWorker, RedisServer
from tests.helpers import assert_eventually

pytestmark = pytest.mark.celery


@pytest.fixture(scope="module")
def redis_server(need_redis, tmp_path_factory):
    """One redis-server for this module's tests (none of them stops it)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module", autouse=True)
def worker(redis_server, tmp_path_factory):
    """One worker for this module's tests (none of them kills it): 8 threads, both queues."""
    shared = CeleryWorker(tmp_path_factory.mktemp("worker"), redis_server.url, "shared", 8,
                          "threads")  # fmt: skip
    yield shared
    shared.stop()


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


@workflow
async def cel_timing_out() -> str:
    try:
        return await cel_too_slow(1.5)
    except flowcore.ActivityTimeoutError:
        return "timed out"


@workflow
async def cel_retrying(key: str) -> int:
    return await cel_flaky(key)


@workflow
async def cel_looping(runs: int) -> int:
    total = await cel_add(100, 1)
    if runs > 1:
        flowcore.continue_as_new(runs - 1)
    return total


class TestCeleryBackend:
    async def test_chain_mixes_celery_queues_and_local(self, tmp_path, celery_app, counts):
        """A 3-step chain runs two steps on workers (two queues, sync and async) and one locally."""
        async with Runtime(
            tmp_path / "fc.db", backends={"celery": CeleryBackend(celery_app)}
        ) as rt:
            handle = await rt.start(cel_chain, 4, id="chain-1")
            assert await handle.result(timeout=30) == [5, 10, "local 10"]
        assert counts("cel_add")["4+1"] == 1
        assert counts("cel_async_double")["5"] == 1

    async def test_fan_out_of_200(self, tmp_path, celery_app, counts):
        """200 activities gathered at once run on workers, each once, without a thread per task."""
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

    async def test_activity_error_comes_back_as_failure_info(self, tmp_path, celery_app):
        """An exception on the worker reaches the workflow as an ActivityError with its type."""
        async with Runtime(
            tmp_path / "fc.db", backends={"celery": CeleryBackend(celery_app)}
        ) as rt:
            handle = await rt.start(cel_failing, id="fail-1")
            assert await handle.result(timeout=30) == "ValueError: nope"

    async def test_timeout_applies_to_celery_activities(self, tmp_path, celery_app):
        """An attempt that outlives its timeout fails with ActivityTimeoutError in the workflow."""
        async with Runtime(
            tmp_path / "fc.db", backends={"celery": CeleryBackend(celery_app)}
        ) as rt:
            began = time.monotonic()
            handle = await rt.start(cel_timing_out, id="slow-1")
            assert await handle.result(timeout=30) == "timed out"
            assert time.monotonic() - began < 2.5

    async def test_retries_are_journaled_by_flowcore(self, tmp_path, celery_app, counts):
        """A failed attempt is journaled and retried under a new task id by the RetryPolicy."""
        async with Runtime(
            tmp_path / "fc.db", backends={"celery": CeleryBackend(celery_app)}
        ) as rt:
            handle = await rt.start(cel_retrying, "k1", id="flaky-1")
            assert await handle.result(timeout=30) == 2
            [failed] = [e for e in await rt.history("flaky-1")
                        if isinstance(e, ActivityAttemptFailed)]  # fmt: skip
            assert failed.attempt == 1
            assert failed.failure.is_caused_by(ConnectionError)
        assert counts("cel_flaky") == {"k1": 2}

    async def test_next_run_does_not_reuse_a_result(self, tmp_path, celery_app, counts):
        """After continue-as-new the same call at the same place runs again (a new task id)."""
        async with Runtime(
            tmp_path / "fc.db", backends={"celery": CeleryBackend(celery_app)}
        ) as rt:
            handle = await rt.start(cel_looping, 3, id="loop-1")
            assert await handle.result(timeout=30) == 101
        assert counts("cel_add")["100+1"] == 3

    async def test_runtimes_on_other_redis_databases_do_not_take_its_results(
        self, tmp_path, redis_server, celery_app
    ):
        """Redis pub/sub ignores database numbers: a result published on db 0 must not
        complete the same task id pending in a runtime whose Redis database (db 1) has none."""
        other = make_app(redis_server.url.rsplit("/", 1)[0] + "/1")  # no worker serves db 1
        try:
            async with (
                Runtime(tmp_path / "b.db", backends={"celery": CeleryBackend(other)}) as rt_b,
                Runtime(tmp_path / "a.db", backends={"celery": CeleryBackend(celery_app)}) as rt_a,
            ):
                waiting = await rt_b.start(cel_chain, 40, id="same-id")
                await assert_eventually(
                    lambda: bool(other.backend.client.keys("flowcore-sent:*")), timeout=10
                )
                done = await rt_a.start(cel_chain, 40, id="same-id")
                assert await done.result(timeout=30) == [41, 82, "local 82"]
                with pytest.raises(TimeoutError):
                    await waiting.result(timeout=3)  # longer than a sweep interval
                assert (await rt_b.status("same-id")).current_activity == "cel_add"
        finally:
            other.close()
