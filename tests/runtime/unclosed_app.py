"""A program that opens a runtime and never closes it: ``-m tests.runtime.unclosed_app DB``.

It starts ``unclosed-wait`` (waits for the ``go`` event) and runs ``unclosed-done`` to its end,
prints ``acknowledged``, then lets ``asyncio.run`` return with the runtime still open.
"""

from __future__ import annotations

import asyncio
import sys

import flowcore
from flowcore import Runtime, activity, workflow


@activity
def unclosed_double(x: int) -> int:
    """A sync activity (a worker thread)."""
    return 2 * x


@workflow
async def unclosed_wait(x: int) -> int:
    """Runs one activity, then waits for ``go``."""
    doubled = await unclosed_double(x)
    go = await flowcore.wait_event("go")
    return doubled + int(go)


@workflow
async def unclosed_done(x: int) -> int:
    """Runs one activity and completes."""
    return await unclosed_double(x)


async def main(db: str) -> None:
    rt = Runtime(db)
    await rt.open()
    await rt.start(unclosed_wait, 20, id="unclosed-wait")
    done = await rt.start(unclosed_done, 4, id="unclosed-done")
    assert await done.result() == 8
    print("acknowledged", flush=True)  # noqa: T201 - the test reads it


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
