"""Bad-input fuzzing (hypothesis): random JSON payloads, ids and event names through ``start``,
``send_event`` and the CLI either work or fail with a flowcore error, and the runtime stays healthy.

The HTTP API (flowcore.web) gets the same treatment in test_fuzz_http.py.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from typing import Any

import pytest
import structlog
from anyio.from_thread import start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flowcore
from flowcore import FlowcoreError, Runtime, WorkflowFinishedError, _cli
from flowcore._verify import verify_journal

EXAMPLES = 60
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
CLI_SETTINGS = settings(
    max_examples=EXAMPLES // 2,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()  # NaN and infinities included: they must be refused cleanly
    | st.text()
    | st.text(st.characters(categories=["Cs", "Cc"]), max_size=3)  # lone surrogates, NUL ...
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=25,
)
names = (
    st.text(max_size=40)
    | st.text(st.characters(categories=["Cs", "Cc"]), max_size=3)
    | st.sampled_from(["", " ", "go", "\x00", "é" * 600, "a/b", "\ud800"])
)


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    return True


@pytest.fixture
def workflows():
    @flowcore.workflow
    async def fz_echo(p: Any) -> Any:
        return p

    @flowcore.workflow
    async def fz_inbox(p: Any) -> Any:
        got = await flowcore.wait_event("go")
        return [p, got]

    return fz_echo, fz_inbox


def test_start_and_send_event_work_or_raise_flowcore_errors(tmp_path, workflows):
    """Random payloads, ids and event names: a result equal to the input, or a FlowcoreError."""
    echo, inbox = workflows
    db = tmp_path / "fuzz.db"
    with start_blocking_portal() as portal:
        rt = Runtime(db)
        portal.call(rt.open)
        try:
            portal.call(lambda: rt.start(inbox, None, id="target"))
            outcomes: dict[str, int] = {"ok": 0, "refused": 0}

            @SETTINGS
            @given(payload=json_values, wid=st.none() | names)
            def start_one(payload, wid):
                async def go():
                    handle = await rt.start(echo, payload, id=wid, if_exists="return")
                    return await handle.result(timeout=10)

                try:
                    result = portal.call(go)
                except FlowcoreError:
                    outcomes["refused"] += 1
                    return
                outcomes["ok"] += 1
                assert _finite(payload)
                if wid is None:
                    assert result == payload

            @SETTINGS
            @given(name=names, payload=json_values)
            def send_one(name, payload):
                try:
                    portal.call(rt.send_event, "target", name if name != "go" else "go!", payload)
                except FlowcoreError:
                    outcomes["refused"] += 1
                    return
                outcomes["ok"] += 1

            start_one()
            send_one()
            assert outcomes["ok"] > 0
            assert outcomes["refused"] > 0  # NaN, empty names ... were refused cleanly
            # Still healthy: the waiting workflow takes its event and a new start runs.
            portal.call(rt.send_event, "target", "go", {"n": 1})
            assert portal.call(lambda: rt.result("target", timeout=10)) == [None, {"n": 1}]
            with pytest.raises(WorkflowFinishedError):
                portal.call(rt.send_event, "target", "go", 2)
            handle = portal.call(lambda: rt.start(echo, {"still": "fine"}))
            assert portal.call(lambda: handle.result(timeout=10)) == {"still": "fine"}
        finally:
            portal.call(rt.close)
    assert verify_journal(db).ok


def test_cli_works_or_says_one_line(tmp_path, workflows):
    """Random --payload texts, ids, event names: exit 0, or exit 2 with one line, never a crash."""
    db = tmp_path / "cli.db"
    saved = structlog.get_config()
    outcomes: dict[int, int] = {}

    def cli(*args: str) -> int:
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = _cli.main([args[0], "--db", str(db), *args[1:]])
        assert code in (0, 1, 2), err.getvalue()
        if code == 2:
            lines = err.getvalue().strip().splitlines()
            assert len(lines) == 1, err.getvalue()
            assert "Traceback" not in err.getvalue()
        outcomes[code] = outcomes.get(code, 0) + 1
        return code

    texts = st.text(max_size=60) | json_values.map(json.dumps)

    @CLI_SETTINGS
    @given(text=texts, wid=names)
    def start_one(text, wid):
        cli("start", f"--payload={text}", *([f"--id={wid}"] if wid else []), "--", "fz_echo")

    @CLI_SETTINGS
    @given(name=names, text=texts)
    def send_one(name, text):
        cli("send-event", f"--payload={text}", "--", "fz-target", name if name != "go" else "go!")

    try:
        assert cli("start", "fz_inbox", "--id", "fz-target") == 0
        start_one()
        send_one()
    finally:
        structlog.configure(**saved)
    assert outcomes.get(0, 0) > 0
    assert outcomes.get(2, 0) > 0

    async def serve_queued() -> Any:
        # A runtime applies what the CLI queued (refusing bad requests) and stays healthy.
        async with Runtime(db) as rt:
            await rt.send_event("fz-target", "go", 7)
            return await rt.result("fz-target", timeout=10)

    with start_blocking_portal() as portal:
        assert portal.call(serve_queued) == [None, 7]
    assert verify_journal(db).ok
