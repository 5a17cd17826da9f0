"""The journal's on-disk format: DDL, the file header marks and forward migrations.

A flowcore journal is a SQLite file whose ``PRAGMA application_id`` is :data:`APPLICATION_ID` and
whose ``PRAGMA user_version`` is the schema version. :data:`MIGRATIONS` holds one step per version:
``MIGRATIONS[v]`` turns a version-``v`` file into a version ``v + 1`` one, so a fresh file is simply
migrated from version 0. Steps only ever get appended; a released step is never edited.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, TypeAlias, final

from flowcore.errors import JournalCorruptError, JournalError, SchemaVersionError

if TYPE_CHECKING:
    import os
    from collections.abc import Awaitable, Callable, Sequence

    import aiosqlite

__all__ = [
    "APPLICATION_ID",
    "INDEXES",
    "MIGRATIONS",
    "READABLE_FROM",
    "SCHEMA_VERSION",
    "Header",
    "Migration",
    "check",
    "ensure_indexes",
    "is_damage",
    "migrate",
    "precheck",
    "read_header",
    "scalar",
]

APPLICATION_ID: Final = 0x466C6F77
"""``PRAGMA application_id`` of every flowcore journal (ASCII ``Flow``)."""
_DAMAGE_CODES: Final = frozenset({11, 26})
"""SQLITE_CORRUPT and SQLITE_NOTADB: the primary result codes that blame a file's content."""

Migration: TypeAlias = "tuple[str, ...] | Callable[[aiosqlite.Connection], Awaitable[None]]"
"""A schema step: SQL statements run in order, or a coroutine function given the connection.

Either runs inside the migration's single transaction and must not commit.
"""

_V1: Final = (
    """CREATE TABLE events (
        workflow_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        data TEXT NOT NULL,
        at REAL NOT NULL,
        PRIMARY KEY (workflow_id, seq)
    ) WITHOUT ROWID""",
    """CREATE TABLE workflows (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        status TEXT NOT NULL,
        input TEXT,
        output TEXT,
        error TEXT,
        current_activity TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        parent_id TEXT
    )""",
    "CREATE INDEX workflows_by_status ON workflows (status, created_at)",
    "CREATE INDEX workflows_by_name ON workflows (name, created_at)",
    "CREATE INDEX workflows_by_created ON workflows (created_at)",
    """CREATE TABLE owner (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        pid INTEGER,
        host TEXT,
        started_at REAL,
        token TEXT
    )""",
)

_V2: Final = ("ALTER TABLE workflows ADD COLUMN custom_status TEXT",)
"""Version 2: ``workflows.custom_status``, the JSON text of the value last given to set_status()."""

_V3: Final = (
    """CREATE TABLE inbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        workflow_id TEXT,
        kind TEXT NOT NULL,
        data TEXT NOT NULL,
        at REAL NOT NULL
    )""",
)
"""Version 3: ``inbox``, steering requests (start, event, cancel ...) written by other processes
(the CLI) for the owning runtime to apply; see :mod:`flowcore._inbox`."""

_V4: Final = (
    """CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        channel TEXT NOT NULL,
        key TEXT NOT NULL,
        workflow_id TEXT NOT NULL,
        body TEXT NOT NULL
    )""",
    "CREATE INDEX outbox_by_channel ON outbox (channel, id)",
)
"""Version 4: ``outbox``, messages listeners commit with the events causing them (reports to
Orchestra ...), deleted once their sender has delivered them; see :mod:`flowcore.listeners`."""

_V5: Final = ()
"""Version 5: no table changes. Histories may now hold runs flagged ``run_seeded`` (their
``uuid4()``/``random()`` are seeded by the run number) and events carried over a continue-as-new;
flowcore of version 4 would replay such a run with other random values. The version makes older
flowcore refuse the file instead (SchemaVersionError: 'written by a newer flowcore')."""

MIGRATIONS: Final[Sequence[Migration]] = (_V1, _V2, _V3, _V4, _V5)
"""Forward steps; ``MIGRATIONS[v]`` upgrades version ``v`` to ``v + 1``. Append only."""

SCHEMA_VERSION: Final = len(MIGRATIONS)
"""The schema version this code reads and writes."""

