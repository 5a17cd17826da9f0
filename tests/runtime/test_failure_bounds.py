"""Whatever an activity or a workflow raises, its journaled description is bounded.

A failure is journaled as its :class:`~flowcore.FailureInfo`: a huge message, or a cause chain
thousands of links deep, must neither bloat the journal nor stop the runtime (describing such a
chain recursively used to raise RecursionError, which fail-stopped every workflow). A cancel or
terminate reason is held to the payload limit like any value sent to the journal.
"""

from __future__ import annotations

import pytest

import flowcore
from flowcore import (
    ActivityError,
    FailureInfo,
    PayloadError,
    Runtime,
    WorkflowFailedError,
    WorkflowState,
    activity,
    workflow,
)
from flowcore.engine.events import ActivityFailed, CancelRequested, WorkflowTerminated
from flowcore.errors import MAX_FAILURE_CAUSES, MAX_FAILURE_MESSAGE, MAX_FAILURE_TRACEBACK
from flowcore.journal.memory import InMemoryJournal
from flowcore.retry import RetryPolicy
from tests.helpers import events_of

LIMIT = 10.0
"""Seconds a test waits at most for something that should happen at once."""
DEEP = 3000
"""Links of a cause chain deeper than the interpreter's recursion limit."""


def deep_chain(links: int) -> RuntimeError:
    """An exception raised from one raised from ... ``links`` deep; the root is ``level 0``."""
    exc: RuntimeError | None = None
    for level in range(links):
        exc, exc.__cause__ = RuntimeError(f"level {level}"), exc
    assert exc is not None
    return exc


def chain_of(info: FailureInfo) -> list[FailureInfo]:
    out: list[FailureInfo] = []
    current: FailureInfo | None = info
    while current is not None:
        out.append(current)
        current = current.cause
    return out


@activity(retry=RetryPolicy(max_attempts=1))
async def fb_raise_long(size: int) -> int:
    raise ValueError("<" + "x" * size + ">")


@activity(retry=RetryPolicy(max_attempts=1))
async def fb_raise_deep(links: int) -> int:
    raise deep_chain(links)


@activity
async def fb_ok(x: int) -> int:
    return x


@workflow
async def fb_catches(kind: str) -> str:
    try:
        await (fb_raise_long(1_000_000) if kind == "long" else fb_raise_deep(DEEP))
    except ActivityError as exc:
        return f"caught {exc.failure.short_type}, then {await fb_ok(7)}"
    return "not raised"


@workflow
async def fb_raises_deep(links: int) -> int:
    raise deep_chain(links)


class TestDescription:
    def test_a_long_message_keeps_its_head_and_tail(self):
        info = FailureInfo.from_exception(ValueError("<" + "x" * 100_000 + ">"))
        assert len(info.message) < MAX_FAILURE_MESSAGE + 100
        assert info.message.startswith("<xxx")
        assert info.message.endswith("xxx>")
        assert "characters left out" in info.message
        assert len(info.traceback) <= MAX_FAILURE_TRACEBACK + 5

    def test_a_short_chain_is_described_whole(self):
        info = FailureInfo.from_exception(deep_chain(3))
        assert [f.message for f in chain_of(info)] == ["level 2", "level 1", "level 0"]
        assert "The above exception was the direct cause" in info.traceback

    def test_a_deep_chain_keeps_the_outermost_causes_and_the_root(self):
        info = FailureInfo.from_exception(deep_chain(DEEP))
        links = chain_of(info)
        assert len(links) == MAX_FAILURE_CAUSES + 1
        assert links[0].message == f"level {DEEP - 1}"
        assert links[-1].message == "level 0"  # the root cause is kept
        left_out = DEEP - 1 - MAX_FAILURE_CAUSES
        assert links[-2].message == (
            f"level {DEEP - MAX_FAILURE_CAUSES} [{left_out:,} more causes left out here]"
        )
        FailureInfo.from_json(info.to_json())  # and it round-trips

    def test_a_cycle_still_ends_where_it_closes(self):
        a, b = ValueError("a"), KeyError("b")
        a.__cause__, b.__cause__ = b, a
        info = FailureInfo.from_exception(a)
        assert [f.short_type for f in chain_of(info)] == ["ValueError", "KeyError"]


class TestInTheRuntime:
    @pytest.mark.parametrize("kind", ["long", "deep"])
    async def test_the_workflow_catches_it_and_the_runtime_goes_on(self, kind: str):
        async with Runtime(journal=InMemoryJournal()) as rt:
            handle = await rt.start(fb_catches, kind, id=kind)
            assert (
                await handle.result(timeout=LIMIT)
                == f"caught {'ValueError' if kind == 'long' else 'RuntimeError'}, then 7"
            )
            [failed] = await events_of(rt, kind, ActivityFailed)
            other = await rt.start(fb_catches, "long", id="after")
            assert (await other.result(timeout=LIMIT)).endswith("then 7")
        assert len(failed.failure.message) < MAX_FAILURE_MESSAGE + 100
        assert len(chain_of(failed.failure)) <= MAX_FAILURE_CAUSES + 1

    async def test_a_workflow_raising_a_deep_chain_fails_alone(self):
        async with Runtime(journal=InMemoryJournal()) as rt:
            handle = await rt.start(fb_raises_deep, DEEP, id="deep")
            with pytest.raises(WorkflowFailedError) as info:
                await handle.result(timeout=LIMIT)
            assert (await rt.status("deep")).status is WorkflowState.FAILED
            assert await (await rt.start(fb_catches, "long")).result(timeout=LIMIT)
        assert chain_of(info.value.failure)[-1].message == "level 0"


@workflow
async def fb_waits() -> None:
    await flowcore.wait_event("never")


class TestReasons:
    @pytest.mark.parametrize("action", ["cancel", "terminate"])
    async def test_a_reason_over_the_payload_limit_is_refused(self, action: str):
        async with Runtime(journal=InMemoryJournal(), max_payload_bytes=1024) as rt:
            await rt.start(fb_waits, id="w")
            with pytest.raises(PayloadError, match="the reason is 2,002 bytes"):
                await getattr(rt, action)("w", "r" * 2000)
            assert await events_of(rt, "w", CancelRequested) == []
            assert (await rt.status("w")).status is WorkflowState.RUNNING
            await getattr(rt, action)("w", "r" * 100)  # one within the limit is taken
            if action == "terminate":
                [ended] = await events_of(rt, "w", WorkflowTerminated)
                assert ended.reason == "r" * 100
            else:
                [asked] = await events_of(rt, "w", CancelRequested)
                assert asked.reason == "r" * 100
