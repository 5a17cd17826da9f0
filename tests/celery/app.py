"""The Celery app the test workers run (``celery -A tests.celery.app worker``).

The broker and result backend URL comes from ``FLOWCORE_TEST_REDIS``; tests build their own
app for the runtime side with :func:`make_app`. Short visibility and restore intervals make a
killed worker's task come back within seconds.
"""

from __future__ import annotations

import os

from celery import Celery

import flowcore.celery


def make_app(url: str) -> Celery:
    """A Celery app on ``url`` set up the way flowcore needs it (JSON), with test timings."""
    app = Celery(
        "flowcore_tests",
        broker=url,
        backend=url,
        set_as_current=False,
        include=["tests.celery.included"],  # loaded by the worker at start, not imported here
    )
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        worker_prefetch_multiplier=1,
        worker_lost_wait=0.5,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": 2,
            "unacked_restore_interval": 1,
            "unacked_restore_throttle": 1,
        },
        result_backend_transport_options={"retry_policy": {"timeout": 2.0}},
        worker_hijack_root_logger=False,
        result_expires=3600,
    )
    flowcore.celery.register(app)
    return app


app = make_app(os.environ.get("FLOWCORE_TEST_REDIS", "redis://127.0.0.1:6379/0"))

import tests.celery.activities  # noqa: E402, F401 - the worker must know nothing else
