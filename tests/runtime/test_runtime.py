"""End to end on the embedded SQLite journal: start, results, status, errors, retries, logs."""

from __future__ import annotations

import asyncio
import enum
import sqlite3
import threading
import types
import uuid
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import NamedTuple

import anyio
import pytest
from structlog.testing import capture_logs

import flowcore
from flowcore import (
    ActivityError,
    ActivityTimeoutError,
    InvalidArgumentError,
    JournalCorruptError,
    JournalLockedError,
    NonRetryableError,
    PayloadError,
    RegistrationError,
    RetryPolicy,
    Runtime,
    UnknownVersionError,
    WorkflowAlreadyExistsError,
    WorkflowFailedError,
    WorkflowFinishedError,
    WorkflowNotFoundError,
    WorkflowState,
    activity,
    workflow,
)
from flowcore.engine.events import (
    ActivityAttemptFailed,
    ActivityCompleted,
    ActivityScheduled,
    WorkflowCompleted,
    WorkflowStarted,
)


@dataclass
class Guarded:
    """Encodes fine (only init fields are encoded) but cannot be deep-copied (the lock)."""

    name: str
    lock: threading.Lock = field(default_factory=threading.Lock, init=False)


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Point(NamedTuple):
    x: int
    y: int


@dataclass(frozen=True)
class Parcel:
    id: uuid.UUID
    color: Color
    weight: Decimal
    shipped: date
    seen: datetime
    path: list[Point]


@activity
def add(a: int, b: int) -> int:
    return a + b


DOUBLED: list[int] = []


@activity
async def double(x: int) -> int:
    DOUBLED.append(x)
    return 2 * x


@workflow
async def arith(n: int) -> int:
    s = await add(n, 1)
    return await double(s)


class TestStartAndResult:
    async def test_chain_of_sync_and_async_activities(self, db_path):
        """A workflow chaining a sync and an async activity returns their combined result."""
        async with Runtime(db_path) as rt:
            handle = await rt.start(arith, 4)
            assert await handle.result(timeout=10) == 10

    async def test_start_by_name_and_generated_id(self, db_path):
        """Starting by registered name works and generates a unique id."""
        async with Runtime(db_path) as rt:
            h1 = await rt.start("arith", 1)
            h2 = await rt.start("arith", 2)
            assert h1.id != h2.id
            assert [await h1.result(timeout=10), await h2.result(timeout=10)] == [4, 6]

    async def test_gather_over_activities_and_sub_coroutines(self, db_path):
        """gather accepts activity calls and sub-coroutines and keeps argument order."""

        async def pipeline(i: int) -> int:
            a = await add(i, 100)
            return await double(a)

        @workflow
        async def fan(n: int) -> list[int]:
            firsts = await flowcore.gather(*(double(i) for i in range(n)))
            pipes = await flowcore.gather(*(pipeline(i) for i in range(n)))
            return firsts + pipes

        async with Runtime(db_path) as rt:
            result = await (await rt.start(fan, 5)).result(timeout=10)
        assert result == [0, 2, 4, 6, 8, 200, 202, 204, 206, 208]

    async def test_business_objects_round_trip(self, db_path):
        """Dataclasses, enums, NamedTuples, Decimals, dates and UUIDs round-trip by type hints."""
        parcel = Parcel(
            id=uuid.uuid4(),
            color=Color.BLUE,
            weight=Decimal("1.25"),
            shipped=date(2026, 1, 2),
            seen=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
            path=[Point(1, 2), Point(3, 4)],
        )

        @activity
        def inspect_parcel(p: Parcel) -> Parcel:
            assert isinstance(p.color, Color)
            assert isinstance(p.path[0], Point)
            return p

        @workflow
        async def ship(p: Parcel) -> Parcel:
            assert isinstance(p.id, uuid.UUID)
            return await inspect_parcel(p)

        async with Runtime(db_path) as rt:
            assert await (await rt.start(ship, parcel)).result(timeout=10) == parcel

    async def test_result_survives_reopen(self, db_path):
        """A finished workflow's result is read back from the journal by a new runtime."""
        async with Runtime(db_path) as rt:
            await (await rt.start(arith, 1, id="w")).result(timeout=10)
        async with Runtime(db_path) as rt:
            assert await rt.handle("w").result(timeout=10) == 4


