"""Every exception flowcore raises, and the frozen failure record that crosses process boundaries.

The tree::

    FlowcoreError
    ├── RegistrationError          unknown or duplicate workflow/activity name
    │   └── UnknownVersionError    a version no registered code provides
    ├── WorkflowError              .workflow_id
    │   ├── WorkflowNotFoundError
    │   ├── WorkflowAlreadyExistsError
    │   ├── WorkflowCanceledError
    │   ├── WorkflowFinishedError  the instance already ended (no events, no cancel)
    │   ├── WorkflowFailedError    .failure (raised by handle.result())
    │   ├── NondeterminismError    .step .recorded .attempted
    │   └── WorkflowMisuseError    a wrong await or call inside a workflow
    ├── ActivityError              .activity .step .attempts .failure
    │   └── ActivityTimeoutError
    ├── PayloadError               a value that cannot be encoded or decoded; names its path
    ├── InvalidArgumentError       a malformed id or event name (also a ValueError)
    ├── JournalError
    │   ├── JournalLockedError     another runtime owns the database
    │   ├── JournalCorruptError    not a flowcore journal, or a damaged one
    │   └── SchemaVersionError     written by a newer flowcore
    └── BackendError
        └── BackendUnavailableError

    NonRetryableError              raised by activity code to stop retries

A failure that crosses a process or disk boundary is a :class:`FailureInfo`, never a pickle.
"""

from __future__ import annotations

import traceback as _traceback
from dataclasses import dataclass, field
from typing import Any, Final, final

__all__ = [
    "ActivityError",
    "ActivityTimeoutError",
    "BackendError",
    "BackendUnavailableError",
    "FailureInfo",
    "FlowcoreError",
    "InvalidArgumentError",
    "JournalCorruptError",
    "JournalError",
    "JournalLockedError",
    "NonRetryableError",
    "NondeterminismError",
    "PayloadError",
    "RegistrationError",
    "SchemaVersionError",
    "UnknownVersionError",
    "WorkflowAlreadyExistsError",
    "WorkflowCanceledError",
    "WorkflowError",
    "WorkflowFailedError",
    "WorkflowFinishedError",
    "WorkflowMisuseError",
    "WorkflowNotFoundError",
]

MAX_FAILURE_MESSAGE: Final = 16_000
"""Most characters of an exception's message a :class:`FailureInfo` keeps (head and tail)."""
MAX_FAILURE_TRACEBACK: Final = 16_000
"""Most characters of a formatted traceback a :class:`FailureInfo` keeps (head and tail)."""
MAX_FAILURE_CAUSES: Final = 32
"""Most causes a :class:`FailureInfo` describes below the failure itself (the root one kept)."""


