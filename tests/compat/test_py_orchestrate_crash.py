"""SIGKILL a py-orchestrate worker mid-loop; the restart gets every call's own result back."""

from __future__ import annotations

import json
import time

import pytest

from tests.compat.logfile import lines
from tests.compat.loop_app import HOLD
from tests.runtime.worker_process import WorkerProcess

pytestmark = pytest.mark.crash

DEADLINE = 30.0


class TestLoopKill:
    def test_sigkill_mid_loop_recovers_each_result_by_call_order(self, tmp_path):
        """Calls 0-2 replay their recorded (falsy) results; call 3 reruns with its key; 4 runs."""
        db, log = tmp_path / "loop.db", tmp_path / "calls.log"
        args = [str(db), str(log)]
        with WorkerProcess(tmp_path, "first", "tests.compat.loop_app", [*args, "first"]) as w:
            w.wait_until(
                "call 3 holds",
                lambda: ["hold", str(HOLD)] in lines(log),
                time.monotonic() + DEADLINE,
            )
            w.kill()
        before = [line for line in lines(log) if line[0] == "call"]
        with WorkerProcess(tmp_path, "resume", "tests.compat.loop_app", [*args, "resume"]) as w:
            assert w.exit_code(DEADLINE) == 0, w.diagnostics()
            out = w.out.read_text(encoding="utf-8")
        after = [line for line in lines(log) if line[0] == "call"][len(before) :]

        assert [line[1] for line in before] == ["0", "1", "2", "3"]
        assert [line[1] for line in after] == ["3", "4"]  # 0-2 were not run again
        assert after[0][2] == before[3][2]  # call 3 reran under the same idempotency key
        [line] = [line for line in out.splitlines() if line.startswith("RESULT ")]
        status = json.loads(line.removeprefix("RESULT "))
        assert status["status"] == "done"
        assert status["output"] == [0, "", None, [], {"v": 4}]
