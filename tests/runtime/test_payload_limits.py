"""``Runtime(max_payload_bytes=...)`` holds every value the workflow code sends to the journal.

Activity arguments, a custom status, a child's input and the next run's input (continue-as-new)
over the limit raise PayloadError at the call, before anything is journaled, so the workflow can
catch it; a result over the limit fails the workflow instead of committing it. A command the
journal already recorded is never refused on replay, whatever the limit of the runtime that
recovers it.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import flowcore
from flowcore import PayloadError, Runtime, WorkflowFailedError, WorkflowState, activity, workflow
from flowcore._limits import check_payload_size
from flowcore.engine.events import (
    ActivityScheduled,
    ChildScheduled,
    CustomStatusSet,
    WorkflowCanceled,
    WorkflowCompleted,
    WorkflowStarted,
    json_text,
)
from flowcore.journal.memory import InMemoryJournal
from tests.helpers import assert_eventually, events_of, until_recorded

LIMIT = 10.0
"""Seconds a test waits at most for something that should happen at once."""
SMALL = 1024
"""The payload limit of these tests' runtimes, in bytes."""
BIG = "x" * 2000
"""A value over the limit."""

calls: list[int] = []
gate = anyio.Event()


@pytest.fixture(autouse=True)
def _reset() -> None:
    global gate  # noqa: PLW0603 - module state shared with the activities below
    calls.clear()
    gate = anyio.Event()


@activity
async def pl_size(text: str, *, extra: str = "") -> int:
    calls.append(len(text) + len(extra))
    return len(text) + len(extra)


@activity
async def pl_blocked(text: str) -> int:
    calls.append(len(text))
    await gate.wait()
    return len(text)


@workflow
async def pl_child(text: str) -> int:
    await flowcore.wait_event("go")
    return len(text)


def _small_runtime() -> Runtime:
    return Runtime(journal=InMemoryJournal(), max_payload_bytes=SMALL)


def _assert_names_the_fix(message: str, what: str) -> None:
    assert what in message
    assert "bytes of JSON" in message
    assert f"{SMALL:,}-byte limit" in message
    assert "max_payload_bytes" in message


class TestActivityArguments:
    @pytest.mark.parametrize("keyword", [False, True], ids=["positional", "keyword"])
    async def test_raise_at_the_call_and_journal_nothing(self, keyword: bool):
        """Arguments over the limit raise PayloadError where the workflow awaits the call."""

        @workflow
        async def pl_args_flow() -> list[Any]:
            try:
                await (pl_size("", extra=BIG) if keyword else pl_size(BIG))
            except PayloadError as exc:
                return [str(exc), await pl_size("small")]
            return ["not refused"]

        async with _small_runtime() as rt:
            handle = await rt.start(pl_args_flow, id="args")
            message, after = await handle.result(timeout=LIMIT)
            scheduled = await events_of(rt, "args", ActivityScheduled)
        _assert_names_the_fix(message, "the argument list of activity 'pl_size'")
        assert after == 5
        assert [(e.step, e.args) for e in scheduled] == [(1, ["small"])]
        assert calls == [5]

    async def test_uncaught_fail_the_workflow(self):
        """Uncaught, the PayloadError fails the workflow; the activity never runs."""

        @workflow
        async def pl_args_uncaught() -> int:
            return await pl_size(BIG)

        async with _small_runtime() as rt:
            handle = await rt.start(pl_args_uncaught, id="uncaught")
            with pytest.raises(WorkflowFailedError) as info:
                await handle.result(timeout=LIMIT)
            assert (await rt.status("uncaught")).status is WorkflowState.FAILED
        assert info.value.failure.is_caused_by(PayloadError)
        assert calls == []

    async def test_a_gather_branch_fails_alone(self):
        """An oversize call among gather's branches raises out of gather like a failed one."""

        @workflow
        async def pl_args_gather() -> str:
            try:
                await flowcore.gather(pl_size("a"), pl_size(BIG))
            except PayloadError:
                return "refused"
            return "not refused"

        async with _small_runtime() as rt:
            handle = await rt.start(pl_args_gather, id="gather")
            assert await handle.result(timeout=LIMIT) == "refused"
            scheduled = await events_of(rt, "gather", ActivityScheduled)
        assert [e.args for e in scheduled] == [["a"]]


