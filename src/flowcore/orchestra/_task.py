"""A decorator that reports plain (non-workflow) functions to Orchestra, sync or async.

The drop-in for ``orchestra-sdk``'s ``@OrchestraSDK.run()``: ``RUNNING "<fn> started."`` before the
call, then ``SUCCEEDED "<fn> succeeded."`` or ``FAILED "<fn> failed. Error: <text>"`` (cut to 250
characters), with the SDK's bodies. Unlike the SDK it re-raises the function's exception, and it
also ends the task run on ``sys.exit()`` (0: SUCCEEDED, else FAILED) and on Ctrl-C or
cancellation (CANCELLED). There is
no journal here: reports are sent at once, with a few bounded retries, and a reporting failure is
logged, never raised.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from typing import TYPE_CHECKING, Any, Final, ParamSpec, TypeVar, overload

import anyio
import httpx

from flowcore._logging import lazy_logger
from flowcore.orchestra import _config, _http

if TYPE_CHECKING:
    from collections.abc import Callable

    from flowcore.orchestra._config import OrchestraConfig

__all__ = ["ATTEMPTS", "report_async", "report_sync", "task"]

P = ParamSpec("P")
R = TypeVar("R")
ATTEMPTS: Final = 3
"""Tries per report (as the SDK)."""

_log = lazy_logger("flowcore.orchestra")


def _messages(fn_name: str) -> tuple[str, str]:
    return f"{fn_name} started.", f"{fn_name} succeeded."


def _failed(fn_name: str, exc: BaseException) -> str:
    return f"{fn_name} failed. Error: {_http.truncate(str(exc))}"


def _ending(fn_name: str, exc: BaseException) -> tuple[_http.TaskRunStatus, str] | None:
    """The final report of a call that raised ``exc`` (None: report nothing)."""
    status = _http.TaskRunStatus
    if isinstance(exc, SystemExit):  # a script's sys.exit(): 0/None is a success
        if exc.code is None or exc.code == 0:
            return status.SUCCEEDED, _messages(fn_name)[1]
        why = f"exited with status {exc.code}" if isinstance(exc.code, int) else str(exc.code)
        return status.FAILED, f"{fn_name} failed. Error: {_http.truncate(why)}"
    if isinstance(exc, KeyboardInterrupt | asyncio.CancelledError):
        return status.CANCELLED, f"{fn_name} was cancelled."
    if isinstance(exc, Exception):
        return status.FAILED, _failed(fn_name, exc)
    return None


def report_sync(
    config: OrchestraConfig, policy: _http.HttpPolicy, status: _http.TaskRunStatus, message: str
) -> bool:
    """Send one status report now; True once Orchestra answered 2xx. Never raises."""
    body = _http.status_body(config.task_run_id, status, message)
    with httpx.Client(timeout=httpx.Timeout(policy.timeout)) as client:
        for attempt in range(1, ATTEMPTS + 1):
            outcome = _try(lambda: _http.post_sync(client, config, body))
            if outcome == "ok":
                return True
            if outcome == "drop" or attempt == ATTEMPTS:
                break
            time.sleep(policy.delay(attempt))
    _log.error("orchestra report not delivered", status=status.value)
    return False


async def report_async(
    config: OrchestraConfig, policy: _http.HttpPolicy, status: _http.TaskRunStatus, message: str
) -> bool:
    """Send one status report now from async code (see :func:`report_sync`)."""
    body = _http.status_body(config.task_run_id, status, message)
    async with httpx.AsyncClient(timeout=httpx.Timeout(policy.timeout)) as client:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                response = await _http.post(client, config, body)
            except httpx.HTTPError as exc:
                outcome: _http.Verdict = "retry"
                _log.warning("orchestra report failed", error=_http.describe(exc), attempt=attempt)
            else:
                outcome = _http.verdict(response)
            if outcome == "ok":
                return True
            if outcome == "drop" or attempt == ATTEMPTS:
                break
            await anyio.sleep(policy.delay(attempt))
    _log.error("orchestra report not delivered", status=status.value)
    return False


async def _end_async(
    config: OrchestraConfig, policy: _http.HttpPolicy, fn_name: str, exc: BaseException
) -> None:
    ending = _ending(fn_name, exc)
    if ending is None:
        return
    if not isinstance(exc, asyncio.CancelledError):
        await report_async(config, policy, *ending)
        return
    # reported even while being cancelled, bounded by one request's timeout
    with anyio.CancelScope(shield=True), anyio.move_on_after(policy.timeout):
        await report_async(config, policy, *ending)


def _try(send: Callable[[], httpx.Response]) -> _http.Verdict:
    try:
        return _http.verdict(send())
    except httpx.HTTPError as exc:
        _log.warning("orchestra report failed", error=_http.describe(exc))
        return "retry"


@overload
def task(fn: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def task(
    *, config: OrchestraConfig | None = None, policy: _http.HttpPolicy | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def task(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    config: OrchestraConfig | None = None,
    policy: _http.HttpPolicy | None = None,
) -> Any:
    """Report each call of a sync or async function as the Orchestra task run's status.

    Without ``config`` the settings are read from the environment at each call; when they are
    missing or invalid, one warning is logged and the function runs unreported.

    Args:
        fn: The function (as a bare ``@task``).
        config: Where to report (e.g. ``OrchestraReporter(...).config``).
        policy: HTTP timeout and backoff.

    Returns:
        The wrapped function (same signature), or a decorator making one.
    """
    chosen = policy or _http.HttpPolicy()

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        name = func.__name__
        started, succeeded = _messages(name)
        status = _http.TaskRunStatus
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                target = config or _from_env()
                if target is None:
                    return await func(*args, **kwargs)
                await report_async(target, chosen, status.RUNNING, started)
                try:
                    result = await func(*args, **kwargs)
                except BaseException as exc:
                    await _end_async(target, chosen, name, exc)
                    raise
                await report_async(target, chosen, status.SUCCEEDED, succeeded)
                return result

            return run_async

        @functools.wraps(func)
        def run_sync(*args: Any, **kwargs: Any) -> Any:
            target = config or _from_env()
            if target is None:
                return func(*args, **kwargs)
            report_sync(target, chosen, status.RUNNING, started)
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                ending = _ending(name, exc)
                if ending is not None:
                    report_sync(target, chosen, *ending)
                raise
            report_sync(target, chosen, status.SUCCEEDED, succeeded)
            return result

        return run_sync

    return decorate if fn is None else decorate(fn)


_warned: list[bool] = []


def _from_env() -> OrchestraConfig | None:
    try:
        return _config.resolve(task_run_id=None, api_key=None, webhook_url=None)
    except _config.OrchestraConfigError as exc:
        if not _warned:
            _warned.append(True)
            _log.warning("orchestra reporting is off", reason=str(exc))
        return None
