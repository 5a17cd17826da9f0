"""Encode values to JSON-compatible data and decode them back, guided by type hints; no pickle.

Arguments, results and payloads cross into the journal as JSON text made here and come back typed
by the annotations of the function that receives them. Supported: None, bool, int, finite float,
str, list, tuple, set, frozenset, dict (str, int, Enum or UUID keys), dataclasses, NamedTuples,
Enums (by value), datetime, date, time, timedelta (seconds; a string of exact seconds beyond
about 285 years, where a float loses microseconds), UUID, Decimal, bytes (base64),
PurePath and pydantic v2 models (never imported here). Every failure is a
:class:`~flowcore.errors.PayloadError` whose ``path`` names the value, e.g. ``$.items[2].owner``.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import decimal
import enum
import functools
import inspect
import json
import math
import typing
import uuid
from collections import abc
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias

from flowcore._decode import decoder as _decoder
from flowcore._decode import hint_name as _hint_name
from flowcore._serde_common import SUPPORTED, Fail, is_namedtuple, is_pydantic, segment
from flowcore.errors import PayloadError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    _Encoder: TypeAlias = Callable[[Any, set[int]], Any]

__all__ = ["decode", "decode_args", "dumps", "encode", "encode_args", "loads", "signature_hints"]

_MAX_DEPTH = 200
_P = inspect.Parameter
_PLAIN = frozenset({str, int, bool, type(None)})
_AS_IS = frozenset({str, int, float, bool})
"""Hints whose decoder returns data of exactly that type as it is (see :func:`decode`)."""


def _type_name(tp: type) -> str:
    return tp.__qualname__ if tp.__module__ == "builtins" else f"{tp.__module__}.{tp.__qualname__}"


# --- encoding ---------------------------------------------------------------------------------


def encode(value: object, *, path: str = "$") -> Any:
    """Turn ``value`` into JSON-compatible data (None, bool, int, float, str, list, dict).

    Args:
        value: A value of a supported type (see the module docstring), nested at will.
        path: Where ``value`` sits in a larger payload, used to prefix error paths.

    Returns:
        A new JSON-compatible structure; sets become sorted lists, tuples become lists.

    Raises:
        PayloadError: A part of ``value`` is unsupported, a NaN or infinite float, a dict key
            of an unsupported type, part of a reference cycle, or nested deeper than 200 levels.
    """
    if type(value) in _PLAIN:
        return value
    try:
        return _encode(value, set())
    except Fail as exc:
        raise exc.error(path) from None


def _encode(value: Any, active: set[int]) -> Any:
    tp: type = type(value)
    if tp in _PLAIN or (tp is float and math.isfinite(value)):
        return value
    return _encoder_for(tp)(value, active)


def _encode_child(value: Any, active: set[int], key: object) -> Any:
    try:
        return _encode(value, active)
    except Fail as exc:
        exc.add(key)
        raise


def _enter(value: object, active: set[int]) -> int:
    key = id(value)
    if key in active:
        raise Fail("reference cycle: the value contains itself")
    if len(active) >= _MAX_DEPTH:
        raise Fail(f"nested deeper than {_MAX_DEPTH} levels")
    active.add(key)
    return key


def _enc_seq(value: Iterable[Any], active: set[int]) -> list[Any]:
    key = _enter(value, active)
    out = [x if type(x) in _PLAIN else _encode_child(x, active, i) for i, x in enumerate(value)]
    active.discard(key)
    return out


def _enc_set(value: Iterable[Any], active: set[int]) -> list[Any]:
    items = _enc_seq(value, active)
    try:
        items.sort()
    except TypeError:  # mixed or unorderable items: order by their canonical JSON text instead
        items.sort(key=lambda item: json.dumps(item, sort_keys=True))
    return items


def _enc_mapping(value: Mapping[Any, Any], active: set[int]) -> dict[str, Any]:
    key = _enter(value, active)
    out: dict[str, Any] = {}
    for k, v in value.items():
        name = k if type(k) is str else _encode_key(k)
        out[name] = v if type(v) in _PLAIN else _encode_child(v, active, name)
    if len(out) != len(value):
        raise Fail("two dict keys encode to the same string (such as 1 and '1')")
    active.discard(key)
    return out


def _encode_key(key: object) -> str:
    raw = key.value if isinstance(key, enum.Enum) else key
    if isinstance(raw, str | int | uuid.UUID) and not isinstance(raw, bool):
        return str(raw)
    exc = Fail(f"dict keys must be str, int, Enum or UUID, not {_type_name(type(key))}")
    exc.add(key)
    raise exc


def _enc_fields(value: object, names: Iterable[str], active: set[int]) -> dict[str, Any]:
    key = _enter(value, active)
    out = {
        n: v if type(v := getattr(value, n)) in _PLAIN else _encode_child(v, active, n)
        for n in names
    }
    active.discard(key)
    return out


def _enc_float(value: float, _active: set[int]) -> float:
    if math.isfinite(value):
        return float(value)
    raise Fail(f"float {value!r} has no JSON form; use None, a str or a Decimal")


def _enc_pydantic(value: Any, _active: set[int]) -> Any:
    try:
        return value.model_dump(mode="json")
    except ValueError as exc:
        raise Fail(f"{_type_name(type(value))}.model_dump failed: {exc}") from None


def _enc_unsupported(value: object, _active: set[int]) -> NoReturn:
    name = _type_name(type(value))
    raise Fail(f"values of type {name} are not supported; supported are {SUPPORTED}")


def _enc_awaitable(value: object, _active: set[int]) -> NoReturn:
    # Never data: most often an activity call or a coroutine whose ``await`` was forgotten.
    activity = getattr(value, "activity", None)
    name = getattr(activity, "name", None)
    if isinstance(name, str):
        raise Fail(f"it is a call of activity {name!r} that was never awaited, not its result: "
                   f"write 'await {name}(...)' and pass what it returns")  # fmt: skip
    what = _type_name(type(value))
    raise Fail(f"values of type {what} are awaitables, not data: await it and pass its result")


def _enc_timedelta(value: dt.timedelta) -> float | str:
    """Seconds as a float when that is exact; else the exact decimal seconds as a string.

    A float holds every microsecond only up to about 285 years (2**53 microseconds); a longer
    timedelta (``timedelta.max`` too) is written as ``"8639999999999.999999"`` so that it
    decodes to the same value.
    """
    seconds = value.total_seconds()
    with contextlib.suppress(OverflowError):
        if dt.timedelta(seconds=seconds) == value:
            return seconds
    micros = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    whole, fraction = divmod(abs(micros), 1_000_000)
    return f"{'-' if micros < 0 else ''}{whole}.{fraction:06d}"


_ENCODERS: tuple[tuple[type | tuple[type, ...], _Encoder], ...] = (
    (int, lambda v, _: int(v)),
    (float, _enc_float),
    (str, lambda v, _: str(v)),
    ((list, tuple), _enc_seq),
    ((set, frozenset), _enc_set),
    (abc.Mapping, _enc_mapping),
    ((dt.date, dt.time), lambda v, _: v.isoformat()),
    (dt.timedelta, lambda v, _: _enc_timedelta(v)),
    ((uuid.UUID, decimal.Decimal, PurePath), lambda v, _: str(v)),
    ((bytes, bytearray), lambda v, _: base64.b64encode(v).decode("ascii")),
)


@functools.cache
def _encoder_for(tp: type) -> _Encoder:
    if issubclass(tp, enum.Enum):
        return lambda v, active: _encode(v.value, active)
    if is_pydantic(tp):
        return _enc_pydantic
    if hasattr(tp, "__await__"):  # before dataclasses: flowcore's awaitables are dataclasses
        return _enc_awaitable
    if dataclasses.is_dataclass(tp) or is_namedtuple(tp):
        names = _field_names(tp)
        return lambda v, active: _enc_fields(v, names, active)
    return next((enc for base, enc in _ENCODERS if issubclass(tp, base)), _enc_unsupported)


def _field_names(tp: Any) -> tuple[str, ...]:
    if is_namedtuple(tp):
        return tuple(tp._fields)
    return tuple(f.name for f in dataclasses.fields(tp) if f.init)


# --- decoding (the machinery lives in flowcore._decode) ---------------------------------------


def decode(data: Any, hint: Any, *, path: str = "$") -> Any:
    """Rebuild a value of type ``hint`` from JSON-compatible ``data``.

    Args:
        data: What :func:`encode` produced (or :func:`loads` parsed).
        hint: The expected type. ``Any``, ``object``, a TypeVar and ``inspect.Parameter.empty``
            return ``data`` unchanged; ``None`` means ``type(None)``, as in annotations.
        path: Where ``data`` sits in a larger payload, used to prefix error paths.

    Returns:
        The decoded value. A value that already has the hinted class passes through.

    Raises:
        PayloadError: ``data`` does not fit ``hint``, or ``hint`` is not supported.
    """
    if type(data) is hint and hint in _AS_IS:  # what its decoder would return, without it
        return data
    try:
        return _decoder(hint)(data)
    except Fail as exc:
        raise exc.error(path) from None
    except RecursionError:
        raise PayloadError("data nested too deeply", path=path, hint=_hint_name(hint)) from None


# --- JSON text --------------------------------------------------------------------------------

_JSON_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


_JSON_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def dumps(value: object) -> str:
    """Encode ``value`` (see :func:`encode`) as compact JSON text.

    Raises:
        PayloadError: ``value`` cannot be encoded.
    """
    return _JSON_ENCODER.encode(encode(value))


def loads(text: str) -> Any:
    """Parse compact JSON text made by :func:`dumps` into JSON-compatible data.

    Raises:
        PayloadError: ``text`` is not valid JSON (NaN and Infinity are refused).
    """
    try:
        return _JSON_DECODER.decode(text)
    except (ValueError, RecursionError) as exc:
        raise PayloadError(f"invalid JSON: {exc}", decoding=True) from exc


# --- call arguments ---------------------------------------------------------------------------

_ANY_SIGNATURE = inspect.Signature([_P("args", _P.VAR_POSITIONAL), _P("kwargs", _P.VAR_KEYWORD)])
_POSITIONAL = frozenset({_P.POSITIONAL_ONLY, _P.POSITIONAL_OR_KEYWORD})
_KEYWORD = frozenset({_P.POSITIONAL_OR_KEYWORD, _P.KEYWORD_ONLY})


@dataclasses.dataclass(frozen=True, slots=True)
class _Shape:
    """A callable's parameters and resolved hints, computed once per callable."""

    signature: inspect.Signature
    hints: dict[str, Any]
    returns: Any
    positional: tuple[str, ...]
    keywords: frozenset[str]
    var_positional: str | None
    var_keyword: str | None


