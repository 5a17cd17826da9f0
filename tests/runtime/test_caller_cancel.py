"""A caller cancelled while its request commits (a timeout, a web client gone) stalls nothing.

``start()``, ``send_event()``, ``cancel()`` and ``terminate()`` wait for their commit. When the
caller is cancelled there, the request still commits (it is in the writer's queue), so the
runtime must carry it out as if the caller had stayed: dispatch the work it scheduled, end the
instance it ended, terminate the children of a terminated parent. To cancel the caller at that
very point, a second connection holds the database's write lock (well under the writer's busy
timeout), so the commit waits until the test lets it go.
"""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing, contextmanager
from typing import TYPE_CHECKING, Any

import pytest

import flowcore
from flowcore import Runtime, WorkflowState
from flowcore.engine.events import EventWaitStarted
from tests.helpers import assert_eventually, until_recorded

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

DISPATCH = pytest.mark.parametrize("dispatch", ["eager", "durable"])


@contextmanager
def write_locked(db: Path) -> Iterator[None]:
    """Hold the database's write lock from another connection: commits wait meanwhile."""
    with closing(sqlite3.connect(db, isolation_level=None)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")


async def cancel_while_committing(rt: Runtime, db: Path, request: Any) -> None:
    """Run ``request`` (a coroutine) and cancel it while its commit waits for the lock."""
    with write_locked(db):
        commits = rt._journal.commits
        assert rt._busy == 0  # nothing runs: a busy runtime now means the request's append
        task = asyncio.ensure_future(request)
        await assert_eventually(lambda: rt._busy > 0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert rt._journal.commits == commits  # nothing committed while the lock is held


@pytest.fixture
def cc_defs():
    """A workflow that waits for an event, then runs one activity; and one that only waits."""

    @flowcore.activity
    async def cc_step(x: int) -> int:
        return x + 1

    @flowcore.workflow
    async def cc_after_event(x: int) -> int:
        got = await flowcore.wait_event("go")
        return await cc_step(x + got)

    @flowcore.workflow
    async def cc_first_step(x: int) -> int:
        return await cc_step(x)

    @flowcore.workflow
    async def cc_waits() -> Any:
        return await flowcore.wait_event("never")

    @flowcore.workflow
    async def cc_parent() -> Any:
        return await flowcore.child(cc_waits, id="cc-child")

    return {
        "after_event": cc_after_event, "first_step": cc_first_step, "waits": cc_waits,
        "parent": cc_parent,
    }  # fmt: skip


class TestCallerCancelled:
    @DISPATCH
    @pytest.mark.parametrize("fresh", [False, True], ids=["given-id", "generated-id"])
    async def test_start_still_runs_its_first_step(self, db_path, cc_defs, dispatch, fresh):
        """A start cancelled while it commits is committed: its first step runs, it ends."""
        async with Runtime(db_path, dispatch=dispatch) as rt:
            ids = {} if fresh else {"id": "s1"}
            await cancel_while_committing(rt, db_path, rt.start(cc_defs["first_step"], 1, **ids))

            async def committed() -> bool:
                return bool(await rt.list())

            await assert_eventually(committed)
            (row,) = await rt.list()
            assert await rt.result(row.id, timeout=10) == 2

    @DISPATCH
    async def test_send_event_still_wakes_the_workflow(self, db_path, cc_defs, dispatch):
        """An event whose sender was cancelled while it committed still drives the workflow on."""
        async with Runtime(db_path, dispatch=dispatch) as rt:
            await rt.start(cc_defs["after_event"], 1, id="e1")
            await until_recorded(rt, "e1", EventWaitStarted)
            await cancel_while_committing(rt, db_path, rt.send_event("e1", "go", 10))
            assert await rt.result("e1", timeout=10) == 12

    async def test_terminate_still_ends_the_instance_and_its_children(self, db_path, cc_defs):
        """A terminate cancelled while it commits ends the instance (result() answers) and its
        running children, as an uncancelled one does."""
        async with Runtime(db_path) as rt:
            await rt.start(cc_defs["parent"], id="p1")
            await until_recorded(rt, "cc-child", EventWaitStarted)
            await cancel_while_committing(rt, db_path, rt.terminate("p1", reason="stop"))
            with pytest.raises(flowcore.FlowcoreError, match="terminated"):
                await rt.result("p1", timeout=10)

            async def child_terminated() -> bool:
                status = await rt.status("cc-child")
                return status.status is WorkflowState.TERMINATED

            await assert_eventually(child_terminated)
