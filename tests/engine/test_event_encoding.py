"""The generated ``data`` encoders write exactly what the dict-based encoding wrote.

``encode_event_data`` writes each event kind with a generated function (no dict per event). The
stored bytes must not change: for every event kind and for values of every shape a field may
hold (the annotated type, subclasses, bools in int fields, non-finite floats, nested JSON, lone
surrogates, FailureInfo or its JSON form), the text and any error equal those of the reference
below, which is the encoding as it was: ``json_text`` of the dict of the fields but ``at``.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from flowcore.engine import events as ev
from flowcore.errors import FailureInfo


def reference(event: Any) -> str:
    """The encoding before the generated encoders.

    One dict of the fields, FailureInfo fields as their JSON, ``run`` left out at 1.
    """
    data = {f.name: getattr(event, f.name) for f in dataclasses.fields(event) if f.name != "at"}
    for f in dataclasses.fields(event):
        if f.type == "FailureInfo" and isinstance(data[f.name], FailureInfo):
            data[f.name] = data[f.name].to_json()
    if "run" in data and data["run"] == 1:
        del data["run"]
    return ev.json_text(data)


def outcome(fn: Any, event: Any) -> tuple[str, Any]:
    """The text, or the type and message of what was raised."""
    try:
        return "ok", fn(event)
    except Exception as exc:  # noqa: BLE001 - compared between both encoders
        return type(exc).__name__, str(exc)


class Text(str):
    """A str subclass."""

    __slots__ = ()


class Number(int):
    """An int subclass."""


class Color(enum.IntEnum):
    """An int enum (an int subclass with its own repr)."""

    RED = 1


class Unencodable:
    """Not JSON."""


FAILURE = FailureInfo(type_name="ValueError", message="bad \ud800 value", traceback="tb")

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["é", "\ud800", '"\\', "\x00", "ok", Text("sub"), Number(5), Color.RED, 1.0]),
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=4), inner, max_size=3),
    ),
    max_leaves=8,
)
ANY_VALUE = st.one_of(
    JSON,
    st.just(FAILURE),
    st.just(FAILURE.to_json()),
    st.just(Unencodable()),
    st.lists(st.just(Unencodable()), max_size=1),
)


@st.composite
def events(draw: st.DrawFn) -> Any:
    """An event of any kind, each field holding its usual type or something else."""
    cls = draw(st.sampled_from(list(ev.EVENT_TYPES.values())))
    values = {}
    for f in dataclasses.fields(cls):
        if f.name == "at":
            values["at"] = 1.0
        elif f.name == "run":
            values["run"] = draw(st.sampled_from([1, 2, 1.0, True, False, Number(1), 7]))
        else:
            values[f.name] = draw(ANY_VALUE)
    return cls(**values)


class TestEventData:
    """encode_event_data against the reference encoding."""

    @settings(max_examples=1500, deadline=None)
    @given(events())
    def test_same_text_or_error(self, event: Any) -> None:
        """Any event, whatever its fields hold, is written (or refused) as before."""
        assert outcome(ev.encode_event_data, event) == outcome(reference, event)

    @pytest.mark.parametrize("cls", list(ev.EVENT_TYPES.values()), ids=lambda c: c.kind)
    def test_typical_values(self, cls: type[Any]) -> None:
        """Each kind with well-typed values is written as before."""
        typed = {
            "int": 3,
            "str": "name é",
            "str | None": "parent",
            "bool": True,
            "float": 12.5,
            "float | None": 99.25,
            "Json": {"a": [1, 2.5, None, "x"]},
            "FailureInfo": FAILURE,
            "tuple[str, ...]": ("flag",),
        }
        values = {f.name: typed[str(f.type)] for f in dataclasses.fields(cls) if f.name != "at"}
        event = cls(at=1.0, **values)
        assert ev.encode_event_data(event) == reference(event)

    def test_run_left_out_at_its_default(self) -> None:
        """A first run does not store ``run``; a later one does."""
        first = ev.WorkflowStarted(at=1.0, name="w", version="1")
        later = dataclasses.replace(first, run=2)
        assert ev.encode_event_data(first) == (
            '{"name":"w","version":"1","input":null,"parent_id":null,"flags":[]}'
        )
        assert ev.encode_event_data(later).endswith(',"run":2}')

    def test_non_finite_floats(self) -> None:
        """Non-finite floats are written as JSON's extensions, as json_text writes them."""
        timer = ev.TimerScheduled(at=1.0, step=1, fire_at=math.inf)
        assert ev.encode_event_data(timer) == '{"step":1,"fire_at":Infinity}'

    def test_round_trip(self) -> None:
        """What is written decodes back to the same event."""
        event = ev.ActivityFailed(at=2.0, step=4, failure=FAILURE, attempts=3, timed_out=True)
        kind, data = ev.encode_event(event)
        assert ev.decode_event(kind, data, 2.0) == event

    def test_cycle_raises_value_error(self) -> None:
        """A payload containing itself is refused with json's ValueError, as before."""
        cycle: list[Any] = []
        cycle.append(cycle)
        event = ev.ActivityCompleted(at=1.0, step=1, result=cycle)
        assert outcome(ev.encode_event_data, event) == outcome(reference, event)
        assert outcome(reference, event)[0] == "ValueError"
