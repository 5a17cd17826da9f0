"""Build and cache the decoders that turn JSON-compatible data back into values of a type hint.

One responsibility: given a hint, return a function ``data -> value`` that checks ``data`` and
rebuilds the value, raising :class:`~flowcore._serde_common.Fail` with the failing position on a
mismatch. Decoders are built once per hint and cached; record fields resolve at first use, so
recursive dataclasses work. The public entry point is :func:`flowcore.serde.decode`.
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
import reprlib
import types
import typing
import uuid
from collections import abc
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias, TypeVar

from flowcore._serde_common import SUPPORTED, Fail, is_namedtuple, is_pydantic

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    _Decoder: TypeAlias = Callable[[Any], Any]
    _Convert: TypeAlias = Callable[[Any, Any], Any]
    _FieldSpec: TypeAlias = tuple[str, str, _Decoder, bool]  # name, hint name, decoder, required

__all__ = ["decoder", "hint_name"]

_P = inspect.Parameter
_NONE_TYPE = type(None)
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60


def _describe(data: object) -> str:
    return f"{type(data).__name__} {_REPR.repr(data)}"


def _mismatch(name: str, data: object) -> Fail:
    return Fail(f"got {_describe(data)}", name)


_DECODERS: dict[Any, _Decoder] = {}


def decoder(hint: Any) -> _Decoder:
    """Return the decoder for ``hint``, built at first use and cached by the hint's structure."""
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
    name = hint_name(hint)
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


def hint_name(hint: Any) -> str:
    """Name ``hint`` as error messages show it: ``int``, ``list[Order]``, ``None``."""
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


def _failing(reason: str, name: str) -> _Decoder:
    def decode_unsupported(_data: object) -> NoReturn:
        raise Fail(reason, name)

    return decode_unsupported


_SEQUENCE_DATA = frozenset({list, tuple, set, frozenset})


def _generic_decoder(hint: Any, origin: Any, args: tuple[Any, ...]) -> _Decoder:
    name = hint_name(hint)
    factory = _GENERIC_RULES.get(origin)
    if factory is not None:
        return factory(origin, args, name)
    if isinstance(origin, type):  # a parametrised user generic, e.g. a generic dataclass
        params = getattr(origin, "__parameters__", ())
        if len(params) == len(args) and (dataclasses.is_dataclass(origin) or is_namedtuple(origin)):
            return _record_decoder(origin, name, dict(zip(params, args, strict=True)))
        return decoder(origin)
    return _failing(f"type hint {name} is not supported", name)


def _decode_items(dec: _Decoder, items: Iterable[Any]) -> list[Any]:
    try:
        return [dec(x) for x in items]
    except Fail:
        _locate(itertools.repeat(dec), items)
        raise


def _locate(decoders: Iterable[_Decoder], items: Iterable[Any]) -> None:
    """Decode again item by item to find, and add to the error, the failing position."""
    for index, (dec, item) in enumerate(zip(decoders, items, strict=False)):
        try:
            dec(item)
        except Fail as exc:
            exc.add(index)
            raise


def _seq_decoder(origin: Any, args: tuple[Any, ...], name: str) -> _Decoder:
    kind = _SEQUENCE_KINDS[origin]
    item = decoder(args[0] if args else Any)

    def decode_sequence(data: Any) -> Any:
        if type(data) not in _SEQUENCE_DATA:
            raise _mismatch(name, data)
        return kind(data if item is _identity else _decode_items(item, data))

    return decode_sequence


def _tuple_decoder(_origin: Any, args: tuple[Any, ...], name: str) -> _Decoder:
    if len(args) == 2 and args[1] is Ellipsis:  # noqa: PLR2004  (tuple[T, ...])
        return _seq_decoder(tuple, args[:1], name)
    decoders = tuple(decoder(a) for a in args if a != ())

    def decode_tuple(data: Any) -> tuple[Any, ...]:
        if type(data) not in _SEQUENCE_DATA:
            raise _mismatch(name, data)
        if len(data) != len(decoders):
            raise Fail(f"got {len(data)} items, expected {len(decoders)}", name)
        try:
            return tuple([dec(x) for dec, x in zip(decoders, data, strict=True)])
        except Fail:
            _locate(decoders, data)
            raise

    return decode_tuple


