"""The Orchestra webhook protocol: request bodies, one POST, and how to read its answer.

Every request is ``POST <webhook url>`` with ``Authorization: Bearer <api key>`` and a JSON body
``{"event_type": ..., "metadata": {}, "task_run_id": "<uuid>", ...}`` (as ``orchestra-sdk`` sends
it): ``UPDATE_STATUS`` adds ``status`` and an optional ``message``; ``SET_OUTPUT`` adds
``output_name`` and ``output_value``.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, final

import httpx

from flowcore.orchestra._config import ENV_API_KEY, ENV_WEBHOOK_URL

if TYPE_CHECKING:
    import uuid

    from flowcore.orchestra._config import OrchestraConfig

__all__ = [
    "MAX_MESSAGE",
    "HttpPolicy",
    "TaskRunStatus",
    "Verdict",
    "output_body",
    "post",
    "post_sync",
    "status_body",
    "truncate",
    "verdict",
]

MAX_MESSAGE: Final = 250
"""Error text in a message is cut to this many characters (as ``orchestra-sdk`` does)."""

Verdict = Literal["ok", "retry", "drop"]
"""What to do with a report after one POST: done, try again later, or give up on it."""


class TaskRunStatus(enum.StrEnum):
    """The statuses Orchestra accepts for a task run."""

    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    WARNING = "WARNING"


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class HttpPolicy:
    """Timeout and backoff of report delivery."""

    timeout: float = 10.0
    """Seconds one request may take (connect, write, read) before it counts as failed."""
    initial_backoff: float = 0.5
    """Delay before the first retry; it doubles on each further failure."""
    max_backoff: float = 60.0
    """The longest delay between two tries."""

    def __post_init__(self) -> None:
        if (
            self.timeout <= 0
            or self.initial_backoff <= 0
            or self.max_backoff < self.initial_backoff
        ):
            msg = "timeout and initial_backoff must be > 0 and max_backoff >= initial_backoff"
            raise ValueError(msg)

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failed tries (>= 1)."""
        return float(min(self.max_backoff, self.initial_backoff * 2 ** min(failures - 1, 30)))


def truncate(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` cut to ``limit`` characters."""
    return text if len(text) <= limit else text[:limit]


def _body(event_type: str, task_run_id: uuid.UUID, fields: dict[str, Any]) -> str:
    body = {"event_type": event_type, "metadata": {}, "task_run_id": str(task_run_id), **fields}
    return json.dumps(body, separators=(",", ":"))  # ASCII: a lone surrogate stays storable


def status_body(task_run_id: uuid.UUID, status: TaskRunStatus, message: str | None) -> str:
    """The JSON text of an ``UPDATE_STATUS`` request."""
    fields: dict[str, Any] = {"status": status.value}
    if message:
        fields["message"] = message
    return _body("UPDATE_STATUS", task_run_id, fields)


def output_body(task_run_id: uuid.UUID, name: str, value: Any) -> str:
    """The JSON text of a ``SET_OUTPUT`` request (``value`` is plain JSON)."""
    return _body("SET_OUTPUT", task_run_id, {"output_name": name, "output_value": value})


def _headers(config: OrchestraConfig) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {config.api_key.reveal()}",
        "Content-Type": "application/json",
    }


_RETRIED: Final = frozenset({401, 403, 408, 429})
"""4xx answers about the moment or the key, not the report itself: worth another try."""


def verdict(response: httpx.Response) -> Verdict:
    """2xx: delivered; 3xx, 5xx, 408, 429, 401/403: retry; any other: the request is wrong."""
    code = response.status_code
    if 200 <= code < 300:  # noqa: PLR2004 - HTTP classes
        return "ok"
    if code in _RETRIED or code >= 500 or 300 <= code < 400:  # noqa: PLR2004
        return "retry"  # a redirect: the URL is wrong for now (a POST is not followed)
    return "drop"


async def post(client: httpx.AsyncClient, config: OrchestraConfig, body: str) -> httpx.Response:
    """POST one report.

    Raises:
        httpx.HTTPError: it could not be sent or no answer came in time.
    """
    return await client.post(config.webhook_url, content=body.encode(), headers=_headers(config))


def post_sync(client: httpx.Client, config: OrchestraConfig, body: str) -> httpx.Response:
    """POST one report from synchronous code (see :func:`post`)."""
    return client.post(config.webhook_url, content=body.encode(), headers=_headers(config))


def describe(error: httpx.HTTPError | httpx.Response) -> str:
    """A log-safe line about a failed try: the status code or the error type, never headers."""
    if isinstance(error, httpx.Response):
        if error.status_code in (401, 403):
            return f"HTTP {error.status_code}: Orchestra rejected the API key (check {ENV_API_KEY})"
        if 300 <= error.status_code < 400:  # noqa: PLR2004
            return f"HTTP {error.status_code}: the webhook URL redirects (check {ENV_WEBHOOK_URL})"
        return f"HTTP {error.status_code}"
    return type(error).__name__
