"""RetryPolicy: whether a failed activity attempt is tried again, and after how long."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, final

from flowcore.errors import NonRetryableError, qualname

if TYPE_CHECKING:
    from flowcore.errors import FailureInfo

__all__ = ["RetryPolicy"]


@final
@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often, and how far apart, an activity is attempted.

    The delay before attempt ``n + 1`` is ``initial_interval * backoff ** (n - 1)``, capped at
    ``max_interval``. Retries are journaled: a restart keeps the attempt count and the deadline.
    """

    max_attempts: int = 3
    """Attempts in all, the first included (1 means no retry; 0 means retry forever)."""
    initial_interval: float = 1.0
    """Seconds before the second attempt."""
    backoff: float = 2.0
    """Factor applied to the delay after each failed attempt."""
    max_interval: float = 60.0
    """Upper bound on one delay, in seconds."""
    non_retryable: tuple[type[BaseException] | str, ...] = ()
    """Exception types (or their names) that fail the activity at once."""

    def __post_init__(self) -> None:
        if self.max_attempts < 0:
            raise ValueError("RetryPolicy.max_attempts must be >= 0 (0 retries forever)")
        if self.initial_interval < 0 or self.max_interval < 0:
            raise ValueError("RetryPolicy intervals must be >= 0 seconds")
        if self.backoff < 1:
            raise ValueError("RetryPolicy.backoff must be >= 1")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based) before the next one."""
        exponent = min(attempt - 1, 1000)
        try:
            value = self.initial_interval * self.backoff**exponent
        except OverflowError:
            value = self.max_interval
        return min(value, self.max_interval)

    def should_retry(self, failure: FailureInfo, attempt: int) -> bool:
        """Tell whether another attempt follows failed attempt ``attempt`` with ``failure``."""
        if failure.non_retryable or failure.is_caused_by(NonRetryableError):
            return False
        if any(failure.is_caused_by(t) for t in self.non_retryable):
            return False
        return self.max_attempts == 0 or attempt < self.max_attempts

    def describe(self) -> str:
        """A short human-readable summary, for logs."""
        names = ", ".join(t if isinstance(t, str) else qualname(t) for t in self.non_retryable)
        return (
            f"max_attempts={self.max_attempts or 'inf'} initial={self.initial_interval}s "
            f"backoff={self.backoff} max={self.max_interval}s"
            + (f" non_retryable=[{names}]" if names else "")
        )


NO_RETRY = RetryPolicy(max_attempts=1)
"""The default for activities without a policy: one attempt."""
