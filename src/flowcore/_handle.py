"""WorkflowHandle: a reference to one workflow instance of a runtime."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, final

if TYPE_CHECKING:
    from flowcore._instance import _Instance
    from flowcore._status import WorkflowStatus
    from flowcore.engine.events import Event
    from flowcore.runtime import Runtime

__all__ = ["WorkflowHandle"]


@final
class WorkflowHandle:
    """Refers to one workflow instance; returned by ``Runtime.start`` and ``Runtime.handle``."""

    __slots__ = ("_instance", "_runtime", "id")

    def __init__(
        self, runtime: Runtime, workflow_id: str, instance: _Instance | None = None
    ) -> None:
        self._runtime = runtime
        self.id = workflow_id
        """The instance id."""
        self._instance = instance
        """The runtime's in-memory instance, when this handle comes from the start that made
        it: once that instance ended (its end committed), :meth:`result` answers from it
        without asking the journal. A workflow that finishes while its start commits (eager
        dispatch) has left the runtime's memory by the time its result is asked for."""

    async def result(self, timeout: float | None = None) -> Any:
        """Wait for the workflow to finish and return its result.

        Args:
            timeout: Seconds to wait at most; None waits for ever.

        Raises:
            WorkflowFailedError: the workflow raised; ``.failure`` describes it.
            TimeoutError: it did not finish in time.
        """
        inst = self._instance
        if inst is not None:
            done = inst.done
            if done.done() and not done.cancelled() and done.exception() is None:
                projection = inst.projection  # its last run's name and version decode
                return self._runtime._outcome(  # noqa: SLF001 - the runtime's own handle
                    self.id, done.result(), projection.name, projection.version
                )
            if done.done():  # aborted (the runtime stopped): the runtime says why
                self._instance = None
        return await self._runtime.result(self.id, timeout=timeout)

    async def status(self) -> WorkflowStatus:
        """The instance's committed status record."""
        return await self._runtime.status(self.id)

    async def history(self) -> list[Event]:
        """The instance's committed events."""
        return await self._runtime.history(self.id)

    def __repr__(self) -> str:
        return f"<WorkflowHandle {self.id!r}>"

    def __reduce__(self) -> Any:
        """Refuse to pickle: a handle belongs to one open runtime; its ``id`` travels."""
        msg = (
            f"a WorkflowHandle belongs to the runtime that made it and cannot be pickled; pass "
            f"its id ({self.id!r}) instead and call runtime.handle(id) on the other side"
        )
        raise TypeError(msg)
