"""Golden journals: recorded histories replayed against the workflows defined here.

Each ``histories/*.json`` file holds one instance's journal rows (``kind``, ``data``, ``at``),
written by ``make_histories.py`` with :func:`flowcore.engine.events.encode_event`. The files pin
two contracts at once: what the engine does with a recorded history (exact commands, or the exact
NondeterminismError), and the journal's wire format (an event kind or field renamed by accident
no longer reproduces the files byte for byte).

``histories/legacy/*.json`` are the same histories as journaled before ``activity_scheduled``
rows carried an ``op``: old journals must keep decoding and replaying exactly like new ones.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import flowcore
import flowcore.testing
from flowcore import (
    ActivityError,
    NondeterminismError,
    NonRetryableError,
    RetryPolicy,
    WorkflowCanceledError,
    WorkflowDef,
    WorkflowFailedError,
    activity,
    workflow,
)
from flowcore._definitions import default_registry
from flowcore.engine.commands import (
    CancelWorkflow,
    Command,
    CompleteWorkflow,
    ContinueAsNew,
    FailWorkflow,
    ScheduleActivity,
    StartChild,
    StartTimer,
    WaitForEvent,
)
from flowcore.engine.events import (
    EVENT_TYPES,
    ActivityAttemptFailed,
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    CancelRequested,
    ChildCompleted,
    ChildFailed,
    ChildScheduled,
    CustomStatusSet,
    Event,
    EventReceived,
    EventWaitStarted,
    TimerFired,
    TimerScheduled,
    WorkflowCanceled,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowParked,
    WorkflowResumed,
    WorkflowStarted,
    WorkflowSuspended,
    WorkflowTerminated,
    decode_event,
    encode_event,
)
from flowcore.engine.executor import WorkflowExecutor

HISTORIES = Path(__file__).parent / "histories"
LEGACY = HISTORIES / "legacy"
"""The golden histories as journaled before ``activity_scheduled`` rows had an ``op``."""
T0 = 1_700_000_000.0
"""When every golden history starts (make_histories.T0)."""

# -- the code the golden histories belong to -----------------------------------------------


@dataclass(frozen=True)
class Order:
    sku: str
    qty: int


@activity(name="lookup_price")
def lookup_price(sku: str) -> int:
    return 25 if sku == "mug" else 10


@activity(name="reserve_stock")
def reserve_stock(sku: str, qty: int = 1) -> str:
    return f"R-{sku}-{qty}"


@activity(name="charge_card")
def charge_card(amount: int) -> str:
    return f"ch_{amount}"


@activity(name="fetch_page")
def fetch_page(url: str) -> str:
    return f"the page at {url}"


@activity(name="count_words")
def count_words(text: str) -> int:
    return len(text.split())


@activity(name="publish_report")
def publish_report(counts: dict[str, int]) -> str:
    return f"report-{sum(counts.values())}"


@activity(name="book_flight")
def book_flight(trip: str) -> str:
    return f"FL-{trip}"


@activity(name="book_hotel")
def book_hotel(trip: str) -> str:
    return f"HT-{trip}"


@activity(name="cancel_flight")
def cancel_flight(booking: str) -> None:
    return None


@activity(name="pull_rows", retry=RetryPolicy(max_attempts=5))
def pull_rows(source: str) -> list[int]:
    return [len(source)]


@activity(name="load_rows")
def load_rows(rows: list[int]) -> int:
    return len(rows)


@activity(name="render_pdf", timeout=30.0, retry=RetryPolicy(max_attempts=3))
def render_pdf(title: str) -> str:
    return f"{title}.pdf"


@workflow(name="checkout")
async def checkout(order: Order) -> str:
    """A chain: each activity uses the previous one's result."""
    price = await lookup_price(order.sku)
    reservation = await reserve_stock(order.sku, qty=order.qty)
    receipt = await charge_card(price * order.qty)
    return f"{reservation}/{receipt}"


async def page_words(url: str) -> int:
    text = await fetch_page(url)
    return await count_words(text)


@workflow(name="word_counts")
async def word_counts(urls: list[str]) -> dict[str, int]:
    """Fan-out of two-step pipelines (sub-coroutines), then fan-in to one report."""
    counts = await flowcore.gather(*(page_words(url) for url in urls))
    report = dict(zip(urls, counts, strict=True))
    await publish_report(report)
    return report


