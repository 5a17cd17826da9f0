"""Recovery in one process: a runtime closed mid-flight, reopened on the same journal."""

from __future__ import annotations

import anyio
import pytest

import flowcore
from flowcore import (
    RetryPolicy,
    Runtime,
    WorkflowDef,
    WorkflowState,
    activity,
    workflow,
)
from flowcore.engine.events import ActivityAttemptFailed, WorkflowParked
from flowcore.testing import FakeClock
from tests.helpers import assert_eventually

calls: list[str] = []
gate = anyio.Event()


@pytest.fixture(autouse=True)
def _reset() -> None:
    global gate  # noqa: PLW0603 - module state shared with the activities below
    calls.clear()
    gate = anyio.Event()


@activity
def first(x: int) -> int:
    calls.append(f"first:{flowcore.activity_info().idempotency_key}")
    return x + 1


@activity
async def blocked(x: int) -> int:
    calls.append(f"blocked:{flowcore.activity_info().idempotency_key}")
    await gate.wait()
    return x * 10


@workflow
async def two_steps(x: int) -> int:
    a = await first(x)
    return await blocked(a)


async def waiting_on(rt: Runtime, wid: str, name: str) -> None:
    async def check() -> bool:
        return (await rt.status(wid)).current_activity == name

    await assert_eventually(check, message=f"{wid} never waited on {name}")


class TestResumeAfterClose:
    async def test_completed_activities_are_not_run_again(self, db_path):
        """A reopened runtime continues the workflow without re-running finished activities."""
        async with Runtime(db_path) as rt:
            await rt.start(two_steps, 1, id="r1")
            await waiting_on(rt, "r1", "blocked")
        gate.set()
        async with Runtime(db_path) as rt:
            assert await rt.handle("r1").result(timeout=10) == 20
        assert calls == ["first:r1/1/1", "blocked:r1/2/1", "blocked:r1/2/1"]

    async def test_in_flight_activity_keeps_its_idempotency_key(self, db_path):
        """An activity interrupted by shutdown reruns with the same workflow/step/attempt key."""
        async with Runtime(db_path) as rt:
            await rt.start(two_steps, 5, id="r2")
            await waiting_on(rt, "r2", "blocked")
        gate.set()
        async with Runtime(db_path) as rt:
            await rt.handle("r2").result(timeout=10)
        keys = [c for c in calls if c.startswith("blocked")]
        assert keys == ["blocked:r2/2/1", "blocked:r2/2/1"]

    async def test_status_is_running_while_closed(self, db_path):
        """An unfinished workflow is listed as running in the journal between runtimes."""
        async with Runtime(db_path) as rt:
            await rt.start(two_steps, 1, id="r3")
            await waiting_on(rt, "r3", "blocked")
        async with Runtime(db_path) as rt:
            st = await rt.status("r3")
            assert st.status is WorkflowState.RUNNING
            gate.set()
            await rt.handle("r3").result(timeout=10)


class TestRetriesSurviveRestart:
    async def test_retry_keeps_attempt_and_deadline(self, db_path):
        """After a restart a pending retry resumes at the next attempt, at its journaled time."""
        attempts: list[int] = []

        @activity(retry=RetryPolicy(max_attempts=3, initial_interval=3600, max_interval=3600))
        def flaky() -> str:
            attempts.append(flowcore.activity_info().attempt)
            if len(attempts) == 1:
                raise ConnectionError("down")
            return "up"

        @workflow
        async def patient() -> str:
            return await flaky()

        clock = FakeClock()
        async with Runtime(db_path, clock=clock) as rt:
            await rt.start(patient, id="p")

            async def retry_recorded() -> bool:
                events = await rt.history("p")
                return any(isinstance(e, ActivityAttemptFailed) for e in events)

            await assert_eventually(retry_recorded)
        [failed] = [e for e in await _history(db_path, "p") if isinstance(e, ActivityAttemptFailed)]
        assert failed.retry_at == clock.now() + 3600

        later = FakeClock(start=clock.now() + 1800)
        async with Runtime(db_path, clock=later) as rt:
            handle = rt.handle("p")
            with pytest.raises(TimeoutError):
                await handle.result(timeout=0.05)
            assert attempts == [1]
            later.advance(1800)
            assert await handle.result(timeout=10) == "up"
        assert attempts == [1, 2]


