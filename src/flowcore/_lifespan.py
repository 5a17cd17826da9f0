"""``flowcore.lifespan(runtime)``: open a runtime with an ASGI app and close it on shutdown.

No web framework is imported here: the helper is a plain async context manager factory, the
shape Starlette and FastAPI take as ``lifespan=``.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from contextlib import AbstractAsyncContextManager

    from flowcore.runtime import Runtime

__all__ = ["lifespan"]


def lifespan(runtime: Runtime) -> Callable[[Any], AbstractAsyncContextManager[dict[str, Any]]]:
    """A Starlette/FastAPI ``lifespan`` that opens ``runtime`` at startup and closes it at shutdown.

    The runtime runs on the app's event loop: handlers can ``await runtime.start(...)``
    directly. At startup unfinished workflows are recovered; at shutdown in-flight work is
    left to the journal (the next start resumes it) and the journal is flushed. The runtime is
    also put in the lifespan state, as ``request.state.flowcore``::

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
            yield {"flowcore": runtime}
        finally:
            await runtime.close()

    return _lifespan
