"""``flowcore.gather(..., return_exceptions=True)``: every branch's outcome, failures included.

Without it the first failure raises out of the gather and a workflow that then ends cuts its
other branches short, so a saga cannot compensate the steps that succeeded after the failure.
With it the gather waits for every branch and returns a failed branch's exception in its
place, on the first run and on replay alike; the workflow's cancellation still raises.
"""

from __future__ import annotations

import anyio
import pytest

import flowcore
from flowcore import (
    ActivityError,
    RetryPolicy,
    Runtime,
    WorkflowCanceledError,
    WorkflowState,
    activity,
    workflow,
)
from flowcore.journal.memory import InMemoryJournal
from tests.helpers import assert_eventually

LIMIT = 10.0
"""Seconds a test waits at most for something that should happen at once."""

calls: list[str] = []
gate = anyio.Event()


@pytest.fixture(autouse=True)
def _reset() -> None:
    global gate  # noqa: PLW0603 - module state shared with the activities below
    calls.clear()
    gate = anyio.Event()


@activity(retry=RetryPolicy(max_attempts=1))
async def ge_book(item: str) -> str:
    calls.append(f"book {item}")
    if item.startswith("bad"):
        raise ValueError(f"no {item}")
    if item.startswith("slow"):
        await gate.wait()
    return f"booked {item}"


@activity
async def ge_release(item: str) -> None:
    calls.append(f"release {item}")


@workflow
async def ge_saga(items: list[str]) -> list[str]:
    outcomes = await flowcore.gather(*(ge_book(i) for i in items), return_exceptions=True)
    failed = [o for o in outcomes if isinstance(o, Exception)]
    if failed:
        for item, outcome in zip(items, outcomes, strict=True):
            if not isinstance(outcome, Exception):
                await ge_release(item)
    return [o if isinstance(o, str) else f"{type(o).__name__}: {o.failure.message}"
            for o in outcomes if isinstance(o, (str, ActivityError))]  # fmt: skip


async def _leg(item: str) -> str:
    booked = await ge_book(item)
    return f"{booked}, confirmed"


@workflow
async def ge_legs(items: list[str]) -> list[str]:
    outcomes = await flowcore.gather(*(_leg(i) for i in items), return_exceptions=True)
    return [o if isinstance(o, str) else type(o).__name__ for o in outcomes]


@workflow
async def ge_fail_fast(items: list[str]) -> str:
    try:
        await flowcore.gather(*(ge_book(i) for i in items))
    except ActivityError as exc:
        return f"raised {exc.failure.message}"
    return "not raised"


async def _calls_include(entry: str) -> None:
    await assert_eventually(lambda: entry in calls, message=f"{entry!r} never ran")


class TestReturnExceptions:
    async def test_waits_for_every_branch_and_compensates_those_that_succeeded(self):
        async with Runtime(journal=InMemoryJournal()) as rt:
            handle = await rt.start(ge_saga, ["a", "bad", "slow"], id="saga")
            await _calls_include("book slow")
            await _calls_include("book bad")
            gate.set()  # the slow branch succeeds after the failure
            result = await handle.result(timeout=LIMIT)
        assert result == ["booked a", "ActivityError: no bad", "booked slow"]
        assert sorted(c for c in calls if c.startswith("release")) == [
            "release a",
            "release slow",
        ]

    async def test_sub_coroutine_branches_return_their_exception(self):
        gate.set()
        async with Runtime(journal=InMemoryJournal()) as rt:
            handle = await rt.start(ge_legs, ["a", "bad", "b"], id="legs")
            assert await handle.result(timeout=LIMIT) == [
                "booked a, confirmed",
                "ActivityError",
                "booked b, confirmed",
            ]

    async def test_without_it_the_first_failure_raises(self):
        gate.set()
        async with Runtime(journal=InMemoryJournal()) as rt:
            handle = await rt.start(ge_fail_fast, ["a", "bad", "b"], id="ff")
            assert await handle.result(timeout=LIMIT) == "raised no bad"

    async def test_replay_gives_the_same_outcomes(self, db_path):
        """Closed while a branch is running after another failed; reopened, it carries on."""
        async with Runtime(db_path) as rt:
            await rt.start(ge_saga, ["bad", "slow", "a"], id="replayed")
            await _calls_include("book slow")
            await _calls_include("book bad")
        gate.set()
        async with Runtime(db_path) as rt:
            result = await rt.handle("replayed").result(timeout=LIMIT)
        assert result == ["ActivityError: no bad", "booked slow", "booked a"]
        assert calls.count("book bad") == 1  # a recorded failure is not run again
        assert calls.count("release a") == 1

    async def test_the_workflows_cancellation_still_raises(self):
        async with Runtime(journal=InMemoryJournal()) as rt:
            handle = await rt.start(ge_saga, ["bad", "slow"], id="canceled")
            await _calls_include("book slow")
            await rt.cancel("canceled", "stop")
            with pytest.raises(WorkflowCanceledError):
                await handle.result(timeout=LIMIT)
            assert (await rt.status("canceled")).status is WorkflowState.CANCELED
        assert not any(c.startswith("release") for c in calls)

    async def test_outside_a_workflow_it_is_asyncios(self):
        gate.set()
        outcomes = await flowcore.gather(ge_book("a"), ge_book("bad"), return_exceptions=True)
        assert outcomes[0] == "booked a"
        assert isinstance(outcomes[1], ValueError)


@workflow
async def ge_idle_child() -> None:
    await flowcore.wait_event("never")


@workflow
async def ge_parent_of_canceled(n: int) -> list[str]:
    wid = flowcore.info().workflow_id
    outcomes = await flowcore.gather(
        flowcore.child(ge_idle_child, None, id=f"{wid}-kid"), ge_book("ok"), return_exceptions=True
    )
    return [type(o).__name__ if isinstance(o, BaseException) else str(o) for o in outcomes]


class TestChildCanceled:
    async def test_a_childs_cancellation_is_collected_not_raised(self):
        """A child canceled by someone else is a failed branch, not the parent's cancellation."""
        async with Runtime(journal=InMemoryJournal()) as rt:
            handle = await rt.start(ge_parent_of_canceled, 1, id="gp")

            async def child_exists() -> bool:
                return any(s.id == "gp-kid" for s in await rt.list())

            await assert_eventually(child_exists, timeout=LIMIT)
            await rt.cancel("gp-kid", "not needed")
            with anyio.fail_after(LIMIT):
                assert await handle.result() == ["WorkflowCanceledError", "booked ok"]
            assert (await rt.status("gp")).status is WorkflowState.COMPLETED
