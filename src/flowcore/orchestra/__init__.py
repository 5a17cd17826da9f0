"""Report flowcore runs to Orchestra (getorchestra.io): ``pip install flowcore[orchestra]``.

* :class:`OrchestraReporter` is a listener (``Runtime(listeners=[OrchestraReporter()])``): the
  workflows it reports send their status, activity progress and outputs to an Orchestra task run
  through a durable outbox in the journal.
* :func:`set_output` declares an output from inside a workflow.
* :func:`task` (or ``@reporter.run()``) reports a plain sync or async function, re-raising its
  errors.
* ``python -m flowcore run MODULE:WORKFLOW --orchestra`` runs a workflow as an Orchestra task
  (automatic when ``ORCHESTRA_TASK_RUN_ID`` / ``ORCHESTRA_API_KEY`` are set).

The settings come from arguments or ``ORCHESTRA_TASK_RUN_ID``, ``ORCHESTRA_API_KEY`` and
``ORCHESTRA_WEBHOOK_URL``. The API key never appears in logs, reprs, errors or the journal.
"""

from __future__ import annotations

try:
    import httpx as _httpx  # noqa: F401 - fail early with the install hint
except ImportError as _exc:  # pragma: no cover - the extra is installed in development
    _msg = "flowcore.orchestra needs httpx: install flowcore[orchestra]"
    raise ImportError(_msg) from _exc

from flowcore.orchestra._config import DEFAULT_WEBHOOK_URL as DEFAULT_WEBHOOK_URL
from flowcore.orchestra._config import OrchestraConfig as OrchestraConfig
from flowcore.orchestra._config import OrchestraConfigError as OrchestraConfigError
from flowcore.orchestra._http import HttpPolicy as HttpPolicy
from flowcore.orchestra._http import TaskRunStatus as TaskRunStatus
from flowcore.orchestra._reporter import OrchestraReporter as OrchestraReporter
from flowcore.orchestra._reporter import set_output as set_output
from flowcore.orchestra._task import task as task

__all__ = [
    "DEFAULT_WEBHOOK_URL",
    "HttpPolicy",
    "OrchestraConfig",
    "OrchestraConfigError",
    "OrchestraReporter",
    "TaskRunStatus",
    "set_output",
    "task",
]
