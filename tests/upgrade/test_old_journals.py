"""Journals written by older flowcore commits, opened by this code (upgrade under running work)."""

from __future__ import annotations

import shutil
from pathlib import Path

import flowcore
from flowcore import Runtime, WorkflowState, workflow

FIXTURES = Path(__file__).parent / "fixtures"


async def test_child_id_reused_in_one_run_on_old_code_replays(tmp_path: Path) -> None:
    """A run that called child() twice with one id before the rule against it still replays.

    Provenance of ``fixtures/child_same_id_d57ff93.db``: written by flowcore d57ff93 (schema
    version 4, before child() refused an id this run had already used) running the two
    workflows below, identical in source: ``Runtime(db).start(upg_twice, 0, id="upg-parent")``,
    then closed once the parent waited on ``go``. The old code adopted the finished child for
    the second call, so the history records two ChildScheduled steps of child ``upg-kid``,
    both completed with 100.

    The journal's record wins on replay: the upgraded runtime must not park the instance as
    nondeterministic (the code did not change); it finishes as the old code would have.
    """

    @workflow
    async def upg_kid(x: int) -> int:
        return x * 100

    @workflow
    async def upg_twice(x: int) -> list[int | str]:
        a = await flowcore.child(upg_kid, 1, id="upg-kid")
        b = await flowcore.child(upg_kid, 2, id="upg-kid")
        v = await flowcore.wait_event("go")
        return [a, b, v]

    db = tmp_path / "old.db"
    shutil.copyfile(FIXTURES / "child_same_id_d57ff93.db", db)
    async with Runtime(db, workflows=[upg_kid, upg_twice]) as runtime:
        status = await runtime.status("upg-parent")
        assert status.status == WorkflowState.RUNNING, status.error
        await runtime.send_event("upg-parent", "go", "g")
        assert await runtime.handle("upg-parent").result(timeout=10) == [100, 100, "g"]