@workflow(name="book_trip")
async def book_trip(trip: str) -> str:
    """A saga: when the hotel cannot be booked, cancel the flight."""
    flight = await book_flight(trip)
    try:
        hotel = await book_hotel(trip)
    except ActivityError as exc:
        await cancel_flight(flight)
        return f"cancelled {flight}: {exc.failure}"
    return f"{flight}+{hotel}"


@workflow(name="nightly_sync")
async def nightly_sync(source: str) -> int:
    """A chain whose first activity needed retries."""
    rows = await pull_rows(source)
    return await load_rows(rows)


@workflow(name="render_report")
async def render_report(title: str) -> str:
    """A workflow that lets an activity's timeout fail it."""
    return await render_pdf(title)


@workflow(name="ship_order")
async def ship_order(order: Order) -> str:
    """The current code: it charges before it reserves (the journal recorded the other order)."""
    price = await lookup_price(order.sku)
    receipt = await charge_card(price * order.qty)
    reservation = await reserve_stock(order.sku, qty=order.qty)
    return f"{reservation}/{receipt}"


async def _ship_order_recorded(order: Order) -> str:
    price = await lookup_price(order.sku)
    reservation = await reserve_stock(order.sku, qty=order.qty)
    receipt = await charge_card(price * order.qty)
    return f"{reservation}/{receipt}"


SHIP_ORDER_RECORDED = WorkflowDef(_ship_order_recorded, name="ship_order", version="1")
"""The code that wrote ``nondeterministic.json`` (not registered: the registry has the new code)."""


@dataclass(frozen=True)
class Expense:
    id: str
    amount: int


@dataclass(frozen=True)
class Decision:
    approved: bool
    by: str


@activity(name="submit_expense")
def submit_expense(expense: Expense) -> str:
    return f"EXP-{expense.id}"


@activity(name="pay_expense")
def pay_expense(ref: str, amount: int) -> str:
    return f"paid {amount} on {ref}"


@activity(name="escalate_expense")
def escalate_expense(ref: str) -> str:
    return f"{ref} escalated"


@workflow(name="approve_expense")
async def approve_expense(expense: Expense) -> str:
    """An approval raced against a one-day reminder timer; the status shows where it stands."""
    ref = await submit_expense(expense)
    flowcore.set_status({"waiting_for": "decision", "ref": ref})
    index, decision = await flowcore.first(
        flowcore.wait_event("decision", type=Decision, timeout=timedelta(days=7)),
        flowcore.sleep(timedelta(days=1)),
    )
    if index == 1 or decision is None:
        flowcore.set_status({"waiting_for": "manager", "ref": ref})
        return await escalate_expense(ref)
    flowcore.set_status({"decided_by": decision.by, "ref": ref})
    if not decision.approved:
        return f"{ref} rejected by {decision.by}"
    return await pay_expense(ref, expense.amount)


@activity(name="provision_vm")
def provision_vm(host: str) -> str:
    return f"vm-{host}"


@activity(name="release_vm")
def release_vm(vm: str) -> None:
    return None


async def _provision_one(host: str, ready: list[str]) -> str:
    vm = await provision_vm(host)
    ready.append(vm)
    return vm


@workflow(name="provision_fleet")
async def provision_fleet(hosts: list[str]) -> list[str]:
    """A fan-out that, when canceled, releases the machines already provisioned."""
    ready: list[str] = []
    try:
        return await flowcore.gather(*(_provision_one(host, ready) for host in hosts))
    except WorkflowCanceledError:
        for vm in ready:
            await release_vm(vm)
        raise


@dataclass(frozen=True)
class Thumb:
    path: str
    width: int


@activity(name="resize_image")
def resize_image(path: str, width: int) -> Thumb:
    if path.endswith(".gif"):
        raise NonRetryableError(f"cannot resize animated {path}")
    stem, _, ext = path.rpartition(".")
    return Thumb(f"{stem}-{width}.{ext}", width)


@workflow(name="make_thumbnail")
async def make_thumbnail(path: str) -> Thumb:
    """The child workflow: one activity."""
    return await resize_image(path, 128)


async def _thumbnail_or_reason(path: str) -> str:
    try:
        thumb = await flowcore.child(make_thumbnail, path)
    except WorkflowCanceledError as exc:
        return f"canceled: {exc}"
    except WorkflowFailedError as exc:
        return f"failed: {exc.failure.message}"
    return thumb.path


