"""Smoke test of a Celery benchmark workload at tiny size (it starts its own Redis and worker).

Only C-fanout runs here: each workload boots its own worker, which costs seconds; C-chains
shares all of its code but the two sides' bodies.
"""

from __future__ import annotations

import json
import sys

import anyio
import pytest

from tests.celery.conftest import REPO

pytestmark = pytest.mark.celery


async def test_celery_workload_runs_side_by_side(tmp_path, need_redis):
    """C-fanout reports flowcore's time, plain Celery's time and their ratio."""
    proc = await anyio.run_process(
        [sys.executable, "-m", "benchmarks", "--quick", "--runs", "1", "--warmup", "0",
         "--only", "C-fanout", "--out", str(tmp_path)],
        cwd=REPO, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr).decode()
    [report] = tmp_path.glob("bench-*.json")
    results = json.loads(report.read_text())["results"]
    assert set(results) == {"C-fanout"}
    for record in results.values():
        metrics = {k: v["median"] for k, v in record["metrics"].items()}
        assert set(metrics) == {"flowcore_s", "celery_s", "ratio"}
        assert metrics["ratio"] == pytest.approx(metrics["flowcore_s"] / metrics["celery_s"])
