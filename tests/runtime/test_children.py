"""Child workflows, continue-as-new, custom status and versioning on the real SQLite journal."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import anyio
import pytest

import flowcore
from flowcore import (
    Runtime,
    UnknownVersionError,
    WorkflowAlreadyExistsError,
    WorkflowCanceledError,
    WorkflowDef,
    WorkflowFailedError,
    WorkflowState,
    activity,
    workflow,
)
from flowcore.engine.events import (
    ChildCompleted,
    ChildScheduled,
    EventReceived,
    EventWaitStarted,
    TimerScheduled,
    WorkflowStarted,
)
from flowcore.testing import FakeClock, VirtualClock
from tests.helpers import assert_eventually, events_of, until_recorded


async def until_state(rt: Runtime, wid: str, state: WorkflowState) -> None:
    """Wait (with a deadline) until the instance's committed status is ``state``."""

    async def check() -> bool:
        try:
            return (await rt.status(wid)).status is state
        except flowcore.WorkflowNotFoundError:
            return False

    await assert_eventually(check, message=f"{wid} never became {state}")


async def until_run_sleeps(rt: Runtime, wid: str, payload: Any) -> None:
    """Wait until the run started with ``payload`` has journaled its timer."""

    async def check() -> bool:
        history = await rt.history(wid)
        started = history[0]
        assert isinstance(started, WorkflowStarted)
        return started.input == payload and any(isinstance(e, TimerScheduled) for e in history)

    await assert_eventually(check, message=f"the run of {wid} with {payload!r} never slept")


def stored_rows(db_path, wid: str) -> int:
    """How many journal rows the instance has in the database file (read-only)."""
    con = sqlite3.connect(f"{db_path.as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        [(count,)] = con.execute(
            "SELECT COUNT(*) FROM events WHERE workflow_id = ?", (wid,)
        ).fetchall()
    finally:
        con.close()
    return int(count)