def _dict_decoder(_origin: Any, args: tuple[Any, ...], name: str) -> _Decoder:
    key_hint, value_hint = args or (Any, Any)
    keys, values = _key_decoder(key_hint), decoder(value_hint)

    def decode_dict(data: Any) -> dict[Any, Any]:
        if not isinstance(data, dict):
            raise _mismatch(name, data)
        if keys is _identity and values is _identity:
            return dict(data)
        try:
            return {keys(k): values(v) for k, v in data.items()}
        except Fail:
            for k, v in data.items():
                try:
                    keys(k)
                    values(v)
                except Fail as exc:
                    exc.add(k)
                    raise
            raise

    return decode_dict


def _key_decoder(hint: Any) -> _Decoder:
    if hint is str:  # JSON keys are always strings
        return _identity
    if hint is int:
        return _checked(int, "int", (str,), lambda tp, d: tp(d))
    plain = decoder(hint)
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
    decoders = tuple(decoder(m) for m in members)
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
            except Fail as exc:
                reasons.append(exc.reason)
        raise Fail(f"got {_describe(data)}, which fits no member ({'; '.join(reasons)})", name)

    return decode_union


def _literal_decoder(_origin: Any, args: tuple[Any, ...], name: str) -> _Decoder:
    choices = tuple((a.value if isinstance(a, enum.Enum) else a, a) for a in args)

    def decode_literal(data: Any) -> Any:
        for raw, value in choices:
            if data is value or (raw == data and type(raw) is type(data)):
                return value
        raise Fail(f"got {_describe(data)}, which is not one of the allowed values", name)

    return decode_literal


def _class_decoder(tp: type) -> _Decoder:
    name = hint_name(tp)
    for matches, factory in _CLASS_RULES:
        if matches(tp):
            return factory(tp, name)
    for base, accepted, convert in _SCALAR_RULES:
        if issubclass(tp, base):
            return _checked(tp, name, accepted, convert)
    return _failing(f"type hint {name} is not supported; supported are {SUPPORTED}", name)


def _checked(tp: Any, name: str, accepted: tuple[type, ...], convert: _Convert) -> _Decoder:
    def decode_checked(data: Any) -> Any:
        if type(data) is tp:
            return data
        if type(data) in accepted:
            try:
                return convert(tp, data)
            except (ValueError, TypeError, ArithmeticError) as exc:
                reason = f"got {_describe(data)}, which is not a valid {name}: {exc}"
                raise Fail(reason, name) from None
        if isinstance(data, tp) and type(data) is not bool:  # True is an int, but not here
            return data
        raise _mismatch(name, data)

    return decode_checked


def _timedelta(tp: Any, data: float | str) -> Any:
    """Seconds (a number, or a string of exact decimal seconds) as a timedelta."""
    if not isinstance(data, str):
        return tp(seconds=data)
    try:
        exact = decimal.Decimal(data)
    except decimal.InvalidOperation:
        exact = decimal.Decimal("NaN")
    if not exact.is_finite():
        msg = "a string must hold a finite decimal number of seconds"
        raise ValueError(msg)
    return tp(microseconds=int(exact.scaleb(6).to_integral_value(decimal.ROUND_HALF_EVEN)))


