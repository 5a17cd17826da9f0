"""py-orchestrate's ``example.py`` (fetch a user, send an email), ported: only the import changes.

It polls ``get_workflow_status`` until the workflow is ``done`` or ``failed``, as the original
does. Run it with ``uv run python examples/py_orchestrate_notification.py``; it journals to
``py_orchestrate_notification.db`` (pass another path as the first argument).
"""

from __future__ import annotations

import logging
import sys
import time

import structlog

from flowcore.compat.py_orchestrate import Orchestrator, activity, workflow


@activity("fetch_user")
def fetch_user(user_id: int) -> dict:
    """Fetch user data from database."""
    return {"id": user_id, "name": f"User{user_id}", "email": f"user{user_id}@example.com"}


@activity("send_email")
def send_email(user: dict, subject: str, body: str) -> dict:
    """Send email to user."""
    print(f"Sending email to {user['email']}: {subject} ({len(body)} characters)")
    return {"sent": True, "recipient": user["email"], "subject": subject}


@workflow("user_notification")
def user_notification_workflow(user_id: int, message: str) -> dict:
    """Workflow to fetch user and send notification."""
    user = fetch_user(user_id)
    email_result = send_email(user=user, subject="Important Notification", body=message)
    return {"user_notified": True, "user": user, "email_result": email_result}


def main(db: str) -> None:
    orchestrator = Orchestrator(db)
    orchestrator.start()
    try:
        workflow_id = orchestrator.invoke_workflow(
            "user_notification", user_id=123, message="Your account has been updated successfully!"
        )
        print(f"Started workflow: {workflow_id}")
        deadline = time.monotonic() + 30
        while True:
            status = orchestrator.get_workflow_status(workflow_id)
            print(f"Status: {status['status']}")
            if status["status"] in ("done", "failed"):
                if status["status"] == "done":
                    print(f"result: {status['output']}")
                else:
                    print(f"Error: {status['error_message']}")
                break
            if time.monotonic() > deadline:
                raise SystemExit("the workflow did not finish within 30 s")
            time.sleep(0.05)
    finally:
        orchestrator.stop()


if __name__ == "__main__":
    structlog.configure(  # flowcore's progress logs to stderr at INFO; the result to stdout
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    main(sys.argv[1] if len(sys.argv) > 1 else "py_orchestrate_notification.db")
