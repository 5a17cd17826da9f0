"""Ambient helpers for workflow and activity code, found through context variables.

Inside a workflow, ``gather``, ``now``, ``uuid4``, ``random`` and ``info`` talk to the engine that
drives the coroutine; they are deterministic under replay. Inside an activity, ``info`` and
``activity_info`` describe the running attempt.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import (
    TYPE_CHECKING,
    Any,
    Final,
    Literal,
    NoReturn,
    Protocol,
    TypeVar,
    cast,
    final,
    overload,
)

from flowcore._status import from_timestamp
from flowcore.engine._traps import (
    ChildTrap,
    First,
    FirstTrap,
    GatherTrap,
    ScheduleActivityTrap,
    TimerTrap,
    WaitEventTrap,
    yield_trap,
)
from flowcore.errors import InvalidArgumentError, WorkflowMisuseError

if TYPE_CHECKING:
    import random as _random
    from collections.abc import Awaitable, Callable

    from flowcore.backends.base import CancelFlag

__all__ = [
    "ContinueAsNewSignal",
    "Info",
    "activity_info",
    "child",
    "continue_as_new",
    "first",
    "gather",
    "in_workflow",
    "info",
    "now",
    "random",
    "set_status",
    "sleep",
    "sleep_until",
    "uuid4",
    "wait_event",
]

T = TypeVar("T")
T1 = TypeVar("T1")
T2 = TypeVar("T2")
T3 = TypeVar("T3")


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class Info:
    """What the running workflow or activity attempt is."""

    workflow_id: str
    """The workflow instance id."""
    workflow_name: str
    """The workflow's registered name."""
    version: str
    """The workflow version this instance started with (branch on it to evolve code)."""
    parent_id: str | None = None
    """The parent workflow's id, for a child."""
    is_replaying: bool = False
    """True while the engine replays history (use only to silence side effects like logs)."""
    activity: str | None = None
    """Inside an activity: its registered name."""
    step: int | None = None
    """Inside an activity: the command number of its schedule."""
    attempt: int | None = None
    """Inside an activity: the attempt number, from 1."""
    op: str | None = None
    """Inside an activity: the call's place in the program (``"3"``, ``"2.1.1"``): the same on
    every replay, whatever order concurrent branches run in."""
    _cancel: CancelFlag | None = field(default=None, repr=False, compare=False)

    @property
    def idempotency_key(self) -> str | None:
        """Inside an activity: ``workflow_id/op/attempt``, stable across a crash and recovery.

        In a plain chain ``op`` is the step number (``order-42/3/1``); inside gather branches it
        names the branch (``order-42/1.2.1/1``), so no two calls ever share a key.
        """
        if self.step is None:
            return None
        return f"{self.workflow_id}/{self.op or self.step}/{self.attempt}"

    @property
    def cancelled(self) -> bool:
        """Inside an activity: True once its workflow asked it to stop (poll it in long loops)."""
        return self._cancel is not None and self._cancel.is_set()

    @property
    def operation_key(self) -> str | None:
        """Inside an activity: ``workflow_id/op``, the same for every attempt (dedupe retries)."""
        if self.step is None:
            return None
        return f"{self.workflow_id}/{self.op or self.step}"


class WorkflowContext(Protocol):
    """What the engine exposes to ambient helpers while it drives a workflow."""

    calls: list[ScheduleActivityTrap] | None
    """Activity calls made and not yet awaited (None while there is none): an activity call
    appends itself, and the engine warns of one dropped without an await."""

    def set_custom_status(self, value: Any) -> None:
        """Journal a custom status value."""
        ...

    def next_run_input(self, payload: Any) -> Any:
        """Encode the input of the next run (continue-as-new); PayloadError if it cannot be."""
        ...

    def now(self) -> float:
        """Epoch seconds of the event being processed."""
        ...

    def rng(self) -> _random.Random:
        """The workflow's deterministic random generator."""
        ...

    def info(self) -> Info:
        """The running workflow's description."""
        ...


_workflow: ContextVar[WorkflowContext | None] = ContextVar("flowcore_workflow", default=None)
_activity: ContextVar[Info | Callable[[], Info] | None] = ContextVar(
    "flowcore_activity", default=None
)


enter_workflow: Final = _workflow.set
"""Engine hook: make a workflow context the ambient one; returns the token that
:data:`exit_workflow` takes to undo it. The context variable's own method: no Python frame at
each step of a workflow."""

