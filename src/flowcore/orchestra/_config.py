"""Where an Orchestra task run is, and how to reach it: settings from arguments or the environment.

The API key is kept in a :class:`Secret` whose repr and str hide it; nothing in this package puts
it in a log line, an error message or the journal.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, final
from urllib.parse import urlsplit

from flowcore.errors import FlowcoreError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "DEFAULT_WEBHOOK_URL",
    "ENV_API_KEY",
    "ENV_TASK_RUN_ID",
    "ENV_WEBHOOK_URL",
    "OrchestraConfig",
    "OrchestraConfigError",
    "Secret",
    "check_output_name",
    "resolve",
]

ENV_TASK_RUN_ID: Final = "ORCHESTRA_TASK_RUN_ID"
"""The task run to report to (a UUID), set by Orchestra when it starts the task."""
ENV_API_KEY: Final = "ORCHESTRA_API_KEY"
"""The API key sent as ``Authorization: Bearer <key>``."""
ENV_WEBHOOK_URL: Final = "ORCHESTRA_WEBHOOK_URL"
"""Where reports are POSTed; default :data:`DEFAULT_WEBHOOK_URL`."""
DEFAULT_WEBHOOK_URL: Final = "https://webhook.getorchestra.io"
"""Orchestra's public webhook (the ``orchestra-sdk`` default)."""

_OUTPUT_NAME: Final = re.compile(r"[A-Za-z_-]+")
_SHOWN: Final = 64
_KEY: Final = re.compile(r"[\x21-\x7e]+")
"""What a bearer token can hold: visible ASCII (no spaces or control characters)."""


class OrchestraConfigError(FlowcoreError):
    """Orchestra reporting was requested but is not configured correctly (the message says how)."""


@final
class Secret:
    """A string that never shows itself in a repr, a str or a format."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one place that needs it (the Authorization header)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __reduce__(self) -> str:
        msg = "an Orchestra API key is not pickled"
        raise TypeError(msg)


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class OrchestraConfig:
    """A validated Orchestra target."""

    task_run_id: uuid.UUID
    """The task run reports go to."""
    webhook_url: str
    """Where they are POSTed."""
    api_key: Secret = field(repr=False)
    """The bearer token (hidden)."""


def resolve(
    *,
    task_run_id: str | uuid.UUID | None,
    api_key: str | None,
    webhook_url: str | None,
    env: Mapping[str, str] | None = None,
) -> OrchestraConfig:
    """Combine arguments with the environment (arguments win) and validate them.

    Raises:
        OrchestraConfigError: the task-run id is missing or not a UUID, the key is missing, or
            the webhook URL is not http(s). Every problem is listed; the key is never shown.
    """
    env = os.environ if env is None else env
    problems: list[str] = []
    run_id = _task_run_id(task_run_id if task_run_id is not None else env.get(ENV_TASK_RUN_ID),
                          problems)  # fmt: skip
    key = api_key if api_key is not None else env.get(ENV_API_KEY)
    if not key or not key.strip():
        problems.append(f"no API key (set {ENV_API_KEY} or pass api_key=)")
    elif not _KEY.fullmatch(key.strip()):
        problems.append(
            f"the API key has spaces, control or non-ASCII characters, so it cannot be sent in "
            f"an HTTP header (check {ENV_API_KEY} or api_key=)"
        )
    url = webhook_url or env.get(ENV_WEBHOOK_URL) or DEFAULT_WEBHOOK_URL
    if (wrong := _url_problem(url)) is not None:
        problems.append(f"the webhook URL {wrong} (check {ENV_WEBHOOK_URL} or webhook_url=)")
    if problems or run_id is None or not key:
        raise OrchestraConfigError("Orchestra reporting is not configured: " + "; ".join(problems))
    return OrchestraConfig(task_run_id=run_id, webhook_url=url, api_key=Secret(key.strip()))


def _url_problem(url: str) -> str | None:
    """What is wrong with ``url`` as an http(s) URL with a host and a valid port, or None."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "is not a URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "is not an http(s) URL with a host"
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not one
    except ValueError:
        return "has a port that is not a number from 0 to 65535"
    return None


def _task_run_id(value: str | uuid.UUID | None, problems: list[str]) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    if not value:
        problems.append(f"no task-run id (set {ENV_TASK_RUN_ID} or pass task_run_id=)")
        return None
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        shown = value if len(value) <= _SHOWN else value[:_SHOWN] + "..."
        problems.append(f"the task-run id {shown!r} is not a UUID (check {ENV_TASK_RUN_ID})")
        return None


def check_output_name(name: object) -> str:
    """Validate an output name: letters, underscores and hyphens.

    Raises:
        ValueError: anything else.
    """
    if not isinstance(name, str) or not _OUTPUT_NAME.fullmatch(name):
        msg = f"an Orchestra output name is made of letters, underscores and hyphens, not {name!r}"
        raise ValueError(msg)
    return name
