"""Worker process of the crash campaign: a seeded mix of workflows on one journal.

Run as ``python -m tests.chaos.chaos_app DB LOG ACKS SEED COUNT`` from the repository root. It
opens a Runtime on ``DB``, starts the ``COUNT`` workflows of :func:`build_plan` (fixed ids,
``if_exists="return"``, so a restarted worker resumes them), sends the events and cancellations
the plan asks for (unless the journal already holds them), waits until every workflow has ended
and exits 0.

Two append-only files (``O_APPEND``, one ``write`` per line: a SIGKILL keeps every line written)
record what happened:

- ``LOG``: ``start|end WID OP ATTEMPT LABEL KEY`` for every activity attempt (``OP`` is the
  call's place in the program, ``KEY`` its idempotency key);
- ``ACKS``: ``start|event|cancel WID`` once ``start()``, ``send_event()`` or ``cancel()`` has
  returned, i.e. once the runtime acknowledged it.

The plan and the outcome a crash-free run gives (:func:`expected_outcome`) are pure functions of
the seed; the harness (:mod:`tests.chaos.campaign`) imports them. Workflows and activities are
defined only by :func:`define`, so importing this module registers nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sys
import time
import zlib
from dataclasses import dataclass
from typing import Any

from tests.helpers import run_app
from tests.runtime.crash_app import MODULUS, mix

SHAPES = ("chain", "fanout", "sub", "timer", "event", "child", "retry", "cancel", "fail")
START_CHUNK = 10
"""Workflows started concurrently (their starts share group commits)."""
DISPATCH_ENV = "CHAOS_DISPATCH"
"""Environment variable: the workers' ``Runtime(dispatch=...)`` (``durable`` by default)."""
CACHE_ENV = "CHAOS_CACHE"
"""Environment variable: the workers' ``Runtime(max_cached_workflows=...)`` (default if unset)."""


@dataclass(frozen=True, slots=True)
class Spec:
    """One workflow of the plan."""

    id: str
    shape: str
    payload: dict[str, Any]


def build_plan(seed: int, count: int, *, max_delay: float = 1.0) -> list[Spec]:
    """``count`` workflows, every shape in turn, with seeded inputs (timers up to ``max_delay``)."""
    rng = random.Random(f"chaos/{seed}")  # noqa: S311 - seeded on purpose: reproducible runs
    specs = []
    for i in range(count):
        shape = SHAPES[i % len(SHAPES)]
        payload: dict[str, Any] = {"start": rng.randrange(MODULUS)}
        if shape in ("chain", "fanout"):
            payload["n"] = rng.randint(2, 5)
        elif shape == "timer":
            payload["delay"] = round(rng.uniform(0.01, max_delay), 3)
        elif shape == "retry":
            payload["failures"] = rng.randint(1, 2)
        elif shape == "event":
            payload["n"] = rng.randrange(1000)
        specs.append(Spec(f"s{seed}-{i}-{shape}", shape, payload))
    return specs


def expected_outcome(spec: Spec) -> tuple[str, Any]:  # noqa: PLR0911 - one return per shape
    """``(status, output)`` of ``spec`` in a crash-free run: the reference implementation."""
    p = spec.payload
    x = p["start"]
    match spec.shape:
        case "chain":
            for i in range(p["n"]):
                x = mix(x, f"c{i}")
            return "completed", x
        case "fanout":
            parts = [mix(x + i, f"f{i}") for i in range(p["n"])]
            return "completed", mix(sum(parts) % MODULUS, "fin")
        case "sub":
            return "completed", [mix(mix(x, f"{b}.1"), f"{b}.2") for b in ("a", "b")]
        case "timer":
            return "completed", mix(mix(x, "t1"), "t2")
        case "event":
            return "completed", mix((x + p["n"]) % MODULUS, "e1")
        case "child":
            return "completed", mix(mix(mix(x, "c0"), "c1"), "k1")
        case "retry":
            return "completed", mix(x, "r1")
        case "cancel":
            return "canceled", mix(x, "comp")
        case _:
            return "failed", None


