"""Write the golden histories in ``histories/*.json``.

Run ``uv run python -m tests.engine.make_histories`` from the project root. Not a test module
(pytest collects only ``test_*.py``). Each history is recorded by driving the executor over the
workflows of ``test_replay.py`` the way the runtime journals a live run: the started row (and
the rows its first commands record), then per reported event (an activity outcome, a timer
firing, an external event, a cancel/suspend/resume request, a child's end) one commit holding
that event, one row per new scheduling command (``activity_scheduled``, ``timer_scheduled``,
``event_wait_started``, ``child_scheduled``, ``custom_status_set``) in command order and the
terminal row; failed attempts and terminations are committed on their own. Cancel commands are
carried out, not journaled; ``continue_as_new`` resets the journal to the new run's started row.
Rows are produced by ``encode_event``, so the files hold exactly the journal's ``kind`` and
``data`` columns; ``activity_scheduled`` rows carry the call's ``op`` as the runtime records it.
Regenerate only on purpose: the files are the compatibility record that old journals must keep
replaying. ``histories/legacy/`` holds the same histories as journaled before ``op`` existed;
this script never rewrites them.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowcore import NondeterminismError, NonRetryableError, serde
from flowcore.engine.commands import (
    CancelActivity,
    CancelChild,
    CancelTimer,
    CancelWorkflow,
    Command,
    CompleteWorkflow,
    ContinueAsNew,
    FailWorkflow,
    ScheduleActivity,
    SetCustomStatus,
    StartChild,
    StartTimer,
    WaitForEvent,
)
from flowcore.engine.events import (
    ActivityAttemptFailed,
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    CancelRequested,
    ChildCompleted,
    ChildFailed,
    ChildScheduled,
    CustomStatusSet,
    Event,
    EventReceived,
    EventWaitStarted,
    TimerFired,
    TimerScheduled,
    WorkflowCanceled,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowParked,
    WorkflowResumed,
    WorkflowStarted,
    WorkflowSuspended,
    WorkflowTerminated,
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

    def __init__(
        self,
        defn: WorkflowDef[Any, Any],
        workflow_id: str,
        payload: Any,
        *,
        parent_id: str | None = None,
    ) -> None:
        self.defn = defn
        self.workflow_id = workflow_id
        self.parent_id = parent_id
        self.now = T0
        self.runs: list[list[Event]] = []
        """The journals of earlier runs, as they stood when the run continued as new."""
        self._begin(serde.encode(payload))

    def _begin(self, encoded: Any) -> None:
        self.executor = WorkflowExecutor(self.defn, self.workflow_id)
        self.events: list[Event] = []
        self.pending: dict[int, ScheduleActivity] = {}
        self.attempts: dict[int, int] = {}
        self.timers: dict[int, float] = {}
        """Armed timers and event-wait deadlines: step -> when they fire."""
        self.children: dict[int, StartChild] = {}
        started = WorkflowStarted(
            at=self.now,
            name=self.defn.name,
            version=self.defn.version,
            input=encoded,
            parent_id=self.parent_id,
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

    def fire(self, step: int) -> None:
        """The timer (or event-wait deadline) of ``step`` fires, at its deadline at the earliest."""
        fire_at = self.timers.pop(step)
        self.now = max(self._tick(), fire_at)
        self._report(TimerFired(at=self.now, step=step))

    def send(self, name: str, payload: Any) -> None:
        """An external event arrives (``runtime.send_event``)."""
        self._report(EventReceived(at=self._tick(), name=name, payload=serde.encode(payload)))

    def child_completed(self, step: int, result: Any) -> None:
        """The child of ``step`` returned ``result`` (already encoded, as its journal holds it)."""
        self.children.pop(step)
        self._report(ChildCompleted(at=self._tick(), step=step, result=result))

    def child_failed(self, step: int, failure: FailureInfo, *, canceled: bool = False) -> None:
        """The child of ``step`` failed, or ended canceled."""
        self.children.pop(step)
        event = ChildFailed(at=self._tick(), step=step, failure=failure, canceled=canceled)
        self._report(event)

    def cancel(self, reason: str | None) -> None:
        """``runtime.cancel()``."""
        self._report(CancelRequested(at=self._tick(), reason=reason))

    def suspend(self) -> None:
        """``runtime.suspend()``."""
        self._report(WorkflowSuspended(at=self._tick()))

    def resume(self) -> None:
        """``runtime.resume()``."""
        self._report(WorkflowResumed(at=self._tick()))

    def terminate(self, reason: str | None) -> None:
        """``runtime.terminate()``: the run is dropped and the terminal row journaled alone."""
        self.executor.close()
        self.events.append(WorkflowTerminated(at=self._tick(), reason=reason))

    def _report(self, event: Event) -> None:
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
        restart: ContinueAsNew | None = None
        for cmd in commands:
            if isinstance(cmd, ContinueAsNew):
                restart = cmd
                continue
            self._track(cmd)
            row = self._row(cmd)
            if row is not None:
                commit.append(row)
        self.events.extend(commit)
        if restart is not None:
            self.runs.append(self.events)  # the runtime resets the journal in the same step
            self._begin(restart.input)

    def _track(self, cmd: Command) -> None:
        """Keep track of the work in flight, as the runtime starts and cancels it."""
        match cmd:
            case ScheduleActivity():
                self.pending[cmd.step] = cmd
            case StartTimer():
                self.timers[cmd.step] = cmd.fire_at
            case WaitForEvent():
                if cmd.deadline is not None:
                    self.timers[cmd.step] = cmd.deadline
            case StartChild():
                self.children[cmd.step] = cmd
            case CancelTimer():
                self.timers.pop(cmd.step, None)
            case CancelActivity():
                self.pending.pop(cmd.step)  # stopped: its outcome is never reported
            case CancelChild():
                self.children.pop(cmd.step)
            case _:
                pass

    def _row(self, cmd: Command) -> Event | None:  # noqa: PLR0911 - one return per kind
        """The journal row a command records, if any (cancellations record none)."""
        now = self.now
        match cmd:
            case ScheduleActivity():
                return ActivityScheduled(
                    at=now,
                    step=cmd.step,
                    name=cmd.activity.name,
                    args=cmd.encoded_args,
                    kwargs=cmd.encoded_kwargs,
                    op=cmd.op,  # as the runtime's _scheduling_event records it
                )
            case StartTimer():
                return TimerScheduled(at=now, step=cmd.step, fire_at=cmd.fire_at)
            case WaitForEvent():
                return EventWaitStarted(at=now, step=cmd.step, name=cmd.name, deadline=cmd.deadline)
            case StartChild():
                return ChildScheduled(
                    at=now,
                    step=cmd.step,
                    name=cmd.workflow,
                    child_id=cmd.child_id,
                    version=cmd.version,
                    input=cmd.input,
                )
            case SetCustomStatus():
                return CustomStatusSet(at=now, step=cmd.step, value=cmd.value)
            case CompleteWorkflow():
                return WorkflowCompleted(at=now, result=cmd.result)
            case FailWorkflow():
                # the workflow's own traceback names this machine's paths: keep it out
                return WorkflowFailed(
                    at=now, failure=dataclasses.replace(cmd.failure, traceback="")
                )
            case CancelWorkflow():
                return WorkflowCanceled(at=now, reason=cmd.reason, result=cmd.result)
            case _:
                return None


def write(
    name: str, recorder: Recorder, description: str, events: list[Event] | None = None
) -> None:
    """Write one golden file: the instance, a description, and its rows as journaled.

    ``events`` (default: the recorder's current run) picks an earlier run's journal.
    """
    events = recorder.events if events is None else events
    rows = []
    for event in events:
        kind, data = encode_event(event)
        rows.append({"kind": kind, "data": json.loads(data), "at": event.at})
    started = events[0]
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
    record_activities()
    record_timers_and_events()
    record_lifecycle()
    record_children_and_continuation()


def record_activities() -> None:
    """Histories of plain activities: chains, fan-outs, failures, retries, parking."""
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


def record_timers_and_events() -> None:
    """An approval raced against a timer: timed out, approved, and terminated while waiting."""
    rec = Recorder(code.approve_expense, "golden-approval-timed-out", code.Expense("E-17", 420))
    rec.complete(1)  # -> status (2), the decision wait (3) raced against a one-day timer (4)
    rec.fire(4)  # the timer wins: the wait's deadline is disarmed, the expense escalated (6)
    rec.complete(6)
    write(
        "approval_timed_out",
        rec,
        "approve_expense: no decision within a day; the timer wins the race and it escalates",
    )

    rec = Recorder(code.approve_expense, "golden-approval-approved", code.Expense("E-18", 90))
    rec.complete(1)
    rec.send("decision", code.Decision(approved=True, by="ann"))  # the wait wins the race
    rec.complete(6)
    write("approval_approved", rec, "approve_expense: approved in time, then paid")

    rec = Recorder(code.approve_expense, "golden-terminated", code.Expense("E-19", 5000))
    rec.complete(1)
    rec.send("comment", "please attach the receipt")  # nobody waits for it: buffered
    rec.terminate("expense withdrawn")
    write(
        "terminated",
        rec,
        "approve_expense: an unawaited event is buffered; terminated while waiting for a decision",
    )


def record_lifecycle() -> None:
    """Cancellation with compensation, and suspension."""
    rec = Recorder(code.provision_fleet, "golden-canceled-fan-out", ["web-1", "web-2", "db-1"])
    rec.complete(2)
    rec.cancel("budget cut")  # steps 1 and 3 are cancelled; web-2's machine is released (4)
    rec.complete(4)
    write(
        "canceled_fan_out",
        rec,
        "provision_fleet: canceled with two machines pending; the ready one is released",
    )

    rec = Recorder(code.checkout, "golden-suspended", code.Order("pen", 3))
    rec.complete(1)
    rec.suspend()
    rec.complete(2)  # held until the resume
    rec.resume()
    rec.complete(3)
    write("suspended", rec, "checkout: suspended while reserve_stock ran, then resumed")


def record_children_and_continuation() -> None:
    """A parent with three children (and one child's own history); a run continued as new."""
    thumb = Recorder(
        code.make_thumbnail, "golden-gallery:1.1.1", "a.png", parent_id="golden-gallery"
    )
    thumb.complete(1)
    write("child", thumb, "make_thumbnail: the first child of golden-gallery, completed")
    gif = Recorder(code.make_thumbnail, "golden-gallery:1.2.1", "b.gif", parent_id="golden-gallery")
    gif.fail(1, NonRetryableError("cannot resize animated b.gif"))
    rec = Recorder(code.build_gallery, "golden-gallery", ["a.png", "b.gif", "c.png"])
    rec.child_completed(1, _terminal(thumb, WorkflowCompleted).result)
    rec.child_failed(2, _terminal(gif, WorkflowFailed).failure)
    canceled = FailureInfo(type_name="flowcore.WorkflowCanceledError", message="canceled by ops")
    rec.child_failed(3, canceled, canceled=True)
    write(
        "children",
        rec,
        "build_gallery: three child workflows; one completes, one fails, one is canceled",
    )

    rec = Recorder(code.watch_site, "golden-continued", code.Watch("https://shop.example", 0))
    rec.complete(2)
    rec.fire(3)  # continue_as_new: the journal restarts with the next run
    rec.complete(2)
    [first_run] = rec.runs
    write(
        "continued_run1",
        rec,
        "watch_site: the first run as journaled when it continued as new",
        first_run,
    )
    write("continued_run2", rec, "watch_site: the run it continued as; the site is down")


def _terminal(recorder: Recorder, kind: type[Any]) -> Any:
    """The terminal row of ``recorder``'s journal, checked to be a ``kind``."""
    last = recorder.events[-1]
    assert isinstance(last, kind)
    return last


if __name__ == "__main__":
    main()
