"""The @workflow and @activity decorators, the definitions they make, and the registry of names."""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, cast, final, overload

from flowcore import _context
from flowcore.errors import InvalidArgumentError, RegistrationError, UnknownVersionError
from flowcore.retry import NO_RETRY, RetryPolicy

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

__all__ = [
    "ActivityDef",
    "Registry",
    "WorkflowDef",
    "activity",
    "default_registry",
    "workflow",
]

P = ParamSpec("P")
R = TypeVar("R")
I = TypeVar("I")  # noqa: E741 - the conventional name for an input type


def _origin(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


@final
class ActivityDef(Generic[P, R]):
    """A registered activity: a sync or async function whose calls inside a workflow are journaled.

    Calling it inside a workflow returns an awaitable that the runtime schedules, records and
    replays. Outside any workflow it simply runs the function: an async activity returns its
    coroutine, a sync one its value.
    """

    __slots__ = ("__dict__", "backend", "fn", "is_async", "name", "queue", "retry", "timeout")

    def __init__(
        self,
        fn: Callable[P, Any],
        *,
        name: str,
        retry: RetryPolicy,
        timeout: float | None,
        backend: str | None = None,
        queue: str | None = None,
    ) -> None:
        self.fn = fn
        self.name = name
        self.retry = retry
        self.timeout = timeout
        self.backend = backend
        """Name of the backend that runs it (a key of ``Runtime(backends=...)``), or None for
        the runtime's default backend."""
        self.queue = queue
        """Routing hint for remote backends (the Celery queue), or None for their default."""
        self.is_async = inspect.iscoroutinefunction(fn)
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Awaitable[R]:
        ctx = _context.current_workflow()
        if ctx is not None:
            call = _context.schedule_activity(self, args, kwargs)
            calls = ctx.calls  # the engine warns of a call dropped without an await
            if calls is None:
                ctx.calls = [call]
            else:
                calls.append(call)
            return call
        return cast("Awaitable[R]", self.fn(*args, **kwargs))

    def __repr__(self) -> str:
        return f"<flowcore activity {self.name!r} ({_origin(self.fn)})>"


@final
class WorkflowDef(Generic[I, R]):
    """A registered workflow: an ``async def`` taking at most one payload and returning a result."""

    __slots__ = ("__dict__", "fn", "name", "takes_input", "version")

    def __init__(
        self, fn: Callable[..., Coroutine[Any, Any, R]], *, name: str, version: str
    ) -> None:
        if not inspect.iscoroutinefunction(fn):
            raise RegistrationError(
                f"@workflow needs an 'async def' function; {_origin(fn)} is not one. Move "
                "blocking work into an @activity and make the workflow async."
            )
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.default is inspect.Parameter.empty
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        if len(params) > 1:
            raise RegistrationError(
                f"workflow {name!r} ({_origin(fn)}) takes {len(params)} required parameters; a "
                "workflow takes one payload: wrap them in a dataclass or a dict."
            )
        self.fn = fn
        self.name = name
        self.version = str(version)  # as @workflow(version=2) registers "2"
        self.takes_input = bool(inspect.signature(fn).parameters)
        try:  # called as fn(payload), or fn() without parameters
            inspect.signature(fn).bind(*([None] if self.takes_input else []))
        except TypeError as exc:
            raise RegistrationError(
                f"workflow {name!r} ({_origin(fn)}) cannot be called with its payload as its "
                f"one positional argument ({exc}): make the payload's parameter the first, "
                "positional one, and give any keyword-only parameter a default"
            ) from None
        functools.update_wrapper(self, fn)

    def check_payload(self, payload: object, *, fix: str) -> None:
        """Refuse a payload for a workflow that takes no input (it would be dropped unseen).

        Args:
            payload: What the caller gave as the input (None: no payload).
            fix: How the caller drops the payload (``"call runtime.start(wf) without one"``).

        Raises:
            InvalidArgumentError: ``payload`` is not None and the function has no parameter.
        """
        if payload is None or self.takes_input:
            return
        msg = (
            f"workflow {self.name!r} ({_origin(self.fn)}) takes no input, but a payload was "
            f"given ({type(payload).__name__}); {fix}, or give the function a parameter to "
            "receive it"
        )
        raise InvalidArgumentError(msg)

    def __call__(self, payload: I) -> Coroutine[Any, Any, R]:
        if self.takes_input:
            return self.fn(payload)
        return self.fn()

    def __repr__(self) -> str:
        return f"<flowcore workflow {self.name!r} v{self.version} ({_origin(self.fn)})>"


@final
@dataclass(slots=True)
class Registry:
    """Workflow and activity definitions by name (workflows also by version)."""

    workflows: dict[str, dict[str, WorkflowDef[Any, Any]]] = field(default_factory=dict)
    """name -> version -> definition, versions in registration order."""
    activities: dict[str, ActivityDef[..., Any]] = field(default_factory=dict)
    """name -> definition."""

    def add_workflow(self, defn: WorkflowDef[Any, Any], *, latest: bool = True) -> None:
        """Register a workflow definition.

        A version registered again keeps its place; a new one becomes the latest, unless
        ``latest`` is false (a runtime learning a definition it was handed to start): then it
        goes first, and the default version stays what it was.

        Raises:
            RegistrationError: another function already holds this name and version.
        """
        versions = self.workflows.setdefault(defn.name, {})
        old = versions.get(defn.version)
        if old is not None and _origin(old.fn) != _origin(defn.fn):
            raise RegistrationError(
                f"workflow {defn.name!r} version {defn.version!r} is already registered by "
                f"{_origin(old.fn)}; give {_origin(defn.fn)} another name or version"
            )
        if old is not None or latest:
            versions[defn.version] = defn
        else:
            self.workflows[defn.name] = {defn.version: defn, **versions}

    def add_activity(self, defn: ActivityDef[..., Any]) -> None:
        """Register an activity definition.

        Raises:
            RegistrationError: another function already holds this name.
        """
        old = self.activities.get(defn.name)
        if old is not None and _origin(old.fn) != _origin(defn.fn):
            raise RegistrationError(
                f"activity {defn.name!r} is already registered by {_origin(old.fn)}; give "
                f"{_origin(defn.fn)} another name with @activity(name=...)"
            )
        self.activities[defn.name] = defn

    def workflow(self, name: str, version: str | None = None) -> WorkflowDef[Any, Any]:
        """Find a workflow by name, at ``version`` or the latest registered one.

        Raises:
            RegistrationError: no workflow has that name (the message lists the known ones).
            UnknownVersionError: the name exists but not at that version.
        """
        versions = self.workflows.get(name)
        if not versions:
            known = ", ".join(sorted(self.workflows)) or "none"
            raise RegistrationError(
                f"no workflow named {name!r} is registered (known: {known}); define it (with "
                "@flowcore.workflow, or as the orchestration of flowcore.steps' @step) and "
                "import its module before starting the runtime, or pass it in "
                "Runtime(workflows=[...])"
            )
        if version is None:
            return versions[next(reversed(versions))]
        if version not in versions:
            raise UnknownVersionError(name, version, list(versions))
        return versions[version]

    def for_replay(self, name: str, version: str) -> WorkflowDef[Any, Any]:
        """The code to replay an instance recorded at ``version``: that version, else the latest.

        Code that handles older instances branches on ``flowcore.info().version``.
        """
        versions = self.workflows.get(name)
        if versions and version in versions:
            return versions[version]
        return self.workflow(name)

    def fallback_note(self, name: str, version: str) -> str:
        """Why a divergence may be a dropped version: "" unless ``version`` is not registered.

        Appended to a NondeterminismError's message where :meth:`for_replay` fell back to the
        latest version's code.
        """
        versions = self.workflows.get(name)
        if not versions or version in versions:
            return ""
        latest = self.workflow(name).version
        return (
            f" Version {version!r}, which this instance started with, is not registered, so it "
            f"replayed on version {latest!r}; register version {version!r} again "
            f"(@workflow(name={name!r}, version={version!r})) until its instances finish."
        )

    def copy(self) -> Registry:
        """A shallow copy (for tests that need to restore the global registry)."""
        return Registry({k: dict(v) for k, v in self.workflows.items()}, dict(self.activities))


default_registry = Registry()
"""Where the decorators register, unless a Runtime is given its own list."""


@overload
def activity(fn: Callable[P, Coroutine[Any, Any, R]], /) -> ActivityDef[P, R]: ...
@overload
def activity(fn: Callable[P, R], /) -> ActivityDef[P, R]: ...
@overload
def activity(
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
    backend: str | None = None,
    queue: str | None = None,
) -> _ActivityDecorator: ...
def activity(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
    backend: str | None = None,
    queue: str | None = None,
) -> ActivityDef[..., Any] | _ActivityDecorator:
    """Declare an activity: a sync or async function that does real work.

    Sync activities run in a worker thread, async ones on the event loop. Inside a workflow,
    ``await my_activity(...)`` is journaled: after a crash its recorded result is reused.

    Args:
        fn: The function (when used as a bare ``@activity``).
        name: Registered name; defaults to the function's ``__name__``.
        retry: Retry policy; default is a single attempt.
        timeout: Seconds one attempt may take before it fails with ActivityTimeoutError.
        backend: Run it on this named backend (``"local"``, or a key of
            ``Runtime(backends=...)`` such as ``"celery"``); default: the runtime's backend.
        queue: For remote backends, the queue to send it to (e.g. a Celery queue ``"gpu"``).

    Returns:
        The activity definition, or a decorator that makes one.
    """
    if timeout is not None and timeout <= 0:
        raise ValueError("activity timeout must be a positive number of seconds")
    options: tuple[tuple[str, object], ...] = (("backend", backend), ("queue", queue))
    for label, value in options:
        if value is not None and (not isinstance(value, str) or not value):
            raise ValueError(f"activity {label} must be a non-empty string, not {value!r}")

    def decorate(f: Callable[..., Any]) -> ActivityDef[..., Any]:
        defn: ActivityDef[..., Any] = ActivityDef(
            f,
            name=name or f.__name__,
            retry=retry or NO_RETRY,
            timeout=timeout,
            backend=backend,
            queue=queue,
        )
        default_registry.add_activity(defn)
        return defn

    if fn is not None:
        return decorate(fn)
    return cast("_ActivityDecorator", decorate)


class _ActivityDecorator:
    """Typing helper: what ``@activity(...)`` returns."""

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> ActivityDef[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> ActivityDef[P, R]: ...
    def __call__(self, fn: Callable[..., Any], /) -> ActivityDef[..., Any]:
        raise NotImplementedError  # pragma: no cover - typing only


@overload
def workflow(fn: Callable[[I], Coroutine[Any, Any, R]], /) -> WorkflowDef[I, R]: ...
@overload
def workflow(fn: Callable[[], Coroutine[Any, Any, R]], /) -> WorkflowDef[None, R]: ...
@overload
def workflow(*, name: str | None = None, version: str = "1") -> _WorkflowDecorator: ...
def workflow(
    fn: Callable[..., Coroutine[Any, Any, Any]] | None = None,
    /,
    *,
    name: str | None = None,
    version: str = "1",
) -> WorkflowDef[Any, Any] | _WorkflowDecorator:
    """Declare a workflow: an ``async def`` whose awaits of activities are journaled and replayed.

    Workflow code must be deterministic: use ``flowcore.now()``, ``flowcore.random()`` and
    ``flowcore.uuid4()`` instead of the clock and ``random``; do I/O in activities.

    Args:
        fn: The coroutine function (when used as a bare ``@workflow``).
        name: Registered name; defaults to the function's ``__name__``.
        version: The code version recorded by each instance it starts.

    Returns:
        The workflow definition, or a decorator that makes one.
    """

    def decorate(f: Callable[..., Coroutine[Any, Any, Any]]) -> WorkflowDef[Any, Any]:
        defn: WorkflowDef[Any, Any] = WorkflowDef(f, name=name or f.__name__, version=str(version))
        default_registry.add_workflow(defn)
        return defn

    if fn is not None:
        return decorate(fn)
    return cast("_WorkflowDecorator", decorate)


class _WorkflowDecorator:
    """Typing helper: what ``@workflow(...)`` returns."""

    @overload
    def __call__(self, fn: Callable[[I], Coroutine[Any, Any, R]], /) -> WorkflowDef[I, R]: ...
    @overload
    def __call__(self, fn: Callable[[], Coroutine[Any, Any, R]], /) -> WorkflowDef[None, R]: ...
    def __call__(self, fn: Callable[..., Any], /) -> WorkflowDef[Any, Any]:
        raise NotImplementedError  # pragma: no cover - typing only
