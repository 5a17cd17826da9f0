"""Run the benchmarks: a warm-up, then several runs each; print a table and write JSON."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import platform
import statistics
import tempfile
import time
from pathlib import Path

import structlog

from benchmarks.workloads import WORKLOADS


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="measured runs per workload")
    parser.add_argument("--only", nargs="*", default=None, help="workload names to run")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    names = args.only or list(WORKLOADS)
    report: dict[str, dict[str, dict[str, float]]] = {}
    print(f"{'workload':<12} {'metric':<16} {'median':>12} {'min':>12} {'max':>12}")
    for name in names:
        runs = [_run(name) for _ in range(args.runs + 1)][1:]  # the first is a warm-up
        report[name] = {}
        for metric in runs[0]:
            values = [r[metric] for r in runs]
            stats = {"median": statistics.median(values), "min": min(values), "max": max(values)}
            report[name][metric] = stats
            print(f"{name:<12} {metric:<16} {stats['median']:>12.3f} {stats['min']:>12.3f} "
                  f"{stats['max']:>12.3f}")  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    meta = {"python": platform.python_version(), "machine": platform.machine(),
            "runs": args.runs}  # fmt: skip
    path.write_text(json.dumps({"meta": meta, "results": report}, indent=2))
    print(f"wrote {path}")


def _run(name: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(WORKLOADS[name](Path(tmp) / "bench.db"))


if __name__ == "__main__":
    main()