class TestStatusListHistory:
    async def test_inspecting_a_runtime_never_opened_says_how_to_open_it(self, db_path):
        """status(), list(), history() and result() of a new runtime say to open it (and how
        in a web app), as start() does; they said "journal ... is not open"."""
        rt = Runtime(db_path)
        calls = [rt.status("x"), rt.list(), rt.history("x"), rt.result("x")]
        for call in calls:
            with pytest.raises(flowcore.FlowcoreError) as info:
                await call
            assert str(info.value).startswith("the runtime is new; use 'async with Runtime(...)'")
            assert "lifespan=flowcore.lifespan(runtime)" in str(info.value)

    async def test_status_of_completed_workflow(self, db_path):
        """status() reports name, version, state, output and timestamps."""
        async with Runtime(db_path) as rt:
            await (await rt.start(arith, 1, id="s1")).result(timeout=10)
            st = await rt.status("s1")
        assert (st.id, st.name, st.version, st.status) == (
            "s1",
            "arith",
            "1",
            WorkflowState.COMPLETED,
        )
        assert st.output == 4
        assert st.current_activity is None
        assert st.created_at <= st.updated_at

    async def test_current_activity_while_waiting(self, db_path):
        """status().current_activity names the activity the workflow waits on."""
        gate = anyio.Event()

        @activity
        async def slow_step() -> None:
            await gate.wait()

        @workflow
        async def waits() -> None:
            await slow_step()

        async with Runtime(db_path) as rt:
            await rt.start(waits, id="c1")

            async def running() -> bool:
                return (await rt.status("c1")).current_activity == "slow_step"

            from tests.helpers import assert_eventually

            await assert_eventually(running)
            gate.set()
            await rt.handle("c1").result(timeout=10)

    async def test_list_filters_by_name_and_status(self, db_path):
        """list() filters by workflow name and state and respects the limit."""

        @workflow
        async def other() -> None:
            return None

        async with Runtime(db_path) as rt:
            for i in range(3):
                await (await rt.start(arith, i, id=f"a{i}")).result(timeout=10)
            await (await rt.start(other, id="o")).result(timeout=10)
            assert {s.id for s in await rt.list(name="arith")} == {"a0", "a1", "a2"}
            assert len(await rt.list(status=WorkflowState.COMPLETED)) == 4
            assert len(await rt.list(limit=2)) == 2
            assert await rt.list(status="failed") == []

    async def test_history_records_every_step(self, db_path):
        """history() lists start, schedules, completions and the end, in order."""
        async with Runtime(db_path) as rt:
            await (await rt.start(arith, 1, id="h")).result(timeout=10)
            events = await rt.history("h")
        assert [type(e) for e in events] == [
            WorkflowStarted,
            ActivityScheduled,
            ActivityCompleted,
            ActivityScheduled,
            ActivityCompleted,
            WorkflowCompleted,
        ]
        assert [e.step for e in events if isinstance(e, ActivityScheduled)] == [1, 2]

    async def test_unknown_id(self, db_path):
        """status, history and result of an unknown id raise WorkflowNotFoundError."""
        async with Runtime(db_path) as rt:
            with pytest.raises(WorkflowNotFoundError, match="nope"):
                await rt.status("nope")
            with pytest.raises(WorkflowNotFoundError):
                await rt.history("nope")
            with pytest.raises(WorkflowNotFoundError):
                await rt.handle("nope").result(timeout=1)


