"""Comparison mode: DBOS's workloads in their own virtualenv, side by side with flowcore's.

The DBOS side is :mod:`benchmarks.dbos_workloads`, run with the Python of a virtualenv that has
``dbos`` (``nox -s bench_compare`` creates one as the ``bench_dbos`` session); it writes a JSON
document that :func:`parse_dbos` reads back.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.common import REPO, child_env, ratio, scratch_dir

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

DEFAULT_VENV = REPO / ".nox" / "bench_dbos"
"""Where ``nox -s bench_dbos`` (required by ``bench_compare``) puts DBOS's virtualenv."""

DBOS_TIMEOUT = 3 * 3600.0
"""Seconds one DBOS subprocess may take (it is slow; every run is bounded anyway)."""


def find_dbos_python(explicit: Path | None) -> Path:
    """The Python of DBOS's virtualenv: ``--dbos-python``, $FLOWCORE_BENCH_DBOS_PYTHON or nox's."""
    env = os.environ.get("FLOWCORE_BENCH_DBOS_PYTHON")
    python = explicit or (Path(env) if env else DEFAULT_VENV / "bin" / "python")
    hint = (
        "run `uvx nox -s bench_compare` (it creates DBOS's virtualenv, then runs the "
        "comparison), or pass --dbos-python PATH"
    )
    if not python.exists():
        raise SystemExit(f"no Python with dbos at {python}: {hint}")
    probe = subprocess.run(
        [str(python), "-c", "import dbos"], capture_output=True, text=True, timeout=120, check=False
    )
    if probe.returncode != 0:
        raise SystemExit(f"{python} cannot import dbos: {hint}\n{probe.stderr.strip()[-500:]}")
    return python


def run_dbos(
    python: Path,
    names: Sequence[str],
    *,
    runs: int,
    warmup: int,
    quick: bool,
    scale: float,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Run DBOS's workloads ``names`` in a subprocess; return its (meta, records)."""
    with scratch_dir() as tmp:
        out = tmp / "dbos.json"
        argv = [str(python), "-m", "benchmarks.dbos_workloads", "bench", "--only", *names,
                "--runs", str(runs), "--warmup", str(warmup), "--scale", str(scale),
                "--json-out", str(out)]  # fmt: skip
        if quick:
            argv.append("--quick")
        # Progress goes to our stderr; only the JSON file is read.
        subprocess.run(argv, cwd=REPO, env=child_env(REPO), check=True, timeout=DBOS_TIMEOUT)
        return parse_dbos(out.read_text(encoding="utf-8"))


def parse_dbos(text: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Read the DBOS side's JSON document; return (meta, records by workload), checked."""
    doc = json.loads(text)
    meta, results = doc.get("meta"), doc.get("results")
    if not isinstance(meta, dict) or meta.get("engine") != "dbos" or not isinstance(results, dict):
        raise ValueError("not a DBOS benchmark document (meta.engine must be 'dbos')")
    for name, record in results.items():
        metrics = record.get("metrics")
        if not isinstance(metrics, dict) or not metrics:
            raise ValueError(f"DBOS result {name!r} has no metrics")
        for metric, stats in metrics.items():
            if not all(isinstance(stats.get(k), int | float) for k in ("median", "min", "max")):
                raise ValueError(f"DBOS result {name}.{metric} lacks median/min/max")
    return meta, results


def compare_rows(
    flowcore: Mapping[str, dict[str, Any]], dbos: Mapping[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """One row per workload and metric that both sides measured, with the ratio of medians.

    ``ratio`` is how many times faster flowcore is: DBOS/flowcore for durations, and
    flowcore/DBOS for rates (workflows/s), so above 1 always means flowcore is ahead.
    """
    rows = []
    for name, fc in flowcore.items():
        if name not in dbos:
            continue
        db = dbos[name]
        for metric, fc_stats in fc["metrics"].items():
            db_stats = db["metrics"].get(metric)
            if db_stats is None:
                continue
            rows.append({
                "workload": name,
                "metric": metric,
                "flowcore": {k: fc_stats[k] for k in ("median", "min", "max")},
                "dbos": {k: db_stats[k] for k in ("median", "min", "max")},
                "ratio": ratio(metric, fc_stats["median"], db_stats["median"]),
                "same_sizes": fc.get("sizes") == db.get("sizes"),
                "sizes": {"flowcore": fc.get("sizes"), "dbos": db.get("sizes")},
            })  # fmt: skip
    return rows


def _num(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3f}" if abs(x) < 10 else f"{x:.1f}"


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The comparison as text: medians (min-max) of both and the ratio."""
    head = (f"{'workload':<11} {'metric':<16} {'flowcore median':>15} {'(min-max)':<21} "
            f"{'DBOS median':>12} {'(min-max)':<21} {'speed-up':>9}")  # fmt: skip
    lines = [head, "-" * len(head)]
    for row in rows:
        fc, db = row["flowcore"], row["dbos"]
        r = "" if row["ratio"] is None else f"{row['ratio']:.1f}x"
        mark = "" if row["same_sizes"] else " *sizes differ"
        lines.append(
            f"{row['workload']:<11} {row['metric']:<16} {_num(fc['median']):>15} "
            f"{'(' + _num(fc['min']) + '-' + _num(fc['max']) + ')':<21} "
            f"{_num(db['median']):>12} {'(' + _num(db['min']) + '-' + _num(db['max']) + ')':<21} "
            f"{r:>9}{mark}"
        )
    lines.append("speed-up: DBOS/flowcore for times, flowcore/DBOS for rates (>1: flowcore ahead)")
    return "\n".join(lines)
