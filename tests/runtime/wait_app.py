"""Worker process for the SIGKILL-while-waiting test: a workflow waiting on a timer and an event.

Run as ``python -m tests.runtime.wait_app DB MODE`` from the repository root, with the real
system clock. The workflow :data:`WORKFLOW_ID` waits, concurrently, on a durable timer of
:data:`SLEEP` seconds and on the external event :data:`EVENT`; it returns the event's payload and
the time it woke (``flowcore.now()`` after both finished).

``MODE`` is ``first``: start the workflow (``if_exists="return"``) and wait for it; it cannot
finish without the event, so the test SIGKILLs the process meanwhile (if nobody does within
:data:`HOLD_LIMIT` seconds the worker exits 3). Or ``resume``: open the runtime (which recovers
the workflow), print ``OPENED <epoch seconds>``, send the event with :data:`PAYLOAD`, print
``SENT <epoch seconds>`` once it is committed, wait for the result, print ``RESULT <json>`` and
exit 0.

Workflows are defined only when the worker runs (:func:`define`), so importing this module
registers nothing.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

WORKFLOW_ID = "kill-wait"
EVENT = "go"
PAYLOAD = {"approved": True, "by": "after-restart"}
SLEEP = 3.0
"""Seconds of the workflow's durable timer."""
HOLD_LIMIT = 60.0
"""Seconds the first run waits for its SIGKILL before it gives up (exit 3)."""
RESULT_TIMEOUT = 30.0


def define() -> Any:
    """Define and register the workflow; return it."""
    import flowcore

    @flowcore.workflow(name="wait_app_timer_and_event")
    async def timer_and_event(seconds: float) -> dict[str, Any]:
        _, payload = await flowcore.gather(flowcore.sleep(seconds), flowcore.wait_event(EVENT))
        return {"payload": payload, "woke_at": flowcore.now().timestamp()}

    return timer_and_event


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def first(db: str) -> int:
    """Start the workflow and wait for a SIGKILL that never lets it finish."""
    from flowcore import Runtime

    wf = define()
    async with Runtime(db) as rt:
        handle = await rt.start(wf, SLEEP, id=WORKFLOW_ID, if_exists="return")
        _say("STARTED")
        try:
            result = await handle.result(timeout=HOLD_LIMIT)
        except TimeoutError:
            sys.stderr.write("wait_app: not killed in time\n")
            return 3
    _say("UNEXPECTED " + json.dumps(result))  # it cannot finish without the event
    return 4


async def resume(db: str) -> int:
    """Recover the workflow, send it the event, and wait for its result."""
    from flowcore import Runtime

    define()
    async with Runtime(db) as rt:
        _say(f"OPENED {time.time()!r}")
        await rt.send_event(WORKFLOW_ID, EVENT, PAYLOAD)
        _say(f"SENT {time.time()!r}")
        result = await rt.handle(WORKFLOW_ID).result(timeout=RESULT_TIMEOUT)
    _say("RESULT " + json.dumps(result, sort_keys=True))
    return 0


def main(argv: list[str]) -> int:
    """Entry point: ``DB MODE``."""
    db, mode = argv
    if mode == "first":
        return asyncio.run(first(db))
    if mode == "resume":
        return asyncio.run(resume(db))
    raise SystemExit(f"MODE must be 'first' or 'resume', not {mode!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
