"""Take one ``flowcore.start`` request off the broker and die before acknowledging it.

``python -m tests.celery.dead_starter``: what a runtime SIGKILLed mid-start leaves behind (the
Redis URL comes from ``FLOWCORE_TEST_REDIS``).
"""

from __future__ import annotations

import os
import signal

from tests.celery.app import make_app


def main() -> None:
    app = make_app(os.environ["FLOWCORE_TEST_REDIS"])
    with app.connection_for_read() as conn:
        message = conn.SimpleQueue("flowcore.start", no_ack=False).get(timeout=10)
        print(message.headers["id"], flush=True)  # noqa: T201 - the test reads it
        os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    main()
