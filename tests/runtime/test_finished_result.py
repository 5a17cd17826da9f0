"""result() of a workflow that already ended and left memory: the same answer, cheaply read.

A completed workflow's result is read from its status row (one row), not its whole history;
a failed or canceled one still from its history, which holds the failure's details.
"""

from __future__ import annotations

import dataclasses

import pytest

import flowcore
from flowcore import Runtime, WorkflowCanceledError, WorkflowFailedError, activity, workflow
from flowcore.journal.memory import InMemoryJournal
from tests.helpers import ReadCountingJournal


@dataclasses.dataclass(frozen=True)
class FrPoint:
    x: int
    label: str


@activity
async def fr_double(x: int) -> int:
    return 2 * x


@workflow
async def fr_point(x: int) -> FrPoint:
    return FrPoint(await fr_double(x), "é\ud800")


@workflow
async def fr_fails(x: int) -> int:
    raise ValueError(f"bad {x}")


@workflow
async def fr_waits() -> str:
    return str(await flowcore.wait_event("go"))


class TestFinishedResult:
    async def test_completed_result_comes_from_the_status_row(self):
        """The result, decoded by the return hint, without reading the history."""
        journal = ReadCountingJournal()
        async with Runtime(journal=journal) as rt:
            handle = await rt.start(fr_point, 21, id="fr-1")
            assert await handle.result() == FrPoint(42, "é\ud800")
            assert "fr-1" not in rt._instances  # ended: no longer in memory
            reads = journal.history_reads
            assert await rt.result("fr-1") == FrPoint(42, "é\ud800")
            assert journal.history_reads == reads

    async def test_after_reopen(self, db_path):
        """A runtime opened later on the file gives the same result."""
        async with Runtime(db_path) as rt:
            await (await rt.start(fr_point, 5, id="fr-2")).result()
        async with Runtime(db_path) as rt:
            assert await rt.result("fr-2") == FrPoint(10, "é\ud800")

    async def test_failed_result_keeps_its_failure(self):
        """A failed workflow's result() raises its failure, read from the history."""
        async with Runtime(journal=InMemoryJournal()) as rt:
            handle = await rt.start(fr_fails, 3, id="fr-3")
            with pytest.raises(WorkflowFailedError):
                await handle.result()
            with pytest.raises(WorkflowFailedError) as caught:
                await handle.result()
            assert caught.value.failure.message == "bad 3"

    async def test_terminated_result_is_canceled(self):
        """A terminated workflow's result() raises WorkflowCanceledError naming the reason."""
        async with Runtime(journal=InMemoryJournal()) as rt:
            handle = await rt.start(fr_waits, id="fr-4")
            await rt.terminate("fr-4", reason="stop")
            with pytest.raises(WorkflowCanceledError, match="terminated: stop"):
                await handle.result()
            assert "fr-4" not in rt._instances
            with pytest.raises(WorkflowCanceledError, match="terminated: stop"):
                await handle.result()
