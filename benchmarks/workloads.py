"""The workloads: each is an async function that runs once and returns named measurements."""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import TYPE_CHECKING

import flowcore
from flowcore import Runtime, activity, workflow

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from flowcore.journal.base import Durability


@activity
async def noop(x: int) -> int:
    return x


@workflow
async def three_steps(x: int) -> int:
    a = await noop(x)
    b = await noop(a)
    return await noop(b)


@workflow
async def fan_out(n: int) -> int:
    results = await flowcore.gather(*(noop(i) for i in range(n)))
    return len(results)


@workflow
async def long_chain(n: int) -> int:
    total = 0
    for i in range(n):
        total += await noop(i)
    return total


async def w1_throughput(
    db: Path, *, workflows: int = 2000, durability: Durability = "full"
) -> dict[str, float]:
    """W1: N workflows x 3 sequential no-op activities, started concurrently."""
    async with Runtime(db, durability=durability) as rt:
        began = time.perf_counter()
        handles = await asyncio.gather(*(rt.start(three_steps, i) for i in range(workflows)))
        await asyncio.gather(*(h.result() for h in handles))
        elapsed = time.perf_counter() - began
    return {"seconds": elapsed, "workflows_per_s": workflows / elapsed,
            "steps_per_s": 3 * workflows / elapsed}  # fmt: skip


async def w1_latency(db: Path, *, workflows: int = 200) -> dict[str, float]:
    """W1-lat: workflows one after another; start-to-result latency."""
    latencies = []
    async with Runtime(db) as rt:
        for i in range(workflows):
            began = time.perf_counter()
            await (await rt.start(three_steps, i)).result()
            latencies.append(time.perf_counter() - began)
    latencies.sort()
    return {
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
    }


async def w2_fan_out(db: Path, *, activities: int = 1000) -> dict[str, float]:
    """W2: one workflow gathering N activities."""
    async with Runtime(db) as rt:
        began = time.perf_counter()
        await (await rt.start(fan_out, activities)).result()
        return {"seconds": time.perf_counter() - began}


async def w3_long_history(db: Path, *, steps: int = 2000) -> dict[str, float]:
    """W3: one workflow with N sequential activities."""
    async with Runtime(db) as rt:
        began = time.perf_counter()
        await (await rt.start(long_chain, steps)).result()
        return {"seconds": time.perf_counter() - began}


WORKLOADS: dict[str, Callable[[Path], Awaitable[dict[str, float]]]] = {
    "W1": w1_throughput,
    "W1-normal": lambda db: w1_throughput(db, durability="normal"),
    "W1-lat": w1_latency,
    "W2": w2_fan_out,
    "W3-2k": w3_long_history,
    "W3-20k": lambda db: w3_long_history(db, steps=20_000),
}