class TestBadInput:
    async def test_duplicate_id_is_refused(self, db_path):
        """Starting an existing id raises WorkflowAlreadyExistsError naming the id."""
        async with Runtime(db_path) as rt:
            await rt.start(arith, 1, id="dup")
            with pytest.raises(WorkflowAlreadyExistsError, match="dup"):
                await rt.start(arith, 2, id="dup")
            assert await rt.handle("dup").result(timeout=10) == 4

    async def test_duplicate_id_of_finished_workflow_after_reopen(self, db_path):
        """A finished instance's id stays taken after a restart."""
        async with Runtime(db_path) as rt:
            await (await rt.start(arith, 1, id="dup")).result(timeout=10)
        async with Runtime(db_path) as rt:
            with pytest.raises(WorkflowAlreadyExistsError):
                await rt.start(arith, 2, id="dup")

    async def test_duplicate_start_racing_requests_leaves_runtime_healthy(self, db_path):
        """A duplicate start of a finished id runs nothing; requests racing it see the old one.

        The start's first step is journaled with it in one append: until the journal refuses
        the id, events and cancellations sent to that id wait instead of being journaled
        against the stale history (which would stop the runtime).
        """
        async with Runtime(db_path) as rt:
            assert await (await rt.start(arith, 1, id="dup2")).result(timeout=10) == 4
        calls_before = len(DOUBLED)
        async with Runtime(db_path) as rt:
            outcomes = await asyncio.gather(
                rt.start(arith, 2, id="dup2"),
                rt.send_event("dup2", "go", 1),
                rt.cancel("dup2"),
                return_exceptions=True,
            )
            assert isinstance(outcomes[0], WorkflowAlreadyExistsError)
            assert all(isinstance(o, WorkflowFinishedError) for o in outcomes[1:]), outcomes
            assert len(DOUBLED) == calls_before  # the refused run dispatched no activity
            assert (await rt.status("dup2")).status == "completed"
            assert await (await rt.start(arith, 3)).result(timeout=10) == 8  # still healthy

    async def test_result_racing_a_refused_duplicate_start_gives_the_finished_one(self, db_path):
        """result() asked while a duplicate start of a finished id is in flight does not hang.

        The refused start's instance is in memory until the journal refuses the id; result()
        used to wait on it, and it never ends.
        """
        async with Runtime(db_path) as rt:
            assert await (await rt.start(arith, 1, id="dup3")).result(timeout=10) == 4
            outcomes = await asyncio.gather(
                rt.start(arith, 2, id="dup3"),
                rt.handle("dup3").result(timeout=5),
                rt.result("dup3", timeout=5),
                return_exceptions=True,
            )
            assert isinstance(outcomes[0], WorkflowAlreadyExistsError)
            assert outcomes[1:] == [4, 4]

    async def test_if_exists_return_gives_the_existing_instance(self, db_path):
        """if_exists='return' returns a handle to the running instance instead of failing."""
        async with Runtime(db_path) as rt:
            h1 = await rt.start(arith, 1, id="same")
            h2 = await rt.start(arith, 99, id="same", if_exists="return")
            assert h2.id == h1.id
            assert await h2.result(timeout=10) == 4

    @pytest.mark.parametrize("if_exists", ["return", "error"])
    async def test_a_start_racing_an_uncommitted_start_answers_after_its_commit(
        self, db_path, if_exists
    ):
        """A second start of an id whose first start is still committing waits for that commit.

        Before, it returned (or raised WorkflowAlreadyExistsError) at once: its caller was
        acknowledged while nothing was durable, and status(id) right after said not found
        (the web API's POST with if_exists='return' answered 404).
        """
        async with Runtime(db_path) as rt:
            first = asyncio.ensure_future(rt.start(arith, 1, id="racing"))
            await asyncio.sleep(0)  # the first start is in memory, its commit not yet done
            try:
                await rt.start(arith, 2, id="racing", if_exists=if_exists)
            except WorkflowAlreadyExistsError:
                assert if_exists == "error"
            assert (await rt.status("racing")).input == 1
            assert await (await first).result(timeout=10) == 4

    @pytest.mark.parametrize("if_exists", ["Return", "ignore", "", None])
    async def test_unknown_if_exists_is_refused_before_anything_is_written(
        self, db_path, if_exists
    ):
        """A misspelt if_exists is an InvalidArgumentError, not read as "error" or "return".

        Before, any value but "return" silently meant "error", for a new id and an existing one.
        """
        async with Runtime(db_path) as rt:
            await rt.start(arith, 1, id="taken")
            for wid in ("taken", "fresh"):
                with pytest.raises(InvalidArgumentError, match="if_exists"):
                    await rt.start(arith, 2, id=wid, if_exists=if_exists)
            with pytest.raises(WorkflowNotFoundError):
                await rt.status("fresh")

    @pytest.mark.parametrize("kind", ["activity", "plain function", "name"])
    def test_workflows_option_takes_only_workflows(self, db_path, kind):
        """Runtime(workflows=[...]) given an activity, an undecorated function or a name says
        what it needs (before: AttributeError 'ActivityDef' object has no attribute 'version').
        """

        async def plain(x: int) -> int:
            return x

        given = {"activity": double, "plain function": plain, "name": "arith"}[kind]
        with pytest.raises(RegistrationError, match="@workflow"):
            Runtime(db_path, workflows=[arith, given])

    async def test_unknown_workflow_lists_known_ones(self, db_path):
        """An unknown workflow name raises RegistrationError listing the registered names."""
        async with Runtime(db_path) as rt:
            with pytest.raises(RegistrationError, match="arith"):
                await rt.start("no_such_workflow", 1)

    async def test_unknown_version(self, db_path):
        """Asking for a version no code provides raises UnknownVersionError."""
        async with Runtime(db_path) as rt:
            with pytest.raises(UnknownVersionError, match="'7'"):
                await rt.start(arith, 1, version="7")

    async def test_unencodable_payload_writes_nothing(self, db_path):
        """An unencodable payload raises PayloadError naming the path; nothing is written."""
        async with Runtime(db_path) as rt:
            with pytest.raises(PayloadError) as info:
                await rt.start(arith, {"ok": 1, "bad": [1, object()]}, id="p")
            assert info.value.path == "$.bad[1]"
            assert await rt.list() == []
            with pytest.raises(WorkflowNotFoundError):
                await rt.status("p")

    async def test_not_a_journal_is_left_untouched(self, tmp_path):
        """A file that is not a flowcore journal raises JournalCorruptError and is not modified."""
        path = tmp_path / "notes.db"
        path.write_bytes(b"hello, this is not sqlite at all\n" * 20)
        before = path.read_bytes()
        with pytest.raises(JournalCorruptError):
            async with Runtime(path):
                pass
        assert path.read_bytes() == before

    async def test_other_sqlite_database_is_left_untouched(self, tmp_path):
        """Another application's SQLite database raises JournalCorruptError and stays as it was."""
        path = tmp_path / "app.db"
        with closing(sqlite3.connect(path)) as conn, conn:
            conn.execute("CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT)")
        before = path.read_bytes()
        with pytest.raises(JournalCorruptError):
            async with Runtime(path):
                pass
        assert path.read_bytes() == before

    async def test_second_runtime_on_same_file_is_refused(self, db_path):
        """Opening a database another runtime owns raises JournalLockedError naming the owner."""
        async with Runtime(db_path):
            with pytest.raises(JournalLockedError, match="pid"):
                async with Runtime(db_path):
                    pass

    async def test_workflow_must_be_async(self):
        """Decorating a plain function as a workflow is a RegistrationError that says why."""
        with pytest.raises(RegistrationError, match="async def"):

            @workflow
            def not_async(x: int) -> int:  # type: ignore[arg-type]
                return x

    @pytest.mark.parametrize("source", ["*, x: int = 1", "*, x: int", "**kwargs: int",
                                        "x: int = 1, *, y: int"])  # fmt: skip
    def test_workflow_must_take_its_payload_positionally(self, source):
        """A workflow the runtime cannot call as fn(payload) is refused when it is defined.

        Before, it registered, and every start raised a bare TypeError ("takes 0 positional
        arguments but 1 was given") from the runtime, a 500 over HTTP.
        """
        namespace: dict = {}
        exec(f"async def kw_flow({source}) -> int:\n    return 1", namespace)  # noqa: S102
        with pytest.raises(RegistrationError, match=r"kw_flow.*payload"):
            workflow(namespace["kw_flow"])