@workflow(name="build_gallery")
async def build_gallery(paths: list[str]) -> dict[str, str]:
    """A parent: one child workflow per image, their failures and cancellations reported."""
    results = await flowcore.gather(*(_thumbnail_or_reason(path) for path in paths))
    return dict(zip(paths, results, strict=True))


@dataclass(frozen=True)
class Watch:
    url: str
    checks: int


@activity(name="check_site")
def check_site(url: str, check: int) -> bool:
    return check < 1  # healthy the first time, down the second


@workflow(name="watch_site")
async def watch_site(watch: Watch) -> int:
    """A monitor loop that continues as new after each healthy check instead of growing."""
    flowcore.set_status({"checks": watch.checks})
    if await check_site(watch.url, watch.checks):
        await flowcore.sleep(60)
        flowcore.continue_as_new(Watch(watch.url, watch.checks + 1))
    return watch.checks


# -- loading --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Golden:
    """One golden history file."""

    workflow: str
    workflow_id: str
    rows: list[dict[str, Any]]
    events: list[Event]


def load(name: str, folder: Path = HISTORIES) -> Golden:
    """Read ``histories/<name>.json`` (or ``<folder>/<name>.json``) and decode its rows as the
    journal does."""
    raw = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
    events = [decode_event(r["kind"], json.dumps(r["data"]), r["at"]) for r in raw["events"]]
    return Golden(raw["workflow"], raw["workflow_id"], raw["events"], events)


def replay(
    golden: Golden, definition: WorkflowDef[Any, Any] | None = None, *, rows: int | None = None
) -> list[Command]:
    """Replay a golden history (its first ``rows`` rows) against its registered code."""
    return executor_after(golden, definition, rows=rows)[1]


def executor_after(
    golden: Golden, definition: WorkflowDef[Any, Any] | None = None, *, rows: int | None = None
) -> tuple[WorkflowExecutor, list[Command]]:
    """The executor that replayed a golden history (or its first ``rows`` rows), and its result."""
    started = golden.events[0]
    assert isinstance(started, WorkflowStarted)
    defn = definition or default_registry.for_replay(started.name, started.version)
    executor = WorkflowExecutor(defn, golden.workflow_id)
    return executor, executor.replay(golden.events[:rows])


def only(golden: Golden, kind: type[Any]) -> list[Any]:
    """The events of one kind in a golden history."""
    return [e for e in golden.events if isinstance(e, kind)]


def in_flight(step: int, op: str, defn: Any, *args: Any, **kwargs: Any) -> ScheduleActivity:
    """The command replay returns for an activity the journal shows scheduled and unfinished."""
    return ScheduleActivity(
        step=step,
        activity=defn,
        args=args,
        kwargs=kwargs,
        encoded_args=list(args),
        encoded_kwargs=kwargs or None,
        recorded=True,
        op=op,
    )


def recording_code(name: str) -> WorkflowDef[Any, Any] | None:
    """The code that wrote golden history ``name`` when it is not the registered one."""
    return SHIP_ORDER_RECORDED if name == "nondeterministic" else None


def recorded_ops(golden: Golden) -> dict[int, str]:
    """Step -> op of every activity_scheduled row."""
    return {e.step: e.op for e in golden.events if isinstance(e, ActivityScheduled)}


GOLDEN_FILES = sorted(p.stem for p in HISTORIES.glob("*.json"))
LEGACY_FILES = sorted(p.stem for p in LEGACY.glob("*.json"))

# -- the tests --------------------------------------------------------------------------------


