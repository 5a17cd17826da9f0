"""py-orchestrate's surface: Orchestrator, @workflow and @activity on sync functions."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

import pytest

import flowcore
from flowcore import FlowcoreError, JournalLockedError, RegistrationError
from flowcore.compat.py_orchestrate import Orchestrator, WorkflowStatus, activity, workflow

# -- py-orchestrate's README quick start, unchanged but for the import -----------------------------


@activity("fetch_data")
def fetch_data(source: str) -> dict:
    return {"data": f"data_from_{source}", "count": 100}


@activity("process_data")
def process_data(data: dict) -> dict:
    processed_count = data.get("count", 0) * 2
    return {"processed_data": data["data"] + "_processed", "processed_count": processed_count}


@workflow("data_processing_workflow")
def data_processing_workflow(source: str, destination: str) -> dict:
    raw_data = fetch_data(source)
    processed_data = process_data(raw_data)
    return {"workflow_completed": True, "total_processed": processed_data["processed_count"]}


# -- py-orchestrate's example.py -------------------------------------------------------------------


@activity("fetch_user")
def fetch_user(user_id: int) -> dict:
    return {"id": user_id, "name": f"User{user_id}", "email": f"user{user_id}@example.com"}


@activity("send_email")
def send_email(user: dict, subject: str, body: str) -> dict:
    return {"sent": True, "recipient": user["email"], "subject": subject}


@workflow("user_notification")
def user_notification_workflow(user_id: int, message: str) -> dict:
    user = fetch_user(user_id)
    email_result = send_email(user=user, subject="Important Notification", body=message)
    return {"user_notified": True, "user": user, "email_result": email_result}


# -- for the restart and failure tests ------------------------------------------------------------

TABLE: dict[int, Any] = {0: 0, 1: "", 2: None, 3: [], 4: {"v": 4}}
"""What po_lookup returns per argument: four falsy values and one that is not."""


class Loop:
    """Shared between the test and the activity: which calls ran, and whether call 3 holds."""

    executed: ClassVar[list[tuple[int, str]]] = []
    hold = False
    reached = threading.Event()
    release = threading.Event()


@activity("po_lookup")
def po_lookup(i: int) -> Any:
    Loop.executed.append((i, flowcore.activity_info().idempotency_key or ""))
    if i == 3 and Loop.hold:
        Loop.reached.set()
        Loop.release.wait(30)
    return TABLE[i]


@workflow("po_loop")
def po_loop(n: int) -> list[Any]:
    return [po_lookup(i) for i in range(n)]


@activity
def po_explode(what: str) -> None:
    raise ValueError(f"cannot {what}")


@workflow
def po_failing(what: str) -> None:
    po_explode(what)


@workflow()
def po_recovering(what: str) -> str:
    try:
        po_explode(what)
    except flowcore.ActivityError as exc:
        return f"recovered from {exc.failure.short_type}"
    return "unreachable"


@activity(name="po_slow")
def po_slow(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


@workflow("po_sleepy")
def po_sleepy(seconds: float) -> str:
    return po_slow(seconds)


class Change:
    """Which code path po_changing takes, and whether its second call holds."""

    old_code = True
    hold = False
    reached = threading.Event()
    release = threading.Event()


@activity("po_first")
def po_first() -> str:
    return "first"


@activity("po_old_second")
def po_old_second() -> str:
    if Change.hold:
        Change.reached.set()
        Change.release.wait(30)
    return "old"


@activity("po_new_second")
def po_new_second() -> str:
    return "new"


@workflow("po_changing")
def po_changing() -> list[str]:
    first = po_first()
    return [first, po_old_second() if Change.old_code else po_new_second()]


@activity
def po_hello(name: str, limit: int) -> str:
    return f"hi {name}"[:limit]


@workflow("po_named")
def po_named(name: str, limit: int = 100) -> str:
    return po_hello(name, limit)


@dataclass
class PoPoint:
    x: int
    y: int


@workflow("po_typed")
def po_typed(amount: Decimal, when: datetime, point: PoPoint, tags: list[str]) -> list[str]:
    return [type(v).__name__ for v in (amount, when, point, tags)]


@pytest.fixture
def orchestrator(db_path):
    orch = Orchestrator(str(db_path), max_workers=4)
    orch.start()
    yield orch
    orch.stop(timeout=0)


class TestReadmeScenarios:
    def test_quick_start(self, orchestrator):
        """The README's data-processing workflow ends done with its output."""
        wid = orchestrator.invoke_workflow(
            "data_processing_workflow", source="database", destination="warehouse"
        )
        status = orchestrator.wait_for_workflow(wid, timeout=10)
        assert status["status"] == "done" == WorkflowStatus.DONE
        assert status["output"] == {"workflow_completed": True, "total_processed": 200}

    def test_example_user_notification(self, orchestrator):
        """example.py's workflow, polled as the original polls it, ends done."""
        wid = orchestrator.invoke_workflow(
            "user_notification", user_id=123, message="Your account has been updated!"
        )
        deadline = time.monotonic() + 10
        while (status := orchestrator.get_workflow_status(wid))["status"] == "processing":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert status["output"]["email_result"] == {
            "sent": True,
            "recipient": "user123@example.com",
            "subject": "Important Notification",
        }

    def test_status_dict_has_the_original_fields(self, orchestrator):
        """get_workflow_status returns py-orchestrate's keys with ISO timestamps."""
        wid = orchestrator.invoke_workflow("user_notification", user_id=1, message="m")
        status = orchestrator.wait_for_workflow(wid, timeout=10)
        assert set(status) == {
            "id", "name", "status", "current_activity", "error_message", "output",
            "created_at", "updated_at",
        }  # fmt: skip
        assert status["id"] == wid
        assert status["name"] == "user_notification"
        assert status["current_activity"] is None
        assert status["error_message"] is None
        created = datetime.fromisoformat(status["created_at"])
        assert created <= datetime.fromisoformat(status["updated_at"])
        assert orchestrator.get_workflow_status("no-such-id") is None

    def test_a_workflow_argument_called_name(self, orchestrator):
        """invoke_workflow's own parameter never clashes with the workflow's keyword `name`."""
        wid = orchestrator.invoke_workflow("po_named", name="bob", limit=6)
        assert orchestrator.wait_for_workflow(wid, timeout=10)["output"] == "hi bob"

    def test_workflow_arguments_come_back_typed(self, orchestrator):
        """invoke_workflow's keywords reach the workflow decoded by its parameters' hints."""
        wid = orchestrator.invoke_workflow(
            "po_typed",
            amount=Decimal("1.50"),
            when=datetime(2026, 1, 2, tzinfo=UTC),
            point=PoPoint(1, 2),
            tags=["a"],
        )
        status = orchestrator.wait_for_workflow(wid, timeout=10)
        assert status["output"] == ["Decimal", "datetime", "PoPoint", "list"]

    def test_list_workflows(self, orchestrator):
        """list_workflows() lists every workflow (the original returned []); name= filters."""
        a = orchestrator.invoke_workflow("user_notification", user_id=1, message="m")
        b = orchestrator.invoke_workflow("data_processing_workflow", source="s", destination="d")
        for wid in (a, b):
            orchestrator.wait_for_workflow(wid, timeout=10)
        assert {s["id"] for s in orchestrator.list_workflows()} == {a, b}
        assert [s["id"] for s in orchestrator.list_workflows("user_notification")] == [a]


