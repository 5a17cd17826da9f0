"""Worker process of the lazy-recovery campaign: idle workflows over a tiny cache bound.

Run as ``python -m tests.chaos.lazy_app DB LOG ACKS STATS SEED COUNT T0 HORIZON`` from the
repository root. It opens ``Runtime(DB, max_cached_workflows=BOUND)``, writes what it holds in
memory right after the open to ``STATS``, starts the plan's workflows (fixed ids,
``if_exists="return"``), sends the steering requests the plan gives to this process (``via ==
"proc"``) when their time (``T0`` + offset, epoch seconds) comes, unless the journal already holds
them, waits until every workflow has ended and exits 0. The harness
(:mod:`tests.chaos.lazy_campaign`) sends the other requests through the CLI's inbox, while this
process runs and while it is down.

Most workflows spend their life waiting on events and timers, so with a bound of 5 nearly all
of them are left evicted at each open: the campaign exercises ``waiting_only`` recovery.

Append-only files (one ``write`` per line, kept by a SIGKILL): ``LOG`` has ``start|end WID OP
ATTEMPT LABEL KEY`` per activity attempt; ``ACKS`` has ``WHAT WID ARG BEFORE AFTER`` once a
request returned (``BEFORE``/``AFTER``: epoch seconds around the call); ``STATS`` has ``open
AT LIVE BUSY TOTAL`` (instances in memory, those of them not idle, all unfinished ones).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from tests.chaos.chaos_app import _append, _Files, _log
from tests.helpers import run_app
from tests.runtime.crash_app import MODULUS, mix

BOUND = 5
"""The workers' ``max_cached_workflows``."""
SHAPES = ("wait", "wait_to", "sleep", "race", "parent", "loop", "retry", "cancel", "suspend",
          "terminate")  # fmt: skip
LOOP_ROUNDS = 3
"""Runs of a ``loop`` workflow (it continues as new between them, waiting for a tick each)."""
LATE = 1.0
"""Seconds of uncertainty around a deadline: an event acknowledged this close to its wait's
deadline may find the wait timed out or not (the ack's window is checked against it)."""


@dataclass(frozen=True, slots=True)
class Send:
    """One steering request of the plan."""

    what: str
    """``event``, ``cancel``, ``terminate``, ``suspend`` or ``resume``."""
    target: str
    """The instance it goes to."""
    at: float
    """Seconds after the campaign's T0 when it is sent."""
    via: str
    """``proc``: the worker sends it in-process; ``cli``: the harness, through the inbox."""
    name: str = ""
    payload: Any = None
    arg: str = "-"
    """What tells two requests of one kind to one instance apart in ``ACKS`` (a tick's round)."""


@dataclass(frozen=True, slots=True)
class Spec:
    """One workflow of the plan and the requests that steer it."""

    id: str
    shape: str
    payload: dict[str, Any]
    sends: tuple[Send, ...] = field(default=())


def build_plan(seed: int, count: int, *, horizon: float = 8.0) -> list[Spec]:  # noqa: C901
    """``count`` workflows, every shape in turn; requests spread over ``horizon`` seconds."""
    rng = random.Random(f"lazy/{seed}")  # noqa: S311 - seeded on purpose: reproducible runs
    specs = []
    for i in range(count):
        shape = SHAPES[i % len(SHAPES)]
        wid = f"z{seed}-{i}-{shape}"
        p: dict[str, Any] = {"start": rng.randrange(MODULUS)}
        sends: list[Send] = []

        def at() -> float:
            return round(rng.uniform(0.0, horizon), 3)

        def via() -> str:
            return rng.choice(("proc", "cli"))

        match shape:
            case "wait":
                n = rng.randrange(1000)
                sends.append(Send("event", wid, at(), via(), "go", {"n": n}))
            case "wait_to" | "race":
                p["timeout"] = round(rng.uniform(0.5, horizon), 3)
                if rng.random() < 0.7:
                    sends.append(Send("event", wid, at(), via(), "go", {"n": rng.randrange(1000)}))
            case "sleep":
                p["delay"] = round(rng.uniform(0.2, horizon), 3)
            case "parent":
                n = rng.randrange(1000)
                sends.append(Send("event", f"{wid}.c", at(), via(), "go", {"n": n}))
            case "loop":
                times = sorted(at() for _ in range(LOOP_ROUNDS))
                # All through the inbox, which applies them in order: a tick sent in process
                # by a worker that is then SIGKILLed is resent only after the restart, so two
                # channels could deliver the ticks out of order (no engine promises otherwise).
                for r, t in enumerate(times):
                    tick = {"r": r, "v": rng.randrange(1000)}
                    sends.append(Send("event", wid, t, "cli", "tick", tick, arg=str(r)))
            case "retry":
                p["failures"] = rng.randint(1, 3)
            case "cancel" | "terminate":
                sends.append(Send(shape, wid, at(), via()))
            case "suspend":  # all three through the inbox: applied in order
                t = at()
                n = rng.randrange(1000)
                sends.append(Send("suspend", wid, t, "cli"))
                sends.append(Send("event", wid, t + 0.3, "cli", "go", {"n": n}))
                sends.append(Send("resume", wid, t + 0.6, "cli"))
        specs.append(Spec(wid, shape, p, tuple(sends)))
    return specs


