"""A runtime opened and never closed does not keep the process alive at exit, and loses nothing.

aiosqlite (0.22 on) runs each connection on a non-daemon thread that only ``close()`` ends, so
before the fix ``asyncio.run(main())`` returned and the interpreter then waited for the journal's
threads forever.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

from flowcore import Runtime, WorkflowState
from tests.runtime import unclosed_app  # noqa: F401 - registers its workflows here too
from tests.runtime.worker_process import REPO

if TYPE_CHECKING:
    from pathlib import Path

EXIT_DEADLINE = 60.0
"""Seconds the program may take to exit; a hang lasts forever, a healthy run well under 5."""


def run_unclosed(db: Path) -> subprocess.CompletedProcess[str]:
    """Run ``tests/runtime/unclosed_app.py`` on ``db``; fail if it does not exit in time."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO / "src"), str(REPO), *filter(None, [env.get("PYTHONPATH")])]
    )
    try:
        return subprocess.run(
            [sys.executable, "-m", "tests.runtime.unclosed_app", str(db)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=EXIT_DEADLINE, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        msg = f"the program did not exit within {EXIT_DEADLINE}s; its output: {exc.stdout!r:.3000}"
        raise AssertionError(msg) from None


class TestUnclosedRuntime:
    async def test_the_process_exits_and_the_next_runtime_finds_everything(self, tmp_path):
        """The program exits 0; a new runtime finds both workflows and resumes the waiting one."""
        db = tmp_path / "flowcore.db"
        proc = run_unclosed(db)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "acknowledged" in proc.stdout.splitlines()
        async with Runtime(db) as rt:
            assert (await rt.status("unclosed-done")).status is WorkflowState.COMPLETED
            assert await rt.result("unclosed-done") == 8
            assert (await rt.status("unclosed-wait")).status is WorkflowState.RUNNING
            await rt.send_event("unclosed-wait", "go", 2)
            assert await rt.result("unclosed-wait") == 42
