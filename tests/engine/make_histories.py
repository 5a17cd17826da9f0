"""Write the golden histories in ``histories/*.json``.

Run ``uv run python -m tests.engine.make_histories`` from the project root. Not a test module
(pytest collects only ``test_*.py``). Each history is recorded by driving the executor over the
workflows of ``test_replay.py`` the way the runtime journals a live run: the started row, then
per outcome one commit holding the outcome, one ``activity_scheduled`` row per new schedule in
command order and the terminal row; failed attempts are committed on their own. Rows are
produced by ``encode_event``, so the files hold exactly the journal's ``kind`` and ``data``
columns. Regenerate only on purpose: the files are the compatibility record that old journals
must keep replaying.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowcore import NondeterminismError, NonRetryableError, serde
from flowcore.engine.commands import Command, CompleteWorkflow, FailWorkflow, ScheduleActivity
from flowcore.engine.events import (
    ActivityAttemptFailed,
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    Event,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowParked,
    WorkflowStarted,
    encode_event,
)
from flowcore.engine.executor import WorkflowExecutor
from flowcore.errors import FailureInfo
from tests.engine import test_replay as code

if TYPE_CHECKING:
    from flowcore import WorkflowDef

HISTORIES = Path(__file__).parent / "histories"
T0 = 1_700_000_000.0


class Recorder:
    """Drives one executor and journals what the runtime would; the clock ticks per report."""

    def __init__(self, defn: WorkflowDef[Any, Any], workflow_id: str, payload: Any) -> None:
        self.workflow_id = workflow_id
        self.executor = WorkflowExecutor(defn, workflow_id)
        self.now = T0
        self.events: list[Event] = []
        self.pending: dict[int, ScheduleActivity] = {}
        self.attempts: dict[int, int] = {}
        started = WorkflowStarted(
            at=self.now, name=defn.name, version=defn.version, input=serde.encode(payload)
        )
        self.events.append(started)
        self._carry_out(self.executor.start(started))

    def complete(self, step: int) -> None:
        """The activity at ``step`` returns what its function returns for the recorded arguments."""
        self._tick()
        cmd = self.pending.pop(step)
        value = cmd.activity.fn(*cmd.args, **cmd.kwargs)
        attempt = self._attempt(step)
        event = ActivityCompleted(
            at=self.now, step=step, result=serde.encode(value), attempt=attempt
        )
        self._carry_out(self.executor.apply(event), event)

    def fail_attempt(self, step: int, error: Exception) -> None:
        """One attempt fails and a retry is due after the activity's retry delay."""
        self._tick()
        attempt = self._attempt(step)
        self.attempts[step] = attempt + 1
        delay = self.pending[step].activity.retry.delay(attempt)
        self.events.append(
            ActivityAttemptFailed(
                at=self.now,
                step=step,
                attempt=attempt,
                failure=FailureInfo.from_exception(error),
                retry_at=self.now + delay,
            )
        )

    def fail(self, step: int, error: Exception, *, timed_out: bool = False) -> None:
        """The activity fails for good."""
        self._tick()
        self.pending.pop(step)
        event = ActivityFailed(
            at=self.now,
            step=step,
            failure=FailureInfo.from_exception(error),
            attempts=self._attempt(step),
            timed_out=timed_out,
        )
        self._carry_out(self.executor.apply(event), event)

    def park(self, current: WorkflowDef[Any, Any]) -> None:
        """Replay the journal with ``current`` code and record the parking it causes."""
        try:
            WorkflowExecutor(current, self.workflow_id).replay(self.events)
        except NondeterminismError as exc:
            self.events.append(WorkflowParked(at=self._tick(), reason=str(exc), step=exc.step))
        else:
            raise AssertionError("the current code replays this journal: nothing to park")

    def _attempt(self, step: int) -> int:
        return self.attempts.get(step, 1)

    def _tick(self) -> float:
        self.now += 0.25
        return self.now

    def _carry_out(self, commands: list[Command], outcome: Event | None = None) -> None:
        commit: list[Event] = [] if outcome is None else [outcome]
        for cmd in commands:
            match cmd:
                case ScheduleActivity():
                    self.pending[cmd.step] = cmd
                    commit.append(
                        ActivityScheduled(
                            at=self.now,
                            step=cmd.step,
                            name=cmd.activity.name,
                            args=cmd.encoded_args,
                            kwargs=cmd.encoded_kwargs,
                        )
                    )
                case CompleteWorkflow():
                    commit.append(WorkflowCompleted(at=self.now, result=cmd.result))
                case FailWorkflow():
                    # the workflow's own traceback names this machine's paths: keep it out
                    failure = dataclasses.replace(cmd.failure, traceback="")
                    commit.append(WorkflowFailed(at=self.now, failure=failure))
        self.events.extend(commit)


