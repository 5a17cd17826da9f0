"""Commands the engine emits for the runtime to carry out (imperative names)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, final

if TYPE_CHECKING:
    from flowcore._definitions import ActivityDef
    from flowcore.engine.events import Json
    from flowcore.errors import FailureInfo

__all__ = ["Command", "CompleteWorkflow", "FailWorkflow", "ScheduleActivity"]


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleActivity:
    """Run ``activity`` for command ``step`` and report its outcome back to the engine."""

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


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class CompleteWorkflow:
    """The workflow returned ``result`` (already encoded)."""

    result: Json


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class FailWorkflow:
    """The workflow raised; ``failure`` describes it."""

    failure: FailureInfo


Command = ScheduleActivity | CompleteWorkflow | FailWorkflow
"""Any command."""
