"""Kill at every commit on bigger scenarios, in both dispatch modes (slow: ``nox -s chaos``).

A worker runs :mod:`tests.chaos.big_app` (fan-out with retries, ``first()`` and timeouts,
children, continue-as-new, cancellation mid fan-out, an event racing its workflow's start) with
``FLOWCORE_CRASH_AFTER_COMMIT=N``, for N = 1, 2, ... until a run ends by itself. After each crash
a new worker recovers the journal, itself killed at a seeded commit now and then (a crash during
recovery), until one finishes. After every kill and at the end the campaign's checks run:
acknowledged requests are in the journal, no activity runs again once its completion was
committed, ``verify`` finds nothing, every outcome equals a crash-free run's.
"""

from __future__ import annotations

import json
import random
from typing import TYPE_CHECKING

import pytest

from tests.chaos import big_app
from tests.chaos.campaign import Campaign, CampaignError, query
from tests.runtime.worker_process import run_crashing

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.crash, pytest.mark.slow]

MAX_COMMITS = 200
"""A bound on the loop: the scenario commits 10 to 40 times."""
RECOVERY_CRASHES = (0, 0, 1, 2, 3, 5)
"""A recovering worker is killed after this many commits (0: not killed), chosen by seed."""


class _BigCampaign(Campaign):
    def _check_outcomes(self) -> None:
        rows = query(self.db, "SELECT id, status, output FROM workflows WHERE parent_id IS NULL")
        found = {w: (s, None if o is None else json.loads(o)) for w, s, o in rows}
        for wid, want in big_app.expected().items():
            if found.get(wid) != want:
                raise CampaignError(f"{wid} ended {found.get(wid)}; a crash-free run gives {want}")


def _worker(work: Path, name: str, args: list[str], crash_after: int, monkeypatch) -> int:
    return run_crashing(
        work,
        name,
        "tests.chaos.big_app",
        args,
        crash_after=crash_after,
        monkeypatch=monkeypatch,
        timeout=90,
    )


@pytest.mark.timeout(900)
@pytest.mark.parametrize("serial", [False, True], ids=["concurrent", "serial"])
@pytest.mark.parametrize("dispatch", ["durable", "eager"])
def test_big_scenarios_recover_after_a_crash_at_every_commit(
    tmp_path, monkeypatch, dispatch, serial
):
    """After a crash at any commit (and crashes during recovery), every promise holds."""
    rng = random.Random(f"big/{dispatch}/{serial}")  # noqa: S311 - reproducible crash points
    kills = 0
    for n in range(1, MAX_COMMITS):
        work = tmp_path / f"n{n}"
        work.mkdir()
        campaign = _BigCampaign(work, 0, 0, kills=0)
        args = [str(campaign.db), str(campaign.log), str(campaign.acks), dispatch]
        args += ["serial"] if serial else []
        if _worker(work, "first", args, n, monkeypatch) == 0:
            campaign.check(final=True)  # fewer than n commits: the run ended by itself
            break
        kills += 1
        campaign.check(final=False)
        for attempt in range(10):
            crash_after = rng.choice(RECOVERY_CRASHES) if attempt < 5 else 0
            if _worker(work, f"recover{attempt}", args, crash_after, monkeypatch) == 0:
                break
            kills += 1
            campaign.check(final=False)
        campaign.check(final=True)
    else:
        pytest.fail(f"the scenario still crashed after {MAX_COMMITS} commits")
    assert n > 8, f"only {n - 1} commits: the scenario is too small to mean much"
    print(f"{dispatch} {'serial' if serial else 'concurrent'}: {n - 1} commits, {kills} kills")  # noqa: T201
