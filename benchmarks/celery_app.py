"""The Celery app of the Celery benchmarks: flowcore's tasks plus plain Celery no-op tasks.

Workers run ``celery -A benchmarks.celery_app worker``; the URL comes from ``FLOWCORE_BENCH_REDIS``.
"""

from __future__ import annotations

import os

from celery import Celery

import flowcore.celery
from flowcore import activity


def make_app(url: str) -> Celery:
    """A JSON-only app on ``url`` with flowcore's tasks and the plain ones."""
    app = Celery("flowcore_bench", broker=url, backend=url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        result_expires=3600,
    )
    flowcore.celery.register(app)

    @app.task(name="bench.noop", shared=False)
    def plain_noop(x: int) -> int:
        return x

    @app.task(name="bench.count", shared=False)
    def plain_count(results: list[int]) -> int:
        return len(results)

    return app


@activity(backend="celery")
def bench_celery_noop(x: int) -> int:
    """The same no-op as ``bench.noop``, as a flowcore activity on the workers."""
    return x


app = make_app(os.environ.get("FLOWCORE_BENCH_REDIS", "redis://127.0.0.1:6379/0"))
