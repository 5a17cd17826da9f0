"""Kill at every commit: crash the runtime right after its Nth journal commit, for every N.

A worker runs one workflow of each shape of :mod:`tests.chaos.chaos_app` (chain, fan-out,
sub-coroutines, timer, event, child, retry, cancellation, failure) with
``FLOWCORE_CRASH_AFTER_COMMIT=N``: the journal SIGKILLs the process right after its Nth commit.
For N = 1, 2, ... until a run commits fewer than N times and ends by itself, the test checks the
journal the crash left, recovers it in this process and checks the outcome of every workflow.
"""

from __future__ import annotations

import signal

import pytest

from flowcore.journal.sqlite import CRASH_AFTER_COMMIT_ENV
from tests.chaos import chaos_app
from tests.chaos.campaign import Campaign
from tests.runtime.worker_process import WorkerProcess

pytestmark = pytest.mark.crash

SEED = 7
MAX_COMMITS = 200
"""A bound on the loop: the scenario commits a dozen or two times."""


async def test_recovery_after_a_crash_at_every_commit(tmp_path, monkeypatch):
    """After a crash at any commit, recovery ends every workflow as a crash-free run does."""
    monkeypatch.setenv("CHAOS_NO_WORK", "1")  # activities return at once: fewer commits
    plan = chaos_app.build_plan(SEED, len(chaos_app.SHAPES), max_delay=0.05)
    shapes = chaos_app.define()
    crashes = 0
    for n in range(1, MAX_COMMITS):
        workdir = tmp_path / f"n{n}"
        workdir.mkdir()
        campaign = Campaign(workdir, SEED, len(plan), kills=0)
        campaign.plans = plan
        args = [str(campaign.db), str(campaign.log), str(campaign.acks), str(SEED),
                str(len(plan)), "0.05"]  # fmt: skip
        monkeypatch.setenv(CRASH_AFTER_COMMIT_ENV, str(n))
        with WorkerProcess(workdir, "worker", "tests.chaos.chaos_app", args) as worker:
            code = worker.exit_code(60)
        monkeypatch.delenv(CRASH_AFTER_COMMIT_ENV)
        if code == 0:  # fewer than n commits: the run ended by itself
            campaign.check(final=True)
            break
        assert code == -signal.SIGKILL, worker.diagnostics()
        crashes += 1
        campaign.check(final=False)
        chaos_app.open_files(str(campaign.log), str(campaign.acks))
        await chaos_app.run(str(campaign.db), plan, shapes)
        campaign.check(final=True)
    else:
        pytest.fail(f"the scenario still crashed after {MAX_COMMITS} commits")
    assert crashes >= 5, f"only {crashes} commits: the scenario is too small to mean much"


def test_the_hook_is_off_unless_set(monkeypatch):
    """Without the variable (or with a non-number), the journal never kills its process."""
    from flowcore.journal.sqlite import _crash_after_commit

    monkeypatch.delenv(CRASH_AFTER_COMMIT_ENV, raising=False)
    assert _crash_after_commit() == 0
    monkeypatch.setenv(CRASH_AFTER_COMMIT_ENV, "soon")
    assert _crash_after_commit() == 0
    monkeypatch.setenv(CRASH_AFTER_COMMIT_ENV, "3")
    assert _crash_after_commit() == 3