exit_workflow: Final = _workflow.reset
"""Engine hook: undo :data:`enter_workflow`, given its token."""

enter_activity: Final = _activity.set
"""Backend hook: describe the running activity attempt; returns the token that
:data:`exit_activity` takes to undo it. The description may be a function that builds it when
first asked for: most activities never ask, and building it for each call showed in the hot
path's profile."""

exit_activity: Final = _activity.reset
"""Backend hook: undo :data:`enter_activity`, given its token."""


def in_workflow() -> bool:
    """Tell whether the caller runs inside a workflow driven by flowcore's engine."""
    return _workflow.get() is not None


current_workflow: Final = _workflow.get
"""Engine hook: the running workflow's context, or None outside a workflow (the context
variable's own method: no Python frame at each activity call)."""


def _require(helper: str) -> WorkflowContext:
    ctx = _workflow.get()
    if ctx is None:
        raise WorkflowMisuseError(
            f"flowcore.{helper}() was called outside a workflow; call it from the body of an "
            "@flowcore.workflow function (or code it awaits)",
            workflow_id="",
        )
    return ctx


schedule_activity: Final = ScheduleActivityTrap
"""Engine hook used by ActivityDef: ``schedule_activity(defn, args, kwargs)`` is the awaitable
of a journaled activity call (the trap itself: no Python frame per call)."""


@overload
async def gather(
    a1: Awaitable[T1], /, *, return_exceptions: Literal[False] = False
) -> list[T1]: ...
@overload
async def gather(
    a1: Awaitable[T1], a2: Awaitable[T2], /, *, return_exceptions: Literal[False] = False
) -> list[T1 | T2]: ...
@overload
async def gather(
    a1: Awaitable[T1],
    a2: Awaitable[T2],
    a3: Awaitable[T3],
    /,
    *,
    return_exceptions: Literal[False] = False,
) -> list[T1 | T2 | T3]: ...
@overload
async def gather(
    *awaitables: Awaitable[T], return_exceptions: Literal[False] = False
) -> list[T]: ...
@overload
async def gather(
    *awaitables: Awaitable[T], return_exceptions: Literal[True]
) -> list[T | Exception]: ...
async def gather(*awaitables: Awaitable[Any], return_exceptions: bool = False) -> list[Any]:
    """Run activity calls and sub-coroutines concurrently; return their results in argument order.

    Inside a workflow the branches interleave deterministically; the first exception is raised
    (the other branches still run to their end, their results ignored, unless the workflow ends
    first: then they stop where they are). With ``return_exceptions=True`` the gather waits for
    every branch and a branch's exception takes the place of its result, so that each branch's
    outcome can be seen (a saga compensating every step that succeeded); the workflow's own
    cancellation is still raised. Outside a workflow this is ``asyncio.gather``.
    """
    if _workflow.get() is None:
        return list(await asyncio.gather(*awaitables, return_exceptions=return_exceptions))
    _check_awaitables("gather", awaitables)
    return list(await yield_trap(GatherTrap(tuple(awaitables), return_exceptions)))


def _check_awaitables(helper: str, awaitables: tuple[object, ...]) -> None:
    """Refuse, before anything starts, an argument of gather()/first() that cannot be awaited.

    Raises:
        InvalidArgumentError: naming the argument and the likely fix.
    """
    for index, aw in enumerate(awaitables):
        if type(aw) is ScheduleActivityTrap or hasattr(aw, "__await__"):
            continue
        if isinstance(aw, (list, tuple, set)):
            aw = f"a {type(aw).__name__} of {len(aw)}"  # noqa: PLW2901 - described, not awaited
            fix = f"unpack it: flowcore.{helper}(*calls)"
        elif callable(aw):
            fix = "call it: pass activity(args) or workflow_coroutine(args), not the function"
        else:
            fix = "pass activity calls, coroutines or other flowcore awaitables"
        what = aw if isinstance(aw, str) else repr(aw)
        msg = f"flowcore.{helper}() argument {index} is {what}, which cannot be awaited; {fix}"
        raise InvalidArgumentError(msg)


def now() -> datetime:
    """The workflow's current time: when the event being processed happened (aware, UTC).

    Replay gives the same value, so use it instead of ``datetime.now()`` in workflows.
    """
    return from_timestamp(_require("now").now())


def random() -> float:
    """A deterministic random float in [0, 1), seeded by the workflow id and its run."""
    return _require("random").rng().random()


