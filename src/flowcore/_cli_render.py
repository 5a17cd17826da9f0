"""What the command line shows: tables, status records, history timelines and progress lines.

Pure functions from journal data to text or JSON-compatible values; no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, final

from flowcore import serde
from flowcore.engine import events as ev
from flowcore.engine.events import encode_event

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from flowcore._status import WorkflowStatus

__all__ = [
    "Item",
    "export_rows",
    "progress_line",
    "status_json",
    "status_lines",
    "table",
    "timeline",
    "timeline_lines",
    "to_json",
]

_LIST_COLUMNS = ("id", "name", "version", "status", "current_activity", "created_at", "updated_at")
_PREVIEW = 60


@final
@dataclass(slots=True, kw_only=True)
class Item:
    """One line of a history timeline: a scheduled step with its outcome, or a lone event."""

    at: float
    """When it began (epoch seconds)."""
    what: str
    """``activity``, ``timer``, ``wait_event``, ``child``, or an event kind."""
    step: int | None = None
    """The command's step, for scheduled work."""
    name: str = ""
    """Activity, event or workflow name."""
    state: str = ""
    """``running``, ``completed``, ``failed``, ``fired``, ``received``, ``timed out`` ..."""
    ended: float | None = None
    """When its outcome was recorded."""
    detail: str = ""
    """Arguments, payload, reason or result, shortened."""
    attempts: list[dict[str, Any]] = field(default_factory=list)
    """For an activity: ``{attempt, began, ended, error}`` per attempt that recorded an end."""
    next_at: float | None = None
    """For an activity: when its next attempt began (after a failed one); for a timer its
    deadline."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-compatible dict of the fields."""
        return {
            "at": self.at,
            "what": self.what,
            "step": self.step,
            "name": self.name,
            "state": self.state,
            "ended": self.ended,
            "duration": None if self.ended is None else round(self.ended - self.at, 6),
            "detail": self.detail,
            "attempts": self.attempts,
        }


# -- JSON and tables ----------------------------------------------------------------------------


def to_json(value: Any) -> str:
    """Indented JSON text of a JSON-compatible value."""
    return json.dumps(value, indent=2, ensure_ascii=False)


def status_json(status: WorkflowStatus) -> dict[str, Any]:
    """A status record as JSON-compatible data (times in ISO 8601)."""
    data: dict[str, Any] = serde.encode(status)
    return data


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces."""
    body = [list(map(str, row)) for row in rows]
    widths = [len(h) for h in headers]
    for row in body:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = [headers, *body]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def list_table(statuses: Sequence[WorkflowStatus]) -> str:
    """The ``list`` command's table."""
    rows = []
    for st in statuses:
        data = status_json(st)
        rows.append([_cell(data.get(col)) for col in _LIST_COLUMNS])
    return table([c.upper() for c in _LIST_COLUMNS], rows)


def status_lines(data: dict[str, Any]) -> list[str]:
    """The ``status`` command's ``key  value`` lines (empty fields left out).

    Args:
        data: :func:`status_json` of the record, plus ``pending_requests``.
    """
    width = max(len(k) for k in data)
    lines = []
    for key, value in data.items():
        if key == "pending_requests":
            value = ", ".join(f"{r['kind']} (#{r['id']})" for r in value) or None  # noqa: PLW2901
        if value not in (None, ""):
            lines.append(f"{key.ljust(width)}  {_cell(value)}")
    return lines


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return _when(value)
    return _short(json.dumps(value, ensure_ascii=False))


def _when(text: str) -> str:
    """An ISO 8601 UTC time to the second, for tables; other text as it is."""
    if len(text) >= 19 and text[10:11] == "T" and text.endswith("+00:00"):  # noqa: PLR2004
        return text[:10] + " " + text[11:19]
    return text


def _short(text: str, limit: int = _PREVIEW) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def export_rows(history: Sequence[ev.Event]) -> list[dict[str, Any]]:
    """A history as ``{kind, data, at}`` rows (what ``flowcore.testing.replay`` takes)."""
    rows = []
    for event in history:
        kind, data = encode_event(event)
        rows.append({"kind": kind, "data": json.loads(data), "at": event.at})
    return rows


# -- timelines ------------------------------------------------------------------------------