class TestGoldenReplay:
    def test_chain_replays_to_its_result(self):
        """A finished chain replays to the completion it recorded."""
        assert replay(load("chain")) == [CompleteWorkflow(result="R-mug-2/ch_50")]

    @pytest.mark.parametrize(
        "name",
        [
            "chain",
            "fan_out",
            "compensation",
            "retried",
            "approval_timed_out",
            "approval_approved",
            "suspended",
            "child",
            "children",
            "continued_run2",
        ],
    )
    def test_completed_history_replays_to_its_recorded_result(self, name):
        """A completed history replays to the result its workflow_completed row holds."""
        golden = load(name)
        last = golden.events[-1]
        assert isinstance(last, WorkflowCompleted)
        assert replay(golden) == [CompleteWorkflow(result=last.result)]

    def test_fan_out_replays_out_of_order_completions(self):
        """Pipelines that finished in another order than they started replay to the same report."""
        report = {"https://a.example": 4, "https://b.example": 4, "https://c.example": 4}
        assert replay(load("fan_out")) == [CompleteWorkflow(result=report)]

    def test_fan_out_history_interleaves_pipelines(self):
        """The fan-out history really is out of order: the second page finished first."""
        golden = load("fan_out")
        outcomes = [e.step for e in golden.events if isinstance(e, ActivityCompleted)]
        assert outcomes == [2, 1, 4, 3, 6, 5, 7]

    def test_compensation_replays_the_caught_failure(self):
        """A recorded activity failure is raised again in the workflow, which compensates."""
        result = "cancelled FL-oslo: NonRetryableError: no rooms left in oslo"
        assert replay(load("compensation")) == [CompleteWorkflow(result=result)]

    def test_retried_activity_replays_to_its_result(self):
        """Failed attempts before a success replay to the recorded result."""
        assert replay(load("retried")) == [CompleteWorkflow(result=1)]

    def test_attempt_failures_are_ignored_by_replay(self):
        """Dropping the activity_attempt_failed rows changes nothing in the replay."""
        golden = load("retried")
        assert any(isinstance(e, ActivityAttemptFailed) for e in golden.events)
        kept = [e for e in golden.events if not isinstance(e, ActivityAttemptFailed)]
        without = Golden(golden.workflow, golden.workflow_id, [], kept)
        assert replay(without) == replay(golden)

    def test_timed_out_activity_fails_the_workflow(self):
        """An activity that timed out for good fails the workflow with the recorded cause."""
        golden = load("timed_out")
        [command] = replay(golden)
        assert isinstance(command, FailWorkflow)
        failure = command.failure
        assert failure.type_name == "flowcore.ActivityTimeoutError"
        assert failure.details == {"activity": "render_pdf", "step": 1, "attempts": 3}
        recorded = next(e for e in golden.events if isinstance(e, ActivityFailed))
        assert recorded.timed_out
        assert failure.cause == recorded.failure
        last = golden.events[-1]
        assert isinstance(last, WorkflowFailed)
        assert dataclasses.replace(failure, traceback="") == last.failure
        assert failure.message == (
            "activity 'render_pdf' (step 1) failed after 3 attempts: "
            "TimeoutError: activity 'render_pdf' exceeded its 30.0s timeout"
        )

    def test_unfinished_history_redispatches_in_flight_activities(self):
        """Steps scheduled but never finished come back as recorded commands, in step order."""
        assert replay(load("unfinished")) == [
            # ops name the pipeline (gather branch) and the call within it, not the arrival order
            in_flight(1, "1.1.1", fetch_page, "https://a.example"),
            in_flight(3, "1.3.1", fetch_page, "https://c.example"),
            in_flight(4, "1.2.2", count_words, "the page at https://b.example"),
        ]

    def test_nondeterministic_history_raises_at_the_reordered_step(self):
        """Code that charges before it reserves fails to replay a journal that reserved first."""
        with pytest.raises(NondeterminismError) as info:
            replay(load("nondeterministic"))
        err = info.value
        assert (err.workflow_id, err.workflow) == ("golden-nondeterministic", "ship_order")
        assert err.step == 2
        assert err.recorded == "activity 'reserve_stock'"
        assert err.attempted == "activity 'charge_card'"

    def test_nondeterministic_history_replays_with_the_recorded_code(self):
        """The code that wrote the journal replays it cleanly to its in-flight activity."""
        commands = replay(load("nondeterministic"), SHIP_ORDER_RECORDED)
        assert commands == [in_flight(3, "3", charge_card, 75)]

    def test_nondeterministic_history_records_where_it_was_parked(self):
        """The parked row names the same step and commands as the error replay raises."""
        golden = load("nondeterministic")
        parked = golden.events[-1]
        assert isinstance(parked, WorkflowParked)
        with pytest.raises(NondeterminismError) as info:
            replay(golden)
        assert parked.step == info.value.step
        assert info.value.recorded in parked.reason
        assert info.value.attempted in parked.reason

    @pytest.mark.parametrize("name", [n for n in GOLDEN_FILES if n != "nondeterministic"])
    def test_every_prefix_replays(self, name):
        """Recovery could meet any prefix of a history: each one replays without error."""
        golden = load(name)
        for cut in range(1, len(golden.events) + 1):
            replay(golden, rows=cut)


