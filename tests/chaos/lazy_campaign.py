"""The lazy-recovery campaign: SIGKILL a worker whose workflows mostly wait, over a cache of 5.

``python -m tests.chaos.lazy_campaign --seed 1 --workflows 60 --kills 30`` runs
:mod:`tests.chaos.lazy_app` in a subprocess with ``max_cached_workflows=5``, so that at each
open nearly every unfinished workflow is left evicted (``waiting_only``) instead of replayed. It
SIGKILLs the worker at seeded random instants (during the open itself, right after it, mid-run),
keeps it down a random while, restarts it, and meanwhile sends the plan's CLI requests (events,
cancels, terminates, suspend/event/resume) through the journal's inbox, with the worker up or
down. After every kill and at the end it checks:

- every acknowledged request is in the journal, or still queued in the inbox, and took effect
  at most once (events by name and payload; cancel, suspend and resume requests);
- no activity whose completion was committed starts again;
- timers never fire before their deadline, and fire at most ``LATENESS`` seconds after it (or
  after the spawn of the worker that fires them, if none ran at the deadline); a worker that
  opened before a deadline and outlived it by ``LATENESS`` has fired that timer;
- statuses never go backwards (a finished workflow stays finished with the same output);
- right after each open, at most ``BOUND`` + busy instances are in memory;
- the journal is well formed (``verify``);

and at the end that every workflow ended as a crash-free run gives, the races and timeouts by
when their event was acknowledged against the wait's deadline.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowcore import _cli
from flowcore._verify import verify_journal
from flowcore.journal import schema
from tests.chaos.campaign import CampaignError, check_no_rerun, query
from tests.chaos.lazy_app import BOUND, LOOP_ROUNDS, Send, Spec, build_plan, event_value
from tests.runtime.crash_app import MODULUS, mix
from tests.runtime.worker_process import REPO, WorkerProcess

FINISH_TIMEOUT = 120.0
LATENESS = 2.0
"""Seconds a timer may fire after its deadline (or after the open that re-armed it)."""
FINISHED = frozenset({"completed", "failed", "canceled", "terminated"})
KINDS = {"cancel": "cancel_requested", "suspend": "workflow_suspended",
         "resume": "workflow_resumed"}  # fmt: skip


@dataclass
class Ack:
    """One acknowledged request (or a refused one: ``what == "refused"``)."""

    what: str
    target: str
    arg: str
    before: float
    after: float


@dataclass
class LazyCampaign:
    """One seeded campaign in ``workdir``."""

    workdir: Path
    seed: int
    workflows: int
    kills: int
    horizon: float = 8.0
    """Seconds over which the plan's requests are sent (and its timers run)."""
    cli_processes: float = 0.2
    """The share of CLI requests sent by a real ``python -m flowcore`` process (the others call
    the CLI's ``main`` in this process: the same code, no interpreter start-up)."""
    kill_window: tuple[float, float] = (0.05, 5.0)
    """Seconds from a worker's spawn to its SIGKILL; the longer lives let a worker that opened
    before a timer's deadline outlive it by ``LATENESS``, which the timer checks need."""
    downtime: tuple[float, float] = (0.0, 2.5)
    plan: list[Spec] = field(init=False)
    sent: set[int] = field(default_factory=set)
    cli_acks: list[Ack] = field(default_factory=list)
    spans: list[tuple[float, float]] = field(default_factory=list)
    """Each worker's (spawned, killed or ended) wall-clock times."""
    seen: dict[str, tuple[str, Any]] = field(default_factory=dict)
    committed_at: dict[tuple[str, str], int] = field(default_factory=dict)
    figures: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.db = self.workdir / "lazy.db"
        self.log = self.workdir / "activities.log"
        self.acks = self.workdir / "acks.log"
        self.stats = self.workdir / "stats.log"
        self.rng = random.Random(f"lazy-campaign/{self.seed}")  # noqa: S311 - reproducible
        self.plan = build_plan(self.seed, self.workflows, horizon=self.horizon)
        self.cli_sends = [s for spec in self.plan for s in spec.sends if s.via == "cli"]
        self.t0 = time.time() + 1.0

    # -- driving --------------------------------------------------------------------------------

    def run(self) -> Counter[str]:
        """Spawn, kill and restart the worker until enough kills landed and it ends by itself."""
        began = time.monotonic()
        args = [str(self.db), str(self.log), str(self.acks), str(self.stats), str(self.seed),
                str(self.workflows), repr(self.t0), str(self.horizon)]  # fmt: skip
        while True:
            self.figures["incarnations"] += 1
            name = f"worker{self.figures['incarnations']}"
            spawned = time.time()
            with WorkerProcess(self.workdir, name, "tests.chaos.lazy_app", args) as worker:
                if self.figures["kills"] < self.kills:
                    kill_at = time.monotonic() + self.rng.uniform(*self.kill_window)
                    up = self._steer_until(worker, kill_at)
                    self.spans.append((spawned, time.time()))  # before the kill: conservative
                    if up and worker.kill(may_have_ended=True):
                        self.figures["kills"] += 1
                        self.check(final=False)
                        self._steer_until(None, time.monotonic() + self.rng.uniform(*self.downtime))
                        continue
                    self.spans.pop()  # it ended by itself: its span is taken below
                self._steer_until(worker, time.monotonic() + FINISH_TIMEOUT)
                if worker.proc.poll() != 0:
                    raise CampaignError(f"the worker did not end well; {worker.diagnostics()}")
                self.spans.append((spawned, time.time()))
                break
        self._steer_until(None, time.monotonic())  # nothing may be left unsent
        self.check(final=True)
        self.figures["seconds"] = round(time.monotonic() - began)
        return self.figures

    def _steer_until(self, worker: WorkerProcess | None, until: float) -> bool:
        """Send due CLI requests until ``until``; False if the worker ended meanwhile."""
        while True:
            if worker is not None and worker.proc.poll() is not None:
                return False
            self._send_due()
            if time.monotonic() >= until:
                return True
            time.sleep(0.02)

    def _send_due(self) -> None:
        now = time.time()
        done: set[str] = set()  # one request per target per pass: a target's requests in order
        for index, send in enumerate(self.cli_sends):
            if index in self.sent or send.target in done:
                continue
            done.add(send.target)
            if self.t0 + send.at > now or not self._exists(send.target):
                continue
            self._send(send)
            self.sent.add(index)

    def _exists(self, wid: str) -> bool:
        if not self.db.exists() or schema.precheck(str(self.db)) is None:
            return False
        return bool(query(self.db, "SELECT 1 FROM workflows WHERE id = ?", (wid,)))

    def _send(self, send: Send) -> None:
        argv = ["--db", str(self.db)]
        match send.what:
            case "event":
                payload = json.dumps(send.payload)
                argv += ["send-event", send.target, send.name, "--payload", payload]
            case "cancel" | "terminate":
                argv += [send.what, send.target, "--reason", "lazy-cli"]
            case _:
                argv += [send.what, send.target]
        before = time.time()
        if self.rng.random() < self.cli_processes:
            proc = subprocess.run(
                [sys.executable, "-m", "flowcore", *argv],
                cwd=REPO,
                capture_output=True,
                text=True,
                check=False,
                timeout=60,
            )
            code, detail = proc.returncode, proc.stderr
            self.figures["cli_processes"] += 1
        else:
            with contextlib.redirect_stdout(io.StringIO()):
                code, detail = _cli.main(argv), ""
        after = time.time()
        what = send.what if code == 0 else "refused"
        if code != 0 and "finished" not in detail and detail:
            raise CampaignError(f"CLI {argv} failed ({code}): {detail}")
        self.figures["cli_requests"] += 1
        self.cli_acks.append(Ack(what, send.target, send.arg, before, after))

    # -- checks ---------------------------------------------------------------------------------

    def all_acks(self) -> list[Ack]:
        """The worker's acknowledgements and the CLI's."""
        lines = self.acks.read_text(encoding="utf-8").splitlines() if self.acks.exists() else []
        acks = [Ack(w, t, a, float(b), float(f)) for w, t, a, b, f in map(str.split, lines)]
        return acks + self.cli_acks

    def check(self, *, final: bool) -> None:
        """Every invariant that must hold whenever the worker is down."""
        self.figures["checks"] += 1
        if not self.db.exists() or schema.precheck(str(self.db)) is None:
            if any(a.what != "refused" for a in self.all_acks()):
                raise CampaignError("acknowledgements were given but there is no journal")
            return
        report = verify_journal(self.db)
        if not report.ok:
            shown = "\n".join(str(p) for p in report.problems[:20])
            raise CampaignError(f"verify found {len(report.problems)} problem(s):\n{shown}")
        journal = _journal(self.db)
        inbox = query(self.db, "SELECT workflow_id, kind, data FROM inbox")
        self._check_acks(journal, inbox)
        self._check_no_rerun(journal)
        self._check_timers(journal)
        self._check_statuses(final=final)
        self._check_memory()
        if final:
            if inbox:
                raise CampaignError(f"requests left in the inbox: {inbox}")
            self._check_outcomes(journal)
        self.figures["events"] = sum(len(v) for v in journal.values())

    def _check_acks(  # noqa: C901, PLR0912 - one branch per kind of request
        self, journal: dict[str, list[tuple[str, dict[str, Any]]]], inbox: list[tuple[Any, ...]]
    ) -> None:
        queued = Counter((wid, kind, data) for wid, kind, data in inbox)
        received: Counter[tuple[str, str]] = Counter()
        for wid, events in journal.items():
            for kind, data in events:
                if kind == "event_received":
                    received[wid, json.dumps([data["name"], data["payload"]], sort_keys=True)] += 1
                elif kind in KINDS.values():
                    received[wid, kind] += 1
        for key, count in received.items():
            if count > 1:
                raise CampaignError(f"request applied {count} times: {key}")
        sends = {(s.what, s.target, s.arg): s for spec in self.plan for s in spec.sends}
        for ack in self.all_acks():
            if ack.what in ("start", "refused"):
                continue
            self.figures["acks"] += 1
            wid = ack.target
            status = self.seen.get(wid, ("", None))[0]
            if ack.what == "event":
                send = sends["event", wid, ack.arg]
                if send.name == "tick" and _run(journal, wid) > int(ack.arg):
                    continue  # its run ended: continue-as-new dropped its history
                key = json.dumps([send.name, send.payload], sort_keys=True)
                found = received[wid, key] == 1
            elif ack.what == "terminate":
                found = any(k == "workflow_terminated" for k, _ in journal.get(wid, []))
            else:
                found = received[wid, KINDS[ack.what]] == 1
            if not found and not any(w == wid and k == ack.what for w, k, _ in queued):
                raise CampaignError(f"acknowledged {ack} is neither in the journal nor queued "
                                    f"(status {status!r})")  # fmt: skip

    def _check_no_rerun(self, journal: dict[str, list[tuple[str, dict[str, Any]]]]) -> None:
        starts = check_no_rerun(self.log, journal, self.committed_at)
        self.figures["attempts"] = sum(starts.values())

    def _opened(self) -> list[tuple[float, int, int, int]]:
        lines = self.stats.read_text(encoding="utf-8").splitlines() if self.stats.exists() else []
        return [(float(a), int(b), int(c), int(d)) for _, a, b, c, d in map(str.split, lines)]

    def _check_timers(self, journal: dict[str, list[tuple[str, dict[str, Any]]]]) -> None:
        """A timer fires within ``LATENESS`` of its deadline, or of the spawn of the worker that
        fires it if it fell due while none ran (the lateness then includes the interpreter's
        start-up and the open); and a worker that had opened before a deadline and lived
        ``LATENESS`` past it has fired it by then."""
        opens = [at for at, *_ in self._opened()]
        opened = [(min(o for o in opens if a <= o <= b), b) for a, b in self.spans
                  if any(a <= o <= b for o in opens)]  # fmt: skip
        worst = self.figures.get("lateness_ms", 0)
        for wid, events in journal.items():
            deadlines: dict[int, float] = {}
            for kind, data in events:
                if kind == "timer_scheduled":
                    deadlines[data["step"]] = data["fire_at"]
                elif kind == "event_wait_started" and data.get("deadline") is not None:
                    deadlines[data["step"]] = data["deadline"]
                elif kind == "timer_fired":
                    fire_at, fired = deadlines[data["step"]], _at(data)
                    late = self._lateness(f"{wid} step {data['step']}", fire_at, fired, opened)
                    worst = max(worst, round(late * 1000))
        self.figures["lateness_ms"] = worst

    def _lateness(self, what: str, fire_at: float, fired: float,
                  opened: list[tuple[float, float]]) -> float:  # fmt: skip
        if fired < fire_at:
            raise CampaignError(f"{what}: timer fired {fire_at - fired:.3f}s before its deadline")
        late = fired - max([fire_at, *(a for a, _ in self.spans if a <= fired)])
        if late > LATENESS:
            raise CampaignError(f"{what}: timer fired {late:.2f}s after its deadline "
                                "(or its worker's spawn)")  # fmt: skip
        due = fire_at + LATENESS
        if fired > due and any(o <= fire_at and end >= due for o, end in opened):
            raise CampaignError(f"{what}: a worker ran from before its deadline to {LATENESS}s "
                                "after it and did not fire it")  # fmt: skip
        return late

    def _check_statuses(self, *, final: bool) -> None:
        rows = query(self.db, "SELECT id, status, output FROM workflows")
        for wid, status, output in rows:
            before = self.seen.get(wid)
            if before is not None and before[0] in FINISHED and before != (status, output):
                raise CampaignError(f"{wid} went from {before} back to {(status, output)}")
            self.seen[wid] = (status, output)
        if final:
            unfinished = [w for w, (s, _) in self.seen.items() if s not in FINISHED]
            if unfinished:
                raise CampaignError(f"unfinished at the end: {unfinished[:10]}")

    def _check_memory(self) -> None:
        for at, live, busy, total in self._opened():
            if live > BOUND + busy:
                raise CampaignError(f"after the open at {at}: {live} instances in memory, "
                                    f"{busy} busy, of {total} (bound {BOUND})")  # fmt: skip
            self.figures["max_live_after_open"] = max(self.figures["max_live_after_open"], live)
            self.figures["max_unfinished_at_open"] = max(
                self.figures["max_unfinished_at_open"], total
            )

    def _check_outcomes(self, journal: dict[str, list[tuple[str, dict[str, Any]]]]) -> None:
        acks = [a for a in self.all_acks() if a.what not in ("start", "refused")]
        for spec in self.plan:
            have = self.seen.get(spec.id)
            mine = [a for a in acks if a.target == spec.id]
            wants = self._expected(spec, mine, journal.get(spec.id, []))
            if have not in wants:
                raise CampaignError(f"{spec.id} ended {have}; a crash-free run gives {wants}")
            self.figures["workflows"] += 1

    def _expected(  # noqa: PLR0911 - one outcome per shape
        self, spec: Spec, acks: list[Ack], events: list[tuple[str, dict[str, Any]]]
    ) -> list[tuple[str, Any]]:
        x = spec.payload["start"]
        n = event_value(spec)
        match spec.shape:
            case "wait" | "suspend":
                assert n is not None
                return [("completed", json.dumps(mix((mix(x, "w0") + n) % MODULUS, "w1")))]
            case "sleep":
                return [("completed", json.dumps(mix(mix(x, "s0"), "s1")))]
            case "retry":
                return [("completed", json.dumps(mix(mix(x, "r1"), "r2")))]
            case "parent":
                assert n is not None
                return [("completed", json.dumps(mix(mix((x + n) % MODULUS, "k"), "p")))]
            case "loop":
                acc = x
                for r, send in enumerate(spec.sends[:LOOP_ROUNDS]):
                    acc = mix((acc + send.payload["v"]) % MODULUS, f"l{r}")
                return [("completed", json.dumps(acc))]
            case "cancel":
                return [("canceled", json.dumps(mix(x, "comp")))]
            case "terminate":
                return [("terminated", None)]
            case _:  # wait_to, race: by the event's acknowledgement against the deadline
                return self._race(spec, acks, events)

    def _race(self, spec: Spec, acks: list[Ack],
              events: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, Any]]:  # fmt: skip
        x, n = spec.payload["start"], event_value(spec)
        wait_to = spec.shape == "wait_to"
        win_label, lose_label = ("got", "timeout") if wait_to else ("event", "timer")
        lose = ("completed", json.dumps(mix(x, lose_label)))
        if n is None:
            return [lose]
        win = ("completed", json.dumps(mix((x + n) % MODULUS, win_label)))
        started = next(_at(d) for k, d in events if k == "workflow_started")
        deadline = started + spec.payload["timeout"]
        ack = next((a for a in acks if a.what == "event"), None)
        if ack is None:
            return [lose]
        if ack.after < deadline:
            return [win]
        if ack.before > deadline:
            return [lose]
        return [win, lose]


