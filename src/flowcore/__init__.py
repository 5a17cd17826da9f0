"""flowcore: durable async workflows for Python on an embedded SQLite journal.

Workflows are ``async def`` functions whose awaits of activities are journaled; after a crash
they are replayed from the journal and carry on where they stopped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowcore._context import Info as Info
from flowcore._context import activity_info as activity_info
from flowcore._context import child as child
from flowcore._context import continue_as_new as continue_as_new
from flowcore._context import first as first
from flowcore._context import gather as gather
from flowcore._context import info as info
from flowcore._context import now as now
from flowcore._context import random as random
from flowcore._context import set_status as set_status
from flowcore._context import sleep as sleep
from flowcore._context import sleep_until as sleep_until
from flowcore._context import uuid4 as uuid4
from flowcore._context import wait_event as wait_event
from flowcore._definitions import ActivityDef as ActivityDef
from flowcore._definitions import WorkflowDef as WorkflowDef
from flowcore._definitions import activity as activity
from flowcore._definitions import workflow as workflow
from flowcore._handle import WorkflowHandle as WorkflowHandle
from flowcore._lifespan import lifespan as lifespan
from flowcore._status import WorkflowState as WorkflowState
from flowcore._status import WorkflowStatus as WorkflowStatus
from flowcore.blocking import BlockingRuntime as BlockingRuntime
from flowcore.engine._traps import First as First
from flowcore.errors import ActivityError as ActivityError
from flowcore.errors import ActivityTimeoutError as ActivityTimeoutError
from flowcore.errors import BackendError as BackendError
from flowcore.errors import BackendUnavailableError as BackendUnavailableError
from flowcore.errors import FailureInfo as FailureInfo
from flowcore.errors import FlowcoreError as FlowcoreError
from flowcore.errors import InvalidArgumentError as InvalidArgumentError
from flowcore.errors import JournalCorruptError as JournalCorruptError
from flowcore.errors import JournalError as JournalError
from flowcore.errors import JournalLockedError as JournalLockedError
from flowcore.errors import NondeterminismError as NondeterminismError
from flowcore.errors import NonRetryableError as NonRetryableError
from flowcore.errors import PayloadError as PayloadError
from flowcore.errors import RegistrationError as RegistrationError
from flowcore.errors import SchemaVersionError as SchemaVersionError
from flowcore.errors import UnknownVersionError as UnknownVersionError
from flowcore.errors import WorkflowAlreadyExistsError as WorkflowAlreadyExistsError
from flowcore.errors import WorkflowCanceledError as WorkflowCanceledError
from flowcore.errors import WorkflowError as WorkflowError
from flowcore.errors import WorkflowFailedError as WorkflowFailedError
from flowcore.errors import WorkflowFinishedError as WorkflowFinishedError
from flowcore.errors import WorkflowMisuseError as WorkflowMisuseError
from flowcore.errors import WorkflowNotFoundError as WorkflowNotFoundError
from flowcore.retry import RetryPolicy as RetryPolicy
from flowcore.runtime import Runtime as Runtime

if TYPE_CHECKING:  # typed as attributes for `import flowcore`; at run time __getattr__ loads them
    from flowcore import blocking as blocking
    from flowcore import compat as compat
    from flowcore import listeners as listeners
    from flowcore import retry as retry
    from flowcore import serde as serde
    from flowcore import steps as steps
    from flowcore import testing as testing

__version__ = "0.1.0"

__all__ = [
    "ActivityDef",
    "ActivityError",
    "ActivityTimeoutError",
    "BackendError",
    "BackendUnavailableError",
    "BlockingRuntime",
    "FailureInfo",
    "First",
    "FlowcoreError",
    "Info",
    "InvalidArgumentError",
    "JournalCorruptError",
    "JournalError",
    "JournalLockedError",
    "NonRetryableError",
    "NondeterminismError",
    "PayloadError",
    "RegistrationError",
    "RetryPolicy",
    "Runtime",
    "SchemaVersionError",
    "UnknownVersionError",
    "WorkflowAlreadyExistsError",
    "WorkflowCanceledError",
    "WorkflowDef",
    "WorkflowError",
    "WorkflowFailedError",
    "WorkflowFinishedError",
    "WorkflowHandle",
    "WorkflowMisuseError",
    "WorkflowNotFoundError",
    "WorkflowState",
    "WorkflowStatus",
    "activity",
    "activity_info",
    "child",
    "continue_as_new",
    "first",
    "gather",
    "info",
    "lifespan",
    "now",
    "random",
    "set_status",
    "sleep",
    "sleep_until",
    "uuid4",
    "wait_event",
    "workflow",
]

# Show the public home in reprs and tracebacks (flowcore.Runtime, not flowcore.runtime.Runtime).
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) and _obj.__module__.startswith("flowcore."):
        _obj.__module__ = "flowcore"
del _name, _obj

_SUBMODULES = frozenset(
    {"blocking", "celery", "compat", "listeners", "orchestra", "retry", "serde", "steps", "testing",
     "web"}
)  # fmt: skip


def __getattr__(name: str) -> object:
    """Import a public submodule on first use.

    So ``flowcore.testing.VirtualClock()`` works after only ``import flowcore``; the optional
    ones still need their extra (web, celery, orchestra).
    """
    if name in _SUBMODULES:
        import importlib  # noqa: PLC0415 - only on this path

        return importlib.import_module(f"flowcore.{name}")
    msg = f"module 'flowcore' has no attribute {name!r}"
    raise AttributeError(msg)
