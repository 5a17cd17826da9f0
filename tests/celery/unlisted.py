"""An activity module no test worker loads: importing it is recorded, so a test can prove a
worker never imported it.

On import it appends ``<pid>`` to the file ``FLOWCORE_TEST_IMPORT_LOG`` names (if set). The
activity is real, so a worker that imported the module would also run it.
"""

from __future__ import annotations

import os

from flowcore import RetryPolicy, activity
from tests.celery.activities import _count

_LOG = os.environ.get("FLOWCORE_TEST_IMPORT_LOG")
if _LOG:
    with open(_LOG, "a", encoding="utf-8") as _out:  # noqa: PTH123 - import-time side effect
        _out.write(f"{os.getpid()}\n")


@activity(backend="celery", retry=RetryPolicy(max_attempts=3, initial_interval=0.05))
def cel_unlisted(x: int) -> int:
    """Would run on a worker that imported this module."""
    _count("cel_unlisted", x)
    return x + 1
