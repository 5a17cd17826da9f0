"""ActivityJob.cancelled: made when first asked for; set however stop() and asking interleave."""

from __future__ import annotations

import threading
from typing import Any

from flowcore._instance import ActivityJob


def job() -> ActivityJob:
    """A job whose workflow parts are never looked at here."""
    nothing: Any = None
    return ActivityJob(nothing, nothing, nothing, 1, None)


class TestJobFlag:
    def test_not_made_until_asked(self):
        """A job nobody asks about has no flag; asking makes one, the same each time."""
        made = job()
        assert made.flag is None
        assert made.cancelled is made.cancelled
        assert not made.cancelled.is_set()

    def test_stopped_before_asked(self):
        """A job stopped before its flag was made gets it set."""
        made = job()
        made.stop()
        assert made.cancelled.is_set()

    def test_stopped_after_asked(self):
        """A job stopped after its flag was made sets that flag."""
        made = job()
        flag = made.cancelled
        made.stop()
        assert flag.is_set()

    def test_threads_asking_at_once_share_one(self):
        """Threads asking for the first time together all get the one flag."""
        for _ in range(50):
            made = job()
            seen: list[object] = []
            start = threading.Barrier(4)

            def ask(
                made: ActivityJob = made,
                seen: list[object] = seen,
                start: threading.Barrier = start,
            ) -> None:
                start.wait()
                seen.append(made.cancelled)

            threads = [threading.Thread(target=ask) for _ in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert len({id(flag) for flag in seen}) == 1