READABLE_FROM: Final = 4
"""The oldest schema version read-only inspection reads, and the CLI's steering commands queue
requests in, without migrating the file (version 5 changed no table)."""

INDEXES: Final = (
    "CREATE INDEX IF NOT EXISTS workflows_by_name_status ON workflows (name, status, created_at)",
)
"""Indexes added after a version's release, created by the owner at every open if missing.

An index changes no table and nothing any flowcore writes or reads means: SQLite keeps it up
to date whoever writes the rows, and a file without it reads the same, only slower. So it takes
no schema version: a version bump would make older flowcore (and its read-only inspection)
refuse the file ('written by a newer flowcore') for an index it does not need. Read-only
inspection of a file no owner of this code has opened yet runs without it.

``workflows_by_name_status``: ``list(name=..., status=...)`` (the CLI, ``Runtime.list``, the
web API's pages and per-state counts by name). With only ``workflows_by_name`` SQLite read every
row of the name to find a rare state (18 ms for 20 failed among 50,000 of one name)."""

_MAGIC: Final = b"SQLite format 3\x00"
_HEADER_SIZE: Final = 100
_USER_VERSION_AT: Final = 60
_APPLICATION_ID_AT: Final = 68
_WAL_FORMAT_AT: Final = 18
_WAL_FORMAT: Final = 2
_PAGE1_TYPE_AT: Final = 100
_PAGE1_CELLS_AT: Final = 103
_LEAF_TABLE_PAGE: Final = 0x0D


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class Header:
    """What the first page of a SQLite file says, read without opening it through SQLite.

    Reading the bytes directly touches nothing (no ``-wal``/``-shm``/``-journal`` side files), so a
    file that turns out not to be a flowcore journal is left exactly as it was.
    """

    application_id: int
    """``PRAGMA application_id`` as stored in the main file."""
    user_version: int
    """``PRAGMA user_version`` as stored in the main file."""
    wal: bool
    """True when the file is in WAL mode (its latest header may then live in the ``-wal`` file)."""
    empty_schema: bool
    """True when the schema table on page 1 has no entries (no tables, indexes or views)."""


def read_header(path: str | os.PathLike[str]) -> Header | None:
    """Read a SQLite file's header bytes.

    Args:
        path: The database file.

    Returns:
        None when the file does not exist or is empty (a fresh journal may be created there).

    Raises:
        ValueError: the file is not a SQLite database (too short, or the magic string is missing).
    """
    try:
        with open(path, "rb") as file:  # noqa: PTH123 -- path may be any PathLike; open() is plain
            page = file.read(_PAGE1_CELLS_AT + 2)
    except FileNotFoundError:
        return None
    if not page:
        return None
    if len(page) < _HEADER_SIZE or not page.startswith(_MAGIC):
        msg = "it does not start with the SQLite header"
        raise ValueError(msg)
    cells = int.from_bytes(page[_PAGE1_CELLS_AT : _PAGE1_CELLS_AT + 2], "big")
    return Header(
        application_id=_int32(page, _APPLICATION_ID_AT),
        user_version=_int32(page, _USER_VERSION_AT),
        wal=page[_WAL_FORMAT_AT] == _WAL_FORMAT,
        empty_schema=len(page) > _PAGE1_TYPE_AT
        and page[_PAGE1_TYPE_AT] == _LEAF_TABLE_PAGE
        and cells == 0,
    )


def precheck(path: str) -> Header | None:
    """Refuse a foreign file from its header bytes alone, before anything touches it.

    Returns:
        The header of a flowcore journal, or None for a file to create (missing, empty, or an
        empty SQLite database).

    Raises:
        JournalCorruptError: not SQLite, or another application's database.
        JournalError: the file cannot be read.
    """
    try:
        header = read_header(path)
    except ValueError as exc:
        raise JournalCorruptError(_not_sqlite(path, exc)) from exc
    except OSError as exc:
        msg = f"cannot read journal {path!r}: {exc}"
        raise JournalError(msg) from exc
    if header is None or header.application_id == APPLICATION_ID:
        return header
    if header.application_id == 0 and header.empty_schema and not header.wal:
        return None
    raise JournalCorruptError(_foreign(path, header.application_id))