class TestCustomStatus:
    async def test_raise_at_set_status_and_journal_nothing(self):
        """A custom status over the limit raises at set_status; the last status stays."""

        @workflow
        async def pl_status_flow() -> str:
            flowcore.set_status("small")
            try:
                flowcore.set_status({"log": BIG})
            except PayloadError as exc:
                return str(exc)
            return "not refused"

        async with _small_runtime() as rt:
            handle = await rt.start(pl_status_flow, id="status")
            message = await handle.result(timeout=LIMIT)
            values = [e.value for e in await events_of(rt, "status", CustomStatusSet)]
            assert (await rt.status("status")).custom_status == "small"
        _assert_names_the_fix(message, "the custom status of workflow 'pl_status_flow'")
        assert values == ["small"]


class TestChildInput:
    async def test_raise_at_the_child_call_and_start_nothing(self):
        """A child input over the limit raises at the call; no child is scheduled or started."""

        @workflow
        async def pl_parent() -> str:
            try:
                await flowcore.child(pl_child, BIG, id="the-child")
            except PayloadError as exc:
                return str(exc)
            return "not refused"

        async with _small_runtime() as rt:
            handle = await rt.start(pl_parent, id="parent")
            message = await handle.result(timeout=LIMIT)
            assert await events_of(rt, "parent", ChildScheduled) == []
            with pytest.raises(flowcore.WorkflowNotFoundError):
                await rt.status("the-child")
        _assert_names_the_fix(message, "the input of child workflow 'pl_child'")


class TestContinueAsNew:
    async def test_raise_at_continue_as_new_and_stay_in_this_run(self):
        """An input over the limit raises at continue_as_new(); the run goes on."""

        @workflow
        async def pl_loop(text: str) -> str:
            if text:
                return f"run with {len(text)}"
            try:
                flowcore.continue_as_new(BIG)
            except PayloadError as exc:
                return str(exc)

        async with _small_runtime() as rt:
            handle = await rt.start(pl_loop, "", id="loop")
            message = await handle.result(timeout=LIMIT)
            starts = await events_of(rt, "loop", WorkflowStarted)
        _assert_names_the_fix(message, "the input of the next run of workflow 'pl_loop'")
        assert [e.run for e in starts] == [1]

    async def test_uncaught_fails_the_workflow(self):
        """Uncaught, the refusal fails the workflow instead of starting a run."""

        @workflow
        async def pl_loop_uncaught(text: str) -> None:
            if not text:
                flowcore.continue_as_new(BIG)

        async with _small_runtime() as rt:
            handle = await rt.start(pl_loop_uncaught, "", id="loop")
            with pytest.raises(WorkflowFailedError) as info:
                await handle.result(timeout=LIMIT)
        assert info.value.failure.is_caused_by(PayloadError)


class TestWorkflowResult:
    async def test_a_result_over_the_limit_fails_the_workflow(self):
        """The result is not committed: the workflow fails with a PayloadError naming it."""

        @workflow
        async def pl_big_result() -> str:
            return BIG

        async with _small_runtime() as rt:
            handle = await rt.start(pl_big_result, id="result")
            with pytest.raises(WorkflowFailedError) as info:
                await handle.result(timeout=LIMIT)
            assert await events_of(rt, "result", WorkflowCompleted) == []
        assert info.value.failure.is_caused_by(PayloadError)
        _assert_names_the_fix(info.value.failure.message, "the result of workflow 'pl_big_result'")

    async def test_a_canceled_workflow_drops_a_result_over_the_limit(self):
        """After a cancellation the workflow still ends canceled; its oversize result is dropped."""

        @workflow
        async def pl_cancel_result() -> str:
            try:
                await flowcore.wait_event("never")
            except flowcore.WorkflowCanceledError:
                return BIG
            return "not canceled"

        async with _small_runtime() as rt:
            handle = await rt.start(pl_cancel_result, id="cancel")
            await until_recorded(rt, "cancel", flowcore.engine.events.EventWaitStarted)
            await rt.cancel("cancel")
            with pytest.raises(flowcore.WorkflowCanceledError):
                await handle.result(timeout=LIMIT)
            [canceled] = await events_of(rt, "cancel", WorkflowCanceled)
        assert canceled.result is None


