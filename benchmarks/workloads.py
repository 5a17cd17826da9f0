"""flowcore's workloads: each runs once and returns named measurements.

W1-W3 run in this process on a fresh SQLite file. W4 (recovery) and W5 (memory) run in child
processes (:mod:`benchmarks.fc_child`): W4 SIGKILLs one and measures a fresh one recovering.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import flowcore
from benchmarks.bare import w1_bare
from benchmarks.common import (
    REPO,
    SETUP_DEADLINE,
    Child,
    Run,
    Sizes,
    child_env,
    emit,
    keep_dir,
    latency_metrics,
    rss_kb,
    run_loop,
    run_recovery,
    scratch_dir,
)
from flowcore import Runtime, activity, workflow

if TYPE_CHECKING:
    from typing import Literal

    Dispatch = Literal["durable", "eager"]
    from collections.abc import Callable, Coroutine, Iterable

    from flowcore.journal.base import Durability


@activity(name="bench_noop")  # names no test or app of the same process takes
async def noop(x: int) -> int:
    return x


@workflow(name="bench_three_steps")
async def three_steps(x: int) -> int:
    a = await noop(x)
    b = await noop(a)
    return await noop(b)


@workflow(name="bench_fan_out")
async def fan_out(n: int) -> int:
    results = await flowcore.gather(*(noop(i) for i in range(n)))
    return len(results)


@workflow(name="bench_long_chain")
async def long_chain(n: int) -> int:
    total = 0
    for i in range(n):
        total += await noop(i)
    return total


@workflow(name="bench_wait_for_go")
async def wait_for_go(x: int) -> int:
    go = await flowcore.wait_event("go", type=int)
    return x + (go or 0)


@workflow(name="bench_nap")
async def nap(seconds: float) -> float:
    await flowcore.sleep(seconds)
    return seconds


@workflow(name="bench_chain_then_wait")
async def chain_then_wait(n: int) -> int:
    total = 0
    for i in range(n):
        total += await noop(i)
    go = await flowcore.wait_event("go", type=int)
    return total + (go or 0)


# -- W1-W3, in this process --------------------------------------------------------------------


async def w1_throughput(
    db: Path,
    *,
    workflows: int = 2000,
    durability: Durability = "full",
    dispatch: Dispatch = "durable",
) -> Run:
    """W1: N workflows x 3 sequential no-op activities, started concurrently."""
    async with Runtime(db, durability=durability, dispatch=dispatch) as rt:
        began = time.perf_counter()
        handles = await asyncio.gather(*(rt.start(three_steps, i) for i in range(workflows)))
        await asyncio.gather(*(h.result() for h in handles))
        elapsed = time.perf_counter() - began
    return {"seconds": elapsed, "workflows_per_s": workflows / elapsed,
            "steps_per_s": 3 * workflows / elapsed}  # fmt: skip


async def w1_latency(db: Path, *, workflows: int = 200, dispatch: Dispatch = "durable") -> Run:
    """W1-lat: workflows one after another; start-to-result latency."""
    latencies = []
    async with Runtime(db, dispatch=dispatch) as rt:
        for i in range(workflows):
            began = time.perf_counter()
            await (await rt.start(three_steps, i)).result()
            latencies.append(time.perf_counter() - began)
    return latency_metrics(latencies)


async def w2_fan_out(db: Path, *, activities: int = 1000, dispatch: Dispatch = "durable") -> Run:
    """W2: one workflow gathering N activities."""
    async with Runtime(db, dispatch=dispatch) as rt:
        began = time.perf_counter()
        await (await rt.start(fan_out, activities)).result()
        return {"seconds": time.perf_counter() - began}


async def w3_long_history(db: Path, *, steps: int = 2000, dispatch: Dispatch = "durable") -> Run:
    """W3: one workflow with N sequential activities."""
    async with Runtime(db, dispatch=dispatch) as rt:
        began = time.perf_counter()
        await (await rt.start(long_chain, steps)).result()
        return {"seconds": time.perf_counter() - began}


def _in_process(fn: Callable[..., Coroutine[Any, Any, Run]], **kwargs: Any) -> Run:
    with scratch_dir() as tmp:
        return run_loop(fn(tmp / "bench.db", **kwargs))


_GROWN: dict[int, Path] = {}
"""Journals already holding N finished W1 workflows, by N: built once, copied for each run."""


def _grown_journal(prefilled: int) -> Path:
    """A journal file holding ``prefilled`` finished 3-step workflows (built on first use)."""
    if prefilled not in _GROWN:
        path = keep_dir() / f"grown-{prefilled}.db"

        async def fill() -> None:
            async with Runtime(path) as rt:
                for lo in range(0, prefilled, 2000):
                    starts = (
                        rt.start(three_steps, i) for i in range(lo, min(lo + 2000, prefilled))
                    )
                    handles = await asyncio.gather(*starts)
                    await asyncio.gather(*(h.result() for h in handles))

        run_loop(fill())
        _GROWN[prefilled] = path
    return _GROWN[prefilled]


def w1_grown(sizes: Sizes) -> Run:
    """W1-grown: W1 on a copy of a journal that already holds many finished workflows."""
    template = _grown_journal(int(sizes["prefilled"]))
    with scratch_dir() as tmp:
        db = tmp / "bench.db"
        for suffix in ("", "-wal"):  # closed cleanly, the -wal is gone; copied should it remain
            if Path(f"{template}{suffix}").exists():
                shutil.copyfile(f"{template}{suffix}", f"{db}{suffix}")
        return run_loop(w1_throughput(db, workflows=int(sizes["workflows"])))


# -- W4 and W5: the child side (run by benchmarks.fc_child) ------------------------------------


async def until_waiting(rt: Runtime, ids: Iterable[str], kind: str) -> None:
    """Return once each workflow's last committed event is ``kind`` (bounded)."""
    pending = list(ids)
    deadline = time.monotonic() + SETUP_DEADLINE
    while pending:
        pending = [wid for wid in pending if (await rt.history(wid))[-1].kind != kind]
        if pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} workflows never reached {kind!r}")
            await asyncio.sleep(0.01)