async def _checkout_then_notify(order: Order) -> str:
    """New code: one more activity after the three the finished history recorded."""
    price = await lookup_price(order.sku)
    reservation = await reserve_stock(order.sku, qty=order.qty)
    receipt = await charge_card(price * order.qty)
    await fetch_page(f"notify/{receipt}")
    return f"{reservation}/{receipt}"


async def _checkout_that_fails(order: Order) -> str:
    """New code: the same three activities, then a failure where the history completed."""
    await lookup_price(order.sku)
    await reserve_stock(order.sku, qty=order.qty)
    await charge_card(50)
    msg = "rejected"
    raise ValueError(msg)


async def _checkout_that_waits(order: Order) -> str:
    """New code: the same three activities, then a wait where the history completed."""
    await lookup_price(order.sku)
    await reserve_stock(order.sku, qty=order.qty)
    receipt = await charge_card(50)
    await flowcore.wait_event("confirm")
    return receipt


class TestRecordedEnd:
    """A history that ended (completed, failed, canceled) must end the same way on replay."""

    def variant(self, fn: Any) -> WorkflowDef[Any, Any]:
        return WorkflowDef(fn, name="checkout", version="1")

    def test_a_step_after_the_recorded_end_diverges(self):
        """Code that does more after the steps of a completed history is caught at that step."""
        with pytest.raises(NondeterminismError) as info:
            replay(load("chain"), self.variant(_checkout_then_notify))
        assert info.value.step == 4
        assert info.value.recorded == "the workflow's end (completed)"
        assert info.value.attempted == "activity 'fetch_page'"

    def test_another_end_diverges(self):
        """Code that fails where the history completed is caught."""
        with pytest.raises(NondeterminismError) as info:
            replay(load("chain"), self.variant(_checkout_that_fails))
        assert info.value.recorded == "the workflow's end (completed)"
        assert info.value.attempted.startswith("an end as failed (ValueError: rejected")

    def test_a_wait_after_the_recorded_end_diverges(self):
        """Code that waits for an event where the history completed is caught at the wait."""
        with pytest.raises(NondeterminismError) as info:
            replay(load("chain"), self.variant(_checkout_that_waits))
        assert (info.value.step, info.value.attempted) == (4, "wait_event('confirm')")

    def test_flowcore_testing_replay_catches_it(self):
        """The public helper raises it for exported rows."""
        rows = load("chain").rows
        flowcore.testing.replay(rows, checkout)  # the code that wrote it: clean
        with pytest.raises(NondeterminismError):
            flowcore.testing.replay(rows, self.variant(_checkout_then_notify))

    def test_flowcore_testing_replay_catches_a_renamed_workflow(self):
        """Recovery finds code by the recorded name: a renamed workflow diverges at its start."""
        rows = load("chain").rows
        renamed = WorkflowDef(checkout.fn, name="checkout_v2", version="1")
        with pytest.raises(NondeterminismError) as info:
            flowcore.testing.replay(rows, renamed)
        assert info.value.step == 0
        assert (info.value.recorded, info.value.attempted) == (
            "workflow 'checkout'",
            "workflow 'checkout_v2'",
        )

    def test_an_unfinished_prefix_still_takes_new_steps(self):
        """Without a recorded end, steps after the recorded ones are the run going on."""
        golden = load("chain")
        commands = replay(golden, self.variant(_checkout_then_notify), rows=len(golden.rows) - 1)
        assert [type(c) for c in commands] == [ScheduleActivity]
        assert commands[0].step == 4

    def test_a_terminated_history_needs_no_end_of_the_code(self):
        """A termination is not the code's doing: the code only has to agree up to it."""
        golden = load("chain")
        events = [*golden.events[:3], WorkflowTerminated(at=golden.events[2].at, reason="ops")]
        executor = WorkflowExecutor(checkout, golden.workflow_id)
        executor.replay(events)  # no NondeterminismError although the code never ended
        assert executor.done


