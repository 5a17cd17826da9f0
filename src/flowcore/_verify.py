"""Journal integrity checks (``python -m flowcore verify``): read only, never writes.

For every workflow of a journal file it checks the invariants the runtime promises:

- ``seq``: its events are numbered 1, 2, 3 ... without a gap;
- ``decode``: every event decodes; the first is the only ``workflow_started``;
- ``terminal``: a finished instance (by its status row) has exactly one terminal event, the last
  one; an unfinished instance has none;
- ``completion``: each completion (activity result or failure, fired timer, child outcome) names
  the step of an earlier schedule of the same kind, and a step is scheduled and finished once;
- ``projection``: the ``workflows`` row equals a rebuild from the events
  (:mod:`flowcore.journal.projection`); every row has events and every history a row.

The file is opened through SQLite's read-only mode, so a runtime may keep serving it meanwhile
(the check then sees one committed snapshot).
"""

from __future__ import annotations

import dataclasses
import itertools
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, final

from flowcore.engine import events as ev
from flowcore.errors import JournalCorruptError, JournalError, SchemaVersionError
from flowcore.journal import schema
from flowcore.journal._batch import is_finished
from flowcore.journal.base import StatusRow
from flowcore.journal.projection import Projection

if TYPE_CHECKING:
    import os
    from collections.abc import Iterable, Iterator

__all__ = ["Problem", "VerifyReport", "verify_journal"]

