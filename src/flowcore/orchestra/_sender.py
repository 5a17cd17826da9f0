"""The outbox sender: delivers committed Orchestra reports in commit order, one at a time.

A record is deleted from the outbox only after Orchestra answered it with a 2xx; until then it is
retried with exponential backoff (capped). A record Orchestra refuses outright (a 4xx other than
408/429: the request itself is wrong) is logged and dropped so it cannot block the ones after it.
A crash between the 2xx and the delete sends that one record again on restart: delivery is
at-least-once, and exactly once for every acknowledged record.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Final, final

import anyio
import httpx

from flowcore.errors import JournalError
from flowcore.orchestra import _http

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from flowcore.listeners import OutboxEntry, OutboxStore
    from flowcore.orchestra._config import OrchestraConfig

__all__ = ["CHANNEL", "Sender"]

CHANNEL: Final = "orchestra"
"""The outbox channel of Orchestra reports."""
_BATCH: Final = 100


@final
class Sender:
    """Reads the outbox and delivers it; a background task from :meth:`start` to :meth:`stop`."""

    def __init__(
        self,
        store: OutboxStore,
        config: OrchestraConfig,
        policy: _http.HttpPolicy,
        log: FilteringBoundLogger,
    ) -> None:
        self._store = store
        self._config = config
        self._policy = policy
        self._log = log
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0
        """Records acknowledged by Orchestra (and deleted) since start."""

    def start(self) -> None:
        """Start delivering in the background."""
        self._wake.set()  # records left by an earlier process go first
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name="flowcore orchestra sender"
        )

    def wake(self) -> None:
        """New records were committed."""
        self._wake.set()

    async def stop(self, drain_timeout: float) -> int | None:
        """Deliver what is left for up to ``drain_timeout`` seconds, then stop.

        Returns:
            How many records are still undelivered (they go on the next start; at most a
            batch is counted), or None when the journal cannot tell.
        """
        task, self._task = self._task, None
        if task is None:
            return 0
        self._stopping = True
        self._wake.set()
        with anyio.move_on_after(drain_timeout):
            await asyncio.shield(task)
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            return len(await self._store.outbox(CHANNEL, limit=_BATCH))
        except JournalError:
            return None

    async def _run(self) -> None:
        try:
            async with httpx.AsyncClient(
                timeout=httpx.Timeout(self._policy.timeout), follow_redirects=False
            ) as client:
                await self._loop(client)
        except JournalError as exc:
            self._log.warning("orchestra sender stopped: the journal is closed", error=str(exc))
        except Exception:  # noqa: BLE001 - reporting must never take the runtime down
            self._log.exception("orchestra sender crashed; undelivered reports stay in the outbox")

    async def _loop(self, client: httpx.AsyncClient) -> None:
        while True:
            self._wake.clear()  # cleared before reading: a commit after the read wakes us again
            entries = await self._store.outbox(CHANNEL, limit=_BATCH)
            if not entries:
                if self._stopping:
                    return
                await self._wake.wait()
                continue
            for entry in entries:
                await self._deliver(client, entry)
                await self._store.ack_outbox([entry.id])

    async def _deliver(self, client: httpx.AsyncClient, entry: OutboxEntry) -> None:
        """Return once Orchestra took the record (or refused it for good)."""
        failures = 0
        while True:
            problem: httpx.HTTPError | httpx.Response
            try:
                response = await _http.post(client, self._config, entry.body)
            except httpx.HTTPError as exc:
                problem = exc
            else:
                match _http.verdict(response):
                    case "ok":
                        self.delivered += 1
                        return
                    case "drop":
                        self._log.error(
                            "orchestra refused a report; it is dropped",
                            status_code=response.status_code,
                            task_run_id=entry.key,
                            workflow_id=entry.workflow_id,
                        )
                        return
                    case "retry":
                        problem = response
            failures += 1
            delay = self._policy.delay(failures)
            self._log.warning(
                "orchestra report not delivered; retrying",
                error=_http.describe(problem),
                attempt=failures,
                retry_in=delay,
                task_run_id=entry.key,
            )
            await anyio.sleep(delay)