class TestChildren:
    async def test_child_result_is_returned_to_the_parent(self, db_path):
        """child() starts the child, waits for it and returns its result; status shows parent_id."""

        @workflow
        async def ch_square(n: int) -> int:
            return n * n

        @workflow
        async def ch_parent(n: int) -> int:
            return await flowcore.child(ch_square, n) + 1

        async with Runtime(db_path) as rt:
            assert await (await rt.start(ch_parent, 7, id="p")).result(timeout=10) == 50
            [scheduled] = await events_of(rt, "p", ChildScheduled)
            st = await rt.status(scheduled.child_id)
            assert (await rt.status("p")).parent_id is None
        assert scheduled.child_id == f"p:{scheduled.step}"
        assert (st.name, st.status, st.parent_id, st.output) == (
            "ch_square",
            WorkflowState.COMPLETED,
            "p",
            49,
        )

    async def test_child_with_explicit_id(self, db_path):
        """child(id=...) runs the child under that id, visible to info() inside it."""

        @workflow
        async def ch_named() -> list[Any]:
            me = flowcore.info()
            return [me.workflow_id, me.parent_id]

        @workflow
        async def ch_namer() -> list[Any]:
            return await flowcore.child(ch_named, id="invoice-7")

        async with Runtime(db_path) as rt:
            assert await (await rt.start(ch_namer, id="boss")).result(timeout=10) == [
                "invoice-7",
                "boss",
            ]
            assert (await rt.status("invoice-7")).parent_id == "boss"

    async def test_child_id_of_another_instance_is_refused(self, db_path):
        """A child id already taken by an instance that is no child of this parent (one that
        ended, one still running, the parent itself) fails the child() call: the parent never
        takes a stranger's result or waits on itself."""

        @workflow
        async def ch_stranger() -> str:
            return await flowcore.wait_event("go")

        @workflow
        async def ch_squatter(child_id: str) -> str:
            try:
                return await flowcore.child(ch_stranger, id=child_id)
            except WorkflowFailedError as exc:
                kind = "refused" if exc.failure.is_caused_by(WorkflowAlreadyExistsError) else "?"
                return f"{kind}: {exc.failure.message}"

        async with Runtime(db_path) as rt:
            await rt.start(ch_stranger, id="done")
            await rt.send_event("done", "go", "stranger's result")
            await rt.handle("done").result(timeout=10)
            await rt.start(ch_stranger, id="busy")
            for wid, taken in [("s1", "done"), ("s2", "busy"), ("s3", "s3")]:
                got = await (await rt.start(ch_squatter, taken, id=wid)).result(timeout=10)
                assert got.startswith(f"refused: a workflow with id {taken!r} already exists")
            assert (await rt.status("busy")).status is WorkflowState.RUNNING

    async def test_two_children_of_a_run_cannot_share_an_id(self, db_path):
        """The second child() with an id this run already used raises; it is not handed the
        first child's result."""

        @workflow
        async def ch_twin(n: int) -> int:
            return n

        @workflow
        async def ch_twins() -> list[Any]:
            first = await flowcore.child(ch_twin, 1, id="twin")
            try:
                second = await flowcore.child(ch_twin, 2, id="twin")
            except WorkflowAlreadyExistsError as exc:
                return [first, exc.workflow_id]
            return [first, second]

        async with Runtime(db_path) as rt:
            assert await (await rt.start(ch_twins, id="tw")).result(timeout=10) == [1, "twin"]
        async with Runtime(db_path) as rt:  # replays the same way
            assert await rt.handle("tw").result(timeout=10) == [1, "twin"]

    async def test_a_later_run_is_not_handed_an_earlier_runs_child(self, db_path):
        """A workflow that continues as new and starts a child under the same explicit id in
        each run: the second run's child() is refused, not handed the first run's result."""

        @workflow
        async def ch_gen(gen: int) -> str:
            return f"gen-{gen}"

        @workflow
        async def ch_generations(p: dict[str, Any]) -> list[str]:
            got = list(p["got"])
            try:
                got.append(await flowcore.child(ch_gen, p["gen"], id="gen-kid"))
            except WorkflowFailedError as exc:
                refused = exc.failure.is_caused_by(WorkflowAlreadyExistsError)
                got.append(f"refused: {'earlier run' in exc.failure.message and refused}")
            if p["gen"] < 1:
                flowcore.continue_as_new({"gen": p["gen"] + 1, "got": got})
            return got

        async with Runtime(db_path) as rt:
            handle = await rt.start(ch_generations, {"gen": 0, "got": []}, id="gens")
            assert await handle.result(timeout=10) == ["gen-0", "refused: True"]

    async def test_children_run_in_parallel_under_gather(self, db_path):
        """Children under gather all run at once and their results come back in argument order."""

        @workflow
        async def ch_waiter(tag: str) -> str:
            return f"{tag}:{await flowcore.wait_event('go')}"

        @workflow
        async def ch_fan() -> list[str]:
            return await flowcore.gather(
                *(flowcore.child(ch_waiter, tag, id=f"kid-{tag}") for tag in "abc")
            )

        async with Runtime(db_path) as rt:
            handle = await rt.start(ch_fan, id="fan")
            for tag in "abc":  # every child waits at the same time
                await until_recorded(rt, f"kid-{tag}", EventWaitStarted)
            for n, tag in enumerate("cba"):
                await rt.send_event(f"kid-{tag}", "go", n)
            assert await handle.result(timeout=10) == ["a:2", "b:1", "c:0"]

    async def test_child_failure_raises_in_the_parent(self, db_path):
        """A failed child raises WorkflowFailedError in the parent, carrying the child's failure."""

        @workflow
        async def ch_broken() -> None:
            raise ValueError("bad input")

        @workflow
        async def ch_careful() -> list[str]:
            try:
                await flowcore.child(ch_broken, id="broken-kid")
            except WorkflowFailedError as exc:
                return [exc.workflow_id, exc.failure.short_type, exc.failure.message]
            return []

        async with Runtime(db_path) as rt:
            result = await (await rt.start(ch_careful)).result(timeout=10)
        assert result == ["broken-kid", "ValueError", "bad input"]

    async def test_canceling_the_parent_cancels_its_children(self, db_path):
        """cancel() of a parent cancels the children it waits on; both end canceled."""

        @workflow
        async def ch_sleepy_kid() -> Any:
            return await flowcore.wait_event("never")

        @workflow
        async def ch_sleepy_parent() -> Any:
            return await flowcore.gather(
                flowcore.child(ch_sleepy_kid, id="k1"), flowcore.child(ch_sleepy_kid, id="k2")
            )

        async with Runtime(db_path) as rt:
            handle = await rt.start(ch_sleepy_parent, id="cp")
            for kid in ("k1", "k2"):
                await until_recorded(rt, kid, EventWaitStarted)
            await rt.cancel("cp", reason="abort")
            with pytest.raises(WorkflowCanceledError):
                await handle.result(timeout=10)
            for kid in ("k1", "k2"):
                await until_state(rt, kid, WorkflowState.CANCELED)
                assert "cp" in ((await rt.status(kid)).error or "")

    async def test_terminating_the_parent_terminates_its_children(self, db_path):
        """terminate() of a parent ends its children too."""

        @workflow
        async def ch_stuck_kid() -> Any:
            return await flowcore.wait_event("never")

        @workflow
        async def ch_stuck_parent() -> Any:
            return await flowcore.child(ch_stuck_kid, id="tk")

        async with Runtime(db_path) as rt:
            await rt.start(ch_stuck_parent, id="tp")
            await until_recorded(rt, "tk", EventWaitStarted)
            await rt.terminate("tp")
            await until_state(rt, "tk", WorkflowState.TERMINATED)
            assert (await rt.status("tp")).status is WorkflowState.TERMINATED

    async def test_parent_and_child_survive_restart(self, db_path):
        """A parent and the child it waits on resume after a restart; the child starts once."""

        @workflow
        async def ch_late_kid() -> str:
            return await flowcore.wait_event("go")

        @workflow
        async def ch_late_parent() -> str:
            return "parent got " + await flowcore.child(ch_late_kid, id="lk")

        async with Runtime(db_path) as rt:
            await rt.start(ch_late_parent, id="lp")
            await until_recorded(rt, "lk", EventWaitStarted)
        async with Runtime(db_path) as rt:
            await rt.send_event("lk", "go", "hello")
            assert await rt.handle("lp").result(timeout=10) == "parent got hello"
            assert len(await events_of(rt, "lk", WorkflowStarted)) == 1
            assert len(await events_of(rt, "lp", ChildCompleted)) == 1