async def check(conn: aiosqlite.Connection, path: str) -> int:
    """Validate an opened file, reading only; return its schema version (0: fresh, to create).

    Raises:
        JournalCorruptError: not SQLite, or another application's database.
        SchemaVersionError: a newer flowcore wrote it.
    """
    try:
        app_id = await scalar(conn, "PRAGMA application_id")
        version = await scalar(conn, "PRAGMA user_version")
        tables = await scalar(conn, "SELECT count(*) FROM sqlite_master")
    except sqlite3.DatabaseError as exc:
        if not is_damage(exc):
            raise  # the file cannot be opened (e.g. a read-only directory): not its content
        raise JournalCorruptError(_not_sqlite(path, exc)) from exc
    if app_id == 0 and tables == 0:
        return 0
    if app_id != APPLICATION_ID or not isinstance(version, int):
        raise JournalCorruptError(_foreign(path, app_id))
    if version > SCHEMA_VERSION:
        msg = (
            f"journal {path!r} has schema version {version} but this flowcore reads up to "
            f"version {SCHEMA_VERSION}; it was written by a newer flowcore: upgrade flowcore"
        )
        raise SchemaVersionError(msg)
    return version


async def scalar(conn: aiosqlite.Connection, query: str) -> object:
    """The first column of the first row a query returns."""
    rows = await conn.execute_fetchall(query)
    value: object = next(iter(rows))[0]
    return value


def is_damage(exc: sqlite3.Error) -> bool:
    """Whether SQLite refused a file for its content (damaged, or not a database at all).

    Not for access to it: a WAL journal in a read-only directory cannot be opened even to read
    (SQLite needs its ``-shm`` file), and that is no reason to call the journal damaged.
    """
    code = getattr(exc, "sqlite_errorcode", None)
    return code is None or code & 0xFF in _DAMAGE_CODES


def _not_sqlite(path: str, cause: object) -> str:
    return (
        f"{path!r} is not a flowcore journal (not a SQLite database: {cause}); it was left "
        "untouched. Point flowcore at another file."
    )


def _foreign(path: str, app_id: object) -> str:
    shown = f"{app_id:#x}" if isinstance(app_id, int) else repr(app_id)
    return (
        f"{path!r} is a SQLite database but not a flowcore journal (application_id {shown}, "
        f"flowcore uses {APPLICATION_ID:#x}); it was left untouched. Point flowcore at another "
        "file."
    )


def _int32(page: bytes, offset: int) -> int:
    return int.from_bytes(page[offset : offset + 4], "big", signed=True)


async def migrate(
    conn: aiosqlite.Connection,
    from_version: int,
    migrations: Sequence[Migration] = MIGRATIONS,
) -> int:
    """Upgrade a journal from ``from_version`` to ``len(migrations)`` in one transaction.

    The connection must be in autocommit mode (``isolation_level=None``). Every step, the new
    ``user_version`` and the ``application_id`` commit together, or nothing does.

    Args:
        conn: A writable connection that owns the journal.
        from_version: The file's current ``user_version``.
        migrations: The steps to use (the default is this code's schema).

    Returns:
        The new schema version.

    Raises:
        ValueError: ``from_version`` is newer than ``migrations`` knows.
    """
    target = len(migrations)
    if from_version > target:
        msg = f"cannot migrate from schema version {from_version} down to {target}"
        raise ValueError(msg)
    if from_version == target:
        return target
    await conn.execute("BEGIN IMMEDIATE")
    try:
        for step in migrations[from_version:]:
            await _run_step(conn, step)
        # PRAGMA values cannot be bound parameters; both are ints we computed.
        await conn.execute(f"PRAGMA application_id = {APPLICATION_ID:d}")
        await conn.execute(f"PRAGMA user_version = {target:d}")
        await conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            await conn.execute("ROLLBACK")
        raise
    return target


async def ensure_indexes(conn: aiosqlite.Connection) -> None:
    """Create the :data:`INDEXES` a file lacks; cheap when it has them all.

    The connection must be writable and in autocommit mode; each statement commits by itself
    (a crash between two leaves the file valid: the next open creates the rest).
    """
    for statement in INDEXES:
        await conn.execute(statement)


async def _run_step(conn: aiosqlite.Connection, step: Migration) -> None:
    if isinstance(step, tuple):
        for statement in step:
            await conn.execute(statement)
    else:
        await step(conn)
