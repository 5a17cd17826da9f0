"""Worker process for the crash tests: runs a fixed, seeded set of workflows on one journal.

Run as ``python -m tests.runtime.crash_app DB LOG SCENARIO SEED MODE [DISPATCH]`` from the
repository root. It opens a Runtime on ``DB`` (with ``dispatch=DISPATCH`` unless that is
``default`` or absent), starts the workflows of :func:`build_plan` with fixed ids
(``if_exists="return"``, so a second run resumes them), waits for every result, prints one line
``RESULT <json>`` (workflow id -> result) and exits 0.

Every activity attempt appends lines to ``LOG`` (each one written, flushed and fsynced, so a
SIGKILL keeps what was written): ``start WID OP ATTEMPT LABEL KEY`` when it begins, ``fail ...``
before a planned first-attempt failure, ``hold ...`` when it blocks on a planned kill point and
``end ...`` just before it returns. ``OP`` is ``activity_info().op`` (the call's place in the
program) and ``KEY`` its ``idempotency_key``; the step number is not logged, since a call
dispatched before its schedule was durable may get another step after a crash. A planned
``die`` line (written but not fsynced, which a SIGKILL keeps) is followed by the worker's own
SIGKILL: see :attr:`Plan.dies`.

``MODE`` is ``first`` (block on the plan's holds, so the test can SIGKILL the process at a known
point) or ``resume`` (no holds: run everything to the end).

The plan is a pure function of ``(scenario, seed)``; the test imports it to know where to kill
and what every workflow must return. Workflows and activities are defined only when the worker
runs (:func:`define`), so importing this module registers nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

MODULUS = 1_000_003
CHAIN_LEN = 5
FAN_SYNC = 8
FAN_ASYNC = 8
FAN_PAIRS = 4
HOLD_LIMIT = 60.0
"""Seconds a held activity waits for its SIGKILL before the worker gives up (exit 3)."""
RESULT_TIMEOUT = 60.0
SCENARIOS = ("during", "between", "fanout", "unsynced", "mixed")


# -- the plan: pure, shared with the test --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Workflow:
    """One workflow instance to start."""

    id: str
    shape: str
    """``chain`` (5 sequential steps) or ``fanout`` (gather of 20 branches, then a final step)."""
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Wait:
    """A condition the test waits for (in order) before it sends SIGKILL."""

    kind: str
    """``hold``: the activity labelled ``label`` logged ``hold``; ``committed``: the journal has
    ``activity_completed`` for the call labelled ``label`` (matched to its schedule by step);
    ``ends``: at least ``count`` ``end`` lines; ``dies``: the worker killed itself when the call
    labelled ``label`` started (the test sends no signal)."""
    workflow_id: str
    label: str = ""
    count: int = 0


@dataclass(frozen=True, slots=True)
class Plan:
    """What the worker runs and where the test kills it."""

    workflows: list[Workflow]
    holds: list[tuple[str, str]] = field(default_factory=list)
    """(workflow id, activity label) pairs that block in the first run until the SIGKILL."""
    waits: list[Wait] = field(default_factory=list)
    dies: list[tuple[str, str]] = field(default_factory=list)
    """(workflow id, activity label) whose first start in the first run logs ``die`` and SIGKILLs
    the worker at once: the call was dispatched in the same step as its schedule was submitted to
    the journal, so the kill lands before that schedule is durable (the window that lets a call
    be given another step number after the crash)."""


def mix(x: int, label: str) -> int:
    """What every activity computes: a deterministic function of its input and label."""
    return (x * 31 + zlib.crc32(label.encode())) % MODULUS


def chain_labels() -> list[str]:
    """Labels of a chain's steps, in order (step i has label ``c<i>``)."""
    return [f"c{i}" for i in range(1, CHAIN_LEN + 1)]


