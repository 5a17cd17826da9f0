"""The Orchestra SDK's README example, ported to flowcore's Orchestra adapter.

The original decorates a function with ``@orchestra.run()`` (RUNNING, then SUCCEEDED or FAILED)
and calls ``orchestra.update_task(...)`` by hand around a "complex process". Here:

- ``my_function`` keeps its decorator: ``@flowcore.orchestra.task`` reports the same statuses
  for sync and async functions and, unlike the SDK, re-raises the function's exception;
- ``my_other_function``'s manual status updates become a **workflow**: flowcore reports RUNNING
  at the start, a progress message for each activity, the declared output (``set_output``) and
  SUCCEEDED/FAILED at the end, through a durable outbox in the journal (retried with backoff,
  kept across a crash, never blocking the workflow).

Reports go to the task run named by ``ORCHESTRA_TASK_RUN_ID`` with ``ORCHESTRA_API_KEY`` (and
``ORCHESTRA_WEBHOOK_URL`` if set), as the SDK reads them. Without those variables the script
still runs: it says so once and reports nothing.

Run it with ``uv run python examples/orchestra_sdk_quickstart.py`` (needs the ``orchestra``
extra, installed in development). It journals to ``orchestra_sdk_quickstart.db`` in the current
directory (pass another path as the first argument).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import structlog

from flowcore import Runtime, activity, workflow
from flowcore.orchestra import OrchestraReporter, set_output, task


@task  # SDK: @orchestra.run()
def my_function(arg1: str, arg2: int = 1) -> str:
    """A plain function reported as the task run's status."""
    print("Running complex process")
    return f"{arg1} x{arg2}"


@activity
def complex_process(arg1: str, arg2: int) -> int:
    """The work the SDK example wrapped in manual update_task() calls."""
    return len(arg1) * arg2


@workflow
async def my_other_function(arg1: str, arg2: int = 1) -> int:
    """SDK: update_task(RUNNING) ... update_task(SUCCEEDED or FAILED), now automatic."""
    fn_result = await complex_process(arg1, arg2)
    await set_output("fn_result", fn_result)
    if fn_result == 0:
        raise RuntimeError("Process failed")
    return fn_result


async def main(db: str) -> None:
    configured = bool(os.environ.get("ORCHESTRA_TASK_RUN_ID"))
    listeners = [OrchestraReporter()] if configured else []
    if not configured:
        print("ORCHESTRA_TASK_RUN_ID is not set: running without reporting to Orchestra")
    print(my_function("report", arg2=2))
    async with Runtime(db, listeners=listeners) as runtime:
        handle = await runtime.start(
            my_other_function, "complex", id="sdk-demo", if_exists="return"
        )
        print(f"result: {await handle.result()}")


if __name__ == "__main__":
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "orchestra_sdk_quickstart.db"))
