"""Worker process for the pipeline SIGKILL test: one 5-step pipeline on one journal.

Run as ``python -m tests.compat.pipeline_app DB LOG MODE`` from the repository root. It opens a
Runtime on ``DB``, starts the ``crash_pipeline`` orchestration under the fixed id
``pipeline-1`` (``if_exists="return"``, so a second run resumes it), waits for the result,
prints ``RESULT <json>`` and exits 0.

Every step appends ``start N KEY TRAIL`` when it begins and ``end N`` before it returns to
``LOG`` (written, flushed and fsynced, so a SIGKILL keeps them): ``KEY`` is the attempt's
idempotency key and ``TRAIL`` the state it received, as JSON. In ``first`` mode step 3 logs
``hold 3`` and blocks until it is killed (exit 3 after 60 s); ``resume`` runs to the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

from tests.compat.logfile import append

WORKFLOW_ID = "pipeline-1"
HOLD_STEP = 3
HOLD_LIMIT = 60.0


class Worker:
    log_path = ""
    mode = ""


def _log(line: str) -> None:
    append(Worker.log_path, line)


def define() -> None:
    """Register the five steps (sync and async alternating) of ``crash_pipeline``."""
    import flowcore
    from flowcore import steps

    class Trail(steps.OrchestrationState):
        def __init__(self, seed: int) -> None:
            super().__init__()
            self.trail: list[int] = []
            self.value = seed

        @classmethod
        def from_dict(cls, payload: dict[str, Any]) -> Trail:
            return cls(payload["seed"])

    def body(n: int, state: Trail) -> None:
        info = flowcore.activity_info()
        trail = json.dumps(state.trail, separators=(",", ":"))
        _log(f"start {n} {info.idempotency_key} {trail} {state.cfg['tag']}")
        if n == HOLD_STEP and Worker.mode == "first":
            _log(f"hold {n}")
            time.sleep(HOLD_LIMIT)
            sys.stderr.write("pipeline_app: step 3 was not killed in time\n")
            os._exit(3)
        state.trail.append(n)
        state.value = state.value * 10 + n
        _log(f"end {n}")

    for n in range(1, 6):
        if n % 2:

            def sync_step(state: Trail, n: int = n) -> None:
                body(n, state)

            fn: Any = sync_step
        else:

            async def async_step(state: Trail, n: int = n) -> None:
                body(n, state)

            fn = async_step
        fn.__name__ = f"step{n}"
        steps.step(n, state_class=Trail, orchestration="crash_pipeline")(fn)
    steps.orchestration("crash_pipeline", config={"tag": "cfg-ok"})


async def run(db: str) -> Any:
    from flowcore import Runtime

    define()
    async with Runtime(db) as rt:
        handle = await rt.start("crash_pipeline", {"seed": 7}, id=WORKFLOW_ID, if_exists="return")
        result = await handle.result(timeout=60)
    return {"state": result.state, "skipped": list(result.skipped)}


def main(argv: list[str]) -> int:
    db, log, mode = argv
    Worker.log_path, Worker.mode = log, mode
    result = asyncio.run(run(db))
    sys.stdout.write("RESULT " + json.dumps(result, sort_keys=True) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