async def child_setup(kind: str, db: Path, sizes: Sizes) -> None:
    """Start the workflows, wait until each blocks (its wait committed), report, hang."""
    async with Runtime(db) as rt:
        if kind == "events":
            ids = [f"w{i}" for i in range(int(sizes["workflows"]))]
            await asyncio.gather(*(rt.start(wait_for_go, i, id=w) for i, w in enumerate(ids)))
            await until_waiting(rt, ids, "event_wait_started")
        elif kind == "timers":
            ids = [f"t{i}" for i in range(int(sizes["workflows"]))]
            await asyncio.gather(*(rt.start(nap, sizes["sleep_s"], id=w) for w in ids))
            await until_waiting(rt, ids, "timer_scheduled")
        else:
            await rt.start(chain_then_wait, int(sizes["steps"]), id="long")
            await until_waiting(rt, ["long"], "event_wait_started")
        emit("ready", t=time.monotonic())
        await asyncio.sleep(SETUP_DEADLINE)  # the parent SIGKILLs us here


async def child_recover(kind: str, db: Path, sizes: Sizes) -> None:
    """Open (recovery), send the events, await every result; report the timestamps."""
    t_imported = time.monotonic()
    rt = Runtime(db)
    await rt.open()
    t_open = time.monotonic()
    try:
        if kind == "events":
            n = int(sizes["workflows"])
            await asyncio.gather(*(rt.send_event(f"w{i}", "go", 1) for i in range(n)))
            results = await asyncio.gather(*(rt.handle(f"w{i}").result() for i in range(n)))
            expected: Any = [i + 1 for i in range(n)]
        elif kind == "timers":
            n = int(sizes["workflows"])
            results = await asyncio.gather(*(rt.handle(f"t{i}").result() for i in range(n)))
            expected = [sizes["sleep_s"]] * n
        else:
            await rt.send_event("long", "go", 1)
            results = await rt.handle("long").result()
            expected = sum(range(int(sizes["steps"]))) + 1
        t_done = time.monotonic()
        if results != expected:
            raise AssertionError(f"wrong results after recovery: {results!r:.200}")
        emit("done", t_imported=t_imported, t_open=t_open, t_done=t_done)
    finally:
        await rt.close()


