"""Encode values to JSON-compatible data and decode them back, guided by type hints; no pickle.

Arguments, results and payloads cross into the journal as JSON text made here and come back typed
by the annotations of the function that receives them. Supported: None, bool, int, finite float,
str, list, tuple, set, frozenset, dict (str, int, Enum or UUID keys), dataclasses, NamedTuples,
Enums (by value), datetime, date, time, timedelta (seconds), UUID, Decimal, bytes (base64),
PurePath and pydantic v2 models (never imported here). Every failure is a
:class:`~flowcore.errors.PayloadError` whose ``path`` names the value, e.g. ``$.items[2].owner``.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import enum
import functools
import inspect
import itertools
import json
import math
import reprlib
import sys
import types
import typing
import uuid
from collections import abc
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias, TypeVar

from flowcore.errors import PayloadError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    _Encoder: TypeAlias = Callable[[Any, set[int]], Any]
    _Decoder: TypeAlias = Callable[[Any], Any]
    _Convert: TypeAlias = Callable[[Any, Any], Any]
    _FieldSpec: TypeAlias = tuple[str, str, _Decoder, bool]  # name, hint name, decoder, required

__all__ = ["decode", "decode_args", "dumps", "encode", "encode_args", "loads", "signature_hints"]

_MAX_DEPTH = 200
_P = inspect.Parameter
_NONE_TYPE = type(None)
_PLAIN = frozenset({str, int, bool, _NONE_TYPE})
_SUPPORTED = (
    "None, bool, int, finite float, str, list, tuple, set, frozenset, dict, dataclasses, "
    "NamedTuple, Enum, datetime, date, time, timedelta, UUID, Decimal, bytes, PurePath and "
    "pydantic models"
)
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60


class _Fail(Exception):  # noqa: N818  (private signal, turned into PayloadError at the boundary)
    """A codec failure on its way up to the public boundary, collecting its path on the way."""

    def __init__(self, reason: str, hint: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.hint = hint
        self.segments: list[str] = []

    def add(self, key: object) -> None:
        """Prepend the position ``key`` (a field, dict key or index) to the failure's path."""
        self.segments.append(_segment(key))

    def error(self, root: str) -> PayloadError:
        """Build the public error, its path starting at ``root``."""
        path = root + "".join(reversed(self.segments))
        return PayloadError(self.reason, path=path, hint=self.hint)


def _segment(key: object) -> str:
    if isinstance(key, str):
        return f".{key}" if key.isidentifier() else f"[{json.dumps(key, ensure_ascii=False)}]"
    return f"[{key}]" if isinstance(key, int) else f"[{key!r}]"


def _type_name(tp: type) -> str:
    return tp.__qualname__ if tp.__module__ == "builtins" else f"{tp.__module__}.{tp.__qualname__}"


def _describe(data: object) -> str:
    return f"{type(data).__name__} {_REPR.repr(data)}"


def _mismatch(hint_name: str, data: object) -> _Fail:
    return _Fail(f"got {_describe(data)}", hint_name)


def _is_pydantic(tp: type) -> bool:
    pydantic = sys.modules.get("pydantic")  # a model instance implies pydantic is imported
    return pydantic is not None and issubclass(tp, pydantic.BaseModel)


def _is_namedtuple(tp: type) -> bool:
    return issubclass(tp, tuple) and hasattr(tp, "_fields")


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
    except _Fail as exc:
        raise exc.error(path) from None


def _encode(value: Any, active: set[int]) -> Any:
    tp: type = type(value)
    if tp in _PLAIN or (tp is float and math.isfinite(value)):
        return value
    return _encoder_for(tp)(value, active)


def _encode_child(value: Any, active: set[int], key: object) -> Any:
    try:
        return _encode(value, active)
    except _Fail as exc:
        exc.add(key)
        raise


def _enter(value: object, active: set[int]) -> int:
    key = id(value)
    if key in active:
        raise _Fail("reference cycle: the value contains itself")
    if len(active) >= _MAX_DEPTH:
        raise _Fail(f"nested deeper than {_MAX_DEPTH} levels")
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
        raise _Fail("two dict keys encode to the same string (such as 1 and '1')")
    active.discard(key)
    return out


