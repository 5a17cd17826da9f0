"""Golden journals: recorded histories replayed against the workflows defined here.

Each ``histories/*.json`` file holds one instance's journal rows (``kind``, ``data``, ``at``),
written by ``make_histories.py`` with :func:`flowcore.engine.events.encode_event`. The files pin
two contracts at once: what the engine does with a recorded history (exact commands, or the exact
NondeterminismError), and the journal's wire format (an event kind or field renamed by accident
no longer reproduces the files byte for byte).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import flowcore
from flowcore import (
    ActivityError,
    NondeterminismError,
    RetryPolicy,
    WorkflowDef,
    activity,
    workflow,
)
from flowcore._definitions import default_registry
from flowcore.engine.commands import Command, CompleteWorkflow, FailWorkflow, ScheduleActivity
from flowcore.engine.events import (
    EVENT_TYPES,
    ActivityAttemptFailed,
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    Event,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowParked,
    WorkflowStarted,
    decode_event,
    encode_event,
)
from flowcore.engine.executor import WorkflowExecutor

HISTORIES = Path(__file__).parent / "histories"

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

# -- loading --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Golden:
    """One golden history file."""

    workflow: str
    workflow_id: str
    rows: list[dict[str, Any]]
    events: list[Event]


def load(name: str) -> Golden:
    """Read ``histories/<name>.json`` and decode its rows as the journal does."""
    raw = json.loads((HISTORIES / f"{name}.json").read_text(encoding="utf-8"))
    events = [decode_event(r["kind"], json.dumps(r["data"]), r["at"]) for r in raw["events"]]
    return Golden(raw["workflow"], raw["workflow_id"], raw["events"], events)


def replay(golden: Golden, definition: WorkflowDef[Any, Any] | None = None) -> list[Command]:
    """Replay a golden history against its registered code (or ``definition``)."""
    started = golden.events[0]
    assert isinstance(started, WorkflowStarted)
    defn = definition or default_registry.for_replay(started.name, started.version)
    return WorkflowExecutor(defn, golden.workflow_id).replay(golden.events)


def in_flight(step: int, defn: Any, *args: Any, **kwargs: Any) -> ScheduleActivity:
    """The command replay returns for an activity the journal shows scheduled and unfinished."""
    return ScheduleActivity(
        step=step,
        activity=defn,
        args=args,
        kwargs=kwargs,
        encoded_args=list(args),
        encoded_kwargs=kwargs or None,
        recorded=True,
    )


GOLDEN_FILES = sorted(p.stem for p in HISTORIES.glob("*.json"))

# -- the tests --------------------------------------------------------------------------------


class TestGoldenReplay:
    def test_chain_replays_to_its_result(self):
        """A finished chain replays to the completion it recorded."""
        assert replay(load("chain")) == [CompleteWorkflow(result="R-mug-2/ch_50")]

    @pytest.mark.parametrize("name", ["chain", "fan_out", "compensation", "retried"])
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
            in_flight(1, fetch_page, "https://a.example"),
            in_flight(3, fetch_page, "https://c.example"),
            in_flight(4, count_words, "the page at https://b.example"),
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
        assert commands == [in_flight(3, charge_card, 75)]

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
            "chain",
            "compensation",
            "fan_out",
            "nondeterministic",
            "retried",
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
        }
        assert persisted == EVENT_TYPES
