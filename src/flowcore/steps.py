"""Numbered-step pipelines (pyorchestration's model) built on durable workflows and activities.

An **orchestration** is a list of numbered **steps** run in number order on one shared **state**
object. Each orchestration is a flowcore workflow named after it; each step is an activity whose
argument is the state checkpointed by the step before (as JSON) and whose result is the state
after it. The checkpoint is therefore journaled after every step: after a crash the workflow
replays the recorded checkpoints and resumes at the first step that had not completed, with the
state as that step left it, never at step 1::

    class Order(steps.OrchestrationState):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name
            self.charged = False

        @classmethod
        def from_dict(cls, payload: dict[str, Any]) -> Order:
            return cls(payload["name"])

    @steps.step(number=1, state_class=Order)
    def charge(state: Order) -> None:
        state.charged = True

    @steps.step(number=2, state_class=Order, skippable=True, retry=RetryPolicy(max_attempts=3))
    def notify(state: Order) -> None: ...

    handle = await runtime.start("default_orchestration", {"name": "Andrea"})

The payload may be a dict or a JSON string (pyorchestration's Celery entry passes
``json.dumps(...)``). Step 0 of every run is a journaled ``<name>:init`` activity that parses it,
builds the state with ``state_class.from_dict(payload)``, loads the orchestration's
configuration (a dict, or a TOML/JSON/YAML file read at run time) and merges the run's override
(``payload["$config"]``, see :func:`run_payload`); the merged configuration is journaled with
the first checkpoint, so a resumed run sees the same ``state.cfg`` even if the file changed.

A step may take ``cfg`` as a second parameter, mutate the state in place or return a new state
object, and be sync (run in a worker thread) or async. Steps always run in the runtime's process,
also under a remote default backend (``Runtime(backend=CeleryBackend(app))``). A **skippable**
step that still fails after its retries is recorded (its ``activity_failed`` event, the run's
custom status and :attr:`PipelineResult.skipped`) and the run continues with the state from
before it; any other failing step fails the run with :class:`StepFailedError` (an
:class:`~flowcore.ActivityError` naming the step by its number, its cause the step's own error;
a failing ``from_dict`` or config read is step 0).

State checkpoints: ``state.to_checkpoint()`` if the class defines it, else the instance's
attributes except ``cfg``, encoded by flowcore's codec; restored by
``state_class.from_checkpoint(data)`` if defined, else by setting each attribute back, decoded by
the class's annotations (so a ``Decimal`` or a dataclass attribute comes back typed).
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import inspect
import json
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, final

from flowcore import _context, serde
from flowcore._definitions import ActivityDef, WorkflowDef, default_registry
from flowcore.errors import ActivityError, PayloadError, RegistrationError
from flowcore.retry import NO_RETRY, RetryPolicy

if TYPE_CHECKING:
    from collections.abc import Callable

    from flowcore._handle import WorkflowHandle
    from flowcore.runtime import Runtime

__all__ = [
    "CONFIG_KEY",
    "Orchestration",
    "OrchestrationState",
    "PipelineResult",
    "SkippedStep",
    "Step",
    "StepFailedError",
    "get_orchestration",
    "orchestration",
    "run_payload",
    "start",
    "step",
]

CONFIG_KEY = "$config"
"""Key of a dict payload whose value (a dict) overrides the orchestration's config for one run."""
DEFAULT_ORCHESTRATION = "default_orchestration"
"""The orchestration a step joins unless told otherwise (pyorchestration's default)."""

F = TypeVar("F", bound="Callable[..., Any]")
Config = Mapping[str, Any] | str | os.PathLike[str] | None
"""A configuration: a mapping, a path to a ``.toml``/``.json``/``.yaml`` file, or None."""


