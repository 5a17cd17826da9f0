"""Worker process for kill-at-every-commit on bigger scenarios (``test_kill_every_commit_big``).

Run as ``python -m tests.chaos.big_app DB LOG ACKS DISPATCH [serial]`` from the repository root.
Six workflows on one journal: a fan-out whose calls retry, ``first()`` against timers and an
activity timeout, a parent gathering three children, a run that continues as new twice, a
fan-out canceled while it runs (with a compensation) and an event sent while its workflow's
start is still committing. Activities log their attempts as :mod:`tests.chaos.chaos_app` does
(same ``LOG`` and ``ACKS`` formats), so :class:`tests.chaos.campaign.Campaign` checks them;
:func:`expected` is what a crash-free run gives. ``serial`` runs the workflows one after
another (more, smaller commits) instead of all at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Any

from tests.chaos.chaos_app import _append, _Files, _log, open_files
from tests.helpers import run_app
from tests.runtime.crash_app import MODULUS, mix


def define() -> dict[str, Any]:  # noqa: C901 - one small definition per shape
    """Define and register the workflows and activities; return the workflows by shape."""
    import flowcore

    @flowcore.activity(name="bk_step")
    async def step(x: int, label: str) -> int:
        _log("start", label)
        _log("end", label)
        return mix(x, label)

    @flowcore.activity(name="bk_sstep")
    def sstep(x: int, label: str) -> int:
        _log("start", label)
        _log("end", label)
        return mix(x, label)

    fast = flowcore.RetryPolicy(max_attempts=4, initial_interval=0.005, backoff=1.0)

    @flowcore.activity(name="bk_flaky", retry=fast)
    async def flaky(x: int, label: str, failures: int) -> int:
        _log("start", label)
        if flowcore.activity_info().attempt <= failures:
            raise RuntimeError("planned")
        _log("end", label)
        return mix(x, label)

    @flowcore.activity(name="bk_slow")
    async def slow(x: int, label: str) -> int:
        _log("start", label)
        await asyncio.sleep(0.6)
        _log("end", label)
        return mix(x, label)

    hang_policy = flowcore.RetryPolicy(max_attempts=2, initial_interval=0.01)

    @flowcore.activity(name="bk_hang", timeout=0.05, retry=hang_policy)
    async def hang(label: str) -> int:
        _log("start", label)
        await asyncio.sleep(30)
        return 0

    @flowcore.workflow(name="bk_fanretry")
    async def fanretry(p: dict[str, Any]) -> int:
        calls = [
            flaky(p["start"] + i, f"f{i}", i % 3) if i % 2 == 0 else sstep(p["start"] + i, f"f{i}")
            for i in range(6)
        ]
        parts = await flowcore.gather(*calls)
        return await step(sum(parts) % MODULUS, "fin")

    @flowcore.workflow(name="bk_first")
    async def first(p: dict[str, Any]) -> list[Any]:
        a = await flowcore.first(flowcore.wait_event("never"), flowcore.sleep(0.02))
        b = await flowcore.first(step(p["start"], "q"), flowcore.sleep(300))
        try:
            await hang("h")
            c = "no"
        except flowcore.ActivityTimeoutError:
            c = "timeout"
        d = await flowcore.first(flowcore.wait_event("go"), flowcore.sleep(300))
        return [a.index, b.index, b.value, c, d.index, d.value]

    @flowcore.workflow(name="bk_kid")
    async def kid(p: dict[str, Any]) -> int:
        x = await step(p["start"], "k0")
        return await sstep(x, "k1")

    @flowcore.workflow(name="bk_parent")
    async def parent(p: dict[str, Any]) -> int:
        kids = [flowcore.child(kid, {"start": p["start"] + i}) for i in range(3)]
        got = await flowcore.gather(*kids)
        return await step(sum(got) % MODULUS, "p")

    @flowcore.workflow(name="bk_can")
    async def can(p: dict[str, Any]) -> int:
        x = await step(p["start"], f"r{p['n']}")
        y = await flowcore.gather(sstep(x, "a"), step(x, "b"))
        if p["n"] < 3:
            flowcore.continue_as_new({"start": sum(y) % MODULUS, "n": p["n"] + 1})
        return sum(y) % MODULUS

    @flowcore.workflow(name="bk_cancelfan")
    async def cancelfan(p: dict[str, Any]) -> int:
        try:
            await flowcore.gather(*(slow(p["start"] + i, f"s{i}") for i in range(5)))
        except flowcore.WorkflowCanceledError:
            return await step(p["start"], "comp")
        return -1

    @flowcore.workflow(name="bk_race")
    async def race(p: dict[str, Any]) -> int:
        got = await flowcore.wait_event("go")
        return await step((p["start"] + got["n"]) % MODULUS, "e")

    return {
        "fanretry": fanretry,
        "first": first,
        "parent": parent,
        "can": can,
        "cancelfan": cancelfan,
        "race": race,
    }


PLAN = [  # (shape, start value); workflow ids are bk-<shape>
    ("fanretry", 11),
    ("first", 12),
    ("parent", 13),
    ("can", 14),
    ("cancelfan", 15),
    ("race", 16),
]


def expected() -> dict[str, tuple[str, Any]]:
    """``(status, output)`` of each workflow in a crash-free run."""
    out: dict[str, tuple[str, Any]] = {}
    x = 11
    parts = [mix(x + i, f"f{i}") for i in range(6)]
    out["bk-fanretry"] = ("completed", mix(sum(parts) % MODULUS, "fin"))
    out["bk-first"] = ("completed", [1, 0, mix(12, "q"), "timeout", 0, {"n": 5}])
    got = [mix(mix(13 + i, "k0"), "k1") for i in range(3)]
    out["bk-parent"] = ("completed", mix(sum(got) % MODULUS, "p"))
    x, n = 14, 1
    while True:
        x1 = mix(x, f"r{n}")
        s = (mix(x1, "a") + mix(x1, "b")) % MODULUS
        if n < 3:
            x, n = s, n + 1
            continue
        break
    out["bk-can"] = ("completed", s)
    out["bk-cancelfan"] = ("canceled", mix(15, "comp"))
    out["bk-race"] = ("completed", mix((16 + 7) % MODULUS, "e"))
    return out


async def run(db: str, dispatch: str, *, serial: bool = False) -> None:  # noqa: C901
    """Start (or resume) the plan, steer it, wait until every workflow has ended."""
    import flowcore
    from flowcore.engine import events as ev

    shapes = define()
    async with flowcore.Runtime(db, dispatch=dispatch) as rt:  # type: ignore[arg-type]

        async def start(shape: str, x: int) -> None:
            wid = f"bk-{shape}"
            payload: dict[str, Any] = {"start": x}
            if shape == "can":
                payload["n"] = 1
            await rt.start(shapes[shape], payload, id=wid, if_exists="return")
            _append(_Files.acks, f"start {wid}\n")

        async def steer(wid: str, name: str, payload: Any) -> None:
            history = await rt.history(wid)
            if any(isinstance(e, ev.EventReceived) and e.name == name for e in history):
                return
            if (await rt.status(wid)).is_finished:
                return
            await rt.send_event(wid, name, payload)
            _append(_Files.acks, f"event {wid}\n")

        async def cancel(wid: str) -> None:
            history = await rt.history(wid)
            if any(isinstance(e, ev.CancelRequested) for e in history):
                return
            if (await rt.status(wid)).is_finished:
                return
            await rt.cancel(wid, "chaos")
            _append(_Files.acks, f"cancel {wid}\n")

        if serial:
            for s, x in PLAN:
                await start(s, x)
                if s == "race":
                    await steer("bk-race", "go", {"n": 7})
                if s == "cancelfan":
                    await cancel("bk-cancelfan")
                if s == "first":
                    await steer("bk-first", "go", {"n": 5})
                with contextlib.suppress(flowcore.WorkflowCanceledError):
                    await rt.result(f"bk-{s}", timeout=60)
            return
        # The event races the start: one loop turn lets start() register the instance, so the
        # event is sent while the start's commit is in flight (it waits for that commit).
        starting = asyncio.ensure_future(start("race", 16))
        await asyncio.sleep(0)
        with contextlib.suppress(flowcore.WorkflowFinishedError):  # a restart, after the end
            await rt.send_event("bk-race", "go", {"n": 7})
            _append(_Files.acks, "event bk-race\n")
        await starting
        await asyncio.gather(*(start(s, x) for s, x in PLAN if s != "race"))
        await cancel("bk-cancelfan")
        await steer("bk-first", "go", {"n": 5})
        for s, _ in PLAN:
            with contextlib.suppress(flowcore.WorkflowCanceledError, flowcore.WorkflowFailedError):
                await rt.result(f"bk-{s}", timeout=60)


def main(argv: list[str]) -> int:
    """Entry point: ``DB LOG ACKS DISPATCH [serial]``."""
    db, log, acks, dispatch, *rest = argv
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    open_files(log, acks)
    run_app(run(db, dispatch, serial=rest == ["serial"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
