"""The statements writing a batch's ``workflows`` rows: what a step changes, and NULL as such.

One generic statement per batch (an upsert of all twelve columns, every value bound) cost the
SQLite writer about 50,000 instructions per row in W1 (callgrind, CPython 3.11, SQLite 3.40):

* ``sqlite3`` binds ``None`` only after trying to adapt it, which formats an ``AttributeError``
  and drops it: about 3,000 instructions per ``None``, four or five per row. A ``None`` is
  written as the literal ``NULL`` instead, never bound.
* The upsert first tries the insert, and then sets every column: ``status`` and ``name`` are
  indexed, so each update deleted and reinserted their index entries, changed or not. An id in
  :attr:`~flowcore.journal._batch.BatchPlan.updates` exists (the batch rules put only stored ids
  there), so a plain ``UPDATE`` does. A step of a workflow whose row this writer wrote before
  leaves out the columns only a continue-as-new changes (name, version, input, parent), when
  they hold the same values, and the status unless it changed: no index is touched then.

Rows are grouped by shape (statement kind, which nullable columns are None) and each shape is
one ``executemany`` of a statement writing :data:`ROWS_PER_STATEMENT` rows (a multi-row
``INSERT``; an ``UPDATE ... FROM (VALUES ...)`` where SQLite has it), plus one of the single-row
statement for the rows that do not fill one: a batch runs a handful of statements, not one per
row, and SQLite steps once per 50 rows. One UPDATE per row cost W1 3.3 ms of thread CPU per
2,000 steps, 2.3 ms in statements of 50 (100 to 500 rows save no more); inserting 2,000 new
rows, 8.6 against 6.0 ms. The multi-row statements say ``OR FAIL`` for the reason the event
inserts do (see :data:`flowcore.journal.sqlite._INSERT_EVENTS`): a failed statement fails its
whole batch, whose transaction is rolled back, so no statement journal is needed.

The stored values are the upsert's, byte for byte: a column is left out only when it already
holds the value (the writer's record of the rows it wrote is exact, see
:func:`flowcore.journal.sqlite._write_batch`), and ``created_at`` is never updated. The checks
per row are a few attribute comparisons: Python work on the writer's thread holds the GIL like
work on the event loop, so it must cost less than what it saves in SQLite.
"""

from __future__ import annotations

import itertools
import operator
import sqlite3
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Final, final

from flowcore.journal._batch import is_finished

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

    from flowcore.journal.base import StatusRow

__all__ = [
    "ROWS_PER_STATEMENT",
    "UPDATE_FROM",
    "RowWrites",
    "Statement",
    "Written",
    "per_statement",
    "row_writes",
    "written_values",
]

UPDATE_FROM: Final = sqlite3.sqlite_version_info >= (3, 33, 0)
"""Whether SQLite runs ``UPDATE ... FROM`` (3.33, 2020; older ones still ship with some Linux
distributions): without it every update is a single-row statement."""

ROWS_PER_STATEMENT: Final = 50
"""Rows one multi-row statement writes (events and status rows alike): 12 columns at most, so
600 parameters, under the 999 of SQLite builds older than 3.32."""

Statement = tuple[str, "Iterable[Sequence[object]]"]
"""An SQL text and the parameter rows ``executemany`` runs it with."""

_INSERTED: Final = (
    "id", "name", "version", "status", "input", "output", "error", "current_activity",
    "created_at", "updated_at", "parent_id", "custom_status",
)  # fmt: skip
"""The columns a new row sets."""
_UPDATED: Final = tuple(column for column in _INSERTED if column not in ("id", "created_at"))
"""The columns an update may set: all but the key and ``created_at`` (the first run's)."""
_NULLABLE: Final = ("input", "output", "error", "current_activity", "parent_id", "custom_status")
_STEP_KEPT: Final = ("name", "version", "input", "parent_id")
"""Columns a workflow's steps never change (a continue-as-new may): a step leaves them out."""

_INSERT: Final = 0
"""Statement kind: a new row, every column."""
_UPDATE: Final = 1
"""Statement kind: every column but the key and ``created_at``."""
_STEP: Final = 2
"""Statement kind: the columns but ``_STEP_KEPT`` and ``status``, which hold the values already."""
_STEP_STATUS: Final = 3
"""Statement kind: a step that also changes the status."""

Written = tuple[str, str, "str | None", "str | None", str]
"""What a row this writer wrote holds in the columns a step may leave out: ``(name, version,
input, parent_id, status)``. A plain tuple of strings: the writer keeps one per running workflow,
and the garbage collector untracks it (a row object would stay tracked)."""

_Shape = tuple[int, tuple[bool, ...]]
"""A statement kind, and which of the ``_NULLABLE`` columns are None."""


@final
@dataclass(slots=True)
class RowWrites:
    """The statements writing a batch's rows, and what the writer's records become.

    The records change once the batch commits.
    """

    statements: list[Statement]
    """One or two per shape (see the module docstring), in no particular order."""
    written: list[tuple[str, Written]]
    """The new :func:`written_values` of the unfinished rows whose values change (a step that
    keeps its status changes none)."""
    finished: list[str]
    """The ids whose row is now finished: they leave the writer's records."""