def _encode_key(key: object) -> str:
    raw = key.value if isinstance(key, enum.Enum) else key
    if isinstance(raw, str | int | uuid.UUID) and not isinstance(raw, bool):
        return str(raw)
    exc = _Fail(f"dict keys must be str, int, Enum or UUID, not {_type_name(type(key))}")
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
    raise _Fail(f"float {value!r} has no JSON form; use None, a str or a Decimal")


def _enc_pydantic(value: Any, _active: set[int]) -> Any:
    try:
        return value.model_dump(mode="json")
    except ValueError as exc:
        raise _Fail(f"{_type_name(type(value))}.model_dump failed: {exc}") from None


def _enc_unsupported(value: object, _active: set[int]) -> NoReturn:
    name = _type_name(type(value))
    raise _Fail(f"values of type {name} are not supported; supported are {_SUPPORTED}")


_ENCODERS: tuple[tuple[type | tuple[type, ...], _Encoder], ...] = (
    (int, lambda v, _: int(v)),
    (float, _enc_float),
    (str, lambda v, _: str(v)),
    ((list, tuple), _enc_seq),
    ((set, frozenset), _enc_set),
    (abc.Mapping, _enc_mapping),
    ((dt.date, dt.time), lambda v, _: v.isoformat()),
    (dt.timedelta, lambda v, _: v.total_seconds()),
    ((uuid.UUID, decimal.Decimal, PurePath), lambda v, _: str(v)),
    ((bytes, bytearray), lambda v, _: base64.b64encode(v).decode("ascii")),
)


@functools.cache
def _encoder_for(tp: type) -> _Encoder:
    if issubclass(tp, enum.Enum):
        return lambda v, active: _encode(v.value, active)
    if _is_pydantic(tp):
        return _enc_pydantic
    if dataclasses.is_dataclass(tp) or _is_namedtuple(tp):
        names = _field_names(tp)
        return lambda v, active: _enc_fields(v, names, active)
    return next((enc for base, enc in _ENCODERS if issubclass(tp, base)), _enc_unsupported)


def _field_names(tp: Any) -> tuple[str, ...]:
    if _is_namedtuple(tp):
        return tuple(tp._fields)
    return tuple(f.name for f in dataclasses.fields(tp) if f.init)


# --- decoding ---------------------------------------------------------------------------------


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
    try:
        return _decoder(hint)(data)
    except _Fail as exc:
        raise exc.error(path) from None
    except RecursionError:
        raise PayloadError("data nested too deeply", path=path, hint=_hint_name(hint)) from None


_DECODERS: dict[Any, _Decoder] = {}


def _decoder(hint: Any) -> _Decoder:
    key = _cache_key(hint)
    try:
        found = _DECODERS.get(key)
    except TypeError:  # an unhashable hint such as Annotated[int, []]: build it every time
        return _build(hint)
    if found is None:
        found = _DECODERS[key] = _build(hint)
    return found


def _cache_key(hint: Any) -> Any:
    """Key hints by structure with argument order kept: ``int | str == str | int`` in typing."""
    if isinstance(hint, type):
        return hint
    args = getattr(hint, "__args__", None)
    return (hint, tuple(map(_cache_key, args))) if args else hint


def _build(hint: Any) -> _Decoder:
    hint = _unalias(hint)
    if hint is Any or hint is object or hint is _P.empty or isinstance(hint, TypeVar):
        return _identity
    if hint is None or hint is _NONE_TYPE:
        return _decode_none
    origin = typing.get_origin(hint)
    if origin is not None:
        return _generic_decoder(hint, origin, typing.get_args(hint))
    if isinstance(hint, type):
        return _class_decoder(hint)
    name = _hint_name(hint)
    return _failing(f"type hint {name} is not supported (an unresolved forward reference?)", name)


def _unalias(hint: Any) -> Any:
    """Strip Annotated and NewType wrappers down to the type they stand for."""
    while True:
        if typing.get_origin(hint) is typing.Annotated:
            hint = typing.get_args(hint)[0]
        elif isinstance(hint, typing.NewType):
            hint = hint.__supertype__
        else:
            return hint


def _hint_name(hint: Any) -> str:
    if hint is None or hint is _NONE_TYPE:
        return "None"
    if isinstance(hint, type) and typing.get_origin(hint) is None:
        return hint.__qualname__
    return repr(hint).replace("typing.", "")


