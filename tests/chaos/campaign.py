"""The crash campaign: SIGKILL a worker running a mixed load at random instants, check everything.

``python -m tests.chaos.campaign --seed 1 --workflows 1000 --kills 50`` (``nox -s chaos``) runs
:mod:`tests.chaos.chaos_app` in a subprocess on one SQLite journal, SIGKILLs it at seeded random
instants, restarts it, and repeats until it has been killed ``--kills`` times and every workflow
has ended (a worker that finishes its plan before the kills are done gets a new round of
``--workflows`` workflows on the same journal). After every kill, and at the end, it checks:

- every acknowledged start, event and cancellation (the ``ACKS`` file) is in the journal;
- no activity call whose completion (or final failure) was committed starts again afterwards
  (the activity log, matched to the journal by workflow id and ``op``);
- the journal is well formed and each status row equals a rebuild from its events
  (:func:`flowcore._verify.verify_journal`);

and at the end that every workflow ended with the status and output a crash-free run gives
(:func:`tests.chaos.chaos_app.expected_outcome`). It prints a summary with the figures.
The short version runs in the test suite (``tests/chaos/test_campaign.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowcore._verify import verify_journal
from flowcore.journal import schema
from tests.chaos.chaos_app import CACHE_ENV, DISPATCH_ENV, Spec, build_plan, expected_outcome
from tests.runtime.worker_process import WorkerProcess

FINISH_TIMEOUT = 120.0
"""Seconds a worker that is not killed may take to end its plan."""


class CampaignError(AssertionError):
    """A broken promise, with what was found."""


@dataclass
class Figures:
    """What a campaign measured."""

    seed: int
    rounds: int = 0
    workflows: int = 0
    """Workflows of the plans (children not counted)."""
    instances: int = 0
    """Instances in the journal at the end (children included)."""
    events: int = 0
    kills: int = 0
    kills_mid_run: int = 0
    """Kills that found a journal with unfinished workflows (not before the first commit)."""
    incarnations: int = 0
    attempts: int = 0
    """Activity attempts started (``start`` lines)."""
    rerun: int = 0
    """Attempts started again after a crash (same idempotency key, at-least-once)."""
    acks: int = 0
    checks: int = 0
    """Full invariant checks run (after each kill and at the end)."""
    seconds: float = 0.0
    kill_delays: list[float] = field(default_factory=list)

    def summary(self) -> str:
        """A human-readable report."""
        delays = sorted(self.kill_delays) or [0.0]
        return (
            f"crash campaign seed {self.seed} ({os.environ.get(DISPATCH_ENV, 'durable')} "
            f"dispatch): {self.workflows} workflows in {self.rounds} "
            f"round(s), {self.instances} instances with children, {self.events} events\n"
            f"  SIGKILLs: {self.kills} (at {delays[0]:.2f}-{delays[-1]:.2f}s after spawn), "
            f"{self.kills_mid_run} with workflows in flight; worker incarnations: "
            f"{self.incarnations}\n"
            f"  acknowledged starts/events/cancels: {self.acks}, all found in the journal\n"
            f"  activity attempts started: {self.attempts}, re-run after a crash (same key, "
            f"never after a committed completion): {self.rerun}\n"
            f"  invariant checks: {self.checks}, problems: 0; wall time {self.seconds:.1f}s"
        )


@dataclass
class Campaign:
    """One seeded campaign in ``workdir``."""

    workdir: Path
    seed: int
    workflows: int
    kills: int
    kill_window: tuple[float, float] = (0.2, 1.5)
    """A kill counted from the spawn lands this many seconds (uniform) after it."""
    after_ready: tuple[float, float] = (0.0, 1.0)
    """A kill counted from the first acknowledgement lands this many seconds after it."""
    from_spawn: float = 0.2
    """The share of kills counted from the spawn."""
    max_delay: float = 1.0
    """Longest durable timer of the plan."""
    spread: float = 0.0
    """Seconds over which a round's workflows are started (the load keeps coming)."""
    figures: Figures = field(init=False)
    plans: list[Spec] = field(default_factory=list)
    committed_at: dict[tuple[str, str], int] = field(default_factory=dict)
    """(workflow id, op) of each finished activity call -> log size when it was seen committed."""

    def __post_init__(self) -> None:
        self.figures = Figures(self.seed)
        self.db = self.workdir / "chaos.db"
        self.log = self.workdir / "activities.log"
        self.acks = self.workdir / "acks.log"
        self.rng = random.Random(f"campaign/{self.seed}")  # noqa: S311 - reproducible kills

    def run(self) -> Figures:
        """Run rounds until enough kills landed and every workflow ended; check as it goes."""
        began = time.monotonic()
        while self.figures.kills < self.kills or not self.figures.rounds:
            self._round(self.figures.rounds)
        self.check(final=True)
        self.figures.seconds = time.monotonic() - began
        return self.figures

    def _round(self, number: int) -> None:
        plan_seed = self.seed * 1000 + number
        self.plans.extend(build_plan(plan_seed, self.workflows, max_delay=self.max_delay))
        self.figures.rounds += 1
        self.figures.workflows = len(self.plans)
        args = [str(self.db), str(self.log), str(self.acks), str(plan_seed), str(self.workflows),
                str(self.max_delay), repr(time.time()), str(self.spread)]  # fmt: skip
        while True:
            self.figures.incarnations += 1
            name = f"worker{self.figures.incarnations}"
            with WorkerProcess(self.workdir, name, "tests.chaos.chaos_app", args) as worker:
                if self.figures.kills < self.kills and self._kill_later(worker):
                    self.check(final=False)
                    continue
                code = worker.exit_code(FINISH_TIMEOUT)
                if code != 0:
                    raise CampaignError(f"the worker failed; {worker.diagnostics()}")
                return

    def _kill_later(self, worker: WorkerProcess) -> bool:
        """SIGKILL the worker at a random instant; False if it ended by itself first.

        One kill in five counts from the spawn (it may land in start-up or recovery); the others
        count from the moment the worker acknowledges its first start (mid-run).
        """
        from_spawn = self.rng.random() < self.from_spawn
        delay = self.rng.uniform(*(self.kill_window if from_spawn else self.after_ready))
        acked = self.acks.stat().st_size if self.acks.exists() else 0
        began = time.monotonic()
        while not from_spawn and (self.acks.stat().st_size if self.acks.exists() else 0) == acked:
            if worker.proc.poll() is not None or time.monotonic() - began > FINISH_TIMEOUT:
                return False
            time.sleep(0.005)
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:
            if worker.proc.poll() is not None:
                return False
            time.sleep(0.005)
        if worker.proc.poll() is not None or not worker.kill(may_have_ended=True):
            return False
        self.figures.kills += 1
        self.figures.kill_delays.append(time.monotonic() - began)
        return True

    # -- checks ---------------------------------------------------------------------------------

    def check(self, *, final: bool) -> None:
        """Every invariant that must hold whenever the worker is down."""
        self.figures.checks += 1
        if not self.db.exists() or schema.precheck(str(self.db)) is None:
            # Killed before the runtime created its journal: nothing may have been acknowledged.
            if self.acks.exists() and self.acks.read_text(encoding="utf-8"):
                raise CampaignError("acknowledgements were given but there is no journal")
            if final:
                raise CampaignError("the campaign ended without a journal")
            return
        report = verify_journal(self.db)
        if not report.ok:
            shown = "\n".join(str(p) for p in report.problems[:20])
            raise CampaignError(f"verify found {len(report.problems)} problem(s):\n{shown}")
        self.figures.instances, self.figures.events = report.workflows, report.events
        journal = _journal(self.db)
        unfinished = query(self.db, "SELECT count(*) FROM workflows WHERE status = 'running'")
        if not final and unfinished[0][0]:
            self.figures.kills_mid_run += 1
        self._check_acks(journal)
        self._check_no_rerun(journal)
        if final:
            self._check_outcomes()

    def _check_acks(self, journal: dict[str, list[tuple[str, dict[str, Any]]]]) -> None:
        lines = self.acks.read_text(encoding="utf-8").splitlines() if self.acks.exists() else []
        self.figures.acks = len(lines)
        wanted = {"event": "event_received", "cancel": "cancel_requested"}
        for line in lines:
            what, wid = line.split(" ")
            kinds = {kind for kind, _ in journal.get(wid, [])}
            if what == "start" and "workflow_started" not in kinds:
                raise CampaignError(f"acknowledged start of {wid} is not in the journal")
            if what in wanted and wanted[what] not in kinds:
                raise CampaignError(f"acknowledged {what} for {wid} is not in the journal")

    def _check_no_rerun(self, journal: dict[str, list[tuple[str, dict[str, Any]]]]) -> None:
        starts = check_no_rerun(self.log, journal, self.committed_at)
        self.figures.attempts = sum(starts.values())
        self.figures.rerun = sum(n - 1 for n in starts.values())

    def _check_outcomes(self) -> None:
        rows = query(self.db, "SELECT id, status, output FROM workflows")
        found = {
            wid: (status, None if out is None else json.loads(out)) for wid, status, out in rows
        }
        for spec in self.plans:
            want, have = expected_outcome(spec), found.get(spec.id)
            if have != want:
                raise CampaignError(f"{spec.id} ended {have}; a crash-free run gives {want}")


