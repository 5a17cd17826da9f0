"""Celery workloads: flowcore on Celery workers side by side with plain Celery doing the same work.

Each run starts its own ``redis-server`` (broker and result backend) on a free port and
``FLOWCORE_BENCH_WORKERS`` worker processes (default 1, ``--pool=threads``, ``-c 8``), warms
them up, then measures in the same run:

  C-chains   flowcore: N workflows x 3 sequential Celery activities, started concurrently;
             Celery:   N ``chain(noop.s(i), noop.s(), noop.s())``, all results awaited
  C-fanout   flowcore: one workflow gathering N Celery activities;
             Celery:   one ``chord(group(noop.s(i) for i in range(N)), count.s())``

Reported: ``flowcore_s``, ``celery_s`` and ``ratio`` (flowcore time / Celery time: the price of
durability, a journal commit per step, over fire-and-forget Celery).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from celery import chain, chord, group
from celery.result import ResultSet

import flowcore
from benchmarks.celery_app import bench_celery_noop, make_app
from benchmarks.common import (
    REPO,
    Run,
    Sizes,
    child_env,
    find_redis_server,
    run_loop,
    scratch_dir,
)
from flowcore import Runtime, workflow
from flowcore.celery import CeleryBackend

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterator
    from pathlib import Path

    from celery import Celery

DEADLINE = 600.0
"""Seconds one side of one run may take."""


@workflow
async def bench_celery_chain(x: int) -> int:
    a = await bench_celery_noop(x)
    b = await bench_celery_noop(a)
    return await bench_celery_noop(b)


@workflow
async def bench_celery_fan_out(n: int) -> int:
    return len(await flowcore.gather(*(bench_celery_noop(i) for i in range(n))))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"redis-server did not start on port {port}")
        time.sleep(0.02)


@contextlib.contextmanager
def celery_stack(tmp: Path) -> Iterator[Celery]:
    """redis-server plus worker processes; yields the client-side app, stops everything after."""
    redis_server = find_redis_server()
    if redis_server is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0"
    procs: list[subprocess.Popen[bytes]] = []
    log = (tmp / "stack.log").open("wb")
    try:
        redis = subprocess.Popen(
            [redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(tmp)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        procs.append(redis)
        _wait_for_port(port, redis)
        env = child_env(REPO, REPO / "src")
        env["FLOWCORE_BENCH_REDIS"] = url
        concurrency = os.environ.get("FLOWCORE_BENCH_CONCURRENCY", "8")
        procs.extend(
            subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "benchmarks.celery_app", "worker",
                 "--pool=threads", "-c", concurrency, "-n", f"bench{i}@%h", "--loglevel=WARNING",
                 "--without-gossip", "--without-mingle", "--without-heartbeat"],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
            )
            for i in range(int(os.environ.get("FLOWCORE_BENCH_WORKERS", "1")))
        )  # fmt: skip
        app = make_app(url)
        app.send_task("bench.noop", args=[0]).get(timeout=60)  # the workers are up
        yield app
        # Plain Celery's chord leaves results in reference cycles; collected after Redis is
        # gone (at exit), each one's __del__ retries reconnecting for ~20 s (Celery 5.6).
        gc.collect()
        app.close()
    finally:
        for proc in reversed(procs):
            proc.kill()
            proc.wait(timeout=10)
        log.close()


async def _flowcore_chains(app: Celery, db: Path, workflows: int) -> float:
    async with Runtime(db, backend=CeleryBackend(app)) as rt:
        began = time.perf_counter()
        handles = await asyncio.gather(*(rt.start(bench_celery_chain, i) for i in range(workflows)))
        results = await asyncio.gather(*(h.result(timeout=DEADLINE) for h in handles))
        elapsed = time.perf_counter() - began
    assert results == list(range(workflows))  # noqa: S101 - a benchmark that lies is worse
    return elapsed


async def _flowcore_fan_out(app: Celery, db: Path, activities: int) -> float:
    async with Runtime(db, backend=CeleryBackend(app)) as rt:
        began = time.perf_counter()
        handle = await rt.start(bench_celery_fan_out, activities)
        result = await handle.result(timeout=DEADLINE)
        elapsed = time.perf_counter() - began
    assert result == activities  # noqa: S101
    return elapsed


def _celery_chains(app: Celery, workflows: int) -> float:
    noop = app.signature("bench.noop")
    began = time.perf_counter()
    results = ResultSet(
        [chain(noop.clone(args=(i,)), noop.clone(), noop.clone()).apply_async()
         for i in range(workflows)],
        app=app,
    )  # fmt: skip
    values = results.get(timeout=DEADLINE)
    elapsed = time.perf_counter() - began
    assert values == list(range(workflows))  # noqa: S101
    return elapsed


def _celery_chord(app: Celery, activities: int) -> float:
    noop, count = app.signature("bench.noop"), app.signature("bench.count")
    began = time.perf_counter()
    result = chord(group(noop.clone(args=(i,)) for i in range(activities)))(count).get(
        timeout=DEADLINE
    )
    elapsed = time.perf_counter() - began
    assert result == activities  # noqa: S101
    return elapsed


def _side_by_side(
    flowcore_side: Callable[[Celery, Path, int], Coroutine[Any, Any, float]],
    celery_side: Callable[[Celery, int], float],
    n: int,
) -> Run:
    with scratch_dir() as tmp, celery_stack(tmp) as app:
        fc = run_loop(flowcore_side(app, tmp / "bench.db", n))
        plain = celery_side(app, n)
    return {"flowcore_s": fc, "celery_s": plain, "ratio": fc / plain}


CELERY_WORKLOADS: dict[str, Callable[[Sizes], Run]] = {
    "C-chains": lambda s: _side_by_side(_flowcore_chains, _celery_chains, int(s["workflows"])),
    "C-fanout": lambda s: _side_by_side(_flowcore_fan_out, _celery_chord, int(s["activities"])),
}
"""Need redis-server and Celery (``flowcore[celery]``); run with ``--celery`` or ``--only``."""
