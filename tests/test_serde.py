"""Tests for flowcore.serde: the type-hint driven JSON codec."""

from __future__ import annotations

import datetime as dt
import enum
import inspect
import threading
import typing
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import (
    Annotated,
    Any,
    Generic,
    Literal,
    NamedTuple,
    NewType,
    Optional,
    TypeVar,
    Union,
)
from uuid import UUID

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowcore import serde
from flowcore.errors import PayloadError

T = TypeVar("T")
UserId = NewType("UserId", int)
ORDER_ID = UUID("12345678-1234-5678-1234-567812345678")
CREATED = dt.datetime(2026, 8, 1, 12, 30, 5, 123456, tzinfo=dt.UTC)


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Point(NamedTuple):
    x: int
    y: int = 0


@dataclass(frozen=True)
class Owner:
    name: str
    email: str | None = None


@dataclass(frozen=True)
class Item:
    sku: str
    price: Decimal
    colors: list[Color]
    owner: Owner | None = None


@dataclass(frozen=True)
class Order:
    id: UUID
    created: dt.datetime
    items: list[Item]
    reminders: list[dt.datetime] = field(default_factory=list)
    tags: frozenset[str] = frozenset()
    due: Optional[dt.date] = None  # noqa: UP045  (the Optional spelling is under test)


@dataclass
class Node:
    value: int
    children: list[Node] = field(default_factory=list)


@dataclass(frozen=True)
class Holder:
    thing: object


class Customer(pydantic.BaseModel):
    name: str
    joined: dt.datetime
    tags: list[str] = []


def make_order() -> Order:
    return Order(
        id=ORDER_ID,
        created=CREATED,
        items=[
            Item("A-1", Decimal("9.99"), [Color.RED, Color.GREEN], Owner("ann", "a@x.io")),
            Item("B-2", Decimal("0.10"), []),
        ],
        reminders=[CREATED, CREATED + dt.timedelta(days=1)],
        tags=frozenset({"rush", "gift"}),
        due=dt.date(2026, 9, 1),
    )


ROUND_TRIPS: list[tuple[Any, Any]] = [
    (None, None),
    (None, type(None)),
    (True, bool),
    (7, int),
    (2.5, float),
    ("héllo", str),
    ([1, 2, 3], list[int]),
    ((1, 2, 3), tuple[int, ...]),
    ((1, "a"), tuple[int, str]),
    ((), tuple[()]),
    ({3, 1, 2}, set[int]),
    (frozenset({"b", "a"}), frozenset[str]),
    ({"a": 1}, dict[str, int]),
    ({1: "a", 2: "b"}, dict[int, str]),
    ({ORDER_ID: 1}, dict[UUID, int]),
    ({Color.RED: 1}, dict[Color, int]),
    ({Level.HIGH: "h"}, dict[Level, str]),
    (None, Optional[int]),  # noqa: UP045
    (4, int | None),
    ("x", Union[int, str]),  # noqa: UP007
    ("b", Literal["a", "b"]),
    (Color.GREEN, Color),
    (Level.LOW, Level),
    (Color.RED, Literal[Color.RED]),
    (dt.datetime.fromisoformat("2026-01-02T03:04:05"), dt.datetime),  # naive
    (CREATED, dt.datetime),
    (dt.datetime(2026, 1, 2, tzinfo=dt.timezone(dt.timedelta(hours=-5))), dt.datetime),
    (dt.date(2026, 2, 28), dt.date),
    (dt.time(23, 59, 1, 5), dt.time),
    (dt.time(8, 0, tzinfo=dt.UTC), dt.time),
    (dt.timedelta(days=2, seconds=5, microseconds=7), dt.timedelta),
    (ORDER_ID, UUID),
    (Decimal("1.2300"), Decimal),
    (b"\x00\xffbytes", bytes),
    (Path("data/x.txt"), Path),
    (PurePosixPath("a/b"), PurePosixPath),
    (Point(3, 4), Point),
    (Owner("bob"), Owner),
    (make_order(), Order),
    (Node(1, [Node(2, [Node(3)]), Node(4)]), Node),
    (Customer(name="c", joined=CREATED, tags=["vip"]), Customer),
    (5, Annotated[int, "meta"]),
    (UserId(9), UserId),
    ([1, "a", None], list),
    ({"a": [1]}, dict),
    ((1, "a"), tuple),
    ([Owner("x"), None], list[Optional[Owner]]),  # noqa: UP045
]


