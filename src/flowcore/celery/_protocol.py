"""What the runtime and the Celery workers agree on: task names, task ids, message shapes.

Everything here is JSON: arguments and results go through flowcore's codec, failures are
:class:`~flowcore.errors.FailureInfo` dicts. Nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from flowcore.errors import RegistrationError

if TYPE_CHECKING:
    from flowcore._definitions import ActivityDef
    from flowcore.backends.base import ActivityTask

__all__ = [
    "ACTIVITY_TASK",
    "PIPELINE_TASK",
    "SENT_PREFIX",
    "START_QUEUE",
    "START_TASK",
    "START_TASKS",
    "TASK_ID_PREFIX",
    "activity_message",
    "locate",
    "task_id_for",
]

ACTIVITY_TASK = "flowcore.activity"
"""The Celery task that runs one activity attempt on a worker."""
START_TASK = "flowcore.start"
"""The Celery task that starts a workflow: ``args=[name, json_payload], kwargs={"id": ...}``."""
PIPELINE_TASK = "orchestration.tasks.orchestrate"
"""pyorchestration's entry point, ``args=[orchestration name, json_payload]``: same as
``flowcore.start`` (a :mod:`flowcore.steps` orchestration is a workflow of that name)."""
START_TASKS = (START_TASK, PIPELINE_TASK)
"""The task names that start a workflow."""
START_QUEUE = "flowcore.start"
"""The queue a runtime consumes ``flowcore.start`` messages from (workers forward stray ones)."""
TASK_ID_PREFIX = "flowcore/"
"""Every activity task id starts with it (the collector subscribes to their results by prefix)."""
SENT_PREFIX = "flowcore-sent:"
"""Result-backend key prefix of the marker saying a task id was already sent to the broker."""


def task_id_for(task: ActivityTask) -> str:
    """The Celery task id of one attempt: the same after a crash and recovery.

    It is ``flowcore/<workflow id>/<op>/<attempt>#<digest>``: the idempotency key (whose op
    names the run after a continue-as-new, ``r2.1``) plus a digest of the activity name and its
    encoded arguments, so a task id never names two different calls.
    """
    blob = json.dumps(
        [task.activity.name, task.encoded_args, task.encoded_kwargs],
        sort_keys=True,
        separators=(",", ":"),
    )
    digest = hashlib.sha256(blob.encode()).hexdigest()[:16]
    return f"{TASK_ID_PREFIX}{task.idempotency_key}#{digest}"


def locate(defn: ActivityDef[..., Any]) -> tuple[str, str]:
    """The module and qualified name a worker imports the activity by.

    Raises:
        RegistrationError: the function cannot be imported by name on another host.
    """
    fn = defn.fn
    module, qualname = fn.__module__, fn.__qualname__
    if module == "__main__" or "<locals>" in qualname:
        raise RegistrationError(
            f"activity {defn.name!r} ({module}.{qualname}) cannot be imported by a Celery "
            "worker; define it at the top level of an importable module (not __main__, not "
            "inside a function)"
        )
    return module, qualname


def activity_message(task: ActivityTask) -> tuple[list[Any], dict[str, Any]]:
    """The ``args`` and ``kwargs`` of the ``flowcore.activity`` Celery task for one attempt."""
    module, qualname = locate(task.activity)
    info = {
        "workflow_id": task.workflow_id,
        "workflow_name": task.workflow_name,
        "version": task.workflow_version,
        "activity": task.activity.name,
        "step": task.step,
        "attempt": task.attempt,
        "op": task.op,
    }
    return [module, qualname, task.encoded_args, task.encoded_kwargs], {"info": info}