class TestFailuresAndRetries:
    async def test_activity_error_is_catchable_for_compensation(self, db_path):
        """An activity failure raises ActivityError with the original type and message."""
        compensated = []

        @activity
        def explode(x: int) -> int:
            raise KeyError(f"missing {x}")

        @activity
        def undo(x: int) -> None:
            compensated.append(x)

        @workflow
        async def saga(x: int) -> str:
            try:
                await explode(x)
            except ActivityError as exc:
                await undo(x)
                return f"{exc.failure.short_type}: {exc.failure.message}"
            return "ok"

        async with Runtime(db_path) as rt:
            assert await (await rt.start(saga, 3)).result(timeout=10) == "KeyError: 'missing 3'"
        assert compensated == [3]

    async def test_activity_mutating_its_argument_changes_nothing_outside(self, db_path):
        """Each attempt gets its own copy of the arguments; the workflow's objects are untouched.

        Otherwise the workflow's value would differ from what a replay (which does not run the
        activity) computes, and a retry would see the failed attempt's changes.
        """
        seen: list[list[str]] = []

        @activity(retry=RetryPolicy(max_attempts=2, initial_interval=0.01))
        def scribble(items: list[str], tags: dict[str, list[str]]) -> int:
            seen.append(list(items))
            items.append("mutated")
            tags["k"].append("mutated")
            if len(seen) == 1:
                raise RuntimeError("first attempt fails after mutating")
            return len(items)

        @workflow
        async def keeps_its_list(n: int) -> list[object]:
            items = ["a"] * n
            tags = {"k": ["t"]}
            count = await scribble(items, tags=tags)
            return [count, items, tags]

        async with Runtime(db_path) as rt:
            result = await (await rt.start(keeps_its_list, 2)).result(timeout=10)
        assert result == [3, ["a", "a"], {"k": ["t"]}]
        assert seen == [["a", "a"], ["a", "a"]]  # the retry saw the original arguments

    async def test_arguments_that_cannot_be_deep_copied_still_reach_the_activity(self, db_path):
        """A value that encodes but cannot be deep-copied is passed decoded from the journal.

        It used to crash the activity runner, which stopped the whole runtime (and again on
        every restart, as recovery replays the same call).
        """

        @activity
        def describe(g: Guarded, tags: dict[str, int]) -> str:
            return f"{type(g).__name__}:{g.name}:{sorted(tags.items())}"

        @activity
        def plus_one(x: int) -> int:
            return x + 1

        @workflow
        async def uncopyable(name: str) -> list[object]:
            text = await describe(Guarded(name), types.MappingProxyType({"a": 1}))
            return [text, await plus_one(1)]

        async with Runtime(db_path) as rt:
            result = await (await rt.start(uncopyable, "x")).result(timeout=10)
            assert result == ["Guarded:x:[('a', 1)]", 2]
            assert await (await rt.start(uncopyable, "y")).result(timeout=10) == [
                "Guarded:y:[('a', 1)]",
                2,
            ]

    async def test_failed_workflow_raises_workflow_failed_error(self, db_path):
        """An uncaught error fails the workflow; result() raises WorkflowFailedError with it."""

        @activity
        def explode() -> None:
            raise ValueError("card declined")

        @workflow
        async def doomed() -> None:
            await explode()

        async with Runtime(db_path) as rt:
            h = await rt.start(doomed, id="f")
            with pytest.raises(WorkflowFailedError) as info:
                await h.result(timeout=10)
            assert info.value.failure.is_caused_by(ActivityError)
            assert info.value.failure.is_caused_by(ValueError)
            assert "card declined" in str(info.value)
            st = await rt.status("f")
            assert st.status is WorkflowState.FAILED
            assert "card declined" in (st.error or "")

    async def test_retries_are_journaled(self, db_path):
        """A flaky activity is retried by its policy and each failed attempt is journaled."""
        attempts = []

        @activity(retry=RetryPolicy(max_attempts=4, initial_interval=0.001, backoff=1.0))
        def flaky() -> str:
            attempts.append(flowcore.activity_info().attempt)
            if len(attempts) < 3:
                raise ConnectionError("try again")
            return "ok"

        @workflow
        async def persistent() -> str:
            return await flaky()

        async with Runtime(db_path) as rt:
            assert await (await rt.start(persistent, id="r")).result(timeout=10) == "ok"
            events = await rt.history("r")
        assert attempts == [1, 2, 3]
        failed = [e for e in events if isinstance(e, ActivityAttemptFailed)]
        assert [e.attempt for e in failed] == [1, 2]
        assert all(e.failure.short_type == "ConnectionError" for e in failed)
        [done] = [e for e in events if isinstance(e, ActivityCompleted)]
        assert done.attempt == 3

    async def test_non_retryable_error_stops_retries(self, db_path):
        """NonRetryableError and the policy's non_retryable types fail at the first attempt."""
        calls = []

        @activity(
            retry=RetryPolicy(
                max_attempts=5, initial_interval=0.001, non_retryable=(PermissionError,)
            )
        )
        def forbidden(kind: str) -> None:
            calls.append(kind)
            if kind == "perm":
                raise PermissionError("no")
            raise NonRetryableError("bad request")

        @workflow
        async def strict(kind: str) -> int:
            try:
                await forbidden(kind)
            except ActivityError as exc:
                return exc.attempts
            return 0

        async with Runtime(db_path) as rt:
            assert await (await rt.start(strict, "perm")).result(timeout=10) == 1
            assert await (await rt.start(strict, "nre")).result(timeout=10) == 1
        assert calls == ["perm", "nre"]

    async def test_timeout_raises_activity_timeout_error(self, db_path):
        """An activity exceeding its timeout fails with ActivityTimeoutError in the workflow."""

        @activity(timeout=0.05)
        async def hangs() -> None:
            await anyio.sleep_forever()

        @workflow
        async def impatient() -> str:
            try:
                await hangs()
            except ActivityTimeoutError:
                return "timed out"
            return "finished"

        async with Runtime(db_path) as rt:
            assert await (await rt.start(impatient)).result(timeout=10) == "timed out"

    async def test_foreign_await_fails_workflow_with_misuse_error(self, db_path):
        """Awaiting asyncio.sleep in a workflow fails it with a message naming the fix."""
        import asyncio

        @workflow
        async def naughty() -> None:
            await asyncio.sleep(0.01)

        async with Runtime(db_path) as rt:
            with pytest.raises(WorkflowFailedError) as info:
                await (await rt.start(naughty)).result(timeout=10)
        assert info.value.failure.short_type == "WorkflowMisuseError"
        assert "flowcore.sleep()" in info.value.failure.message

    async def test_asyncio_gather_fails_workflow_and_runs_nothing(self, db_path):
        """asyncio.gather in a workflow: the misuse error names flowcore.gather; its tasks are
        cancelled before they start (no activity runs, no unretrieved exception is logged)."""
        import gc

        calls: list[int] = []

        @activity
        async def counted(x: int) -> int:
            calls.append(x)
            return x

        @workflow
        async def gathers_wrongly() -> list[int]:
            return await asyncio.gather(counted(1), counted(2))

        loop = asyncio.get_running_loop()
        reported: list[dict[str, object]] = []
        loop.set_exception_handler(lambda _, context: reported.append(context))
        try:
            async with Runtime(db_path) as rt:
                with pytest.raises(WorkflowFailedError) as info:
                    await (await rt.start(gathers_wrongly)).result(timeout=10)
            gc.collect()  # an unretrieved exception is reported when its future is collected
            await asyncio.sleep(0)
        finally:
            loop.set_exception_handler(None)
        assert "use flowcore.gather(...) instead of asyncio.gather()" in info.value.failure.message
        assert calls == []
        assert reported == []


