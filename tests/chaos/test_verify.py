"""``python -m flowcore verify``: integrity checks that report problems and change nothing."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import sqlite3
from contextlib import closing

import pytest
import structlog

import flowcore
from flowcore import _cli, _definitions
from flowcore._verify import verify_journal
from flowcore.errors import FailureInfo, JournalCorruptError, JournalError


@pytest.fixture(autouse=True)
def _restore_logging():
    """The CLI configures structlog for its process; give the next test the config back."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


async def _build(db_path):
    """A journal with a finished chain, a failure, a child, a timer and a waiting workflow."""

    @flowcore.activity
    def vf_add(x: int, y: int) -> int:
        return x + y

    @flowcore.activity(retry=flowcore.RetryPolicy(max_attempts=1))
    async def vf_boom() -> None:
        raise ValueError("boom")

    @flowcore.workflow
    async def vf_chain(x: int) -> int:
        x = await vf_add(x, 1)
        await flowcore.sleep(0.001)
        return await vf_add(x, 2)

    @flowcore.workflow
    async def vf_parent(x: int) -> int:
        return await flowcore.child(vf_chain, x) + 1

    @flowcore.workflow
    async def vf_fails() -> None:
        await vf_boom()

    @flowcore.workflow
    async def vf_waits() -> object:
        return await flowcore.wait_event("never")

    async with flowcore.Runtime(db_path) as rt:
        assert await (await rt.start(vf_chain, 1, id="chain")).result() == 4
        assert await (await rt.start(vf_parent, 1, id="parent")).result() == 5
        with pytest.raises(flowcore.WorkflowFailedError):
            await (await rt.start(vf_fails, id="fails")).result()
        await rt.start(vf_waits, id="waits")
        await rt.send_event("waits", "other", {"a": 1})


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """Built once per module (registering nothing for other tests); each test gets a copy."""
    db = tmp_path_factory.mktemp("verify") / "template.db"
    saved = _definitions.default_registry.copy()
    try:
        asyncio.run(_build(db))
    finally:
        _definitions.default_registry.workflows = saved.workflows
        _definitions.default_registry.activities = saved.activities
    return db


@pytest.fixture
def journal(template, db_path):
    """A copy of the template journal (it is closed: everything is in the main file)."""
    shutil.copyfile(template, db_path)
    return db_path


def _sql(db, *statements):
    with closing(sqlite3.connect(db)) as con, con:
        for statement, *params in statements:
            con.execute(statement, params)


def _verify_cli(db, capsys, *extra):
    code = _cli.main(["verify", "--db", str(db), "--json", *extra])
    return code, json.loads(capsys.readouterr().out)


def _checks(report):
    return {(p["workflow_id"], p["check"]) for p in report["problems"]}


class TestClean:
    def test_a_healthy_journal_passes(self, journal, capsys):
        """A journal written by the runtime has no problem: exit 0."""
        code, report = _verify_cli(journal, capsys)
        assert code == 0
        assert report["ok"] is True
        assert report["problems"] == []
        assert report["workflows"] == 5  # parent's child included
        assert report["events"] > 10

    def test_text_output(self, journal, capsys):
        """Without --json a one-line verdict goes to stderr."""
        assert _cli.main(["verify", "--db", str(journal)]) == 0
        assert "5 workflow(s)" in capsys.readouterr().err

    def test_changes_nothing(self, journal):
        """Verifying leaves the database file byte for byte as it was."""
        before = hashlib.sha256(journal.read_bytes()).hexdigest()
        assert verify_journal(journal).ok
        assert hashlib.sha256(journal.read_bytes()).hexdigest() == before


