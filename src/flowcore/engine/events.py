"""Journal event types: the vocabulary of a workflow's history, and their JSON row encoding.

Each event is a frozen dataclass with a stable wire name in ``kind`` (never the class name).
Payload fields (``input``, ``args``, ``result`` ...) hold already-encoded JSON values, so an event
is plain data: it can be journaled, compared and replayed without the user's types.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import TYPE_CHECKING, Any, ClassVar, Final

from flowcore._frozen import quick_init

if TYPE_CHECKING:
    from collections.abc import Callable

from flowcore.errors import FailureInfo, JournalCorruptError

__all__ = [
    "EVENT_TYPES",
    "ActivityAttemptFailed",
    "ActivityCompleted",
    "ActivityFailed",
    "ActivityScheduled",
    "CancelRequested",
    "ChildCompleted",
    "ChildFailed",
    "ChildScheduled",
    "CustomStatusSet",
    "Event",
    "EventReceived",
    "EventWaitStarted",
    "Json",
    "TimerFired",
    "TimerScheduled",
    "WorkflowCanceled",
    "WorkflowCompleted",
    "WorkflowFailed",
    "WorkflowParked",
    "WorkflowResumed",
    "WorkflowStarted",
    "WorkflowSuspended",
    "WorkflowTerminated",
    "decode_event",
    "encode_event",
    "encode_event_data",
    "json_text",
]

Json = Any
"""A JSON-compatible value (None, bool, int, float, str, list, dict with str keys)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _EventBase:
    kind: ClassVar[str]
    at: float
    """When the event happened: seconds since the epoch, UTC (what ``flowcore.now()`` reports)."""


RUN_SEEDED: Final = "run_seeded"
"""A :class:`WorkflowStarted` flag: the run's random generator (``flowcore.uuid4()``,
``flowcore.random()``) is seeded by the workflow id and the run number, so each run of a workflow
that continues as new draws new values. Runs journaled without it keep the id-only seed."""


@quick_init
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
    run: int = 1
    """Which run of the instance this is: 1, then one more at each continue-as-new. Runs after
    the first prefix their op names (``r2.1``), so idempotency keys and default child ids never
    repeat across runs."""


@quick_init
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
    op: str = ""
    """The call's place in the program (what its idempotency key is built from)."""


@quick_init
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


@quick_init
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


@quick_init
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


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowCompleted(_EventBase):
    """The workflow returned."""

    kind: ClassVar[str] = "workflow_completed"
    result: Json = None
    """Encoded return value."""


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowFailed(_EventBase):
    """The workflow raised."""

    kind: ClassVar[str] = "workflow_failed"
    failure: FailureInfo
    """What it raised."""


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowParked(_EventBase):
    """Replay found the code nondeterministic; the instance waits for fixed code (not replayed)."""

    kind: ClassVar[str] = "workflow_parked"
    reason: str
    """The NondeterminismError's message."""
    step: int = 0
    """The step where the code diverged."""


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class TimerScheduled(_EventBase):
    """The workflow sleeps until ``fire_at`` (a durable timer, step ``step``)."""

    kind: ClassVar[str] = "timer_scheduled"
    step: int
    """Command sequence number."""
    fire_at: float
    """Absolute deadline, epoch seconds: downtime counts against it."""


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class TimerFired(_EventBase):
    """The timer (or event-wait deadline) of ``step`` expired."""

    kind: ClassVar[str] = "timer_fired"
    step: int
    """Step of the timer or of the event wait."""


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class EventWaitStarted(_EventBase):
    """The workflow waits for an external event ``name`` (until ``deadline``, if set)."""

    kind: ClassVar[str] = "event_wait_started"
    step: int
    """Command sequence number."""
    name: str
    """Event name."""
    deadline: float | None = None
    """When the wait gives up (epoch seconds), or None."""


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class EventReceived(_EventBase):
    """An external event arrived; waits on its name consume such events first in, first out."""

    kind: ClassVar[str] = "event_received"
    name: str
    """Event name."""
    payload: Json = None
    """Encoded payload."""


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class ChildScheduled(_EventBase):
    """The workflow started child workflow ``child_id`` at ``step``."""

    kind: ClassVar[str] = "child_scheduled"
    step: int
    """Command sequence number."""
    name: str
    """Registered name of the child workflow."""
    child_id: str
    """The child's instance id."""
    version: str | None = None
    """Requested version (None: the latest)."""
    input: Json = None
    """Encoded payload."""


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class ChildCompleted(_EventBase):
    """The child workflow of ``step`` returned."""

    kind: ClassVar[str] = "child_completed"
    step: int
    """Step of the ChildScheduled event."""
    result: Json = None
    """Encoded return value."""


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class ChildFailed(_EventBase):
    """The child workflow of ``step`` failed, was canceled or terminated."""

    kind: ClassVar[str] = "child_failed"
    step: int
    """Step of the ChildScheduled event."""
    failure: FailureInfo
    """Why."""
    canceled: bool = False
    """True when it ended canceled or terminated."""


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class CustomStatusSet(_EventBase):
    """``flowcore.set_status(value)`` was called at ``step``."""

    kind: ClassVar[str] = "custom_status_set"
    step: int
    """Command sequence number."""
    value: Json = None
    """Encoded value."""


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class CancelRequested(_EventBase):
    """``cancel()`` was called: the workflow's current awaits raise WorkflowCanceledError."""

    kind: ClassVar[str] = "cancel_requested"
    reason: str | None = None
    """Why, as given to cancel()."""


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowSuspended(_EventBase):
    """``suspend()`` was called: events queue up, nothing makes progress until resumed."""

    kind: ClassVar[str] = "workflow_suspended"


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowResumed(_EventBase):
    """``resume()`` was called: queued events are applied in order."""

    kind: ClassVar[str] = "workflow_resumed"


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowCanceled(_EventBase):
    """The workflow ended after a cancellation request."""

    kind: ClassVar[str] = "workflow_canceled"
    reason: str | None = None
    """The reason given to cancel()."""
    result: Json = None
    """What the workflow returned after handling the cancellation, if anything."""


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowTerminated(_EventBase):
    """``terminate()`` ended the workflow at once, without running its cleanup."""

    kind: ClassVar[str] = "workflow_terminated"
    reason: str | None = None
    """Why, as given to terminate()."""


