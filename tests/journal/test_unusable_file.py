"""A journal file flowcore cannot use: each reason gets its own clear error.

A journal in a directory nothing may write to: SQLite cannot open a WAL journal there even to
read it (it needs its ``-shm`` file beside it). That is a question of access, not of the file's
content: read-only inspection and ``verify`` used to call such a healthy journal "not a SQLite
database" / "damaged". A damaged file, on the other hand, must not be met with "restart".
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
from contextlib import closing
from typing import TYPE_CHECKING

import pytest
import structlog

from flowcore import Runtime, _cli, workflow
from flowcore._verify import verify_journal
from flowcore.errors import InvalidArgumentError, JournalCorruptError, JournalError
from flowcore.journal.sqlite import SqliteJournal

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The CLI configures structlog for its process; give the next test the config back."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def readonly_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory holding a closed, healthy journal, made read-only for this process.

    Not root: the directory's mode. Root ignores modes, so a read-only bind mount is used
    (skipped where mounting is not permitted).
    """
    source = tmp_path / "src"
    source.mkdir()

    @workflow(name="ro_echo")
    async def ro_echo(x: int) -> int:
        return x

    async def build() -> None:
        async with Runtime(source / "j.db") as rt:
            await (await rt.start(ro_echo, 1, id="one")).result(timeout=10)

    asyncio.run(build())
    for leftover in ("j.db-wal", "j.db-shm", "j.db.lock"):
        (source / leftover).unlink(missing_ok=True)
    if os.geteuid() != 0:
        source.chmod(0o555)
        yield source
        source.chmod(0o755)
        return
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if mount is None or umount is None:
        pytest.skip("cannot make a read-only directory as root without mount")
    target = tmp_path / "ro"
    target.mkdir()
    bind = [mount, "--bind", str(source), str(target)]
    if subprocess.run(bind, check=False, capture_output=True).returncode != 0:
        pytest.skip("mounting is not permitted here")
    try:
        remount = [mount, "-o", "remount,bind,ro", str(target)]
        if subprocess.run(remount, check=False, capture_output=True).returncode != 0:
            pytest.skip("cannot remount read-only")
        yield target
    finally:
        subprocess.run([umount, str(target)], check=False, capture_output=True)


async def test_read_only_inspection_says_it_cannot_open_not_damaged(readonly_dir):
    """Opening read-only raises a JournalError naming the directory, not JournalCorruptError."""
    journal = SqliteJournal(readonly_dir / "j.db", readonly=True)
    with pytest.raises(JournalError, match="directory") as caught:
        await journal.open()
    assert not isinstance(caught.value, JournalCorruptError)


def test_verify_says_it_cannot_read_not_damaged(readonly_dir, capsys):
    """verify raises a JournalError naming the directory; the CLI does not say "damaged"."""
    with pytest.raises(JournalError, match="directory") as caught:
        verify_journal(readonly_dir / "j.db")
    assert not isinstance(caught.value, JournalCorruptError)
    assert _cli.main(["verify", "--db", str(readonly_dir / "j.db")]) == 2
    assert "damaged" not in capsys.readouterr().err
    assert _cli.main(["list", "--db", str(readonly_dir / "j.db")]) == 2
    assert "not a flowcore journal" not in capsys.readouterr().err


async def test_a_commit_into_a_damaged_page_says_the_file_is_damaged(tmp_path):
    """A commit that meets a damaged page fail-stops with JournalCorruptError, not "restart".

    Restarting the runtime (the old advice) fails the same way at the next such commit.
    """

    @workflow(name="dmg_echo")
    async def dmg_echo(x: int) -> int:
        return x

    db = tmp_path / "j.db"
    async with Runtime(db) as rt:
        await (await rt.start(dmg_echo, 1, id="one")).result(timeout=10)
    with closing(sqlite3.connect(db)) as con:
        page_size = con.execute("PRAGMA page_size").fetchone()[0]
        (root,) = con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'workflows_by_name'")
    with db.open("r+b") as f:
        f.seek((root[0] - 1) * page_size)
        f.write(b"\x07" * page_size)
    async with Runtime(db) as rt:
        with pytest.raises(JournalCorruptError, match="damaged"):
            await (await rt.start(dmg_echo, 2, id="two")).result(timeout=10)


@pytest.mark.parametrize("path", [":memory:", ""])
def test_an_in_memory_sqlite_path_is_refused_at_once(path, tmp_path, monkeypatch):
    """SQLite's private databases (``:memory:``, ``""``) would vanish with the process: refused
    when the runtime is made, naming the fix, and no lock file is left behind."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidArgumentError, match=r"is not a journal file.*InMemoryJournal"):
        Runtime(path)
    assert list(tmp_path.iterdir()) == []