def check_no_rerun(
    log: Path,
    journal: dict[str, list[tuple[str, dict[str, Any]]]],
    committed_at: dict[tuple[str, str], int],
) -> Counter[str]:
    """Raise if the activity log shows an activity started after its completion was committed;
    return the starts per idempotency key.

    ``committed_at`` remembers, across checks, how long the log was when each completion was
    first seen committed: a start written beyond that offset is a re-run.
    """
    size = log.stat().st_size if log.exists() else 0
    for wid, events in journal.items():
        ops = {d["step"]: d["op"] for k, d in events if k == "activity_scheduled"}
        for kind, data in events:
            if kind in ("activity_completed", "activity_failed"):
                committed_at.setdefault((wid, ops[data["step"]]), size)
    starts: Counter[str] = Counter()
    offset = 0
    raw = log.read_bytes() if log.exists() else b""
    for line in raw.splitlines(keepends=True):
        kind, wid, op, _attempt, _label, key = line.decode().split()
        if kind == "start":
            starts[key] += 1
            seen = committed_at.get((wid, op))
            if seen is not None and offset >= seen:
                raise CampaignError(
                    f"activity {wid}/{op} started again ({line.decode().strip()}) after its "
                    "completion was committed"
                )
        offset += len(line)
    return starts


def query(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` on the journal, opened read-only (beside a worker that may write)."""
    con = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def _journal(db: Path) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    journal: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    rows = query(db, "SELECT workflow_id, kind, data FROM events ORDER BY workflow_id, seq")
    for wid, kind, data in rows:
        journal.setdefault(wid, []).append((kind, json.loads(data)))
    return journal


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.chaos.campaign``: run one campaign, print its figures."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos.campaign",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workflows", type=int, default=1000, help="workflows per round")
    parser.add_argument("--kills", type=int, default=50, help="SIGKILLs at least")
    parser.add_argument("--max-delay", type=float, default=1.0, help="longest timer, seconds")
    parser.add_argument(
        "--spread", type=float, default=40.0, help="seconds over which a round's starts come"
    )
    parser.add_argument("--keep", help="work in this directory (kept) instead of a temporary one")
    parser.add_argument(
        "--dispatch",
        choices=("durable", "eager"),
        default="durable",
        help="the workers' Runtime(dispatch=...)",
    )
    parser.add_argument(
        "--cache",
        type=int,
        default=None,
        help="the workers' Runtime(max_cached_workflows=...): small to evict idle workflows",
    )
    args = parser.parse_args(argv)
    os.environ[DISPATCH_ENV] = args.dispatch  # the workers inherit it
    if args.cache is not None:
        os.environ[CACHE_ENV] = str(args.cache)
    with tempfile.TemporaryDirectory(prefix="flowcore-chaos-") as tmp:
        workdir = Path(args.keep or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        campaign = Campaign(
            workdir,
            args.seed,
            args.workflows,
            args.kills,
            max_delay=args.max_delay,
            spread=args.spread,
        )
        try:
            figures = campaign.run()
        except CampaignError as exc:
            print(f"CAMPAIGN FAILED (seed {args.seed}): {exc}", file=sys.stderr)  # noqa: T201
            return 1
    print(figures.summary())  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