_TERMINALS: Final = (
    ev.WorkflowCompleted,
    ev.WorkflowFailed,
    ev.WorkflowCanceled,
    ev.WorkflowTerminated,
)
_SCHEDULES: Final[dict[type[Any], str]] = {
    ev.ActivityScheduled: "activity",
    ev.TimerScheduled: "timer",
    ev.EventWaitStarted: "event wait",
    ev.ChildScheduled: "child",
    ev.CustomStatusSet: "status",
}
_COMPLETIONS: Final[dict[type[Any], tuple[tuple[str, ...], bool]]] = {
    ev.ActivityAttemptFailed: (("activity",), False),
    ev.ActivityCompleted: (("activity",), True),
    ev.ActivityFailed: (("activity",), True),
    ev.TimerFired: (("timer", "event wait"), True),
    ev.ChildCompleted: (("child",), True),
    ev.ChildFailed: (("child",), True),
}
"""Completion type -> (schedule kinds it may answer, whether it finishes its step)."""
_SHOWN_DAMAGE: Final = 5
"""Most lines of SQLite's integrity check a damaged file's error quotes."""
_SHORT: Final = 80
"""Longest value shown in a projection problem."""
_ROW_FIELDS: Final = tuple(f.name for f in dataclasses.fields(StatusRow))
_EVENTS: Final = "SELECT workflow_id, seq, kind, data, at FROM events ORDER BY workflow_id, seq"
_ROWS: Final = f"SELECT {', '.join(_ROW_FIELDS)} FROM workflows"  # noqa: S608 - constant names


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One broken invariant of one workflow."""

    workflow_id: str
    """The instance concerned."""
    check: str
    """Which check found it: seq, decode, terminal, completion, projection or orphan."""
    message: str
    """What is wrong, in one line."""

    def __str__(self) -> str:
        return f"{self.workflow_id}: [{self.check}] {self.message}"


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyReport:
    """What :func:`verify_journal` found."""

    path: str
    """The journal file."""
    workflows: int
    """How many instances were checked."""
    events: int
    """How many events were read."""
    problems: tuple[Problem, ...]
    """Every broken invariant, by workflow id."""

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """A JSON-compatible summary."""
        return {
            "db": self.path,
            "ok": self.ok,
            "workflows": self.workflows,
            "events": self.events,
            "problems": [dataclasses.asdict(p) for p in self.problems],
        }


def verify_journal(path: str | os.PathLike[str]) -> VerifyReport:
    """Check the integrity of the journal at ``path`` without changing it.

    Raises:
        JournalError: there is no file at ``path``, or it cannot be read.
        JournalCorruptError: it is not a flowcore journal (or not SQLite at all).
        SchemaVersionError: a newer flowcore wrote it.
    """
    name = str(path)
    if not Path(name).is_file():
        msg = f"no flowcore journal at {name!r} (pass --db PATH)"
        raise JournalError(msg)
    if schema.precheck(name) is None:
        msg = f"{name!r} is empty: no flowcore journal to verify"
        raise JournalError(msg)
    try:
        conn = sqlite3.connect(f"{Path(name).absolute().as_uri()}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error as exc:
        msg = f"cannot open journal {name!r} read-only: {exc}"
        raise JournalError(msg) from exc
    try:
        return _verify(conn, name)
    except sqlite3.DatabaseError as exc:
        if not schema.is_damage(exc):
            msg = (
                f"cannot read journal {name!r}: {exc}; check that the file and its directory "
                "are readable and writable (SQLite needs its -shm file beside it, even to read)"
            )
            raise JournalError(msg) from exc
        msg = f"reading journal {name!r} failed: {exc}; the database file is damaged"
        raise JournalCorruptError(msg) from exc
    finally:
        conn.close()


def _verify(conn: sqlite3.Connection, name: str) -> VerifyReport:
    conn.execute("BEGIN")  # one snapshot for both tables
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > schema.SCHEMA_VERSION:
        msg = (
            f"journal {name!r} has schema version {version}, newer than this flowcore's "
            f"{schema.SCHEMA_VERSION}; verify it with the flowcore that wrote it"
        )
        raise SchemaVersionError(msg)
    _check_file(conn, name)
    rows = {row[0]: StatusRow(**dict(zip(_ROW_FIELDS, row, strict=True))) for row in
            conn.execute(_ROWS)}  # fmt: skip
    problems: list[Problem] = []
    seen = events = 0
    for wid, group in itertools.groupby(conn.execute(_EVENTS), key=lambda r: str(r[0])):
        history = list(group)
        seen += 1
        events += len(history)
        problems.extend(check_workflow(wid, history, rows.pop(wid, None)))
    for wid in sorted(rows):
        problems.append(
            Problem(workflow_id=wid, check="orphan", message="status row without events")
        )
        seen += 1
    conn.rollback()
    return VerifyReport(path=name, workflows=seen, events=events, problems=tuple(problems))


def _check_file(conn: sqlite3.Connection, name: str) -> None:
    """SQLite's own integrity check: pages the history checks never read (indexes, free pages).

    A damaged index passes a read of the tables, then fails the runtime's first commit that
    touches it.
    """
    try:
        rows = conn.execute(f"PRAGMA integrity_check({_SHOWN_DAMAGE})").fetchall()
    except sqlite3.DatabaseError as exc:  # too damaged for the check to finish
        rows = [(str(exc),)]
    found = [" ".join(str(row[0]).split()) for row in rows]
    if found != ["ok"]:
        msg = (
            f"journal {name!r} fails SQLite's integrity check ({'; '.join(found)}); the "
            "database file is damaged"
        )
        raise JournalCorruptError(msg)


def check_workflow(
    wid: str, rows: list[tuple[Any, ...]], stored: StatusRow | None
) -> Iterator[Problem]:
    """Every problem of one workflow, given its ``(wid, seq, kind, data, at)`` rows in seq order."""

    def problem(check: str, message: str) -> Problem:
        return Problem(workflow_id=wid, check=check, message=message)

    for expected, row in enumerate(rows, 1):
        if row[1] != expected:
            yield problem("seq", f"seq {row[1]} where {expected} was due (gap or duplicate)")
            break
    history: list[ev.Event] = []
    for _, seq, kind, data, at in rows:
        try:
            history.append(ev.decode_event(kind, data, at))
        except JournalCorruptError as exc:
            yield problem("decode", f"seq {seq}: {exc}")
    if not history:
        return
    if not isinstance(history[0], ev.WorkflowStarted):
        yield problem("decode", f"the first event is {history[0].kind}, not workflow_started")
        return
    starts = sum(isinstance(e, ev.WorkflowStarted) for e in history)
    if starts > 1:
        yield problem("decode", f"{starts} workflow_started events; one is due per run")
    yield from (problem("completion", m) for m in _completion_problems(history))
    if stored is None:
        yield problem("orphan", "events without a status row")
        return
    yield from (problem("terminal", m) for m in _terminal_problems(history, stored))
    yield from (problem("projection", m) for m in _projection_problems(wid, history, stored))


def _completion_problems(history: Iterable[ev.Event]) -> Iterator[str]:
    scheduled: dict[int, str] = {}
    finished: set[int] = set()
    for event in history:
        kind = _SCHEDULES.get(type(event))
        step: int = getattr(event, "step", 0)
        if kind is not None:
            if step in scheduled:
                yield f"step {step} scheduled twice ({scheduled[step]}, then {kind})"
            scheduled[step] = kind
            continue
        answer = _COMPLETIONS.get(type(event))
        if answer is None:
            continue
        kinds, finishes = answer
        if scheduled.get(step) not in kinds:
            what = scheduled.get(step, "nothing")
            yield f"{event.kind} of step {step} answers {what}, not an earlier {' or '.join(kinds)}"
        elif step in finished:
            yield f"{event.kind} of step {step}: the step already finished (recorded twice)"
        if finishes:
            finished.add(step)


def _terminal_problems(history: list[ev.Event], stored: StatusRow) -> Iterator[str]:
    terminals = [i for i, e in enumerate(history) if isinstance(e, _TERMINALS)]
    if len(terminals) > 1:
        yield f"{len(terminals)} terminal events; exactly one is due"
    if terminals and terminals[0] != len(history) - 1:
        yield f"events follow the terminal {history[terminals[0]].kind}"
    if is_finished(stored.status) and not terminals:
        yield f"status {stored.status!r} but no terminal event"
    if not is_finished(stored.status) and terminals:
        yield f"status {stored.status!r} but a terminal {history[terminals[0]].kind} is recorded"


def _projection_problems(wid: str, history: list[ev.Event], stored: StatusRow) -> Iterator[str]:
    if stored.created_at > history[0].at:
        yield f"created_at {stored.created_at} is after the first event ({history[0].at})"
    # A continued-as-new history starts at its last run: the row keeps the first created_at.
    projection = Projection(wid, created_at=stored.created_at)
    for event in history:
        projection.apply(event)
    rebuilt = projection.row()
    for name in _ROW_FIELDS:
        want, have = getattr(rebuilt, name), getattr(stored, name)
        if want != have:
            yield f"status row {name} is {_short(have)}, a rebuild from events gives {_short(want)}"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHORT else text[: _SHORT - 3] + "..."
