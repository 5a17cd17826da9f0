"""What the encoding (:mod:`flowcore.serde`) and decoding (:mod:`flowcore._decode`) halves share.

The private failure signal that collects a path on its way up, path segments, and the class tests
both halves use to recognise pydantic models and NamedTuples.
"""

from __future__ import annotations

import json
import sys

from flowcore.errors import PayloadError

__all__ = ["SUPPORTED", "Fail", "is_namedtuple", "is_pydantic", "segment"]

SUPPORTED = (
    "None, bool, int, finite float, str, list, tuple, set, frozenset, dict, dataclasses, "
    "NamedTuple, Enum, datetime, date, time, timedelta, UUID, Decimal, bytes, PurePath and "
    "pydantic models"
)
"""The supported types, as error messages list them."""


class Fail(Exception):  # noqa: N818  (private signal, turned into PayloadError at the boundary)
    """A codec failure on its way up to the public boundary, collecting its path on the way."""

    def __init__(self, reason: str, hint: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.hint = hint
        self.segments: list[str] = []

    def add(self, key: object) -> None:
        """Prepend the position ``key`` (a field, dict key or index) to the failure's path."""
        self.segments.append(segment(key))

    def error(self, root: str) -> PayloadError:
        """Build the public error, its path starting at ``root``."""
        path = root + "".join(reversed(self.segments))
        return PayloadError(self.reason, path=path, hint=self.hint)


def segment(key: object) -> str:
    """Render ``key`` as a path segment: ``.name``, ``["odd key"]`` or ``[3]``."""
    if isinstance(key, str):
        return f".{key}" if key.isidentifier() else f"[{json.dumps(key, ensure_ascii=False)}]"
    return f"[{key}]" if isinstance(key, int) else f"[{key!r}]"


def is_pydantic(tp: type) -> bool:
    """Tell whether ``tp`` is a pydantic model, without importing pydantic."""
    pydantic = sys.modules.get("pydantic")  # a model instance implies pydantic is imported
    return pydantic is not None and issubclass(tp, pydantic.BaseModel)


def is_namedtuple(tp: type) -> bool:
    """Tell whether ``tp`` is a NamedTuple class."""
    return issubclass(tp, tuple) and hasattr(tp, "_fields")
