"""A CeleryStarter whose runtime cannot take work stops consuming instead of spinning; and a
program that never closes its Celery runtime still exits.

Before the fix it requeued the request and took it straight back, over a thousand times a
second, for as long as the process lived.
"""

from __future__ import annotations

import sys

import anyio
import pytest
import redis
import structlog.testing

from flowcore import JournalError, Runtime, workflow
from flowcore.celery import CeleryBackend, CeleryStarter
from tests.celery import loop_gone_process, unclosed_process  # noqa: F401 - registers workflows
from tests.celery.conftest import REPO
from tests.helpers import assert_eventually

pytestmark = pytest.mark.celery

HALTED = (
    "stopped consuming flowcore.start: the runtime cannot start workflows; requests stay queued "
    "for the next runtime"
)


@workflow
async def cel_halt_len(text: str) -> int:
    return len(text)


async def fail_stop(rt: Runtime) -> None:
    """Fill the journal's "disk" (a page limit on its writer) until a commit fails."""
    writer = rt._journal._writer
    assert writer is not None
    pages = (await (await writer.execute("PRAGMA page_count")).fetchone())[0]
    await writer.execute(f"PRAGMA max_page_count = {pages + 8}")
    with pytest.raises(JournalError, match="full"):  # noqa: PT012 - fill it up
        for i in range(100):
            await rt.start(cel_halt_len, "x" * 20_000, id=f"big{i}")


def queued(url: str) -> tuple[int, int]:
    """(requests waiting in the start queue, requests taken and not acknowledged)."""
    client = redis.Redis.from_url(url)
    try:
        return client.llen("flowcore.start"), client.hlen("unacked")
    finally:
        client.close()


async def started_by_the_next_runtime(db, celery_app) -> None:
    async with Runtime(db) as rt, CeleryStarter(celery_app, rt):

        async def started() -> bool:
            return bool(await rt.list(name="cel_halt_len"))

        await assert_eventually(started, timeout=20, message="the request was lost")
        assert await rt.handle("req").result(timeout=10) == 3


class TestStarterHalts:
    async def test_a_failed_journal_stops_consuming_and_keeps_the_request(
        self, tmp_path, redis_server, celery_app
    ):
        """Journal failed: one error, the request stays queued, and the next runtime starts it."""
        db = tmp_path / "fc.db"
        with structlog.testing.capture_logs() as logs:
            rt = Runtime(db)
            await rt.open()
            try:
                await fail_stop(rt)
                async with CeleryStarter(celery_app, rt) as starter:
                    assert starter.consuming
                    celery_app.send_task("flowcore.start", args=["cel_halt_len", '"abc"'],
                                         kwargs={"id": "req"})  # fmt: skip
                    await assert_eventually(
                        lambda: not starter.consuming, timeout=20, message="starter kept going"
                    )
            finally:
                await rt.close()
        handled = [e for e in logs if "flowcore.start" in e["event"]]
        assert [e["event"] for e in handled] == [HALTED], handled[:5]
        assert "stopped accepting work" in handled[0]["error"]
        assert queued(redis_server.url) == (1, 0)
        await started_by_the_next_runtime(db, celery_app)

    async def test_a_closed_runtime_stops_consuming_and_keeps_the_request(
        self, tmp_path, redis_server, celery_app
    ):
        """Runtime closed under the starter: one error, the next runtime starts the request."""
        db = tmp_path / "fc.db"
        with structlog.testing.capture_logs() as logs:
            rt = Runtime(db)
            await rt.open()
            async with CeleryStarter(celery_app, rt) as starter:
                await rt.close()
                celery_app.send_task("flowcore.start", args=["cel_halt_len", '"abc"'],
                                     kwargs={"id": "req"})  # fmt: skip
                await assert_eventually(
                    lambda: not starter.consuming, timeout=20, message="starter kept going"
                )
        handled = [e for e in logs if "flowcore.start" in e["event"]]
        assert [e["event"] for e in handled] == [HALTED], handled[:5]
        assert "the runtime is closed" in handled[0]["error"]
        assert queued(redis_server.url) == (1, 0)
        await started_by_the_next_runtime(db, celery_app)


class TestUnclosedCeleryRuntime:
    async def test_the_process_exits_and_the_next_runtime_finishes_the_work(
        self, tmp_path, redis_server, celery_app, start_worker
    ):
        """Backend and starter threads never keep a program alive; nothing acknowledged is lost."""
        db = tmp_path / "fc.db"
        env = {"FLOWCORE_TEST_REDIS": redis_server.url, "PYTHONPATH": f"{REPO}/src:{REPO}"}
        with anyio.fail_after(60):  # a hang lasts forever; a healthy run takes about a second
            proc = await anyio.run_process(
                [sys.executable, "-m", "tests.celery.unclosed_process", str(db)],
                cwd=REPO, env=env, check=False,
            )  # fmt: skip
        assert proc.returncode == 0, proc.stderr.decode()[-3000:]
        assert "acknowledged" in proc.stdout.decode().splitlines()
        start_worker()
        async with Runtime(db, backends={"celery": CeleryBackend(celery_app)}) as rt:
            assert await rt.handle("cel-unclosed").result(timeout=30) == 42

    async def test_a_starter_outliving_its_event_loop_stops_and_keeps_the_request(
        self, tmp_path, redis_server, celery_app
    ):
        """The runtime's loop is closed (never closed runtime): the starter stops, loses nothing."""
        db = tmp_path / "fc.db"
        env = {"FLOWCORE_TEST_REDIS": redis_server.url, "PYTHONPATH": f"{REPO}/src:{REPO}"}
        with anyio.fail_after(60):
            proc = await anyio.run_process(
                [sys.executable, "-m", "tests.celery.loop_gone_process", str(db)],
                cwd=REPO, env=env, check=False,
            )  # fmt: skip
        out, err = proc.stdout.decode(), proc.stderr.decode()
        assert proc.returncode == 0, err[-3000:]
        assert "halted" in out.splitlines(), out[-3000:]
        # its structlog is not configured: flowcore's warnings go to stderr
        assert err.count("stopped consuming flowcore.start") == 1, err[-3000:]
        assert "event loop is gone" in err
        assert queued(redis_server.url) == (1, 0)
        async with Runtime(db) as rt, CeleryStarter(celery_app, rt):

            async def started() -> bool:
                return bool(await rt.list(name="cel_loop_gone"))

            await assert_eventually(started, timeout=20, message="the request was lost")
            assert await rt.handle("req").result(timeout=10) == 3
