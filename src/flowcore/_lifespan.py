"""``flowcore.lifespan(runtime)``: open a runtime with an ASGI app and close it on shutdown.

No web framework is imported here: the helper is a plain async context manager factory, the
shape Starlette and FastAPI take as ``lifespan=``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator
    from contextlib import AbstractAsyncContextManager
    from types import FrameType

    from flowcore.runtime import Runtime

__all__ = ["lifespan"]


def lifespan(runtime: Runtime) -> Callable[[Any], AbstractAsyncContextManager[dict[str, Any]]]:
    """A Starlette/FastAPI ``lifespan`` that opens ``runtime`` at startup and closes it at shutdown.

    The runtime runs on the app's event loop: handlers can ``await runtime.start(...)``
    directly. At startup unfinished workflows are recovered; at shutdown in-flight work is
    left to the journal (the next start resumes it) and the journal is flushed. While the app
    runs, SIGINT and SIGTERM also end the live streams of ``flowcore.web`` (the server's own
    handler still runs), so a server does not wait for ever on an open dashboard page. The
    runtime is also put in the lifespan state, as ``request.state.flowcore``::

        runtime = flowcore.Runtime("orders.db")
        app = FastAPI(lifespan=flowcore.lifespan(runtime))

    To combine it with a lifespan of your own, enter it inside yours::

        @contextlib.asynccontextmanager
        async def app_lifespan(app):
            async with flowcore.lifespan(runtime)(app) as state, open_db_pool() as pool:
                yield {**state, "pool": pool}

    Args:
        runtime: A runtime that was not opened yet (a Runtime opens once).

    Returns:
        A function of the app returning an async context manager that yields the state dict.
    """

    @contextlib.asynccontextmanager
    async def _lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:  # noqa: ARG001 - ASGI shape
        await runtime.open()
        try:
            with _streams_end_on_stop_signals(runtime):
                yield {"flowcore": runtime}
        finally:
            await runtime.close()

    return _lifespan


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def _streams_end_on_stop_signals(runtime: Runtime) -> Iterator[None]:
    """While the app runs, SIGINT/SIGTERM also end the runtime's live web streams.

    A server (uvicorn) waits for open responses before it runs the lifespan's shutdown, and a
    dashboard's stream stays open until its workflow ends: without this, Ctrl-C would wait for
    ever. The server's own handler still runs after ours. Only a handler the server installed
    (a Python callable, in the main thread) is wrapped, and it is put back on the way out.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    previous: dict[int, Callable[[int, FrameType | None], Any]] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing left to end
            loop.call_soon_threadsafe(_end_streams, runtime)
        previous[signum](signum, frame)

    for sig in _STOP_SIGNALS:
        current = signal.getsignal(sig)
        if callable(current):
            previous[sig] = current
            signal.signal(sig, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            if signal.getsignal(signum) is handler:
                signal.signal(signum, old)


def _end_streams(runtime: Runtime) -> None:
    stream = sys.modules.get("flowcore.web._stream")  # only if the web app is in use
    if stream is not None:
        stream.end_streams(runtime)