def _bounded(text: str, limit: int, marker: str) -> str:
    """``text``, or its first and last ``limit // 2`` characters around ``marker``.

    ``marker`` may say how many characters were left out, as ``{cut}``.
    """
    if len(text) <= limit:
        return text
    half = limit // 2
    return text[:half] + marker.format(cut=len(text) - 2 * half) + text[-half:]


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class FailureInfo:
    """A serialisable description of an exception, safe to journal and to send across processes."""

    type_name: str
    """Qualified name of the exception type, e.g. ``builtins.ValueError``."""
    message: str
    """``str()`` of the exception."""
    traceback: str = ""
    """Formatted traceback, truncated to a bounded size."""
    mro: tuple[str, ...] = ()
    """Qualified names of the exception's base classes, most specific first."""
    non_retryable: bool = False
    """True when the failure must not be retried (``NonRetryableError`` or a policy's list)."""
    cause: FailureInfo | None = None
    """The failure this one was raised from, if any."""
    details: dict[str, Any] = field(default_factory=dict)
    """Extra JSON-compatible facts (e.g. the activity name and step of a nested ActivityError)."""

    @classmethod
    def from_exception(cls, exc: BaseException, *, non_retryable: bool = False) -> FailureInfo:
        """Describe ``exc`` (and its ``__cause__`` chain) as a FailureInfo.

        Never fails: an exception whose ``str()`` raises is described by its type, and a cycle
        in the cause chain ends where it closes. The description is bounded, whatever was
        raised: a message keeps its first and last :data:`MAX_FAILURE_MESSAGE` / 2 characters,
        a traceback its first and last :data:`MAX_FAILURE_TRACEBACK` / 2 (only the outermost
        one shows the chain; each cause has its own), and a chain of more than
        :data:`MAX_FAILURE_CAUSES` causes keeps the outermost ones and the root cause, saying in
        the message of the last one kept how many were left out.
        """
        chain: list[BaseException] = []  # outermost first
        seen: set[int] = set()
        current: BaseException | None = exc
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            chain.append(current)
            if isinstance(current, ActivityError) and current.__cause__ is None:
                break  # its recorded failure is its cause
            current = current.__cause__
        left_out = max(0, len(chain) - 1 - MAX_FAILURE_CAUSES)
        if left_out:
            chain[MAX_FAILURE_CAUSES:-1] = []  # the outermost causes and the root one
        info: FailureInfo | None = None
        for depth in range(len(chain) - 1, -1, -1):  # innermost first: no recursion
            this = chain[depth]
            note = f" [{left_out:,} more causes left out here]" if left_out and (
                depth == MAX_FAILURE_CAUSES - 1) else ""  # fmt: skip
            info = cls._describe(
                this,
                non_retryable=non_retryable if depth == 0 else False,
                cause=info,
                note=note,
                chain=depth == 0 and not left_out,  # a long chain: each link has its own
            )
        assert info is not None  # noqa: S101 - the chain holds exc at least
        return info

    @classmethod
    def _describe(
        cls,
        exc: BaseException,
        *,
        non_retryable: bool,
        cause: FailureInfo | None,
        note: str,
        chain: bool,
    ) -> FailureInfo:
        """One link of :meth:`from_exception`'s chain, given its described ``cause``."""
        tb = "".join(_traceback.format_exception(type(exc), exc, exc.__traceback__, chain=chain))
        message = _bounded(
            _message(exc), MAX_FAILURE_MESSAGE, " [... {cut:,} characters left out ...] "
        )
        details: dict[str, Any] = {}
        if isinstance(exc, ActivityError):
            details = {"activity": exc.activity, "step": exc.step, "attempts": exc.attempts}
        if isinstance(exc, ActivityError) and exc.__cause__ is None:
            cause = exc.failure  # what the activity recorded
        else:
            non_retryable = non_retryable or isinstance(exc, NonRetryableError)
        return cls(
            type_name=qualname(type(exc)),
            message=message + note,
            traceback=_bounded(tb, MAX_FAILURE_TRACEBACK, "\n...\n"),
            mro=_mro(type(exc)),
            non_retryable=non_retryable,
            cause=cause,
            details=details,
        )

    @property
    def short_type(self) -> str:
        """The type's name without its module, e.g. ``ValueError``."""
        return self.type_name.rpartition(".")[2]

    def is_caused_by(self, exc_type: type[BaseException] | str) -> bool:
        """Tell whether this failure, or one in its cause chain, is an instance of ``exc_type``.

        Args:
            exc_type: An exception class, or its qualified or short name.
        """
        wanted = exc_type if isinstance(exc_type, str) else qualname(exc_type)
        info: FailureInfo | None = self
        while info is not None:
            names = (info.type_name, *info.mro)
            if wanted in names or any(n.rpartition(".")[2] == wanted for n in names):
                return True
            info = info.cause
        return False

    def to_json(self) -> dict[str, Any]:
        """Encode as a JSON-compatible dict."""
        out: dict[str, Any] = {"type": self.type_name, "message": self.message}
        if self.traceback:
            out["traceback"] = self.traceback
        if self.mro:
            out["mro"] = list(self.mro)
        if self.non_retryable:
            out["non_retryable"] = True
        if self.cause is not None:
            out["cause"] = self.cause.to_json()
        if self.details:
            out["details"] = self.details
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FailureInfo:
        """Decode what :meth:`to_json` produced."""
        cause = data.get("cause")
        return cls(
            type_name=str(data["type"]),
            message=str(data.get("message", "")),
            traceback=str(data.get("traceback", "")),
            mro=tuple(data.get("mro", ())),
            non_retryable=bool(data.get("non_retryable", False)),
            cause=cls.from_json(cause) if cause else None,
            details=dict(data.get("details", {})),
        )

    def __str__(self) -> str:
        return f"{self.short_type}: {self.message}"


def qualname(tp: type) -> str:
    """Return ``module.QualName`` for a type (``builtins.`` kept for clarity)."""
    return f"{tp.__module__}.{tp.__qualname__}"


def _message(exc: BaseException) -> str:
    """``str(exc)``, or a placeholder naming why it cannot be had."""
    try:
        return str(exc)
    except Exception as err:  # noqa: BLE001 - a broken __str__ must not hide the failure
        return f"<unprintable {type(exc).__name__}: str() raised {type(err).__name__}: {err!r}>"


def _mro(tp: type) -> tuple[str, ...]:
    return tuple(qualname(t) for t in tp.__mro__[1:] if t not in (object, BaseException))


