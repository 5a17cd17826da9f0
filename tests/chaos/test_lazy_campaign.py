"""The lazy-recovery campaign, short: SIGKILLs over a cache of 5, so each open leaves nearly every
unfinished workflow evicted (the long one: ``python -m tests.chaos.lazy_campaign``)."""

from __future__ import annotations

import pytest

from tests.chaos.lazy_campaign import LazyCampaign


@pytest.mark.crash
def test_short_lazy_campaign_loses_nothing(tmp_path):
    """Events, cancels, suspends and timers aimed at evicted workflows, with the worker up or
    down: acks kept, no committed activity re-run, timers on time, outcomes as crash-free."""
    campaign = LazyCampaign(tmp_path, seed=2, workflows=30, kills=3, horizon=6.0,
                            kill_window=(0.05, 1.5))  # fmt: skip
    figures = campaign.run()  # raises CampaignError on a broken promise
    assert figures["kills"] >= 2, dict(figures)  # the plan may end before the third
    assert figures["checks"] == figures["kills"] + 1
    assert figures["workflows"] == 30
    assert figures["max_unfinished_at_open"] > 5, dict(figures)  # more than the cache holds
    assert figures["acks"] > 0


@pytest.mark.crash
@pytest.mark.slow
@pytest.mark.parametrize("seed", [4, 9])
def test_lazy_campaign_loses_nothing(tmp_path, seed):
    """The same, 60 workflows over 20 seconds of requests, up to 20 SIGKILLs."""
    figures = LazyCampaign(tmp_path, seed=seed, workflows=60, kills=20, horizon=20.0).run()
    assert figures["kills"] >= 4, dict(figures)
    assert figures["workflows"] == 60
