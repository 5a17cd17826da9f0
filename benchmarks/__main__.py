"""Run the benchmarks: per workload a warm-up, then several runs; print a table, write JSON.

Workloads (sizes as the issue asks; ``--quick`` shrinks them to a smoke test):
  W1          2,000 workflows x 3 sequential no-op async activities, started concurrently
  W1-normal   the same with durability="normal"
  W1-grown    W1 on a journal already holding 50,000 finished workflows (400,000 events)
  W1-bare     W1 on a bare prototype of the design (benchmarks/bare.py), not on flowcore:
              the yardstick the W1 target came from, measured in the same run
  W1-lat      200 such workflows one after another: start-to-result latency p50/p99
  W2          one workflow gathering 1,000 activities
  W3-2k/20k   one workflow with 2,000 / 20,000 sequential activities
  W4-events   500 workflows blocked on an event, SIGKILL, fresh process: recover, send, all done
  W4-timers   500 workflows on a 1 s timer, SIGKILL, restart after the timers expired
  W4-history  one workflow with a 2,000-step history blocked on an event, SIGKILL, recover
  W5          resident memory per workflow with 10,000 workflows waiting on events
  W5-cached   the same with Runtime(max_cached_workflows=1,000): idle ones are evicted
  *-eager     W1, W1-lat, W2, W3 with Runtime(dispatch="eager")

--celery also runs the Celery workloads (needs redis-server and flowcore[celery]): flowcore
with its activities on Celery workers next to a plain Celery chain/chord doing the same work,
in the same run, with the ratio:
  C-chains    500 workflows x 3 sequential Celery activities vs 500 Celery chains of 3 tasks
  C-fanout    one workflow gathering 1,000 Celery activities vs a chord of 1,000 tasks

Every side of a run (flowcore's, DBOS's, their child processes) runs on the same event loop:
uvloop when it is installed (flowcore[speed]; the nox sessions install it), as flowcore's CLI
does, or the one --loop names.

--compare also runs W1, W1-lat, W2, W3-2k and W4 on DBOS Transact (SQLite) in its own
virtualenv, right after flowcore's run of the same workload, and prints the ratios.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sqlite3
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from benchmarks import compare
from benchmarks.common import (
    CELERY_SIZES,
    COMPARED,
    LOOP_ENV,
    REPO,
    find_redis_server,
    has_uvloop,
    measure,
    sizes_for,
    workload_record,
)
from benchmarks.workloads import WORKLOADS

if TYPE_CHECKING:
    from collections.abc import Callable

    from benchmarks.common import Run, Sizes

CELERY_NAMES = tuple(CELERY_SIZES)
"""The Celery workloads by name: their module imports celery, only when one of them runs."""
ALL_NAMES = (*WORKLOADS, *CELERY_NAMES)


def _celery_workloads() -> dict[str, Callable[[Sizes], Run]]:
    """The Celery workloads (celery is an optional extra: imported only when asked for)."""
    from benchmarks.celery_workloads import CELERY_WORKLOADS  # noqa: PLC0415 - optional

    return CELERY_WORKLOADS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=5, help="measured runs per workload")
    parser.add_argument("--warmup", type=int, default=1, help="discarded runs before them")
    parser.add_argument(
        "--only",
        nargs="+",
        default=None,
        metavar="NAME",
        help=f"workloads to run, of: {' '.join(ALL_NAMES)}",
    )
    parser.add_argument(
        "--celery",
        action="store_true",
        help=f"also run {', '.join(CELERY_NAMES)} (redis-server, Celery workers)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    parser.add_argument(
        "--loop",
        choices=["auto", "asyncio", "uvloop"],
        default="auto",
        help="event loop of every side of the run, DBOS's included (auto: uvloop when "
        "installed, as flowcore's CLI does; flowcore[speed])",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO / "benchmarks" / "results",
        help="directory for the JSON report",
    )
    group = parser.add_argument_group("comparison with DBOS Transact")
    group.add_argument(
        "--compare", action="store_true", help=f"also run {', '.join(COMPARED)} on DBOS"
    )
    group.add_argument(
        "--dbos-python",
        type=Path,
        default=None,
        help=f"Python of a virtualenv with dbos (default: {compare.DEFAULT_VENV}/bin/python)",
    )
    group.add_argument(
        "--dbos-runs",
        type=int,
        default=None,
        help="measured DBOS runs per workload (default: --runs)",
    )
    group.add_argument(
        "--dbos-warmup", type=int, default=None, help="discarded DBOS runs (default: --warmup)"
    )
    group.add_argument(
        "--dbos-scale",
        type=float,
        default=1.0,
        help="multiply DBOS's workflow/step counts (sizes go in the JSON)",
    )
    args = parser.parse_args(argv)
    unknown = [n for n in args.only or () if n not in ALL_NAMES]
    if unknown:
        known = " ".join(ALL_NAMES)
        parser.error(f"unknown workload(s) {', '.join(unknown)}; known: {known}")
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be at least 1 and --warmup at least 0")
    if (args.dbos_runs is not None and args.dbos_runs < 1) or (
        args.dbos_warmup is not None and args.dbos_warmup < 0
    ):
        parser.error("--dbos-runs must be at least 1 and --dbos-warmup at least 0")
    if args.celery or any(n in CELERY_NAMES for n in args.only or ()):
        _check_celery(parser)
    return args


def _check_celery(parser: argparse.ArgumentParser) -> None:
    try:
        import benchmarks.celery_workloads  # noqa: F401, PLC0415 - optional: is celery there?
    except ImportError as exc:
        parser.error(
            f"the Celery workloads ({', '.join(CELERY_NAMES)}) need celery ({exc}): "
            "pip install 'flowcore[celery]'"
        )
    if find_redis_server() is None:
        parser.error(
            f"the Celery workloads ({', '.join(CELERY_NAMES)}) start their own redis-server, "
            "which is not installed (apt-get install redis-server)"
        )


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    args.loop = _resolve_loop(args.loop)
    os.environ[LOOP_ENV] = args.loop  # children (W4, W5, DBOS) inherit it
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    default = [*WORKLOADS, *(CELERY_NAMES if args.celery else ())]
    names = list(dict.fromkeys(args.only or default))
    workloads = dict(WORKLOADS)
    if any(n in CELERY_NAMES for n in names):
        workloads.update(_celery_workloads())
    dbos_python = compare.find_dbos_python(args.dbos_python) if args.compare else None

    results: dict[str, dict[str, Any]] = {}
    dbos_results: dict[str, dict[str, Any]] = {}
    dbos_meta: dict[str, Any] | None = None
    print(
        f"{'engine':<9}{'workload':<12} {'metric':<16} {'median':>12} {'min':>12} "
        f"{'max':>12}  sizes",
        flush=True,
    )
    for name in names:
        sizes = sizes_for(name, quick=args.quick)
        warmups, runs = measure(
            lambda s=sizes, n=name: workloads[n](s), runs=args.runs, warmup=args.warmup
        )
        results[name] = workload_record(name, sizes, warmups, runs)
        _print_record("flowcore", results[name])
        if dbos_python is not None and name in COMPARED:
            dbos_meta, records = compare.run_dbos(
                dbos_python,
                [name],
                runs=args.runs if args.dbos_runs is None else args.dbos_runs,
                warmup=args.warmup if args.dbos_warmup is None else args.dbos_warmup,
                quick=args.quick,
                scale=args.dbos_scale,
            )
            dbos_results.update(records)
            _print_record("DBOS", records[name])

    report: dict[str, Any] = {"meta": {**_meta(args), "started": started}, "results": results}
    if dbos_python is not None:
        rows = compare.compare_rows(results, dbos_results)
        print()
        print(compare.format_table(rows))
        report["dbos"] = {"meta": dbos_meta, "results": dbos_results}
        report["comparison"] = rows
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "-compare" if args.compare else "-quick" if args.quick else ""
    path = args.out / f"bench-{time.strftime('%Y%m%d-%H%M%S')}{suffix}.json"
    path.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"wrote {path}")
    return path


def _resolve_loop(choice: str) -> str:
    if choice == "asyncio":
        return choice
    if has_uvloop():
        return "uvloop"
    if choice == "uvloop":
        msg = "--loop uvloop: uvloop is not installed (pip install 'flowcore[speed]')"
        raise SystemExit(msg)
    return "asyncio"


def _print_record(engine: str, record: dict[str, Any]) -> None:
    sizes = " ".join(f"{k}={v:g}" for k, v in record["sizes"].items())
    for metric, stats in record["metrics"].items():
        print(
            f"{engine:<9}{record['workload']:<12} {metric:<16} {stats['median']:>12.3f} "
            f"{stats['min']:>12.3f} {stats['max']:>12.3f}  {sizes}",
            flush=True,
        )


def _meta(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "engine": "flowcore",
        "flowcore_version": metadata.version("flowcore"),
        "commit": _commit(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "sqlite": sqlite3.sqlite_version,
        "loop": args.loop,
        "runs": args.runs,
        "warmup": args.warmup,
        "quick": args.quick,
        "compare": args.compare,
        "dbos_scale": args.dbos_scale if args.compare else None,
        "argv": sys.argv[1:],
        "notes": NOTES,
    }


NOTES = [
    "Each workload: --warmup discarded runs, then --runs measured ones; median/min/max/values.",
    (
        "W1-W3 run in the harness process on a fresh SQLite file each run (durability='full' "
        "unless the name says otherwise); the clock starts after the engine is open."
    ),
    (
        "W1-bare: W1 on a bare prototype of flowcore's design (benchmarks/bare.py: one writer, "
        "executemany per batch, workflows resumed in memory, no engine features), not on "
        "flowcore; flowcore's W1 over it is the engine's cost."
    ),
    (
        "W1-grown: W1 on a copy of a journal that already holds 'prefilled' finished W1 "
        "workflows (built once per invocation, not timed): the cost per workflow must not "
        "grow with the journal."
    ),
    (
        "W4: a child process starts the workflows, waits until each one's wait or timer is "
        "committed, and is SIGKILLed; total_s runs from spawning a fresh child to every result. "
        "startup_s = interpreter start-up and imports, open_s = Runtime.open() (flowcore replays "
        "every unfinished workflow inside it) or DBOS.launch() (DBOS recovers in a background "
        "thread after launch returns, so its replay is in finish_s), finish_s = sending the events "
        "and awaiting every result, engine_s = open_s + finish_s. Children share one bytecode "
        "cache that the warm-up run fills."
    ),
    (
        "W5: VmRSS of a fresh child before and after starting the waiting workflows (gc.collect() "
        "before each reading), divided by their number. W5-cached: Runtime(max_cached_workflows="
        "N // 10), so nine in ten waiting workflows are evicted (kept as a small record)."
    ),
    (
        "C-chains, C-fanout (--celery): flowcore_s = flowcore with its activities on Celery "
        "workers, celery_s = plain Celery (chains / a chord) doing the same work on the same "
        "workers in the same run, ratio = flowcore_s / celery_s (the price of durability: "
        "below 1 means flowcore was faster; unlike comparison.ratio, lower is better)."
    ),
    (
        "comparison.ratio: how many times faster flowcore is; DBOS/flowcore for times, "
        "flowcore/DBOS for rates; computed from the medians of the same invocation."
    ),
]


def _commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],  # noqa: S607 - read-only, git from PATH
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


if __name__ == "__main__":
    main()