def _identity(data: Any) -> Any:
    return data


def _decode_none(data: object) -> None:
    if data is not None:
        raise _mismatch("None", data)


def _failing(reason: str, hint_name: str) -> _Decoder:
    def decode_unsupported(_data: object) -> NoReturn:
        raise _Fail(reason, hint_name)

    return decode_unsupported


_SEQUENCE_DATA = frozenset({list, tuple, set, frozenset})


def _generic_decoder(hint: Any, origin: Any, args: tuple[Any, ...]) -> _Decoder:
    name = _hint_name(hint)
    factory = _GENERIC_RULES.get(origin)
    if factory is not None:
        return factory(origin, args, name)
    if isinstance(origin, type):  # a parametrised user generic, e.g. a generic dataclass
        return _decoder(origin)
    return _failing(f"type hint {name} is not supported", name)


def _decode_items(dec: _Decoder, items: Iterable[Any]) -> list[Any]:
    try:
        return [dec(x) for x in items]
    except _Fail:
        _locate(itertools.repeat(dec), items)
        raise


def _locate(decoders: Iterable[_Decoder], items: Iterable[Any]) -> None:
    """Decode again item by item to find, and add to the error, the failing position."""
    for index, (dec, item) in enumerate(zip(decoders, items, strict=False)):
        try:
            dec(item)
        except _Fail as exc:
            exc.add(index)
            raise


def _seq_decoder(origin: Any, args: tuple[Any, ...], name: str) -> _Decoder:
    kind = _SEQUENCE_KINDS[origin]
    item = _decoder(args[0] if args else Any)

    def decode_sequence(data: Any) -> Any:
        if type(data) not in _SEQUENCE_DATA:
            raise _mismatch(name, data)
        return kind(data if item is _identity else _decode_items(item, data))

    return decode_sequence


def _tuple_decoder(_origin: Any, args: tuple[Any, ...], name: str) -> _Decoder:
    if len(args) == 2 and args[1] is Ellipsis:  # noqa: PLR2004  (tuple[T, ...])
        return _seq_decoder(tuple, args[:1], name)
    decoders = tuple(_decoder(a) for a in args if a != ())

    def decode_tuple(data: Any) -> tuple[Any, ...]:
        if type(data) not in _SEQUENCE_DATA:
            raise _mismatch(name, data)
        if len(data) != len(decoders):
            raise _Fail(f"got {len(data)} items, expected {len(decoders)}", name)
        try:
            return tuple([dec(x) for dec, x in zip(decoders, data, strict=True)])
        except _Fail:
            _locate(decoders, data)
            raise

    return decode_tuple


def _dict_decoder(_origin: Any, args: tuple[Any, ...], name: str) -> _Decoder:
    key_hint, value_hint = args or (Any, Any)
    keys, values = _key_decoder(key_hint), _decoder(value_hint)

    def decode_dict(data: Any) -> dict[Any, Any]:
        if not isinstance(data, dict):
            raise _mismatch(name, data)
        if keys is _identity and values is _identity:
            return dict(data)
        try:
            return {keys(k): values(v) for k, v in data.items()}
        except _Fail:
            for k, v in data.items():
                try:
                    keys(k)
                    values(v)
                except _Fail as exc:
                    exc.add(k)
                    raise
            raise

    return decode_dict


def _key_decoder(hint: Any) -> _Decoder:
    if hint is str:  # JSON keys are always strings
        return _identity
    if hint is int:
        return _checked(int, "int", (str,), lambda tp, d: tp(d))
    plain = _decoder(hint)
    if not (isinstance(hint, type) and issubclass(hint, enum.Enum)):
        return plain
    members = {str(m.value): m for m in hint}  # int-valued enum keys arrive as "1"

    def decode_enum_key(key: Any) -> Any:
        member = members.get(key)
        return plain(key) if member is None else member

    return decode_enum_key


def _union_decoder(_origin: Any, args: tuple[Any, ...], name: str) -> _Decoder:
    members = tuple(a for a in args if a is not _NONE_TYPE)
    optional = len(members) < len(args)
    decoders = tuple(_decoder(m) for m in members)
    if optional and len(decoders) == 1:
        inner = decoders[0]
        return lambda data: None if data is None else inner(data)

    def decode_union(data: Any) -> Any:
        if data is None and optional:
            return None
        reasons = []
        for dec in decoders:
            try:
                return dec(data)
            except _Fail as exc:
                reasons.append(exc.reason)
        raise _Fail(f"got {_describe(data)}, which fits no member ({'; '.join(reasons)})", name)

    return decode_union


