"""Journals written by older flowcore commits, opened by this code (upgrade under running work)."""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import flowcore
from flowcore import Runtime, WorkflowState, workflow
from flowcore.journal import schema
from flowcore.journal.sqlite import SqliteJournal

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


async def test_version_4_journal_is_read_then_migrated_to_5(tmp_path: Path) -> None:
    """Version 5 marks journals older flowcore must refuse; a version-4 file still reads.

    Runs started here are flagged ``run_seeded`` (their uuid4()/random() depend on the run
    number) and continue-as-new carries events: flowcore d57ff93 and 409e27e, which read schema
    version 4, opened such a file without complaint and replayed a seeded run with the id-only
    seed, so the in-flight run's uuid4() changed silently (repro: /tmp/hu/dg). Version 5 makes
    them raise SchemaVersionError ('written by a newer flowcore'). The fixture (provenance in
    the test above) is a version-4 file: read-only inspection reads it as it is, and opening it
    to run migrates it to version 5.
    """
    db = tmp_path / "old.db"
    shutil.copyfile(FIXTURES / "child_same_id_d57ff93.db", db)
    assert _user_version(db) == 4
    async with SqliteJournal(db, readonly=True) as journal:
        status = await journal.status("upg-parent")
        assert status is not None
        assert status.name == "upg_twice"
    assert _user_version(db) == 4
    async with SqliteJournal(db):
        pass
    assert _user_version(db) == schema.SCHEMA_VERSION == 5


def _user_version(db: Path) -> int:
    with closing(sqlite3.connect(db)) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