class FlowcoreError(Exception):
    """Base class of every error flowcore raises.

    Errors copy (``copy.copy``, ``copy.deepcopy``) and pickle (``multiprocessing``, a process
    pool) with their type, message and attributes, whatever their constructor takes.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception's own reduce calls ``type(self)(*self.args)``: the message alone, which
        # the subclasses' structured constructors refuse (or misread as their first field).
        return (_rebuild, (type(self), self.args), self.__dict__)


def _rebuild(cls: type[FlowcoreError], args: tuple[Any, ...]) -> FlowcoreError:
    """An instance of ``cls`` with ``args``, made without its ``__init__`` (see __reduce__)."""
    exc = cls.__new__(cls, *args)
    exc.args = args
    return exc


class RegistrationError(FlowcoreError):
    """A workflow or activity name is unknown, or registered twice with different code."""


class UnknownVersionError(RegistrationError):
    """A workflow was asked for at a version that no registered code provides."""

    def __init__(self, name: str, version: str, known: list[str]) -> None:
        self.name = name
        self.version = version
        self.known = known
        super().__init__(
            f"workflow {name!r} has no registered version {version!r}; known versions: "
            f"{', '.join(map(repr, known)) or 'none'}. Register the code for that version "
            f"(@workflow(name={name!r}, version={version!r})) or start a known one."
        )


class WorkflowError(FlowcoreError):
    """An error about one workflow instance."""

    def __init__(self, message: str, *, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(message)


class WorkflowNotFoundError(WorkflowError):
    """No workflow instance has this id."""

    def __init__(self, workflow_id: str) -> None:
        super().__init__(
            f"no workflow with id {workflow_id!r} in this journal; "
            "check the id, or list instances with runtime.list()",
            workflow_id=workflow_id,
        )


class WorkflowAlreadyExistsError(WorkflowError):
    """A workflow instance with this id already exists."""

    def __init__(self, workflow_id: str, *, status: str, advice: str | None = None) -> None:
        self.status = status
        if advice is None:
            advice = (
                "pick another id, or pass if_exists='return' to get a handle to the existing one"
            )
        super().__init__(
            f"a workflow with id {workflow_id!r} already exists (status {status}); {advice}",
            workflow_id=workflow_id,
        )


class WorkflowCanceledError(WorkflowError):
    """The workflow was canceled before it produced a result."""


class WorkflowFinishedError(WorkflowError):
    """The instance already ended, so it takes no more events or requests."""

    def __init__(self, workflow_id: str, *, status: str, action: str) -> None:
        self.status = status
        super().__init__(
            f"cannot {action} workflow {workflow_id!r}: it already ended ({status}); only "
            "unfinished workflows take events, cancellation, suspension or termination",
            workflow_id=workflow_id,
        )


class WorkflowFailedError(WorkflowError):
    """The workflow ended with an exception; ``failure`` describes it."""

    def __init__(self, workflow_id: str, failure: FailureInfo) -> None:
        self.failure = failure
        super().__init__(f"workflow {workflow_id!r} failed: {failure}", workflow_id=workflow_id)


class NondeterminismError(WorkflowError):
    """Replaying a workflow's code did not issue the commands its journal recorded."""

    def __init__(
        self, *, workflow_id: str, workflow: str, step: int, recorded: str, attempted: str
    ) -> None:
        self.workflow = workflow
        self.step = step
        self.recorded = recorded
        self.attempted = attempted
        super().__init__(
            f"workflow {workflow!r} (id {workflow_id!r}) is not deterministic at step {step}: "
            f"the journal recorded {recorded} but the code now does {attempted}. The code changed "
            "under a running instance: restore the old code path (branch on "
            "flowcore.info().version) or start a new version of the workflow.",
            workflow_id=workflow_id,
        )


class WorkflowMisuseError(WorkflowError):
    """Workflow code awaited or called something it must not."""


class ActivityError(FlowcoreError):
    """An activity failed after all its attempts; raised inside the workflow that awaited it."""

    def __init__(self, *, activity: str, step: int, attempts: int, failure: FailureInfo) -> None:
        self.activity = activity
        self.step = step
        self.attempts = attempts
        self.failure = failure
        plural = "s" if attempts != 1 else ""
        super().__init__(
            f"activity {activity!r} (step {step}) failed after {attempts} "
            f"attempt{plural}: {failure}"
        )


class ActivityTimeoutError(ActivityError):
    """An activity did not finish within its timeout."""


class PayloadError(FlowcoreError):
    """A value cannot be encoded to, or decoded from, the journal's JSON."""

    def __init__(
        self, reason: str, *, path: str = "$", hint: str | None = None, decoding: bool | None = None
    ) -> None:
        """``decoding``: the value was being read back (default: when a ``hint`` is given)."""
        self.path = path
        self.reason = reason
        self.hint = hint
        where = f" (expected {hint})" if hint else ""
        verb = "decode" if (hint is not None if decoding is None else decoding) else "serialise"
        super().__init__(f"cannot {verb} value at {path}{where}: {reason}")


class InvalidArgumentError(FlowcoreError, ValueError):
    """An argument is malformed (an empty event name, an over-long workflow id).

    It is also a ``ValueError``, so code that caught that before keeps working.
    """


class JournalError(FlowcoreError):
    """The journal database cannot be used."""


class JournalLockedError(JournalError):
    """Another runtime owns this journal."""

    def __init__(self, path: str, owner: str) -> None:
        self.path = path
        self.owner = owner
        super().__init__(
            f"journal {path!r} is owned by another runtime ({owner}); only one runtime may serve a "
            "database. Stop the other one, or open it read-only for inspection."
        )


class JournalCorruptError(JournalError):
    """The file is not a flowcore journal, or its contents are damaged."""


class SchemaVersionError(JournalError):
    """The journal was written by a newer flowcore than this one."""


class BackendError(FlowcoreError):
    """An activity backend failed."""


class BackendUnavailableError(BackendError):
    """An activity backend (a broker, a webhook) cannot be reached."""


class NonRetryableError(Exception):
    """Raise from activity code to fail the activity at once, without further retries."""