def signature_hints(fn: Callable[..., object]) -> tuple[inspect.Signature, dict[str, Any], Any]:
    """Return ``fn``'s signature, its parameter hints by name and its return hint.

    Hints are resolved with ``typing.get_type_hints(include_extras=True)``, so string
    annotations work; when that fails, raw annotations are used and strings become ``Any``.
    Unannotated parameters and returns are ``Any``. Results are cached per callable: do not
    mutate the returned dict. A callable without a signature is taken as ``(*args, **kwargs)``.

    Args:
        fn: A function, method, class, ``functools.partial`` or callable object.

    Returns:
        ``(signature, {parameter name: hint}, return hint)``.
    """
    shape = _shape(fn)
    return shape.signature, shape.hints, shape.returns


def _shape(fn: Callable[..., object]) -> _Shape:
    try:
        hash(fn)
    except TypeError:
        return _inspect_callable(fn)
    return _cached_shape(fn)


def _inspect_callable(fn: Callable[..., object]) -> _Shape:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        signature = _ANY_SIGNATURE
    try:
        resolved = typing.get_type_hints(_hint_source(fn), include_extras=True)
    except Exception:  # noqa: BLE001  (annotations are user code; fall back to the raw ones)
        resolved = {}

    def pick(name: str, raw: Any) -> Any:
        if name in resolved:
            return resolved[name]
        return Any if raw is _P.empty or isinstance(raw, str | typing.ForwardRef) else raw

    params = signature.parameters.values()
    return _Shape(
        signature=signature,
        hints={p.name: pick(p.name, p.annotation) for p in params},
        returns=fn if inspect.isclass(fn) else pick("return", signature.return_annotation),
        positional=tuple(p.name for p in params if p.kind in _POSITIONAL),
        keywords=frozenset(p.name for p in params if p.kind in _KEYWORD),
        var_positional=next((p.name for p in params if p.kind is _P.VAR_POSITIONAL), None),
        var_keyword=next((p.name for p in params if p.kind is _P.VAR_KEYWORD), None),
    )