class TestFailures:
    def test_failing_activity_fails_the_workflow(self, orchestrator):
        """An activity's exception ends the workflow failed, with the error message."""
        wid = orchestrator.invoke_workflow("po_failing", what="divide")
        status = orchestrator.wait_for_workflow(wid, timeout=10)
        assert status["status"] == "failed"
        assert "cannot divide" in status["error_message"]

    def test_workflow_may_catch_an_activity_error(self, orchestrator):
        """The ActivityError is raised at the call in the workflow thread, which may handle it."""
        wid = orchestrator.invoke_workflow("po_recovering", what="x")
        assert orchestrator.wait_for_workflow(wid, timeout=10)["output"] == (
            "recovered from ValueError"
        )

    def test_unknown_workflow_and_not_started(self, orchestrator, tmp_path):
        """An unknown name is a RegistrationError; calls before start() say what to do."""
        with pytest.raises(RegistrationError, match="no_such_workflow"):
            orchestrator.invoke_workflow("no_such_workflow")
        idle = Orchestrator(str(tmp_path / "idle.db"))
        with pytest.raises(FlowcoreError, match=r"call orchestrator\.start\(\)"):
            idle.invoke_workflow("po_failing", what="x")

    def test_two_orchestrators_on_one_database_are_refused(self, orchestrator, db_path):
        """The second owner of a database gets JournalLockedError from start()."""
        with pytest.raises(JournalLockedError):
            Orchestrator(str(db_path)).start()
        assert orchestrator.list_workflows() == []  # the first one still serves it

    def test_a_workflow_calling_its_orchestrator_fails_clearly(self, orchestrator):
        """A workflow that calls the Orchestrator (a deadlock) fails with WorkflowMisuseError."""

        @workflow("po_reentrant")
        def po_reentrant() -> None:
            orchestrator.list_workflows()

        wid = orchestrator.invoke_workflow("po_reentrant")
        status = orchestrator.wait_for_workflow(wid, timeout=10)
        assert status["status"] == "failed"
        assert "WorkflowMisuseError" in status["error_message"]

    def test_flowcore_helpers_work_in_a_sync_workflow(self, orchestrator):
        """flowcore.info() inside the workflow thread describes the running instance."""

        @workflow("po_whoami")
        def po_whoami() -> str:
            return flowcore.info().workflow_id

        wid = orchestrator.invoke_workflow("po_whoami")
        assert orchestrator.wait_for_workflow(wid, timeout=10)["output"] == wid

    def test_decorated_functions_still_run_directly(self):
        """Outside an orchestrator, activities and workflows are plain function calls."""
        assert fetch_data("x") == {"data": "data_from_x", "count": 100}
        assert data_processing_workflow("db", "wh")["total_processed"] == 200