def event_value(spec: Spec) -> int | None:
    """The ``n`` of the spec's single ``go`` event, if it has one."""
    for send in spec.sends:
        if send.what == "event" and send.name == "go":
            return int(send.payload["n"])
    return None


# -- the worker -----------------------------------------------------------------------------------


_stats_fd = [-1]
"""The stats file's descriptor (the log and the acks are the chaos worker's ``_Files``)."""


def open_files(log: str, acks: str, stats: str) -> None:
    """Open (appending) the activity log, the acknowledgements and the stats file."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    _Files.log, _Files.acks = os.open(log, flags, 0o644), os.open(acks, flags, 0o644)
    _stats_fd[0] = os.open(stats, flags, 0o644)


def define() -> dict[str, Any]:  # noqa: C901 - one small definition per shape
    """Define and register the workflows and activities; return the workflows by shape."""
    import flowcore

    @flowcore.activity(name="lazy_step")
    async def step(x: int, label: str) -> int:
        _log("start", label)
        await asyncio.sleep(0.005)
        _log("end", label)
        return mix(x, label)

    slow = flowcore.RetryPolicy(max_attempts=6, initial_interval=0.3, backoff=2.0)

    @flowcore.activity(name="lazy_flaky", retry=slow)
    def flaky(x: int, label: str, failures: int) -> int:
        _log("start", label)
        if flowcore.activity_info().attempt <= failures:
            raise RuntimeError("planned failure")
        _log("end", label)
        return mix(x, label)

    @flowcore.workflow(name="lazy_wait")
    async def wait(p: dict[str, Any]) -> int:
        x = await step(p["start"], "w0")
        got = await flowcore.wait_event("go")
        return await step((x + got["n"]) % MODULUS, "w1")

    @flowcore.workflow(name="lazy_wait_to")
    async def wait_to(p: dict[str, Any]) -> int:
        got = await flowcore.wait_event("go", timeout=p["timeout"])
        if got is None:
            return await step(p["start"], "timeout")
        return await step((p["start"] + got["n"]) % MODULUS, "got")

    @flowcore.workflow(name="lazy_sleep")
    async def sleeper(p: dict[str, Any]) -> int:
        x = await step(p["start"], "s0")
        await flowcore.sleep(p["delay"])
        return await step(x, "s1")

    @flowcore.workflow(name="lazy_race")
    async def race(p: dict[str, Any]) -> int:
        won = await flowcore.first(flowcore.wait_event("go"), flowcore.sleep(p["timeout"]))
        if won.index == 1:
            return await step(p["start"], "timer")
        return await step((p["start"] + won.value["n"]) % MODULUS, "event")

    @flowcore.workflow(name="lazy_child")
    async def kid(p: dict[str, Any]) -> int:
        got = await flowcore.wait_event("go")
        return await step((p["start"] + got["n"]) % MODULUS, "k")

    @flowcore.workflow(name="lazy_parent")
    async def parent(p: dict[str, Any]) -> int:
        y = await flowcore.child(kid, {"start": p["start"]}, id=f"{flowcore.info().workflow_id}.c")
        return await step(y, "p")

    @flowcore.workflow(name="lazy_loop")
    async def loop(p: dict[str, Any]) -> int:
        r = p.get("r", 0)
        got = await flowcore.wait_event("tick")
        if got["r"] != r:  # a tick lost or applied twice
            return -1000 - r
        acc = await step((p.get("acc", p["start"]) + got["v"]) % MODULUS, f"l{r}")
        if r + 1 < LOOP_ROUNDS:
            flowcore.continue_as_new({"start": p["start"], "r": r + 1, "acc": acc})
        return acc

    @flowcore.workflow(name="lazy_retry")
    async def retry(p: dict[str, Any]) -> int:
        x = await flaky(p["start"], "r1", p["failures"])
        await flowcore.sleep(0.3)
        return await step(x, "r2")

    @flowcore.workflow(name="lazy_cancel")
    async def cancel(p: dict[str, Any]) -> int:
        try:
            await flowcore.wait_event("never", timeout=3600)
        except flowcore.WorkflowCanceledError:
            return await step(p["start"], "comp")
        return -1

    @flowcore.workflow(name="lazy_terminate")
    async def terminate(p: dict[str, Any]) -> int:
        await flowcore.wait_event("never")
        return -1

    return {
        "wait": wait, "wait_to": wait_to, "sleep": sleeper, "race": race, "parent": parent,
        "loop": loop, "retry": retry, "cancel": cancel, "suspend": wait,
        "terminate": terminate, "kid": kid,
    }  # fmt: skip


async def _already_sent(rt: Any, send: Send) -> bool:
    """Whether the journal holds ``send`` already (a crash may have cut its ack)."""
    from flowcore.engine import events as ev

    if (await rt.status(send.target)).is_finished:
        return True
    history = await rt.history(send.target)
    match send.what:
        case "event":
            first = history[0]
            if send.name == "tick" and first.input.get("r", 0) > send.payload["r"]:
                return True  # consumed by an earlier run (continue-as-new dropped it)
            return any(
                isinstance(e, ev.EventReceived) and (e.name, e.payload) == (send.name, send.payload)
                for e in history
            )
        case "cancel":
            return any(isinstance(e, ev.CancelRequested) for e in history)
        case _:
            return False  # terminate: finished (above)


async def _send(rt: Any, send: Send, t0: float) -> None:
    import flowcore

    wait = t0 + send.at - time.time()
    if wait > 0:
        await asyncio.sleep(wait)
    deadline = time.monotonic() + 60
    while True:  # the target may be a child its parent has not started yet
        try:
            await rt.status(send.target)
            break
        except flowcore.WorkflowNotFoundError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
    if await _already_sent(rt, send):
        return
    before, what = time.time(), send.what
    try:
        match send.what:
            case "event":
                await rt.send_event(send.target, send.name, send.payload)
            case "cancel":
                await rt.cancel(send.target, "lazy")
            case "terminate":
                await rt.terminate(send.target, "lazy")
    except flowcore.WorkflowFinishedError:
        what = "refused"
    _append(_Files.acks, f"{what} {send.target} {send.arg} {before:.6f} {time.time():.6f}\n")


def _stats(rt: Any) -> None:
    from flowcore._core import _idle_at

    now = rt._now()
    live = [i for i in rt._instances.values() if not i.evicted]
    busy = sum(1 for i in live if not _idle_at(i, now))
    total = len(rt._instances)
    _append(_stats_fd[0], f"open {time.time():.6f} {len(live)} {busy} {total}\n")


async def run(db: str, plan: list[Spec], shapes: dict[str, Any], *, t0: float) -> None:
    """Start (or resume) the plan, send its in-process requests, wait until all have ended."""
    import flowcore

    async with flowcore.Runtime(db, max_cached_workflows=BOUND) as rt:
        _stats(rt)
        for spec in plan:
            await rt.start(shapes[spec.shape], spec.payload, id=spec.id, if_exists="return")
            _append(_Files.acks, f"start {spec.id} - 0 0\n")
        sends = [s for spec in plan for s in spec.sends if s.via == "proc"]
        async with asyncio.TaskGroup() as tg:
            for send in sends:
                tg.create_task(_send(rt, send, t0))
        for spec in plan:
            with contextlib.suppress(flowcore.WorkflowError):
                await rt.result(spec.id, timeout=300)


def main(argv: list[str]) -> int:
    """Entry point: ``DB LOG ACKS STATS SEED COUNT T0 HORIZON``."""
    db, log, acks, stats, seed, count, t0, horizon = argv
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    plan = build_plan(int(seed), int(count), horizon=float(horizon))
    open_files(log, acks, stats)
    run_app(run(db, plan, define(), t0=float(t0)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
