"""The worker side: the Celery tasks a ``celery -A myapp worker`` process runs for flowcore.

Call :func:`register` in the module that defines your Celery app. The ``flowcore.activity``
task looks the requested activity up by module and name, runs it (sync, or async with
``asyncio.run``) and returns ``{"result": ...}`` or ``{"failure": ...}`` as JSON. It never
raises for the activity's own errors (``sys.exit()`` included) and never retries by itself:
retries are the runtime's, journaled under the activity's RetryPolicy.

A message never makes a worker import anything: the activity's module must already be loaded
in the worker (imported by the app's module, as Celery task modules are) or be one of the app's
configured task modules (``Celery(include=[...])``, ``app.conf.imports``), which Celery imports
when the worker starts. Importing a module runs its top-level code, so a module named only by a
message is refused unimported.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import sys
from typing import TYPE_CHECKING, Any

from celery.exceptions import WorkerShutdown, WorkerTerminate

from flowcore import _context, serde
from flowcore._definitions import ActivityDef, default_registry
from flowcore.celery._protocol import ACTIVITY_TASK, START_QUEUE, START_TASK, START_TASKS
from flowcore.errors import BackendError, FailureInfo, PayloadError, RegistrationError

if TYPE_CHECKING:
    from collections.abc import Callable, Collection

    from celery import Celery

__all__ = ["register", "run_activity"]


def register(app: Celery) -> None:
    """Register flowcore's tasks on a Celery app (call it where the app is defined).

    It adds ``flowcore.activity`` (runs activities for a runtime's
    :class:`~flowcore.celery.CeleryBackend`; ``acks_late`` and ``reject_on_worker_lost``, so a
    task whose worker dies is delivered again) and a ``flowcore.start`` forwarder that moves
    start requests sent to a worker queue onto the ``flowcore.start`` queue a runtime consumes;
    pyorchestration's ``orchestration.tasks.orchestrate`` is forwarded the same way. It also
    routes both to that queue for senders using this app.

    The worker runs activities only from modules it loads itself: those imported by the
    module that defines the app, and the app's task modules (``Celery(include=[...])``,
    ``app.conf.imports``). A message naming any other module fails its activity unimported.

    Raises:
        BackendError: the app does not use JSON for task messages and results.
    """
    _check_json(app)
    routes = app.conf.task_routes
    if routes is None or isinstance(routes, dict):
        app.conf.task_routes = {
            **(routes or {}),
            **{t: {"queue": START_QUEUE} for t in START_TASKS},
        }

    def activity_task(  # noqa: PLR0917 - a Celery task: the message's positional args
        task: Any,
        module: str,
        qualname: str,
        args: Any,
        kwargs: Any,
        info: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        delivery = getattr(task.request, "delivery_info", None) or {}
        if delivery.get("redelivered"):  # the broker says so: only then is a lookup worth it
            done = _stored_outcome(app, task.request.id)
            if done is not None:  # a redelivery of an attempt that already finished: not again
                return done
        return run_activity(module, qualname, args, kwargs, info, loadable=_task_modules(app))

    app.task(
        name=ACTIVITY_TASK,
        bind=True,
        shared=False,
        acks_late=True,
        reject_on_worker_lost=True,
        serializer="json",
        ignore_result=False,
        autoretry_for=(),
    )(activity_task)

    def forward_start(task: Any, *args: Any, **kwargs: Any) -> None:
        _forward_start(app, task, *args, **kwargs)

    for name in START_TASKS:  # flowcore.start, and pyorchestration's orchestrate entry point
        # acked after the forward (idempotent: same task id), so a worker crash loses nothing
        app.task(
            name=name,
            shared=False,
            bind=True,
            serializer="json",
            ignore_result=True,
            acks_late=True,
            reject_on_worker_lost=True,
        )(forward_start)


def _check_json(app: Celery) -> None:
    conf = app.conf
    if conf.result_serializer != "json" or conf.task_serializer != "json":
        raise BackendError(
            "flowcore sends and receives JSON only; set task_serializer='json' and "
            f"result_serializer='json' on the Celery app (now {conf.task_serializer!r} and "
            f"{conf.result_serializer!r})"
        )


def _stored_outcome(app: Celery, task_id: str | None) -> dict[str, Any] | None:
    """The outcome already stored for this task id, if an earlier delivery finished it.

    ``acks_late`` makes the broker deliver a task again when its message is not acknowledged
    in time: a worker killed between storing the result and the ack, or (Redis broker) an
    attempt that outlived ``visibility_timeout``, whose copy a busy worker then takes after
    the first run finished. Task ids are deterministic per attempt, so a stored flowcore
    outcome means this exact attempt completed (and the runtime may have recorded it): it is
    returned again instead of running the activity a second time. If the result backend
    cannot be read, the activity runs (at least once). Checked only for a message the broker
    marks ``redelivered`` (kombu's Redis transport marks the messages it restores), so a first
    delivery costs no extra read.
    """
    if not task_id:
        return None
    try:
        meta = app.backend.get_task_meta(task_id, cache=False)
    except Exception:  # noqa: BLE001 - unreadable: run it, as without the check
        return None
    result = meta.get("result") if meta.get("status") == "SUCCESS" else None
    if (
        isinstance(result, dict)
        and len(result) == 1
        and ("result" in result or "failure" in result)
    ):
        return result
    return None


def _task_modules(app: Celery) -> frozenset[str]:
    """The task modules a Celery app declares: its ``include`` and ``imports`` settings."""
    declared: set[str] = set()
    for key in ("include", "imports"):
        value = app.conf.get(key) or ()
        declared.update([value] if isinstance(value, str) else value)
    return frozenset(declared)


def run_activity(
    module: str,
    qualname: str,
    args: Any,
    kwargs: Any,
    info: dict[str, Any] | None = None,
    *,
    loadable: Collection[str] = (),
) -> dict[str, Any]:
    """Run one activity attempt; return ``{"result": json}`` or ``{"failure": FailureInfo json}``.

    The activity's module must already be loaded in this process or be one of ``loadable``;
    any other module is refused without being imported (a non-retryable failure).

    Args:
        module: Module that defines the activity.
        qualname: Its qualified name in that module.
        args: Positional arguments encoded by flowcore's codec.
        kwargs: Keyword arguments encoded by flowcore's codec, or None.
        info: What ``flowcore.activity_info()`` reports inside the activity.
        loadable: Modules this worker may import on demand (the Celery app's task modules).
    """
    try:
        fn = _resolve(module, qualname, loadable)
        pos, named = serde.decode_args(fn, args or [], kwargs)
    except (ImportError, AttributeError, RegistrationError, PayloadError) as exc:
        return {"failure": FailureInfo.from_exception(exc, non_retryable=True).to_json()}
    token = _context.enter_activity(_info(info or {}))
    try:
        value = fn(*pos, **named)
        if inspect.isawaitable(value):
            value = asyncio.run(_awaited(value))
    except (WorkerShutdown, WorkerTerminate):
        raise  # the worker stops (raised into a solo pool's task): the task is delivered again
    except BaseException as exc:  # noqa: BLE001 - the activity's own error is its outcome
        # sys.exit() in a library, a KeyboardInterrupt or GeneratorExit the code raises: out
        # of the task it would end a prefork pool process, which rejects the task to run it
        # again (reject_on_worker_lost), for ever; the local backend fails the attempt too.
        return {"failure": FailureInfo.from_exception(exc).to_json()}
    finally:
        _context.exit_activity(token)
    try:
        return {"result": serde.encode(value)}
    except PayloadError as exc:
        return {"failure": FailureInfo.from_exception(exc, non_retryable=True).to_json()}


async def _awaited(value: Any) -> Any:
    return await value


def _resolve(module: str, qualname: str, loadable: Collection[str]) -> Callable[..., Any]:
    """The function of the activity a message names; only a flowcore activity is ever run.

    Whoever can write to the broker chooses ``module`` and ``qualname``: a module the worker
    has not loaded (and is not configured to load) is refused without importing it, and any
    callable but an activity (``os.system``, ``builtins.exec``) is refused, never called.
    Attributes are read statically, so no module ``__getattr__`` runs (it could import more).
    """
    loaded = sys.modules.get(module)
    if loaded is None:
        if module not in loadable:
            raise RegistrationError(
                f"module {module!r} is not loaded on this worker, so {module}.{qualname} was "
                "refused without importing it (a worker never imports a module because a "
                f"message names it); import {module} in the module that defines the worker's "
                f"Celery app, or list it in Celery(include=[{module!r}]) or app.conf.imports"
            )
        loaded = importlib.import_module(module)
    obj: Any = loaded
    for part in qualname.split("."):
        obj = inspect.getattr_static(obj, part)
    if isinstance(obj, ActivityDef):
        fn: Callable[..., Any] = obj.fn
        return fn
    if any(defn.fn is obj for defn in default_registry.activities.values()):
        return obj  # type: ignore[no-any-return]
    raise RegistrationError(
        f"{module}.{qualname} is not a flowcore activity; a worker runs only functions "
        "decorated with @flowcore.activity"
    )


def _info(data: dict[str, Any]) -> _context.Info:
    return _context.Info(
        workflow_id=str(data.get("workflow_id", "")),
        workflow_name=str(data.get("workflow_name", "")),
        version=str(data.get("version", "")),
        activity=data.get("activity"),
        step=data.get("step"),
        attempt=data.get("attempt"),
        op=data.get("op"),
    )


def _forward_start(app: Celery, task: Any, *args: Any, **kwargs: Any) -> None:
    """A start request landed on a worker queue: move it to the runtime's queue, same id."""
    delivery = getattr(task.request, "delivery_info", None) or {}
    if delivery.get("routing_key") == START_QUEUE:
        raise RegistrationError(
            f"a Celery worker consumes the {START_QUEUE!r} queue; only a runtime with a "
            "CeleryStarter may consume it (drop it from the worker's -Q list)"
        )
    app.send_task(
        START_TASK, args=list(args), kwargs=kwargs, task_id=task.request.id, queue=START_QUEUE
    )