class TestRestart:
    def test_loop_of_five_calls_recovers_five_results(self, db_path):
        """After a restart each call's recorded result comes back by call order, falsy included.

        Calls 0-2 are not run again; call 3, in flight when the first orchestrator stopped, runs
        again with the same idempotency key; call 4 runs once.
        """
        Loop.executed.clear()
        Loop.hold = True
        Loop.reached.clear()
        Loop.release.clear()
        try:
            first = Orchestrator(str(db_path))
            first.start()
            wid = first.invoke_workflow("po_loop", n=5)
            assert Loop.reached.wait(10)
            status = first.get_workflow_status(wid)
            assert status["status"] == "processing"
            assert status["current_activity"] == "po_lookup"
            first.stop(timeout=0)
            Loop.hold = False

            with Orchestrator(str(db_path)) as second:
                status = second.wait_for_workflow(wid, timeout=10)
        finally:
            Loop.release.set()  # let the abandoned first attempt of call 3 end
        assert status["status"] == "done"
        assert status["output"] == [0, "", None, [], {"v": 4}]
        assert [i for i, _ in Loop.executed] == [0, 1, 2, 3, 3, 4]
        keys = dict(Loop.executed[:4])
        assert Loop.executed[4] == (3, keys[3])  # the rerun of call 3 has the same key
        assert len({key for _, key in Loop.executed}) == 5

    def test_changed_code_parks_the_workflow_until_the_old_path_is_back(self, db_path):
        """A replay that calls another activity at a recorded step parks; old code resumes it."""
        Change.old_code, Change.hold = True, True
        Change.reached.clear()
        Change.release.clear()
        try:
            first = Orchestrator(str(db_path))
            first.start()
            wid = first.invoke_workflow("po_changing")
            assert Change.reached.wait(10)
            first.stop(timeout=0)
            Change.hold, Change.old_code = False, False
            with Orchestrator(str(db_path)) as changed:
                parked = changed.get_workflow_status(wid)
            Change.old_code = True
            with Orchestrator(str(db_path)) as fixed:
                done = fixed.wait_for_workflow(wid, timeout=10)
        finally:
            Change.release.set()
        assert parked["status"] == "processing"
        assert "not deterministic" in parked["error_message"]
        assert "po_old_second" in parked["error_message"]
        assert "po_new_second" in parked["error_message"]
        assert done["status"] == "done"
        assert done["output"] == ["first", "old"]

    def test_stop_waits_for_running_workflows(self, db_path):
        """stop() lets a running workflow finish (within its timeout) before closing."""
        orch = Orchestrator(str(db_path))
        orch.start()
        wid = orch.invoke_workflow("po_sleepy", seconds=0.2)
        orch.stop()
        with Orchestrator(str(db_path)) as again:
            status = again.get_workflow_status(wid)
        assert status["status"] == "done"
        assert status["output"] == "slept"
