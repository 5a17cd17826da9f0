"""Smoke test of the Celery benchmark workloads at tiny size (each starts its Redis and worker)."""

from __future__ import annotations

import json
import sys

import anyio
import pytest
from benchmarks.celery_workloads import CELERY_WORKLOADS

from tests.celery.conftest import REPO

pytestmark = pytest.mark.celery


async def test_celery_workload_runs_side_by_side(tmp_path, need_redis):
    """C-chains and C-fanout report flowcore's time, plain Celery's time and their ratio."""
    proc = await anyio.run_process(
        [sys.executable, "-m", "benchmarks", "--quick", "--runs", "1", "--warmup", "0",
         "--only", *CELERY_WORKLOADS, "--out", str(tmp_path)],
        cwd=REPO, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr).decode()
    [report] = tmp_path.glob("bench-*.json")
    doc = json.loads(report.read_text())
    results = doc["results"]
    assert any("celery_s" in note for note in doc["meta"]["notes"])  # the JSON says what it holds
    assert set(results) == set(CELERY_WORKLOADS) == {"C-chains", "C-fanout"}
    for record in results.values():
        metrics = {k: v["median"] for k, v in record["metrics"].items()}
        assert set(metrics) == {"flowcore_s", "celery_s", "ratio"}
        assert metrics["ratio"] == pytest.approx(metrics["flowcore_s"] / metrics["celery_s"])