_SCALAR_RULES: tuple[tuple[type | tuple[type, ...], tuple[type, ...], _Convert], ...] = (
    (bool, (), lambda tp, d: tp(d)),  # before int, so that 0 and 1 are not taken for bools
    (int, (int,), lambda tp, d: tp(d)),
    (float, (int, float), lambda tp, d: tp(d)),
    (str, (str,), lambda tp, d: tp(d)),
    ((dt.date, dt.time), (str,), lambda tp, d: tp.fromisoformat(d)),  # datetime is a date
    (dt.timedelta, (int, float, str), _timedelta),
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
            raise Fail(f"got {_describe(data)}, not a value of {name} ({valid})", name) from None

    return decode_enum


def _pydantic_decoder(tp: Any, name: str) -> _Decoder:
    def decode_model(data: Any) -> Any:
        try:
            return tp.model_validate(data)
        except ValueError as exc:  # pydantic.ValidationError
            errors = exc.errors() if hasattr(exc, "errors") else []
            found = "; ".join(f"{'.'.join(map(str, e['loc'])) or '$'}: {e['msg']}" for e in errors)
            raise Fail(f"model validation failed: {found or exc}", name) from None

    return decode_model


def _record_decoder(tp: Any, name: str, bound: dict[Any, Any] | None = None) -> _Decoder:
    """Decode a dict (or, for a NamedTuple, a list) into the dataclass or NamedTuple ``tp``.

    ``bound``: the type variables of a parametrised generic (``Page[Order]``) and their
    arguments; its fields are decoded by them (an unbound type variable decodes as ``Any``).
    """
    as_list = is_namedtuple(tp)

    @functools.cache
    def fields() -> tuple[_FieldSpec, ...]:  # resolved at first use, so recursive types work
        return _record_fields(tp, name, bound or {})

    def decode_record(data: Any) -> Any:
        specs = fields()
        if as_list and type(data) is list:
            if len(data) > len(specs):
                raise Fail(f"got {len(data)} items for {len(specs)} fields", name)
            data = {f[0]: x for f, x in zip(specs, data, strict=False)}
        if not isinstance(data, dict):
            if isinstance(data, tp):
                return data
            raise _mismatch(name, data)
        try:
            return tp(**_decode_fields(specs, data))
        except (TypeError, ValueError) as exc:
            raise Fail(f"{name}(...) raised {type(exc).__name__}: {exc}", name) from None

    return decode_record


def _record_fields(tp: Any, name: str, bound: dict[Any, Any]) -> tuple[_FieldSpec, ...]:
    """List ``(name, hint name, decoder, required)`` for each field ``tp``'s constructor takes."""
    try:
        hints = typing.get_type_hints(tp, include_extras=True)
    except Exception as exc:  # noqa: BLE001  (annotations are user code; any failure is reported)
        raise Fail(f"cannot resolve the type hints of {name}: {exc!r}", name) from None
    if is_namedtuple(tp):
        specs = [(f, f not in tp._field_defaults) for f in tp._fields]
    else:
        missing = dataclasses.MISSING
        init = (f for f in dataclasses.fields(tp) if f.init)
        specs = [(f.name, f.default is missing and f.default_factory is missing) for f in init]
    if bound:
        hints = {n: _bind(hint, bound) for n, hint in hints.items()}
    return tuple(
        (n, hint_name(hints.get(n, Any)), decoder(hints.get(n, Any)), required)
        for n, required in specs
    )


def _bind(hint: Any, bound: dict[Any, Any]) -> Any:
    """``hint`` with the type variables in ``bound`` replaced: ``list[T]`` -> ``list[Order]``."""
    if isinstance(hint, TypeVar):
        return bound.get(hint, hint)
    params = getattr(hint, "__parameters__", ())
    if not params or isinstance(hint, type):
        return hint
    try:
        return hint[tuple(bound.get(p, p) for p in params)]
    except TypeError:  # a form that cannot be subscripted: its type variables stay Any
        return hint


def _decode_fields(fields: tuple[_FieldSpec, ...], data: dict[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for name, expected, dec, required in fields:
        if name in data:
            try:
                kwargs[name] = dec(data[name])
            except Fail as exc:
                exc.add(name)
                raise
        elif required:
            missing = Fail("required field is missing", expected)
            missing.add(name)
            raise missing
    return kwargs


_BARE: dict[type, Any] = {  # unparametrised containers hold undecoded items
    list: list[Any], tuple: tuple[Any, ...], set: set[Any], frozenset: frozenset[Any],
    dict: dict[Any, Any],
}  # fmt: skip
_CLASS_RULES: tuple[tuple[Callable[[type], bool], Callable[[Any, str], _Decoder]], ...] = (
    (lambda tp: issubclass(tp, enum.Enum), _enum_decoder),
    (is_pydantic, _pydantic_decoder),
    (lambda tp: dataclasses.is_dataclass(tp) or is_namedtuple(tp), _record_decoder),
    (typing.is_typeddict, lambda _tp, _name: decoder(dict[str, Any])),
    (lambda tp: tp in _BARE, lambda tp, _name: decoder(_BARE[tp])),
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