Event = (
    WorkflowStarted
    | ActivityScheduled
    | ActivityAttemptFailed
    | ActivityCompleted
    | ActivityFailed
    | WorkflowCompleted
    | WorkflowFailed
    | WorkflowParked
    | TimerScheduled
    | TimerFired
    | EventWaitStarted
    | EventReceived
    | ChildScheduled
    | ChildCompleted
    | ChildFailed
    | CustomStatusSet
    | CancelRequested
    | WorkflowSuspended
    | WorkflowResumed
    | WorkflowCanceled
    | WorkflowTerminated
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
        TimerScheduled,
        TimerFired,
        EventWaitStarted,
        EventReceived,
        ChildScheduled,
        ChildCompleted,
        ChildFailed,
        CustomStatusSet,
        CancelRequested,
        WorkflowSuspended,
        WorkflowResumed,
        WorkflowCanceled,
        WorkflowTerminated,
    )
}
"""Wire name -> event class. Names are persisted: never rename one."""

_CHECKED: Final = json.JSONEncoder(separators=(",", ":"))
_checked_text: Final = _CHECKED.encode
_c_encoder: Final = (
    None
    if c_make_encoder is None
    else c_make_encoder(  # the arguments JSONEncoder.iterencode passes, for _CHECKED's options
        None,  # markers: no circular-reference bookkeeping (see json_text)
        _CHECKED.default,
        encode_basestring_ascii,
        _CHECKED.indent,
        _CHECKED.key_separator,
        _CHECKED.item_separator,
        _CHECKED.sort_keys,
        _CHECKED.skipkeys,
        _CHECKED.allow_nan,
    )
)
"""The C encoder ``_CHECKED.encode`` builds at every call, built once."""


def json_text(value: Any) -> str:
    r"""Compact, ASCII-only JSON text of a value.

    ASCII: a string holding a lone surrogate (from an exception message, a decoded file name ...)
    is stored as its ``\ud800`` escape and read back as it was, where UTF-8 text would fail the
    commit (and stop the runtime). Byte for byte what ``json.JSONEncoder(separators=(",", ":"))``
    writes, without building an encoder per call (which showed in the hot path's profile). A
    cycle ends in RecursionError without the bookkeeping that detects it; the checking encoder
    then writes the value again, to raise the same ValueError as ever.
    """
    if _c_encoder is None:  # pragma: no cover - CPython always has the C accelerator
        return _checked_text(value)
    try:
        return "".join(_c_encoder(value, 0))
    except RecursionError:
        return _checked_text(value)  # a cycle: ValueError("Circular reference detected")


