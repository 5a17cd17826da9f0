"""Commands the engine emits for the runtime to carry out (imperative names).

Commands with a ``step`` are journaled as the matching ``*Scheduled``/``*Started`` event; the
others (cancellations) act on work the journal already holds. Commands are internal messages
from the engine to the runtime (not exported by ``flowcore``); all are frozen but
``ScheduleActivity``, the one made per activity call (see its docstring).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, final

from flowcore._frozen import quick_init

if TYPE_CHECKING:
    from flowcore._definitions import ActivityDef
    from flowcore.engine.events import Json
    from flowcore.errors import FailureInfo

__all__ = [
    "CancelActivity",
    "CancelChild",
    "CancelTimer",
    "CancelWorkflow",
    "Command",
    "CompleteWorkflow",
    "ContinueAsNew",
    "FailWorkflow",
    "ScheduleActivity",
    "SetCustomStatus",
    "StartChild",
    "StartTimer",
    "WaitForEvent",
]


@final
@dataclass(slots=True, kw_only=True)
class ScheduleActivity:
    """Run ``activity`` for command ``step`` and report its outcome back to the engine.

    Not frozen, unlike the other values (STYLE.md): one is made for every activity call, and a
    frozen dataclass sets each of its eight fields through ``object.__setattr__`` (17,000
    instructions per instance under callgrind, 6,800 unfrozen: 5% of a fan-out's cost per
    activity). It is internal: the engine makes it, the runtime reads it, no user sees it, and
    nothing may change it (``dataclasses.replace`` makes a recorded copy).
    """

    step: int
    """Command sequence number."""
    activity: ActivityDef[..., Any]
    """What to run."""
    args: tuple[Any, ...]
    """Positional arguments, as the workflow passed them."""
    kwargs: dict[str, Any]
    """Keyword arguments, as the workflow passed them."""
    encoded_args: Json
    """The arguments encoded for the journal (a list)."""
    encoded_kwargs: Json
    """The keyword arguments encoded for the journal (a dict or None)."""
    recorded: bool = False
    """True when the journal already holds the schedule (an in-flight activity found by replay)."""
    op: str = ""
    """The call's place in the program (``"3"``, ``"2.1.1"``): stable across replays whatever
    order concurrent outcomes arrive in, so it keys idempotency and remote task ids."""


@final
@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class StartTimer:
    """Report ``TimerFired(step)`` at ``fire_at`` (epoch seconds)."""

    step: int
    """Command sequence number."""
    fire_at: float
    """Absolute deadline."""
    recorded: bool = False
    """True when the journal already holds the timer (re-armed by recovery)."""


@final
@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class WaitForEvent:
    """The workflow waits for an external event; with a deadline, report ``TimerFired(step)``."""

    step: int
    """Command sequence number."""
    name: str
    """Event name."""
    deadline: float | None
    """Absolute time the wait gives up, or None."""
    recorded: bool = False
    """True when the journal already holds the wait (re-armed by recovery)."""


@final
@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class StartChild:
    """Start child workflow ``child_id`` and report its outcome back at ``step``."""

    step: int
    """Command sequence number."""
    workflow: str
    """Registered name of the child workflow."""
    version: str | None
    """Requested version, or None for the latest."""
    input: Json
    """Encoded payload."""
    child_id: str
    """The child's instance id."""
    recorded: bool = False
    """True when the journal already holds the start (re-attached by recovery)."""


@final
@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class SetCustomStatus:
    """Record a custom status value shown next to ``current_activity``."""

    step: int
    """Command sequence number."""
    value: Json
    """Encoded value."""


@final
@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class CancelTimer:
    """Disarm the timer (or event-wait deadline) of ``step``: its firing no longer matters."""

    step: int


@final
@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class CancelActivity:
    """Stop the running attempt of the activity at ``step``; its outcome no longer matters."""

    step: int


@final
@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class CancelChild:
    """Request cancellation of the child workflow started at ``step``."""

    step: int
    child_id: str


@final
@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class CompleteWorkflow:
    """The workflow returned ``result`` (already encoded)."""

    result: Json


@final
@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class FailWorkflow:
    """The workflow raised; ``failure`` describes it."""

    failure: FailureInfo


@final
@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class CancelWorkflow:
    """The workflow ended after a cancellation request."""

    reason: str | None
    """The reason given to ``cancel``."""
    result: Json = None
    """What the workflow returned after handling the cancellation, if it returned."""


@final
@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class ContinueAsNew:
    """End this run and start a fresh history under the same id with ``input``."""

    input: Json
    """Encoded payload of the next run."""
    version: str | None = None
    """Version of the next run; None keeps the current one."""


Command = (
    ScheduleActivity
    | StartTimer
    | WaitForEvent
    | StartChild
    | SetCustomStatus
    | CancelTimer
    | CancelActivity
    | CancelChild
    | CompleteWorkflow
    | FailWorkflow
    | CancelWorkflow
    | ContinueAsNew
)
"""Any command."""