async def child_memory(kind: str, db: Path, sizes: Sizes) -> None:
    """W5: RSS before and after starting N workflows that wait for an event.

    W5-cached: the same with ``max_cached_workflows`` a tenth of N (idle ones evicted).
    """
    import gc  # noqa: PLC0415

    n = int(sizes["workflows"])
    ids = [f"m{i}" for i in range(n)]
    cap = max(1, n // 10) if kind == "W5-cached" else None
    async with Runtime(db, max_cached_workflows=cap) as rt:
        await (await rt.start(three_steps, 0)).result()  # warm every code path once
        gc.collect()
        before = rss_kb()
        for lo in range(0, n, 1000):  # batches: keep transient garbage from inflating the peak
            batch = range(lo, min(lo + 1000, n))
            await asyncio.gather(*(rt.start(wait_for_go, i, id=ids[i]) for i in batch))
        await until_waiting(rt, ids, "event_wait_started")
        if cap is not None:  # the last sweep may run a moment after the last commit
            deadline = time.monotonic() + SETUP_DEADLINE
            live = lambda: len(rt._instances) - rt._evicted  # noqa: E731, SLF001
            while live() > cap and time.monotonic() < deadline:  # noqa: ASYNC110 - a deadline poll
                await asyncio.sleep(0.01)
        gc.collect()
        after = rss_kb()
        emit("memory", before_kb=before, after_kb=after, workflows=n)


CHILD_HANDLERS = {"setup": child_setup, "recover": child_recover, "memory": child_memory}


# -- W4 and W5: the parent side ----------------------------------------------------------------


def _child_argv() -> list[str]:
    return [sys.executable, "-m", "benchmarks.fc_child"]


def _child_env() -> dict[str, str]:
    # The child imports the very flowcore this process runs, and the benchmarks package.
    return child_env(REPO, Path(flowcore.__file__).resolve().parents[1])


def w4_recovery(workload: str, sizes: Sizes) -> Run:
    """W4: see :func:`benchmarks.common.run_recovery`."""
    return run_recovery(workload, _child_argv(), _child_env(), sizes)


def w5_memory(sizes: Sizes, kind: str = "W5") -> Run:
    """W5: resident memory per waiting workflow, measured in a fresh child process."""
    with scratch_dir() as tmp:
        argv = [*_child_argv(), "memory", kind, str(tmp / "bench.db"), json.dumps(sizes)]
        with Child(argv, env=_child_env()) as child:
            report = child.expect("memory", 600)
            child.finish()
    n = report["workflows"]
    return {
        "kb_per_workflow": (report["after_kb"] - report["before_kb"]) / n,
        "rss_before_mb": report["before_kb"] / 1024,
        "rss_after_mb": report["after_kb"] / 1024,
    }


WORKLOADS: dict[str, Callable[[Sizes], Run]] = {
    "W1": lambda s: _in_process(w1_throughput, workflows=int(s["workflows"])),
    "W1-normal": lambda s: _in_process(
        w1_throughput, workflows=int(s["workflows"]), durability="normal"
    ),
    "W1-grown": w1_grown,
    "W1-bare": lambda s: w1_bare(int(s["workflows"])),
    "W1-lat": lambda s: _in_process(w1_latency, workflows=int(s["workflows"])),
    "W2": lambda s: _in_process(w2_fan_out, activities=int(s["activities"])),
    "W3-2k": lambda s: _in_process(w3_long_history, steps=int(s["steps"])),
    "W3-20k": lambda s: _in_process(w3_long_history, steps=int(s["steps"])),
    # The same with Runtime(dispatch="eager"): work starts while its schedule commits.
    "W1-eager": lambda s: _in_process(
        w1_throughput, workflows=int(s["workflows"]), dispatch="eager"
    ),
    "W1-lat-eager": lambda s: _in_process(
        w1_latency, workflows=int(s["workflows"]), dispatch="eager"
    ),
    "W2-eager": lambda s: _in_process(
        w2_fan_out, activities=int(s["activities"]), dispatch="eager"
    ),
    "W3-2k-eager": lambda s: _in_process(w3_long_history, steps=int(s["steps"]), dispatch="eager"),
    "W3-20k-eager": lambda s: _in_process(w3_long_history, steps=int(s["steps"]), dispatch="eager"),
    "W4-events": lambda s: w4_recovery("W4-events", s),
    "W4-timers": lambda s: w4_recovery("W4-timers", s),
    "W4-history": lambda s: w4_recovery("W4-history", s),
    "W5": w5_memory,
    "W5-cached": lambda s: w5_memory(s, "W5-cached"),
}
"""Each takes the workload's sizes and returns one run's measurements."""
