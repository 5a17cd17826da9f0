"""A runtime with a Celery backend, for SIGKILL tests (``-m tests.celery.runtime_process DB``).

It starts (or finds) the ``cel-crash`` fan-out and waits for its result. The Redis URL comes from
``FLOWCORE_TEST_REDIS``.
"""

from __future__ import annotations

import asyncio
import os
import sys

import flowcore
from flowcore import Runtime, workflow
from flowcore.celery import CeleryBackend
from tests.celery.activities import cel_square

CRASH_ID = "cel-crash"
ITEMS = 200


@workflow
async def cel_crash_fan_out(n: int) -> int:
    """A fan-out whose items take a little while, so a kill lands in the middle of it."""
    return sum(await flowcore.gather(*(cel_square(i, 0.04) for i in range(n))))


async def main(db: str) -> None:
    from tests.celery.app import make_app

    app = make_app(os.environ["FLOWCORE_TEST_REDIS"])
    backend = CeleryBackend(app)
    async with Runtime(db, backend=backend) as rt:
        handle = await rt.start(cel_crash_fan_out, ITEMS, id=CRASH_ID, if_exists="return")
        print(await handle.result(), flush=True)  # noqa: T201 - the test reads it


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