class TestRoundTrip:
    @pytest.mark.parametrize(("value", "hint"), ROUND_TRIPS, ids=repr)
    def test_decode_of_encode_is_identity(self, value, hint):
        """Every supported value survives encode then decode with its precise hint."""
        assert serde.decode(serde.encode(value), hint) == value

    @pytest.mark.parametrize(("value", "hint"), ROUND_TRIPS, ids=repr)
    def test_survives_json_text(self, value, hint):
        """Every supported value survives dumps, loads and decode."""
        assert serde.decode(serde.loads(serde.dumps(value)), hint) == value

    def test_decoded_types_are_exact(self):
        """A nested dataclass comes back with the precise types of its fields."""
        order = serde.decode(serde.loads(serde.dumps(make_order())), Order)
        assert isinstance(order.id, UUID)
        assert isinstance(order.items[0].price, Decimal)
        assert order.items[0].colors == [Color.RED, Color.GREEN]
        assert order.reminders[1].tzinfo is dt.UTC
        assert isinstance(order.tags, frozenset)

    def test_future_annotations_are_resolved(self):
        """Dataclass fields written as strings (from __future__ import annotations) decode."""
        assert isinstance(Item.__annotations__["price"], str)
        item = serde.decode({"sku": "s", "price": "1.5", "colors": ["red"]}, Item)
        assert item == Item("s", Decimal("1.5"), [Color.RED])


class TestEncode:
    def test_plain_values_pass_through(self):
        """None, bool, int and str are returned unchanged."""
        for value in (None, True, 3, "s"):
            assert serde.encode(value) is value

    def test_dataclass_becomes_dict_of_fields(self):
        """A dataclass is encoded as a dict of its fields."""
        assert serde.encode(Owner("ann")) == {"name": "ann", "email": None}

    def test_namedtuple_becomes_dict_of_fields(self):
        """A NamedTuple is encoded as a dict of its fields."""
        assert serde.encode(Point(1, 2)) == {"x": 1, "y": 2}

    def test_enum_becomes_its_value(self):
        """An Enum member is encoded as its value."""
        assert serde.encode([Color.RED, Level.HIGH]) == ["red", 2]

    def test_aware_datetime_keeps_its_offset(self):
        """An aware datetime is encoded in ISO 8601 with its UTC offset."""
        assert serde.encode(CREATED) == "2026-08-01T12:30:05.123456+00:00"

    def test_naive_datetime_stays_naive(self):
        """A naive datetime is encoded without an offset."""
        assert serde.encode(dt.datetime.fromisoformat("2026-01-02T03:04")) == "2026-01-02T03:04:00"

    def test_timedelta_becomes_seconds(self):
        """A timedelta is encoded as its total seconds."""
        assert serde.encode(dt.timedelta(minutes=1, milliseconds=500)) == 60.5

    @pytest.mark.parametrize(
        "value",
        [
            dt.timedelta.max,
            dt.timedelta.min,
            dt.timedelta(days=200_000, microseconds=1),
            dt.timedelta(days=-200_000, microseconds=1),
        ],
    )
    def test_long_timedelta_keeps_every_microsecond(self, value):
        """A timedelta a float cannot hold exactly is written as exact seconds and comes back."""
        assert serde.decode(serde.encode(value), dt.timedelta) == value

    @given(st.timedeltas())
    def test_every_timedelta_round_trips(self, value):
        """Any timedelta decodes to itself, through JSON text."""
        assert serde.decode(serde.loads(serde.dumps(serde.encode(value))), dt.timedelta) == value

    def test_malformed_timedelta_string_is_a_payload_error(self):
        """A string that is not a number of seconds does not fit a timedelta."""
        with pytest.raises(PayloadError, match="finite decimal number of seconds"):
            serde.decode("soon", dt.timedelta)

    def test_bytes_become_base64(self):
        """Bytes are encoded as a base64 string."""
        assert serde.encode(b"hi") == "aGk="

    def test_sets_are_sorted(self):
        """A set of sortable items is encoded as a sorted list."""
        assert serde.encode({3, 1, 2}) == [1, 2, 3]

    def test_unsortable_sets_are_ordered_deterministically(self):
        """A set of mixed items is ordered by canonical JSON text."""
        assert serde.encode({"a", 1}) == serde.encode({1, "a"}) == ["a", 1]

    def test_dict_keys_become_strings(self):
        """Int, Enum and UUID dict keys are encoded as strings."""
        encoded = serde.encode({1: "a", Color.RED: "b", ORDER_ID: "c"})
        assert encoded == {"1": "a", "red": "b", str(ORDER_ID): "c"}

    def test_pydantic_model_uses_json_mode(self):
        """A pydantic model is encoded with model_dump(mode='json')."""
        encoded = serde.encode(Customer(name="c", joined=CREATED))
        assert encoded == {"name": "c", "joined": "2026-08-01T12:30:05.123456Z", "tags": []}

    def test_shared_references_are_not_cycles(self):
        """The same object appearing twice, without a cycle, encodes fine."""
        shared = [1]
        assert serde.encode({"a": shared, "b": shared}) == {"a": [1], "b": [1]}