class TestGoldenOps:
    def test_chain_ops_are_the_call_numbers(self):
        """In a plain chain the n-th command of the main task is op "n" (here also its step)."""
        assert recorded_ops(load("chain")) == {1: "1", 2: "2", 3: "3"}

    def test_fan_out_ops_follow_the_program_not_the_arrival_order(self):
        """Steps number commands as completions happened to arrive; ops name the pipeline
        (branch i of the gather issued as op 1) and the call within it, then the main task's
        next call is op 2."""
        assert recorded_ops(load("fan_out")) == {
            1: "1.1.1",  # fetch a
            2: "1.2.1",  # fetch b
            3: "1.3.1",  # fetch c
            4: "1.2.2",  # count b: b's page arrived first
            5: "1.1.2",  # count a
            6: "1.3.2",  # count c
            7: "2",  # publish_report
        }

    def test_other_commands_take_an_op_of_their_task(self):
        """set_status, first() and timers consume ops too: the payment after submit (1),
        set_status (2), the race (3), set_status (4) is op 5, whichever branch won."""
        assert recorded_ops(load("approval_timed_out")) == {1: "1", 6: "5"}
        assert recorded_ops(load("approval_approved")) == {1: "1", 6: "5"}

    @pytest.mark.parametrize("name", GOLDEN_FILES)
    def test_every_prefix_reissues_activities_with_their_recorded_op(self, name):
        """Whatever prefix recovery meets, each activity it dispatches (in flight or not yet
        journaled) has the op the live run journaled for that step."""
        golden = load(name)
        ops = recorded_ops(golden)
        for cut in range(1, len(golden.events) + 1):
            for command in replay(golden, recording_code(name), rows=cut):
                if isinstance(command, ScheduleActivity):
                    assert command.op == ops[command.step], (cut, command)


class TestLegacyJournals:
    """Journals written before activity_scheduled rows had an ``op`` still replay the same."""

    def test_every_golden_history_has_its_legacy_twin(self):
        """The legacy folder holds the pre-op journal of every golden history."""
        assert LEGACY_FILES == GOLDEN_FILES

    @pytest.mark.parametrize("name", LEGACY_FILES)
    def test_legacy_rows_are_the_golden_rows_without_op(self, name):
        """Adding op changed nothing else in the journal: same rows, kinds, data and times."""
        legacy, golden = load(name, LEGACY), load(name)
        assert not any("op" in row["data"] for row in legacy.rows)
        stripped = []
        for row in golden.rows:
            data = dict(row["data"])
            if row["kind"] == "activity_scheduled":
                assert isinstance(data.pop("op"), str)
            if row["kind"] == "child_scheduled":  # default child ids moved from step to op
                data.pop("child_id")
            stripped.append({**row, "data": data})
        legacy_rows = [
            {**row, "data": {k: v for k, v in row["data"].items() if k != "child_id"}}
            if row["kind"] == "child_scheduled"
            else row
            for row in legacy.rows
        ]

        def text(rows: list[Any]) -> str:
            return re.sub(r"golden-gallery:[0-9.]+", "golden-gallery:<child>", json.dumps(rows))

        assert text(stripped) == text(legacy_rows)

    @pytest.mark.parametrize("name", LEGACY_FILES)
    def test_legacy_rows_decode_with_an_empty_op(self, name):
        """A row without op decodes with op "" and re-encodes to its data plus an empty op."""
        legacy = load(name, LEGACY)
        for row, event in zip(legacy.rows, legacy.events, strict=True):
            kind, data = encode_event(event)
            assert kind == row["kind"]
            expected = dict(row["data"])
            if isinstance(event, ActivityScheduled):
                assert event.op == ""
                expected["op"] = ""
            assert data == json.dumps(expected, separators=(",", ":"), ensure_ascii=False)

    @pytest.mark.parametrize("name", LEGACY_FILES)
    def test_legacy_history_replays_like_the_golden_one(self, name):
        """Replay never reads a recorded op: every prefix of a legacy journal gives the commands
        (or the NondeterminismError) of the same prefix of its golden twin, ops included: they
        are computed from the code. (So an activity in flight across the upgrade is dispatched
        again under its op-based idempotency key, no longer under the step-based one.)"""

        def outcome(golden: Golden, code: WorkflowDef[Any, Any] | None, cut: int) -> Any:
            try:
                result: Any = replay(golden, code, rows=cut)
            except NondeterminismError as exc:
                result = str(exc)
            # Children keep the id their journal recorded; only their default naming changed
            # (step-based before op names, op-based since).
            return re.sub(r"golden-gallery:[0-9.]+", "golden-gallery:<child>", repr(result))

        legacy, golden = load(name, LEGACY), load(name)
        for code in dict.fromkeys((None, recording_code(name))):
            for cut in range(1, len(golden.events) + 1):
                assert outcome(legacy, code, cut) == outcome(golden, code, cut), cut


