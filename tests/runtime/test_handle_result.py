"""result() of the handle start() returned: answered from the instance once its end committed."""

from __future__ import annotations

import dataclasses

import pytest

import flowcore
from flowcore import Runtime, WorkflowCanceledError, WorkflowFailedError, activity, workflow
from flowcore.journal.memory import InMemoryJournal
from tests.helpers import ReadCountingJournal


@dataclasses.dataclass(frozen=True)
class HrBox:
    value: int


@activity
async def hr_double(x: int) -> int:
    return 2 * x


@workflow
async def hr_boxed(x: int) -> HrBox:
    return HrBox(await hr_double(x))


@workflow
async def hr_fails(x: int) -> int:
    await hr_double(x)
    raise ValueError(f"bad {x}")


@workflow
async def hr_waits() -> str:
    return str(await flowcore.wait_event("go"))


@workflow(name="hr_versioned", version="1")
async def hr_v1(x: int) -> int:
    flowcore.continue_as_new(x, version="2")
    return -1  # not reached


@workflow(name="hr_versioned", version="2")
async def hr_v2(x: int) -> HrBox:
    return HrBox(await hr_double(x))


class TestHandleResult:
    async def test_ended_instance_answers_without_the_journal(self):
        """Once the workflow ended and left memory, its handle answers without a journal read."""
        journal = ReadCountingJournal()
        async with Runtime(journal=journal, dispatch="eager") as rt:
            handle = await rt.start(hr_boxed, 21)
            assert await handle.result() == HrBox(42)
            assert handle.id not in rt._instances  # ended, and gone from memory
            reads = journal.reads
            assert await handle.result() == HrBox(42)
            assert journal.reads == reads
            assert await rt.result(handle.id) == HrBox(42)  # by id: the journal is asked
            assert journal.reads > reads

    async def test_failure_is_raised(self):
        """A failed workflow's handle raises its failure, from the instance too."""
        journal = ReadCountingJournal()
        async with Runtime(journal=journal) as rt:
            handle = await rt.start(hr_fails, 3)
            with pytest.raises(WorkflowFailedError, match="bad 3"):
                await handle.result()
            reads = journal.reads
            with pytest.raises(WorkflowFailedError, match="bad 3") as caught:
                await handle.result()
            assert caught.value.failure.is_caused_by(ValueError)
            assert journal.reads == reads

    async def test_terminated_is_canceled(self):
        """A terminated workflow's handle raises WorkflowCanceledError with the reason."""
        async with Runtime(journal=InMemoryJournal()) as rt:
            handle = await rt.start(hr_waits)
            await rt.terminate(handle.id, reason="enough")
            for _ in range(2):  # while ending, then from the ended instance
                with pytest.raises(WorkflowCanceledError, match="enough"):
                    await handle.result()

    async def test_last_run_decodes(self):
        """After continue-as-new to another version, the last run's return hint decodes."""
        async with Runtime(journal=InMemoryJournal()) as rt:
            handle = await rt.start("hr_versioned", 4, version="1")
            assert await handle.result() == HrBox(8)
            assert await handle.result() == HrBox(8)
            assert await rt.result(handle.id) == HrBox(8)

    async def test_other_handles_ask_the_runtime(self):
        """A handle by id, or one for an id that existed, gives the same answer."""
        async with Runtime(journal=InMemoryJournal()) as rt:
            first = await rt.start(hr_boxed, 5, id="hr-1")
            again = await rt.start(hr_boxed, 5, id="hr-1", if_exists="return")
            assert again._instance is None
            assert await first.result() == HrBox(10)
            assert await again.result() == HrBox(10)
            assert await rt.handle("hr-1").result() == HrBox(10)

    async def test_closed_runtime_is_asked(self, db_path):
        """A handle whose runtime closed before its workflow ended still gets the runtime's
        answer (its error), never a stale one."""
        async with Runtime(db_path) as rt:
            handle = await rt.start(hr_waits, id="hr-2")
        with pytest.raises(flowcore.FlowcoreError):
            await handle.result()
        async with Runtime(db_path) as rt:
            await rt.send_event("hr-2", "go", "yes")
            assert await rt.handle("hr-2").result() == "yes"
