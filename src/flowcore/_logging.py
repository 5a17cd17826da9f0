"""flowcore's loggers: the application's structlog configuration, or warnings on stderr.

flowcore logs through structlog and leaves its configuration to the application, as a library
should. An application that never configured structlog would otherwise get structlog's
defaults: every level, debug included, printed to stdout among its own output. Until it calls
``structlog.configure()``, flowcore's lines go to stderr from WARNING up (like the standard
library's ``logging`` with no handler); nothing global is changed.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Final

import structlog

__all__ = ["UNCONFIGURED_LEVEL", "get_logger", "lazy_logger"]

UNCONFIGURED_LEVEL: Final = logging.WARNING
"""The lowest level flowcore prints while structlog is not configured."""


def get_logger(name: str) -> Any:
    """A bound logger for ``name``, resolved now (call again after ``structlog.configure()``)."""
    if structlog.is_configured():
        return structlog.get_logger(name).bind()
    return structlog.wrap_logger(
        structlog.PrintLogger(sys.stderr),  # the stderr of now: pytest swaps it per test
        processors=structlog.get_config()["processors"],
        wrapper_class=structlog.make_filtering_bound_logger(UNCONFIGURED_LEVEL),
        cache_logger_on_first_use=False,
    ).bind()


class lazy_logger:  # noqa: N801 - used like structlog.get_logger
    """A logger resolved at each call: for module-level loggers made before the app configures."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(get_logger(self._name), attr)
