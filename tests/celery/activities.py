"""Activities the Celery test workers run; each execution is counted in Redis."""

from __future__ import annotations

import asyncio
import os
import time

import redis

from flowcore import RetryPolicy, activity
from flowcore.retry import NO_RETRY


def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ.get("FLOWCORE_TEST_REDIS", "redis://127.0.0.1:6379/0"))


def _count(name: str, key: object) -> None:
    _redis().incr(f"test:exec:{name}:{key}")


@activity(backend="celery")
def cel_add(a: int, b: int) -> int:
    """Sync activity on a worker."""
    _count("cel_add", f"{a}+{b}")
    return a + b


@activity(backend="celery", queue="cel_other")
async def cel_async_double(x: int) -> int:
    """Async activity on a worker, routed to another queue."""
    _count("cel_async_double", x)
    await asyncio.sleep(0)
    return 2 * x


@activity(backend="celery")
def cel_square(i: int, delay: float = 0.0) -> int:
    """Fan-out item; ``delay`` slows it down so a crash can land mid fan-out."""
    _count("cel_square", i)
    if delay:
        time.sleep(delay)
    return i * i


@activity(backend="celery")
def cel_gate(key: str) -> str:
    """Announce the start, then wait (at most 30 s) until the test sets ``key``:release."""
    client = _redis()
    client.set(f"{key}:pid", os.getpid())
    client.incr(f"test:exec:cel_gate:{key}")
    deadline = time.monotonic() + 30
    while not client.exists(f"{key}:release"):
        if time.monotonic() > deadline:
            raise TimeoutError("never released")
        time.sleep(0.02)
    return f"released {key}"


@activity(backend="celery")
def cel_fail(message: str) -> None:
    """Always fails."""
    _count("cel_fail", message)
    raise ValueError(message)


@activity(backend="celery", timeout=0.5)
def cel_too_slow(seconds: float) -> str:
    """Outlives its 0.5 s timeout."""
    _count("cel_too_slow", seconds)
    time.sleep(seconds)
    return "finished"


@activity(backend="celery", retry=RetryPolicy(max_attempts=3, initial_interval=0.05))
def cel_flaky(key: str) -> int:
    """Fails on its first attempt, succeeds on the second (counted per key in Redis)."""
    attempt = int(_redis().incr(f"test:exec:cel_flaky:{key}"))
    if attempt < 2:
        raise ConnectionError(f"attempt {attempt} fails")
    return attempt


@activity(backend="celery", timeout=0.3, retry=NO_RETRY)
def cel_expiring(key: str) -> str:
    """Times out while no worker runs; a worker started later must not run it."""
    _count("cel_expiring", key)
    return key


@activity(backend="celery")
def cel_big(n: int) -> str:
    """A result of ``n`` characters."""
    return "x" * n


@activity(backend="celery")
def cel_len(s: str) -> int:
    """The length of a (large) argument."""
    return len(s)