# -- the worker -----------------------------------------------------------------------------------


class _Files:
    log = -1
    acks = -1


def _append(fd: int, line: str) -> None:
    os.write(fd, line.encode())


def _log(kind: str, label: str) -> None:
    import flowcore

    info = flowcore.activity_info()
    key = info.idempotency_key
    _append(_Files.log, f"{kind} {info.workflow_id} {info.op} {info.attempt} {label} {key}\n")


def _work_time() -> float:
    """5 to 50 ms of "work", fixed per idempotency key, so that calls overlap.

    ``CHAOS_NO_WORK=1`` makes it 0 (fewer, fuller group commits: kill at every commit).
    """
    import flowcore

    if os.environ.get("CHAOS_NO_WORK") == "1":
        return 0.0
    key = flowcore.activity_info().idempotency_key or ""
    return (5 + zlib.crc32(key.encode()) % 46) / 1000


def open_files(log: str, acks: str) -> None:
    """Open (appending) the activity log and the acknowledgement file, closing earlier ones."""
    for fd in (_Files.log, _Files.acks):
        if fd >= 0:
            os.close(fd)
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    _Files.log, _Files.acks = os.open(log, flags, 0o644), os.open(acks, flags, 0o644)


def define() -> dict[str, Any]:  # noqa: C901 - one small definition per shape
    """Define and register the workflows and activities; return the workflows by shape."""
    import flowcore

    @flowcore.activity(name="chaos_sync")
    def step_sync(x: int, label: str) -> int:
        _log("start", label)
        time.sleep(_work_time())
        _log("end", label)
        return mix(x, label)

    @flowcore.activity(name="chaos_async")
    async def step_async(x: int, label: str) -> int:
        _log("start", label)
        await asyncio.sleep(_work_time())
        _log("end", label)
        return mix(x, label)

    fast = flowcore.RetryPolicy(max_attempts=5, initial_interval=0.01, backoff=1.0)

    @flowcore.activity(name="chaos_flaky", retry=fast)
    async def flaky(x: int, label: str, failures: int) -> int:
        _log("start", label)
        if flowcore.activity_info().attempt <= failures:
            raise RuntimeError(f"planned failure of {flowcore.activity_info().idempotency_key}")
        _log("end", label)
        return mix(x, label)

    @flowcore.activity(name="chaos_boom")
    def boom(label: str) -> int:
        _log("start", label)
        raise flowcore.NonRetryableError(f"planned non-retryable failure ({label})")

    @flowcore.workflow(name="chaos_chain")
    async def chain(p: dict[str, Any]) -> int:
        x: int = p["start"]
        for i in range(p["n"]):
            x = await (step_sync if i % 2 else step_async)(x, f"c{i}")
        return x

    @flowcore.workflow(name="chaos_fanout")
    async def fanout(p: dict[str, Any]) -> int:
        calls = [
            (step_sync if i % 2 else step_async)(p["start"] + i, f"f{i}") for i in range(p["n"])
        ]
        parts = await flowcore.gather(*calls)
        return await step_async(sum(parts) % MODULUS, "fin")

    @flowcore.workflow(name="chaos_sub")
    async def sub(p: dict[str, Any]) -> list[int]:
        async def branch(b: str) -> int:
            y = await step_sync(p["start"], f"{b}.1")
            return await step_async(y, f"{b}.2")

        return await flowcore.gather(branch("a"), branch("b"))

    @flowcore.workflow(name="chaos_timer")
    async def timer(p: dict[str, Any]) -> int:
        x = await step_async(p["start"], "t1")
        await flowcore.sleep(p["delay"])
        return await step_sync(x, "t2")

    @flowcore.workflow(name="chaos_event")
    async def event(p: dict[str, Any]) -> int:
        got = await flowcore.wait_event("go")
        return await step_async((p["start"] + got["n"]) % MODULUS, "e1")

    @flowcore.workflow(name="chaos_child")
    async def child(p: dict[str, Any]) -> int:
        y = await flowcore.child(chain, {"start": p["start"], "n": 2})
        return await step_async(y, "k1")

    @flowcore.workflow(name="chaos_retry")
    async def retry(p: dict[str, Any]) -> int:
        return await flaky(p["start"], "r1", p["failures"])

    @flowcore.workflow(name="chaos_cancel")
    async def cancel(p: dict[str, Any]) -> int:
        try:
            await flowcore.wait_event("never")
        except flowcore.WorkflowCanceledError:
            return await step_async(p["start"], "comp")  # compensation
        return -1

    @flowcore.workflow(name="chaos_fail")
    async def fail(p: dict[str, Any]) -> int:
        return await boom("x")

    return {
        "chain": chain, "fanout": fanout, "sub": sub, "timer": timer, "event": event,
        "child": child, "retry": retry, "cancel": cancel, "fail": fail,
    }  # fmt: skip