def timeline(history: Sequence[ev.Event]) -> list[Item]:
    """Group a history into timeline items: scheduled steps carry their outcomes."""
    items: list[Item] = []
    steps: dict[int, Item] = {}
    unclaimed: dict[str, list[float]] = {}  # event name -> arrival times no wait took yet
    for event in history:
        item = _scheduled(event) or _lone(event)
        if item is not None:
            items.append(item)
            if item.step is not None:
                steps[item.step] = item
            _match_events(item, items, unclaimed)
        else:
            _outcome(event, steps)
    if items and items[-1].what in _ENDINGS:  # what it still waited on, a race's loser most often
        for item in items:
            if item.state in ("waiting", "running"):
                _end(item, items[-1].at, "abandoned")
    return items


_ENDINGS = frozenset({"completed", "failed", "workflow_canceled", "workflow_terminated"})
"""Timeline items that end a run: nothing it scheduled is pending after them."""


def _match_events(item: Item, items: Sequence[Item], unclaimed: dict[str, list[float]]) -> None:
    """Pair waits and received events first in, first out (as the engine hands them out).

    A wait that a race abandoned is not journaled, so the pairing is a good guess, not a record.
    """
    if item.what == "event":
        for wait in items:
            if wait.what == "wait_event" and wait.state == "waiting" and wait.name == item.name:
                _end(wait, item.at, "received")
                return
        unclaimed.setdefault(item.name, []).append(item.at)
    elif item.what == "wait_event" and unclaimed.get(item.name):
        unclaimed[item.name].pop(0)
        _end(item, item.at, "received")


def _scheduled(event: ev.Event) -> Item | None:
    match event:
        case ev.ActivityScheduled():
            args = [*(event.args or []), *(f"{k}={v!r}" for k, v in (event.kwargs or {}).items())]
            detail = _short(", ".join(json.dumps(a) if not isinstance(a, str) or "=" not in a
                                      else a for a in args))  # fmt: skip
            return Item(at=event.at, what="activity", step=event.step, name=event.name,
                        state="running", detail=f"({detail})")  # fmt: skip
        case ev.TimerScheduled():
            return Item(at=event.at, what="timer", step=event.step, state="waiting",
                        next_at=event.fire_at)  # fmt: skip
        case ev.EventWaitStarted():
            return Item(at=event.at, what="wait_event", step=event.step, name=event.name,
                        state="waiting", next_at=event.deadline)  # fmt: skip
        case ev.ChildScheduled():
            return Item(at=event.at, what="child", step=event.step, name=event.name,
                        state="running", detail=event.child_id)  # fmt: skip
        case _:
            return None


def _lone(event: ev.Event) -> Item | None:  # noqa: PLR0911 - one return per kind of event
    match event:
        case ev.WorkflowStarted():
            detail = f"v{event.version} input={_cell(event.input)}"
            return Item(at=event.at, what="started", name=event.name, detail=detail)
        case ev.EventReceived():
            return Item(at=event.at, what="event", name=event.name, detail=_cell(event.payload))
        case ev.CustomStatusSet():
            return Item(at=event.at, what="set_status", step=event.step, detail=_cell(event.value))
        case ev.CancelRequested() | ev.WorkflowTerminated() | ev.WorkflowCanceled():
            return Item(at=event.at, what=event.kind, detail=event.reason or "")
        case ev.WorkflowSuspended() | ev.WorkflowResumed():
            return Item(at=event.at, what=event.kind)
        case ev.WorkflowParked():
            return Item(at=event.at, what="parked", step=None, detail=event.reason)
        case ev.WorkflowCompleted():
            return Item(at=event.at, what="completed", detail=f"result={_cell(event.result)}")
        case ev.WorkflowFailed():
            return Item(at=event.at, what="failed", detail=str(event.failure))
        case _:
            return None


def _outcome(event: ev.Event, steps: dict[int, Item]) -> None:
    match event:
        case ev.ActivityAttemptFailed():
            _attempt(steps.get(event.step), event.attempt, event.at, str(event.failure))
            if (item := steps.get(event.step)) is not None:
                item.next_at = event.retry_at
        case ev.ActivityCompleted():
            _attempt(steps.get(event.step), event.attempt, event.at, None)
            _end(steps.get(event.step), event.at, "completed")
        case ev.ActivityFailed():
            _attempt(steps.get(event.step), event.attempts, event.at, str(event.failure))
            _end(steps.get(event.step), event.at, "timed out" if event.timed_out else "failed")
        case ev.TimerFired():
            item = steps.get(event.step)
            _end(item, event.at, "fired" if item and item.what == "timer" else "timed out")
        case ev.ChildCompleted():
            _end(steps.get(event.step), event.at, "completed")
        case ev.ChildFailed():
            _end(steps.get(event.step), event.at, "canceled" if event.canceled else "failed")
        case _:
            pass


