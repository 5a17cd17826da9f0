"""Journal event types: the vocabulary of a workflow's history, and their JSON row encoding.

Each event is a frozen dataclass with a stable wire name in ``kind`` (never the class name).
Payload fields (``input``, ``args``, ``result`` ...) hold already-encoded JSON values, so an event
is plain data: it can be journaled, compared and replayed without the user's types.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from flowcore.errors import FailureInfo, JournalCorruptError

__all__ = [
    "EVENT_TYPES",
    "ActivityAttemptFailed",
    "ActivityCompleted",
    "ActivityFailed",
    "ActivityScheduled",
    "Event",
    "Json",
    "WorkflowCompleted",
    "WorkflowFailed",
    "WorkflowParked",
    "WorkflowStarted",
    "decode_event",
    "encode_event",
]

Json = Any
"""A JSON-compatible value (None, bool, int, float, str, list, dict with str keys)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _EventBase:
    kind: ClassVar[str]
    at: float
    """When the event happened: seconds since the epoch, UTC (what ``flowcore.now()`` reports)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowStarted(_EventBase):
    """The first event of every history: which code to run, and its input."""

    kind: ClassVar[str] = "workflow_started"
    name: str
    """Registered workflow name."""
    version: str
    """Version of the workflow code the instance started with."""
    input: Json = None
    """Encoded payload."""
    parent_id: str | None = None
    """The id of the parent workflow, for a child."""
    flags: tuple[str, ...] = ()
    """Engine behaviour flags in force when the instance started (for safe replay-rule changes)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityScheduled(_EventBase):
    """The workflow asked for an activity at command number ``step``."""

    kind: ClassVar[str] = "activity_scheduled"
    step: int
    """Command sequence number."""
    name: str
    """Registered activity name."""
    args: Json = None
    """Encoded positional arguments (a list)."""
    kwargs: Json = None
    """Encoded keyword arguments (a dict), or None."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityAttemptFailed(_EventBase):
    """One attempt of an activity failed and another is due at ``retry_at``; replay ignores it."""

    kind: ClassVar[str] = "activity_attempt_failed"
    step: int
    """Step of the scheduling event."""
    attempt: int
    """The attempt that failed, from 1."""
    failure: FailureInfo
    """Why it failed."""
    retry_at: float
    """Absolute time (epoch seconds) of the next attempt."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityCompleted(_EventBase):
    """An activity returned; its result is recorded once."""

    kind: ClassVar[str] = "activity_completed"
    step: int
    """Step of the scheduling event."""
    result: Json = None
    """Encoded return value."""
    attempt: int = 1
    """The attempt that succeeded."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityFailed(_EventBase):
    """An activity failed for good (attempts exhausted or a non-retryable error)."""

    kind: ClassVar[str] = "activity_failed"
    step: int
    """Step of the scheduling event."""
    failure: FailureInfo
    """The last attempt's failure."""
    attempts: int = 1
    """How many attempts ran."""
    timed_out: bool = False
    """True when the last attempt exceeded its timeout."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowCompleted(_EventBase):
    """The workflow returned."""

    kind: ClassVar[str] = "workflow_completed"
    result: Json = None
    """Encoded return value."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowFailed(_EventBase):
    """The workflow raised."""

    kind: ClassVar[str] = "workflow_failed"
    failure: FailureInfo
    """What it raised."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowParked(_EventBase):
    """Replay found the code nondeterministic; the instance waits for fixed code (not replayed)."""

    kind: ClassVar[str] = "workflow_parked"
    reason: str
    """The NondeterminismError's message."""
    step: int = 0
    """The step where the code diverged."""


Event = (
    WorkflowStarted
    | ActivityScheduled
    | ActivityAttemptFailed
    | ActivityCompleted
    | ActivityFailed
    | WorkflowCompleted
    | WorkflowFailed
    | WorkflowParked
)
"""Any journal event."""

EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (
        WorkflowStarted,
        ActivityScheduled,
        ActivityAttemptFailed,
        ActivityCompleted,
        ActivityFailed,
        WorkflowCompleted,
        WorkflowFailed,
        WorkflowParked,
    )
}
"""Wire name -> event class. Names are persisted: never rename one."""

_FIELDS: dict[type[Any], tuple[str, ...]] = {
    cls: tuple(f.name for f in fields(cls) if f.name != "at") for cls in EVENT_TYPES.values()
}


def encode_event(event: Event) -> tuple[str, str]:
    """Encode an event as its ``(kind, data)`` journal columns (``at`` is stored apart)."""
    data: dict[str, Any] = {}
    for name in _FIELDS[type(event)]:
        value = getattr(event, name)
        if isinstance(value, FailureInfo):
            value = value.to_json()
        elif isinstance(value, tuple):
            value = list(value)
        data[name] = value
    return event.kind, json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def decode_event(kind: str, data: str, at: float) -> Event:
    """Decode a journal row back into its event.

    Raises:
        JournalCorruptError: the kind is unknown or the data does not fit it.
    """
    cls = EVENT_TYPES.get(kind)
    if cls is None:
        msg = (
            f"unknown journal event kind {kind!r}: the journal was written by a newer flowcore or "
            "is damaged; upgrade flowcore or restore the database from a backup"
        )
        raise JournalCorruptError(msg)
    try:
        raw = json.loads(data)
        if "failure" in raw:
            raw["failure"] = FailureInfo.from_json(raw["failure"])
        if "flags" in raw:
            raw["flags"] = tuple(raw["flags"])
        return cls(at=at, **raw)
    except (ValueError, TypeError, KeyError) as exc:
        msg = f"journal event of kind {kind!r} cannot be decoded ({exc}); the database is damaged"
        raise JournalCorruptError(msg) from exc