def uuid4() -> uuid.UUID:
    """A deterministic random UUID (version 4), seeded by the workflow id and its run."""
    return uuid.UUID(int=_require("uuid4").rng().getrandbits(128), version=4)


def info() -> Info:
    """Describe the running workflow, or the running activity attempt.

    Raises:
        WorkflowMisuseError: called outside a workflow and outside an activity.
    """
    act = _activity.get()
    if act is not None:
        return act if isinstance(act, Info) else act()
    return _require("info").info()


def activity_info() -> Info:
    """Describe the running activity attempt (its idempotency key included).

    Raises:
        WorkflowMisuseError: not called from inside an activity.
    """
    act = _activity.get()
    if act is None:
        raise WorkflowMisuseError(
            "flowcore.activity_info() was called outside an activity; call it from the body of "
            "an @flowcore.activity function while the runtime runs it",
            workflow_id="",
        )
    return act if isinstance(act, Info) else act()


class ContinueAsNewSignal(BaseException):
    """Raised by :func:`continue_as_new`; a BaseException so ``except Exception`` cannot eat it.

    ``payload`` is the next run's input, already encoded (and checked against the size limit).
    """

    def __init__(self, payload: Any, version: str | None = None) -> None:
        super().__init__("continue_as_new")
        self.payload = payload
        self.version = version


_EARLIEST: Final = datetime(1, 1, 2, tzinfo=UTC)
_LATEST: Final = datetime(9999, 12, 30, tzinfo=UTC)
_DEADLINES: Final = (_EARLIEST.timestamp(), _LATEST.timestamp())
"""The deadlines a timer may have (epoch seconds): those a datetime can show."""


def _after(start: float, duration: float | timedelta, what: str) -> float:
    """The deadline ``duration`` after ``start`` (epoch seconds), checked (see _deadline).

    A timedelta is added exactly (microseconds, as datetimes do), so that ``now()`` after the
    timer is never earlier than ``now() + duration`` computed before it.
    """
    if not isinstance(duration, timedelta):
        try:
            seconds = float(duration)
        except (TypeError, ValueError):
            msg = f"{what} takes seconds (an int or a float) or a timedelta, not {duration!r}"
            raise InvalidArgumentError(msg) from None
        return _deadline(start + seconds, what)
    try:
        return _not_before(from_timestamp(start) + duration, what)
    except OverflowError:  # past the year 9999 (or before the year 1)
        return _deadline(start + duration.total_seconds(), what)


def _not_before(when: datetime, what: str) -> float:
    """``when`` in epoch seconds, rounded up: the float whose datetime is not before ``when``.

    A float holds microseconds exactly only up to about the year 2242; beyond, the deadline
    is the next float after ``when`` (at most about 31 microseconds late, in the year 9999),
    never before it.
    """
    if not _EARLIEST <= when <= _LATEST:
        return _deadline(when.timestamp(), what)  # raises
    at = when.timestamp()
    while from_timestamp(at) < when:
        at = math.nextafter(at, math.inf)
    return _deadline(at, what)


def _deadline(at: float, what: str) -> float:
    """Check a timer's deadline before it is journaled; return it.

    Raises:
        InvalidArgumentError: ``at`` is NaN or lies outside the years 1-9999 (an infinite or
            huge duration), so no clock could reach it and no datetime could show it.
    """
    earliest, latest = _DEADLINES
    if not earliest <= at <= latest:  # NaN fails both comparisons
        msg = (
            f"{what} must end within the years 1-9999, not at {at!r} epoch seconds; to wait "
            "without a deadline, use wait_event() with timeout=None"
        )
        raise InvalidArgumentError(msg)
    return at


async def sleep(duration: float | timedelta) -> None:
    """Sleep on a durable timer: its absolute deadline is journaled, so downtime counts.

    Args:
        duration: Seconds, or a timedelta.

    Raises:
        InvalidArgumentError: the duration is NaN, or so long that the deadline lies beyond
            the year 9999 (infinity included).
    """
    ctx = _require("sleep")
    await yield_trap(TimerTrap(_after(ctx.now(), duration, "sleep()")))


async def sleep_until(when: datetime) -> None:
    """Sleep on a durable timer until ``when`` (an aware datetime; naive means UTC).

    Raises:
        InvalidArgumentError: ``when`` is not a datetime, or lies beyond the year 9999 (or
            before the year 1) in UTC.
    """
    if not isinstance(cast("object", when), datetime):  # callers without a type checker
        msg = (
            f"sleep_until() takes a datetime, not {when!r}; for a day, pass "
            "datetime.combine(day, time(), tzinfo=UTC), or use sleep() with a duration"
        )
        raise InvalidArgumentError(msg)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    _require("sleep_until")
    await yield_trap(TimerTrap(_not_before(when, "sleep_until()")))