class TestEncodeErrors:
    def test_unsupported_value_deep_in_dataclasses(self):
        """An unsupported value inside nested dataclasses is reported at its exact path."""
        order = Order(ORDER_ID, CREATED, [Item("a", Decimal(1), []), Holder(threading.Lock())])  # type: ignore[list-item]
        with pytest.raises(PayloadError) as info:
            serde.encode(order)
        assert info.value.path == "$.items[1].thing"
        assert "_thread.lock" in info.value.reason
        assert "supported are" in info.value.reason

    def test_unsupported_value_deep_in_containers(self):
        """Dict keys and list positions make up the path of an unsupported value."""
        with pytest.raises(PayloadError) as info:
            serde.encode({"items": [1, {"owner": object()}]})
        assert info.value.path == "$.items[1].owner"
        assert "values of type object are not supported" in str(info.value)

    def test_awaitables_are_not_data(self):
        """A coroutine or a future put in a payload is named as an awaitable to await first."""
        import asyncio

        async def fetch() -> int:
            return 1

        coro = fetch()
        try:
            with pytest.raises(PayloadError) as info:
                serde.encode({"x": [coro]})
        finally:
            coro.close()
        assert info.value.path == "$.x[0]"
        assert "values of type coroutine are awaitables, not data: await it" in info.value.reason
        loop = asyncio.new_event_loop()
        try:
            with pytest.raises(PayloadError, match=r"asyncio\.Future are awaitables"):
                serde.encode(loop.create_future())
        finally:
            loop.close()

    def test_non_identifier_keys_are_quoted(self):
        """A dict key that is not an identifier appears quoted in the path."""
        with pytest.raises(PayloadError) as info:
            serde.encode({"a b": [lambda: 1]})
        assert info.value.path == '$["a b"][0]'

    def test_path_prefix(self):
        """The path argument prefixes the reported path."""
        with pytest.raises(PayloadError) as info:
            serde.encode([object()], path="$.result")
        assert info.value.path == "$.result[0]"

    @pytest.mark.parametrize("value", [(x for x in ()), print, object, threading.Event()])
    def test_unsupported_kinds(self, value):
        """Generators, functions, classes and synchronisation objects are refused."""
        with pytest.raises(PayloadError, match="not supported"):
            serde.encode(value)

    def test_list_cycle(self):
        """A list that contains itself is reported as a cycle, not a RecursionError."""
        loop: list[Any] = [1]
        loop.append(loop)
        with pytest.raises(PayloadError) as info:
            serde.encode(loop)
        assert info.value.path == "$[1]"
        assert "cycle" in info.value.reason

    def test_dataclass_cycle(self):
        """A dataclass graph with a cycle is reported as a cycle."""
        root = Node(1)
        root.children.append(Node(2, [root]))
        with pytest.raises(PayloadError, match="cycle") as info:
            serde.encode(root)
        assert info.value.path == "$.children[0].children[0]"

    def test_excessive_nesting(self):
        """Nesting deeper than 200 levels is refused."""
        deep: list[Any] = []
        for _ in range(250):
            deep = [deep]
        with pytest.raises(PayloadError, match="deeper than 200"):
            serde.encode(deep)

    @pytest.mark.parametrize("number", [float("nan"), float("inf"), -float("inf")])
    def test_non_finite_floats(self, number):
        """NaN and infinities have no JSON form and are refused."""
        with pytest.raises(PayloadError, match="no JSON form") as info:
            serde.encode({"x": number})
        assert info.value.path == "$.x"

    def test_unsupported_dict_key(self):
        """A tuple dict key is refused and named in the path."""
        with pytest.raises(PayloadError, match="dict keys must be") as info:
            serde.encode({"m": {(1, 2): 3}})
        assert info.value.path == "$.m[(1, 2)]"

    def test_colliding_dict_keys(self):
        """Keys that encode to the same string are refused."""
        with pytest.raises(PayloadError, match="same string"):
            serde.encode({1: "a", "1": "b"})


