"""The same workloads on DBOS Transact (SQLite system database), for ``--compare``.

Runs in its own virtualenv, which has ``dbos`` and never flowcore (``nox -s bench_compare``
makes it). The harness starts it as a subprocess::

    python -m benchmarks.dbos_workloads bench --only W1 --runs 3 --json-out FILE

and reads back one JSON document (the same record shape as flowcore's, see
:func:`benchmarks.common.workload_record`). W4's children are this module too
(``... child setup|recover KIND DB SIZES``).

The code is the idiomatic DBOS equivalent of flowcore's: async workflows and no-op async
``@DBOS.step()`` functions; events are ``DBOS.recv_async`` / ``DBOS.send_async``, timers
``DBOS.sleep_async``, fan-out ``asyncio.gather`` of steps inside a workflow, recovery is what
``DBOS.launch()`` does on a database with pending workflows. DBOS runs with its defaults
otherwise (its SQLite database keeps SQLite's default rollback journal and synchronous=FULL).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sqlite3
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dbos import DBOS, SetWorkflowID

from benchmarks.common import (
    COMPARED,
    RECOVERY,
    REPO,
    SETUP_DEADLINE,
    Run,
    Sizes,
    child_env,
    child_main,
    emit,
    has_uvloop,
    latency_metrics,
    loop_choice,
    measure,
    run_loop,
    run_recovery,
    scratch_dir,
    sizes_for,
    workload_record,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable


@DBOS.step()
async def noop(x: int) -> int:
    return x


@DBOS.workflow()
async def three_steps(x: int) -> int:
    a = await noop(x)
    b = await noop(a)
    return await noop(b)


@DBOS.workflow()
async def fan_out(n: int) -> int:
    results = await asyncio.gather(*(noop(i) for i in range(n)))
    return len(results)


@DBOS.workflow()
async def long_chain(n: int) -> int:
    total = 0
    for i in range(n):
        total += await noop(i)
    return total


RECV_TIMEOUT = 3600.0


@DBOS.workflow()
async def wait_for_go(x: int) -> int:
    go = await DBOS.recv_async("go", timeout_seconds=RECV_TIMEOUT)
    return x + (go or 0)


@DBOS.workflow()
async def nap(seconds: float) -> float:
    await DBOS.sleep_async(seconds)
    return seconds


@DBOS.workflow()
async def chain_then_wait(n: int) -> int:
    total = 0
    for i in range(n):
        total += await noop(i)
    go = await DBOS.recv_async("go", timeout_seconds=RECV_TIMEOUT)
    return total + (go or 0)


def launch(db: Path) -> None:
    """Configure and launch DBOS on a SQLite system database (this recovers pending work)."""
    DBOS(
        config={
            "name": "flowcore-bench",
            "system_database_url": f"sqlite:///{db}",
            "log_level": "WARNING",
        }
    )
    DBOS.launch()


async def start(fn: Callable[..., Any], arg: Any, wid: str | None = None) -> Any:
    """Start a workflow (with a chosen id); returns its handle once the start is recorded."""
    if wid is None:
        return await DBOS.start_workflow_async(fn, arg)
    with SetWorkflowID(wid):
        return await DBOS.start_workflow_async(fn, arg)


# -- W1-W3, in this process --------------------------------------------------------------------


async def w1_throughput(workflows: int) -> Run:
    began = time.perf_counter()
    handles = await asyncio.gather(*(start(three_steps, i) for i in range(workflows)))
    await asyncio.gather(*(h.get_result() for h in handles))
    elapsed = time.perf_counter() - began
    return {"seconds": elapsed, "workflows_per_s": workflows / elapsed,
            "steps_per_s": 3 * workflows / elapsed}  # fmt: skip


async def w1_latency(workflows: int) -> Run:
    latencies = []
    for i in range(workflows):
        began = time.perf_counter()
        await (await start(three_steps, i)).get_result()
        latencies.append(time.perf_counter() - began)
    return latency_metrics(latencies)


async def w2_fan_out(activities: int) -> Run:
    began = time.perf_counter()
    await (await start(fan_out, activities)).get_result()
    return {"seconds": time.perf_counter() - began}


async def w3_long_history(steps: int) -> Run:
    began = time.perf_counter()
    await (await start(long_chain, steps)).get_result()
    return {"seconds": time.perf_counter() - began}


def _in_process(fn: Callable[[int], Awaitable[Run]], size: int) -> Run:
    async def run(db: Path) -> Run:
        launch(db)
        try:
            return await fn(size)
        finally:
            DBOS.destroy()

    with scratch_dir() as tmp:
        return run_loop(run(tmp / "bench.db"))


WORKLOADS: dict[str, Callable[[Sizes], Run]] = {
    "W1": lambda s: _in_process(w1_throughput, int(s["workflows"])),
    "W1-lat": lambda s: _in_process(w1_latency, int(s["workflows"])),
    "W2": lambda s: _in_process(w2_fan_out, int(s["activities"])),
    "W3-2k": lambda s: _in_process(w3_long_history, int(s["steps"])),
    "W3-20k": lambda s: _in_process(w3_long_history, int(s["steps"])),
    **{
        name: (lambda s, name=name: run_recovery(name, _child_argv(), child_env(REPO), s))
        for name in RECOVERY
    },
}


def _child_argv() -> list[str]:
    return [sys.executable, "-m", "benchmarks.dbos_workloads", "child"]


# -- W4: the child side ------------------------------------------------------------------------


async def until_waiting(ids: Iterable[str]) -> None:
    """Return once each workflow has recorded its durable sleep (a timer, or recv's timeout)."""
    pending = list(ids)
    deadline = time.monotonic() + SETUP_DEADLINE
    while pending:
        still = []
        for wid in pending:
            steps = await DBOS.list_workflow_steps_async(wid)
            if not steps or steps[-1]["function_name"] != "DBOS.sleep":
                still.append(wid)
        pending = still
        if pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} workflows never started waiting")
            await asyncio.sleep(0.05)


