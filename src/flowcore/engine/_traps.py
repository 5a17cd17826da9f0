"""The awaitables a workflow yields to the engine, and the single yield point they share."""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast, final

if TYPE_CHECKING:
    from collections.abc import Awaitable, Generator, Iterator

    from flowcore._definitions import ActivityDef

__all__ = [
    "ChildTrap",
    "Claim",
    "First",
    "FirstTrap",
    "GatherTrap",
    "ScheduleActivityTrap",
    "TimerTrap",
    "Trap",
    "WaitEventTrap",
    "suspend_on",
    "yield_trap",
]


@final
@dataclass(frozen=True, slots=True)
class First:
    """What ``flowcore.first`` returns: which awaitable finished first, and its value.

    Unpacks as ``index, value = await flowcore.first(a, b)``.
    """

    index: int
    """Position of the winner among the arguments."""
    value: Any
    """Its result."""

    def __iter__(self) -> Iterator[Any]:
        return iter((self.index, self.value))


@final
@dataclass(slots=True, eq=False, weakref_slot=True)
class ScheduleActivityTrap:
    """Run an activity and resume with its result.

    Not frozen: it is the awaitable an activity call returns, and records how it is awaited
    (``claim``); like a coroutine it compares by identity. Weakly referable: the engine tells
    a call dropped without an await from one the code still holds (see ``WorkflowExecutor``).
    """

    activity: ActivityDef[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    claim: Generator[ScheduleActivityTrap, Any, Any] | Claim | None = field(
        default=None, init=False, repr=False, compare=False
    )
    """None until first awaited: then the one generator every ``await`` of this call shares,
    or the engine's branch that runs the call without one (see :meth:`__await__`)."""

    def __await__(self) -> Generator[ScheduleActivityTrap, Any, Any]:
        """Suspend the awaiting workflow task on this call (what ``await activity(...)`` does).

        An activity call inside a workflow *is* its trap: ``gather`` and ``first`` recognise a
        branch that is a plain call and schedule it without stepping a coroutine for it. Like a
        coroutine, a call is one generator however often it is awaited (awaited again once it
        finished, it returns None), also when the engine runs it as a branch (``claim``).
        """
        claim = self.claim
        if claim is None:
            claim = suspend_on(self)
        elif isinstance(claim, types.GeneratorType):
            return claim
        else:
            claim = cast("Claim", claim).hand_over()
        self.claim = claim
        return claim


class Claim(Protocol):
    """The engine's branch running an activity call without a generator."""

    def hand_over(self) -> Generator[ScheduleActivityTrap, Any, Any]:
        """Give up the call: return its generator, in the state the branch reached.

        The branch goes on through that generator, like any coroutine branch.
        """
        ...


def suspend_on(trap: ScheduleActivityTrap) -> Generator[ScheduleActivityTrap, Any, Any]:
    """The generator that awaiting ``trap`` runs: yield it, return what the engine sends."""
    return (yield trap)


@final
@dataclass(frozen=True, slots=True)
class GatherTrap:
    """Run awaitables concurrently and resume with their results, in argument order."""

    awaitables: tuple[Awaitable[Any], ...]
    return_exceptions: bool = False
    """A branch's exception is its result (but a cancellation of the workflow, still raised)."""


@final
@dataclass(frozen=True, slots=True)
class FirstTrap:
    """Run awaitables concurrently and resume with ``(index, value)`` of the first to finish."""

    awaitables: tuple[Awaitable[Any], ...]


@final
@dataclass(frozen=True, slots=True)
class TimerTrap:
    """Resume at an absolute time (epoch seconds)."""

    fire_at: float


@final
@dataclass(frozen=True, slots=True)
class WaitEventTrap:
    """Resume with the next external event of this name, or None at the deadline."""

    name: str
    deadline: float | None
    hint: Any


@final
@dataclass(frozen=True, slots=True)
class ChildTrap:
    """Start a child workflow and resume with its result."""

    workflow: str
    version: str | None
    payload: Any
    child_id: str | None
    hint: Any


Trap = ScheduleActivityTrap | GatherTrap | FirstTrap | TimerTrap | WaitEventTrap | ChildTrap
"""Everything a workflow coroutine may yield to the engine."""


@types.coroutine
def yield_trap(trap: Trap) -> Generator[Trap, Any, Any]:
    """Suspend the running workflow task on ``trap``; the engine resumes it with the outcome."""
    return (yield trap)
