"""Fixtures for CLI tests: an app module in a temporary directory and a way to run the CLI there."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path

APP = """
import asyncio
from pathlib import Path

import flowcore
from flowcore import RetryPolicy, activity, workflow


@activity
def square(x: int) -> int:
    return x * x


@activity(retry=RetryPolicy(max_attempts=3, initial_interval=0.01))
def flaky(x: int) -> int:
    marker = Path("flaky.tried")
    if not marker.exists():
        marker.touch()
        raise ValueError("first try fails")
    return x


@activity
async def gate(name: str) -> str:
    Path(f"{name}.entered").touch()
    for _ in range(2000):
        if Path(f"{name}.open").exists():
            return name
        await asyncio.sleep(0.01)
    raise TimeoutError(name)


@workflow
async def fan(n: int) -> int:
    parts = await flowcore.gather(*(square(i) for i in range(n)))
    return sum(parts) + await flaky(0)


@workflow
async def gated(n: int) -> int:
    await gate("g")
    return n + 1


@workflow
async def approval(order: dict) -> str:
    await square(STEP_ARG)
    event = await flowcore.wait_event("approval")
    return f"approved by {event['by']}"


@workflow
async def boom() -> None:
    raise ValueError("kaput")


@workflow
async def napper(seconds: float) -> str:
    await flowcore.sleep(seconds)
    return "rested"
"""


def write_app(directory: Path, step_arg: str = "2", activity: str = "square") -> None:
    """Write (or rewrite) the app module; ``approval`` calls ``activity(step_arg)`` first."""
    text = APP.replace("STEP_ARG", step_arg).replace("await square(2", f"await {activity}(2")
    (directory / "app.py").write_text(text)


@dataclass
class Cli:
    """Runs ``python -m flowcore`` in a directory holding the app, against ``flowcore.db``."""

    cwd: Path

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}

    def __call__(self, *args: str, timeout: float = 15) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flowcore", *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def into_closed_pipe(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run with stdout a pipe whose reader is gone (as ``| head`` leaves it)."""
        read, write = os.pipe()
        os.close(read)
        try:
            return subprocess.run(
                [sys.executable, "-m", "flowcore", *args],
                cwd=self.cwd,
                env=self.env,
                stdout=write,
                stderr=subprocess.PIPE,
                text=True,
                timeout=15,
                check=False,
            )
        finally:
            os.close(write)

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "flowcore", *args],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def sql(self, query: str, *params: object) -> list[tuple[object, ...]]:
        uri = f"file:{self.cwd / 'flowcore.db'}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True, timeout=5)) as conn:
            return conn.execute(query, params).fetchall()

    def status_of(self, wid: str) -> str | None:
        rows = self.sql("SELECT status FROM workflows WHERE id = ?", wid)
        return str(rows[0][0]) if rows else None

    def wait_status(self, wid: str, status: str, timeout: float = 5) -> float:
        """Poll the database until ``wid`` has ``status``; return the seconds it took."""
        began = time.monotonic()
        return wait_for(lambda: self.status_of(wid) == status, timeout, f"{wid} {status}") - began


def wait_for(check, timeout: float, what: str) -> float:
    """Poll ``check`` until true; return the monotonic time it became true."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return time.monotonic()
        except sqlite3.OperationalError:
            pass  # the file is being created
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def stop(proc: subprocess.Popen[str], sig: int | None = None) -> tuple[str, str]:
    """Signal a process (SIGKILL if it does not end in time); return its output."""
    if proc.poll() is None:
        if sig is None:
            proc.kill()
        else:
            proc.send_signal(sig)
    try:
        return proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """A CLI runner in a temporary directory holding ``app.py``."""
    write_app(tmp_path)
    return Cli(tmp_path)


@pytest.fixture
def serving(cli: Cli):
    """Start ``serve app``; yield the process once it serves; stop it afterwards."""
    proc = cli.spawn("serve", "app")
    try:
        wait_for(lambda: (cli.cwd / "flowcore.db").exists() and cli.sql("SELECT 1 FROM owner"),
                 10, "serve to own the database")  # fmt: skip
        yield proc
    finally:
        stop(proc)
