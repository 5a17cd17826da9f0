"""SIGKILL a worker while its workflow waits on a durable timer and an external event, then restart.

``tests/runtime/wait_app.py`` runs in a subprocess on a SQLite journal in ``tmp_path`` with the
real clock. Its workflow waits, concurrently, on a 3-second timer and on an event. The test polls
the journal (read-only) until both waits are committed, lets about a second pass, SIGKILLs the
worker, and starts it again: the restarted worker sends the event and waits for the result. The
promises checked: the event sent after the restart reaches the wait begun before the kill; the
timer fires at its original, journaled deadline (the downtime counts; it is not restarted); no
wait is journaled twice; the workflow completes.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import TYPE_CHECKING, Any

import pytest

from tests.runtime.wait_app import EVENT, PAYLOAD, SLEEP, WORKFLOW_ID
from tests.runtime.worker_process import WorkerProcess

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.crash

START_DEADLINE = 30.0
"""Seconds the first run may take to journal its waits."""
FINISH_DEADLINE = 30.0
"""Seconds the second run may take to finish."""
DOWNTIME = 1.0
"""Seconds after the timer was journaled before the kill."""
LATE = 1.0
"""How late after its deadline the timer may fire (event-loop and commit latency)."""
POLL = 0.005

Row = tuple[str, dict[str, Any], float]
"""One journal event: (kind, decoded data, at)."""


def _rows(db: Path) -> list[Row]:
    """The workflow's journal events, read-only; empty until the worker created the schema."""
    if not db.exists():
        return []
    try:
        con = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            rows = con.execute(
                "SELECT kind, data, at FROM events WHERE workflow_id = ? ORDER BY seq",
                (WORKFLOW_ID,),
            ).fetchall()
        finally:
            con.close()
    except sqlite3.OperationalError:  # no schema yet
        return []
    return [(kind, json.loads(data), at) for kind, data, at in rows]


def _of(rows: list[Row], kind: str) -> list[Row]:
    return [row for row in rows if row[0] == kind]


def _status(db: Path) -> str:
    con = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        [(status,)] = con.execute(
            "SELECT status FROM workflows WHERE id = ?", (WORKFLOW_ID,)
        ).fetchall()
    finally:
        con.close()
    return str(status)


class Worker(WorkerProcess):
    """The wait_app worker subprocess; never outlives the test."""

    poll = POLL

    def __init__(self, tmp_path: Path, mode: str) -> None:
        self.db = tmp_path / "wait.db"
        super().__init__(tmp_path, mode, "tests.runtime.wait_app", [str(self.db), mode])

    def finish(self) -> dict[str, str]:
        """Wait for a clean exit; return the worker's ``KEY value`` output lines."""
        rc = self.exit_code(FINISH_DEADLINE)
        assert rc == 0, self.diagnostics()
        lines = self.out.read_text(encoding="utf-8").splitlines()
        return dict(line.split(" ", 1) for line in lines if " " in line)


class TestKillWhileWaiting:
    def test_event_after_restart_is_delivered_and_timer_keeps_its_deadline(self, tmp_path):
        """After a SIGKILL in both waits, a new event is delivered; the timer keeps its deadline."""
        with Worker(tmp_path, "first") as first:
            db = first.db
            first.wait_until(
                "both waits journaled",
                lambda: {"timer_scheduled", "event_wait_started"} <= {r[0] for r in _rows(db)},
                time.monotonic() + START_DEADLINE,
            )
            [(_, timer, timer_journaled_at)] = _of(_rows(db), "timer_scheduled")
            fire_at = timer["fire_at"]
            first.wait_until(
                "downtime before the kill",
                lambda: time.time() >= timer_journaled_at + DOWNTIME,
                time.monotonic() + START_DEADLINE,
            )
            first.kill()
        killed = _rows(db)
        assert [r[0] for r in killed] == [
            "workflow_started",
            "timer_scheduled",
            "event_wait_started",
        ]
        assert fire_at == killed[0][2] + SLEEP  # an absolute deadline: start + 3 s

        restarted_at = time.time()
        assert restarted_at < fire_at, "the kill came too late to test an overdue-free restart"
        with Worker(tmp_path, "resume") as second:
            out = second.finish()
        result = json.loads(out["RESULT"])
        opened_at = float(out["OPENED"])
        rows = _rows(db)

        # the event sent after the restart reached the wait begun before the kill
        assert result["payload"] == PAYLOAD
        [(_, wait, _)] = _of(rows, "event_wait_started")
        [(_, received, received_at)] = _of(rows, "event_received")
        assert (wait["name"], received["name"], received["payload"]) == (EVENT, EVENT, PAYLOAD)
        assert received_at >= opened_at >= restarted_at

        # the timer fired once, at its original deadline: downtime counted, not restarted
        [(_, rescheduled, _)] = _of(rows, "timer_scheduled")
        [(_, fired, fired_at)] = _of(rows, "timer_fired")
        assert rescheduled == timer
        assert fired["step"] == timer["step"]
        assert fire_at <= fired_at <= fire_at + LATE
        assert fired_at < restarted_at + SLEEP  # a restarted timer could not fire before this

        # the workflow resumed when the later of its two waits ended (now() has microseconds)
        assert result["woke_at"] == pytest.approx(max(fired_at, received_at), abs=1e-5)
        assert rows[-1][0] == "workflow_completed"
        assert _status(db) == "completed"
