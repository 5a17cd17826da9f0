"""Input checks shared by every way a value enters the journal: payload size, storable text.

SQLite stores text as UTF-8: a lone surrogate (such as U+D800) cannot be stored, and a NUL cuts a
key short. Such input is refused at the door, because a batch that fails to commit stops the
whole runtime.
"""

from __future__ import annotations

from typing import Any, Final

from flowcore.engine.events import json_text
from flowcore.errors import InvalidArgumentError, PayloadError

__all__ = ["DEFAULT_MAX_PAYLOAD_BYTES", "check_payload_size", "check_text"]

DEFAULT_MAX_PAYLOAD_BYTES: Final = 4 * 1024 * 1024
"""Largest encoded payload (UTF-8 JSON bytes) a runtime accepts by default: 4 MiB."""

_SCALARS: Final = frozenset({int, float, bool, type(None)})
_MAX_CHAR_BYTES: Final = 6
"""Bytes one character of a string takes at most in JSON text (``\\u0000`` escapes)."""


def check_payload_size(encoded: Any, limit: int, what: str) -> None:
    """Refuse an encoded value whose JSON text is larger than ``limit`` bytes.

    Args:
        encoded: A JSON-compatible value (what :func:`flowcore.serde.encode` returns).
        limit: The most bytes allowed.
        what: What the value is, for the message (``"the input of workflow 'x'"``).

    Raises:
        PayloadError: the value is too large; nothing was written.
    """
    tp = type(encoded)
    if tp in _SCALARS or (
        tp is str and encoded.isascii() and (len(encoded) + 2) * _MAX_CHAR_BYTES <= limit
    ):
        return
    try:
        size = len(json_text(encoded).encode())
    except UnicodeEncodeError as exc:
        bad = exc.object[exc.start : exc.end]
        raise PayloadError(
            f"{what} holds {bad!r}, a lone surrogate, which is not valid Unicode and cannot be "
            "stored; decode bytes with errors='replace' (or send them as bytes)"
        ) from None
    if size > limit:
        raise PayloadError(
            f"{what} is {size:,} bytes of JSON, more than the {limit:,}-byte limit; store large "
            "data elsewhere (a file, an object store) and pass a reference to it, or raise the "
            "limit with Runtime(max_payload_bytes=...)"
        )


def check_text(value: str, what: str) -> None:
    """Refuse a string that cannot be stored as a SQLite key: a NUL or a lone surrogate.

    Raises:
        InvalidArgumentError: it holds one.
    """
    if "\x00" in value:
        raise InvalidArgumentError(f"{what} must not contain a NUL character, not {value!r}")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            msg = f"{what} must be valid Unicode text (it holds a lone surrogate): {value!r}"
            raise InvalidArgumentError(msg) from None
