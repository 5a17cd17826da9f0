"""Which engine values are frozen: every event, every command but ScheduleActivity.

ScheduleActivity is made per activity call and is internal (engine -> runtime), so it is a
plain slotted dataclass; the journal's events, which users see, stay frozen.
"""

from __future__ import annotations

import dataclasses
import typing

import pytest

from flowcore import activity
from flowcore.engine import commands as cmd
from flowcore.engine import events as ev
from flowcore.engine.executor import _as_recorded


@activity
def values_echo(x: int) -> int:
    return x


COMMANDS = [c for c in typing.get_args(cmd.Command) if c is not cmd.ScheduleActivity]


def schedule(**changes: object) -> cmd.ScheduleActivity:
    fields: dict[str, object] = {
        "step": 1,
        "activity": values_echo,
        "args": (1,),
        "kwargs": {},
        "encoded_args": [1],
        "encoded_kwargs": None,
        "op": "1",
    }
    return cmd.ScheduleActivity(**{**fields, **changes})


class TestFrozen:
    @pytest.mark.parametrize("cls", list(ev.EVENT_TYPES.values()), ids=lambda c: c.kind)
    def test_events_are_frozen(self, cls: type) -> None:
        """Every journal event refuses assignment."""
        assert cls.__dataclass_params__.frozen

    @pytest.mark.parametrize("cls", COMMANDS, ids=lambda c: c.__name__)
    def test_other_commands_are_frozen(self, cls: type) -> None:
        """Every command but ScheduleActivity refuses assignment."""
        assert cls.__dataclass_params__.frozen


class TestScheduleActivity:
    def test_compares_by_value(self) -> None:
        """Two commands with the same fields are equal; another step is not."""
        assert schedule() == schedule()
        assert schedule() != schedule(step=2)

    def test_recorded_copy_leaves_the_original(self) -> None:
        """Marking a command recorded (on replay) makes a copy."""
        original = schedule()
        copy = _as_recorded(original)
        assert (copy.recorded, original.recorded) == (True, False)
        assert dataclasses.replace(copy, recorded=False) == original

    def test_no_new_attributes(self) -> None:
        """Slots: a misspelt attribute cannot be added."""
        command = schedule()
        with pytest.raises(AttributeError):
            command.stpe = 3  # type: ignore[attr-defined]
