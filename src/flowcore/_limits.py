"""Input checks shared by every way a value enters the journal: payload size, storable text.

SQLite stores text as UTF-8: a lone surrogate (such as U+D800) cannot be stored as a key, and a
NUL cuts a key short. Such input is refused at the door, because a batch that fails to commit
stops the whole runtime. Payloads are stored as ASCII JSON, where a lone surrogate is an escape
that reads back as it was, except a high one followed by a low one, which JSON reads back as the
single character they encode in UTF-16: such a payload is refused, as it would not round-trip.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from flowcore.engine.events import json_text
from flowcore.errors import InvalidArgumentError, PayloadError

__all__ = ["DEFAULT_MAX_PAYLOAD_BYTES", "check_payload_size", "check_text"]

DEFAULT_MAX_PAYLOAD_BYTES: Final = 4 * 1024 * 1024
"""Largest encoded payload (UTF-8 JSON bytes) a runtime accepts by default: 4 MiB."""

_SCALARS: Final = frozenset({int, float, bool, type(None)})
_MAX_CHAR_BYTES: Final = 6
"""Bytes one character of a string takes at most in JSON text (``\\u0000`` escapes)."""
_PAIR: Final = re.compile("[\ud800-\udbff][\udc00-\udfff]")
"""A high surrogate followed by a low one: two code points JSON would read back as one."""
_keep_unicode: Final = json.JSONEncoder(ensure_ascii=False).encode


def check_payload_size(encoded: Any, limit: int, what: str) -> None:
    """Refuse an encoded value that is too large, or that JSON would not read back as it is.

    Too large: its JSON text has more than ``limit`` bytes. Not read back: it holds a surrogate
    pair written as two code points.

    Args:
        encoded: A JSON-compatible value (what :func:`flowcore.serde.encode` returns).
        limit: The most bytes allowed.
        what: What the value is, for the message (``"the input of workflow 'x'"``).

    Raises:
        PayloadError: the value is too large or would change; nothing was written.
    """
    tp = type(encoded)
    if tp in _SCALARS or (
        tp is str and encoded.isascii() and (len(encoded) + 2) * _MAX_CHAR_BYTES <= limit
    ):
        return
    text = json_text(encoded)
    if "\\ud" in text:  # an astral character, or surrogates: look at the raw code points
        pair = _PAIR.search(_keep_unicode(encoded))
        if pair is not None:
            raise PayloadError(
                f"{what} holds the surrogate pair {pair.group()!r} as two code points, which "
                f"JSON would read back as the one character {_joined(pair.group())!r}; join such "
                "pairs before passing the value: s.encode('utf-16', 'surrogatepass')"
                ".decode('utf-16')"
            )
    size = len(text)  # ASCII: one byte a character
    if size > limit:
        raise PayloadError(
            f"{what} is {size:,} bytes of JSON, more than the {limit:,}-byte limit; store large "
            "data elsewhere (a file, an object store) and pass a reference to it, or raise the "
            "limit with Runtime(max_payload_bytes=...)"
        )


def _joined(pair: str) -> str:
    return pair.encode("utf-16", "surrogatepass").decode("utf-16")


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
