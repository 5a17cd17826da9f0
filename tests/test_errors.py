"""Public exceptions behave as ordinary Python exceptions when users copy or send them."""

from __future__ import annotations

import copy
import pickle
from typing import TYPE_CHECKING

import pytest

from flowcore import errors

if TYPE_CHECKING:
    from collections.abc import Callable

_FAILURE = errors.FailureInfo.from_exception(ValueError("bad sku"))

SAMPLES: list[errors.FlowcoreError] = [
    errors.FlowcoreError("plain"),
    errors.UnknownVersionError("order", "3", ["1", "2"]),
    errors.WorkflowError("message", workflow_id="w1"),
    errors.WorkflowNotFoundError("w1"),
    errors.WorkflowAlreadyExistsError("w1", status="running"),
    errors.WorkflowCanceledError("canceled", workflow_id="w1"),
    errors.WorkflowFinishedError("w1", status="completed", action="cancel"),
    errors.WorkflowFailedError("w1", _FAILURE),
    errors.NondeterminismError(
        workflow_id="w1", workflow="order", step=2, recorded="activity 'a'", attempted="timer"
    ),
    errors.WorkflowMisuseError("misuse", workflow_id="w1"),
    errors.ActivityError(activity="charge", step=3, attempts=2, failure=_FAILURE),
    errors.ActivityTimeoutError(activity="charge", step=3, attempts=1, failure=_FAILURE),
    errors.PayloadError("not JSON", path="$.items[2]", hint="int"),
    errors.InvalidArgumentError("empty event name"),
    errors.JournalLockedError("flowcore.db", "pid 7 on host"),
]

COPIERS: dict[str, Callable[[object], object]] = {
    "pickle": lambda exc: pickle.loads(pickle.dumps(exc)),  # noqa: S301 - our own bytes
    "copy": copy.copy,
    "deepcopy": copy.deepcopy,
}


class TestCopyAndPickle:
    @pytest.mark.parametrize("how", sorted(COPIERS))
    @pytest.mark.parametrize("exc", SAMPLES, ids=lambda exc: type(exc).__name__)
    def test_round_trip_keeps_type_message_and_attributes(
        self, exc: errors.FlowcoreError, how: str
    ) -> None:
        """A copied or unpickled error has the same type, message and documented attributes."""
        back = COPIERS[how](exc)
        assert type(back) is type(exc)
        assert str(back) == str(exc)
        assert back.args == exc.args
        assert vars(back) == vars(exc)