_cached_shape = functools.lru_cache(maxsize=4096)(_inspect_callable)


def _hint_source(fn: Any) -> Any:
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.isclass(fn):
        return fn.__init__
    if not inspect.isroutine(fn) and callable(fn):
        return type(fn).__call__
    return fn


def _positional_slot(shape: _Shape, index: int) -> tuple[str, Any]:
    """Return the error path and the hint of positional argument ``index``."""
    if index < len(shape.positional):
        name = shape.positional[index]
        return f"$.args{segment(name)}", shape.hints[name]
    if shape.var_positional is not None:
        extra = index - len(shape.positional)
        path = f"$.args{segment(shape.var_positional)}[{extra}]"
        return path, shape.hints[shape.var_positional]
    return f"$.args[{index}]", Any


def _keyword_slot(shape: _Shape, key: str) -> tuple[str, Any]:
    """Return the error path and the hint of keyword argument ``key``."""
    if key in shape.keywords:
        return f"$.args{segment(key)}", shape.hints[key]
    if shape.var_keyword is not None:
        path = f"$.args{segment(shape.var_keyword)}{segment(key)}"
        return path, shape.hints[shape.var_keyword]
    return f"$.args{segment(key)}", Any


def encode_args(
    fn: Callable[..., object], args: Sequence[object], kwargs: Mapping[str, object]
) -> tuple[list[Any], dict[str, Any] | None]:
    """Encode the arguments of a call to ``fn``, keeping positional and keyword ones apart.

    Args:
        fn: The callable the arguments are for; its parameter names label error paths.
        args: Positional arguments.
        kwargs: Keyword arguments.

    Returns:
        ``(encoded positional list, encoded keyword dict or None when there are none)``.

    Raises:
        PayloadError: An argument cannot be encoded; the path names its parameter, e.g.
            ``$.args.order.items[0]`` (``$.args.rest[1]`` for the second extra ``*rest``).
    """
    # fn's shape (parameter names) is looked up only to name a value that fails to encode
    if _PLAIN.issuperset(map(type, args)):  # the common case: nothing to encode
        positional = list(args)
    else:
        positional = [v if type(v) in _PLAIN else _encode_arg(fn, v, i) for i, v in enumerate(args)]
    if not kwargs:
        return positional, None
    named = {k: v if type(v) in _PLAIN else _encode_arg(fn, v, k) for k, v in kwargs.items()}
    return positional, named


