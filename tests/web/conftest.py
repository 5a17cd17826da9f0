"""Fixtures for the web tests: a runtime plus the web app under uvicorn on a free loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import uvicorn

from flowcore import Runtime
from flowcore.web import close_streams, create_app

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

STARTUP_TIMEOUT = 10.0


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # the test runner owns the signals
        yield


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 (a free port) in this loop; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="auto",
                            timeout_graceful_shutdown=2)  # fmt: skip
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(STARTUP_TIMEOUT):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@dataclass
class Web:
    """A served app: its runtime, base URL and an httpx client on it."""

    runtime: Runtime
    url: str
    client: httpx.AsyncClient


@contextlib.asynccontextmanager
async def web_app(db_path, **options: Any) -> AsyncIterator[Web]:
    """A runtime on ``db_path`` and its web app served over real HTTP."""
    async with Runtime(db_path) as runtime:
        app = create_app(runtime, **options)
        try:
            async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
                yield Web(runtime, url, client)
                close_streams(runtime)  # open streams would hold up the server's shutdown
        finally:
            close_streams(runtime)


@pytest.fixture
async def web(db_path) -> AsyncIterator[Web]:
    """The web app without a token."""
    async with web_app(db_path) as served:
        yield served
