"""SIGKILL a worker in the middle of a 5-step pipeline; the restart resumes at the next step."""

from __future__ import annotations

import json
import time

import pytest

from tests.compat.logfile import lines
from tests.compat.pipeline_app import HOLD_STEP, WORKFLOW_ID
from tests.runtime.worker_process import WorkerProcess

pytestmark = pytest.mark.crash

DEADLINE = 30.0


class TestPipelineKill:
    def test_sigkill_during_step_3_resumes_at_step_3_with_its_checkpoint(self, tmp_path):
        """Steps 1-2 never run again; step 3 reruns on step 2's checkpoint with the same key."""
        db, log = tmp_path / "pipeline.db", tmp_path / "steps.log"
        args = [str(db), str(log)]
        with WorkerProcess(tmp_path, "first", "tests.compat.pipeline_app", [*args, "first"]) as w:
            w.wait_until(
                "step 3 holds",
                lambda: ["hold", str(HOLD_STEP)] in lines(log),
                time.monotonic() + DEADLINE,
            )
            w.kill()
        before = lines(log)
        with WorkerProcess(tmp_path, "resume", "tests.compat.pipeline_app", [*args, "resume"]) as w:
            assert w.exit_code(DEADLINE) == 0, w.diagnostics()
            out = w.out.read_text(encoding="utf-8")
        after = lines(log)[len(before) :]

        starts_before = [line[1] for line in before if line[0] == "start"]
        starts_after = [line[1] for line in after if line[0] == "start"]
        assert starts_before == ["1", "2", "3"]
        assert starts_after == ["3", "4", "5"]  # resumed at the step cut by the kill
        first_3 = next(line for line in before if line[:2] == ["start", "3"])
        again_3 = next(line for line in after if line[:2] == ["start", "3"])
        assert again_3[2] == first_3[2]  # the same idempotency key
        assert again_3[2].startswith(f"{WORKFLOW_ID}/")
        assert json.loads(again_3[3]) == [1, 2]  # step 2's checkpoint
        assert again_3[4] == "cfg-ok"  # the journaled config
        [line] = [line for line in out.splitlines() if line.startswith("RESULT ")]
        result = json.loads(line.removeprefix("RESULT "))
        assert result == {"state": {"trail": [1, 2, 3, 4, 5], "value": 712345}, "skipped": []}