class TestNondeterminism:
    async def test_changed_code_parks_the_instance(self, db_path):
        """Replaying under changed code parks the instance with both sides in its status."""
        async with Runtime(db_path) as rt:
            await rt.start(two_steps, 1, id="n1")
            await waiting_on(rt, "n1", "blocked")

        async def changed(x: int) -> int:
            await blocked(x)  # the first step used to be `first`
            return 0

        new_code = WorkflowDef(changed, name="two_steps", version="1")
        async with Runtime(db_path, workflows=[new_code]) as rt:
            st = await rt.status("n1")
            assert st.status is WorkflowState.PARKED
            assert "step 1" in (st.error or "")
            assert "activity 'first'" in (st.error or "")
            assert "activity 'blocked'" in (st.error or "")
        assert calls == ["first:n1/1/1", "blocked:n1/2/1"]

    async def test_parked_instance_resumes_with_fixed_code(self, db_path):
        """A parked instance continues once the original code is deployed again."""
        async with Runtime(db_path) as rt:
            await rt.start(two_steps, 2, id="n2")
            await waiting_on(rt, "n2", "blocked")

        async def changed(x: int) -> int:
            return x

        for _ in range(2):  # parking twice records one park event
            async with Runtime(
                db_path, workflows=[WorkflowDef(changed, name="two_steps", version="1")]
            ):
                pass
        parks = [e for e in await _history(db_path, "n2") if isinstance(e, WorkflowParked)]
        assert len(parks) == 1
        gate.set()
        async with Runtime(db_path) as rt:
            assert await rt.handle("n2").result(timeout=10) == 30
            assert (await rt.status("n2")).status is WorkflowState.COMPLETED

    async def test_unregistered_workflow_is_parked(self, db_path):
        """An unfinished instance whose workflow is no longer registered is parked, not lost."""
        async with Runtime(db_path) as rt:
            await rt.start(two_steps, 1, id="n3")
            await waiting_on(rt, "n3", "blocked")

        async def other() -> None:
            return None

        async with Runtime(
            db_path, workflows=[WorkflowDef(other, name="other", version="1")]
        ) as rt:
            st = await rt.status("n3")
            assert st.status is WorkflowState.PARKED
            assert "two_steps" in (st.error or "")


async def _history(db_path, wid):
    from flowcore.journal.sqlite import SqliteJournal

    async with SqliteJournal(db_path, readonly=True) as journal:
        return await journal.history(wid)


class TestJournalFailure:
    async def test_commit_failure_stops_work_and_loses_nothing(self, db_path):
        """A failing commit stops the runtime with JournalError; reopening finishes the work."""
        import sqlite3
        from contextlib import closing

        from flowcore import JournalError

        async with Runtime(db_path) as rt:
            await rt.start(two_steps, 3, id="j1")
            await waiting_on(rt, "j1", "blocked")
            with closing(sqlite3.connect(db_path)) as conn, conn:
                conn.execute(
                    "CREATE TRIGGER fail_completions BEFORE INSERT ON events "
                    "WHEN NEW.kind = 'activity_completed' "
                    "BEGIN SELECT RAISE(ABORT, 'simulated I/O error'); END"
                )
            gate.set()
            with pytest.raises(JournalError, match="simulated I/O error"):
                await rt.handle("j1").result(timeout=10)
            with pytest.raises(JournalError, match="stopped accepting work"):
                await rt.start(two_steps, 4, id="j2")
        with closing(sqlite3.connect(db_path)) as conn, conn:
            conn.execute("DROP TRIGGER fail_completions")
        async with Runtime(db_path) as rt:
            assert await rt.handle("j1").result(timeout=10) == 40
            with pytest.raises(flowcore.WorkflowNotFoundError):
                await rt.status("j2")


class TestReplayIsSilent:
    async def test_recovery_logs_no_replayed_steps(self, db_path):
        """Recovery logs one line for the workflow and nothing for the steps it replays."""
        from structlog.testing import capture_logs

        async with Runtime(db_path) as rt:
            await rt.start(two_steps, 1, id="q1")
            await waiting_on(rt, "q1", "blocked")
        gate.set()
        with capture_logs() as logs:
            async with Runtime(db_path) as rt:
                await rt.handle("q1").result(timeout=10)
        lines = [(e["event"], e.get("step")) for e in logs if e.get("workflow_id") == "q1"]
        assert lines == [
            ("workflow recovered", None),
            ("activity completed", 2),
            ("workflow completed", None),
        ]
