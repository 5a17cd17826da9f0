"""Send ``flowcore.start`` requests from another process, as any Celery client would.

``python -m tests.celery.send_start NAME JSON_PAYLOAD ID``: sends the request twice with the
same id (once routed to the start queue, once to the workers' queue, which forwards it) and one
request for an unknown workflow.
"""

from __future__ import annotations

import os
import sys

from celery import Celery


def main(name: str, payload: str, wid: str) -> None:
    url = os.environ["FLOWCORE_TEST_REDIS"]
    app = Celery("client", broker=url, backend=url, set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"])
    app.send_task("flowcore.start", args=[name, payload], kwargs={"id": wid},
                  queue="flowcore.start")  # fmt: skip
    app.send_task("flowcore.start", args=[name, payload], kwargs={"id": wid}, queue="celery")
    app.send_task("flowcore.start", args=["cel_no_such_workflow", "{}"], kwargs={"id": "nope"},
                  queue="flowcore.start")  # fmt: skip
    app.close()


if __name__ == "__main__":
    main(*sys.argv[1:4])
