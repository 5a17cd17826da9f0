"""Smoke test of the benchmark harness: every flowcore workload at tiny size, so it cannot rot.

The DBOS side needs its own virtualenv (network installs), so it is not run here; the part of the
comparison that reads DBOS's JSON and computes the ratios is checked with a canned document.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from benchmarks.common import SIZES, sizes_for
from benchmarks.compare import compare_rows, find_dbos_python, format_table, parse_dbos

REPO = Path(__file__).resolve().parents[1]

EXPECTED_METRICS = {
    "W1": {"seconds", "workflows_per_s", "steps_per_s"},
    "W1-normal": {"seconds", "workflows_per_s", "steps_per_s"},
    "W1-grown": {"seconds", "workflows_per_s", "steps_per_s"},
    "W1-bare": {"seconds", "workflows_per_s", "steps_per_s"},
    "W1-lat": {"p50_ms", "p99_ms"},
    "W2": {"seconds"},
    "W3-2k": {"seconds"},
    "W3-20k": {"seconds"},
    "W4-events": {"total_s", "startup_s", "open_s", "finish_s", "engine_s"},
    "W4-timers": {"total_s", "startup_s", "open_s", "finish_s", "engine_s"},
    "W4-history": {"total_s", "startup_s", "open_s", "finish_s", "engine_s"},
    "W5": {"kb_per_workflow", "rss_before_mb", "rss_after_mb"},
    "W5-cached": {"kb_per_workflow", "rss_before_mb", "rss_after_mb"},
    "W1-eager": {"seconds", "workflows_per_s", "steps_per_s"},
    "W1-lat-eager": {"p50_ms", "p99_ms"},
    "W2-eager": {"seconds"},
    "W3-2k-eager": {"seconds"},
    "W3-20k-eager": {"seconds"},
}


def test_every_workload_runs_at_tiny_size(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--runs", "1", "--warmup", "0",
         "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [report] = tmp_path.glob("bench-*.json")
    doc = json.loads(report.read_text())
    assert doc["meta"]["quick"] is True
    has_uvloop = importlib.util.find_spec("uvloop") is not None
    assert doc["meta"]["loop"] == ("uvloop" if has_uvloop else "asyncio")  # --loop auto
    assert set(doc["results"]) == set(SIZES) == set(EXPECTED_METRICS)
    for name, record in doc["results"].items():
        assert record["sizes"] == sizes_for(name, quick=True)
        assert set(record["metrics"]) == EXPECTED_METRICS[name], name
        for stats in record["metrics"].values():
            assert stats["min"] <= stats["median"] <= stats["max"]
            assert stats["median"] >= 0
    recovery = doc["results"]["W4-events"]["metrics"]
    assert recovery["total_s"]["median"] >= recovery["engine_s"]["median"] > 0
    assert "W4-events" in proc.stdout


WITHOUT_CELERY = (
    "import runpy, sys; sys.modules['celery'] = None; "  # `import celery` raises ImportError
    "runpy.run_module('benchmarks', run_name='__main__', alter_sys=True)"
)


class TestWithoutCelery:
    """Celery is an optional extra: the harness imports it only for the Celery workloads."""

    def run(self, tmp_path, *args):
        return subprocess.run(
            [sys.executable, "-c", WITHOUT_CELERY, *args, "--out", str(tmp_path)],
            cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    def test_w1_runs(self, tmp_path):
        """``--only W1 --quick`` runs where celery cannot be imported (it failed on import)."""
        proc = self.run(tmp_path, "--only", "W1", "--quick", "--runs", "1", "--warmup", "0")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        [report] = tmp_path.glob("bench-*.json")
        assert set(json.loads(report.read_text())["results"]) == {"W1"}

    def test_asking_for_a_celery_workload_says_what_to_install(self, tmp_path):
        """Asking for a Celery workload without celery is a one-line usage error, no traceback."""
        proc = self.run(tmp_path, "--only", "C-chains", "--quick")
        assert proc.returncode == 2
        assert "pip install 'flowcore[celery]'" in proc.stderr
        assert "Traceback" not in proc.stderr


def _stats(x: float) -> dict[str, object]:
    return {"median": x, "min": x * 0.9, "max": x * 1.1, "values": [x * 0.9, x, x * 1.1]}


CANNED_DBOS = {
    "meta": {"engine": "dbos", "dbos_version": "3.4.0", "python": "3.11.7", "quick": False,
             "scale": 1.0},
    "results": {
        "W1": {"workload": "W1", "sizes": {"workflows": 2000}, "warmup_runs": 1, "runs": 3,
               "metrics": {"seconds": _stats(20.0), "workflows_per_s": _stats(100.0)}},
        "W2": {"workload": "W2", "sizes": {"activities": 500}, "warmup_runs": 1, "runs": 3,
               "metrics": {"seconds": _stats(2.5)}},
        "W4-events": {"workload": "W4-events", "sizes": {"workflows": 500}, "warmup_runs": 1,
                      "runs": 3, "metrics": {"total_s": _stats(7.5)}},
    },
}  # fmt: skip


def test_comparison_reads_a_dbos_result_and_computes_ratios():
    meta, dbos = parse_dbos(json.dumps(CANNED_DBOS))
    assert meta["dbos_version"] == "3.4.0"
    flowcore = {
        "W1": {"sizes": {"workflows": 2000},
               "metrics": {"seconds": _stats(0.2), "workflows_per_s": _stats(10_000.0)}},
        "W2": {"sizes": {"activities": 1000}, "metrics": {"seconds": _stats(0.05)}},
        "W3-2k": {"sizes": {"steps": 2000}, "metrics": {"seconds": _stats(0.1)}},
        "W4-events": {"sizes": {"workflows": 500},
                      "metrics": {"total_s": _stats(0.5), "open_s": _stats(0.2)}},
    }  # fmt: skip
    rows = {(r["workload"], r["metric"]): r for r in compare_rows(flowcore, dbos)}
    assert set(rows) == {("W1", "seconds"), ("W1", "workflows_per_s"), ("W2", "seconds"),
                         ("W4-events", "total_s")}  # fmt: skip
    assert rows["W1", "seconds"]["ratio"] == pytest.approx(100.0)  # DBOS time / flowcore time
    assert rows["W1", "workflows_per_s"]["ratio"] == pytest.approx(100.0)  # rates: inverted
    assert rows["W4-events", "total_s"]["ratio"] == pytest.approx(15.0)
    assert rows["W1", "seconds"]["same_sizes"] is True
    assert rows["W2", "seconds"]["same_sizes"] is False
    assert rows["W1", "seconds"]["dbos"] == {"median": 20.0, "min": 18.0, "max": 22.0}
    table = format_table(list(rows.values()))
    assert "100.0x" in table
    assert "sizes differ" in table


@pytest.mark.parametrize(
    "doc",
    [
        {"meta": {"engine": "flowcore"}, "results": {}},
        {"meta": {"engine": "dbos"}, "results": {"W1": {"metrics": {}}}},
        {"meta": {"engine": "dbos"}, "results": {"W1": {"metrics": {"seconds": {"median": 1}}}}},
    ],
)
def test_comparison_rejects_a_malformed_dbos_result(doc):
    with pytest.raises(ValueError, match="DBOS"):
        parse_dbos(json.dumps(doc))


def test_celery_workloads_without_redis_fail_before_running_anything(monkeypatch, capsys):
    from benchmarks import __main__ as cli

    monkeypatch.setattr(cli, "find_redis_server", lambda: None)
    for argv in (["--celery"], ["--only", "W2", "C-fanout"]):
        with pytest.raises(SystemExit) as exc:
            cli.parse_args(argv)
        assert exc.value.code == 2
        assert "redis-server" in capsys.readouterr().err
    assert cli.parse_args(["--only", "W2"]).only == ["W2"]  # flowcore's workloads need no Redis


def test_compare_with_a_python_lacking_dbos_stops_before_running_anything():
    if importlib.util.find_spec("dbos") is not None:
        pytest.skip("this environment has dbos")
    with pytest.raises(SystemExit, match="cannot import dbos"):
        find_dbos_python(Path(sys.executable))


@pytest.mark.parametrize(
    "argv",
    [["--only", "W9"], ["--runs", "0"], ["--warmup", "-1"], ["--dbos-runs", "0"],
     ["--dbos-warmup", "-1"]],
)  # fmt: skip
def test_bad_arguments_are_usage_errors(argv, capsys):
    from benchmarks import __main__ as cli

    with pytest.raises(SystemExit) as exc:
        cli.parse_args(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err
