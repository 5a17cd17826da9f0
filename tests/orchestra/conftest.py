"""Fixtures: a recording Orchestra webhook on 127.0.0.1, a task-run id and a secret API key."""

from __future__ import annotations

import uuid

import pytest

from tests.orchestra.server import OrchestraServer


@pytest.fixture
def server():
    """A fresh recording webhook server."""
    with OrchestraServer() as srv:
        yield srv


@pytest.fixture
def run_id() -> str:
    """The task run reports go to."""
    return str(uuid.uuid4())


@pytest.fixture
def api_key() -> str:
    """A key distinctive enough to be found anywhere it leaks."""
    return f"sk-orch-{uuid.uuid4().hex}-SECRET"


@pytest.fixture
def reporter_args(server, run_id, api_key):
    """OrchestraReporter arguments aimed at the test server, with fast retries."""
    return {
        "task_run_id": run_id,
        "api_key": api_key,
        "webhook_url": server.url,
        "initial_backoff": 0.02,
        "max_backoff": 0.1,
        "timeout": 2.0,
        "env": {},
    }