def _attempt(item: Item | None, attempt: int, at: float, error: str | None) -> None:
    if item is None:
        return
    began = item.next_at if item.attempts and item.next_at is not None else item.at
    item.attempts.append({"attempt": attempt, "began": began, "ended": at, "error": error})


def _end(item: Item | None, at: float, state: str) -> None:
    if item is not None:
        item.ended, item.state = at, state


def timeline_lines(items: Sequence[Item]) -> list[str]:
    """Readable lines: time since the start, step, what, state and duration, then attempts."""
    if not items:
        return []
    t0 = items[0].at
    lines = []
    for item in items:
        step = f"#{item.step}" if item.step is not None else ""
        what = f"{item.what} {item.name}".strip()
        if item.what == "activity":
            what += item.detail
        lines.append(f"+{item.at - t0:8.3f}s {step:>4}  {what:<30} {_outcome_text(item)}".rstrip())
        if len(item.attempts) > 1 or any(a["error"] for a in item.attempts):
            lines.extend(
                f"{'':17}attempt {a['attempt']}: {_attempt_text(a)}" for a in item.attempts
            )
    return lines


def _outcome_text(item: Item) -> str:
    parts = [item.state] if item.state else []
    if item.ended is not None:
        parts.append(f"after {_seconds(item.ended - item.at)}")
    if item.what == "timer" and item.next_at is not None and item.ended is None:
        parts.append(f"until {_clock(item.next_at)}")
    if len(item.attempts) > 1:
        parts.append(f"({len(item.attempts)} attempts)")
    if item.detail and item.what != "activity":
        parts.append(item.detail)
    return " ".join(parts)


def _attempt_text(attempt: dict[str, Any]) -> str:
    took = _seconds(attempt["ended"] - attempt["began"])
    error = attempt["error"]
    return f"ok after {took}" if error is None else f"failed after {took}: {_short(error, 100)}"


def _seconds(value: float) -> str:
    return f"{value:.3f}s" if value < 60 else f"{value / 60:.1f}min"  # noqa: PLR2004


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="seconds")


# -- progress -----------------------------------------------------------------------------------


def progress_line(status: WorkflowStatus, items: Sequence[Item], now: float | None) -> str:
    """One line: state, current activity, fan-out done/total, retries, waits, custom status.

    A timer shows as a countdown from ``now``; with ``now=None`` as the time it fires, so the
    line changes only when the instance does (progress written to a log, not a terminal).
    """
    parts = [status.status.value]
    if status.current_activity:
        parts.append(status.current_activity)
    activities = [i for i in items if i.what == "activity"]
    if activities:
        running = [i.name for i in activities if i.state == "running"]
        done = len(activities) - len(running)
        text = f"activities {done}/{len(activities)}"
        if running:
            text += f" (running: {_counted(running)})"
        parts.append(text)
    retries = sum(_retries(i) for i in activities)
    if retries:
        parts.append(f"retries {retries}")
    waiting = [i.name for i in items if i.what == "wait_event" and i.state == "waiting"]
    if waiting:
        parts.append(f"waiting for event {', '.join(map(repr, waiting))}")
    timers = [i.next_at for i in items if i.what == "timer" and i.state == "waiting" and i.next_at]
    if timers and now is None:
        parts.append(f"sleeping until {_clock(min(timers))}")
    elif timers and now is not None:
        parts.append(f"sleeping {max(0.0, min(timers) - now):.1f}s")
    if status.custom_status is not None:
        parts.append(_cell(status.custom_status))
    if status.error and not status.is_finished:
        parts.append(_short(status.error, 100))
    return " · ".join(parts)


def _retries(item: Item) -> int:
    failed = sum(1 for a in item.attempts if a["error"])
    return failed - 1 if item.state in ("failed", "timed out") else failed


def _counted(names: Sequence[str]) -> str:
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return ", ".join(f"{n} x{c}" if c > 1 else n for n, c in counts.items())