_OMITTED_AT_DEFAULT: dict[str, Any] = {"run": 1}
"""Fields added later: left out at their default, so older readers still decode the event."""

_INF: Final = float("inf")

_FIELD_TEXT: Final[dict[str, str]] = {
    "int": "str({v}) if type({v}) is int else _j({v})",
    "str": "_s({v}) if type({v}) is str else _j({v})",
    "str | None": "'null' if {v} is None else _s({v}) if type({v}) is str else _j({v})",
    "bool": "'true' if {v} is True else 'false' if {v} is False else _j({v})",
    "float": "repr({v}) if type({v}) is float and -_INF < {v} < _INF else _j({v})",
    "float | None": (
        "'null' if {v} is None else repr({v}) if type({v}) is float and -_INF < {v} < _INF "
        "else _j({v})"
    ),
    "Json": "'null' if {v} is None else str({v}) if type({v}) is int else _j({v})",
    "FailureInfo": "_j({v}.to_json() if isinstance({v}, _FailureInfo) else {v})",
}
"""Per field annotation: an expression writing the JSON text of value ``{v}`` as ``json_text``
would inside the event's object. Values of the exact annotated type take a shortcut (a str's
ASCII escape, an int's or a finite float's repr); anything else goes through ``json_text``."""


def _data_encoder(cls: type[Any]) -> Callable[[Any], str]:
    """Make the function writing the ``data`` column of ``cls``'s events (see encode_event_data).

    The function is generated, like a dataclass ``__init__``: it reads each field and writes the
    JSON object text in one f-string, with no intermediate dict, tuple or zip per event. Its
    output is byte for byte what ``json_text`` writes for the dict of the event's fields (but
    ``at``), ``FailureInfo`` fields as their ``to_json()`` and fields of ``_OMITTED_AT_DEFAULT``
    left out when equal to their default (tests/engine/test_event_encoding.py pins it).
    """
    lines = ["def encode(event):"]
    pieces: list[str] = []
    for number, f in enumerate(fields(cls)):
        if f.name == "at":
            continue
        var = f"v{number}"
        expression = _FIELD_TEXT.get(str(f.type), "_j({v})").format(v=var)
        lines.append(f"    {var} = event.{f.name}")
        member = f',"{f.name}":' if pieces else f'"{f.name}":'
        if f.name in _OMITTED_AT_DEFAULT:
            if not pieces:  # its comma would then belong to the next field
                msg = f"{cls.__name__}.{f.name} may be left out, so it cannot be the first field"
                raise TypeError(msg)
            default = f"_default_{f.name}"
            lines.append(f"    {var} = '' if {var} == {default} else {member!r} + ({expression})")
            pieces.append(f"{{{var}}}")
        else:
            lines.append(f"    {var} = {expression}")
            pieces.append(f"{member}{{{var}}}")
    text = "".join(pieces).replace('"', '\\"')
    lines.append(f'    return f"{{{{{text}}}}}"')
    namespace: dict[str, Any] = {
        "_j": json_text,
        "_s": encode_basestring_ascii,
        "_INF": _INF,
        "_FailureInfo": FailureInfo,
        **{f"_default_{name}": value for name, value in _OMITTED_AT_DEFAULT.items()},
    }
    exec("\n".join(lines), namespace)  # noqa: S102 - source built above from field names only
    encode: Callable[[Any], str] = namespace["encode"]
    encode.__qualname__ = f"encode_{cls.kind}"
    return encode


_DATA_ENCODERS: Final[dict[type[Any], Callable[[Any], str]]] = {
    cls: _data_encoder(cls) for cls in EVENT_TYPES.values()
}


def encode_event_data(event: Event) -> str:
    """The ``data`` column of an event: its fields but ``at`` as one JSON object.

    ``FailureInfo`` fields are stored as their JSON form, ``run`` is left out at its default.
    """
    return _DATA_ENCODERS[type(event)](event)


def encode_event(event: Event) -> tuple[str, str]:
    """Encode an event as its ``(kind, data)`` journal columns (``at`` is stored apart)."""
    return event.kind, encode_event_data(event)


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
