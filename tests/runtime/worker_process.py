"""A worker subprocess for SIGKILL tests: started from the repo, never outlives its test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Self

import pytest

REPO = Path(__file__).resolve().parents[2]


class WorkerProcess:
    """``python -m MODULE ARGS`` with the project importable; stdout/stderr go to files."""

    poll = 0.005
    """Seconds between two checks in :meth:`wait_until`."""

    def __init__(self, tmp_path: Path, mode: str, module: str, args: list[str]) -> None:
        self.out = tmp_path / f"{mode}.out"
        self.err = tmp_path / f"{mode}.err"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO / "src"), str(REPO), *filter(None, [env.get("PYTHONPATH")])]
        )
        with self.out.open("w") as out, self.err.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=err,
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def diagnostics(self) -> str:
        """The exit code and the tail of stderr, for failure messages."""
        err = self.err.read_text(encoding="utf-8") if self.err.exists() else ""
        return f"worker rc={self.proc.poll()}; stderr tail:\n{err[-3000:]}"

    def wait_until(self, what: str, check: Any, deadline: float) -> None:
        """Poll ``check`` until true; fail if the worker exits or the deadline passes."""
        while not check():
            if self.proc.poll() is not None:
                pytest.fail(f"worker exited before {what}; {self.diagnostics()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{what} not reached in time; {self.diagnostics()}")
            time.sleep(self.poll)

    def kill(self, *, may_have_ended: bool = False) -> bool:
        """SIGKILL the running worker; True once it died of it.

        ``may_have_ended``: a worker that was about to finish may exit by itself between the
        caller's last look and the signal; then return False instead of failing.
        """
        assert self.proc.poll() is None, f"worker ended before the kill; {self.diagnostics()}"
        self.proc.send_signal(signal.SIGKILL)
        code = self.proc.wait(timeout=10)
        if may_have_ended and code == 0:
            return False
        assert code == -signal.SIGKILL, f"worker exited {code} at the kill; {self.diagnostics()}"
        return True

    def exit_code(self, timeout: float) -> int:
        """Wait for the worker to end by itself; fail after ``timeout`` seconds."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker did not finish within {timeout:.0f}s; {self.diagnostics()}")


def run_crashing(
    work: Path,
    name: str,
    module: str,
    args: list[str],
    *,
    crash_after: int,
    monkeypatch: pytest.MonkeyPatch,
    timeout: float = 60,
) -> int:
    """Run ``module`` to its end, SIGKILLed right after its journal's ``crash_after``-th commit
    (0: never); return its exit code (0 or -SIGKILL, anything else fails the test)."""
    from flowcore.journal.sqlite import CRASH_AFTER_COMMIT_ENV

    if crash_after:
        monkeypatch.setenv(CRASH_AFTER_COMMIT_ENV, str(crash_after))
    else:
        monkeypatch.delenv(CRASH_AFTER_COMMIT_ENV, raising=False)
    with WorkerProcess(work, name, module, args) as worker:
        code = worker.exit_code(timeout)
        assert code in (0, -signal.SIGKILL), worker.diagnostics()
    return code