def fanout_labels(branches: list[str]) -> list[str]:
    """Every activity label of a fan-out workflow with these branches."""
    labels: list[str] = []
    for branch in branches:
        labels.extend([f"{branch}.1", f"{branch}.2"] if branch.startswith("p") else [branch])
    return [*labels, "fin"]


def expected_ops(wf: Workflow) -> dict[str, str]:
    """Label -> ``op`` of every activity call of ``wf``: its place in the program.

    A chain's i-th call is the main task's i-th command (``"i"``). A fan-out's gather is the main
    task's 1st command, so branch i (from 1) is ``1.i`` and its calls ``1.i.1`` (and ``1.i.2``
    for the second call of a pair); ``fin`` is the main task's 2nd command (``"2"``).
    """
    if wf.shape == "chain":
        return {label: str(i) for i, label in enumerate(chain_labels(), 1)}
    ops = {"fin": "2"}
    for i, branch in enumerate(wf.payload["branches"], 1):
        if branch.startswith("p"):
            ops.update({f"{branch}.1": f"1.{i}.1", f"{branch}.2": f"1.{i}.2"})
        else:
            ops[branch] = f"1.{i}.1"
    return ops


def expected_result(wf: Workflow) -> Any:
    """The result a crash-free run of ``wf`` returns (the reference implementation)."""
    payload = wf.payload
    if wf.shape == "chain":
        x = payload["start"]
        for label in chain_labels():
            x = mix(x, label)
        return x
    parts = []
    for i, branch in enumerate(payload["branches"]):
        x = payload["start"] + i
        if branch.startswith("p"):
            parts.append(mix(mix(x, f"{branch}.1"), f"{branch}.2"))
        else:
            parts.append(mix(x, branch))
    return {"parts": parts, "total": mix(sum(parts) % MODULUS, "fin")}


def _chain(rng: random.Random, wid: str) -> Workflow:
    fail = sorted(label for label in chain_labels() if rng.random() < 0.3)
    return Workflow(wid, "chain", {"start": rng.randrange(MODULUS), "fail": fail})


def _fanout(rng: random.Random, wid: str) -> Workflow:
    branches = [
        *(f"s{i}" for i in range(FAN_SYNC)),
        *(f"a{i}" for i in range(FAN_ASYNC)),
        *(f"p{i}" for i in range(FAN_PAIRS)),
    ]
    rng.shuffle(branches)
    fail = sorted(label for label in fanout_labels(branches) if rng.random() < 0.15)
    payload = {"start": rng.randrange(MODULUS), "branches": branches, "fail": fail}
    return Workflow(wid, "fanout", payload)


def _during(rng: random.Random, wid: str) -> tuple[Workflow, list[tuple[str, str]], list[Wait]]:
    """A chain killed while step k runs (after its ``start``, before its ``end``)."""
    wf = _chain(rng, wid)
    label = f"c{rng.randint(1, CHAIN_LEN)}"
    return wf, [(wid, label)], [Wait("hold", wid, label=label)]


def _between(rng: random.Random, wid: str) -> tuple[Workflow, list[tuple[str, str]], list[Wait]]:
    """A chain killed once step k's completion is committed, before step k + 1 ends."""
    wf = _chain(rng, wid)
    k = rng.randint(1, CHAIN_LEN - 1)
    waits = [Wait("committed", wid, label=f"c{k}")]
    if rng.random() < 0.5:  # sometimes also let step k + 1 begin before the kill
        waits.append(Wait("hold", wid, label=f"c{k + 1}"))
    return wf, [(wid, f"c{k + 1}")], waits


