"""Crash tests: SIGKILL a real worker process at seeded points, restart it, check nothing broke.

Each test runs ``tests/runtime/crash_app.py`` in a subprocess on a SQLite journal in ``tmp_path``,
waits (polling the activity log and the journal, with a deadline) until the plan's kill point is
reached, sends SIGKILL, snapshots what the journal had committed, then runs the worker again on
the same files and lets it finish.

Activities are dispatched before their ``activity_scheduled`` event is durable, so after a crash
another call may be given the step number a lost call had: step numbers do not identify calls
across a crash. Every check therefore names an activity call by its label (each call of a plan
has its own) and by its ``op``, its place in the program (``"3"``, ``"1.2.1"``), which replay
reproduces whatever order outcomes arrive in; the idempotency key is ``workflow_id/op/attempt``.
A journal's ``activity_completed`` and ``activity_attempt_failed`` events are tied to their call
through the schedule of the same step *in that same journal* (its ``op`` and label argument).
The checks are the core durability promises:

(a) every workflow returns what a crash-free run returns;
(b) a call whose completion was committed before the kill never starts again (each of its
    attempts has exactly one ``start`` line in the whole log, none after the kill);
(c) every activity call ended at least once (at-least-once);
(d) every final journal is well formed (contiguous seqs and steps, one completion per step and
    after its schedule, each call completed by its only successful attempt, one
    ``workflow_completed`` at the end);
(e) the ``workflows`` table says ``completed`` for every instance;
(f) an idempotency key names exactly one call across the crash, every call keeps one key (its
    ``op``, the same in the log before and after the kill and in the journal before and after
    it, is its place in the program, and its key is ``workflow_id/op/attempt``), and a call cut
    in flight is re-run with the same attempt, hence the same key, unless its failure was
    committed;
(g) an ``activity_attempt_failed`` is committed before the next attempt starts.

Kill points are made deterministic by holds: in the first run, planned activities log ``hold``
and block until the SIGKILL. Activities fail their first attempt at seeded places and are retried
at once (no backoff), so in-flight retries are cut too. Those kills come when the journal has
caught up; the ``unsynced`` scenario instead has the worker SIGKILL itself the moment a planned
call starts, which under eager dispatch lands before that call's schedule is durable (the call
then gets another step number after the crash, and must keep its key all the same).

Seeds choose the kill points. ``FLOWCORE_CRASH_SEEDS`` selects them (``0-19``, or ``1,4,7``);
the default is a few seeds that keep the file fast. Every test runs under each of the runtime's
dispatch modes (``Runtime(dispatch=...)``: ``eager`` starts an activity while its schedule
commits, ``durable`` once it is committed); ``FLOWCORE_CRASH_DISPATCH`` (``eager``, ``durable``
or both, comma-separated) narrows that. A runtime without the option runs as it is (``default``).
"""

from __future__ import annotations

import inspect
import json
import os
import signal
import sqlite3
import subprocess
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from tests.runtime.crash_app import (
    CHAIN_LEN,
    Plan,
    Wait,
    build_plan,
    chain_labels,
    expected_ops,
    expected_result,
    fanout_labels,
)
from tests.runtime.worker_process import WorkerProcess

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.crash

KILL_DEADLINE = 30.0
"""Seconds the first run may take to reach its kill point."""
FINISH_DEADLINE = 60.0
"""Seconds the second run may take to finish every workflow."""
POLL = 0.002
DEFAULT_SEEDS = "0-2"


def _seeds() -> list[int]:
    spec = os.environ.get("FLOWCORE_CRASH_SEEDS", "").strip() or DEFAULT_SEEDS
    seeds: list[int] = []
    for part in spec.split(","):
        lo, sep, hi = part.strip().partition("-")
        seeds.extend(range(int(lo), int(hi) + 1) if sep else [int(lo)])
    return seeds


Journals = dict[str, list[tuple[str, dict[str, Any]]]]
"""Workflow id -> its events as (kind, decoded data), in seq order."""

