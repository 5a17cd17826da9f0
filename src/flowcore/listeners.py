"""Listeners: who hears about workflow progress, and the durable outbox they report through.

A :class:`Listener` is handed every journal append of the runtime *before* it is submitted
(synchronously, on the event loop) and returns the :class:`OutboxRecord` messages that append
causes. The records are committed in the same transaction as the events, so a report can never be
lost nor be sent for events that were not committed. A sender (run by the listener itself, e.g.
:class:`flowcore.orchestra.OrchestraReporter`) reads them back from an :class:`OutboxStore` (both
journals are one), delivers them and acknowledges them, which deletes them.

The core calls only the helpers of this module; it never imports a concrete listener.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from flowcore.journal.base import Append, OutboxEntry, OutboxRecord

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Sequence

    from structlog.typing import FilteringBoundLogger

    from flowcore.abc import Journal
    from flowcore.engine.events import Event

__all__ = [
    "Listener",
    "OutboxEntry",
    "OutboxRecord",
    "OutboxStore",
    "collect",
    "notify_committed",
    "notify_recovered",
]


class Listener(Protocol):
    """Hears about a runtime's journal appends; may commit outbox records with them.

    Every method is called by the runtime on its event loop. ``journaling``, ``recovered`` and
    ``committed`` must be quick and must not do I/O; an exception they raise is logged and
    ignored (a listener never fails a workflow). One raised by ``open`` fails the runtime's open.
    """

    async def open(self, journal: Journal) -> None:
        """The runtime opened ``journal`` (before recovery): start senders here."""
        ...

    def recovered(
        self, workflow_id: str, history: Sequence[Event]
    ) -> Sequence[OutboxRecord] | None:
        """An unfinished workflow was recovered with this history (to rebuild listener state).

        Return the records its resumption causes (e.g. a report that it runs again), or None.
        They commit before anything the recovered workflow does next.
        """
        ...

    def journaling(self, op: Append) -> Sequence[OutboxRecord]:
        """``op`` is about to be submitted; return the records to commit with it (or none)."""
        ...

    def committed(self) -> None:
        """An op holding outbox records committed: new records are there to send."""
        ...

    async def close(self) -> None:
        """The runtime is closing (its journal is still open): stop senders, bounded in time."""
        ...


@runtime_checkable
class OutboxStore(Protocol):
    """Where a sender reads committed outbox records and acknowledges delivered ones."""

    async def outbox(self, channel: str, *, limit: int = 100) -> list[OutboxEntry]:
        """The oldest unacknowledged records of ``channel``, in commit order."""
        ...

    async def ack_outbox(self, ids: Sequence[int]) -> None:
        """Delete delivered records; durable once this returns."""
        ...


def collect(listeners: Sequence[Listener], op: Append, log: FilteringBoundLogger) -> Append:
    """Ask every listener for the records ``op`` causes; return ``op`` carrying them."""
    records: list[OutboxRecord] = []
    for listener in listeners:
        try:
            records.extend(listener.journaling(op))
        except Exception:
            log.exception("listener failed; its report is skipped", workflow_id=op.workflow_id)
    if not records:
        return op
    return dataclasses.replace(op, outbox=(*op.outbox, *records))


def notify_committed(
    listeners: Sequence[Listener], commit: asyncio.Future[None], log: FilteringBoundLogger
) -> None:
    """Wake the listeners' senders once ``commit`` (an op holding records) succeeded.

    A listener that raises is logged and skipped: the others are still woken.
    """

    def done(future: asyncio.Future[None]) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        for listener in listeners:
            try:
                listener.committed()
            except Exception:
                log.exception("listener failed on commit")

    commit.add_done_callback(done)


def notify_recovered(
    listeners: Sequence[Listener],
    workflow_id: str,
    history: Sequence[Event],
    log: FilteringBoundLogger,
) -> tuple[OutboxRecord, ...]:
    """Tell every listener about a recovered workflow; return the records they want committed.

    A listener that raises is logged and skipped.
    """
    records: list[OutboxRecord] = []
    for listener in listeners:
        try:
            records.extend(listener.recovered(workflow_id, history) or ())
        except Exception:
            log.exception("listener failed on recovery", workflow_id=workflow_id)
    return tuple(records)
