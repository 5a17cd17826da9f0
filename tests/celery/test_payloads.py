"""Large arguments and results through Celery (real redis-server, real worker)."""

from __future__ import annotations

import pytest
import redis
import structlog.testing

from flowcore import Runtime, workflow
from flowcore.celery import CeleryBackend
from tests.celery.activities import cel_big, cel_len

pytestmark = pytest.mark.celery

MB = 1_000_000


@workflow
async def cel_big_chain(sizes: list[int]) -> list[int]:
    return [len(await cel_big(n)) for n in sizes]


@workflow
async def cel_big_round_trip(n: int) -> int:
    return await cel_len(await cel_big(n))


class TestLargePayloads:
    async def test_megabytes_each_way(self, tmp_path, celery_app, start_worker):
        """A 5 MB result comes back and goes out again as a 5 MB argument (raised payload limit)."""
        worker = start_worker()
        async with Runtime(
            tmp_path / "fc.db", backend=CeleryBackend(celery_app), max_payload_bytes=20 * MB
        ) as rt:
            handle = await rt.start(cel_big_round_trip, 5 * MB, id="round-trip")
            assert await handle.result(timeout=60) == 5 * MB, worker.tail()

    async def test_results_over_the_pubsub_limit_keep_flowing(
        self, tmp_path, redis_server, celery_app, start_worker
    ):
        """Celery publishes each result whole; Redis drops a subscriber whose pubsub buffer
        passes its hard limit (32 MB by default, 256 kB here). Every such result must still
        arrive, the collector reconnecting at once each time instead of backing off longer
        after every large result (0.1, 0.2, ... 5 s, for the rest of the runtime's life)."""
        client = redis.Redis.from_url(redis_server.url)
        client.config_set("client-output-buffer-limit", "pubsub 256kb 128kb 0")
        client.close()
        worker = start_worker()
        sizes = [300_000] * 6
        with structlog.testing.capture_logs() as logs:
            async with Runtime(tmp_path / "fc.db", backend=CeleryBackend(celery_app)) as rt:
                handle = await rt.start(cel_big_chain, sizes, id="big-chain")
                assert await handle.result(timeout=60) == sizes, worker.tail()
        losses = [e for e in logs if e["event"].startswith("celery result collector lost")]
        assert len(losses) >= len(sizes) - 1, "the limit did not drop the subscriber"
        assert {e["retry_in"] for e in losses} == {0.1}, [e["retry_in"] for e in losses]