class TestActivitiesOutsideWorkflows:
    async def test_plain_calls_just_run(self):
        """Outside a workflow a sync activity returns its value and an async one its coroutine."""
        assert add(2, 3) == 5
        assert await double(4) == 8

    async def test_idempotency_key_is_exposed(self, db_path):
        """activity_info() exposes workflow id, step and attempt as an idempotency key."""
        keys = []

        @activity
        def keyed() -> None:
            keys.append(flowcore.activity_info().idempotency_key)

        @workflow
        async def k() -> None:
            await keyed()
            await keyed()

        async with Runtime(db_path) as rt:
            await (await rt.start(k, id="wk")).result(timeout=10)
        assert keys == ["wk/1/1", "wk/2/1"]


class TestLogs:
    async def test_one_line_per_state_change(self, db_path):
        """Workflow and activity state changes are logged with ids, step and duration."""
        with capture_logs() as logs:
            async with Runtime(db_path) as rt:
                await (await rt.start(arith, 1, id="lg")).result(timeout=10)
        events = [(e["event"], e.get("step")) for e in logs if e.get("workflow_id") == "lg"]
        assert events == [
            ("workflow started", None),
            ("activity completed", 1),
            ("activity completed", 2),
            ("workflow completed", None),
        ] or sorted(events, key=str) == sorted(
            [
                ("workflow started", None),
                ("activity completed", 1),
                ("activity completed", 2),
                ("workflow completed", None),
            ],
            key=str,
        )
        act = next(e for e in logs if e["event"] == "activity completed")
        assert {"activity", "attempt", "duration_ms", "step"} <= act.keys()
