"""``quick_init``: frozen values built on the hot path behave as the dataclass made them.

Events, the frozen commands, ``StatusRow`` and ``Append`` get an ``__init__`` that stores each
field through its slot instead of ``object.__setattr__``. Their signature, the values they hold,
equality, hashing and frozenness must be what the plain dataclass gives.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest

from flowcore._frozen import quick_init, quick_new
from flowcore._status import WorkflowStatus
from flowcore.engine import commands as cmd
from flowcore.engine import events as ev
from flowcore.journal.base import Append, StatusRow

QUICK: list[type[Any]] = [
    *ev.EVENT_TYPES.values(),
    cmd.StartTimer,
    cmd.WaitForEvent,
    cmd.StartChild,
    cmd.SetCustomStatus,
    cmd.CancelTimer,
    cmd.CancelActivity,
    cmd.CancelChild,
    cmd.CompleteWorkflow,
    cmd.FailWorkflow,
    cmd.CancelWorkflow,
    cmd.ContinueAsNew,
    StatusRow,
    Append,
    WorkflowStatus,
]


def reference(cls: type[Any]) -> type[Any]:
    """The same fields in a plain frozen slotted dataclass (its generated ``__init__``)."""
    spec = [
        (f.name, f.type, dataclasses.field(default=f.default, kw_only=f.kw_only))
        for f in dataclasses.fields(cls)
    ]
    return dataclasses.make_dataclass(cls.__name__, spec, frozen=True, slots=True)


def sample(cls: type[Any]) -> dict[str, Any]:
    """A distinct value for every field."""
    return {f.name: (f.name, index) for index, f in enumerate(dataclasses.fields(cls))}


@pytest.mark.parametrize("cls", QUICK, ids=lambda c: c.__name__)
class TestQuickValues:
    def test_signature_is_the_dataclass_one(self, cls):
        """Parameters, their kinds and defaults are those the dataclass generated."""
        assert inspect.signature(cls) == inspect.signature(reference(cls))

    def test_fields_hold_what_was_passed(self, cls):
        """Every field holds its argument; unpassed ones hold their defaults."""
        values = sample(cls)
        made = cls(**values)
        assert {name: getattr(made, name) for name in values} == values
        required = {
            f.name: values[f.name]
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING
        }
        plain = reference(cls)(**required)
        assert dataclasses.astuple(cls(**required)) == dataclasses.astuple(plain)

    def test_still_frozen_equal_and_hashable(self, cls):
        """Assignment raises FrozenInstanceError; equal values compare and hash alike."""
        values = sample(cls)
        made = cls(**values)
        with pytest.raises(dataclasses.FrozenInstanceError):
            made.__setattr__(next(iter(values)), None)
        assert made == cls(**values)
        assert hash(made) == hash(cls(**values))

    def test_missing_argument_is_a_type_error(self, cls):
        """Leaving out a required field raises TypeError, as before."""
        with pytest.raises(TypeError):
            cls()


class TestQuickInitRefuses:
    def test_a_mutable_dataclass(self):
        """Only frozen slotted dataclasses are accepted."""

        @dataclasses.dataclass(slots=True)
        class Mutable:
            x: int

        with pytest.raises(TypeError, match="frozen slotted"):
            quick_init(Mutable)

    def test_post_init(self):
        """A ``__post_init__`` would be skipped: refused."""

        @dataclasses.dataclass(frozen=True, slots=True)
        class Checked:
            x: int

            def __post_init__(self) -> None:
                pass

        with pytest.raises(TypeError, match="__post_init__"):
            quick_init(Checked)

    def test_default_factory(self):
        """A default factory would be shared: refused."""

        @dataclasses.dataclass(frozen=True, slots=True)
        class Listed:
            items: list[int] = dataclasses.field(default_factory=list)

        with pytest.raises(TypeError, match="default factory"):
            quick_init(Listed)


class TestQuickNew:
    @pytest.mark.parametrize("cls", QUICK, ids=lambda c: c.__name__)
    def test_builds_what_the_class_builds(self, cls):
        """The factory takes the class's arguments and returns an equal instance of it."""
        new = quick_new(cls)
        values = sample(cls)
        made = new(**values)
        assert type(made) is cls
        assert made == cls(**values)
        parameters = inspect.signature(reference(cls)).parameters
        assert inspect.signature(new).parameters == parameters

    @pytest.mark.parametrize("cls", QUICK, ids=lambda c: c.__name__)
    def test_what_it_builds_is_frozen(self, cls):
        """Its values refuse assignment and hash like the class's (also those built as twins)."""
        values = sample(cls)
        made = quick_new(cls)(**values)
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(made, next(iter(values)), None)
        assert hash(made) == hash(cls(**values))
        assert repr(made) == repr(cls(**values))

    def test_refuses_what_quick_init_refuses(self):
        """A mutable dataclass has no factory."""

        @dataclasses.dataclass(slots=True)
        class Mutable:
            x: int

        with pytest.raises(TypeError, match="frozen slotted"):
            quick_new(Mutable)
