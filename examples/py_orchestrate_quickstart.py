"""py-orchestrate's README quick start, ported: only the import line changes.

Activities and a workflow are plain sync functions; ``Orchestrator`` runs them in the background
on a durable flowcore journal. Each activity call is journaled by call order, so after a crash or
a restart the workflow resumes without running completed activities again.

Run it with ``uv run python examples/py_orchestrate_quickstart.py``. It journals to
``py_orchestrate_quickstart.db`` (pass another path as the first argument).
"""

from __future__ import annotations

import logging
import sys

import structlog

# py-orchestrate: from py_orchestrate import activity, workflow, Orchestrator
from flowcore.compat.py_orchestrate import Orchestrator, activity, workflow


@activity("fetch_data")
def fetch_data(source: str) -> dict:
    # Your activity logic here
    return {"data": f"data_from_{source}", "count": 100}


@activity("process_data")
def process_data(data: dict) -> dict:
    processed_count = data.get("count", 0) * 2
    return {"processed_data": data["data"] + "_processed", "processed_count": processed_count}


@workflow("data_processing_workflow")
def data_processing_workflow(source: str, destination: str) -> dict:  # noqa: ARG001 - as in the README
    # Step 1: Fetch data
    raw_data = fetch_data(source)

    # Step 2: Process data
    processed_data = process_data(raw_data)

    # Step 3: Return result
    return {"workflow_completed": True, "total_processed": processed_data["processed_count"]}


def main(db: str) -> None:
    orchestrator = Orchestrator(db)
    orchestrator.start()
    try:
        workflow_id = orchestrator.invoke_workflow(
            "data_processing_workflow", source="database", destination="warehouse"
        )
        status = orchestrator.get_workflow_status(workflow_id)
        print(f"Status: {status['status']}")
        print(f"Current activity: {status['current_activity']}")
        # flowcore addition: block until it ends instead of polling
        status = orchestrator.wait_for_workflow(workflow_id, timeout=30)
        print(f"result: {status['status']} {status['output']}")
    finally:
        orchestrator.stop()


if __name__ == "__main__":
    structlog.configure(  # flowcore's progress logs to stderr at INFO; the result to stdout
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    main(sys.argv[1] if len(sys.argv) > 1 else "py_orchestrate_quickstart.db")
