"""Live streams: Server-Sent Events of a workflow's new journal events, woken by commits.

The runtime calls a hook after each commit (``Core._commit_hook``); here it bumps a generation
counter and wakes every waiting stream, which then reads only the events after the last one
it sent. A stream never polls the journal on a timer: when nothing is committed it only sends a
keep-alive comment every ``heartbeat`` seconds. Each event carries ``id: <seq>`` (its journal
position), so a client that reconnects with ``Last-Event-ID`` gets exactly what it missed.
"""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from typing import TYPE_CHECKING, Final, final

import anyio

from flowcore._instance import TERMINAL_TYPES
from flowcore.engine.events import encode_event
from flowcore.web._queries import events_after

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from flowcore.engine.events import Event
    from flowcore.runtime import Runtime

__all__ = [
    "CommitSignal",
    "commit_signal",
    "end_streams",
    "journal_stream",
    "parse_last_event_id",
    "sse_event",
]

_MAX_POSITION: Final = 2**63 - 1
"""The largest position SQLite can compare with (its largest integer)."""
_MIN_READ_INTERVAL: Final = 0.05
"""Under a burst of commits a stream reads at most this often (one read catches them all)."""


@final
class CommitSignal:
    """Wakes waiters after each journal commit of one runtime."""

    __slots__ = ("_closed", "_waiter", "generation")

    def __init__(self) -> None:
        self.generation = 0
        """Bumped at each commit; a waiter that saw an older value returns at once."""
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called: streams end."""
        return self._closed

    def notify(self) -> None:
        """Record a commit and wake the waiters (called by the runtime; cheap when nobody waits)."""
        self.generation += 1
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        """End every stream of this runtime (before a server shuts down)."""
        self._closed = True
        self.notify()

    async def wait(self, seen: int, timeout: float) -> bool:
        """Wait for a commit after generation ``seen`` (or ``timeout`` s); True if one came."""
        if self.generation != seen:
            return True
        if self._waiter is None:
            self._waiter = asyncio.get_running_loop().create_future()
        with anyio.move_on_after(timeout):
            await asyncio.shield(self._waiter)
            return True
        return False


_signals: weakref.WeakKeyDictionary[Runtime, CommitSignal] = weakref.WeakKeyDictionary()


def commit_signal(runtime: Runtime) -> CommitSignal:
    """The runtime's commit signal, installing its hook on first use."""
    signal = _signals.get(runtime)
    if signal is None:
        signal = _signals[runtime] = CommitSignal()
        runtime._commit_hook = signal.notify  # noqa: SLF001 - the hook exists for this module
    return signal


def end_streams(runtime: Runtime) -> None:
    """End the live streams of ``runtime``, if any were ever opened (a server is stopping)."""
    signal = _signals.get(runtime)
    if signal is not None:
        signal.close()


def sse_event(seq: int, run: str, event: Event) -> str:
    """One SSE message: ``id`` is ``SEQ-RUN`` (position, run), ``data`` the row as JSON."""
    kind, data = encode_event(event)
    row = {"seq": seq, "kind": kind, "at": event.at, "data": json.loads(data)}
    return f"id: {seq}-{run}\ndata: {json.dumps(row)}\n\n"  # ASCII: any text can be sent


def parse_last_event_id(text: str, source: str = "Last-Event-ID") -> tuple[int, str | None]:
    """Split a ``Last-Event-ID`` (``SEQ-RUN``, or a bare ``SEQ``) into position and run.

    ``source`` names where the text came from, for the error (the header or ``?after``).

    Raises:
        ValueError: it is neither.
    """
    seq, _, run = text.strip().partition("-")
    if (
        not (seq.isascii() and seq.isdigit())
        or int(seq) > _MAX_POSITION
        or (run and not run.isalnum())
    ):
        raise ValueError(
            f"{source} must be the id of a streamed event (SEQ-RUN) or a position, not {text!r}"
        )
    return int(seq), run or None


async def journal_stream(
    runtime: Runtime, wid: str, after: int, run: str | None = None, *, heartbeat: float = 15.0
) -> AsyncIterator[str]:
    """Yield SSE text: the events of ``wid`` after position ``after``, then each new one live.

    Ends after the workflow's terminal event (with an ``end`` event), or when the signal is
    closed. ``run`` names the run ``after`` belongs to: if the history was replaced since
    (continue-as-new), a ``reset`` event says so and the new run streams from position 1.
    """
    signal = commit_signal(runtime)
    yield "retry: 1000\n\n"
    last_read = 0.0
    first = True
    while not signal.closed:
        seen = signal.generation
        pause = last_read + _MIN_READ_INTERVAL - time.monotonic()
        if pause > 0:
            await anyio.sleep(pause)
        last_read = time.monotonic()
        got = await events_after(runtime, wid, after)
        if got.last < after or (run is not None and got.run != run):
            yield f"event: reset\ndata: {json.dumps({'seq': got.last})}\n\n"
            after, run = 0, got.run
            continue
        run = got.run
        if not got.events and first and (await runtime.status(wid)).is_finished:
            yield _end(after, "already finished")
            return
        first = False
        for seq, event in got.events:
            yield sse_event(seq, run, event)
            after = seq
            if isinstance(event, TERMINAL_TYPES):
                yield _end(seq, event.kind)
                return
        if not await signal.wait(seen, heartbeat):
            yield ": keep-alive\n\n"


def _end(seq: int, kind: str) -> str:
    return f"event: end\ndata: {json.dumps({'seq': seq, 'kind': kind})}\n\n"
