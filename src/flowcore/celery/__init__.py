"""Celery integration (``pip install flowcore[celery]``): run activities on Celery workers.

On the runtime's side::

    from flowcore.celery import CeleryBackend, CeleryStarter

    async with Runtime("flowcore.db", backends={"celery": CeleryBackend(app)}) as runtime:
        async with CeleryStarter(app, runtime):   # optional: accept flowcore.start requests
            ...

On the workers' side, in the module that defines the Celery app::

    import flowcore.celery
    flowcore.celery.register(app)          # then: celery -A thatmodule worker
    import myapp.activities                # or Celery(..., include=["myapp.activities"])

A worker runs only activities of modules it loaded itself; it never imports a module because a
message names it.
"""

from __future__ import annotations

try:
    import celery as _celery  # noqa: F401 - fail early with the install hint
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "flowcore.celery needs Celery with Redis support: pip install 'flowcore[celery]'"
    ) from _exc

from flowcore.celery._backend import CeleryBackend as CeleryBackend
from flowcore.celery._protocol import ACTIVITY_TASK as ACTIVITY_TASK
from flowcore.celery._protocol import START_QUEUE as START_QUEUE
from flowcore.celery._protocol import START_TASK as START_TASK
from flowcore.celery._protocol import task_id_for as task_id_for
from flowcore.celery._starter import CeleryStarter as CeleryStarter
from flowcore.celery._worker import register as register
from flowcore.celery._worker import run_activity as run_activity

__all__ = [
    "ACTIVITY_TASK",
    "START_QUEUE",
    "START_TASK",
    "CeleryBackend",
    "CeleryStarter",
    "register",
    "run_activity",
    "task_id_for",
]
