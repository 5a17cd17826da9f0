"""Worker process for the py-orchestrate SIGKILL test: a sync workflow calling one activity 5 times.

Run as ``python -m tests.compat.loop_app DB LOG MODE`` from the repository root. It starts an
``Orchestrator`` on ``DB``; in ``first`` mode it invokes ``loop_five`` (and prints ``ID <id>``),
in ``resume`` mode it reads the id back from ``LOG``; then it waits for the workflow to end and
prints ``RESULT <json status dict>``.

Each activity call appends ``call I KEY`` to ``LOG`` (fsynced, so a SIGKILL keeps it). In
``first`` mode call 3 logs ``hold 3`` and blocks until the process is killed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import flowcore
from flowcore.compat.py_orchestrate import Orchestrator, activity, workflow
from tests.compat.logfile import append

RESULTS: dict[int, Any] = {0: 0, 1: "", 2: None, 3: [], 4: {"v": 4}}
"""Each call's result: four falsy values (the original lost them) and one that is not."""
HOLD = 3


class Worker:
    log = ""
    mode = ""


def _log(line: str) -> None:
    append(Worker.log, line)


@activity("loop_lookup")
def loop_lookup(i: int) -> Any:
    _log(f"call {i} {flowcore.activity_info().idempotency_key}")
    if i == HOLD and Worker.mode == "first":
        _log(f"hold {i}")
        time.sleep(60)
        os._exit(3)
    return RESULTS[i]


@workflow("loop_five")
def loop_five(n: int) -> list[Any]:
    return [loop_lookup(i) for i in range(n)]


def main(argv: list[str]) -> int:
    db, Worker.log, Worker.mode = argv
    orchestrator = Orchestrator(db)
    orchestrator.start()
    try:
        if Worker.mode == "first":
            wid = orchestrator.invoke_workflow("loop_five", n=5)
            _log(f"id {wid}")
        else:
            with open(Worker.log, encoding="utf-8") as file:  # noqa: PTH123
                wid = next(line.split()[1] for line in file if line.startswith("id "))
        status = orchestrator.wait_for_workflow(wid, timeout=30)
    finally:
        orchestrator.stop(timeout=0)
    sys.stdout.write("RESULT " + json.dumps(status) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