class TestGoldenTimersAndEvents:
    def test_race_in_flight_rearms_the_wait_and_the_timer(self):
        """While the approval races the timer, replay re-arms both from the recorded deadlines."""
        golden = load("approval_timed_out")
        [wait] = only(golden, EventWaitStarted)
        [timer] = only(golden, TimerScheduled)
        assert (wait.step, timer.step) == (3, 4)
        assert wait.deadline == T0 + 0.25 + 7 * 86400
        assert replay(golden, rows=6) == [
            WaitForEvent(step=3, name="decision", deadline=wait.deadline, recorded=True),
            StartTimer(step=4, fire_at=timer.fire_at, recorded=True),
        ]

    def test_timed_out_approval_escalates(self):
        """The timer fired first: the workflow escalated, and nothing else is in flight."""
        golden = load("approval_timed_out")
        assert [e.step for e in only(golden, TimerFired)] == [4]
        assert not only(golden, EventReceived)
        # submit (1), set_status (2), the race (3: branches 3.1, 3.2), set_status (4), escalate (5)
        assert replay(golden, rows=9) == [in_flight(6, "5", escalate_expense, "EXP-E-17")]
        statuses = [e.value for e in only(golden, CustomStatusSet)]
        assert statuses[-1] == {"waiting_for": "manager", "ref": "EXP-E-17"}

    def test_approved_in_time_disarms_the_race_and_pays(self):
        """The decision won: replay dispatches only the payment (the losers stay disarmed)."""
        golden = load("approval_approved")
        [event] = only(golden, EventReceived)
        assert event.payload == {"approved": True, "by": "ann"}
        assert not only(golden, TimerFired)
        assert replay(golden, rows=9) == [in_flight(6, "5", pay_expense, "EXP-E-18", 90)]

    def test_unawaited_event_does_not_satisfy_another_name(self):
        """An event of another name is buffered: the decision wait and the timer stay armed."""
        golden = load("terminated")
        [event] = only(golden, EventReceived)
        assert event.name == "comment"
        terminal = golden.events[-1]
        assert isinstance(terminal, WorkflowTerminated)
        assert terminal.reason == "expense withdrawn"
        commands = replay(golden, rows=len(golden.events) - 1)
        assert [type(c) for c in commands] == [WaitForEvent, StartTimer]
        assert all(c.recorded for c in commands)


class TestGoldenLifecycle:
    def test_canceled_fan_out_replays_to_its_cancellation(self):
        """The canceled history replays to CancelWorkflow with the recorded reason and result."""
        golden = load("canceled_fan_out")
        last = golden.events[-1]
        assert isinstance(last, WorkflowCanceled)
        assert replay(golden) == [CancelWorkflow(reason=last.reason, result=last.result)]

    def test_canceled_activities_are_not_redispatched(self):
        """After the request only the compensation is in flight, not the cancelled provisioning."""
        golden = load("canceled_fan_out")
        cut = next(i for i, e in enumerate(golden.events) if isinstance(e, CancelRequested))
        assert replay(golden, rows=cut) == [
            in_flight(1, "1.1.1", provision_vm, "web-1"),
            in_flight(3, "1.3.1", provision_vm, "db-1"),
        ]
        # the compensation runs in the main task, after its gather (op 1)
        assert replay(golden, rows=cut + 2) == [in_flight(4, "2", release_vm, "vm-web-2")]

    def test_suspended_history_holds_progress_until_resumed(self):
        """Replay of a suspended prefix ends suspended; past the resume the chain goes on."""
        golden = load("suspended")
        cut = next(i for i, e in enumerate(golden.events) if isinstance(e, WorkflowSuspended))
        executor, commands = executor_after(golden, rows=cut + 1)
        assert executor.suspended
        assert commands == [in_flight(2, "2", reserve_stock, "pen", qty=3)]
        # reserve_stock completed while suspended: held, and not dispatched again
        executor, commands = executor_after(golden, rows=cut + 2)
        assert executor.suspended
        assert commands == []
        cut = next(i for i, e in enumerate(golden.events) if isinstance(e, WorkflowResumed))
        executor, commands = executor_after(golden, rows=cut + 2)
        assert not executor.suspended
        assert commands == [in_flight(3, "3", charge_card, 30)]

    def test_children_in_flight_are_reattached_with_their_ids(self):
        """Started children come back recorded, with the default ids '<parent id>:<op>'."""
        golden = load("children")
        assert replay(golden, rows=4) == [
            StartChild(
                step=step,
                workflow="make_thumbnail",
                version="1",
                input=path,
                child_id=f"golden-gallery:1.{step}.1",
                recorded=True,
            )
            for step, path in ((1, "a.png"), (2, "b.gif"), (3, "c.png"))
        ]

    def test_children_outcomes_reach_the_parent(self):
        """The parent saw a child's result, a failure and a cancellation, as recorded."""
        golden = load("children")
        [ok] = only(golden, ChildCompleted)
        failed, canceled = only(golden, ChildFailed)
        assert (failed.canceled, canceled.canceled) == (False, True)
        child = load("child")
        started = child.events[0]
        assert isinstance(started, WorkflowStarted)
        assert started.parent_id == golden.workflow_id
        [scheduled] = [e for e in only(golden, ChildScheduled) if e.step == ok.step]
        assert scheduled.child_id == child.workflow_id
        assert ok.result == only(child, WorkflowCompleted)[0].result
        [result] = replay(golden)
        assert isinstance(result, CompleteWorkflow)
        assert result.result == {
            "a.png": "a-128.png",
            "b.gif": f"failed: {failed.failure.message}",
            "c.png": (
                "canceled: child workflow 'golden-gallery:1.3.1' was canceled: canceled by ops"
            ),
        }

    def test_continued_run_starts_with_the_input_the_first_run_continued_with(self):
        """The first run replays to ContinueAsNew; the next run's started row holds its input."""
        first, second = load("continued_run1"), load("continued_run2")
        assert first.workflow_id == second.workflow_id
        started = second.events[0]
        assert isinstance(started, WorkflowStarted)
        assert started.input == {"url": "https://shop.example", "checks": 1}
        assert replay(first) == [ContinueAsNew(input=started.input)]
        assert [e.value for e in only(second, CustomStatusSet)] == [{"checks": 1}]