class TestContinueAsNew:
    async def test_continue_as_new_starts_a_fresh_run_under_the_same_id(self, db_path):
        """continue_as_new starts a new run under the same id, with a fresh history."""

        @workflow
        async def ch_counter(n: int) -> int:
            await flowcore.sleep(1)
            if n < 3:
                flowcore.continue_as_new(n + 1)
            return n

        async with Runtime(db_path, clock=VirtualClock()) as rt:
            assert await (await rt.start(ch_counter, 0, id="cnt")).result(timeout=10) == 3
            history = await rt.history("cnt")
            st = await rt.status("cnt")
        assert isinstance(history[0], WorkflowStarted)
        assert history[0].input == 3
        assert sum(isinstance(e, WorkflowStarted) for e in history) == 1
        assert (st.status, st.input, st.output) == (WorkflowState.COMPLETED, 3, 3)

    async def test_runs_never_reuse_keys_or_default_child_ids(self, db_path):
        """Each run numbers its ops apart: idempotency keys and default child ids never repeat.

        A remote backend keys its task ids by the idempotency key: a key reused by the next run
        would hand that run the previous run's stored result.
        """
        keys: list[str] = []

        @activity
        async def ch_keyed(n: int) -> int:
            keys.append(flowcore.activity_info().idempotency_key)
            return n

        @workflow
        async def ch_kid_of_run(n: int) -> int:
            return n * 10

        @workflow
        async def ch_runs(n: int) -> list[int]:
            got = [await ch_keyed(n), await flowcore.child(ch_kid_of_run, n)]
            if n < 3:
                flowcore.continue_as_new(n + 1)
            return got

        async with Runtime(db_path) as rt:
            assert await (await rt.start(ch_runs, 1, id="runs")).result(timeout=10) == [3, 30]
            kids = sorted(s.id for s in await rt.list(name="ch_kid_of_run"))
            started = (await rt.history("runs"))[0]
        assert keys == ["runs/1/1", "runs/r2.1/1", "runs/r3.1/1"]
        assert kids == ["runs:2", "runs:r2.2", "runs:r3.2"]
        assert isinstance(started, WorkflowStarted)
        assert started.run == 3

    async def test_thousand_continuations_keep_the_history_small(self, db_path):
        """A monitor that continues as new 1,000 times keeps only its current run's few events."""

        @workflow
        async def ch_monitor(n: int) -> int:
            await flowcore.sleep(60)
            if n < 1000:
                flowcore.continue_as_new(n + 1)
            return n

        async with Runtime(db_path, clock=VirtualClock()) as rt:
            began = time.monotonic()
            assert await (await rt.start(ch_monitor, 1, id="mon")).result(timeout=60) == 1000
            elapsed = time.monotonic() - began
            history = await rt.history("mon")
            st = await rt.status("mon")
        assert len(history) == 4  # started, timer scheduled, timer fired, completed
        assert stored_rows(db_path, "mon") == 4
        assert st.created_at < st.updated_at  # the first run's creation time is kept
        assert elapsed < 15

    async def test_immediate_continuations_do_not_exhaust_the_stack(self, db_path):
        """A workflow that continues as new 1,000 times without awaiting anything completes."""

        @workflow
        async def ch_spinner(n: int) -> int:
            if n < 1000:
                flowcore.continue_as_new(n + 1)
            return n

        async with Runtime(db_path) as rt:
            assert await (await rt.start(ch_spinner, 1, id="spin")).result(timeout=30) == 1000
            assert len(await rt.history("spin")) == 2
        assert stored_rows(db_path, "spin") == 2

    async def test_continued_run_survives_restart(self, db_path):
        """After a restart the instance continues from its latest run, not its first one."""

        @workflow
        async def ch_pager(page: int) -> int:
            if page < 2:
                await flowcore.sleep(10)
                flowcore.continue_as_new(page + 1)
            return page + 100 * int(await flowcore.wait_event("last"))

        clock = FakeClock()
        async with Runtime(db_path, clock=clock) as rt:
            await rt.start(ch_pager, 0, id="pg")
            for page in range(2):
                await until_run_sleeps(rt, "pg", page)
                clock.advance(10)
            await until_recorded(rt, "pg", EventWaitStarted)
        async with Runtime(db_path, clock=FakeClock(start=clock.now())) as rt:
            assert (await rt.history("pg"))[0].input == 2
            await rt.send_event("pg", "last", 7)
            assert await rt.handle("pg").result(timeout=10) == 702

    async def test_events_the_run_did_not_take_reach_the_next_run(self, db_path):
        """Events sent before the run waits for them are acknowledged: continue-as-new keeps them.

        Three events arrive while the first run sleeps; each run takes one and continues as
        new, so the other two must reach later runs (across a restart, and through a run that
        continues as new at once, before any await).
        """

        @workflow
        async def ch_ticks(taken: list[str]) -> list[str]:
            if len(taken) == 1 and not taken[0].endswith("!"):
                flowcore.continue_as_new([taken[0] + "!"])  # at once: nothing awaited yet
            await flowcore.sleep(10)
            taken = [*taken, await flowcore.wait_event("tick")]
            if len(taken) < 3:
                flowcore.continue_as_new(taken)
            return taken

        clock = FakeClock()
        async with Runtime(db_path, clock=clock) as rt:
            await rt.start(ch_ticks, [], id="ticks")
            await until_recorded(rt, "ticks", TimerScheduled)
            for name in ("a", "b", "c"):
                await rt.send_event("ticks", "tick", name)
            clock.advance(10)
            await until_run_sleeps(rt, "ticks", ["a!"])
        later = FakeClock(start=clock.now())
        async with Runtime(db_path, clock=later) as rt:
            history = await rt.history("ticks")
            assert [e.payload for e in history if isinstance(e, EventReceived)] == ["b", "c"]
            later.advance(10)
            await until_run_sleeps(rt, "ticks", ["a!", "b"])
            later.advance(10)
            assert await rt.handle("ticks").result(timeout=10) == ["a!", "b", "c"]

    async def test_events_of_several_names_reach_the_next_run_in_arrival_order(self, db_path):
        """The carried events keep their arrival order across names, not grouped by name.

        ``a1``, ``b2``, ``a3`` arrive while the first run sleeps; the next run's history must
        hold them in that order (they were journaled ``a1``, ``a3``, ``b2``), so a later run
        racing both names sees ``b2`` before ``a3``.
        """

        @workflow
        async def ch_names(taken: list[Any]) -> list[Any]:
            if not taken:
                await flowcore.sleep(10)
                flowcore.continue_as_new(["-"])
            won = await flowcore.first(flowcore.wait_event("b"), flowcore.wait_event("a"))
            taken = [*taken, won.value]
            if len(taken) < 4:
                flowcore.continue_as_new(taken)
            return taken

        clock = FakeClock()
        async with Runtime(db_path, clock=clock) as rt:
            await rt.start(ch_names, [], id="names")
            await until_recorded(rt, "names", TimerScheduled)
            for name, value in (("a", 1), ("b", 2), ("a", 3)):
                await rt.send_event("names", name, value)
            clock.advance(10)
            assert await rt.handle("names").result(timeout=10) == ["-", 1, 2, 3]

    async def test_each_run_draws_new_random_values_and_replays_them(self, db_path):
        """uuid4() and random() differ from one run to the next, and replay to the same values.

        An eternal monitor that names each check's incident with ``flowcore.uuid4()`` must not
        get the same id in every run; a recovered run must still draw the values it drew.
        """
        drawn: list[list[str]] = []

        @activity
        async def ch_record(values: list[str]) -> None:
            drawn.append(values)

        @workflow
        async def ch_dice(n: int) -> list[str]:
            values = [str(flowcore.uuid4()), str(flowcore.random())]
            await ch_record(values)
            await flowcore.sleep(1)
            if n < 2:
                flowcore.continue_as_new(n + 1)
            return values

        clock = FakeClock()
        async with Runtime(db_path, clock=clock) as rt:
            await rt.start(ch_dice, 0, id="dice")
            for n in range(2):
                await until_run_sleeps(rt, "dice", n)
                clock.advance(1)
            await until_run_sleeps(rt, "dice", 2)
        async with Runtime(db_path, clock=clock) as rt:  # the last run is replayed
            clock.advance(1)
            assert await rt.handle("dice").result(timeout=10) == drawn[-1]
        assert len(drawn) == 3
        assert len({value for values in drawn for value in values}) == 6

    async def test_child_that_continues_as_new_returns_its_last_run(self, db_path):
        """A parent awaiting a child that continues as new gets the result of its last run."""

        @workflow
        async def ch_looping_kid(n: int) -> int:
            await flowcore.sleep(1)
            if n < 5:
                flowcore.continue_as_new(n + 1)
            return n * 10

        @workflow
        async def ch_loop_parent() -> int:
            return await flowcore.child(ch_looping_kid, 0, id="loop-kid")

        async with Runtime(db_path, clock=VirtualClock()) as rt:
            assert await (await rt.start(ch_loop_parent, id="lpp")).result(timeout=10) == 50
            st = await rt.status("loop-kid")
        assert (st.parent_id, st.input) == ("lpp", 5)