async def _start(rt: Any, shapes: dict[str, Any], spec: Spec) -> None:
    await rt.start(shapes[spec.shape], spec.payload, id=spec.id, if_exists="return")
    _append(_Files.acks, f"start {spec.id}\n")


async def _steer(rt: Any, spec: Spec) -> None:
    """Send the plan's event or cancellation, unless the journal already holds it."""
    from flowcore.engine import events as ev

    if spec.shape not in ("event", "cancel"):
        return
    history = await rt.history(spec.id)
    wanted = ev.EventReceived if spec.shape == "event" else ev.CancelRequested
    if any(isinstance(e, wanted) for e in history) or (await rt.status(spec.id)).is_finished:
        return
    if spec.shape == "event":
        await rt.send_event(spec.id, "go", {"n": spec.payload["n"]})
        _append(_Files.acks, f"event {spec.id}\n")
    else:
        await rt.cancel(spec.id, "chaos")
        _append(_Files.acks, f"cancel {spec.id}\n")


async def run(
    db: str, plan: list[Spec], shapes: dict[str, Any], *, t0: float = 0.0, spread: float = 0.0
) -> None:
    """Start (or resume) every workflow of the plan, steer them, wait until all have ended.

    ``shapes`` are the workflows :func:`define` returned; :func:`open_files` must have run.
    Workflow ``i`` of ``n`` is started no sooner than ``t0 + spread * i / n`` (epoch seconds),
    so the load keeps coming across restarts; the default starts everything at once.
    """
    import flowcore

    dispatch = os.environ.get(DISPATCH_ENV, "durable")
    cache = int(os.environ.get(CACHE_ENV) or 10_000)  # a small one: idle workflows get evicted
    async with flowcore.Runtime(db, dispatch=dispatch, max_cached_workflows=cache) as rt:  # type: ignore[arg-type]
        for at in range(0, len(plan), START_CHUNK):
            wait = t0 + spread * at / len(plan) - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
            chunk = plan[at : at + START_CHUNK]
            await asyncio.gather(*(_start(rt, shapes, spec) for spec in chunk))
            await asyncio.gather(*(_steer(rt, spec) for spec in chunk))
        for spec in plan:
            with contextlib.suppress(flowcore.WorkflowFailedError, flowcore.WorkflowCanceledError):
                await rt.result(spec.id, timeout=120)


def main(argv: list[str]) -> int:
    """Entry point: ``DB LOG ACKS SEED COUNT [MAX_DELAY [T0 SPREAD]]``."""
    db, log, acks, seed, count, *rest = argv
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    plan = build_plan(int(seed), int(count), max_delay=float(rest[0]) if rest else 1.0)
    open_files(log, acks)
    t0, spread = (float(rest[1]), float(rest[2])) if len(rest) >= 3 else (0.0, 0.0)
    run_app(run(db, plan, define(), t0=t0, spread=spread))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
