"""The Backend protocol: run one attempt of one activity and report its outcome."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol, final

if TYPE_CHECKING:
    from flowcore._definitions import ActivityDef
    from flowcore.engine.events import Json
    from flowcore.errors import FailureInfo

__all__ = ["ActivityOutcome", "ActivityTask", "Backend", "CancelFlag"]

_MAKING: Final = threading.Lock()
"""Held while a CancelFlag makes its event: two first waiters must share one (rarely taken)."""


@final
class CancelFlag:
    """Set once the workflow no longer wants an attempt's result; safe to read from any thread.

    It answers like a ``threading.Event`` (``is_set``, ``set``, ``wait``) but makes its lock only
    when someone waits: one is made per activity call, and almost none is ever waited on.
    """

    __slots__ = ("_event", "_flag")

    def __init__(self) -> None:
        self._flag = False
        self._event: threading.Event | None = None

    def __repr__(self) -> str:
        return f"<CancelFlag {'set' if self._flag else 'unset'}>"

    def is_set(self) -> bool:
        """True once set."""
        return self._flag

    def set(self) -> None:
        """Set the flag and wake every waiter."""
        self._flag = True
        event = self._event
        if event is not None:
            event.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the flag is set or ``timeout`` seconds passed; return whether it is set."""
        if self._flag:
            return True
        event = self._event
        if event is None:
            with _MAKING:  # another first waiter may be making one: wait on the same event
                event = self._event
                if event is None:
                    event = self._event = threading.Event()
            if self.is_set():  # set() ran before the event existed
                event.set()
        return event.wait(timeout)


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityTask:
    """One attempt of one activity, as the runtime hands it to a backend."""

    workflow_id: str
    """The workflow that scheduled it."""
    step: int
    """The command number of its schedule."""
    attempt: int
    """Attempt number, from 1."""
    activity: ActivityDef[..., Any]
    """What to run."""
    args: tuple[Any, ...]
    """Positional arguments as the workflow passed them (local backends use these)."""
    kwargs: dict[str, Any]
    """Keyword arguments as the workflow passed them."""
    encoded_args: Json
    """The arguments encoded as JSON (remote backends send these)."""
    encoded_kwargs: Json
    """The keyword arguments encoded as JSON, or None."""
    op: str = ""
    """The call's place in the program; with the attempt it forms the idempotency key."""
    workflow_name: str = ""
    """The workflow's registered name."""
    workflow_version: str = ""
    """The workflow's recorded version."""
    cancelled: CancelFlag | None = field(default=None, compare=False, repr=False)
    """Set when the workflow no longer wants the result (cancellation); sync code may poll it."""

    @property
    def idempotency_key(self) -> str:
        """``workflow_id/op/attempt``: stable for this attempt across a crash and recovery."""
        return f"{self.workflow_id}/{self.op or self.step}/{self.attempt}"


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityOutcome:
    """How one attempt ended: a JSON result, or a failure."""

    result: Json = None
    """The encoded return value, when it succeeded."""
    failure: FailureInfo | None = None
    """Why it failed, when it did."""
    timed_out: bool = False
    """True when the attempt exceeded the activity's timeout."""

    @property
    def ok(self) -> bool:
        """True when the attempt succeeded."""
        return self.failure is None


class Backend(Protocol):
    """Runs activity attempts somewhere: on the event loop, in threads, on remote workers."""

    async def open(self) -> None:
        """Get ready to run attempts (connect to a broker, start a pool)."""
        ...

    async def close(self) -> None:
        """Release resources; attempts still running may be abandoned (recovery retries them)."""
        ...

    async def execute(self, task: ActivityTask, *, timeout: float | None) -> ActivityOutcome:
        """Run one attempt and report how it ended; never raise for the activity's own errors.

        The backend enforces ``timeout`` (the activity's, in seconds; None: no limit): the
        runtime does not, so an attempt that overruns it must end with
        ``ActivityOutcome(failure=..., timed_out=True)`` (retried by the policy, then
        :class:`~flowcore.ActivityTimeoutError` in the workflow); one that ignores it waits as
        long as the work does.

        Whatever else it raises (any ``BaseException`` but the attempt's task being cancelled
        from outside, when the runtime stops it), or a return value that is not an
        :class:`ActivityOutcome`, is a failed attempt, retried by the activity's policy.
        """
        ...
