"""Kill at every commit with generated ids, where eager dispatch runs a first step early.

Under ``Runtime(dispatch="eager")`` a ``start()`` without an id dispatches the workflow's first
step before its start commits. A worker (:mod:`tests.chaos.fresh_app`) starts workflows of every
self-driven shape that way, staggered, with ``FLOWCORE_CRASH_AFTER_COMMIT=N``; for N = 1, 2,
... until a run ends by itself, the campaign's checks run on the journal the crash left, a
recovering worker (which knows no id but the journal's) finishes the work, and the checks run
again: every acknowledged start is in the journal, no activity starts again once its completion
was committed, ``verify`` finds nothing, and every workflow the journal holds ended as a
crash-free run ends its plan entry.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from tests.chaos import chaos_app, fresh_app
from tests.chaos.campaign import Campaign, CampaignError, query
from tests.runtime.worker_process import run_crashing

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.crash

SEED = 11
COUNT = 10
"""Every shape of fresh_app.SHAPES, some twice."""
MAX_COMMITS = 200
"""A bound on the loop: the scenario commits a dozen or two times."""


class _FreshCampaign(Campaign):
    """Outcomes are found by the plan entry each input names, not by (generated) id."""

    def _check_outcomes(self) -> None:
        specs = {s.id: s for s in fresh_app.plan(self.seed, COUNT)}
        rows = query(self.db, "SELECT id, status, input, output FROM workflows "
                      "WHERE parent_id IS NULL")  # fmt: skip
        for wid, status, raw_input, output in rows:
            spec = specs[json.loads(raw_input)["plan"]]
            have = (status, None if output is None else json.loads(output))
            if have != chaos_app.expected_outcome(spec):
                raise CampaignError(
                    f"{wid} ({spec.id}) ended {have}; a crash-free run gives "
                    f"{chaos_app.expected_outcome(spec)}"
                )


def _worker(work: Path, name: str, args: list[str], crash_after: int, monkeypatch) -> int:
    return run_crashing(
        work,
        name,
        "tests.chaos.fresh_app",
        args,
        crash_after=crash_after,
        monkeypatch=monkeypatch,
        timeout=60,
    )


def test_generated_ids_recover_after_a_crash_at_every_commit(tmp_path, monkeypatch):
    """After a crash at any commit, acked starts exist and every started workflow ends right."""
    monkeypatch.setenv("CHAOS_NO_WORK", "1")  # activities return at once: fewer commits
    kills = 0
    for n in range(1, MAX_COMMITS):
        work = tmp_path / f"n{n}"
        work.mkdir()
        campaign = _FreshCampaign(work, SEED, COUNT, kills=0)
        args = [str(campaign.db), str(campaign.log), str(campaign.acks), str(SEED), str(COUNT),
                "eager"]  # fmt: skip
        if _worker(work, "first", [*args, "start"], n, monkeypatch) == 0:
            campaign.check(final=True)  # fewer than n commits: the run ended by itself
            break
        kills += 1
        campaign.check(final=False)
        assert _worker(work, "recover", [*args, "recover"], 0, monkeypatch) == 0
        campaign.check(final=True)
    else:
        pytest.fail(f"the scenario still crashed after {MAX_COMMITS} commits")
    assert kills >= 5, f"only {kills} commits: the scenario is too small to mean much"
    assert early_steps(tmp_path), "no first step ran before its start committed: eager untested"


def early_steps(tmp_path: Path) -> int:
    """Activity calls of workflows a crash left without a start in the journal: their first
    step ran while their start was still committing (eager dispatch of a generated id)."""
    early = 0
    for work in tmp_path.glob("n*"):
        stored = {wid for (wid,) in query(work / "chaos.db", "SELECT id FROM workflows")}
        lines = (work / "activities.log").read_text(encoding="utf-8").splitlines()
        early += sum(1 for line in lines if line.split()[1] not in stored)
    return early
