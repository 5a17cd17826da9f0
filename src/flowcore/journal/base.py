"""The journal protocol: what the runtime needs from an event store, and the values it exchanges."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, final

from flowcore._frozen import quick_init

if TYPE_CHECKING:
    import builtins
    from collections.abc import Awaitable, Sequence

    from flowcore._status import WorkflowState, WorkflowStatus
    from flowcore.engine.events import Event

__all__ = ["Append", "Durability", "Journal", "OutboxEntry", "OutboxRecord", "StatusRow"]

Durability = Literal["full", "normal"]
"""``full``: fsync every commit (nothing acknowledged is lost on power loss);
``normal``: WAL without fsync per commit (safe against process crashes, not power loss)."""


@final
@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class StatusRow:
    """One row of the ``workflows`` status table, exactly as stored."""

    id: str
    """The instance id."""
    name: str
    """Registered workflow name."""
    version: str
    """Workflow version."""
    status: str
    """A ``WorkflowState`` value."""
    input: str | None
    """JSON text of the input payload."""
    output: str | None
    """JSON text of the result."""
    error: str | None
    """Failure or park reason."""
    current_activity: str | None
    """Latest pending activity name."""
    created_at: float
    """Epoch seconds."""
    updated_at: float
    """Epoch seconds."""
    parent_id: str | None
    """Parent instance id."""
    custom_status: str | None = None
    """JSON text of the value last given to ``flowcore.set_status()``."""


# -- outbox (listeners, see flowcore.listeners) -----------------------------------------------


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxRecord:
    """A message a listener wants sent, committed in the transaction of the events causing it."""

    channel: str
    """Which sender reads it (e.g. ``"orchestra"``)."""
    key: str
    """Ordering key: a sender delivers the records of one key in commit order."""
    body: str
    """The message (JSON text). Never a secret: the journal is a plain file."""


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxEntry:
    """A committed outbox record not yet acknowledged, as a sender reads it."""

    id: int
    """Position in the outbox: increases in commit order."""
    channel: str
    """The sender's channel."""
    key: str
    """The ordering key."""
    workflow_id: str
    """The workflow whose events produced it."""
    body: str
    """The message."""


# -- end outbox -------------------------------------------------------------------------------


@final
@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class Append:
    """A unit of work for the writer: events of one workflow plus its status row after them."""

    workflow_id: str
    """Which workflow."""
    first_seq: int
    """Journal position of ``events[0]``; a workflow's positions are contiguous from 1."""
    events: Sequence[Event]
    """Events to append, in order (may be empty to update only the row)."""
    row: StatusRow
    """The status row as it is after these events."""
    create: bool = False
    """True for a workflow's first append (WorkflowAlreadyExistsError if the id exists)."""
    reset: bool = False
    """Replace the workflow's whole history: its events are deleted and these are written from
    seq 1, in the same transaction.

    Used for continue-as-new. The workflow must exist (WorkflowNotFoundError otherwise),
    ``first_seq`` must be 1 and ``events`` must not be empty. Events that earlier ops of the same
    batch appended to this workflow are wiped with the rest; later ops continue the new history
    from ``len(events) + 1``. The row's ``created_at`` stays the first run's.
    """
    consumed: tuple[int, ...] = ()
    """Ids of ``inbox`` requests this op carries out (journals without an inbox ignore them).

    They are deleted in the transaction that writes the op, so a request takes effect exactly
    once; a refused op deletes nothing."""
    outbox: tuple[OutboxRecord, ...] = ()
    """Outbox records (from listeners) written in the transaction that writes the op, in order;
    a refused op writes none."""


class Journal(Protocol):
    """An append-only event store with a status projection, owned by one runtime at a time."""

    @property
    def path(self) -> str:
        """Where the journal lives (for messages)."""
        ...

    async def open(self) -> None:
        """Open (creating if needed), check the schema and take ownership.

        Raises:
            JournalLockedError: another runtime owns it.
            JournalCorruptError: it is not a flowcore journal; it is left untouched.
            SchemaVersionError: a newer flowcore wrote it.
        """
        ...

    async def close(self) -> None:
        """Commit what is queued, stop the writer and release ownership."""
        ...

    def submit(self, op: Append) -> Awaitable[None]:
        """Queue ``op`` for the next group commit; the result resolves once it is durable.

        Ops are committed in submission order: once an op is durable, so is every op submitted
        before it. The awaitable raises WorkflowAlreadyExistsError for a ``create`` op whose id
        exists, WorkflowNotFoundError for another op whose id does not, JournalError for an op
        that does not continue its workflow's history (other ops of the batch still commit), and
        JournalError if the commit failed.
        """
        ...

    async def history(self, workflow_id: str) -> list[Event]:
        """All events of a workflow in journal order (empty if unknown)."""
        ...

    async def status(self, workflow_id: str) -> WorkflowStatus | None:
        """The status row of a workflow, or None if unknown."""
        ...

    async def read_many(
        self, workflow_ids: Sequence[str]
    ) -> dict[str, tuple[builtins.list[Event], WorkflowStatus]]:
        """The history and status row of each of ``workflow_ids`` that exists, in a few reads.

        Recovery reads the unfinished instances with it, not with two round trips each.
        """
        ...

    async def list(
        self,
        *,
        name: str | None = None,
        status: WorkflowState | str | None = None,
        limit: int = 100,
    ) -> builtins.list[WorkflowStatus]:
        """Status rows, newest first, filtered by name and status."""
        ...

    async def unfinished(self) -> builtins.list[str]:
        """Ids of instances not in a terminal state, oldest first (what recovery replays)."""
        ...
