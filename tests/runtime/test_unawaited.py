"""An activity called inside a workflow without ``await`` never runs: it gets a RuntimeWarning."""

from __future__ import annotations

import warnings

import pytest

import flowcore
from flowcore import Runtime, activity, workflow
from flowcore.testing import InMemoryJournal, VirtualClock

RAN: list[int] = []


@activity
async def un_charge(x: int) -> int:
    RAN.append(x)
    return x


@workflow
async def un_dropped(x: int) -> int:
    un_charge(x)  # the mistake: no await
    await flowcore.sleep(1)
    return 0


@workflow
async def un_held_then_awaited(x: int) -> int:
    call = un_charge(x)
    await flowcore.sleep(1)
    return await call


@workflow
async def un_held_never(x: int) -> int:
    call = un_charge(x)
    await flowcore.sleep(1)
    del call
    return 0


@workflow
async def un_fanned(x: int) -> list[int]:
    calls = [un_charge(i) for i in range(x)]
    one, two = await flowcore.first(un_charge(10), flowcore.sleep(5))
    return [*await flowcore.gather(*calls), one, two]


@workflow
async def un_kid(payload: dict[str, int]) -> int:
    return payload["x"]


@workflow
async def un_in_child_payload(x: int) -> int:
    return await flowcore.child(un_kid, {"x": un_charge(x)})  # type: ignore[dict-item]


@workflow
async def un_as_argument(x: int) -> int:
    return await un_charge(un_charge(x))  # type: ignore[arg-type]


@workflow
async def un_continued(x: int) -> int:
    flowcore.continue_as_new(un_charge(x))  # type: ignore[arg-type]
    return 0


async def _run(wf: object, payload: int) -> object:
    async with Runtime(journal=InMemoryJournal(), clock=VirtualClock()) as runtime:
        return await (await runtime.start(wf, payload)).result(timeout=10)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _clear_ran() -> None:
    RAN.clear()


class TestUnawaitedCall:
    async def test_dropped_call_warns(self):
        """A call dropped unawaited warns, naming the activity, the workflow and the fix."""
        with pytest.warns(RuntimeWarning) as caught:
            assert await _run(un_dropped, 7) == 0
        assert RAN == []
        messages = [str(w.message) for w in caught]
        assert messages == [
            (
                "activity 'un_charge' was called in workflow 'un_dropped' without await, so it "
                "never ran; write 'await un_charge(...)', or pass the call to flowcore.gather() "
                "or flowcore.first()"
            )
        ]
        assert caught[0].filename == __file__

    async def test_call_held_and_awaited_later_is_quiet(self):
        """A call kept in a variable and awaited after another await runs, without a warning."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert await _run(un_held_then_awaited, 3) == 3
        assert [str(w.message) for w in caught] == []
        assert RAN == [3]

    async def test_call_held_until_the_end_warns(self):
        """A call still not awaited when the workflow ends warns too."""
        expected = "'un_charge' was called in workflow 'un_held_never'"
        with pytest.warns(RuntimeWarning, match=expected):
            assert await _run(un_held_never, 1) == 0
        assert RAN == []

    async def test_gather_and_first_branches_are_quiet(self):
        """Calls handed to gather() or first() are awaited by them: no warning."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert await _run(un_fanned, 3) == [0, 1, 2, 0, 10]
        assert [str(w.message) for w in caught] == []
        assert sorted(RAN) == [0, 1, 2, 10]

    async def test_warning_as_error_does_not_break_the_engine(self, monkeypatch):
        """Under ``-W error`` the warning goes to sys.unraisablehook; the workflow runs on."""
        reported: list[BaseException | None] = []
        monkeypatch.setattr("sys.unraisablehook", lambda args: reported.append(args.exc_value))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert await _run(un_dropped, 7) == 0
        assert len(reported) == 1
        assert isinstance(reported[0], RuntimeWarning)
        assert "'un_charge' was called in workflow 'un_dropped'" in str(reported[0])


class TestCallPassedAsData:
    """A call passed on where a value belongs (a child's payload, an activity's argument, the
    next run's input) fails the workflow with a PayloadError that names the call and the fix."""

    @pytest.mark.parametrize(
        ("wf", "path"),
        [(un_in_child_payload, "$.x"), (un_as_argument, "$.args.x"), (un_continued, "$")],
    )
    async def test_the_error_names_the_call(self, wf, path):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the dropped call's own warning
            with pytest.raises(flowcore.WorkflowFailedError) as info:
                await _run(wf, 4)
        message = str(info.value)
        assert f"PayloadError: cannot serialise value at {path}: it is a call of activity " in (
            message
        )
        assert "'un_charge' that was never awaited, not its result: write 'await un_charge(" in (
            message
        )
        assert RAN == []
