"""Fixtures for the Celery tests: a real redis-server on a free port and real celery workers.

Without ``redis-server`` these tests skip, unless ``CI=true``: then they fail, so a CI machine
that lost Redis cannot pass silently.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

REPO = Path(__file__).resolve().parents[2]
REDIS = shutil.which("redis-server") or (
    "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A redis-server process in a temporary directory; it can be stopped and started again."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it (keeping its data across restarts in an append-only file) and wait for it."""
        assert REDIS is not None
        with (self.dir / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "",
             "--protected-mode", "no", "--daemonize", "no", "--loglevel", "warning"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                log = (self.dir / "redis.log").read_text(errors="replace")
                pytest.fail(f"redis-server did not start on port {self.port}: {log[-2000:]}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Shut it down gracefully (its data stays on disk for the next start)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture(scope="session")
def need_redis() -> None:
    """Skip without redis-server; with CI=true fail instead."""
    if REDIS is None:
        reason = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must run the Celery tests")
        pytest.skip(reason)


@pytest.fixture
def redis_server(tmp_path: Path, need_redis: None) -> Iterator[RedisServer]:
    """A fresh redis-server on 127.0.0.1 and a free port (broker and result backend)."""
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class CeleryWorker:
    """``python -m celery -A tests.celery.app worker`` against the test Redis."""

    def __init__(self, tmp_path: Path, url: str, name: str, concurrency: int, pool: str) -> None:
        self.log = tmp_path / f"worker-{name}.log"
        env = dict(os.environ)
        env["FLOWCORE_TEST_REDIS"] = url
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO / "src"), str(REPO), *filter(None, [env.get("PYTHONPATH")])]
        )
        env.pop("PYTHONWARNINGS", None)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "tests.celery.app", "worker",
                 f"--pool={pool}", "-c", str(concurrency), "-n", f"{name}@%h",
                 "-Q", "celery,cel_other", "--loglevel=WARNING", "--without-gossip",
                 "--without-mingle", "--without-heartbeat"],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def kill(self) -> None:
        """SIGKILL the worker (a thread pool: the whole worker dies mid-task)."""
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Stop it (SIGKILL: the tests never depend on a graceful worker shutdown)."""
        if self.proc.poll() is None:
            self.kill()

    def tail(self) -> str:
        """The end of the worker's log, for failure messages."""
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


@pytest.fixture
def start_worker(tmp_path: Path, redis_server: RedisServer) -> Iterator[object]:
    """Start celery workers on demand; all are killed at the end of the test."""
    workers: list[CeleryWorker] = []

    def start(name: str = "w1", concurrency: int = 4, pool: str = "threads") -> CeleryWorker:
        worker = CeleryWorker(tmp_path, redis_server.url, name, concurrency, pool)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture
def celery_app(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch):
    """The runtime side's Celery app on the test Redis (the activities count in it too)."""
    monkeypatch.setenv("FLOWCORE_TEST_REDIS", redis_server.url)
    from tests.celery.app import make_app

    app = make_app(redis_server.url)
    yield app
    app.close()


@pytest.fixture
def counts(redis_server: RedisServer):
    """Read how often an activity ran: ``counts("cel_add")`` -> {key: executions}."""
    import redis

    client = redis.Redis.from_url(redis_server.url)

    def read(name: str) -> dict[str, int]:
        prefix = f"test:exec:{name}:"
        keys = client.keys(prefix + "*")
        values = client.mget(keys) if keys else []
        return {k.decode()[len(prefix) :]: int(v) for k, v in zip(keys, values, strict=True)}

    yield read
    client.close()
