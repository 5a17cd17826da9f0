"""A step's cost must not depend on how long the history already is (DESIGN invariant 4).

Both checks are deterministic (no timing): what the runtime holds in memory while step 400 runs
equals what it held while step 100 ran, and a step late in the history executes as many Python
lines as one early on. A runtime that kept per-step state after the step completed, or that walked
the history on every step, fails here.
"""

from __future__ import annotations

import collections
import sys
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest

from flowcore import Runtime, activity, workflow
from flowcore.journal.memory import InMemoryJournal
from flowcore.journal.sqlite import SqliteJournal

if TYPE_CHECKING:
    from pathlib import Path
    from types import FrameType

EARLY, LATE = 100, 400
WINDOW = 50
"""Steps counted after EARLY and after LATE."""

_CONTAINERS = (list, tuple, dict, set, frozenset, collections.deque)
_HISTORY_STORES = ("flowcore.journal.memory", "flowcore.journal.sqlite")
"""The journals hold the history by design; everything else must not grow with it."""


def footprint(root: object) -> Counter[str]:
    """Sizes of the containers reachable from ``root`` through flowcore objects, by path.

    The walk follows attributes of flowcore objects (slots or ``__dict__``) and the items of
    containers; it stops at anything else (tasks, coroutines, the event loop) and at the
    journals. Paths name types and attributes, not keys, so the same shape gives the same map.
    """
    sizes: Counter[str] = Counter()
    seen: set[int] = set()
    stack: list[tuple[object, str]] = [(root, type(root).__name__)]
    while stack:
        obj, path = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, _CONTAINERS):
            sizes[path] += len(obj)
            if isinstance(obj, dict):
                stack.extend((key, f"{path}{{key}}") for key in obj)
                stack.extend((value, f"{path}{{}}") for value in obj.values())
            else:
                stack.extend((item, f"{path}[]") for item in obj)
            continue
        module = type(obj).__module__
        if not module.startswith("flowcore") or module.startswith(_HISTORY_STORES):
            continue
        names = list(getattr(obj, "__dict__", ()))
        for cls in type(obj).__mro__:
            slots = getattr(cls, "__slots__", ())
            names.extend([slots] if isinstance(slots, str) else slots)
        stack.extend((getattr(obj, name), f"{path}.{name}") for name in names if hasattr(obj, name))
    return sizes


def _journal(kind: str, db_path: Path) -> Any:
    if kind == "memory":
        return InMemoryJournal()
    return SqliteJournal(db_path, durability="normal")


@pytest.mark.parametrize("dispatch", ["durable", "eager"])
async def test_a_completed_step_leaves_nothing_behind_in_memory(dispatch: str) -> None:
    shapes: dict[int, Counter[str]] = {}
    runtime: list[Runtime] = []

    @activity
    async def lincost_probe(i: int) -> int:
        if i in (EARLY, LATE):
            shapes[i] = footprint(runtime[0])
        return i

    @workflow
    async def lincost_probed(n: int) -> int:
        total = 0
        for i in range(n):
            total += await lincost_probe(i)
        return total

    async with Runtime(journal=InMemoryJournal(), dispatch=dispatch) as rt:
        runtime.append(rt)
        assert await (await rt.start(lincost_probed, LATE + 1)).result() == sum(range(LATE + 1))
    early, late = shapes[EARLY], shapes[LATE]
    assert early["Runtime._instances"] == 1  # the walk reached the running workflow
    reached = (".executor._leaves", ".projection.pending")  # the engine and the projection
    assert all(any(part in path for path in early) for part in reached), sorted(early)
    paths = set(early) | set(late)
    grown = {path: (early[path], late[path]) for path in paths if early[path] != late[path]}
    assert not grown, f"state that grows with the history (step {EARLY} vs {LATE}): {grown}"


@pytest.mark.parametrize(
    ("kind", "dispatch"), [("memory", "durable"), ("memory", "eager"), ("sqlite", "durable")]
)
async def test_a_late_step_runs_as_much_code_as_an_early_one(
    kind: str, dispatch: str, db_path: Path
) -> None:
    """Python trace events (calls and lines) per step, early vs late in one run."""
    count = [0]

    def trace(frame: FrameType, event: str, arg: object) -> Any:
        count[0] += 1
        return trace

    marks: dict[int, int] = {}
    edges = (EARLY, EARLY + WINDOW, LATE, LATE + WINDOW)

    @activity
    async def lincost_traced(i: int) -> int:
        if i == EARLY - 10:
            sys.settrace(trace)
        if i in edges:
            marks[i] = count[0]
        if i == edges[-1]:
            sys.settrace(None)
        return i

    @workflow
    async def lincost_traced_chain(n: int) -> int:
        total = 0
        for i in range(n):
            total += await lincost_traced(i)
        return total

    previous = sys.gettrace()
    try:
        async with Runtime(journal=_journal(kind, db_path), dispatch=dispatch) as rt:
            handle = await rt.start(lincost_traced_chain, edges[-1] + 1)
            await handle.result()
    finally:
        sys.settrace(previous)
    early = (marks[EARLY + WINDOW] - marks[EARLY]) / WINDOW
    late = (marks[LATE + WINDOW] - marks[LATE]) / WINDOW
    # An O(history) walk would add hundreds of events per step at step 400; 2% is bookkeeping
    # noise such as a dict resizing (exactly equal in practice for the in-memory journal).
    assert late <= early * 1.02, f"{late:.1f} trace events per step late vs {early:.1f} early"
