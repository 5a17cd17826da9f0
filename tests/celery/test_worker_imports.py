"""A worker imports no module because a message names it (real redis-server, real workers).

Importing a module runs its top-level code, so whoever can write to the broker could make every
worker import anything on its path. A worker resolves activities only from modules it has
loaded (the app's module and what it imports) or its app declares (``include``/``imports``).
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING

import pytest
import redis

import flowcore
from flowcore import Runtime, workflow
from flowcore.celery import ACTIVITY_TASK, CeleryBackend
from flowcore.engine.events import ActivityAttemptFailed, ActivityFailed
from flowcore.errors import FailureInfo
from tests.celery.included import cel_included
from tests.celery.unlisted import cel_unlisted

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.celery


@workflow
async def cel_calls_unlisted(x: int) -> dict[str, object]:
    try:
        return {"result": await cel_unlisted(x)}
    except flowcore.ActivityError as exc:
        return {"error": exc.failure.message, "non_retryable": exc.failure.non_retryable}


@workflow
async def cel_calls_included(x: int) -> int:
    return await cel_included(x)


def _foreign_imports(log: Path) -> list[str]:
    """Pids other than this test process's that imported tests.celery.unlisted."""
    if not log.exists():
        return []
    return [pid for pid in log.read_text().split() if pid != str(os.getpid())]


@pytest.fixture
def import_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file tests.celery.unlisted appends to when a process imports it (workers inherit it)."""
    log = tmp_path / "imports.log"
    monkeypatch.setenv("FLOWCORE_TEST_IMPORT_LOG", str(log))
    return log


def _raw_result(client: redis.Redis, task_id: str, timeout: float) -> dict[str, object]:
    """Poll the result backend for a task's stored result (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    while (raw := client.get(f"celery-task-meta-{task_id}")) is None:
        assert time.monotonic() < deadline, f"no result for {task_id} within {timeout}s"
        time.sleep(0.02)
    meta = json.loads(raw)
    assert meta["status"] == "SUCCESS", meta
    result: dict[str, object] = meta["result"]
    return result


class TestWorkerImports:
    @pytest.mark.parametrize("pool", ["threads", "prefork"])
    @pytest.mark.usefixtures("import_log")
    async def test_unlisted_module_fails_the_activity_unimported(
        self, tmp_path, celery_app, start_worker, counts, pool
    ):
        """An activity whose module the worker has not loaded fails once, non-retryable,
        naming the module and the fix; the worker never imports (or runs) it."""
        worker = start_worker(pool=pool, concurrency=1)
        async with Runtime(tmp_path / "fc.db", backend=CeleryBackend(celery_app)) as rt:
            handle = await rt.start(cel_calls_unlisted, 1, id="unlisted")
            out = await handle.result(timeout=30)
            history = await rt.history("unlisted")
        assert out["non_retryable"] is True, (out, worker.tail())
        assert "'tests.celery.unlisted' is not loaded on this worker" in str(out["error"])
        assert "include=['tests.celery.unlisted']" in str(out["error"])
        failed = [e for e in history if isinstance(e, ActivityAttemptFailed | ActivityFailed)]
        assert [(type(e), e.attempts) for e in failed] == [(ActivityFailed, 1)], "retried"
        assert _foreign_imports(tmp_path / "imports.log") == [], "the worker imported it"
        assert counts("cel_unlisted") == {}

    def test_raw_message_naming_any_module_imports_nothing(
        self, redis_server, celery_app, start_worker, counts, import_log
    ):
        """A hand-written ``flowcore.activity`` message (no runtime) naming modules with
        import-time effects is refused; neither module is imported on the worker."""
        worker = start_worker(concurrency=1)
        client = redis.Redis.from_url(redis_server.url)
        try:
            calls = {"canary": ("tests.celery.unlisted", "cel_unlisted", [5]),
                     "zen": ("this", "s", [])}  # fmt: skip
            for task_id, (module, qualname, args) in calls.items():
                celery_app.send_task(ACTIVITY_TASK, args=[module, qualname, args, None],
                                     task_id=task_id)  # fmt: skip
            for task_id, (module, _, _) in calls.items():
                failure = FailureInfo.from_json(_raw_result(client, task_id, 30)["failure"])
                assert failure.non_retryable
                assert f"module {module!r} is not loaded on this worker" in failure.message
        finally:
            client.close()
        assert _foreign_imports(import_log) == []
        assert counts("cel_unlisted") == {}
        assert "Beautiful is better than ugly" not in worker.tail(), "the worker imported this"

    async def test_module_in_app_include_runs(self, tmp_path, celery_app, start_worker, counts):
        """A module the worker's app lists in ``include`` (and never imports itself) is loaded
        by the worker, and its activities run."""
        start_worker()
        async with Runtime(tmp_path / "fc.db", backend=CeleryBackend(celery_app)) as rt:
            handle = await rt.start(cel_calls_included, 4, id="included")
            assert await handle.result(timeout=30) == 40
        assert counts("cel_included") == {"4": 1}
