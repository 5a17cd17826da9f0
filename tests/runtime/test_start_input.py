"""start() checks the payload against the workflow's parameter before anything is written."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from flowcore import (
    InvalidArgumentError,
    PayloadError,
    Runtime,
    WorkflowAlreadyExistsError,
    workflow,
)
from flowcore.testing import InMemoryJournal


@dataclass(frozen=True)
class SiOrder:
    sku: str


@workflow
async def si_no_input() -> int:
    return 1


@workflow
async def si_needs(order: SiOrder) -> str:
    return order.sku


@workflow
async def si_optional(order: SiOrder | None) -> str:
    return "none" if order is None else order.sku


async def _ids(runtime: Runtime) -> list[str]:
    return [s.id for s in await runtime.list()]


class TestNoInput:
    async def test_payload_refused(self):
        """A payload for a workflow without a parameter is refused, naming the workflow and fix."""
        async with Runtime(journal=InMemoryJournal()) as runtime:
            with pytest.raises(InvalidArgumentError) as raised:
                await runtime.start(si_no_input, {"sku": "a"}, id="n1")
            message = str(raised.value)
            assert "workflow 'si_no_input'" in message
            assert "takes no input" in message
            assert "without one" in message
            assert await _ids(runtime) == []

    async def test_refused_by_name_too(self):
        """Starting by registered name refuses the payload the same way."""
        async with Runtime(journal=InMemoryJournal(), workflows=[si_no_input]) as runtime:
            with pytest.raises(InvalidArgumentError, match="takes no input"):
                await runtime.start("si_no_input", 0)

    async def test_no_payload_runs(self):
        """Without a payload it starts and runs as before."""
        async with Runtime(journal=InMemoryJournal()) as runtime:
            handle = await runtime.start(si_no_input)
            assert await handle.result(timeout=10) == 1


class TestMissingInput:
    async def test_missing_payload_refused(self):
        """A workflow whose parameter cannot be None, started without a payload, is refused."""
        async with Runtime(journal=InMemoryJournal()) as runtime:
            with pytest.raises(InvalidArgumentError) as raised:
                await runtime.start(si_needs, id="m1")
            message = str(raised.value)
            assert "workflow 'si_needs' takes an input (order: " in message
            assert "none was given" in message
            assert "runtime.start('si_needs', payload)" in message
            assert await _ids(runtime) == []

    async def test_optional_parameter_takes_none(self):
        """A parameter that accepts None runs without a payload."""
        async with Runtime(journal=InMemoryJournal()) as runtime:
            handle = await runtime.start(si_optional)
            assert await handle.result(timeout=10) == "none"

    async def test_unfit_payload_refused(self):
        """A payload that does not fit the parameter's type hint is a PayloadError, unwritten."""
        async with Runtime(journal=InMemoryJournal()) as runtime:
            with pytest.raises(PayloadError) as raised:
                await runtime.start(si_needs, "just a string", id="u1")
            assert "the input of workflow 'si_needs'" in str(raised.value)
            assert await _ids(runtime) == []
            handle = await runtime.start(si_needs, SiOrder("ok"), id="u1")  # the id stays free
            assert await handle.result(timeout=10) == "ok"


class TestExistingId:
    """An existing id is answered as before: only a workflow the call would create is checked."""

    async def test_return_existing_without_payload(self):
        """``if_exists="return"`` without the payload (``run --id`` resuming) gets the instance."""
        async with Runtime(journal=InMemoryJournal()) as runtime:
            first = await runtime.start(si_needs, SiOrder("a"), id="e1")
            assert await first.result(timeout=10) == "a"
            again = await runtime.start(si_needs, id="e1", if_exists="return")
            assert await again.result(timeout=10) == "a"

    async def test_duplicate_still_says_duplicate(self):
        """With ``if_exists="error"`` the answer is the duplicate id, not the missing input."""
        async with Runtime(journal=InMemoryJournal()) as runtime:
            await (await runtime.start(si_needs, SiOrder("a"), id="e2")).result(timeout=10)
            with pytest.raises(WorkflowAlreadyExistsError):
                await runtime.start(si_needs, id="e2")
