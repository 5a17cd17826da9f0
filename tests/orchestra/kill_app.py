"""A runtime reporting to Orchestra, for SIGKILL tests: ``python -m tests.orchestra.kill_app``.

``first DB ID``: start the workflow and serve until killed. ``second DB ID``: send it the event
it waits for, print its result once it finished, close (delivering the outbox) and exit 0. The
ORCHESTRA_* variables configure the reporter; ORC_TEST_TIMEOUT sets its HTTP timeout.
"""

from __future__ import annotations

import asyncio
import os
import sys

import flowcore
from flowcore import Runtime, activity, workflow
from flowcore.orchestra import OrchestraReporter


@activity
async def orc_k1() -> int:
    return 1


@activity
async def orc_k2() -> int:
    return 2


@activity
async def orc_k3() -> int:
    return 3


@workflow
async def orc_kill_flow() -> int:
    total = await orc_k1() + await orc_k2()
    await flowcore.wait_event("go")
    return total + await orc_k3()


async def main(mode: str, db: str, wid: str) -> None:
    timeout = float(os.environ.get("ORC_TEST_TIMEOUT", "10"))
    reporter = OrchestraReporter(timeout=timeout, initial_backoff=0.02, max_backoff=0.1)
    async with Runtime(db, listeners=[reporter]) as rt:
        if mode == "first":
            await rt.start(orc_kill_flow, id=wid)
            await asyncio.Event().wait()  # until SIGKILL
        await rt.send_event(wid, "go")
        print(await rt.result(wid, timeout=30), flush=True)  # noqa: T201


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