class OrchestrationState:
    """An optional base class for pipeline states: gives ``cfg`` and a default ``from_dict``.

    Any class with a ``from_dict(payload)`` classmethod works as a state class; subclass this
    one to keep pyorchestration code unchanged.
    """

    cfg: dict[str, Any]
    """The orchestration's configuration (with the run's override), set before every step."""

    def __init__(self, cfg: dict[str, Any] | None = None) -> None:
        self.cfg = cfg if cfg is not None else {}

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> typing.Self:
        """Build the initial state from the run's payload; default: ``cls(**payload)``."""
        return cls(**payload)


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class SkippedStep:
    """A skippable step that failed; the run went on without its changes."""

    number: int
    """The step's number."""
    name: str
    """The step function's name."""
    error: str
    """The failure, as ``Type: message``."""


@final
class StepFailedError(ActivityError):
    """A step (or step 0, building the state) failed after its retries and failed the run.

    It is an :class:`~flowcore.ActivityError` whose message names the step by its ``@step``
    number; ``step`` stays the journal's command number, as on every ActivityError.
    """

    def __init__(self, *, orchestration: str, number: int, name: str, error: ActivityError) -> None:
        super().__init__(
            activity=error.activity, step=error.step, attempts=error.attempts, failure=error.failure
        )
        self.orchestration = orchestration
        self.number = number
        """The ``@step`` number (0: building the state from the payload)."""
        plural = "s" if error.attempts != 1 else ""
        message = (
            f"step {number} ({name}) of orchestration {orchestration!r} failed after "
            f"{error.attempts} attempt{plural}: {error.failure}"
        )
        self.args = (message,)


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class PipelineResult:
    """What a pipeline run returns: the final state checkpoint and the steps it skipped."""

    state: dict[str, Any]
    """The final state, as checkpointed JSON (``Orchestration.load_state`` rebuilds the object)."""
    skipped: tuple[SkippedStep, ...] = ()
    """Skippable steps that failed, in run order."""


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One registered step of an orchestration."""

    number: int
    """Its place in the run order."""
    fn: Callable[..., Any]
    """The user's function."""
    skippable: bool
    """True when a failure is recorded and the run continues."""
    activity: ActivityDef[..., Any]
    """The journaled activity that runs it (its name is ``<orchestration>:<number>:<fn>``)."""

    @property
    def name(self) -> str:
        """The step function's name."""
        return self.fn.__name__


