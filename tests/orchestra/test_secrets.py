"""The API key never appears in logs, output, errors or the journal, even when delivery fails."""

from __future__ import annotations

import logging
import sqlite3
from contextlib import closing

import pytest
import structlog

import flowcore
from flowcore import Runtime
from flowcore.orchestra import OrchestraConfigError, OrchestraReporter
from tests.helpers import assert_eventually
from tests.orchestra.test_reporter import orc_failing, orc_flow


def journal_bytes(db_path):
    return b"".join(p.read_bytes() for p in db_path.parent.glob(db_path.name + "*"))


async def test_key_never_leaks(db_path, server, run_id, api_key, reporter_args, caplog, capfd):  # noqa: PLR0917
    """Scan structlog events, stdlib logs (httpx included), stdout/stderr and the journal bytes."""
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    with structlog.testing.capture_logs() as logs:
        # Orchestra down: the reports stay in the journal's outbox.
        server.recorder.default = 503
        reporter = OrchestraReporter(drain_timeout=0.1, **reporter_args)
        texts += [repr(reporter), str(reporter), repr(reporter.config)]
        async with Runtime(db_path, listeners=[reporter]) as rt:
            await (await rt.start(orc_flow, 2)).result(timeout=10)
        with closing(sqlite3.connect(db_path)) as conn:
            assert conn.execute("SELECT count(*) FROM outbox").fetchone() == (5,)
        pending = journal_bytes(db_path)
        assert run_id.encode() in pending
        assert api_key.encode() not in pending
        # Back, but refusing, failing and hanging now and then.
        server.recorder.default = 200
        server.recorder.script = [500, "hang", 400, 401, 503]
        reporter_args["timeout"] = 0.3
        async with Runtime(db_path, listeners=[OrchestraReporter(**reporter_args)]) as rt:
            with pytest.raises(flowcore.WorkflowFailedError) as failed:
                await (await rt.start(orc_failing, 1)).result(timeout=10)
            texts.append(str(failed.value))
            await assert_eventually(lambda: len(server.recorder.acknowledged()) >= 8)
        try:
            OrchestraReporter(task_run_id="bad", api_key=api_key, env={})
        except OrchestraConfigError as exc:
            texts += [str(exc), repr(exc)]
    events = {e["event"] for e in logs}
    assert "orchestra refused a report; it is dropped" in events
    assert "orchestra report not delivered; retrying" in events
    assert any(e.startswith("orchestra reports left undelivered") for e in events)
    assert {r.authorization for r in server.recorder.requests} == {f"Bearer {api_key}"}
    out, err = capfd.readouterr()
    texts += [out, err, caplog.text, repr(logs)]
    for text in texts:
        assert api_key not in text
    assert api_key.encode() not in journal_bytes(db_path)
