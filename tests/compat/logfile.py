"""A line log that survives SIGKILL, shared by the compat worker apps and their tests."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


def append(path: str, line: str) -> None:
    """Append one line, flushed and fsynced (a SIGKILL right after keeps it)."""
    with open(path, "a", encoding="utf-8") as file:  # noqa: PTH123 - plain append
        file.write(line + "\n")
        file.flush()
        os.fsync(file.fileno())


def lines(path: Path) -> list[list[str]]:
    """The log's lines split on spaces; empty when the file does not exist yet."""
    if not path.exists():
        return []
    return [line.split() for line in path.read_text(encoding="utf-8").splitlines()]