def _literal_decoder(_origin: Any, args: tuple[Any, ...], name: str) -> _Decoder:
    choices = tuple((a.value if isinstance(a, enum.Enum) else a, a) for a in args)

    def decode_literal(data: Any) -> Any:
        for raw, value in choices:
            if data is value or (raw == data and type(raw) is type(data)):
                return value
        raise _Fail(f"got {_describe(data)}, which is not one of the allowed values", name)

    return decode_literal


def _class_decoder(tp: type) -> _Decoder:
    name = _hint_name(tp)
    for matches, factory in _CLASS_RULES:
        if matches(tp):
            return factory(tp, name)
    for base, accepted, convert in _SCALAR_RULES:
        if issubclass(tp, base):
            return _checked(tp, name, accepted, convert)
    return _failing(f"type hint {name} is not supported; supported are {_SUPPORTED}", name)


def _checked(tp: Any, name: str, accepted: tuple[type, ...], convert: _Convert) -> _Decoder:
    def decode_checked(data: Any) -> Any:
        if type(data) is tp:
            return data
        if type(data) in accepted:
            try:
                return convert(tp, data)
            except (ValueError, TypeError, ArithmeticError) as exc:
                reason = f"got {_describe(data)}, which is not a valid {name}: {exc}"
                raise _Fail(reason, name) from None
        if isinstance(data, tp) and type(data) is not bool:  # True is an int, but not here
            return data
        raise _mismatch(name, data)

    return decode_checked


_SCALAR_RULES: tuple[tuple[type | tuple[type, ...], tuple[type, ...], _Convert], ...] = (
    (bool, (), lambda tp, d: tp(d)),  # before int, so that 0 and 1 are not taken for bools
    (int, (int,), lambda tp, d: tp(d)),
    (float, (int, float), lambda tp, d: tp(d)),
    (str, (str,), lambda tp, d: tp(d)),
    ((dt.date, dt.time), (str,), lambda tp, d: tp.fromisoformat(d)),  # datetime is a date
    (dt.timedelta, (int, float), lambda tp, d: tp(seconds=d)),
    (uuid.UUID, (str,), lambda tp, d: tp(d)),
    (decimal.Decimal, (str, int, float), lambda tp, d: tp(str(d))),
    ((bytes, bytearray), (str,), lambda tp, d: tp(base64.b64decode(d, validate=True))),
    (PurePath, (str,), lambda tp, d: tp(d)),
)


def _enum_decoder(tp: Any, name: str) -> _Decoder:
    def decode_enum(data: Any) -> Any:
        try:
            return tp(data)
        except (ValueError, TypeError):
            valid = ", ".join(_REPR.repr(m.value) for m in tp)
            raise _Fail(f"got {_describe(data)}, not a value of {name} ({valid})", name) from None

    return decode_enum


def _pydantic_decoder(tp: Any, name: str) -> _Decoder:
    def decode_model(data: Any) -> Any:
        try:
            return tp.model_validate(data)
        except ValueError as exc:  # pydantic.ValidationError
            errors = exc.errors() if hasattr(exc, "errors") else []
            found = "; ".join(f"{'.'.join(map(str, e['loc'])) or '$'}: {e['msg']}" for e in errors)
            raise _Fail(f"model validation failed: {found or exc}", name) from None

    return decode_model


def _record_decoder(tp: Any, name: str) -> _Decoder:
    """Decode a dict (or, for a NamedTuple, a list) into the dataclass or NamedTuple ``tp``."""
    as_list = _is_namedtuple(tp)

    @functools.cache
    def fields() -> tuple[_FieldSpec, ...]:  # resolved at first use, so recursive types work
        return _record_fields(tp, name)

    def decode_record(data: Any) -> Any:
        specs = fields()
        if as_list and type(data) is list:
            if len(data) > len(specs):
                raise _Fail(f"got {len(data)} items for {len(specs)} fields", name)
            data = {f[0]: x for f, x in zip(specs, data, strict=False)}
        if not isinstance(data, dict):
            if isinstance(data, tp):
                return data
            raise _mismatch(name, data)
        try:
            return tp(**_decode_fields(specs, data))
        except (TypeError, ValueError) as exc:
            raise _Fail(f"{name}(...) raised {type(exc).__name__}: {exc}", name) from None

    return decode_record


