"""SIGKILL with reports pending: the next runtime delivers them, each acknowledged one once."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing

import pytest

from tests.runtime.worker_process import WorkerProcess

pytestmark = pytest.mark.crash


def query(db, sql):
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:  # not created yet
        return None


def test_sigkill_with_reports_pending(tmp_path, monkeypatch, server, run_id, api_key):
    """Reports committed but unsent when the runtime is SIGKILLed are sent on restart, in order."""
    db = tmp_path / "kill.db"
    monkeypatch.setenv("ORCHESTRA_TASK_RUN_ID", run_id)
    monkeypatch.setenv("ORCHESTRA_API_KEY", api_key)
    monkeypatch.setenv("ORCHESTRA_WEBHOOK_URL", server.url)
    monkeypatch.setenv("ORC_TEST_TIMEOUT", "60")
    server.recorder.script = [200, 200, 200, "hang"]
    args = [str(db), "orc-kill"]
    with WorkerProcess(tmp_path, "first", "tests.orchestra.kill_app", ["first", *args]) as first:
        deadline = time.monotonic() + 30
        first.wait_until(
            "the workflow waits for its event",
            lambda: query(db, "SELECT 1 FROM events WHERE kind = 'event_wait_started'"),
            deadline,
        )
        first.wait_until(
            "three reports acknowledged and the fourth hanging",
            lambda: (
                len(server.recorder.requests) == 4
                and query(db, "SELECT count(*) FROM outbox") == [(2,)]
            ),
            deadline,
        )
        first.kill()
    assert len(server.recorder.acknowledged()) == 3
    with WorkerProcess(tmp_path, "second", "tests.orchestra.kill_app", ["second", *args]) as second:
        assert second.exit_code(timeout=30) == 0, second.diagnostics()
        assert second.out.read_text().splitlines()[-1] == "6"
    messages = [(b["status"], b["message"]) for b in server.recorder.acknowledged()]
    assert messages == [
        ("RUNNING", "Workflow orc_kill_flow started."),
        ("RUNNING", "Activity orc_k1 started."),
        ("RUNNING", "Activity orc_k1 succeeded."),
        ("RUNNING", "Activity orc_k2 started."),
        ("RUNNING", "Activity orc_k2 succeeded."),
        ("RUNNING", "Workflow orc_kill_flow resumed."),  # committed by the second runtime
        ("RUNNING", "Activity orc_k3 started."),
        ("RUNNING", "Activity orc_k3 succeeded."),
        ("SUCCEEDED", "Workflow orc_kill_flow succeeded."),
    ]
    hung = server.recorder.requests[3]
    assert hung.body["message"] == "Activity orc_k2 started."
    assert hung.answered is None or not 200 <= hung.answered < 300  # never acknowledged: resent
    assert len(server.recorder.requests) == 10
    assert query(db, "SELECT count(*) FROM outbox") == [(0,)]
    for name in ("first.out", "first.err", "second.out", "second.err"):
        assert api_key not in (tmp_path / name).read_text()
