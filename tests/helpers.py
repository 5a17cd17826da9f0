"""Test helpers: deadline polling and history builders."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import anyio

from flowcore.engine.events import (
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    WorkflowStarted,
)
from flowcore.errors import FailureInfo

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

T0 = 1_700_000_000.0


async def assert_eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    *,
    timeout: float = 10.0,
    interval: float = 0.01,
    message: str = "condition not met",
) -> None:
    """Poll ``check`` until it is true, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} within {timeout}s")
        await anyio.sleep(interval)


def started(
    name: str, payload: Any = None, *, version: str = "1", at: float = T0
) -> WorkflowStarted:
    """A WorkflowStarted event."""
    return WorkflowStarted(at=at, name=name, version=version, input=payload)


def scheduled(step: int, name: str, *args: Any, at: float = T0) -> ActivityScheduled:
    """An ActivityScheduled event."""
    return ActivityScheduled(at=at, step=step, name=name, args=list(args), kwargs=None)


def completed(step: int, result: Any = None, *, at: float = T0) -> ActivityCompleted:
    """An ActivityCompleted event."""
    return ActivityCompleted(at=at, step=step, result=result)


def failed(
    step: int,
    type_name: str = "builtins.ValueError",
    message: str = "boom",
    *,
    attempts: int = 1,
    at: float = T0,
) -> ActivityFailed:
    """An ActivityFailed event."""
    return ActivityFailed(
        at=at,
        step=step,
        failure=FailureInfo(type_name=type_name, message=message),
        attempts=attempts,
    )
