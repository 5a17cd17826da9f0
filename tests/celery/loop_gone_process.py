"""A CeleryStarter outliving its runtime's event loop: ``-m tests.celery.loop_gone_process DB``.

``asyncio.run`` opens a runtime and a starter and returns without closing them; the program
then sends a start request and waits (at most 20 s) for the starter to stop consuming. It
prints ``halted`` when it did (Redis URL in ``FLOWCORE_TEST_REDIS``).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from flowcore import Runtime, workflow
from flowcore.celery import CeleryStarter


@workflow
async def cel_loop_gone(text: str) -> int:
    """Never started here: its request arrives after the loop is gone."""
    return len(text)


async def open_and_leave(db: str, app: object) -> CeleryStarter:
    rt = Runtime(db)
    await rt.open()
    starter = CeleryStarter(app, rt)  # type: ignore[arg-type]
    await starter.open()
    return starter


def main(db: str) -> None:
    from tests.celery.app import make_app

    app = make_app(os.environ["FLOWCORE_TEST_REDIS"])
    starter = asyncio.run(open_and_leave(db, app))
    app.send_task("flowcore.start", args=["cel_loop_gone", '"abc"'], kwargs={"id": "req"})
    deadline = time.monotonic() + 20
    while starter.consuming and time.monotonic() < deadline:
        time.sleep(0.01)
    print("consuming" if starter.consuming else "halted", flush=True)  # noqa: T201


if __name__ == "__main__":
    main(sys.argv[1])