async def child_setup(kind: str, db: Path, sizes: Sizes) -> None:
    launch(db)
    if kind == "events":
        ids = [f"w{i}" for i in range(int(sizes["workflows"]))]
        await asyncio.gather(*(start(wait_for_go, i, w) for i, w in enumerate(ids)))
    elif kind == "timers":
        ids = [f"t{i}" for i in range(int(sizes["workflows"]))]
        await asyncio.gather(*(start(nap, sizes["sleep_s"], w) for w in ids))
    else:
        ids = ["long"]
        await start(chain_then_wait, int(sizes["steps"]), "long")
    await until_waiting(ids)
    emit("ready", t=time.monotonic())
    await asyncio.sleep(SETUP_DEADLINE)  # the parent SIGKILLs us here


async def _result(wid: str) -> Any:
    return await (await DBOS.retrieve_workflow_async(wid)).get_result()


async def child_recover(kind: str, db: Path, sizes: Sizes) -> None:
    t_imported = time.monotonic()
    launch(db)
    t_open = time.monotonic()
    try:
        if kind == "events":
            n = int(sizes["workflows"])
            await asyncio.gather(*(DBOS.send_async(f"w{i}", 1, "go") for i in range(n)))
            results: Any = await asyncio.gather(*(_result(f"w{i}") for i in range(n)))
            expected: Any = [i + 1 for i in range(n)]
        elif kind == "timers":
            n = int(sizes["workflows"])
            results = await asyncio.gather(*(_result(f"t{i}") for i in range(n)))
            expected = [sizes["sleep_s"]] * n
        else:
            await DBOS.send_async("long", 1, "go")
            results = await _result("long")
            expected = sum(range(int(sizes["steps"]))) + 1
        t_done = time.monotonic()
        if results != expected:
            raise AssertionError(f"wrong results after recovery: {results!r:.200}")
        emit("done", t_imported=t_imported, t_open=t_open, t_done=t_done)
    finally:
        DBOS.destroy()


# -- the CLI -----------------------------------------------------------------------------------


def bench(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dbos_workloads bench")
    parser.add_argument("--only", nargs="*", default=list(COMPARED))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--json-out", type=Path, required=True)
    args = parser.parse_args(argv)
    if loop_choice() == "uvloop" and not has_uvloop():
        parser.error(
            "the run's loop is uvloop, which this virtualenv lacks: install it "
            "(nox -s bench_dbos does) or run the harness with --loop asyncio"
        )
    results = {}
    for name in args.only:
        if name not in WORKLOADS:
            parser.error(f"unknown workload {name!r}; DBOS runs {', '.join(WORKLOADS)}")
        sizes = sizes_for(name, quick=args.quick, scale=args.scale)
        print(f"dbos {name} {sizes} ...", file=sys.stderr, flush=True)
        warmups, runs = measure(lambda s=sizes, n=name: WORKLOADS[n](s), runs=args.runs,
                                warmup=args.warmup)  # fmt: skip
        results[name] = workload_record(name, sizes, warmups, runs)
    meta = {
        "engine": "dbos",
        "dbos_version": metadata.version("dbos"),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "loop": loop_choice(),
        "system_database": "sqlite, DBOS defaults otherwise (rollback journal, synchronous=FULL)",
        "quick": args.quick,
        "scale": args.scale,
    }
    args.json_out.write_text(json.dumps({"meta": meta, "results": results}, indent=2))


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        del sys.argv[1]
        child_main({"setup": child_setup, "recover": child_recover})
    elif sys.argv[1:2] == ["bench"]:
        bench(sys.argv[2:])
    else:
        sys.exit("usage: python -m benchmarks.dbos_workloads bench|child ...")