class TestCorrupted:
    """Each deliberate corruption is reported, with exit code 1."""

    @pytest.mark.parametrize(
        ("statements", "expected"),
        [
            ([("DELETE FROM events WHERE workflow_id = 'chain' AND seq = 2",)], ("chain", "seq")),
            (
                [(("INSERT INTO events SELECT workflow_id, seq + 100, kind, data, at FROM events "
                  "WHERE workflow_id = 'chain' AND kind = 'workflow_completed'"),)],
                ("chain", "seq"),
            ),
            (
                [(("UPDATE events SET data = json_set(data, '$.step', 99) WHERE workflow_id = "
                  "'chain' AND kind = 'activity_completed' AND seq = 3"),)],
                ("chain", "completion"),
            ),
            (
                [(("UPDATE events SET kind = 'timer_fired', data = json_object('step', 1) "
                   "WHERE workflow_id = 'chain' AND kind = 'activity_completed' AND seq = 3"),)],
                ("chain", "completion"),
            ),
            ([("UPDATE workflows SET status = 'running' WHERE id = 'chain'",)],
             ("chain", "terminal")),
            ([("UPDATE workflows SET output = '41' WHERE id = 'parent'",)],
             ("parent", "projection")),
            ([("UPDATE workflows SET current_activity = 'x' WHERE id = 'waits'",)],
             ("waits", "projection")),
            ([("UPDATE events SET kind = 'mystery' WHERE workflow_id = 'fails' AND seq = 2",)],
             ("fails", "decode")),
            ([("UPDATE events SET data = '{' WHERE workflow_id = 'fails' AND seq = 2",)],
             ("fails", "decode")),
            ([("DELETE FROM workflows WHERE id = 'waits'",)], ("waits", "orphan")),
            ([("DELETE FROM events WHERE workflow_id = 'waits'",)], ("waits", "orphan")),
            ([("DELETE FROM events WHERE workflow_id = 'chain' AND seq = 1",),
              ("UPDATE events SET seq = seq - 1 WHERE workflow_id = 'chain'",)],
             ("chain", "decode")),
        ],
        ids=["gap", "after-terminal", "unknown-step", "wrong-kind", "status-vs-terminal",
             "output", "current-activity", "unknown-kind", "bad-json", "no-row", "no-events",
             "no-start"],
    )  # fmt: skip
    def test_is_reported(self, journal, capsys, statements, expected):
        """The broken invariant is named with its workflow."""
        _sql(journal, *statements)
        code, report = _verify_cli(journal, capsys)
        assert code == 1
        assert report["ok"] is False
        assert expected in _checks(report), report["problems"]

    def test_duplicate_completion(self, journal, capsys):
        """An activity completion recorded twice for one step is reported."""
        _sql(
            journal,
            ("UPDATE events SET seq = -seq WHERE workflow_id = 'chain' AND seq >= 4",),
            ("UPDATE events SET seq = 1 - seq WHERE workflow_id = 'chain' AND seq < 0",),
            (("INSERT INTO events SELECT workflow_id, 4, kind, data, at FROM events "
             "WHERE workflow_id = 'chain' AND seq = 3"),),
        )  # fmt: skip
        code, report = _verify_cli(journal, capsys)
        assert code == 1
        assert any("recorded twice" in p["message"] for p in report["problems"])

    def test_a_second_terminal_event(self, journal, capsys):
        """Two terminal events are reported, not only the status mismatch."""
        failed = json.dumps({"failure": FailureInfo(type_name="x", message="y").to_json()})
        _sql(journal, (("INSERT INTO events SELECT workflow_id, seq + 1, 'workflow_failed', ?, at "
                        "FROM events WHERE workflow_id = 'chain' AND kind = 'workflow_completed'"),
                       failed))  # fmt: skip
        code, report = _verify_cli(journal, capsys)
        assert code == 1
        assert any("2 terminal events" in p["message"] for p in report["problems"]), report[
            "problems"
        ]


class TestUsage:
    def test_missing_database_exits_2(self, tmp_path, capsys):
        """A path with no file is a usage error naming the fix."""
        assert _cli.main(["verify", "--db", str(tmp_path / "nope.db")]) == 2
        assert "pass --db PATH" in capsys.readouterr().err

    def test_foreign_file_exits_2(self, tmp_path, capsys):
        """A file that is not a flowcore journal is refused, untouched."""
        other = tmp_path / "other.db"
        other.write_bytes(b"not a database at all, just text" * 10)
        assert _cli.main(["verify", "--db", str(other)]) == 2
        assert "error" in capsys.readouterr().err
        with pytest.raises(JournalCorruptError):
            verify_journal(other)

    def test_empty_file_is_an_error(self, tmp_path):
        """An empty file holds no journal."""
        empty = tmp_path / "empty.db"
        empty.touch()
        with pytest.raises(JournalError, match="empty"):
            verify_journal(empty)


class TestDamagedFile:
    @pytest.mark.parametrize("index", ["workflows_by_name", "workflows_by_status"])
    def test_a_damaged_index_page_is_reported(self, journal, capsys, index):
        """A page the history checks never read (an index's) is damaged: verify says so.

        Before, verify read events and status rows only, passed such a file as "ok", and the
        runtime then failed at its first commit that touched the page.
        """
        with closing(sqlite3.connect(journal)) as con:
            page_size = con.execute("PRAGMA page_size").fetchone()[0]
            (root,) = con.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (index,))
        with journal.open("r+b") as f:
            f.seek((root[0] - 1) * page_size)
            f.write(b"\x07" * page_size)
        with pytest.raises(JournalCorruptError, match="damaged"):
            verify_journal(journal)
        assert _cli.main(["verify", "--db", str(journal)]) == 2
        assert "integrity check" in capsys.readouterr().err