def _at(data: dict[str, Any]) -> float:
    at = data["at"]
    return float(at)


def _run(journal: dict[str, list[tuple[str, dict[str, Any]]]], wid: str) -> int:
    """The round of a loop workflow's current run (from its start's input)."""
    for kind, data in journal.get(wid, []):
        if kind == "workflow_started":
            return int(data["input"].get("r", 0))
    return 0


def _journal(db: Path) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    journal: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    rows = query(db, "SELECT workflow_id, kind, data, at FROM events ORDER BY workflow_id, seq")
    for wid, kind, data, at in rows:
        decoded = json.loads(data)
        decoded.setdefault("at", at)
        journal.setdefault(wid, []).append((kind, decoded))
    return journal


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.chaos.lazy_campaign``: run one campaign, print its figures."""
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.lazy_campaign",
                                     description=__doc__)  # fmt: skip
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workflows", type=int, default=60)
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--horizon", type=float, default=20.0, help="seconds of requests")
    parser.add_argument("--keep", help="work in this directory (kept)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="flowcore-lazy-") as tmp:
        workdir = Path(args.keep or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        campaign = LazyCampaign(workdir, args.seed, args.workflows, args.kills, args.horizon)
        try:
            figures = campaign.run()
        except CampaignError as exc:
            print(f"CAMPAIGN FAILED (seed {args.seed}): {exc}", file=sys.stderr)  # noqa: T201
            return 1
    print(f"lazy campaign seed {args.seed}: {dict(figures)}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
