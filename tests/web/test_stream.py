"""The SSE stream: live journal rows with ``id: seq``, resumption with Last-Event-ID, the end."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

import pytest

import flowcore
from flowcore import activity, workflow
from flowcore.web._stream import CommitSignal
from tests.helpers import assert_eventually


@dataclass
class Message:
    event: str = "message"
    id: str | None = None
    data: list[str] = field(default_factory=list)

    @property
    def row(self) -> dict:
        return json.loads("\n".join(self.data))


async def messages(response):
    """Parse an SSE response into messages (comments and retry lines skipped)."""
    current = Message()
    async for line in response.aiter_lines():
        if line == "":
            if current.data:
                yield current
            current = Message()
        elif line.startswith(":"):
            continue
        else:
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if key == "data":
                current.data.append(value)
            elif key == "id":
                current.id = value
            elif key == "event":
                current.event = value


def seq_of(message: Message) -> int:
    return int(message.id.partition("-")[0])


@activity
async def web_stream_step(n: int) -> int:
    return n + 1


@workflow
async def web_stream_flow(n: int) -> int:
    first = await web_stream_step(n)
    gate = await flowcore.wait_event("go", type=int)
    return await web_stream_step(first + gate)


async def _read_until(web, wid: str, kind: str, last_event_id: str | None = None):
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    got = []
    async with asyncio.timeout(10):
        async with web.client.stream(
            "GET", f"/api/workflows/{wid}/stream", headers=headers
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            async for message in messages(response):
                got.append(message)
                if message.event == "end" or (
                    message.event == "message" and message.row["kind"] == kind
                ):
                    break
    return got


class TestStream:
    async def test_live_then_resume_with_last_event_id(self, web):
        """A client that reconnects with Last-Event-ID gets what it missed, nothing twice."""
        await web.runtime.start(web_stream_flow, 1, id="s-1")
        first = await _read_until(web, "s-1", "event_wait_started")
        ids = [seq_of(m) for m in first]
        assert ids == list(range(1, len(ids) + 1))
        assert [m.row["seq"] for m in first] == ids
        assert first[0].row["kind"] == "workflow_started"
        # disconnected; meanwhile the workflow moves on
        await web.runtime.send_event("s-1", "go", 10)
        assert await web.runtime.result("s-1", timeout=10) == 13
        rest = await _read_until(web, "s-1", "workflow_completed", last_event_id=first[-1].id)
        data = [m for m in rest if m.event == "message"]
        assert seq_of(data[0]) == ids[-1] + 1  # exactly where it left off
        assert data[-1].row["kind"] == "workflow_completed"
        assert data[-1].row["data"]["result"] == 13
        history = (await web.client.get("/api/workflows/s-1/history")).json()
        assert [m.row for m in first + data] == history

    async def test_stream_follows_new_commits(self, web):
        """Events committed while a client listens arrive on the open stream, then it ends."""
        await web.runtime.start(web_stream_flow, 5, id="s-2")
        got: list[Message] = []

        async def listen():
            async with web.client.stream("GET", "/api/workflows/s-2/stream") as response:
                async for message in messages(response):
                    got.append(message)
                    if message.event == "end":
                        return

        listener = asyncio.create_task(listen())

        async def waiting():
            return any(m.event == "message" and m.row["kind"] == "event_wait_started" for m in got)

        await assert_eventually(waiting)
        await web.client.post("/api/workflows/s-2/events", json={"name": "go", "payload": 1})
        async with asyncio.timeout(10):
            await listener
        kinds = [m.row["kind"] for m in got if m.event == "message"]
        assert kinds.index("event_received") > kinds.index("event_wait_started")
        assert kinds[-1] == "workflow_completed"
        assert got[-1].event == "end"
        assert json.loads(got[-1].data[0])["kind"] == "workflow_completed"

    async def test_resume_after_the_end_ends_at_once(self, web):
        """Reconnecting after the last event of a finished workflow gets only the end."""
        await web.runtime.start(web_stream_flow, 1, id="s-3")
        await web.runtime.send_event("s-3", "go", 0)
        await web.runtime.result("s-3", timeout=10)
        last = len(await web.runtime.history("s-3"))
        got = await _read_until(web, "s-3", "none", last_event_id=str(last))
        assert [m.event for m in got] == ["end"]

    async def test_head_answers_at_once_and_frees_the_connection(self, web):
        """HEAD on the stream of a waiting workflow ends its response with the headers.

        Before, the server kept streaming (bodiless) until the workflow ended: the client had
        its answer, but the next request on that kept-alive connection hung unanswered.
        """
        await web.runtime.start(web_stream_flow, 1, id="s-head")
        async with asyncio.timeout(5):
            r = await web.client.head("/api/workflows/s-head/stream")
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            assert (await web.client.get("/api/workflows/s-head")).status_code == 200
        assert (await web.client.head("/api/workflows/nope/stream")).status_code == 404

    async def test_continue_as_new_resets_a_resumed_stream(self, web):
        """Resuming into a newer run (continue-as-new) gets a reset, then the new run from 1."""
        await web.runtime.start(web_stream_loop, 0, id="s-5")
        first = await _read_until(web, "s-5", "event_wait_started")
        await web.runtime.send_event("s-5", "next")

        async def second_run() -> bool:
            history = await web.runtime.history("s-5")
            return history[0].input == 1 and history[-1].kind == "event_wait_started"

        await assert_eventually(second_run)
        # the new run is as long as what the client saw: only the run id tells them apart
        assert len(await web.runtime.history("s-5")) == seq_of(first[-1])
        again = await _read_until(web, "s-5", "event_wait_started", last_event_id=first[-1].id)
        assert again[0].event == "reset"
        rows = [m.row for m in again[1:]]
        assert rows[0]["seq"] == 1
        assert rows[0]["kind"] == "workflow_started"
        assert rows[0]["data"]["input"] == 1
        assert again[1].id.partition("-")[2] != first[-1].id.partition("-")[2]

    async def test_bad_last_event_id(self, web):
        """A Last-Event-ID that is not a position is a 422."""
        await web.runtime.start(web_stream_flow, 1, id="s-4")
        r = await web.client.get("/api/workflows/s-4/stream", headers={"Last-Event-ID": "x"})
        assert r.status_code == 422
        assert r.json()["error"].startswith("Last-Event-ID must be")
        r = await web.client.get("/api/workflows/s-4/stream?after=abc")
        assert r.status_code == 422
        assert r.json()["error"].startswith("?after must be")

    @pytest.mark.parametrize("position", ["9" * 20, "\u00b2", "\u0663"])
    async def test_a_position_sqlite_cannot_hold_is_422(self, web, position):
        """A Last-Event-ID or ?after past SQLite's integers (or not in ASCII digits) is a 422.

        Before, a position over 2**63 - 1 passed the check, then failed the stream's query
        after the 200 (an empty stream, a traceback in the log, and an EventSource that
        reconnected with it every second for ever); a superscript digit was int()'s error.
        """
        await web.runtime.start(web_stream_flow, 1, id="s-6")
        for headers, query, source in (
            ({"Last-Event-ID": position.encode()}, "", "Last-Event-ID"),
            ({}, f"?after={position}", "?after"),
        ):
            r = await web.client.get(f"/api/workflows/s-6/stream{query}", headers=headers)
            assert r.status_code == 422, r.text
            assert r.json()["error"].startswith(f"{source} must be")


@workflow
async def web_stream_loop(n: int) -> int:
    await flowcore.wait_event("next")
    if n < 1:
        flowcore.continue_as_new(n + 1)
    return n


class TestRunSnapshot:
    async def test_a_continue_as_new_between_reads_is_never_mixed(self, db_path, monkeypatch):
        """A new run committed while the stream reads never passes for the old one.

        The commit is made right after the journal's first read of the stream's step, the
        instant where reading the run's first row apart from the rows after it went wrong.
        """
        from flowcore.web._queries import events_after

        async with flowcore.Runtime(db_path) as runtime:
            await runtime.start(web_stream_loop, 0, id="m")

            async def waits() -> bool:
                return (await runtime.history("m"))[-1].kind == "event_wait_started"

            await assert_eventually(waits)
            before = await events_after(runtime, "m", 1)
            journal = runtime._journal
            real_read = journal._read
            calls = 0

            async def read_then_continue_as_new(sql, params):
                nonlocal calls
                rows = await real_read(sql, params)
                calls += 1
                if calls == 1:
                    await runtime.send_event("m", "next")

                    async def second_run() -> bool:
                        history = await runtime.history("m")
                        return history[0].input == 1 and len(history) == 2

                    await assert_eventually(second_run)
                return rows

            monkeypatch.setattr(journal, "_read", read_then_continue_as_new)
            got = await events_after(runtime, "m", 1)
            monkeypatch.undo()
            now = await events_after(runtime, "m", 1)
        assert now.run != before.run
        assert (got.run, got.events) in [(before.run, before.events), (now.run, now.events)]


class TestCommitSignal:
    async def test_wait_returns_on_notify_not_on_timeout(self):
        """A waiter wakes on the next commit; a commit it has not seen returns at once."""
        signal = CommitSignal()
        seen = signal.generation
        waiter = asyncio.create_task(signal.wait(seen, timeout=30))
        await asyncio.sleep(0)
        signal.notify()
        async with asyncio.timeout(1):
            assert await waiter is True
        assert await signal.wait(seen, timeout=30) is True  # generation moved on
        assert await signal.wait(signal.generation, timeout=0.01) is False

    async def test_runtime_commits_notify(self, db_path):
        """The runtime's commit hook bumps the generation for every commit."""
        from flowcore.web._stream import commit_signal

        async with flowcore.Runtime(db_path) as runtime:
            signal = commit_signal(runtime)
            before = signal.generation
            await runtime.start(web_stream_flow, 1, id="g")
            assert signal.generation > before