class TestReplayUnderASmallerLimit:
    async def test_a_recorded_large_argument_still_recovers(self, db_path):
        """A runtime reopened with a smaller limit replays a recorded call it would now refuse."""

        @workflow
        async def pl_recorded() -> int:
            return await pl_blocked(BIG)

        async with Runtime(db_path) as rt:
            await rt.start(pl_recorded, id="rec")
            await assert_eventually(lambda: calls == [len(BIG)], message="never ran")
        gate.set()
        async with Runtime(db_path, max_payload_bytes=SMALL) as rt:
            assert await rt.handle("rec").result(timeout=LIMIT) == len(BIG)
            scheduled = await events_of(rt, "rec", ActivityScheduled)
        assert [(e.step, e.args) for e in scheduled] == [(1, [BIG])]
        assert calls == [len(BIG), len(BIG)]  # run again after the restart, not refused

    async def test_a_recorded_large_child_input_still_recovers(self, db_path):
        """A parent reopened with a smaller limit waits on the child it started, not refused."""

        @workflow
        async def pl_parent_rec() -> int:
            return await flowcore.child(pl_child, BIG, id="big-child")

        async with Runtime(db_path) as rt:
            await rt.start(pl_parent_rec, id="parent")
            await until_recorded(rt, "big-child", flowcore.engine.events.EventWaitStarted)
        async with Runtime(db_path, max_payload_bytes=SMALL) as rt:
            await rt.send_event("big-child", "go")
            assert await rt.handle("parent").result(timeout=LIMIT) == len(BIG)

    async def test_new_commands_of_a_recovered_run_are_checked(self, db_path):
        """After the recorded part, the smaller limit holds: a new oversize call is refused."""

        @workflow
        async def pl_then_new() -> str:
            await pl_blocked(BIG)
            try:
                await pl_size(BIG)
            except PayloadError:
                return "refused"
            return "not refused"

        async with Runtime(db_path) as rt:
            await rt.start(pl_then_new, id="new")
            await assert_eventually(lambda: calls == [len(BIG)], message="never ran")
        gate.set()
        async with Runtime(db_path, max_payload_bytes=SMALL) as rt:
            assert await rt.handle("new").result(timeout=LIMIT) == "refused"


class TestIntegersJsonCannotWrite:
    HUGE = 10**5000
    """More digits than Python turns into text by default (4,300)."""

    async def test_an_argument_is_refused_at_the_call(self):
        """An int JSON cannot write raises PayloadError at the call, not at the commit."""

        @activity
        async def pl_number(n: int) -> int:
            return n

        @workflow
        async def pl_number_flow() -> str:
            try:
                await pl_number(self.HUGE)
            except PayloadError as exc:
                return str(exc)
            return "not refused"

        async with _small_runtime() as rt:
            handle = await rt.start(pl_number_flow, id="number")
            message = await handle.result(timeout=LIMIT)
        assert "the argument list of activity 'pl_number' cannot be written as JSON" in message
        assert "pass such a number as a string" in message

    async def test_a_workflow_input_is_refused_at_start(self):
        """start() refuses such an input with PayloadError, not a ValueError from the journal."""

        @workflow
        async def pl_number_input(n: int) -> int:
            return n

        async with _small_runtime() as rt:
            with pytest.raises(PayloadError, match="cannot be written as JSON"):
                await rt.start(pl_number_input, self.HUGE)


class TestSizeCheck:
    VALUES = (
        [],
        [3, -(2**63), 2**64 - 1, 2**64, 2**200],
        [1.5e-300, -0.1, True, None],
        ["\x00" * 64, "a" * 64, "b" * 65],
        ["\x01" * 64] * 8,
        ["\ud800", "é", "\U0001f600"],
        [1, 2, 3, 4, 5, 6, 7, 8, 9],
        [[1], {"a": 1}],
    )

    @pytest.mark.parametrize("value", VALUES)
    def test_a_value_is_refused_exactly_when_its_json_is_over_the_limit(self, value: Any):
        """Whatever shortcut judges a list, it refuses it at the same size as its JSON text."""
        size = len(json_text(value))
        for limit in {1, 2, size - 1, size, size + 1, 400, 3200, 10**6} - {0, -1}:
            if size > limit:
                with pytest.raises(PayloadError, match=f"is {size:,} bytes of JSON"):
                    check_payload_size(value, limit, "x {!r}", "y")
            else:
                check_payload_size(value, limit, "x {!r}", "y")


class TestRecoveryOfACaughtRefusal:
    async def test_the_refusal_is_made_again_on_replay(self, db_path):
        """Reopened with the same limit, a workflow that caught a refusal replays its fallback."""

        @workflow
        async def pl_fallback() -> int:
            try:
                return await pl_size(BIG)
            except PayloadError:
                return await pl_blocked("ref")

        async with Runtime(db_path, max_payload_bytes=SMALL) as rt:
            await rt.start(pl_fallback, id="fb")
            await assert_eventually(lambda: calls == [3], message="fallback never ran")
        gate.set()
        async with Runtime(db_path, max_payload_bytes=SMALL) as rt:
            assert await rt.handle("fb").result(timeout=LIMIT) == 3
