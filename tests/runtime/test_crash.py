"""Crash tests: SIGKILL a real worker process at seeded points, restart it, check nothing broke.

Each test runs ``tests/runtime/crash_app.py`` in a subprocess on a SQLite journal in ``tmp_path``,
waits (polling the activity log and the journal, with a deadline) until the plan's kill point is
reached, sends SIGKILL, snapshots what the journal had committed, then runs the worker again on
the same files and lets it finish. The checks are the core durability promises:

(a) every workflow returns what a crash-free run returns;
(b) an activity whose completion was committed before the kill never runs again (each of its
    attempts has exactly one ``start`` line in the whole log, none after the kill);
(c) every activity step ended at least once (at-least-once);
(d) every journal is well formed (contiguous seqs and steps, one completion per step, one
    ``workflow_completed`` at the end);
(e) the ``workflows`` table says ``completed`` for every instance;
(f) an activity cut in flight is re-run with the same attempt, hence the same idempotency key,
    and no idempotency key ever names two different activity calls.

Kill points are made deterministic by holds: in the first run, planned activities log ``hold``
and block until the SIGKILL. Activities fail their first attempt at seeded places and are retried
at once (no backoff), so in-flight retries are cut too.

Seeds choose the kill points. ``FLOWCORE_CRASH_SEEDS`` selects them (``0-19``, or ``1,4,7``);
the default is a few seeds that keep the file fast.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import pytest

from tests.runtime.crash_app import (
    CHAIN_LEN,
    Plan,
    Wait,
    build_plan,
    chain_labels,
    expected_result,
    fanout_labels,
)

pytestmark = pytest.mark.crash

REPO = Path(__file__).resolve().parents[2]
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

SEEDS = pytest.mark.parametrize("seed", _seeds(), ids=lambda s: f"seed{s}")


# -- the activity log ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Line:
    """One line of the activity log."""

    kind: str
    workflow_id: str
    step: int
    attempt: int
    label: str


def _parse(text: str) -> list[Line]:
    lines = []
    for raw in text.splitlines():
        kind, wid, step, attempt, label = raw.split(" ")
        lines.append(Line(kind, wid, int(step), int(attempt), label))
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


def _events(db: Path, kind: str) -> list[tuple[str, dict[str, Any]]]:
    rows = _query(db, "SELECT workflow_id, data FROM events WHERE kind = ? ORDER BY seq", (kind,))
    return [(wid, json.loads(data)) for wid, data in rows]


def _is_committed(db: Path, wid: str, step: int) -> bool:
    if not db.exists():
        return False
    try:
        rows = _query(
            db,
            "SELECT 1 FROM events WHERE workflow_id = ? AND kind = 'activity_completed' "
            "AND json_extract(data, '$.step') = ?",
            (wid, step),
        )
    except sqlite3.OperationalError:  # the worker has not created the schema yet
        return False
    return bool(rows)


# -- running the worker ------------------------------------------------------------------------


class Worker:
    """The worker subprocess; never outlives the test (killed on exit if still running)."""

    def __init__(self, tmp_path: Path, scenario: str, seed: int, mode: str) -> None:
        self.db = tmp_path / "crash.db"
        self.log = tmp_path / "activities.log"
        self.out = tmp_path / f"{mode}.out"
        self.err = tmp_path / f"{mode}.err"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO / "src"), str(REPO), *filter(None, [env.get("PYTHONPATH")])]
        )
        args = [str(self.db), str(self.log), scenario, str(seed), mode]
        with self.out.open("w") as out, self.err.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.runtime.crash_app", *args],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=err,
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def diagnostics(self) -> str:
        err = self.err.read_text(encoding="utf-8") if self.err.exists() else ""
        return f"worker rc={self.proc.poll()}; stderr tail:\n{err[-3000:]}"

    def wait_until(self, what: str, check: Any, deadline: float) -> None:
        """Poll ``check`` until true; fail if the worker exits or the deadline passes."""
        while not check():
            if self.proc.poll() is not None:
                pytest.fail(f"worker exited before {what}; {self.diagnostics()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{what} not reached within {KILL_DEADLINE}s; {self.diagnostics()}")
            time.sleep(POLL)

    def kill(self) -> None:
        assert self.proc.poll() is None, f"worker ended before the kill; {self.diagnostics()}"
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(timeout=10) == -signal.SIGKILL

    def finish(self) -> dict[str, Any]:
        try:
            rc = self.proc.wait(timeout=FINISH_DEADLINE)
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker did not finish within {FINISH_DEADLINE}s; {self.diagnostics()}")
        assert rc == 0, self.diagnostics()
        out = self.out.read_text(encoding="utf-8")
        results = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
        assert len(results) == 1, f"no RESULT line in the worker's output:\n{out[-2000:]}"
        return json.loads(results[0].removeprefix("RESULT "))


def _reached(worker: Worker, wait: Wait) -> Any:
    def log_lines() -> list[Line]:
        return [ln for ln in _parse(_read_log(worker.log)) if ln.workflow_id == wait.workflow_id]

    if wait.kind == "hold":
        return lambda: any(ln.kind == "hold" and ln.label == wait.label for ln in log_lines())
    if wait.kind == "ends":
        return lambda: sum(ln.kind == "end" for ln in log_lines()) >= wait.count
    return lambda: _is_committed(worker.db, wait.workflow_id, wait.step)


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
    committed: dict[tuple[str, int], int]
    """(workflow id, step) -> attempt of each ``activity_completed`` committed before the kill."""
    failed_attempts: set[tuple[str, int, int]]
    """(workflow id, step, attempt) of each ``activity_attempt_failed`` committed before it."""
    results: dict[str, Any]


def crash_and_recover(tmp_path: Path, scenario: str, seed: int) -> Crash:
    plan = build_plan(scenario, seed)
    with Worker(tmp_path, scenario, seed, "first") as first:
        deadline = time.monotonic() + KILL_DEADLINE
        for wait in plan.waits:
            first.wait_until(f"kill point {wait}", _reached(first, wait), deadline)
        first.kill()
    cut = len(_read_log(first.log))
    committed = {
        (wid, data["step"]): data["attempt"]
        for wid, data in _events(first.db, "activity_completed")
    }
    failed = {
        (wid, data["step"], data["attempt"])
        for wid, data in _events(first.db, "activity_attempt_failed")
    }
    with Worker(tmp_path, scenario, seed, "resume") as second:
        results = second.finish()
    text = _read_log(second.log)
    return Crash(plan, first.db, _parse(text[:cut]), _parse(text[cut:]), committed, failed, results)


# -- the checks ------------------------------------------------------------------------------


def check_kill_point(crash: Crash) -> None:
    """The kill landed where the plan meant it to: every wait met, held activities in flight."""
    for wait in crash.plan.waits:
        mine = [ln for ln in crash.before if ln.workflow_id == wait.workflow_id]
        if wait.kind == "hold":
            assert any(ln.kind == "hold" and ln.label == wait.label for ln in mine), wait
        elif wait.kind == "ends":
            assert sum(ln.kind == "end" for ln in mine) >= wait.count, wait
        else:
            assert (wait.workflow_id, wait.step) in crash.committed, wait
    for wid, label in crash.plan.holds:
        held = [ln for ln in crash.before if (ln.workflow_id, ln.label) == (wid, label)]
        assert not any(ln.kind == "end" for ln in held), f"held {wid}/{label} ended"
        assert not any((wid, ln.step) in crash.committed for ln in held), f"{wid}/{label} recorded"


def check_results(crash: Crash) -> None:
    """(a) every workflow returns what a crash-free run returns."""
    expected = {wf.id: expected_result(wf) for wf in crash.plan.workflows}
    assert crash.results == expected


def check_no_rerun_after_commit(crash: Crash) -> None:
    """(b) an activity whose completion was committed before the kill never started again."""
    starts = Counter(
        (ln.workflow_id, ln.step, ln.attempt)
        for ln in crash.before + crash.after
        if ln.kind == "start"
    )
    for (wid, step), attempt in crash.committed.items():
        rerun = [ln for ln in crash.after if (ln.workflow_id, ln.step) == (wid, step)]
        assert not rerun, f"{wid} step {step} was committed before the kill but ran again: {rerun}"
        mine = {a: n for (w, s, a), n in starts.items() if (w, s) == (wid, step)}
        assert mine.get(attempt) == 1, f"{wid} step {step} starts by attempt: {mine}"
        assert all(n == 1 for n in mine.values()), f"{wid} step {step} starts by attempt: {mine}"


def check_one_call_per_key(crash: Crash, journals: Journals) -> None:
    """(f) an idempotency key (workflow/step/attempt) names one activity call, across the crash."""
    calls: dict[tuple[str, int, int], dict[str, str]] = defaultdict(dict)
    for when, lines in (("before the kill", crash.before), ("after it", crash.after)):
        for ln in lines:
            calls[ln.workflow_id, ln.step, ln.attempt].setdefault(ln.label, when)
    for (wid, step, attempt), labels in calls.items():
        assert len(labels) == 1, (
            f"idempotency key {wid}/{step}/{attempt} was used by different activity calls: "
            + ", ".join(f"{label} ({when})" for label, when in labels.items())
        )
        scheduled = [
            d["args"][1]
            for kind, d in journals[wid]
            if kind == "activity_scheduled" and d["step"] == step
        ]
        assert scheduled == list(labels), (
            f"{wid} step {step} ran as {list(labels)} but the journal schedules {scheduled}"
        )


def check_at_least_once(crash: Crash, journals: Journals) -> None:
    """(c) every activity step ended at least once."""
    ended = {(ln.workflow_id, ln.step) for ln in crash.before + crash.after if ln.kind == "end"}
    for wf in crash.plan.workflows:
        scheduled = [d for kind, d in journals[wf.id] if kind == "activity_scheduled"]
        want = chain_labels() if wf.shape == "chain" else fanout_labels(wf.payload["branches"])
        assert sorted(d["args"][1] for d in scheduled) == sorted(want), wf.id
        for data in scheduled:
            assert (wf.id, data["step"]) in ended, f"{wf.id} step {data['step']} never ended"


def check_journal(crash: Crash, journals: Journals) -> None:
    """(d) each journal is well formed and (e) each status row says completed."""
    seqs = _query(crash.db, "SELECT workflow_id, group_concat(seq) FROM events GROUP BY 1")
    ended = {
        (ln.workflow_id, ln.step, ln.attempt)
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
        for step, attempt in done:
            assert (wf.id, step, attempt) in ended, f"{wf.id} step {step} attempt {attempt}"
        position = {
            d["step"]: i for i, (k, d) in enumerate(journals[wf.id]) if k == "activity_scheduled"
        }
        for i, (kind, data) in enumerate(journals[wf.id]):
            if kind in ("activity_completed", "activity_attempt_failed"):
                assert position[data["step"]] < i, f"{wf.id}: {kind} before its schedule"
    statuses = dict(_query(crash.db, "SELECT id, status FROM workflows"))
    assert statuses == {wf.id: "completed" for wf in crash.plan.workflows}


def check_same_attempt(crash: Crash) -> None:
    """(f) an activity cut by the kill is re-run with the same attempt (same idempotency key)."""
    last_before: dict[tuple[str, int], int] = {}
    for ln in crash.before:
        if ln.kind == "start":
            key = (ln.workflow_id, ln.step)
            last_before[key] = max(ln.attempt, last_before.get(key, 0))
    first_after: dict[tuple[str, int], int] = {}
    for ln in crash.after:
        if ln.kind == "start":
            first_after.setdefault((ln.workflow_id, ln.step), ln.attempt)
    for key, attempt in last_before.items():
        if key in crash.committed:
            continue
        wid, step = key
        # A failure of that attempt that was committed moves the retry to the next attempt.
        want = attempt + 1 if (wid, step, attempt) in crash.failed_attempts else attempt
        assert key in first_after, f"{wid} step {step} was cut by the kill but never re-run"
        assert first_after[key] == want, (
            f"{wid} step {step}: attempt {attempt} was in flight at the kill (its failure "
            f"{'was' if want != attempt else 'was not'} committed) but the re-run is attempt "
            f"{first_after[key]}, so its idempotency key {wid}/{step}/{first_after[key]} differs "
            f"from {wid}/{step}/{want}"
        )


def check_all(crash: Crash) -> None:
    journals: Journals = defaultdict(list)
    for wid, kind, data in _query(
        crash.db, "SELECT workflow_id, kind, data FROM events ORDER BY workflow_id, seq"
    ):
        journals[wid].append((kind, json.loads(data)))
    check_kill_point(crash)
    check_results(crash)
    check_one_call_per_key(crash, journals)
    check_no_rerun_after_commit(crash)
    check_at_least_once(crash, journals)
    check_journal(crash, journals)
    check_same_attempt(crash)


# -- the tests -------------------------------------------------------------------------------


class TestKillDuringActivity:
    @SEEDS
    def test_chain_killed_while_a_step_runs(self, tmp_path, seed):
        """A 5-step chain killed while one step runs re-runs that step alone and finishes."""
        crash = crash_and_recover(tmp_path, "during", seed)
        check_all(crash)
        ((wid, label),) = crash.plan.holds
        cut = {ln.step for ln in crash.before if (ln.workflow_id, ln.label) == (wid, label)}
        assert len(cut) == 1
        assert not (set(crash.committed) & {(wid, s) for s in cut})


class TestKillBetweenActivities:
    @SEEDS
    def test_chain_killed_after_a_completion_is_committed(self, tmp_path, seed):
        """A chain killed right after step k's completion is durable resumes at step k + 1."""
        crash = crash_and_recover(tmp_path, "between", seed)
        check_all(crash)
        (wait, *_) = crash.plan.waits
        assert (wait.workflow_id, wait.step) in crash.committed
        assert (wait.workflow_id, wait.step + 1) not in crash.committed
        assert wait.step < CHAIN_LEN


class TestKillMidFanOut:
    @SEEDS
    def test_fan_out_killed_half_way(self, tmp_path, seed):
        """A gather of 20 branches killed half way re-runs only the unrecorded activities."""
        crash = crash_and_recover(tmp_path, "fanout", seed)
        check_all(crash)
        (wf,), (wait,) = crash.plan.workflows, crash.plan.waits
        total = len(fanout_labels(wf.payload["branches"]))
        ended = {ln.step for ln in crash.before if ln.kind == "end"}
        assert wait.count <= len(ended) < total


class TestKillMixed:
    @SEEDS
    def test_several_workflows_of_every_shape(self, tmp_path, seed):
        """Chains and fan-outs killed together at their own points all finish correctly."""
        crash = crash_and_recover(tmp_path, "mixed", seed)
        check_all(crash)
        assert len(crash.results) == len(crash.plan.workflows) == 7