def _mid_fanout(rng: random.Random, wid: str) -> tuple[Workflow, list[tuple[str, str]], list[Wait]]:
    """A fan-out killed when about half its activities logged ``end``; some are held in flight."""
    wf = _fanout(rng, wid)
    labels = fanout_labels(wf.payload["branches"])[:-1]  # "fin" cannot run before the gather
    held = set(rng.sample(labels, rng.randint(3, len(labels) // 2)))
    blocked = {f"{lb[:-2]}.2" for lb in held if lb.endswith(".1")}
    can_end = len([lb for lb in labels if lb not in held and lb not in blocked])
    count = rng.randint(max(1, round(0.4 * can_end)), can_end)
    return wf, [(wid, lb) for lb in sorted(held)], [Wait("ends", wid, count=count)]


def _unsynced(rng: random.Random, wid: str) -> Plan:
    """A fan-out killed by the worker itself the moment a pair's second call starts.

    The other pairs' first calls are held, so that pair's second call is the first one scheduled
    after the gather's 20 calls; after the crash the pairs finish in another order (the delays
    depend on the run), so a step-keyed call would change key or share one with another call.
    """
    wf = _fanout(rng, wid)
    pairs = [b for b in wf.payload["branches"] if b.startswith("p")]
    dying = rng.choice(pairs)
    holds = [(wid, f"{b}.1") for b in pairs if b != dying]
    return Plan([wf], holds, [Wait("dies", wid, label=f"{dying}.2")], [(wid, f"{dying}.2")])


def build_plan(scenario: str, seed: int) -> Plan:
    """The workflows, holds and kill conditions of ``scenario`` for ``seed``."""
    rng = random.Random(f"{scenario}/{seed}")  # noqa: S311 - seeded on purpose: reproducible kills
    makers = {"during": _during, "between": _between, "fanout": _mid_fanout}
    if scenario in makers:
        wf, holds, waits = makers[scenario](rng, f"{scenario}-{seed}")
        return Plan([wf], holds, waits)
    if scenario == "unsynced":
        return _unsynced(rng, f"{scenario}-{seed}")
    if scenario != "mixed":
        raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    plan = Plan([])
    for i, name in enumerate(["during", "between", "fanout", "during", "between"]):
        wf, holds, waits = makers[name](rng, f"mixed-{name}-{i}")
        plan.workflows.append(wf)
        plan.holds.extend(holds)
        plan.waits.extend(waits)
    # Two unheld workflows: they may finish before the kill or be cut anywhere.
    plan.workflows.extend([_chain(rng, "mixed-free-chain"), _fanout(rng, "mixed-free-fanout")])
    return plan


# -- the worker -----------------------------------------------------------------------------------


class _Worker:
    log_path = ""
    mode = ""
    holds: frozenset[tuple[str, str]] = frozenset()
    dies: frozenset[tuple[str, str]] = frozenset()


def _log(kind: str, label: str, *, sync: bool = True) -> None:
    import flowcore

    info = flowcore.activity_info()
    line = f"{kind} {info.workflow_id} {info.op} {info.attempt} {label} {info.idempotency_key}\n"
    with open(_Worker.log_path, "a", encoding="utf-8") as file:  # noqa: PTH123 - plain append
        file.write(line)
        file.flush()
        if sync:
            os.fsync(file.fileno())


def _delay(label: str) -> float:
    """A few ms, different in each run, so a resumed run sees outcomes in another order."""
    import flowcore

    info = flowcore.activity_info()
    return (zlib.crc32(f"{_Worker.mode}/{info.idempotency_key}/{label}".encode()) % 20) / 1000


def _begin(label: str, fail_first: bool) -> bool:
    """Log the start, fail a planned first attempt; return True when this attempt must hold."""
    import flowcore

    info = flowcore.activity_info()
    if (info.workflow_id, label) in _Worker.dies:
        # No fsync (a SIGKILL keeps written data): die before the journal catches up.
        _log("start", label, sync=False)
        _log("die", label, sync=False)
        os.kill(os.getpid(), signal.SIGKILL)
    _log("start", label)
    if fail_first and info.attempt == 1:
        _log("fail", label)
        raise RuntimeError(f"planned failure of {info.idempotency_key}")
    if (info.workflow_id, label) in _Worker.holds:
        _log("hold", label)
        return True
    return False


def _give_up() -> None:
    sys.stderr.write("crash_app: a held activity was not killed in time\n")
    sys.stderr.flush()
    os._exit(3)


def _activities() -> tuple[Any, Any]:
    """Define and register the two activities: a sync one (a thread) and an async one."""
    import flowcore

    retry = flowcore.RetryPolicy(max_attempts=4, initial_interval=0.0, backoff=1.0)

    @flowcore.activity(name="crash_step_sync", retry=retry)
    def step_sync(x: int, label: str, fail_first: bool) -> int:
        if _begin(label, fail_first):
            time.sleep(HOLD_LIMIT)
            _give_up()
        time.sleep(_delay(label))
        _log("end", label)
        return mix(x, label)

    @flowcore.activity(name="crash_step_async", retry=retry)
    async def step_async(x: int, label: str, fail_first: bool) -> int:
        if _begin(label, fail_first):
            await asyncio.sleep(HOLD_LIMIT)
            _give_up()
        await asyncio.sleep(_delay(label))
        _log("end", label)
        return mix(x, label)

    return step_sync, step_async


def define() -> dict[str, Any]:
    """Define and register the workflows and activities; return the workflows by shape."""
    import flowcore

    step_sync, step_async = _activities()

    @flowcore.workflow(name="crash_chain")
    async def chain(payload: dict[str, Any]) -> int:
        x: int = payload["start"]
        fail = set(payload["fail"])
        for i, label in enumerate(chain_labels(), 1):
            step = step_sync if i % 2 else step_async
            x = await step(x, label, label in fail)
        return x

    @flowcore.workflow(name="crash_fanout")
    async def fanout(payload: dict[str, Any]) -> dict[str, Any]:
        fail = set(payload["fail"])

        async def pair(x: int, branch: str) -> int:
            first, second = f"{branch}.1", f"{branch}.2"
            y = await step_sync(x, first, first in fail)
            return await step_async(y, second, second in fail)

        branches = []
        for i, branch in enumerate(payload["branches"]):
            x = payload["start"] + i
            if branch.startswith("p"):
                branches.append(pair(x, branch))
            elif branch.startswith("s"):
                branches.append(step_sync(x, branch, branch in fail))
            else:
                branches.append(step_async(x, branch, branch in fail))
        parts = await flowcore.gather(*branches)
        total = await step_async(sum(parts) % MODULUS, "fin", "fin" in fail)
        return {"parts": parts, "total": total}

    return {"chain": chain, "fanout": fanout}


async def run(db: str, plan: Plan, dispatch: str = "default") -> dict[str, Any]:
    """Start (or resume) every workflow of the plan and wait for all results."""
    from flowcore import Runtime

    shapes = define()
    options: dict[str, Any] = {} if dispatch == "default" else {"dispatch": dispatch}
    async with Runtime(db, **options) as rt:
        handles = [
            await rt.start(shapes[wf.shape], wf.payload, id=wf.id, if_exists="return")
            for wf in plan.workflows
        ]
        results = await asyncio.gather(*(h.result(timeout=RESULT_TIMEOUT) for h in handles))
    return {wf.id: result for wf, result in zip(plan.workflows, results, strict=True)}


def main(argv: list[str]) -> int:
    """Entry point: ``DB LOG SCENARIO SEED MODE [DISPATCH]``."""
    db, log, scenario, seed, mode, *rest = argv
    (dispatch,) = rest or ["default"]
    if mode not in ("first", "resume"):
        raise SystemExit(f"MODE must be 'first' or 'resume', not {mode!r}")
    plan = build_plan(scenario, int(seed))
    _Worker.log_path = log
    _Worker.mode = mode
    _Worker.holds = frozenset(plan.holds) if mode == "first" else frozenset()
    _Worker.dies = frozenset(plan.dies) if mode == "first" else frozenset()
    results = asyncio.run(run(db, plan, dispatch))
    sys.stdout.write("RESULT " + json.dumps(results, sort_keys=True) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
