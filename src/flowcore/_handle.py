"""WorkflowHandle: a reference to one workflow instance of a runtime."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, final

if TYPE_CHECKING:
    from flowcore._status import WorkflowStatus
    from flowcore.engine.events import Event
    from flowcore.runtime import Runtime

__all__ = ["WorkflowHandle"]


@final
class WorkflowHandle:
    """Refers to one workflow instance; returned by ``Runtime.start`` and ``Runtime.handle``."""

    __slots__ = ("_runtime", "id")

    def __init__(self, runtime: Runtime, workflow_id: str) -> None:
        self._runtime = runtime
        self.id = workflow_id
        """The instance id."""

    async def result(self, timeout: float | None = None) -> Any:
        """Wait for the workflow to finish and return its result.

        Args:
            timeout: Seconds to wait at most; None waits for ever.

        Raises:
            WorkflowFailedError: the workflow raised; ``.failure`` describes it.
            TimeoutError: it did not finish in time.
        """
        return await self._runtime.result(self.id, timeout=timeout)

    async def status(self) -> WorkflowStatus:
        """The instance's committed status record."""
        return await self._runtime.status(self.id)

    async def history(self) -> list[Event]:
        """The instance's committed events."""
        return await self._runtime.history(self.id)

    def __repr__(self) -> str:
        return f"<WorkflowHandle {self.id!r}>"
