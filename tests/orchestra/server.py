"""A real HTTP server on 127.0.0.1 that plays Orchestra's webhook and records every request.

Behaviour is scripted: ``script`` holds what to do with the next requests (a status code, or
``"hang"`` to hold the request until the test releases it or the server stops); once it is used
up, ``default`` applies. It runs in a thread of the test process (subprocess tests point their
runtime at it).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

HANG_LIMIT = 30.0
"""A hung request is answered 503 after this long at most, so nothing waits for ever."""


@dataclass
class Request:
    """One request as the server saw it."""

    method: str
    path: str
    authorization: str | None
    body: Any
    answered: int | None = None
    """The status code sent back (None: not yet, or the client went away before an answer)."""
    at: float = field(default_factory=time.monotonic)
    """When it arrived (``time.monotonic()``)."""


@dataclass
class Recorder:
    """What the handler does and what it saw."""

    script: list[int | str] = field(default_factory=list)
    default: int | str = 200
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    release: threading.Event = field(default_factory=threading.Event)

    def next_action(self) -> int | str:
        with self.lock:
            return self.script.pop(0) if self.script else self.default

    def add(self, request: Request) -> None:
        with self.lock:
            self.requests.append(request)

    def acknowledged(self) -> list[Any]:
        """Bodies of the requests answered with a 2xx, in order."""
        with self.lock:
            return [r.body for r in self.requests if r.answered and 200 <= r.answered < 300]

    def bodies(self) -> list[Any]:
        """Bodies of every request received, in order."""
        with self.lock:
            return [r.body for r in self.requests]


def make_handler(recorder: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms stall

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
            request = Request("POST", self.path, self.headers.get("Authorization"), body)
            recorder.add(request)
            action = recorder.next_action()
            if action == "hang":
                recorder.release.wait(HANG_LIMIT)
                action = 503
            code = int(action)
            with recorder.lock:
                request.answered = code
            try:
                payload = b'{"ok":true}'
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                self.wfile.flush()
            except OSError:
                with recorder.lock:
                    request.answered = None  # the client gave up (its timeout)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            pass

    return Handler


class OrchestraServer:
    """The server in a background thread; ``url`` is its webhook address."""

    def __init__(self, recorder: Recorder | None = None) -> None:
        self.recorder = recorder or Recorder()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(self.recorder))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/webhook"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.recorder.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)