def _record_fields(tp: Any, name: str) -> tuple[_FieldSpec, ...]:
    """List ``(name, hint name, decoder, required)`` for each field ``tp``'s constructor takes."""
    try:
        hints = typing.get_type_hints(tp, include_extras=True)
    except Exception as exc:  # noqa: BLE001  (annotations are user code; any failure is reported)
        raise _Fail(f"cannot resolve the type hints of {name}: {exc!r}", name) from None
    if _is_namedtuple(tp):
        specs = [(f, f not in tp._field_defaults) for f in tp._fields]
    else:
        missing = dataclasses.MISSING
        init = (f for f in dataclasses.fields(tp) if f.init)
        specs = [(f.name, f.default is missing and f.default_factory is missing) for f in init]
    return tuple(
        (n, _hint_name(hints.get(n, Any)), _decoder(hints.get(n, Any)), required)
        for n, required in specs
    )


def _decode_fields(fields: tuple[_FieldSpec, ...], data: dict[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for name, hint_name, dec, required in fields:
        if name in data:
            try:
                kwargs[name] = dec(data[name])
            except _Fail as exc:
                exc.add(name)
                raise
        elif required:
            missing = _Fail("required field is missing", hint_name)
            missing.add(name)
            raise missing
    return kwargs


_BARE: dict[type, Any] = {  # unparametrised containers hold undecoded items
    list: list[Any], tuple: tuple[Any, ...], set: set[Any], frozenset: frozenset[Any],
    dict: dict[Any, Any],
}  # fmt: skip
_CLASS_RULES: tuple[tuple[Callable[[type], bool], Callable[[Any, str], _Decoder]], ...] = (
    (lambda tp: issubclass(tp, enum.Enum), _enum_decoder),
    (_is_pydantic, _pydantic_decoder),
    (lambda tp: dataclasses.is_dataclass(tp) or _is_namedtuple(tp), _record_decoder),
    (typing.is_typeddict, lambda _tp, _name: _decoder(dict[str, Any])),
    (lambda tp: tp in _BARE, lambda tp, _name: _decoder(_BARE[tp])),
)
_SEQUENCE_KINDS: dict[Any, Callable[[Iterable[Any]], Any]] = {
    list: list, abc.Sequence: list, tuple: tuple, set: set, abc.Set: set, frozenset: frozenset,
}  # fmt: skip
_GENERIC_RULES: dict[Any, Callable[[Any, tuple[Any, ...], str], _Decoder]] = {
    **dict.fromkeys(_SEQUENCE_KINDS.keys() - {tuple}, _seq_decoder),
    **dict.fromkeys((dict, abc.Mapping), _dict_decoder),
    tuple: _tuple_decoder,
    typing.Literal: _literal_decoder,
    typing.Union: _union_decoder,
    types.UnionType: _union_decoder,
}


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
        raise PayloadError(f"invalid JSON: {exc}") from exc


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
        return f"$.args{_segment(name)}", shape.hints[name]
    if shape.var_positional is not None:
        extra = index - len(shape.positional)
        path = f"$.args{_segment(shape.var_positional)}[{extra}]"
        return path, shape.hints[shape.var_positional]
    return f"$.args[{index}]", Any


def _keyword_slot(shape: _Shape, key: str) -> tuple[str, Any]:
    """Return the error path and the hint of keyword argument ``key``."""
    if key in shape.keywords:
        return f"$.args{_segment(key)}", shape.hints[key]
    if shape.var_keyword is not None:
        path = f"$.args{_segment(shape.var_keyword)}{_segment(key)}"
        return path, shape.hints[shape.var_keyword]
    return f"$.args{_segment(key)}", Any


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
    shape = _shape(fn)
    positional = [encode(v, path=_positional_slot(shape, i)[0]) for i, v in enumerate(args)]
    named = {k: encode(v, path=_keyword_slot(shape, k)[0]) for k, v in kwargs.items()}
    return positional, named or None


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
