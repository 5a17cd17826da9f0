"""An activity whose result does not decode by its return annotation names itself.

The result is journaled as returned (it is JSON); decoding it for the workflow fails where the
workflow awaits the call, with a PayloadError the workflow can catch. Its message says which
activity and step returned it, so the mismatch can be found without reading the journal.
"""

from __future__ import annotations

import pytest

import flowcore
from flowcore import PayloadError, Runtime, activity, workflow
from flowcore.journal.memory import InMemoryJournal

LIMIT = 10.0


@activity
async def rt_wrong(x: int) -> int:
    return f"not a number: {x}"  # type: ignore[return-value] - the mistake under test


@activity
async def rt_right(x: int) -> int:
    return x


@workflow
async def rt_single(x: int) -> str:
    try:
        await rt_wrong(x)
    except PayloadError as exc:
        return str(exc)
    return "decoded"


@workflow
async def rt_gathered(x: int) -> str:
    try:
        await flowcore.gather(rt_right(x), rt_wrong(x))
    except PayloadError as exc:
        return str(exc)
    return "decoded"


@pytest.mark.parametrize("flow", [rt_single, rt_gathered])
@pytest.mark.parametrize("dispatch", ["durable", "eager"])
async def test_a_result_that_does_not_decode_names_its_activity(flow, dispatch):
    """The workflow catches a PayloadError naming the activity, its step and the annotation."""
    async with Runtime(journal=InMemoryJournal(), dispatch=dispatch) as rt:
        message = await (await rt.start(flow, 7)).result(timeout=LIMIT)
    assert "cannot decode" in message
    assert "expected int" in message
    assert "the result of activity 'rt_wrong' at step" in message