def _encode_arg(fn: Callable[..., object], value: object, key: int | str) -> Any:
    """Encode argument ``key`` (a position or a keyword) of a call to ``fn``."""
    try:
        return _encode(value, set())
    except Fail as exc:
        shape = _shape(fn)
        slot = _positional_slot(shape, key) if isinstance(key, int) else _keyword_slot(shape, key)
        raise exc.error(slot[0]) from None


def decode_args(
    fn: Callable[..., object], args: Sequence[Any], kwargs: Mapping[str, Any] | None
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Decode what :func:`encode_args` produced, by the hints of ``fn``'s parameters.

    Extra positional arguments use the ``*args`` hint, unknown keywords the ``**kwargs`` hint,
    and arguments with neither are returned undecoded.

    Args:
        fn: The callable that will receive the arguments.
        args: Encoded positional arguments.
        kwargs: Encoded keyword arguments, or None.

    Returns:
        ``(positional tuple, keyword dict)``, ready for ``fn(*args, **kwargs)``.

    Raises:
        PayloadError: An argument does not fit its parameter's hint.
    """
    shape = _shape(fn)
    positional = tuple(_decode_at(v, _positional_slot(shape, i)) for i, v in enumerate(args))
    named = {k: _decode_at(v, _keyword_slot(shape, k)) for k, v in (kwargs or {}).items()}
    return positional, named


def _decode_at(value: Any, slot: tuple[str, Any]) -> Any:
    path, hint = slot
    return decode(value, hint, path=path)
