"""OrchestraReporter: a listener that turns a workflow's journal events into Orchestra reports.

It decides from each append alone what to report (so a recovered runtime reports the same way),
commits the report bodies in the outbox with the events, and runs the :class:`Sender` that
delivers them. The API key stays in this object; the journal holds only bodies and task-run ids.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Final, ParamSpec, Self, TypeVar, final

from flowcore._context import in_workflow
from flowcore._definitions import ActivityDef
from flowcore._logging import lazy_logger
from flowcore._status import WorkflowState, WorkflowStatus
from flowcore.engine import events as ev
from flowcore.errors import FlowcoreError
from flowcore.listeners import OutboxRecord, OutboxStore
from flowcore.orchestra import _config, _http, _task
from flowcore.orchestra._sender import CHANNEL, Sender
from flowcore.retry import NO_RETRY

if TYPE_CHECKING:
    import uuid
    from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence

    from flowcore.abc import Journal
    from flowcore.journal.base import Append

__all__ = ["SET_OUTPUT_ACTIVITY", "OrchestraReporter", "set_output"]

SET_OUTPUT_ACTIVITY: Final = "flowcore.orchestra.set_output"
"""The journaled activity behind :func:`set_output` (its arguments carry the output)."""

_log = lazy_logger("flowcore.orchestra")
P = ParamSpec("P")
R = TypeVar("R")


async def _record_output(name: str, value: Any) -> None:
    """Nothing to do: the schedule of this call, journaled with its arguments, is the output."""


_SET_OUTPUT: ActivityDef[[str, Any], None] = ActivityDef(
    _record_output, name=SET_OUTPUT_ACTIVITY, retry=NO_RETRY, timeout=None
)


def set_output(name: str, value: Any) -> Awaitable[None]:
    """Declare an Orchestra output of the running workflow (await it).

    The call is journaled like an activity, so it is deterministic and survives restarts; an
    :class:`OrchestraReporter` sends it as ``SET_OUTPUT`` in order with the other reports, always
    before the final status. Without a reporter it is recorded and nothing is sent.

    Args:
        name: Letters, underscores and hyphens.
        value: Any value flowcore can encode (sent as its JSON form).

    Raises:
        ValueError: an invalid name.
        FlowcoreError: called outside a workflow.
    """
    _config.check_output_name(name)
    if not in_workflow():
        raise FlowcoreError(
            "flowcore.orchestra.set_output() is for workflows; outside one, report with an "
            "OrchestraReporter's task decorator"
        )
    return _SET_OUTPUT(name, value)


@final
class OrchestraReporter:
    """Report workflow runs to an Orchestra task run, through the journal's durable outbox.

    Pass it to ``Runtime(listeners=[...])``. For each workflow it reports (by default every
    top-level one; see ``workflows``) it sends ``RUNNING`` at the start, a ``RUNNING`` message
    when each activity starts and ends, ``SET_OUTPUT`` for each :func:`set_output` (and for the
    result, see ``result_output``), then ``SUCCEEDED``, ``FAILED`` (with the error, truncated) or
    ``CANCELLED``. Reports commit with the events causing them and are delivered in order by a
    background task; if Orchestra is down or slow, workflows are never blocked or failed by it,
    and undelivered reports are sent when a runtime opens the database again.

    Settings not given are read from ``ORCHESTRA_TASK_RUN_ID``, ``ORCHESTRA_API_KEY`` and
    ``ORCHESTRA_WEBHOOK_URL``.

    Args:
        task_run_id: The Orchestra task run (a UUID).
        api_key: The API key; it never appears in logs, reprs, errors or the journal.
        webhook_url: Where to POST (default: Orchestra's public webhook).
        workflows: Ids of the workflows to report; default: every workflow without a parent.
        result_output: Also send the workflow's result as the output of this name.
        timeout: Seconds one HTTP request may take.
        initial_backoff: Seconds before the first retry of a failed request (then doubling).
        max_backoff: The longest wait between two retries.
        drain_timeout: On close, how long to keep delivering what is left.
        env: The environment to read (default: ``os.environ``).

    Raises:
        OrchestraConfigError: no or an invalid task-run id, no API key, a bad webhook URL.
    """

    def __init__(
        self,
        *,
        task_run_id: str | uuid.UUID | None = None,
        api_key: str | None = None,
        webhook_url: str | None = None,
        workflows: Collection[str] | None = None,
        result_output: str | None = None,
        timeout: float = 10.0,
        initial_backoff: float = 0.5,
        max_backoff: float = 60.0,
        drain_timeout: float = 10.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._config = _config.resolve(
            task_run_id=task_run_id, api_key=api_key, webhook_url=webhook_url, env=env
        )
        self._policy = _http.HttpPolicy(
            timeout=timeout, initial_backoff=initial_backoff, max_backoff=max_backoff
        )
        self._workflows = None if workflows is None else frozenset(workflows)
        self._result_output = (
            None if result_output is None else _config.check_output_name(result_output)
        )
        if drain_timeout < 0:
            raise ValueError("drain_timeout must be >= 0")
        self._drain_timeout = drain_timeout
        self._names: dict[str, dict[int, str]] = {}
        """workflow id -> step -> activity name, for activities still running."""
        self._sender: Sender | None = None

    @classmethod
    def from_env(cls, *, required: bool, **options: Any) -> Self | None:
        """A reporter configured from the environment, or None when reporting is not wanted.

        Args:
            required: True: a bad or missing setting raises. False: with no ``ORCHESTRA_*``
                variable set, return None quietly; with a bad setting, log one warning and
                return None.
            **options: Passed to the constructor.

        Raises:
            OrchestraConfigError: ``required`` and the settings are missing or invalid.
        """
        given: Mapping[str, str] | None = options.get("env")
        env = os.environ if given is None else given
        wanted = required or any(env.get(k) for k in (_config.ENV_TASK_RUN_ID, _config.ENV_API_KEY))
        if not wanted:
            return None
        try:
            return cls(**options)
        except _config.OrchestraConfigError as exc:
            if required:
                raise
            _log.warning("orchestra reporting is off", reason=str(exc))
            return None

    @property
    def task_run_id(self) -> uuid.UUID:
        """The task run reports go to."""
        return self._config.task_run_id

    @property
    def webhook_url(self) -> str:
        """Where reports are POSTed."""
        return self._config.webhook_url

    @property
    def config(self) -> _config.OrchestraConfig:
        """The validated settings (the key inside is hidden from reprs)."""
        return self._config

    @property
    def policy(self) -> _http.HttpPolicy:
        """Timeout and backoff of deliveries."""
        return self._policy

    def __repr__(self) -> str:
        return (
            f"OrchestraReporter(task_run_id='{self._config.task_run_id}', "
            f"webhook_url={self._config.webhook_url!r}, api_key='********')"
        )

    def run(self) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorate a plain sync or async function to report its calls (``orchestra-sdk`` style).

        ``@reporter.run()`` sends ``RUNNING``, then ``SUCCEEDED`` or ``FAILED`` and, unlike the
        SDK, re-raises the exception. See :func:`flowcore.orchestra.task`.
        """
        return _task.task(config=self._config, policy=self._policy)

    async def report_outcome(self, status: WorkflowStatus) -> bool:
        """Send an instance's final status to the task run now, outside the outbox.

        For a run attached to an instance that had already ended, or stays parked, before it
        (Orchestra re-running the task under the same workflow id): no journal event will report
        it, yet the new task run must end. A few tries; a failure is logged, never raised.

        Returns:
            True once Orchestra acknowledged it; False when it was not sent (or not finished).
        """
        state = WorkflowState
        kind = _http.TaskRunStatus
        name = status.name
        match status.status:
            case state.COMPLETED:
                report = (kind.SUCCEEDED, f"Workflow {name} succeeded.")
            case state.FAILED:
                error = _http.truncate(status.error or "")
                report = (kind.FAILED, f"Workflow {name} failed. Error: {error}")
            case state.CANCELED | state.TERMINATED:
                what = "canceled" if status.status is state.CANCELED else "terminated"
                report = (kind.CANCELLED, f"Workflow {name} was {what}.")
            case state.PARKED:
                reason = _http.truncate(status.error or "")
                report = (kind.FAILED, f"Workflow {name} is parked and needs a code fix: {reason}")
            case _:
                return False
        return await _task.report_async(self._config, self._policy, *report)

    async def report_interrupted(self, name: str, resume: str) -> bool:
        """Tell the task run that its process stopped before the workflow ended (``run``).

        The instance stays unfinished and resumable, but this task run is over: without a final
        status it would show ``RUNNING`` for ever. Sent outside the outbox, as ``CANCELLED``
        (like a decorated function interrupted by Ctrl-C). A few tries; never raised.

        Returns:
            True once Orchestra acknowledged it.
        """
        message = f"Workflow {name} interrupted; {_http.truncate(resume)} resumes it."
        return await _task.report_async(
            self._config, self._policy, _http.TaskRunStatus.CANCELLED, message
        )

    # -- the listener protocol ------------------------------------------------------------------

    async def open(self, journal: Journal) -> None:
        """Start the sender; reports an earlier process left undelivered go first.

        Raises:
            TypeError: the journal keeps no outbox.
        """
        if not isinstance(journal, OutboxStore):
            raise TypeError(f"{journal!r} keeps no outbox; OrchestraReporter needs one")
        self._sender = Sender(journal, self._config, self._policy, _log)
        self._sender.start()

    def recovered(self, workflow_id: str, history: Sequence[ev.Event]) -> Sequence[OutboxRecord]:
        """Report the recovered workflow ``RUNNING`` again; remember its running activities.

        The task run may be a new one (Orchestra re-running the task, ``run --id``): like a
        fresh start, it must hear that the workflow runs before it hears how it ended.
        """
        started = history[0] if history else None
        if not isinstance(started, ev.WorkflowStarted) or not self._reports(
            workflow_id, started.parent_id
        ):
            return ()
        names: dict[int, str] = {}
        for event in history:
            if isinstance(event, ev.ActivityScheduled):
                names[event.step] = event.name
            elif isinstance(event, ev.ActivityCompleted | ev.ActivityFailed):
                names.pop(event.step, None)
        if names:
            self._names[workflow_id] = names
        message = f"Workflow {started.name} resumed."
        body = _http.status_body(self._config.task_run_id, _http.TaskRunStatus.RUNNING, message)
        return [OutboxRecord(channel=CHANNEL, key=str(self._config.task_run_id), body=body)]

    def journaling(self, op: Append) -> Sequence[OutboxRecord]:
        """The reports ``op``'s events cause, if its workflow is reported."""
        if not self._reports(op.workflow_id, op.row.parent_id):
            return ()
        key = str(self._config.task_run_id)
        return [
            OutboxRecord(channel=CHANNEL, key=key, body=body)
            for event in op.events
            for body in self._bodies(op, event)
        ]

    def _reports(self, workflow_id: str, parent_id: str | None) -> bool:
        if self._workflows is None:
            return parent_id is None
        return workflow_id in self._workflows

    def committed(self) -> None:
        """Wake the sender."""
        if self._sender is not None:
            self._sender.wake()

    async def close(self) -> None:
        """Deliver what is left for up to ``drain_timeout`` seconds, then stop the sender."""
        sender, self._sender = self._sender, None
        if sender is None:
            return
        left = await sender.stop(self._drain_timeout)
        if left:
            _log.warning(
                "orchestra reports left undelivered; they are sent when a runtime opens the "
                "database again",
                undelivered=left,
            )

    # -- events to reports -----------------------------------------------------------------------

    def _bodies(self, op: Append, event: ev.Event) -> list[str]:  # noqa: PLR0911 - one per kind
        run_id, workflow = self._config.task_run_id, op.row.name
        status = _http.TaskRunStatus
        names = self._names.setdefault(op.workflow_id, {})

        def update(state: _http.TaskRunStatus, message: str) -> list[str]:
            return [_http.status_body(run_id, state, message)]

        match event:
            case ev.WorkflowStarted():
                if op.reset:
                    names.clear()
                    return update(status.RUNNING, f"Workflow {workflow} continued as new.")
                return update(status.RUNNING, f"Workflow {workflow} started.")
            case ev.ActivityScheduled(name=name, step=step):
                if name == SET_OUTPUT_ACTIVITY:
                    return [_output(run_id, event.args)]
                names[step] = name
                return update(status.RUNNING, f"Activity {name} started.")
            case ev.ActivityAttemptFailed(step=step):
                name = names.get(step, f"at step {step}")
                error = _http.truncate(str(event.failure))
                return update(status.RUNNING, f"Activity {name} attempt {event.attempt} failed, "
                                              f"retrying. Error: {error}")  # fmt: skip
            case ev.ActivityCompleted(step=step) | ev.ActivityFailed(step=step):
                if step not in names:  # set_output, or one that ended before a restart
                    return []
                name = names.pop(step)
                if isinstance(event, ev.ActivityCompleted):
                    return update(status.RUNNING, f"Activity {name} succeeded.")
                error = _http.truncate(str(event.failure))
                return update(status.RUNNING, f"Activity {name} failed. Error: {error}")
            case _:
                return self._final(op, event)

    def _final(self, op: Append, event: ev.Event) -> list[str]:
        run_id, workflow = self._config.task_run_id, op.row.name
        status = _http.TaskRunStatus
        bodies: list[str] = []
        match event:
            case ev.WorkflowCompleted():
                if self._result_output is not None:
                    bodies.append(_http.output_body(run_id, self._result_output, event.result))
                bodies.append(
                    _http.status_body(run_id, status.SUCCEEDED, f"Workflow {workflow} succeeded.")
                )
            case ev.WorkflowFailed():
                error = _http.truncate(str(event.failure))
                message = f"Workflow {workflow} failed. Error: {error}"
                bodies.append(_http.status_body(run_id, status.FAILED, message))
            case ev.WorkflowCanceled() | ev.WorkflowTerminated():
                what = "canceled" if isinstance(event, ev.WorkflowCanceled) else "terminated"
                reason = f": {_http.truncate(event.reason)}" if event.reason else ""
                message = f"Workflow {workflow} was {what}{reason}."
                bodies.append(_http.status_body(run_id, status.CANCELLED, message))
            case ev.WorkflowParked():
                message = (
                    f"Workflow {workflow} is parked and needs a code fix: "
                    f"{_http.truncate(event.reason)}"
                )
                bodies.append(_http.status_body(run_id, status.FAILED, message))
            case _:
                return []
        self._names.pop(op.workflow_id, None)
        return bodies


def _output(run_id: uuid.UUID, args: Any) -> str:
    if isinstance(args, list) and len(args) == 2:  # noqa: PLR2004 - (name, value)
        return _http.output_body(run_id, str(args[0]), args[1])
    return _http.output_body(run_id, "output", args)
