"""Generated workflow ids: time-ordered UUIDs (version 7, RFC 9562) as 32 hex digits.

Every event row is keyed by ``(workflow_id, seq)``. Random ids (version 4) put each new
workflow's rows on a random page of that index, so a commit of a few thousand appends touches
pages all over a journal that has grown, and its cost grows with the journal. Ids that increase
with time put the rows of the workflows running now side by side at the end of the index: a
commit touches few pages however large the journal is (see the README's Performance section).
"""

from __future__ import annotations

import os
import time
import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["new_workflow_id"]

_COUNTER_MAX = 0xFFF
"""The 12-bit ``rand_a`` field holds a counter within one millisecond (RFC 9562, method 1)."""
_last: tuple[int, int] = (0, 0)
"""The (millisecond, counter) of the last id made by :func:`_uuid7_hex`."""
_STDLIB_UUID7: Callable[[], uuid.UUID] | None = getattr(uuid, "uuid7", None)
"""``uuid.uuid7`` on Python 3.14 and later."""


def _uuid7_hex() -> str:
    """A version-7 UUID: 48 bits of Unix milliseconds, a 12-bit counter, 62 random bits.

    Ids made by this process increase strictly: within one millisecond the counter counts up,
    and should it run out (or the clock step back) the millisecond is borrowed from the next
    one. Across processes the 62 random bits keep them unique. Two threads racing here may make
    two ids out of order, never the same id.
    """
    global _last  # noqa: PLW0603 - the one piece of state: the last (ms, counter) handed out
    ms = time.time_ns() // 1_000_000
    last_ms, counter = _last
    if ms > last_ms:
        counter = 0
    else:
        ms, counter = last_ms, counter + 1
        if counter > _COUNTER_MAX:
            ms, counter = ms + 1, 0
    _last = (ms, counter)
    rand_b = int.from_bytes(os.urandom(8), "big") >> 2
    value = ms << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand_b
    return f"{value:032x}"


def new_workflow_id() -> str:
    """A fresh workflow id: a time-ordered UUID (version 7) as 32 lowercase hex digits.

    Python 3.14's ``uuid.uuid7()`` is used where it exists (it is monotonic within a process
    too); older Pythons use :func:`_uuid7_hex`, the same layout.
    """
    if _STDLIB_UUID7 is not None:
        return str(_STDLIB_UUID7().hex)
    return _uuid7_hex()
