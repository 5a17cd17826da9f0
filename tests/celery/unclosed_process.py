"""A program that opens a runtime with a Celery backend and starter and never closes them.

``python -m tests.celery.unclosed_process DB`` (Redis URL in ``FLOWCORE_TEST_REDIS``): it starts
``cel-unclosed``, whose Celery activity no worker runs yet, prints ``acknowledged`` and lets
``asyncio.run`` return with everything still open.
"""

from __future__ import annotations

import asyncio
import os
import sys

from flowcore import Runtime, workflow
from flowcore.celery import CeleryBackend, CeleryStarter
from tests.celery.activities import cel_add


@workflow
async def cel_unclosed(a: int) -> int:
    """One Celery activity."""
    return await cel_add(a, 1)


async def main(db: str) -> None:
    from tests.celery.app import make_app

    app = make_app(os.environ["FLOWCORE_TEST_REDIS"])
    rt = Runtime(db, backends={"celery": CeleryBackend(app)})
    await rt.open()
    await CeleryStarter(app, rt).open()
    await rt.start(cel_unclosed, 41, id="cel-unclosed")
    print("acknowledged", flush=True)  # noqa: T201 - the test reads it


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
