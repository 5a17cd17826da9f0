"""A context variable an activity body sets stays in that activity.

Under eager dispatch an outcome is applied in the activity's own task (no loop callback): the
workflow code it resumes and the next activity it starts must still not see what the activity
body set (they did, through the task's shared context).
"""

from __future__ import annotations

import contextvars
from typing import Any

import pytest

from flowcore import Runtime, activity, workflow
from flowcore.journal.memory import InMemoryJournal

LIMIT = 10.0

acl_tag: contextvars.ContextVar[str] = contextvars.ContextVar("acl_tag", default="unset")


@pytest.mark.parametrize("dispatch", ["eager", "durable"])
async def test_an_activity_context_variable_does_not_leak(dispatch):
    @activity
    async def acl_set(tag: str) -> str:
        before = acl_tag.get()
        acl_tag.set(tag)
        return before

    @workflow
    async def acl_flow() -> Any:
        seen = [await acl_set("one"), acl_tag.get()]
        seen += [await acl_set("two"), acl_tag.get()]
        return seen

    async with Runtime(journal=InMemoryJournal(), dispatch=dispatch) as rt:
        result = await (await rt.start(acl_flow)).result(timeout=LIMIT)
    assert result == ["unset"] * 4