class TestDecode:
    @pytest.mark.parametrize("hint", [Any, object, inspect.Parameter.empty, T])
    def test_no_hint_returns_data(self, hint):
        """Any, object and TypeVars return the data unchanged."""
        data = {"a": [1, 2]}
        assert serde.decode(data, hint) is data

    @pytest.mark.parametrize("data", [7, 2.5, "text", True])
    def test_scalar_of_the_hinted_type_is_returned_as_is(self, data):
        """A JSON scalar decoded by its own type is that very object."""
        assert serde.decode(data, type(data)) is data

    def test_bool_is_not_an_int(self):
        """A bool where an int is expected is refused (True is an int, but not here)."""
        with pytest.raises(PayloadError):
            serde.decode(True, int)

    def test_float_accepts_int(self):
        """An int decodes as a float where a float is expected."""
        value = serde.decode(3, float)
        assert value == 3.0
        assert type(value) is float

    def test_defaults_fill_missing_fields(self):
        """Fields absent from the data take their defaults."""
        assert serde.decode({"name": "x"}, Owner) == Owner("x")

    def test_unknown_fields_are_ignored(self):
        """Keys that are not fields are ignored (a removed field in old journals)."""
        assert serde.decode({"name": "x", "gone": 1}, Owner) == Owner("x")

    def test_namedtuple_from_list(self):
        """A NamedTuple also decodes from a list of its fields."""
        assert serde.decode([5], Point) == Point(5, 0)

    def test_instances_pass_through(self):
        """A value that already has the hinted class is returned as is."""
        owner = Owner("x")
        assert serde.decode(owner, Owner) is owner
        assert serde.decode(ORDER_ID, UUID) is ORDER_ID

    def test_union_first_match_wins(self):
        """A Union tries its members in order."""
        assert serde.decode(1, Union[float, int]) == 1.0  # noqa: UP007
        assert type(serde.decode(1, Union[int, float])) is int  # noqa: UP007

    def test_typeddict_decodes_as_dict(self):
        """A TypedDict hint yields a plain dict."""

        class Row(typing.TypedDict):
            a: int

        assert serde.decode({"a": 1}, Row) == {"a": 1}

    def test_decoders_are_cached(self):
        """The decoder for a hint is built once and reused."""
        assert serde._decoder(list[Order]) is serde._decoder(list[Order])


@dataclass(frozen=True)
class Page(Generic[T]):
    """A generic dataclass: its fields' types come from the alias it is decoded by."""

    items: list[T]
    first: T | None = None


class Pair(NamedTuple, Generic[T]):
    left: T
    right: T


class TestGenericRecords:
    def test_generic_dataclass_fields_decode_by_its_arguments(self):
        """Page[Owner] decodes its items as Owner, not as dicts (before: the TypeVar was Any)."""
        value = Page([Owner("ann", "a@x")], Owner("bob"))
        decoded = serde.decode(serde.encode(value), Page[Owner])
        assert decoded == value
        assert isinstance(decoded.first, Owner)

    def test_nested_generic_arguments(self):
        """Page[Page[dt.date]]: each level decodes by its own argument."""
        value = Page([Page([dt.date(2024, 2, 29)])])
        assert serde.decode(serde.encode(value), Page[Page[dt.date]]) == value

    def test_generic_namedtuple(self):
        """A generic NamedTuple's fields decode by its argument."""
        value = Pair(UUID(int=1), UUID(int=2))
        assert serde.decode(serde.encode(value), Pair[UUID]) == value

    def test_unparametrised_generic_keeps_data(self):
        """Without arguments the TypeVar stands for Any, as before."""
        assert serde.decode({"items": [{"a": 1}]}, Page) == Page([{"a": 1}])

    def test_a_misfit_is_located(self):
        """An item that does not fit the argument names its path."""
        with pytest.raises(PayloadError, match=r"\$\.items\[0\]"):
            serde.decode({"items": ["x"]}, Page[int])


