"""aiosqlite connections whose thread never keeps the process alive at exit.

Since 0.22 aiosqlite runs each connection on a non-daemon thread that only ``close()`` ends, so a
program that returns without closing its runtime (``asyncio.run(main())`` where ``main`` opened
one) would wait for that thread forever. flowcore starts the thread as a daemon instead. Losing it
at exit loses nothing acknowledged: every acknowledged write was committed first, and SQLite's
WAL recovery rolls back a commit the exit cut short, as after a crash (the next runtime on the
file recovers it). aiosqlite has no public switch (its maintainers declined one), so this sets
the flag on its private ``_thread`` (0.22), or on the connection itself (before 0.22 it was the
thread); tests/journal pin that.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import aiosqlite

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["connect"]


async def connect(database: str | Path, **kwargs: Any) -> aiosqlite.Connection:
    """``await aiosqlite.connect(database, **kwargs)``, its thread a daemon.

    Args:
        database: The file (or URI, with ``uri=True``) to open.
        **kwargs: Passed to :func:`sqlite3.connect`.

    Returns:
        The open connection; close it with ``await conn.close()`` as usual.
    """
    conn = aiosqlite.connect(database, **kwargs)
    thread = conn if isinstance(conn, threading.Thread) else conn._thread  # noqa: SLF001
    thread.daemon = True
    return await conn