def row_writes(
    inserts: Mapping[str, StatusRow],
    updates: Mapping[str, StatusRow],
    written: Mapping[str, Written],
) -> RowWrites:
    """The statements writing a batch's rows, one or two per shape (see the module docstring).

    Args:
        inserts: The rows of ids the batch creates.
        updates: The rows of ids that exist.
        written: What the rows this writer last wrote hold, by id (:func:`written_values`); it
            holds unfinished rows only. An id missing here gets every column set.
    """
    shapes: dict[_Shape, list[StatusRow]] = {}
    changed: list[tuple[str, Written]] = []
    finished: list[str] = []
    for wid, row in inserts.items():
        shapes.setdefault((_INSERT, _nulls(row)), []).append(row)
        _note(wid, row, changed, finished)
    for wid, row in updates.items():
        before = written.get(wid)
        if (
            before is None
            or row.name != before[0]
            or row.version != before[1]
            or row.input != before[2]
            or row.parent_id != before[3]
        ):
            kind = _UPDATE
        elif row.status == before[4]:  # unfinished as before; what `written` holds stays
            shapes.setdefault((_STEP, _nulls(row)), []).append(row)
            continue
        else:
            kind = _STEP_STATUS
        shapes.setdefault((kind, _nulls(row)), []).append(row)
        _note(wid, row, changed, finished)
    statements: list[Statement] = []
    for shape, rows in shapes.items():
        one, many, values = _statement(shape)
        if shape[0] == _INSERT or UPDATE_FROM:
            statements.extend(per_statement(one, many, map(values, rows), len(rows)))
        else:
            statements.append((one, map(values, rows)))
    return RowWrites(statements, changed, finished)


def _note(
    wid: str, row: StatusRow, changed: list[tuple[str, Written]], finished: list[str]
) -> None:
    """Note what the writer's records hold for ``row`` once it is written."""
    if is_finished(row.status):
        finished.append(wid)
    else:
        changed.append((wid, written_values(row)))


def per_statement(
    one: str, many: str, params: Iterator[Sequence[object]], count: int
) -> list[Statement]:
    """Statements writing ``count`` rows, whose parameters ``params`` gives in order.

    ``many`` writes each whole :data:`ROWS_PER_STATEMENT` of them (its parameters are theirs,
    flattened), then ``one`` each row left over (at most 49). ``params`` may make each row's
    parameters as it is asked for them: a batch's rows then never all have a parameter tuple
    alive at once (the garbage collector counts every one).
    """
    if count < ROWS_PER_STATEMENT:  # a small batch (W3: every batch) costs no more than that
        return [(one, params)]
    whole = count - count % ROWS_PER_STATEMENT
    statements: list[Statement] = []
    if whole:
        flat = list(itertools.chain.from_iterable(itertools.islice(params, whole)))
        size = len(flat) * ROWS_PER_STATEMENT // whole
        statements.append((many, (flat[at : at + size] for at in range(0, len(flat), size))))
    if whole < count:
        statements.append((one, params))  # what is left of it
    return statements


def written_values(row: StatusRow) -> Written:
    """What ``row``, once written, holds in the columns a step may leave out."""
    return (row.name, row.version, row.input, row.parent_id, row.status)


def _nulls(row: StatusRow) -> tuple[bool, ...]:
    """Which of the ``_NULLABLE`` columns of ``row`` are None (written as NULL, never bound)."""
    return (
        row.input is None,
        row.output is None,
        row.error is None,
        row.current_activity is None,
        row.parent_id is None,
        row.custom_status is None,
    )


@lru_cache(maxsize=256)
def _statement(shape: _Shape) -> tuple[str, str, Callable[[StatusRow], tuple[object, ...]]]:
    """The single-row SQL of a shape, its multi-row SQL, and what gives a row's parameters.

    A row's parameters are its bound columns, in order (the multi-row statements take them in
    the same order, row after row).
    """
    kind, nulls = shape
    null = {column for column, is_null in zip(_NULLABLE, nulls, strict=True) if is_null}
    if kind == _INSERT:
        bound = [column for column in _INSERTED if column not in null]
        one, many = _inserts(null)
    else:
        skipped = () if kind == _UPDATE else (*_STEP_KEPT, *(("status",) if kind == _STEP else ()))
        updated = [column for column in _UPDATED if column not in skipped]
        bound = [*(column for column in updated if column not in null), "id"]
        one, many = _updates(updated, null, bound)
    return one, many, operator.attrgetter(*bound)  # two names at least: updated_at and id


def _inserts(null: set[str]) -> tuple[str, str]:
    """An INSERT of one row and of :data:`ROWS_PER_STATEMENT` rows, ``null`` columns NULL."""
    columns = ", ".join(_INSERTED)
    values = "(" + ", ".join("NULL" if column in null else "?" for column in _INSERTED) + ")"
    one = f"INSERT INTO workflows ({columns}) VALUES {values}"  # noqa: S608 - constants only
    rows = ", ".join([values] * ROWS_PER_STATEMENT)
    many = f"INSERT OR FAIL INTO workflows ({columns}) VALUES {rows}"  # noqa: S608 - constants
    return one, many


def _updates(updated: list[str], null: set[str], bound: list[str]) -> tuple[str, str]:
    """An UPDATE of one row and one of :data:`ROWS_PER_STATEMENT` rows.

    The multi-row one takes each row's values from a row of its VALUES list, which holds the
    ``bound`` columns in order (``id`` last).
    """
    sets = ", ".join(f"{column} = {'NULL' if column in null else '?'}" for column in updated)
    one = f"UPDATE workflows SET {sets} WHERE id = ?"  # noqa: S608 - constants only
    at = {column: f"v.column{i}" for i, column in enumerate(bound, start=1)}
    sets = ", ".join(f"{column} = {'NULL' if column in null else at[column]}" for column in updated)
    values = "(" + ", ".join("?" * len(bound)) + ")"
    rows = ", ".join([values] * ROWS_PER_STATEMENT)
    many = (
        f"UPDATE OR FAIL workflows SET {sets} FROM (VALUES {rows}) AS v "  # noqa: S608 - constants
        f"WHERE workflows.id = {at['id']}"
    )
    return one, many
