"""The awaitables a workflow yields to the engine, and the single yield point they share."""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, final

if TYPE_CHECKING:
    from collections.abc import Awaitable, Generator

    from flowcore._definitions import ActivityDef

__all__ = ["GatherTrap", "ScheduleActivityTrap", "Trap", "yield_trap"]


@final
@dataclass(frozen=True, slots=True)
class ScheduleActivityTrap:
    """Run an activity and resume with its result."""

    activity: ActivityDef[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@final
@dataclass(frozen=True, slots=True)
class GatherTrap:
    """Run awaitables concurrently and resume with their results, in argument order."""

    awaitables: tuple[Awaitable[Any], ...]


Trap = ScheduleActivityTrap | GatherTrap
"""Everything a workflow coroutine may yield to the engine."""


@types.coroutine
def yield_trap(trap: Trap) -> Generator[Trap, Any, Any]:
    """Suspend the running workflow task on ``trap``; the engine resumes it with the outcome."""
    return (yield trap)