Call = tuple[str, str]
"""(workflow id, label): one activity call of a plan, whatever step it is given."""


def _dispatch_modes() -> list[str]:
    from flowcore import Runtime

    if "dispatch" not in inspect.signature(Runtime).parameters:
        return ["default"]
    spec = os.environ.get("FLOWCORE_CRASH_DISPATCH", "").strip() or "eager,durable"
    return [mode.strip() for mode in spec.split(",")]


SEEDS = pytest.mark.parametrize("seed", _seeds(), ids=lambda s: f"seed{s}")
DISPATCH = pytest.mark.parametrize("dispatch", _dispatch_modes())


# -- the activity log ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Line:
    """One line of the activity log."""

    kind: str
    workflow_id: str
    op: str
    """``activity_info().op``: the call's place in the program."""
    attempt: int
    label: str
    key: str
    """``activity_info().idempotency_key``."""

    @property
    def call(self) -> Call:
        return self.workflow_id, self.label


def _parse(text: str) -> list[Line]:
    lines = []
    for raw in text.splitlines():
        kind, wid, op, attempt, label, key = raw.split(" ")
        lines.append(Line(kind, wid, op, int(attempt), label, key))
    return lines


def _read_log(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.exists() else ""


# -- the journal, read-only --------------------------------------------------------------------


def _query(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def _journals(db: Path) -> Journals:
    journals: Journals = defaultdict(list)
    if not db.exists():
        return journals
    try:
        rows = _query(db, "SELECT workflow_id, kind, data FROM events ORDER BY workflow_id, seq")
    except sqlite3.OperationalError:  # the worker was killed before it created the schema
        return journals
    for wid, kind, data in rows:
        journals[wid].append((kind, json.loads(data)))
    return journals


@dataclass(slots=True)
class Calls:
    """A journal's activity events, each tied to its call through the schedule of its step."""

    scheduled: dict[Call, dict[str, Any]] = field(default_factory=dict)
    """Call -> the data of its ``activity_scheduled`` (``step``, ``op``, ``args``)."""
    completed: dict[Call, int] = field(default_factory=dict)
    """Call -> attempt of its ``activity_completed``."""
    failed: set[tuple[str, str, int]] = field(default_factory=set)
    """(workflow id, label, attempt) of each ``activity_attempt_failed``."""


def _calls(journals: Journals, when: str) -> Calls:
    """Tie every activity event of ``journals`` to its call (by label) via its step's schedule."""
    calls = Calls()
    for wid, events in journals.items():
        by_step: dict[int, str] = {}
        for kind, data in events:
            if kind == "activity_scheduled":
                label = data["args"][1]
                assert (wid, label) not in calls.scheduled, f"{wid}: {label} scheduled twice {when}"
                assert data["step"] not in by_step, f"{wid}: step {data['step']} reused {when}"
                by_step[data["step"]] = label
                calls.scheduled[wid, label] = data
            elif kind in ("activity_completed", "activity_attempt_failed"):
                assert data["step"] in by_step, (
                    f"{wid}: {kind} of step {data['step']} committed without (or before) its "
                    f"schedule {when}"
                )
                label = by_step[data["step"]]
                if kind == "activity_attempt_failed":
                    calls.failed.add((wid, label, data["attempt"]))
                else:
                    assert (wid, label) not in calls.completed, f"{wid}: {label} completed twice"
                    calls.completed[wid, label] = data["attempt"]
    return calls


def _is_committed(db: Path, wid: str, label: str) -> bool:
    """Does the journal hold ``activity_completed`` for the call labelled ``label``?"""
    if not db.exists():
        return False
    try:
        rows = _query(
            db,
            "SELECT 1 FROM events AS s JOIN events AS c ON c.workflow_id = s.workflow_id "
            "AND json_extract(c.data, '$.step') = json_extract(s.data, '$.step') "
            "WHERE s.workflow_id = ? AND s.kind = 'activity_scheduled' "
            "AND json_extract(s.data, '$.args[1]') = ? AND c.kind = 'activity_completed'",
            (wid, label),
        )
    except sqlite3.OperationalError:  # the worker has not created the schema yet
        return False
    return bool(rows)


# -- running the worker ------------------------------------------------------------------------


class Worker(WorkerProcess):
    """The crash_app worker subprocess; never outlives the test."""

    poll = POLL

    def __init__(self, tmp_path: Path, scenario: str, seed: int, mode: str, dispatch: str) -> None:
        self.db = tmp_path / "crash.db"
        self.log = tmp_path / "activities.log"
        args = [str(self.db), str(self.log), scenario, str(seed), mode, dispatch]
        super().__init__(tmp_path, mode, "tests.runtime.crash_app", args)

    def died(self, what: str, deadline: float) -> None:
        """Wait for the worker to SIGKILL itself (a ``dies`` kill point)."""
        try:
            rc = self.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pytest.fail(f"{what} not reached within {KILL_DEADLINE}s; {self.diagnostics()}")
        assert rc == -signal.SIGKILL, (
            f"{what}: the worker did not kill itself; {self.diagnostics()}"
        )

    def finish(self) -> dict[str, Any]:
        rc = self.exit_code(FINISH_DEADLINE)
        assert rc == 0, self.diagnostics()
        out = self.out.read_text(encoding="utf-8")
        results = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
        assert len(results) == 1, f"no RESULT line in the worker's output:\n{out[-2000:]}"
        return json.loads(results[0].removeprefix("RESULT "))


def _reached(worker: Worker, wait: Wait) -> Any:
    def log_lines() -> list[Line]:
        text = _read_log(worker.log)
        text = text[: text.rfind("\n") + 1]  # a line being written is not read half-way
        return [ln for ln in _parse(text) if ln.workflow_id == wait.workflow_id]

    if wait.kind == "hold":
        return lambda: any(ln.kind == "hold" and ln.label == wait.label for ln in log_lines())
    if wait.kind == "ends":
        return lambda: sum(ln.kind == "end" for ln in log_lines()) >= wait.count
    return lambda: _is_committed(worker.db, wait.workflow_id, wait.label)


# -- one crash and recovery ----------------------------------------------------------------------


@dataclass(slots=True)
class Crash:
    """What a crash-and-recover run observed."""

    plan: Plan
    db: Path
    before: list[Line]
    """Log lines written before the SIGKILL."""
    after: list[Line]
    """Log lines written by the second run."""
    snapshot: Calls
    """What the journal had committed at the kill, by call."""
    results: dict[str, Any]

    @property
    def committed(self) -> dict[Call, int]:
        """Call -> attempt of each ``activity_completed`` committed before the kill."""
        return self.snapshot.completed

    @property
    def failed_attempts(self) -> set[tuple[str, str, int]]:
        """(workflow id, label, attempt) of each ``activity_attempt_failed`` committed before it."""
        return self.snapshot.failed


def crash_and_recover(tmp_path: Path, scenario: str, seed: int, dispatch: str) -> Crash:
    plan = build_plan(scenario, seed)
    with Worker(tmp_path, scenario, seed, "first", dispatch) as first:
        deadline = time.monotonic() + KILL_DEADLINE
        for wait in plan.waits:
            if wait.kind == "dies":
                first.died(f"kill point {wait}", deadline)
            else:
                first.wait_until(f"kill point {wait}", _reached(first, wait), deadline)
        if not plan.dies:
            first.kill()
    text = _read_log(first.log)
    if text and not text.endswith("\n"):
        # Linux may end a SIGKILLed write() at a page boundary (it checks for a fatal signal
        # between pages), cutting the line a dying activity was logging: drop the piece, as if
        # the kill came just before that write.
        text = text[: text.rfind("\n") + 1]
        with first.log.open("r+", encoding="utf-8") as log:
            log.truncate(len(text.encode("utf-8")))
    cut = len(text)
    snapshot = _calls(_journals(first.db), "before the kill")
    with Worker(tmp_path, scenario, seed, "resume", dispatch) as second:
        results = second.finish()
    text = _read_log(second.log)
    return Crash(plan, first.db, _parse(text[:cut]), _parse(text[cut:]), snapshot, results)


# -- the checks ------------------------------------------------------------------------------


def check_kill_point(crash: Crash) -> None:
    """The kill landed where the plan meant it to: every wait met, held activities in flight."""
    for wait in crash.plan.waits:
        mine = [ln for ln in crash.before if ln.workflow_id == wait.workflow_id]
        if wait.kind == "hold":
            assert any(ln.kind == "hold" and ln.label == wait.label for ln in mine), wait
        elif wait.kind == "ends":
            assert sum(ln.kind == "end" for ln in mine) >= wait.count, wait
        elif wait.kind == "dies":
            assert [ln.kind for ln in mine if ln.label == wait.label] == ["start", "die"], wait
        else:
            assert (wait.workflow_id, wait.label) in crash.committed, wait
    for call in crash.plan.holds:
        held = [ln for ln in crash.before if ln.call == call]
        assert not any(ln.kind == "end" for ln in held), f"held {call} ended"
        assert call not in crash.committed, f"held {call} recorded"


def check_results(crash: Crash) -> None:
    """(a) every workflow returns what a crash-free run returns."""
    expected = {wf.id: expected_result(wf) for wf in crash.plan.workflows}
    assert crash.results == expected


def check_keys(crash: Crash, final: Calls) -> None:
    """(f) an idempotency key names one call across the crash; every call keeps its op and key."""
    keys: dict[str, dict[str, str]] = defaultdict(dict)
    seen: dict[Call, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for when, lines in (("before the kill", crash.before), ("after it", crash.after)):
        for ln in lines:
            assert ln.key == f"{ln.workflow_id}/{ln.op}/{ln.attempt}", (
                f"{ln.call}: idempotency_key {ln.key!r} is not workflow_id/op/attempt "
                f"(op {ln.op!r}, attempt {ln.attempt}), {when}"
            )
            keys[ln.key].setdefault(ln.label, when)
            seen[ln.call][ln.op].append(f"logged {when}")
    for snapshot, when in ((crash.snapshot, "before the kill"), (final, "at the end")):
        for call, data in snapshot.scheduled.items():
            seen[call][data["op"]].append(f"journaled {when}")
    for key, labels in keys.items():
        assert len(labels) == 1, (
            f"idempotency key {key} was used by different activity calls: "
            + ", ".join(f"{label} ({when})" for label, when in labels.items())
        )
    places = {
        (wf.id, label): op for wf in crash.plan.workflows for label, op in expected_ops(wf).items()
    }
    for call, ops in seen.items():
        where = {op: sorted(set(whens)) for op, whens in ops.items()}
        assert len(ops) == 1, f"{call} changed op (so key) across the crash: {where}"
        assert list(ops) == [places.get(call)], (
            f"{call} has op {where}, not its place in the program {places.get(call)!r}"
        )


def check_no_rerun_after_commit(crash: Crash) -> None:
    """(b) a call whose completion was committed before the kill never started again."""
    starts = Counter(
        (ln.workflow_id, ln.label, ln.attempt)
        for ln in crash.before + crash.after
        if ln.kind == "start"
    )
    for (wid, label), attempt in crash.committed.items():
        rerun = [ln for ln in crash.after if ln.call == (wid, label)]
        assert not rerun, f"{wid} {label} was committed before the kill but ran again: {rerun}"
        mine = {a: n for (w, lb, a), n in starts.items() if (w, lb) == (wid, label)}
        assert mine == dict.fromkeys(range(1, attempt + 1), 1), (
            f"{wid} {label} completed by attempt {attempt}; starts by attempt: {mine}"
        )


def check_at_least_once(crash: Crash, final: Calls) -> None:
    """(c) every activity call ended at least once."""
    ended = {ln.call for ln in crash.before + crash.after if ln.kind == "end"}
    for wf in crash.plan.workflows:
        scheduled = sorted(label for wid, label in final.scheduled if wid == wf.id)
        want = chain_labels() if wf.shape == "chain" else fanout_labels(wf.payload["branches"])
        assert scheduled == sorted(want), wf.id
        for label in scheduled:
            assert (wf.id, label) in ended, f"{wf.id} {label} never ended"


def check_journal(crash: Crash, journals: Journals, final: Calls) -> None:
    """(d) each journal is well formed and (e) each status row says completed."""
    seqs = _query(crash.db, "SELECT workflow_id, group_concat(seq) FROM events GROUP BY 1")
    ended = {
        (ln.workflow_id, ln.label, ln.attempt)
        for ln in crash.before + crash.after
        if ln.kind == "end"
    }
    for wid, joined in seqs:
        got = sorted(int(s) for s in joined.split(","))
        assert got == list(range(1, len(got) + 1)), f"{wid}: seqs {got}"
    for wf in crash.plan.workflows:
        kinds = [kind for kind, _ in journals[wf.id]]
        assert kinds[0] == "workflow_started", wf.id
        assert kinds.count("workflow_completed") == 1, (wf.id, kinds)
        assert kinds[-1] == "workflow_completed", (wf.id, kinds)
        bad = {"activity_failed", "workflow_failed", "workflow_parked"} & set(kinds)
        assert not bad, (wf.id, kinds)
        steps = [d["step"] for k, d in journals[wf.id] if k == "activity_scheduled"]
        assert steps == list(range(1, len(steps) + 1)), f"{wf.id}: scheduled steps {steps}"
        done = [(d["step"], d["attempt"]) for k, d in journals[wf.id] if k == "activity_completed"]
        assert sorted(s for s, _ in done) == steps, f"{wf.id}: completed steps {done}"
        position = {
            d["step"]: i for i, (k, d) in enumerate(journals[wf.id]) if k == "activity_scheduled"
        }
        for i, (kind, data) in enumerate(journals[wf.id]):
            if kind in ("activity_completed", "activity_attempt_failed"):
                assert position[data["step"]] < i, f"{wf.id}: {kind} before its schedule"
        fail = set(wf.payload["fail"])
        for (wid, label), attempt in final.completed.items():
            if wid != wf.id:
                continue
            assert (wid, label, attempt) in ended, f"{wid} {label} attempt {attempt} never ended"
            # Only a planned first attempt fails; a cut attempt is re-run as itself.
            assert attempt == (2 if label in fail else 1), f"{wid} {label} completed by {attempt}"
            failed = sorted(a for w, lb, a in final.failed if (w, lb) == (wid, label))
            assert failed == list(range(1, attempt)), f"{wid} {label}: failed attempts {failed}"
    statuses = dict(_query(crash.db, "SELECT id, status FROM workflows"))
    assert statuses == {wf.id: "completed" for wf in crash.plan.workflows}


def check_same_attempt(crash: Crash) -> None:
    """(f) a call cut by the kill is re-run with the same attempt, so the same idempotency key."""
    last_before: dict[Call, Line] = {}
    for ln in crash.before:
        if ln.kind == "start" and ln.attempt >= getattr(last_before.get(ln.call), "attempt", 0):
            last_before[ln.call] = ln
    first_after: dict[Call, Line] = {}
    for ln in crash.after:
        if ln.kind == "start":
            first_after.setdefault(ln.call, ln)
    for call, cut in last_before.items():
        if call in crash.committed:
            continue
        wid, label = call
        # A failure of that attempt that was committed moves the retry to the next attempt.
        failed = (wid, label, cut.attempt) in crash.failed_attempts
        want = f"{wid}/{cut.op}/{cut.attempt + 1 if failed else cut.attempt}"
        assert call in first_after, f"{wid} {label} was cut by the kill but never re-run"
        assert first_after[call].key == want, (
            f"{wid} {label}: attempt {cut.attempt} (key {cut.key}) was in flight at the kill (its "
            f"failure {'was' if failed else 'was not'} committed) but the re-run has key "
            f"{first_after[call].key}, not {want}"
        )


def check_retry_after_durable_failure(crash: Crash, final: Calls) -> None:
    """(g) an attempt after the first starts only once the previous one's failure is durable."""
    for lines, failed, when in (
        (crash.before, crash.failed_attempts, "before the kill"),
        (crash.after, final.failed, "after it"),
    ):
        for ln in lines:
            if ln.kind == "start" and ln.attempt > 1:
                assert (*ln.call, ln.attempt - 1) in failed, (
                    f"{ln.call} started attempt {ln.attempt} {when}, but the failure of attempt "
                    f"{ln.attempt - 1} was not committed"
                )


def check_all(crash: Crash) -> None:
    journals = _journals(crash.db)
    final = _calls(journals, "at the end")
    check_kill_point(crash)
    check_results(crash)
    check_keys(crash, final)
    check_no_rerun_after_commit(crash)
    check_at_least_once(crash, final)
    check_journal(crash, journals, final)
    check_retry_after_durable_failure(crash, final)
    check_same_attempt(crash)


# -- the tests -------------------------------------------------------------------------------


class TestKillDuringActivity:
    @DISPATCH
    @SEEDS
    def test_chain_killed_while_a_step_runs(self, tmp_path, seed, dispatch):
        """A 5-step chain killed while one step runs re-runs that step alone and finishes."""
        crash = crash_and_recover(tmp_path, "during", seed, dispatch)
        check_all(crash)
        (call,) = crash.plan.holds
        cut = {ln.op for ln in crash.before if ln.call == call}
        assert len(cut) == 1
        assert call not in crash.committed
        assert cut == {ln.op for ln in crash.after if ln.call == call}


class TestKillBetweenActivities:
    @DISPATCH
    @SEEDS
    def test_chain_killed_after_a_completion_is_committed(self, tmp_path, seed, dispatch):
        """A chain killed right after step k's completion is durable resumes at step k + 1."""
        crash = crash_and_recover(tmp_path, "between", seed, dispatch)
        check_all(crash)
        (wait, *_) = crash.plan.waits
        k = chain_labels().index(wait.label) + 1
        assert k < CHAIN_LEN
        assert (wait.workflow_id, f"c{k}") in crash.committed
        assert (wait.workflow_id, f"c{k + 1}") not in crash.committed


class TestKillMidFanOut:
    @DISPATCH
    @SEEDS
    def test_fan_out_killed_half_way(self, tmp_path, seed, dispatch):
        """A gather of 20 branches killed half way re-runs only the unrecorded activities."""
        crash = crash_and_recover(tmp_path, "fanout", seed, dispatch)
        check_all(crash)
        (wf,), (wait,) = crash.plan.workflows, crash.plan.waits
        total = len(fanout_labels(wf.payload["branches"]))
        ended = {ln.label for ln in crash.before if ln.kind == "end"}
        assert wait.count <= len(ended) < total


class TestKillBeforeTheScheduleIsDurable:
    @DISPATCH
    @SEEDS
    def test_fan_out_killed_as_a_pair_continues(self, tmp_path, seed, dispatch):
        """A call dispatched with its schedule still on the way to the journal, and cut there by
        a SIGKILL, runs again under the same key, though it may be given another step."""
        crash = crash_and_recover(tmp_path, "unsynced", seed, dispatch)
        check_all(crash)
        (call,) = crash.plan.dies
        assert call not in crash.committed
        (cut,) = [ln for ln in crash.before if ln.call == call and ln.kind == "start"]
        assert cut.key == next(ln.key for ln in crash.after if ln.call == call)


class TestKillMixed:
    @DISPATCH
    @SEEDS
    def test_several_workflows_of_every_shape(self, tmp_path, seed, dispatch):
        """Chains and fan-outs killed together at their own points all finish correctly."""
        crash = crash_and_recover(tmp_path, "mixed", seed, dispatch)
        check_all(crash)
        assert len(crash.results) == len(crash.plan.workflows) == 7
