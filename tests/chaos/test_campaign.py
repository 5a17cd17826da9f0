"""The crash campaign, short: a mixed load SIGKILLed a few times (the long one: nox -s chaos)."""

from __future__ import annotations

import pytest

from tests.chaos import chaos_app
from tests.chaos.campaign import Campaign, CampaignError


@pytest.mark.crash
def test_short_campaign_loses_nothing(tmp_path):
    """A few random SIGKILLs: acks kept, no committed activity re-run, results as crash-free."""
    campaign = Campaign(tmp_path, seed=3, workflows=45, kills=3, after_ready=(0.0, 0.5),
                        max_delay=1.0, spread=2.0)  # fmt: skip
    figures = campaign.run()
    assert figures.kills >= 3
    assert figures.kills_mid_run >= 2, figures.summary()  # not all before the first commit
    assert figures.checks == figures.kills + 1
    assert figures.workflows >= 45
    assert figures.acks >= figures.workflows
    assert "problems: 0" in figures.summary()


@pytest.mark.crash
def test_short_campaign_with_a_tiny_cache_loses_nothing(tmp_path, monkeypatch):
    """The same with Runtime(max_cached_workflows=3): idle workflows are evicted and replayed
    on wake all along, between and across the SIGKILLs."""
    monkeypatch.setenv(chaos_app.CACHE_ENV, "3")  # the workers inherit it
    campaign = Campaign(tmp_path, seed=8, workflows=45, kills=3, after_ready=(0.0, 0.5),
                        max_delay=1.0, spread=2.0)  # fmt: skip
    figures = campaign.run()
    assert figures.kills >= 3
    assert figures.checks == figures.kills + 1
    assert "problems: 0" in figures.summary()


class TestReference:
    """The harness's reference outcomes and its checks are themselves right."""

    async def test_crash_free_run_matches_the_reference(self, tmp_path):
        """A crash-free run of every shape ends exactly as expected_outcome says."""
        campaign = Campaign(tmp_path, seed=5, workflows=18, kills=0)
        campaign.plans = chaos_app.build_plan(5, 18, max_delay=0.02)
        chaos_app.open_files(str(campaign.log), str(campaign.acks))
        await chaos_app.run(str(campaign.db), campaign.plans, chaos_app.define())
        campaign.check(final=True)
        assert {s.shape for s in campaign.plans} == set(chaos_app.SHAPES)

    async def test_crash_free_run_with_a_tiny_cache_matches_the_reference(
        self, tmp_path, monkeypatch
    ):
        """Every shape ends as expected though idle workflows are evicted and replayed."""
        monkeypatch.setenv(chaos_app.CACHE_ENV, "2")
        campaign = Campaign(tmp_path, seed=7, workflows=36, kills=0)
        campaign.plans = chaos_app.build_plan(7, 36, max_delay=0.05)
        chaos_app.open_files(str(campaign.log), str(campaign.acks))
        await chaos_app.run(str(campaign.db), campaign.plans, chaos_app.define())
        campaign.check(final=True)
        assert {s.shape for s in campaign.plans} == set(chaos_app.SHAPES)

    async def test_checks_catch_broken_promises(self, tmp_path):
        """A lost ack, a re-run committed activity or a wrong result fails the campaign."""
        campaign = Campaign(tmp_path, seed=6, workflows=9, kills=0)
        campaign.plans = chaos_app.build_plan(6, 9, max_delay=0.02)
        chaos_app.open_files(str(campaign.log), str(campaign.acks))
        await chaos_app.run(str(campaign.db), campaign.plans, chaos_app.define())
        campaign.check(final=True)
        log = campaign.log.read_text(encoding="utf-8")
        rerun = next(line for line in log.splitlines() if line.startswith("start"))
        with campaign.log.open("a", encoding="utf-8") as file:
            file.write(rerun + "\n")
        with pytest.raises(CampaignError, match="started again"):
            campaign.check(final=True)
        campaign.log.write_text(log, encoding="utf-8")
        with campaign.acks.open("a", encoding="utf-8") as file:
            file.write("event never-started\n")
        with pytest.raises(CampaignError, match="not in the journal"):
            campaign.check(final=True)
        campaign.acks.write_text("", encoding="utf-8")
        campaign.plans = [chaos_app.Spec(campaign.plans[0].id, "fail", {"start": 0})]
        with pytest.raises(CampaignError, match="crash-free run gives"):
            campaign.check(final=True)
