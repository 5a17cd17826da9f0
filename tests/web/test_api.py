"""The JSON API over real HTTP: start, status, list with filters and pages, history, steering."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass

import httpx
import pytest

import flowcore
from flowcore import activity, workflow
from flowcore.testing import FakeClock
from flowcore.web import close_streams, create_app
from tests.helpers import assert_eventually
from tests.web.conftest import serve, web_app


@dataclass(frozen=True)
class WebOrder:
    sku: str
    qty: int


@dataclass(frozen=True)
class WebApproval:
    approver: str


@activity
async def web_api_reserve(order: WebOrder) -> str:
    return f"res-{order.sku}-{order.qty}"


@workflow
async def web_api_order(order: WebOrder) -> str:
    reservation = await web_api_reserve(order)
    approval = await flowcore.wait_event("approval", type=WebApproval)
    return f"{reservation} approved by {approval.approver}"


@workflow
async def web_api_quick(n: int) -> int:
    return n * 2


@workflow
async def web_api_no_input() -> int:
    return 1


@workflow
async def web_api_surrogate(text: str) -> str:
    flowcore.set_status("caf\u00e9 " + text)
    got = await flowcore.wait_event("more", type=str)
    return text + got + chr(0xDC00)


def _cursor(value: object) -> str:
    """A cursor as the API encodes one (base64 of JSON, unpadded), of any value."""
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


async def _finished(web, wid: str) -> dict:
    async def done() -> bool:
        return (await web.runtime.status(wid)).is_finished

    await assert_eventually(done)
    return (await web.client.get(f"/api/workflows/{wid}")).json()


async def _order_waiting_for_approval(web, wid: str, sku: str) -> None:
    """Start a ``web_api_order`` and wait until its typed approval wait is journaled."""
    await web.client.post(
        "/api/workflows",
        json={"workflow": "web_api_order", "input": {"sku": sku, "qty": 1}, "id": wid},
    )

    async def waiting() -> bool:
        rows = (await web.client.get(f"/api/workflows/{wid}/history")).json()
        return any(r["kind"] == "event_wait_started" for r in rows)

    await assert_eventually(waiting)


class TestStartAndSteer:
    async def test_start_approve_complete(self, web):
        """POST starts a workflow, an event approves it, the status shows the result."""
        r = await web.client.post(
            "/api/workflows",
            json={"workflow": "web_api_order", "input": {"sku": "a", "qty": 2}, "id": "o-1"},
        )
        assert r.status_code == 201, r.text
        assert r.json()["id"] == "o-1"
        assert r.json()["status"]["name"] == "web_api_order"
        r = await web.client.post(
            "/api/workflows/o-1/events", json={"name": "approval", "payload": {"approver": "ann"}}
        )
        assert r.status_code == 200, r.text
        status = await _finished(web, "o-1")
        assert status["status"] == "completed"
        assert status["output"] == "res-a-2 approved by ann"

    async def test_event_the_wait_cannot_take_is_422(self, web):
        """An event whose payload the pending typed wait cannot decode: 422, workflow waits on."""
        await _order_waiting_for_approval(web, "o-2", "a")
        r = await web.client.post(
            "/api/workflows/o-2/events", json={"name": "approval", "payload": {"who": "ann"}}
        )
        assert r.status_code == 422, r.text
        assert "waits for event 'approval' of this type" in r.json()["error"]
        r = await web.client.post(
            "/api/workflows/o-2/events", json={"name": "approval", "payload": {"approver": "ann"}}
        )
        assert r.status_code == 200, r.text
        assert (await _finished(web, "o-2"))["output"] == "res-a-1 approved by ann"

    async def test_event_a_suspended_wait_cannot_take_is_422(self, web):
        """A misfit event to a suspended instance with nothing held: 422, not a later failure.

        Before, any event to a suspended instance was accepted (200) and, on resume, took the
        wait and failed the workflow with PayloadError; the events sent after it were lost.
        """
        await _order_waiting_for_approval(web, "o-s", "s")
        await web.runtime.suspend("o-s")
        r = await web.client.post(
            "/api/workflows/o-s/events", json={"name": "approval", "payload": {"who": "ann"}}
        )
        assert r.status_code == 422, r.text
        assert "waits for event 'approval' of this type" in r.json()["error"]
        r = await web.client.post(
            "/api/workflows/o-s/events", json={"name": "approval", "payload": {"approver": "ann"}}
        )
        assert r.status_code == 200, r.text
        await web.runtime.resume("o-s")
        assert (await _finished(web, "o-s"))["output"] == "res-s-1 approved by ann"

    async def test_cancel(self, web):
        """POST .../cancel ends a waiting workflow canceled, with the reason in its history."""
        await web.client.post(
            "/api/workflows",
            json={"workflow": "web_api_order", "input": {"sku": "b", "qty": 1}, "id": "c-1"},
        )
        r = await web.client.post("/api/workflows/c-1/cancel", json={"reason": "changed my mind"})
        assert r.status_code == 200, r.text
        assert (await _finished(web, "c-1"))["status"] == "canceled"
        rows = (await web.client.get("/api/workflows/c-1/history")).json()
        cancel = next(r for r in rows if r["kind"] == "cancel_requested")
        assert cancel["data"]["reason"] == "changed my mind"
        assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))

    async def test_timeline(self, web):
        """The timeline groups the activity with its attempt and the event wait."""
        await web.client.post(
            "/api/workflows",
            json={"workflow": "web_api_order", "input": {"sku": "t", "qty": 1}, "id": "t-1"},
        )

        async def waiting() -> bool:
            data = (await web.client.get("/api/workflows/t-1/timeline")).json()
            return any(i["what"] == "wait_event" for i in data["items"])

        await assert_eventually(waiting)
        data = (await web.client.get("/api/workflows/t-1/timeline")).json()
        activity_item = next(i for i in data["items"] if i["what"] == "activity")
        assert activity_item["name"] == "web_api_reserve"
        assert activity_item["state"] == "completed"
        assert len(activity_item["attempts"]) == 1
        assert activity_item["duration"] >= 0
        assert data["status"]["status"] == "running"


class TestList:
    async def _start_quick(self, web, count: int) -> list[str]:
        ids = [f"q-{i}" for i in range(count)]
        for wid in ids:
            r = await web.client.post(
                "/api/workflows", json={"workflow": "web_api_quick", "input": 1, "id": wid}
            )
            assert r.status_code == 201
        for wid in ids:
            await _finished(web, wid)
        return ids

    async def test_pages_cover_everything_once(self, web):
        """Following next_cursor with limit=2 visits every instance once, newest first."""
        ids = await self._start_quick(web, 5)
        seen, cursor = [], None
        for _ in range(10):
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = (await web.client.get("/api/workflows", params=params)).json()
            assert len(page["items"]) <= 2
            seen += [i["id"] for i in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(seen) == sorted(ids)
        created = [s.created_at for s in await web.runtime.list(limit=10)]
        assert [s.id for s in await web.runtime.list(limit=10)] == seen
        assert created == sorted(created, reverse=True)

    async def test_pages_over_ties_in_created_at(self, db_path):
        """Instances created at the same instant are paged by id: none repeated, none missed."""
        async with flowcore.Runtime(db_path, clock=FakeClock()) as runtime:
            ids = [f"t-{i:02d}" for i in range(23)]
            for wid in ids:
                await runtime.start(web_api_quick, 1, id=wid)
            created = {s.created_at for s in await runtime.list(limit=100)}
            assert len(created) == 1
            app = create_app(runtime)
            async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
                seen, cursor = [], None
                for _ in range(30):
                    params = {"limit": 4, **({"cursor": cursor} if cursor else {})}
                    page = (await client.get("/api/workflows", params=params)).json()
                    seen += [item["id"] for item in page["items"]]
                    cursor = page["next_cursor"]
                    if cursor is None:
                        break
                close_streams(runtime)
        assert seen == sorted(ids, reverse=True)

    async def test_filters_and_counts(self, web):
        """Name, status and since filter the list; counts are per state."""
        await self._start_quick(web, 2)
        await web.client.post(
            "/api/workflows",
            json={"workflow": "web_api_order", "input": {"sku": "x", "qty": 1}, "id": "w"},
        )
        get = web.client.get
        assert [
            i["id"] for i in (await get("/api/workflows?name=web_api_order")).json()["items"]
        ] == ["w"]
        done = (await get("/api/workflows?status=completed")).json()["items"]
        assert sorted(i["id"] for i in done) == ["q-0", "q-1"]
        future = (await get("/api/workflows?since=2999-01-01T00:00")).json()["items"]
        assert future == []
        past = (await get("/api/workflows?since=2000-01-01T00:00:00%2B00:00")).json()["items"]
        assert len(past) == 3
        # a '+' left unencoded arrives as a space: still read as the offset
        r = await get("/api/workflows?since=2000-01-01T00:00:00+02:00")
        assert r.status_code == 200, r.text
        assert len(r.json()["items"]) == 3
        counts = (await get("/api/counts")).json()
        assert counts["completed"] == 2
        assert counts["running"] + counts["pending"] == 1
        assert (await get("/api/counts?name=web_api_quick")).json()["completed"] == 2


class TestIdsWithSlashes:
    @pytest.mark.parametrize("suffix", ["history", "timeline", "stream"])
    async def test_status_of_an_id_ending_like_a_route(self, web, suffix):
        """GET of an id ending in '/history' (its '/' sent as %2F) is that id's status record.

        Before, the '/history' route took it and answered with the history of the id before
        the slash (a 404, or another instance's rows): the status could not be read at all.
        """
        wid = f"r/{suffix}"
        r = await web.client.post(
            "/api/workflows", json={"workflow": "web_api_quick", "input": 2, "id": wid}
        )
        assert r.status_code == 201, r.text
        r = await web.client.get(f"/api/workflows/r%2F{suffix}")
        assert r.status_code == 200, r.text
        assert r.json()["id"] == wid
        await _finished(web, wid)
        rows = (await web.client.get(f"/api/workflows/r%2F{suffix}/history")).json()
        assert rows[-1]["kind"] == "workflow_completed"
        r = await web.client.get(f"/api/workflows/r%2F{suffix}/{suffix}")
        assert r.status_code == 200, r.text
        r = await web.client.get("/api/workflows/r%2Fnone")
        assert r.status_code == 404
        assert "'r/none'" in r.json()["error"]


class TestText:
    async def test_lone_surrogates_in_the_journal_are_served(self, web):
        """Values holding a lone surrogate (which UTF-8 cannot encode) come back escaped."""
        r = await web.client.post(  # httpx's json= cannot encode one: send escaped JSON
            "/api/workflows",
            content=json.dumps({"workflow": "web_api_surrogate", "input": "\ud800", "id": "s"}),
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 201, r.text
        r = await web.client.post("/api/workflows/s/events", json={"name": "more", "payload": "x"})
        assert r.status_code == 200, r.text
        status = await _finished(web, "s")
        assert status["output"] == "\ud800x\udc00"
        assert status["custom_status"] == "caf\u00e9 \ud800"
        for path in ("/api/workflows", "/api/workflows/s/history", "/api/workflows/s/timeline"):
            r = await web.client.get(path)
            assert r.status_code == 200, (path, r.text)
            assert r.content.isascii()
        history = (await web.client.get("/api/workflows/s/history")).json()
        assert history[-1]["data"]["result"] == "\ud800x\udc00"


class TestErrors:
    @pytest.mark.parametrize(
        ("method", "path", "body", "status", "needle"),
        [
            ("get", "/api/workflows/nope", None, 404, "nope"),
            ("get", "/api/workflows/nope/history", None, 404, "nope"),
            ("get", "/api/workflows/nope/stream", None, 404, "nope"),
            ("post", "/api/workflows/nope/events", {"name": "x"}, 404, "nope"),
            ("post", "/api/workflows", {"workflow": "no_such_flow"}, 422, "no_such_flow"),
            ("post", "/api/workflows", {"input": 1}, 422, "'workflow'"),
            ("post", "/api/workflows", {"workflow": "web_api_quick", "input": "x"}, 422, "$.input"),
            (
                "post",
                "/api/workflows",
                {"workflow": "web_api_no_input", "input": 1},
                422,
                "'web_api_no_input'",
            ),
            ("get", "/api/workflows?status=bogus", None, 422, "bogus"),
            ("get", "/api/workflows?cursor=!!", None, 422, "cursor"),
            ("get", "/api/workflows?cursor=WzEsMl0", None, 422, "invalid cursor 'WzEsMl0'"),
            # [1e400 as an integer, "x"]: float() of it overflows (it was a 500)
            ("get", "/api/workflows?cursor=" + _cursor([10**400, "x"]), None, 422, "cursor"),
            # NaN or infinity (Python's json reads them): no page was ever after it (it was [])
            ("get", "/api/workflows?cursor=" + _cursor([float("nan"), "x"]), None, 422, "cursor"),
            ("get", "/api/workflows?cursor=" + _cursor([float("inf"), "x"]), None, 422, "cursor"),
            ("get", "/api/workflows?limit=0", None, 422, "limit"),
            ("get", "/api/workflows?since=yesterday", None, 422, "ISO 8601"),
        ],
    )
    async def test_bad_requests(self, web, method, path, body, status, needle):  # noqa: PLR0917
        """Each bad request gets its status code and a message naming the problem."""
        r = await getattr(web.client, method)(path, **({"json": body} if body else {}))
        assert r.status_code == status, r.text
        assert needle in r.json()["error"]

    async def test_unknown_status_filter_names_the_states(self, web):
        """A status filter that is no state is a 422 that lists the states (it said only
        "'RUNNING' is not a valid WorkflowState", typed ValueError)."""
        r = await web.client.get("/api/workflows?status=RUNNING")
        assert r.status_code == 422, r.text
        assert r.json()["type"] == "InvalidField"
        assert "'RUNNING'" in r.json()["error"]
        assert "pending, running, parked" in r.json()["error"]

    @pytest.mark.parametrize(
        ("path", "body", "needle"),
        [
            ("/api/workflows", {"workflow": "web_api_quick", "payload": 1}, "'payload'"),
            ("/api/workflows/u/events", {"name": "approval", "data": {"a": 1}}, "'data'"),
            ("/api/workflows/u/cancel", {"why": "late"}, "'why'"),
        ],
    )
    async def test_unknown_fields_are_422_not_dropped(self, web, path, body, needle):
        """A misnamed field ('payload' for a start's 'input') is refused, naming the fields.

        Before, it was ignored: the start ran with input null, the event was committed with
        a null payload and the cancel without its reason, each answered as a success.
        """
        await web.runtime.start(web_api_order, WebOrder("u", 1), id="u")
        r = await web.client.post(path, json=body)
        assert r.status_code == 422, r.text
        assert r.json()["type"] == "InvalidField"
        assert needle in r.json()["error"]
        assert "expected" in r.json()["error"]
        assert [s.id for s in await web.runtime.list()] == ["u"]
        assert not any(e.kind == "event_received" for e in await web.runtime.history("u"))
        assert (await web.runtime.status("u")).status == "running"

    async def test_conflicts(self, web):
        """A duplicate id and an event to a finished workflow are 409s."""
        r = await web.client.post(
            "/api/workflows", json={"workflow": "web_api_quick", "input": 1, "id": "d"}
        )
        assert r.status_code == 201
        r = await web.client.post(
            "/api/workflows", json={"workflow": "web_api_quick", "input": 1, "id": "d"}
        )
        assert r.status_code == 409
        assert r.json()["type"] == "WorkflowAlreadyExistsError"
        await _finished(web, "d")
        r = await web.client.post("/api/workflows/d/events", json={"name": "late"})
        assert r.status_code == 409
        assert r.json()["type"] == "WorkflowFinishedError"

    async def test_if_exists_return_answers_200_with_the_existing_instance(self, web):
        """Starting an existing id with if_exists=return creates nothing: 200, not 201."""
        body = {"workflow": "web_api_quick", "input": 1, "id": "r", "if_exists": "return"}
        first = await web.client.post("/api/workflows", json=body)
        assert first.status_code == 201, first.text
        again = await web.client.post("/api/workflows", json={**body, "input": 2})
        assert again.status_code == 200, again.text
        assert again.json()["status"]["input"] == 1
        assert [s.id for s in await web.runtime.list()] == ["r"]

    async def test_if_exists_return_with_another_workflows_id_is_409(self, web):
        """if_exists=return on an id that another workflow holds is a 409, not its instance.

        Before, the answer was 200 with the other workflow's status, as if the start asked
        for had been made before: a client retrying its start took it for its own.
        """
        r = await web.client.post(
            "/api/workflows", json={"workflow": "web_api_quick", "input": 1, "id": "other"}
        )
        assert r.status_code == 201, r.text
        body = {"workflow": "web_api_no_input", "id": "other", "if_exists": "return"}
        r = await web.client.post("/api/workflows", json=body)
        assert r.status_code == 409, r.text
        assert r.json()["type"] == "WorkflowAlreadyExistsError"
        assert "'web_api_quick'" in r.json()["error"]

    async def test_concurrent_if_exists_return_starts_answer_one_201(self, web):
        """Of concurrent starts of one new id with if_exists=return, exactly one answers 201.

        Before, each checked for the id before starting, so several saw none and all said 201.
        """
        body = {"workflow": "web_api_quick", "input": 1, "id": "c", "if_exists": "return"}
        answers = await asyncio.gather(
            *(web.client.post("/api/workflows", json=body) for _ in range(10))
        )
        codes = sorted(r.status_code for r in answers)
        assert codes == [200] * 9 + [201], [r.text for r in answers]

    @pytest.mark.parametrize(
        ("method", "path", "status"),
        [
            ("delete", "/api/workflows/x", 405),
            ("put", "/api/workflows", 405),
            ("patch", "/api/workflows/x/cancel", 405),
            ("get", "/api/nope", 404),
        ],
    )
    async def test_unrouted_requests_get_the_json_error_shape(self, web, method, path, status):
        """A wrong method or an unknown path is answered in the API's error shape too.

        Before, Starlette's plain-text 'Method Not Allowed' / 'Not Found' broke clients that
        read ``error`` from every answer (the dashboard's own helper included).
        """
        r = await web.client.request(method.upper(), path)
        assert r.status_code == status
        assert r.headers["content-type"] == "application/json"
        assert set(r.json()) == {"error", "type"}
        if status == 405:
            assert "POST" in r.headers["allow"] or "GET" in r.headers["allow"]

    @pytest.mark.parametrize(
        ("method", "path", "needles"),
        [
            ("DELETE", "/api/workflows/x", ["DELETE", "/api/workflows/x", "GET"]),
            ("GET", "/api/workflows/x/cancel", ["GET", "POST"]),  # cancel is a POST
            ("GET", "/api/workflow", ["/api/workflow", "api/workflows"]),
        ],
    )
    async def test_unrouted_requests_say_what_to_send(self, web, method, path, needles):
        """A wrong method names the allowed ones; an unknown path points at the API's routes.

        Before, the error was only 'Method Not Allowed' or 'Not Found'.
        """
        r = await web.client.request(method, path)
        assert r.status_code in {404, 405}
        for needle in needles:
            assert needle in r.json()["error"], r.text

    async def test_an_unexpected_error_keeps_the_json_shape(self, web, monkeypatch):
        """A bug's 500 is JSON {error, type} too (it was Starlette's plain-text body), so
        clients and the dashboard can show it; the server still logs the traceback."""

        async def broken(wid):
            raise RuntimeError("boom")

        monkeypatch.setattr(web.runtime, "status", broken)
        r = await web.client.get("/api/workflows/x")
        assert r.status_code == 500
        assert r.headers["content-type"] == "application/json"
        assert r.json() == {
            "error": "internal error (RuntimeError: boom); the server's log has the traceback",
            "type": "InternalServerError",
        }

    async def test_invalid_json_is_422_with_the_reason(self, web):
        """A body that is not JSON gets a 422 saying where parsing failed."""
        r = await web.client.post(
            "/api/workflows", content=b'{"workflow": ', headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 422
        assert "invalid JSON" in r.json()["error"]
        assert "line 1 column" in r.json()["error"]
        r = await web.client.post("/api/workflows", json=[1, 2])
        assert r.status_code == 422
        assert "JSON object" in r.json()["error"]
        r = await web.client.post(
            "/api/workflows",
            content=b'{"workflow": NaN}',
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 422

    async def test_a_body_not_in_utf8_says_so(self, web):
        """A Latin-1 body is a 422 that asks for UTF-8 (it only quoted the codec's error)."""
        r = await web.client.post(
            "/api/workflows",
            content='{"workflow": "web_api_quick", "id": "caf\u00e9"}'.encode("latin-1"),
            headers={"Content-Type": "application/json; charset=latin-1"},
        )
        assert r.status_code == 422, r.text
        assert r.json()["type"] == "InvalidJSON"
        assert "send the JSON as UTF-8" in r.json()["error"]

    async def test_deeply_nested_json_is_422(self, web):
        """A body nested beyond the parser's depth is a 422, not a server error."""
        depth = 100_000
        body = b'{"name": "x", "payload": ' + b"[" * depth + b"]" * depth + b"}"
        r = await web.client.post(
            "/api/workflows/x/events", content=body, headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 422, r.text
        assert "nested too deeply" in r.json()["error"]

    async def test_body_must_be_declared_json(self, web):
        """A form post (what another web site could send) is refused with 415."""
        r = await web.client.post("/api/workflows/x/cancel", data={"reason": "x"})
        assert r.status_code == 415
        assert "application/json" in r.json()["error"]
        assert (await web.client.get("/api/counts")).json()["canceled"] == 0


class TestLimits:
    async def test_body_over_the_limit_is_413(self, db_path):
        """A body larger than max_body is refused with 413 and nothing is started."""
        async with web_app(db_path, max_body=200) as web:
            big = {"workflow": "web_api_quick", "input": 1, "id": "big", "pad": "x" * 500}
            r = await web.client.post("/api/workflows", json=big)
            assert r.status_code == 413
            assert "200 bytes" in r.json()["error"]

            async def chunks():
                yield b'{"workflow": "web_api_quick", "input": 1, "id": "big", "pad": "'
                yield b"x" * 500
                yield b'"}'

            r = await web.client.post(
                "/api/workflows", content=chunks(), headers={"Content-Type": "application/json"}
            )
            assert r.status_code == 413
            r = await web.client.post(
                "/api/workflows", json={"workflow": "web_api_quick", "input": 1, "id": "ok"}
            )
            assert r.status_code == 201
            assert [s.id for s in await web.runtime.list()] == ["ok"]


class TestMounting:
    async def test_mounted_under_a_prefix_with_lifespan(self, db_path):
        """Mounted with flowcore.lifespan, the API and the pages work under /flowcore."""
        from starlette.applications import Starlette
        from starlette.responses import PlainTextResponse
        from starlette.routing import Route

        from tests.web.conftest import serve

        async def owner(request):
            return PlainTextResponse(str(request.state.flowcore is runtime))

        runtime = flowcore.Runtime(db_path)
        outer = Starlette(lifespan=flowcore.lifespan(runtime), routes=[Route("/owner", owner)])
        outer.mount("/flowcore", create_app(runtime))
        async with serve(outer) as url, httpx.AsyncClient(base_url=url) as client:
            r = await client.post(
                "/flowcore/api/workflows", json={"workflow": "web_api_quick", "input": 3, "id": "m"}
            )
            assert r.status_code == 201, r.text
            assert (await runtime.result("m", timeout=10)) == 6
            assert (await client.get("/owner")).text == "True"  # the lifespan state
            page = await client.get("/flowcore/")
            assert page.status_code == 200
            assert 'src="static/list.js"' in page.text
            assert "script-src 'self'" in page.headers["content-security-policy"]
            js = await client.get("/flowcore/static/workflow.js")
            assert js.status_code == 200
            assert "innerHTML" not in js.text
        assert runtime._state == "closed"  # the lifespan closed it at shutdown