@final
class Orchestration:
    """A named pipeline: its state class, configuration and numbered steps.

    Made by :func:`orchestration` (or the first :func:`step` naming it) and registered as a
    workflow of the same name, so ``runtime.start(name, payload)`` runs it.
    """

    def __init__(self, name: str, state_class: type[Any], config: Config = None) -> None:
        if not callable(getattr(state_class, "from_dict", None)):
            raise RegistrationError(
                f"orchestration {name!r}: state class {state_class.__qualname__} has no "
                "from_dict(payload) classmethod; subclass flowcore.steps.OrchestrationState "
                "or add one"
            )
        self.name = name
        self.state_class = state_class
        self.config: Config = _check_config(config, name)
        self.steps: dict[int, Step] = {}
        self._loads: dict[int, object] = {}  # number -> its module's __spec__ when registered
        self._hints: dict[str, Any] | None = None
        self.init: ActivityDef[[Any], dict[str, Any]] = ActivityDef(
            self._init, name=f"{name}:init", retry=NO_RETRY, timeout=None, backend="local"
        )
        self.workflow: WorkflowDef[Any, PipelineResult] = WorkflowDef(
            _pipeline_body(self), name=name, version="1"
        )
        self.workflow.orchestration = self  # type: ignore[attr-defined] # lookup by name

    def __repr__(self) -> str:
        return f"<flowcore orchestration {self.name!r} steps={sorted(self.steps)}>"

    # -- registration --------------------------------------------------------------------------

    def add_step(
        self,
        number: int,
        fn: Callable[..., Any],
        *,
        skippable: bool = False,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
    ) -> Step:
        """Register ``fn`` as step ``number``.

        The same function registered again (a module reload, a notebook cell run again)
        replaces the step.

        Raises:
            RegistrationError: another function already holds this number, or the module
                defines a function of the same name twice under this number.
        """
        if isinstance(number, bool) or not isinstance(number, int):
            raise RegistrationError(f"a step number must be an int, not {number!r}")
        old = self.steps.get(number)
        if old is not None and _origin(old.fn) != _origin(fn):
            raise RegistrationError(
                f"orchestration {self.name!r} already has step {number} ({_origin(old.fn)}); "
                f"give {_origin(fn)} another number"
            )
        load = getattr(fn, "__globals__", {}).get("__spec__")
        if old is not None and _defined_twice(old.fn, self._loads.get(number), fn, load):
            raise RegistrationError(
                f"orchestration {self.name!r} defines step {number} twice: {_origin(fn)} at "
                f"lines {old.fn.__code__.co_firstlineno} and {fn.__code__.co_firstlineno} of "
                f"{fn.__code__.co_filename}; give one of them another number"
            )
        activity: ActivityDef[..., Any] = ActivityDef(
            _step_runner(self, fn),
            name=f"{self.name}:{number}:{fn.__name__}",
            retry=retry or NO_RETRY,
            timeout=timeout,
            backend="local",  # a remote worker cannot import a step's runner (a closure)
        )
        default_registry.add_activity(activity)
        made = Step(number=number, fn=fn, skippable=skippable, activity=activity)
        self.steps[number] = made
        self._loads[number] = load
        return made

    def ordered(self) -> list[Step]:
        """The steps in run order."""
        return [self.steps[n] for n in sorted(self.steps)]

    # -- configuration and state ---------------------------------------------------------------

    def load_config(self, override: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The bound configuration (read from its file now, if it is one), with ``override``.

        The merge is shallow: top-level keys of ``override`` replace the bound ones.

        Raises:
            RegistrationError: the file's format is unknown, or YAML without PyYAML installed.
        """
        base = _read_config(self.config, self.name)
        return {**base, **(override or {})}

    def snapshot(self, state: Any) -> dict[str, Any]:
        """The state's checkpoint: JSON-compatible data :meth:`load_state` turns back into it.

        Raises:
            PayloadError: an attribute cannot be encoded (the path names it).
        """
        to_checkpoint = getattr(state, "to_checkpoint", None)
        if callable(to_checkpoint):
            data = to_checkpoint()
        else:
            try:
                attrs = vars(state)
            except TypeError:
                raise PayloadError(
                    f"state {type(state).__qualname__} has no __dict__; define "
                    "to_checkpoint() and from_checkpoint(data) on it"
                ) from None
            data = {k: v for k, v in attrs.items() if k != "cfg"}
        encoded: dict[str, Any] = serde.encode(data, path="$.state")
        return encoded

    def load_state(self, data: Mapping[str, Any], cfg: Mapping[str, Any] | None = None) -> Any:
        """Rebuild a state object from its checkpoint (e.g. ``PipelineResult.state``)."""
        from_checkpoint = getattr(self.state_class, "from_checkpoint", None)
        if callable(from_checkpoint):
            state = from_checkpoint(dict(data))
        else:
            cls: Any = self.state_class
            state = cls.__new__(cls)
            hints = self._attribute_hints()
            for key, value in data.items():
                hint = hints.get(key, Any)
                object.__setattr__(state, key, serde.decode(value, hint, path=f"$.state.{key}"))
        if cfg is not None:
            # a slotted class without cfg: its steps take cfg as a parameter instead
            with contextlib.suppress(AttributeError):
                object.__setattr__(state, "cfg", dict(cfg))
        return state

    def _attribute_hints(self) -> dict[str, Any]:
        if self._hints is None:
            try:
                self._hints = typing.get_type_hints(self.state_class)
            except Exception:  # noqa: BLE001 - unresolvable annotations: decode as plain JSON
                self._hints = {}
        return self._hints

    def _init(self, payload: Any) -> dict[str, Any]:
        """Step 0: parse the payload, build the state, resolve the configuration."""
        data = _parse_payload(payload, self.name)
        override = data.pop(CONFIG_KEY, None)
        if override is not None and not isinstance(override, Mapping):
            raise PayloadError(
                f"{CONFIG_KEY!r} must be an object of config overrides, not "
                f"{type(override).__name__}",
                path=f"$.{CONFIG_KEY}",
            )
        cfg = self.load_config(override)
        state = self.state_class.from_dict(data)
        return {"state": self.snapshot(state), "cfg": serde.encode(cfg, path="$.cfg")}


# -- the workflow and the step activities -----------------------------------------------------


def _pipeline_body(orch: Orchestration) -> Callable[[Any], Any]:
    async def pipeline(payload: Any = None) -> PipelineResult:
        try:
            init = await orch.init(payload)
        except ActivityError as exc:
            raise _failed(orch, 0, "building the state from the payload", exc) from exc
        state, cfg = init["state"], init["cfg"]
        skipped: list[SkippedStep] = []
        for made in orch.ordered():
            try:
                state = await made.activity(state, cfg)
            except ActivityError as exc:
                if not made.skippable:
                    raise _failed(orch, made.number, made.name, exc) from exc
                skipped.append(
                    SkippedStep(number=made.number, name=made.name, error=str(exc.failure))
                )
                _context.set_status({"skipped": [s.number for s in skipped]})
        return PipelineResult(state=state, skipped=tuple(skipped))

    pipeline.__qualname__ = f"pipeline[{orch.name}]"
    return pipeline


def _failed(orch: Orchestration, number: int, name: str, exc: ActivityError) -> StepFailedError:
    return StepFailedError(orchestration=orch.name, number=number, name=name, error=exc)


def _step_runner(orch: Orchestration, fn: Callable[..., Any]) -> Callable[..., Any]:
    takes_cfg = "cfg" in inspect.signature(fn).parameters

    def enter(state: dict[str, Any], cfg: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        # The local backend passes the workflow's own objects: copy them, so a step's changes
        # reach the workflow only through its returned checkpoint (a failed step changes nothing).
        state, cfg = copy.deepcopy(state), copy.deepcopy(cfg)
        obj = orch.load_state(state, cfg)
        return obj, ({"cfg": cfg} if takes_cfg else {})

    def leave(obj: Any, returned: Any) -> dict[str, Any]:
        return orch.snapshot(returned if isinstance(returned, orch.state_class) else obj)

    if inspect.iscoroutinefunction(fn):

        async def run_async(state: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
            obj, extra = enter(state, cfg)
            return leave(obj, await fn(obj, **extra))

        runner: Callable[..., Any] = run_async
    else:

        def run_sync(state: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
            obj, extra = enter(state, cfg)
            return leave(obj, fn(obj, **extra))

        runner = run_sync
    runner.__qualname__ = f"{fn.__qualname__}[step]"
    runner.__module__ = fn.__module__
    runner.__doc__ = fn.__doc__
    return runner


def _parse_payload(payload: Any, name: str) -> dict[str, Any]:
    if payload is None or payload == "":
        return {}
    if isinstance(payload, str | bytes):
        try:
            payload = json.loads(payload)
        except ValueError as exc:
            raise PayloadError(f"the payload of {name!r} is not valid JSON: {exc}") from None
    if not isinstance(payload, Mapping):
        raise PayloadError(
            f"the payload of orchestration {name!r} must be a JSON object (a dict), not "
            f"{type(payload).__name__}"
        )
    return dict(payload)


_CONFIG_SUFFIXES = (".toml", ".json", ".yaml", ".yml")


def _check_config(config: Config, name: str) -> Config:
    """Refuse, at registration, a config the run could not read (unknown format, no PyYAML)."""
    if config is None or isinstance(config, Mapping):
        return config
    suffix = Path(config).suffix.lower()
    if suffix not in _CONFIG_SUFFIXES:
        raise RegistrationError(
            f"orchestration {name!r}: cannot read config {config} (use .toml, .json, .yaml or .yml)"
        )
    if suffix in (".yaml", ".yml") and importlib.util.find_spec("yaml") is None:
        raise RegistrationError(_NO_YAML.format(name=name, path=config))
    return config


_NO_YAML = (
    "orchestration {name!r}: {path} is YAML but PyYAML is not installed; "
    "pip install 'flowcore[yaml]', or use a .toml or .json config"
)


def _read_config(config: Config, name: str) -> dict[str, Any]:
    if config is None:
        return {}
    if isinstance(config, Mapping):
        return dict(config)
    path = Path(config)
    suffix = path.suffix.lower()
    if suffix == ".toml":
        with path.open("rb") as fp:
            return tomllib.load(fp)
    if suffix == ".json":
        with path.open(encoding="utf-8") as fp:
            loaded = json.load(fp)
    elif suffix in (".yaml", ".yml"):
        try:
            import yaml  # type: ignore[import-untyped]  # noqa: PLC0415 - optional extra
        except ImportError:
            raise RegistrationError(_NO_YAML.format(name=name, path=path)) from None
        with path.open(encoding="utf-8") as fp:
            loaded = yaml.safe_load(fp) or {}
    else:
        raise RegistrationError(
            f"orchestration {name!r}: cannot read config {path} (use .toml, .json, .yaml or .yml)"
        )
    if not isinstance(loaded, dict):
        raise RegistrationError(f"orchestration {name!r}: config {path} is not a mapping")
    return loaded


# -- registration API -----------------------------------------------------------------------------


def get_orchestration(name: str) -> Orchestration:
    """The orchestration registered under ``name``.

    Raises:
        RegistrationError: no orchestration has this name.
    """
    found = _lookup(name)
    if found is None:
        raise RegistrationError(
            f"no orchestration named {name!r} is registered; decorate its steps with "
            "@flowcore.steps.step(..., orchestration=...) and import their module first"
        )
    return found


def _lookup(name: str) -> Orchestration | None:
    defn = default_registry.workflows.get(name, {}).get("1")
    found = getattr(defn, "orchestration", None)
    return found if isinstance(found, Orchestration) else None


def orchestration(
    name: str = DEFAULT_ORCHESTRATION,
    *,
    state_class: type[Any] | None = None,
    config: Config = None,
) -> Orchestration:
    """Get or create the orchestration ``name``, binding its state class and configuration.

    Args:
        name: The orchestration (and workflow) name.
        state_class: The state class; required when the orchestration does not exist yet.
        config: Bind this configuration (a mapping or a config file path) to it.

    Returns:
        The orchestration.

    Raises:
        RegistrationError: a new orchestration without a state class, a state class other than
            the one already bound, or a plain workflow already holds the name.
    """
    return _ensure(name, state_class, config)


def _ensure(name: str, state_class: type[Any] | None, config: Config) -> Orchestration:
    orch = _lookup(name)
    if orch is None:
        if state_class is None:
            raise RegistrationError(
                f"orchestration {name!r} does not exist yet; pass state_class= to create it"
            )
        orch = Orchestration(name, state_class, config)
        default_registry.add_workflow(orch.workflow)
        default_registry.add_activity(orch.init)
        return orch
    if state_class is not None and _origin(state_class) != _origin(orch.state_class):
        raise RegistrationError(
            f"orchestration {name!r} runs on state class {_origin(orch.state_class)}, not "
            f"{_origin(state_class)}; one orchestration has one state class"
        )
    if config is not None:
        orch.config = _check_config(config, name)
    return orch


def step(
    number: int,
    state_class: type[Any] | None = None,
    orchestration_name: str | None = None,
    config_file: str | os.PathLike[str] | None = None,
    skippable: bool = False,  # noqa: FBT001, FBT002 - pyorchestration's positional order
    *,
    orchestration: str = DEFAULT_ORCHESTRATION,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
    config: Config = None,
) -> Callable[[F], F]:
    """Register the decorated function as step ``number`` of an orchestration.

    The first five parameters keep pyorchestration's positional order, so
    ``@step(1, MyState, "nightly", "nightly.yml", True)`` works unchanged.

    Args:
        number: Steps run in ascending number order; two steps may not share one.
        state_class: The orchestration's state class (needed on its first step).
        orchestration_name: pyorchestration's spelling of ``orchestration``.
        orchestration: Which orchestration the step belongs to.
        skippable: Record a failure (after the retries) and go on with the next step.
        retry: Retry policy of this step; default: one attempt.
        timeout: Seconds one attempt may take.
        config: Bind this configuration (mapping or file path) to the orchestration.
        config_file: pyorchestration's spelling of ``config`` for a file.

    Returns:
        A decorator that registers the function and returns it unchanged.

    Raises:
        RegistrationError: the number is taken, or the state class does not match.
    """
    name = orchestration_name or orchestration
    bound = config if config is not None else config_file

    def decorate(fn: F) -> F:
        orch = _ensure(name, state_class, bound)
        orch.add_step(number, fn, skippable=skippable, retry=retry, timeout=timeout)
        return fn

    return decorate


async def start(
    runtime: Runtime,
    name: str = DEFAULT_ORCHESTRATION,
    payload: Any = None,
    *,
    config: Mapping[str, Any] | None = None,
    id: str | None = None,  # noqa: A002 - the public name users expect
    if_exists: Literal["error", "return"] = "error",
) -> WorkflowHandle:
    """Start a run of orchestration ``name``; check name and payload before anything is written.

    ``runtime.start(name, payload)`` works as well; this helper also refuses an unknown
    orchestration or a payload that is not a JSON object up front, instead of a failed run.
    It is what a Celery entry point (``[name, json_payload]``) calls.

    Args:
        runtime: An open runtime.
        name: The orchestration.
        payload: A dict or a JSON string (an object).
        config: Keys that replace the orchestration's configuration for this run.
        id: The run's workflow id; random when omitted.
        if_exists: As in :meth:`flowcore.Runtime.start`.

    Returns:
        A handle; its result is a :class:`PipelineResult`.

    Raises:
        RegistrationError: no orchestration has this name.
        PayloadError: the payload is not a JSON object.
    """
    orch = get_orchestration(name)
    data = run_payload(payload, config=config, name=name)
    return await runtime.start(orch.workflow, data, id=id, if_exists=if_exists)


def run_payload(
    payload: Any = None, *, config: Mapping[str, Any] | None = None, name: str = "run_payload"
) -> dict[str, Any]:
    """A payload for ``runtime.start(orchestration, ...)`` that overrides config for this run.

    Args:
        payload: The state's payload (a dict or a JSON string).
        config: Keys that replace the orchestration's configuration for this run.
        name: The orchestration, for error messages.

    Returns:
        A dict payload with the override under :data:`CONFIG_KEY`.

    Raises:
        PayloadError: the payload is not a JSON object.
    """
    data = _parse_payload(payload, name)
    if config is not None:
        data[CONFIG_KEY] = dict(config)
    return data


def _defined_twice(old: Any, old_load: object, fn: Any, load: object) -> bool:
    """True when ``fn`` is a second ``def`` of ``old``'s name in the same run of one module.

    Both live in one namespace and one load of it (a reload gives the module a new
    ``__spec__``) and come from two places of the same file. A reload, a notebook cell run
    again (same place, or a new cell file) or a factory called again only re-registers.
    """
    old_code, code = getattr(old, "__code__", None), getattr(fn, "__code__", None)
    if old_code is None or code is None:
        return False
    return bool(
        old.__globals__ is fn.__globals__
        and old_load is load
        and old_code.co_filename == code.co_filename
        and old_code.co_firstlineno != code.co_firstlineno
    )


def _origin(obj: Any) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"