class TestWireFormat:
    @pytest.mark.parametrize("name", GOLDEN_FILES)
    def test_rows_reencode_byte_for_byte(self, name):
        """Decoding a golden row and encoding it again gives the same kind, data and time."""
        golden = load(name)
        for row, event in zip(golden.rows, golden.events, strict=True):
            kind, data = encode_event(event)
            assert kind == row["kind"]
            assert data == json.dumps(row["data"], separators=(",", ":"), ensure_ascii=False)
            assert event.at == row["at"]

    @pytest.mark.parametrize("name", GOLDEN_FILES)
    def test_file_starts_with_its_workflow(self, name):
        """Every golden history begins with workflow_started for the workflow the file names."""
        golden = load(name)
        assert isinstance(golden.events[0], WorkflowStarted)
        assert golden.events[0].name == golden.workflow

    def test_golden_files_are_all_present(self):
        """The expected golden histories exist (a missing file would silently skip its tests)."""
        assert GOLDEN_FILES == [
            "approval_approved",
            "approval_timed_out",
            "canceled_fan_out",
            "chain",
            "child",
            "children",
            "compensation",
            "continued_run1",
            "continued_run2",
            "fan_out",
            "nondeterministic",
            "retried",
            "suspended",
            "terminated",
            "timed_out",
            "unfinished",
        ]

    def test_golden_files_cover_every_event_kind(self):
        """Together the golden files hold at least one row of every event kind."""
        kinds = {row["kind"] for name in GOLDEN_FILES for row in load(name).rows}
        assert kinds == set(EVENT_TYPES)

    def test_event_types_map_exactly_the_known_kinds(self):
        """EVENT_TYPES maps each persisted kind name to its event class, and nothing else."""
        persisted = {
            "workflow_started": WorkflowStarted,
            "activity_scheduled": ActivityScheduled,
            "activity_attempt_failed": ActivityAttemptFailed,
            "activity_completed": ActivityCompleted,
            "activity_failed": ActivityFailed,
            "workflow_completed": WorkflowCompleted,
            "workflow_failed": WorkflowFailed,
            "workflow_parked": WorkflowParked,
            "timer_scheduled": TimerScheduled,
            "timer_fired": TimerFired,
            "event_wait_started": EventWaitStarted,
            "event_received": EventReceived,
            "child_scheduled": ChildScheduled,
            "child_completed": ChildCompleted,
            "child_failed": ChildFailed,
            "custom_status_set": CustomStatusSet,
            "cancel_requested": CancelRequested,
            "workflow_suspended": WorkflowSuspended,
            "workflow_resumed": WorkflowResumed,
            "workflow_canceled": WorkflowCanceled,
            "workflow_terminated": WorkflowTerminated,
        }
        assert persisted == EVENT_TYPES
