"""Load: many workflows waiting at once, then woken; inspection of a large finished database.

The in-suite versions are small; the full ones (10,000 waiting, 100,000 finished) are marked
``slow`` and run under ``nox -s chaos`` (or ``python -m tests.chaos.load`` for the figures).
"""

from __future__ import annotations

import asyncio

import pytest

from tests.chaos import load


async def test_waiting_workflows_are_cheap_and_all_wake(db_path):
    """300 workflows wait at once for a few KB each; all wake and finish."""
    figures = await load.waiting(db_path, 300)
    assert figures["waiting_at_once"] == 300
    assert figures["traced_bytes_per_waiting_workflow"] < 64_000


def test_inspection_of_a_finished_database_uses_indexes(tmp_path):
    """status and list --status failed use indexes and answer in well under 10 ms."""
    db = tmp_path / "done.db"
    asyncio.run(load.finished_database(db, 3_000, real=150))
    figures = load.inspection_times(db, "r7:c3")
    assert figures["workflows"] == 3_000
    assert "USING INDEX" in figures["plans"]["status"]
    assert "USING INDEX workflows_by_status" in figures["plans"]["list_failed"]
    assert figures["status_ms"] < 10
    assert figures["list_failed_ms"] < 10


@pytest.mark.slow
async def test_ten_thousand_waiting_workflows(db_path):
    """10,000 workflows wait at once (memory per workflow measured), then all wake."""
    figures = await load.waiting(db_path, 10_000)
    assert figures["waiting_at_once"] == 10_000
    assert figures["traced_bytes_per_waiting_workflow"] < 32_000


@pytest.mark.slow
def test_hundred_thousand_finished_workflows(tmp_path):
    """With 100,000 finished workflows, status and list --status failed answer under 10 ms.

    The CLI figures (in this process, without interpreter start-up) add opening the journal
    read-only; they are reported, with a looser bound for a loaded machine.
    """
    db = tmp_path / "done.db"
    asyncio.run(load.finished_database(db, 100_000))
    figures = load.inspection_times(db, "r7:c200")
    assert figures["workflows"] == 100_000
    assert figures["status_ms"] < 10
    assert figures["list_failed_ms"] < 10
    assert figures["cli_status_ms"] < 50
    assert figures["cli_list_failed_ms"] < 50