class TestCustomStatus:
    async def test_status_shows_custom_status_next_to_current_activity(self, db_path):
        """set_status(value) appears in status().custom_status beside current_activity."""
        gate = anyio.Event()

        @activity
        async def ch_charge() -> None:
            await gate.wait()

        @workflow
        async def ch_checkout() -> str:
            flowcore.set_status({"stage": "charging", "attempt": 1})
            await ch_charge()
            flowcore.set_status("done")
            return "ok"

        async with Runtime(db_path) as rt:
            handle = await rt.start(ch_checkout, id="cs1")

            async def charging() -> bool:
                return (await rt.status("cs1")).current_activity == "ch_charge"

            await assert_eventually(charging)
            st = await rt.status("cs1")
            assert st.custom_status == {"stage": "charging", "attempt": 1}
            gate.set()
            await handle.result(timeout=10)
            st = await rt.status("cs1")
        assert (st.custom_status, st.current_activity) == ("done", None)

    async def test_custom_status_survives_restart(self, db_path):
        """The custom status is journaled: a new runtime shows it before the workflow moves on."""

        @workflow
        async def ch_waiting() -> str:
            flowcore.set_status("waiting for approval")
            return await flowcore.wait_event("approve")

        async with Runtime(db_path) as rt:
            await rt.start(ch_waiting, id="cs2")
            await until_recorded(rt, "cs2", EventWaitStarted)
        async with Runtime(db_path) as rt:
            assert (await rt.status("cs2")).custom_status == "waiting for approval"
            await rt.send_event("cs2", "approve", "yes")
            assert await rt.handle("cs2").result(timeout=10) == "yes"
            assert (await rt.status("cs2")).custom_status == "waiting for approval"


