"""Serving the web app with uvicorn beside a runtime (``python -m flowcore serve --http``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from typing import TYPE_CHECKING, Any, Final

import uvicorn

from flowcore.web._app import close_streams, create_app

if TYPE_CHECKING:
    from collections.abc import Generator

    from flowcore.runtime import Runtime

__all__ = ["TOKEN_ENV", "HttpServer", "parse_address"]

TOKEN_ENV: Final = "FLOWCORE_WEB_TOKEN"  # noqa: S105 - a variable name, not a secret
"""Environment variable holding the bearer token (never a command-line argument: argv is
visible to every user of the machine)."""
_STARTUP_TIMEOUT: Final = 10.0


def parse_address(text: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[::1]:8080`` for IPv6).

    Raises:
        ValueError: not of that form, or the port is not 0-65535.
    """
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:  # noqa: PLR2004
        raise ValueError(f"--http wants HOST:PORT such as 127.0.0.1:8080, not {text!r}")
    return host, int(port)


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its host."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class HttpServer:
    """The web app for a runtime on ``host:port``, run as a task on the current loop.

    Args:
        runtime: The (already open) runtime to show and steer.
        host: Address to bind; a non-loopback one needs ``token``.
        port: Port to bind (0: any free one; see :attr:`port` after :meth:`start`).
        token: Bearer token; default: the ``FLOWCORE_WEB_TOKEN`` environment variable.
    """

    def __init__(self, runtime: Runtime, host: str, port: int, token: str | None = None) -> None:
        token = token if token is not None else (os.environ.get(TOKEN_ENV) or None)
        self._runtime = runtime
        self._app = create_app(runtime, token=token, host=host)
        config = uvicorn.Config(
            self._app, host=host, port=port, log_config=None, access_log=False,
            lifespan="off", timeout_graceful_shutdown=5,
        )  # fmt: skip
        self._server = _Server(config)
        self._task: asyncio.Task[Any] | None = None
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        """The dashboard's address."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    async def start(self) -> None:
        """Bind and start serving; return once the server accepts connections.

        Raises:
            OSError: the address cannot be bound.
        """
        sock = _bind(self.host, self.port)  # here, so a busy port is an OSError, not an exit
        self.port = sock.getsockname()[1]
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        async with asyncio.timeout(_STARTUP_TIMEOUT):
            while not self._server.started:  # uvicorn has no startup event to await
                if self._task.done():
                    self._task.result()
                    raise OSError(f"cannot serve on {self.host}:{self.port}")
                await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """End live streams, then stop the server gracefully."""
        close_streams(self._runtime)
        self._server.should_exit = True
        if self._task is not None:
            await self._task


def _bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from exc
    sock.set_inheritable(True)
    return sock