class TestDecodeErrors:
    def test_wrong_scalar_names_path_and_hint(self):
        """A string where an int is expected names the path, the hint and the value."""
        with pytest.raises(PayloadError) as info:
            serde.decode({"value": 1, "children": [{"value": "x"}]}, Node)
        assert info.value.path == "$.children[0].value"
        assert info.value.hint == "int"
        assert (
            str(info.value)
            == "cannot decode value at $.children[0].value (expected int): got str 'x'"
        )

    def test_error_deep_in_order(self):
        """A bad enum value deep in a structure is reported at its exact path."""
        data = serde.encode(make_order())
        data["items"][1]["colors"] = ["red", "blue"]
        with pytest.raises(PayloadError, match="not a value of Color") as info:
            serde.decode(data, Order)
        assert info.value.path == "$.items[1].colors[1]"

    def test_missing_required_field(self):
        """A missing required field is named in the path."""
        with pytest.raises(PayloadError, match="required field is missing") as info:
            serde.decode({"sku": "s", "colors": []}, Item)
        assert info.value.path == "$.price"

    def test_bool_is_not_int(self):
        """True is not accepted where an int is expected, nor 1 where a bool is."""
        with pytest.raises(PayloadError, match="got bool True"):
            serde.decode(True, int)
        with pytest.raises(PayloadError, match="got int 1"):
            serde.decode(1, bool)

    def test_bad_dict_key(self):
        """A dict key that is not an int string is reported at that key."""
        with pytest.raises(PayloadError, match="not a valid int") as info:
            serde.decode({"1": "a", "x": "b"}, dict[int, str])
        assert info.value.path == "$.x"

    def test_fixed_tuple_length(self):
        """A fixed-size tuple rejects data of another length."""
        with pytest.raises(PayloadError, match="got 3 items, expected 2"):
            serde.decode([1, 2, 3], tuple[int, int])

    def test_union_without_match(self):
        """Data that fits no union member names the union."""
        with pytest.raises(PayloadError, match="fits no member") as info:
            serde.decode([1], Union[int, str])  # noqa: UP007
        assert info.value.hint == "Union[int, str]"

    def test_literal_mismatch(self):
        """A value outside a Literal is refused."""
        with pytest.raises(PayloadError, match="not one of the allowed values"):
            serde.decode("c", Literal["a", "b"])

    @pytest.mark.parametrize(
        ("data", "hint"),
        [("nope", dt.datetime), ("zz", UUID), ("1.2.3", Decimal), ("!!", bytes), (1, str)],
    )
    def test_invalid_scalars(self, data, hint):
        """Unparseable strings and wrong types are refused with a PayloadError."""
        with pytest.raises(PayloadError):
            serde.decode(data, hint)

    def test_pydantic_validation_error(self):
        """A pydantic validation failure becomes a PayloadError naming the field."""
        with pytest.raises(PayloadError, match="joined") as info:
            serde.decode({"c": {"name": "c", "joined": "never"}}, dict[str, Customer])
        assert info.value.path == "$.c"

    def test_unsupported_hint(self):
        """A hint the codec cannot build is reported when used."""
        with pytest.raises(PayloadError, match="not supported"):
            serde.decode(1, threading.Lock)

    def test_unresolvable_dataclass_hints(self):
        """A dataclass whose annotations cannot be resolved reports why."""

        @dataclass
        class Broken:
            x: Missing  # type: ignore[name-defined]  # noqa: F821

        with pytest.raises(PayloadError, match="cannot resolve the type hints"):
            serde.decode({"x": 1}, Broken)

    def test_path_prefix(self):
        """The path argument prefixes the reported path."""
        with pytest.raises(PayloadError) as info:
            serde.decode(["x"], list[int], path="$.result")
        assert info.value.path == "$.result[0]"


class TestJsonText:
    def test_dumps_is_compact_and_keeps_unicode(self):
        """dumps writes compact JSON and keeps non-ASCII characters."""
        assert serde.dumps({"a": [1, "é"]}) == '{"a":[1,"é"]}'

    def test_loads_rejects_invalid_json(self):
        """Invalid JSON text raises PayloadError."""
        with pytest.raises(PayloadError, match="invalid JSON"):
            serde.loads("{nope")

    def test_loads_rejects_nan(self):
        """NaN is not JSON and is refused."""
        with pytest.raises(PayloadError, match="NaN"):
            serde.loads("[NaN]")

    def test_dumps_rejects_unsupported(self):
        """dumps raises PayloadError for unsupported values."""
        with pytest.raises(PayloadError):
            serde.dumps(object())


def plain(a: int, b: str = "x") -> None:
    """Take two arguments."""


async def place(order: Order, *notes: Color, rush: bool = False, **extra: dt.date) -> Order:
    """Take an order, extra notes, a flag and dated extras."""
    return order


def unannotated(a, b=2):
    """Take arguments with no annotations."""


class Service:
    def __call__(self, when: dt.date) -> int:
        """Be a callable object."""
        return when.day