async def _versioned(label: str) -> dict[str, str]:
    """The body shared by every version of ``ch_order``: it branches on the recorded version."""
    steps = ["reserve"]
    if int(flowcore.info().version) >= 2:
        steps.append("gift card")
    if label == "wait":
        await flowcore.wait_event("ship")
    steps.append("ship")
    return {"version": flowcore.info().version, "steps": "+".join(steps)}


def order_versions(*versions: str) -> list[WorkflowDef[Any, Any]]:
    """``ch_order`` registered at each of ``versions`` (one body for all of them)."""
    return [WorkflowDef(_versioned, name="ch_order", version=v) for v in versions]


class TestVersioning:
    async def test_start_uses_the_latest_version_unless_told(self, db_path):
        """start() records the latest version or the one asked for, and code branches on it."""
        async with Runtime(db_path, workflows=order_versions("1", "2")) as rt:
            latest = await (await rt.start("ch_order", "now", id="v-latest")).result(timeout=10)
            old = await (await rt.start("ch_order", "now", id="v-old", version="1")).result(
                timeout=10
            )
            assert (await rt.status("v-old")).version == "1"
            assert (await rt.status("v-latest")).version == "2"
        assert latest == {"version": "2", "steps": "reserve+gift card+ship"}
        assert old == {"version": "1", "steps": "reserve+ship"}

    async def test_decorator_version_is_recorded(self, db_path):
        """@workflow(version=...) is the version an instance records and info() reports."""

        @workflow(version="3")
        async def ch_stamped() -> str:
            return flowcore.info().version

        async with Runtime(db_path) as rt:
            assert await (await rt.start(ch_stamped, id="v3")).result(timeout=10) == "3"
            history = await rt.history("v3")
            assert (await rt.status("v3")).version == "3"
        assert isinstance(history[0], WorkflowStarted)
        assert history[0].version == "3"

    async def test_instance_keeps_its_version_across_a_deploy(self, db_path):
        """An instance started on version 1 runs version-1 logic after version 2 is deployed."""
        async with Runtime(db_path, workflows=order_versions("1")) as rt:
            await rt.start("ch_order", "wait", id="v-deploy")
            await until_recorded(rt, "v-deploy", EventWaitStarted)
        async with Runtime(db_path, workflows=order_versions("1", "2")) as rt:
            await rt.send_event("v-deploy", "ship", None)
            result = await rt.handle("v-deploy").result(timeout=10)
            new = await (await rt.start("ch_order", "now", id="v-new")).result(timeout=10)
        assert result == {"version": "1", "steps": "reserve+ship"}
        assert new["version"] == "2"

    async def test_old_instance_replays_on_newer_code_with_its_recorded_version(self, db_path):
        """A version-1 instance replays on version-2 code when that is all, and still sees '1'."""
        async with Runtime(db_path, workflows=order_versions("1")) as rt:
            await rt.start("ch_order", "wait", id="v-only2")
            await until_recorded(rt, "v-only2", EventWaitStarted)
        async with Runtime(db_path, workflows=order_versions("2")) as rt:
            await rt.send_event("v-only2", "ship", None)
            result = await rt.handle("v-only2").result(timeout=10)
            assert (await rt.status("v-only2")).version == "1"
        assert result == {"version": "1", "steps": "reserve+ship"}

    async def test_parked_on_newer_code_says_its_version_is_not_registered(self, db_path):
        """A version-1 instance that version-2 code cannot replay is parked with a reason that
        names the missing version; registering version 1 again lets it finish.

        Found by a new-user run: the reason said only that the code changed, so a deploy that
        dropped version 1 looked like an edit of version 1's code.
        """
        async with Runtime(db_path, workflows=order_versions("1")) as rt:
            await rt.start("ch_order", "wait", id="v-gone")
            await until_recorded(rt, "v-gone", EventWaitStarted)

        async def ch_breaking(label: str) -> str:
            await flowcore.wait_event("packed")  # a new first step, not guarded by the version
            return label

        breaking = WorkflowDef(ch_breaking, name="ch_order", version="2")
        async with Runtime(db_path, workflows=[breaking]) as rt:
            await until_state(rt, "v-gone", WorkflowState.PARKED)
            error = (await rt.status("v-gone")).error
        assert error is not None
        assert "is not deterministic at step 1" in error
        assert (
            "Version '1', which this instance started with, is not registered, so it replayed "
            "on version '2'; register version '1' again"
        ) in error
        async with Runtime(db_path, workflows=order_versions("1", "2")) as rt:
            await rt.send_event("v-gone", "ship", None)
            result = await rt.handle("v-gone").result(timeout=10)
        assert result == {"version": "1", "steps": "reserve+ship"}

    async def test_continue_as_new_keeps_the_version_unless_told(self, db_path):
        """A new run keeps its instance's version, or takes the one continue_as_new names."""

        async def ch_upgrading(step: int) -> list[str]:
            seen = [flowcore.info().version]
            await flowcore.sleep(1)
            if step == 0:
                flowcore.continue_as_new(1)  # same version
            if step == 1:
                flowcore.continue_as_new(2, version="2")
            return seen

        defs = [WorkflowDef(ch_upgrading, name="ch_upgrading", version=v) for v in ("1", "2")]
        clock = FakeClock()
        versions = []
        async with Runtime(db_path, workflows=defs, clock=clock) as rt:
            handle = await rt.start("ch_upgrading", 0, id="upg", version="1")
            for step in range(3):
                await until_run_sleeps(rt, "upg", step)
                versions.append((await rt.status("upg")).version)
                clock.advance(1)
            assert await handle.result(timeout=10) == ["2"]
        assert versions == ["1", "1", "2"]

    async def test_starting_an_old_version_by_its_definition_keeps_the_latest(self, db_path):
        """start(<version-1 definition>) starts version 1 and leaves the default at version 2.

        Found by a new-user run: starting one old-version instance by its definition (on a
        runtime serving only version 2, or with another object for version 1) registered it
        as the latest, so every later start by name silently ran version 1.
        """
        v1, v2 = order_versions("1", "2")
        async with Runtime(db_path, workflows=[v2]) as rt:
            old = await (await rt.start(v1, "now", id="pin-1")).result(timeout=10)
            new = await (await rt.start("ch_order", "now", id="by-name")).result(timeout=10)
        assert (old["version"], new["version"]) == ("1", "2")
        async with Runtime(db_path, workflows=order_versions("1", "2")) as rt:
            (again,) = order_versions("1")  # an equal definition, another object
            old = await (await rt.start(again, "now", id="pin-1b")).result(timeout=10)
            new = await (await rt.start("ch_order", "now", id="by-name-b")).result(timeout=10)
        assert (old["version"], new["version"]) == ("1", "2")

    async def test_child_of_a_definition_starts_that_version(self, db_path):
        """child(<version-1 definition>) starts version 1, as runtime.start() of it does.

        Found by a new-user run: the child got the latest version (2) whatever the definition.
        """
        v1, v2 = order_versions("1", "2")

        @workflow
        async def ch_pins_v1() -> list[str]:
            kids = [await flowcore.child(v1, "now", id="kid-def")]
            kids.append(await flowcore.child(v1, "now", id="kid-def-v2", version="2"))
            kids.append(await flowcore.child("ch_order", "now", id="kid-name"))
            return [kid["version"] for kid in kids]

        async with Runtime(db_path, workflows=[v1, v2, ch_pins_v1]) as rt:
            seen = await (await rt.start(ch_pins_v1)).result(timeout=10)
            assert (await rt.status("kid-def")).version == "1"
        assert seen == ["1", "2", "2"]

    async def test_continue_as_new_keeps_a_version_no_longer_registered(self, db_path):
        """A version-1 instance running on version-2 code (version 1 dropped) continues as new
        at version 1, as documented ("default: the current run's"), not at the latest.

        Found by a new-user run: the next run recorded version 2, so it silently took the
        version-2 branches its code guards with flowcore.info().version.
        """

        async def ch_looping(n: int) -> list[Any]:
            seen = flowcore.info().version
            if n == 0:
                await flowcore.wait_event("go")
                flowcore.continue_as_new(1)
            return [n, seen]

        async with Runtime(
            db_path, workflows=[WorkflowDef(ch_looping, name="ch_loop", version="1")]
        ) as rt:
            await rt.start("ch_loop", 0, id="loop")
            await until_recorded(rt, "loop", EventWaitStarted)
        v2 = WorkflowDef(ch_looping, name="ch_loop", version="2")
        async with Runtime(db_path, workflows=[v2]) as rt:
            await rt.send_event("loop", "go", None)
            assert await rt.handle("loop").result(timeout=10) == [1, "1"]
            assert (await rt.status("loop")).version == "1"

    async def test_a_number_names_the_same_version_as_its_text(self, db_path):
        """start/child/continue_as_new take version=2 for "2", as @workflow(version=2) does.

        Found by a new-user run: @workflow(version=2) registered "2", but start(version=2)
        raised "no registered version 2; known versions: '1', '2'".
        """

        async def ch_numbered(n: int) -> list[Any]:
            if n == 0:
                flowcore.continue_as_new(1, version=2)  # type: ignore[arg-type]
            if n == 2:
                return [await flowcore.child("ch_num", 1, id="num-kid", version=1)]  # type: ignore[arg-type]
            return [n, flowcore.info().version]

        defs = [WorkflowDef(ch_numbered, name="ch_num", version=v) for v in (1, 2)]  # type: ignore[arg-type]
        assert [d.version for d in defs] == ["1", "2"]
        async with Runtime(db_path, workflows=defs) as rt:
            hops = await (await rt.start("ch_num", 0, id="num-hop", version=1)).result(timeout=10)  # type: ignore[arg-type]
            kid = await (await rt.start("ch_num", 2, id="num-par", version=2)).result(timeout=10)  # type: ignore[arg-type]
            assert (await rt.status("num-kid")).version == "1"
        assert hops == [1, "2"]
        assert kid == [[1, "1"]]

    async def test_parent_reattaches_to_a_child_whose_version_was_dropped(self, db_path):
        """A parent recovered after a deploy that dropped its running child's version keeps
        waiting for that child (which replays on the latest code) instead of failing it.

        Found by a new-user run: the recovered parent looked the child's version up again,
        got UnknownVersionError and took it as the child's failure, while the child ran on and
        its result was lost to the parent.
        """

        async def ch_parent() -> str:
            return str(await flowcore.child("ch_order", "wait", id="kid-dropped", version="1"))

        parent = WorkflowDef(ch_parent, name="ch_parent", version="1")
        async with Runtime(db_path, workflows=[*order_versions("1", "2"), parent]) as rt:
            await rt.start(parent, id="par-dropped")
            await until_recorded(rt, "kid-dropped", EventWaitStarted)
        async with Runtime(db_path, workflows=[*order_versions("2"), parent]) as rt:
            await rt.send_event("kid-dropped", "ship", None)
            result = await rt.handle("par-dropped").result(timeout=10)
        assert result == str({"version": "1", "steps": "reserve+ship"})

    async def test_a_recorded_timer_keeps_its_journaled_deadline_on_new_code(self, db_path):
        """A timer an instance started keeps the deadline its journal recorded when a deploy
        changes the duration the code asks for (the journal wins, as for every recorded step).

        Found by a new-user run: v1 slept an hour; after a deploy whose code sleeps a second,
        the in-flight hour-long timer fired a second after the start, while an evicted
        instance (woken by the journal's deadline) would have slept the hour.
        """

        async def ch_nap_long() -> str:
            await flowcore.sleep(3600)
            await flowcore.wait_event("never", timeout=3600)
            return "slept"

        async def ch_nap_short() -> str:
            await flowcore.sleep(1)
            await flowcore.wait_event("never", timeout=1)
            return "slept"

        clock = VirtualClock()
        long_def = WorkflowDef(ch_nap_long, name="ch_nap", version="1")
        async with Runtime(db_path, workflows=[long_def], clock=clock) as rt:
            await rt.start("ch_nap", id="nap")
            await until_recorded(rt, "nap", TimerScheduled)
        short_def = WorkflowDef(ch_nap_short, name="ch_nap", version="2")
        async with Runtime(db_path, workflows=[short_def], clock=clock) as rt:
            assert await rt.handle("nap").result(timeout=10) == "slept"  # the clock jumps
            st = await rt.status("nap")
        assert (st.updated_at - st.created_at).total_seconds() >= 3600
        # and a wait's timeout recorded before the deploy: the journal's again, not the code's
        async with Runtime(db_path, workflows=[long_def], clock=clock) as rt:
            await rt.start("ch_nap", id="wait")
            await until_recorded(rt, "wait", TimerScheduled)
            clock.advance(3600)
            await until_recorded(rt, "wait", EventWaitStarted)
        async with Runtime(db_path, workflows=[short_def], clock=clock) as rt:
            waited_from = clock.now()
            assert await rt.handle("wait").result(timeout=10) == "slept"
        assert clock.now() - waited_from >= 3600 - 1

    async def test_unknown_version_is_a_clear_error(self, db_path):
        """start() of an unregistered version raises UnknownVersionError listing known ones."""
        async with Runtime(db_path, workflows=order_versions("1", "2")) as rt:
            with pytest.raises(UnknownVersionError, match=r"'9'.*known versions: '1', '2'"):
                await rt.start("ch_order", "now", id="v9", version="9")
            assert await rt.list() == []

    async def test_continue_as_new_to_an_unknown_version_fails_clearly(self, db_path):
        """continue_as_new(version=...) of an unregistered version fails the workflow with
        UnknownVersionError: the next run never silently runs the latest code instead."""

        @workflow(name="ch_hops", version="1")
        async def ch_hops(n: int) -> str:
            if n == 0:
                flowcore.continue_as_new(1, version="9")
            return flowcore.info().version

        async with Runtime(db_path, workflows=[ch_hops]) as rt:
            handle = await rt.start(ch_hops, 0, id="hop9")
            with pytest.raises(WorkflowFailedError) as caught:
                await handle.result(timeout=10)
            st = await rt.status("hop9")
        assert caught.value.failure.short_type == "UnknownVersionError"
        assert "'9'" in caught.value.failure.message
        assert (st.status, st.version, st.input) == (WorkflowState.FAILED, "1", 0)

    async def test_unknown_child_version_fails_the_parent_clearly(self, db_path):
        """child() of an unregistered version fails in the parent with UnknownVersionError."""

        @workflow
        async def ch_asks_v9() -> str:
            try:
                await flowcore.child("ch_order", "now", id="kid-v9", version="9")
            except WorkflowFailedError as exc:
                return f"{exc.failure.short_type}: {exc.failure.message}"
            return "started"

        async with Runtime(db_path, workflows=[*order_versions("1", "2"), ch_asks_v9]) as rt:
            message = await (await rt.start(ch_asks_v9)).result(timeout=10)
        assert message.startswith("UnknownVersionError:")
        assert "'9'" in message
