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
one ``executemany``: a batch runs one statement per shape present, a handful, not one per row.
The stored values are the upsert's, byte for byte: a column is left out only when it already
holds the value (the writer's record of the rows it wrote is exact, see
:func:`flowcore.journal.sqlite._write_batch`), and ``created_at`` is never updated. The checks
per row are a few attribute comparisons: Python work on the writer's thread holds the GIL like
work on the event loop, so it must cost less than what it saves in SQLite.
"""

from __future__ import annotations

import operator
from functools import lru_cache
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from flowcore.journal.base import StatusRow

__all__ = ["Statement", "Written", "row_statements", "written_values"]

Statement = tuple[str, "Iterable[tuple[object, ...]]"]
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


def row_statements(
    inserts: Mapping[str, StatusRow],
    updates: Mapping[str, StatusRow],
    written: Mapping[str, Written],
) -> list[Statement]:
    """The statements writing a batch's rows, one per shape (see the module docstring).

    Args:
        inserts: The rows of ids the batch creates.
        updates: The rows of ids that exist.
        written: What the rows this writer last wrote hold, by id (:func:`written_values`).
            An id missing here gets every column set.
    """
    shapes: dict[_Shape, list[StatusRow]] = {}
    for row in inserts.values():
        shapes.setdefault((_INSERT, _nulls(row)), []).append(row)
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
        else:
            kind = _STEP if row.status == before[4] else _STEP_STATUS
        shapes.setdefault((kind, _nulls(row)), []).append(row)
    statements: list[Statement] = []
    for shape, rows in shapes.items():
        sql, values = _statement(shape)
        statements.append((sql, map(values, rows)))
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
def _statement(shape: _Shape) -> tuple[str, Callable[[StatusRow], tuple[object, ...]]]:
    """The SQL of a shape, and what gives a row's parameters (its bound columns, in order)."""
    kind, nulls = shape
    null = {column for column, is_null in zip(_NULLABLE, nulls, strict=True) if is_null}
    if kind == _INSERT:
        columns = ", ".join(_INSERTED)
        values = ", ".join("NULL" if column in null else "?" for column in _INSERTED)
        sql = f"INSERT INTO workflows ({columns}) VALUES ({values})"  # noqa: S608 - constants only
        bound = [column for column in _INSERTED if column not in null]
    else:
        skipped = () if kind == _UPDATE else (*_STEP_KEPT, *(("status",) if kind == _STEP else ()))
        updated = [column for column in _UPDATED if column not in skipped]
        sets = ", ".join(f"{column} = {'NULL' if column in null else '?'}" for column in updated)
        sql = f"UPDATE workflows SET {sets} WHERE id = ?"  # noqa: S608 - constants only
        bound = [*(column for column in updated if column not in null), "id"]
    return sql, operator.attrgetter(*bound)  # two names at least: updated_at and id