def write(name: str, recorder: Recorder, description: str) -> None:
    """Write one golden file: the instance, a description, and its rows as journaled."""
    rows = []
    for event in recorder.events:
        kind, data = encode_event(event)
        rows.append({"kind": kind, "data": json.loads(data), "at": event.at})
    started = recorder.events[0]
    assert isinstance(started, WorkflowStarted)
    doc = {
        "workflow": started.name,
        "workflow_id": recorder.workflow_id,
        "description": description,
        "events": rows,
    }
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    (HISTORIES / f"{name}.json").write_text(text, encoding="utf-8")
    sys.stderr.write(f"wrote histories/{name}.json ({len(rows)} rows)\n")


def main() -> None:
    """Record every golden history."""
    rec = Recorder(code.checkout, "golden-chain", code.Order("mug", 2))
    for step in (1, 2, 3):
        rec.complete(step)
    write("chain", rec, "checkout: three activities in a chain, completed")

    rec = Recorder(code.word_counts, "golden-fan-out", [f"https://{c}.example" for c in "abc"])
    for step in (2, 1, 4, 3, 6, 5, 7):
        rec.complete(step)
    write("fan_out", rec, "word_counts: three fetch/count pipelines finishing out of order")

    rec = Recorder(code.book_trip, "golden-compensation", "oslo")
    rec.complete(1)
    rec.fail(2, NonRetryableError("no rooms left in oslo"))
    rec.complete(3)
    write("compensation", rec, "book_trip: book_hotel fails for good, the flight is cancelled")

    rec = Recorder(code.nightly_sync, "golden-retried", "warehouse")
    rec.fail_attempt(1, ConnectionError("connection reset by peer"))
    rec.fail_attempt(1, ConnectionError("connection reset by peer"))
    rec.complete(1)
    rec.complete(2)
    write("retried", rec, "nightly_sync: pull_rows succeeds on its third attempt")

    timeout = TimeoutError("activity 'render_pdf' exceeded its 30.0s timeout")
    rec = Recorder(code.render_report, "golden-timed-out", "q3")
    rec.fail_attempt(1, timeout)
    rec.fail_attempt(1, timeout)
    rec.fail(1, timeout, timed_out=True)
    write("timed_out", rec, "render_report: render_pdf times out three times; the workflow fails")

    rec = Recorder(code.word_counts, "golden-unfinished", [f"https://{c}.example" for c in "abc"])
    rec.complete(2)
    rec.fail_attempt(1, ConnectionError("connection refused"))
    write("unfinished", rec, "word_counts: steps 1 (awaiting a retry), 3 and 4 in flight")

    rec = Recorder(code.SHIP_ORDER_RECORDED, "golden-nondeterministic", code.Order("mug", 3))
    rec.complete(1)
    rec.complete(2)
    rec.park(code.ship_order)
    write(
        "nondeterministic",
        rec,
        "ship_order: recorded by code that reserved before charging; the current code charges "
        "first, so recovery parked it",
    )


if __name__ == "__main__":
    main()