@overload
async def wait_event(
    name: str, *, timeout: float | timedelta | None = None, type: None = None
) -> Any: ...
@overload
async def wait_event(
    name: str, *, timeout: float | timedelta | None = None, type: type[T]
) -> T | None: ...
async def wait_event(
    name: str,
    *,
    timeout: float | timedelta | None = None,
    type: Any = None,  # noqa: A002 - reads naturally at the call site
) -> Any:
    """Wait for the next external event called ``name``; return its payload, or None on timeout.

    Events sent before the wait are kept in order; several waits on one name take them first in,
    first out. The timeout is a durable timer.

    Args:
        name: The event name, as given to ``runtime.send_event``.
        timeout: Seconds (or a timedelta) to wait at most; None waits for ever.
        type: Decode the payload as this type (a dataclass, a pydantic model ...).

    Raises:
        InvalidArgumentError: the timeout is NaN or ends beyond the year 9999 (infinity
            included: wait for ever with ``timeout=None``).
    """
    ctx = _require("wait_event")
    if not name or not isinstance(name, str):  # send_event() refuses such a name: none could come
        msg = f"wait_event() needs an event name, a non-empty string, not {name!r}"
        raise InvalidArgumentError(msg)
    deadline = None if timeout is None else _after(ctx.now(), timeout, "timeout")
    return await yield_trap(WaitEventTrap(name, deadline, Any if type is None else type))


async def first(*awaitables: Awaitable[Any]) -> First:
    """Run awaitables concurrently; return ``First(index, value)`` of the first to finish.

    The losers are abandoned: their timers and event waits are cancelled, their running
    activities are left to finish and their results ignored. If the first to finish raised,
    ``first`` raises it.
    """
    _require("first")
    _check_awaitables("first", awaitables)
    result: First = await yield_trap(FirstTrap(tuple(awaitables)))
    return result


async def child(
    workflow: Any,
    payload: Any = None,
    *,
    id: str | None = None,  # noqa: A002 - the public name users expect
    version: str | None = None,
) -> Any:
    """Start a child workflow and wait for its result.

    Args:
        workflow: The child's ``@workflow`` function or registered name.
        payload: Its input.
        id: The child's instance id; default ``<parent id>:<step>``.
        version: Which registered version to run; default: the version of the ``@workflow``
            function given, or the latest for a name.

    Raises:
        WorkflowFailedError: the child failed.
        WorkflowCanceledError: the child was canceled.
    """
    _require("child")
    if not isinstance(workflow, str) and not hasattr(workflow, "takes_input"):
        msg = f"child() takes a @flowcore.workflow function or a registered name, not {workflow!r}"
        raise InvalidArgumentError(msg)
    name = workflow if isinstance(workflow, str) else workflow.name
    hint: Any = Any
    if not isinstance(workflow, str):
        from flowcore import serde  # noqa: PLC0415 - serde imports this module's siblings

        hint = serde.signature_hints(workflow.fn)[2]
        if version is None:  # as runtime.start(workflow) starts its version
            version = workflow.version
    return await yield_trap(ChildTrap(name, version_text(version), payload, id, hint))


def version_text(version: object) -> str | None:
    """A requested version as registered: ``2`` names version ``"2"`` (None: the default)."""
    return None if version is None else str(version)


def set_status(value: Any) -> None:
    """Show ``value`` (any encodable value) as the workflow's custom status.

    It appears next to ``current_activity`` in ``runtime.status()`` and is journaled, so it
    survives a restart.
    """
    _require("set_status").set_custom_status(value)


def continue_as_new(payload: Any = None, *, version: str | None = None) -> NoReturn:
    """End this run and start the workflow again under the same id with ``payload``.

    The new run starts with an empty history: use it for loops that would otherwise grow the
    history for ever (a monitor that wakes every minute).

    Args:
        payload: The next run's input.
        version: The next run's workflow version; default: the current run's. Pass the newest
            version to move a long-lived loop onto new code.

    Raises:
        PayloadError: ``payload`` cannot be encoded or is larger than the runtime's
            ``max_payload_bytes``; raised here, so the workflow can catch it and go on.
    """
    encoded = _require("continue_as_new").next_run_input(payload)
    raise ContinueAsNewSignal(encoded, version_text(version))
