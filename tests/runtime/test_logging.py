"""Where flowcore's log lines go in an application that did or did not configure structlog.

Each case runs in a fresh interpreter: structlog's configuration is process-wide, and the test
process configures it (capture_logs) in other tests.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

SCRIPT = """
import asyncio, logging, sys
import structlog
import flowcore
from flowcore import Runtime, activity, workflow

if sys.argv[2] == "configured":
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )

@activity
async def double(x: int) -> int:
    return 2 * x

@activity
async def refuse(x: int) -> int:
    raise ValueError("no such account")

@workflow
async def flow(x: int) -> int:
    try:
        await refuse(x)
    except flowcore.ActivityError:
        pass
    return await double(x)

async def main() -> None:
    async with Runtime(sys.argv[1]) as runtime:
        handle = await runtime.start(flow, 21, id="w-1")
        print("result", await handle.result(timeout=30))

asyncio.run(main())
"""


def run(tmp_path: Path, mode: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(SCRIPT), encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(script), str(tmp_path / "app.db"), mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_unconfigured_structlog_gets_warnings_on_stderr_only(tmp_path: Path):
    """No configure(): the program's stdout is its own; warnings (not info) go to stderr."""
    done = run(tmp_path, "unconfigured")
    assert done.stdout == "result 42\n"
    assert "activity failed" in done.stderr
    assert "no such account" in done.stderr
    assert "workflow started" not in done.stderr  # info
    assert "activity completed" not in done.stderr  # debug


def test_configured_structlog_is_followed(tmp_path: Path):
    """configure() at INFO, to stderr: flowcore's info lines follow it."""
    done = run(tmp_path, "configured")
    assert done.stdout == "result 42\n"
    assert "workflow started" in done.stderr
    assert "activity failed" in done.stderr
    assert "activity completed" not in done.stderr
