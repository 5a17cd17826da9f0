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
_RAISE_HINT: Final = "raise the limit with Runtime(max_payload_bytes=...)"

_SCALARS: Final = frozenset({int, float, bool, type(None)})
_INT_BITS: Final = 4096 * 3
"""Bits of an int that has at most 4,096 decimal digits: below Python's default int-to-text
limit (4,300 digits, ``sys.set_int_max_str_digits``), past which JSON cannot write it."""
_SHORT: Final = 8
"""Longest list judged item by item (see :func:`_short_scalars`)."""
_SHORT_STR: Final = 64
_SHORT_INT_BITS: Final = 64
_SHORT_ITEM_BYTES: Final = _SHORT_STR * 6 + 3
"""Most JSON bytes one short item takes: 64 characters of 6-byte escapes, quotes, a comma."""
_MAX_CHAR_BYTES: Final = 6
"""Bytes one character of a string takes at most in JSON text (``\\u0000`` escapes)."""
_PAIR: Final = re.compile("[\ud800-\udbff][\udc00-\udfff]")
"""A high surrogate followed by a low one: two code points JSON would read back as one."""
_keep_unicode: Final = json.JSONEncoder(ensure_ascii=False).encode


def check_payload_size(
    encoded: Any, limit: int, what: str, *subject: object, raise_hint: str | None = _RAISE_HINT
) -> None:
    """Refuse an encoded value that is too large, or that JSON would not read back as it is.

    Too large: its JSON text has more than ``limit`` bytes. Not read back: it holds a surrogate
    pair written as two code points. Not written: it holds an int with more digits than Python
    turns into text. A scalar, or a short list of short scalars (most activity arguments), is
    judged without writing its JSON.

    Args:
        encoded: A JSON-compatible value (what :func:`flowcore.serde.encode` returns).
        limit: The most bytes allowed.
        what: What the value is, for the message (``"the input of workflow 'x'"``); with
            ``subject``, a format string filled in only for a message (``"activity {!r}"``).
        *subject: What to format ``what`` with.
        raise_hint: How to raise the limit, ending the too-large message; None: no way to
            (the command line's own limit).

    Raises:
        PayloadError: the value is too large, would change or cannot be written; nothing was
            written.
    """
    tp = type(encoded)
    if tp is list:
        if len(encoded) <= _SHORT and _short_scalars(encoded, limit):
            return
    elif (tp in _SCALARS and (tp is not int or encoded.bit_length() <= _INT_BITS)) or (
        tp is str and encoded.isascii() and (len(encoded) + 2) * _MAX_CHAR_BYTES <= limit
    ):
        return
    _check_text(encoded, limit, what.format(*subject) if subject else what, raise_hint)


def _short_scalars(items: list[Any], limit: int) -> bool:
    """Whether ``items`` are scalars whose JSON surely fits: small ints, short ASCII strings."""
    if len(items) * _SHORT_ITEM_BYTES + 2 > limit:
        return False
    for item in items:
        tp = type(item)
        if tp is str:
            if len(item) > _SHORT_STR or not item.isascii():
                return False
        elif tp is int:
            if item.bit_length() > _SHORT_INT_BITS:
                return False
        elif tp not in _SCALARS:  # float, bool, None: at most 24 characters
            return False
    return True


def _check_text(encoded: Any, limit: int, what: str, raise_hint: str | None) -> None:
    try:
        text = json_text(encoded)
    except ValueError as exc:  # an int with more digits than Python converts to text
        msg = f"{what} cannot be written as JSON ({exc}); pass such a number as a string"
        raise PayloadError(msg) from None
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
            "data elsewhere (a file, an object store) and pass a reference to it"
            + ("" if raise_hint is None else f", or {raise_hint}")
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