class TestSignatureHints:
    def test_resolves_string_annotations(self):
        """Hints written as strings are resolved to types."""
        _, hints, returns = serde.signature_hints(place)
        assert hints == {"order": Order, "notes": Color, "rush": bool, "extra": dt.date}
        assert returns is Order

    def test_none_return_is_none_type(self):
        """A `-> None` return is reported as NoneType."""
        assert serde.signature_hints(plain)[2] is type(None)

    def test_missing_annotations_are_any(self):
        """Unannotated parameters and returns are Any."""
        _, hints, returns = serde.signature_hints(unannotated)
        assert hints == {"a": Any, "b": Any}
        assert returns is Any

    def test_callable_object(self):
        """A callable object's hints come from its __call__."""
        signature, hints, returns = serde.signature_hints(Service())
        assert list(signature.parameters) == ["when"]
        assert hints == {"when": dt.date}
        assert returns is int

    def test_results_are_cached(self):
        """Repeated lookups return the same cached hints."""
        assert serde.signature_hints(place)[1] is serde.signature_hints(place)[1]


class TestArgs:
    def test_positional_and_keyword(self):
        """Positional and keyword arguments are encoded apart."""
        args, kwargs = serde.encode_args(plain, (1,), {"b": "y"})
        assert args == [1]
        assert kwargs == {"b": "y"}

    def test_no_kwargs_gives_none(self):
        """Empty keyword arguments encode to None."""
        assert serde.encode_args(plain, (1, "z"), {}) == ([1, "z"], None)

    def test_round_trip_with_varargs_and_varkw(self):
        """Extra positional and keyword arguments decode by the *args and **kwargs hints."""
        order = make_order()
        args, kwargs = serde.encode_args(
            place, (order, Color.RED, Color.GREEN), {"rush": True, "by": dt.date(2026, 1, 1)}
        )
        encoded = serde.loads(serde.dumps([args, kwargs]))
        decoded_args, decoded_kwargs = serde.decode_args(place, *encoded)
        assert decoded_args == (order, Color.RED, Color.GREEN)
        assert decoded_kwargs == {"rush": True, "by": dt.date(2026, 1, 1)}

    def test_defaults_are_left_to_the_call(self):
        """Omitted arguments stay omitted, so the function's defaults apply."""
        args, kwargs = serde.decode_args(plain, [1], None)
        assert (args, kwargs) == ((1,), {})

    def test_keyword_for_positional_parameter(self):
        """A positional parameter passed by keyword decodes by its hint."""
        _, kwargs = serde.decode_args(place, [], {"order": serde.encode(make_order())})
        assert kwargs["order"] == make_order()

    def test_encode_error_names_the_parameter(self):
        """An unsupported value inside an argument is reported under the parameter's name."""
        bad = Order(ORDER_ID, CREATED, [Item("a", Decimal(1), [], Owner(object()))])  # type: ignore[arg-type]
        with pytest.raises(PayloadError) as info:
            serde.encode_args(place, (bad,), {})
        assert info.value.path == "$.args.order.items[0].owner.name"

    def test_encode_error_in_varargs_and_varkw(self):
        """Extra arguments are named after the *args and **kwargs parameters."""
        with pytest.raises(PayloadError) as info:
            serde.encode_args(place, (make_order(), Color.RED, object()), {})
        assert info.value.path == "$.args.notes[1]"
        with pytest.raises(PayloadError) as info:
            serde.encode_args(place, (make_order(),), {"when": object()})
        assert info.value.path == "$.args.extra.when"

    def test_decode_error_names_the_parameter(self):
        """Data that does not fit a parameter's hint is reported under its name."""
        with pytest.raises(PayloadError) as info:
            serde.decode_args(plain, ["one"], None)
        assert info.value.path == "$.args.a"
        with pytest.raises(PayloadError) as info:
            serde.decode_args(place, [], {"rush": "yes"})
        assert info.value.path == "$.args.rush"

    def test_unannotated_arguments_pass_through(self):
        """Arguments without hints are returned as decoded JSON."""
        assert serde.decode_args(unannotated, [[1]], {"b": {"k": 2}}) == (([1],), {"b": {"k": 2}})


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


class TestProperties:
    @given(json_values)
    def test_json_text_round_trip(self, value):
        """Random JSON-ish data survives dumps then loads."""
        assert serde.loads(serde.dumps(value)) == value

    @given(json_values)
    def test_any_hint_round_trip(self, value):
        """Random JSON-ish data survives encode then decode with hint Any."""
        assert serde.decode(serde.encode(value), Any) == value
