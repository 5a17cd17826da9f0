"""Bad-input fuzzing of the HTTP API (flowcore.web) over real loopback HTTP, with hypothesis.

Random JSON bodies, raw bytes, ids and event names: every answer is a 2xx or a 4xx with a JSON
error (never a 5xx, never a dropped connection), and the runtime stays healthy afterwards.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from anyio.from_thread import start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flowcore
from flowcore._verify import verify_journal
from tests.chaos.test_fuzz import json_values, names

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from tests.web.conftest import web_app

SETTINGS = settings(
    max_examples=20, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
bodies = (
    json_values
    | st.fixed_dictionaries(
        {"workflow": st.sampled_from(["fz_http_echo", "nope", ""]) | json_values},
        optional={"input": json_values, "id": names | json_values, "if_exists": json_values},
    )
    | st.fixed_dictionaries({"name": names | json_values}, optional={"payload": json_values})
)


def _check(response: Any, seen: dict[int, int]) -> None:
    seen[response.status_code] = seen.get(response.status_code, 0) + 1
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400:
        assert "error" in json.dumps(response.json()).lower() or response.json()


def _path(wid: str) -> str:
    # A lone surrogate goes out as its (invalid UTF-8) bytes: what a hostile client can send.
    return "/api/workflows/" + quote(wid, safe="", errors="surrogatepass")


def _body(body: Any) -> dict[str, Any]:
    """Raw bytes as they are; JSON as ASCII text (``\\ud800`` escapes survive the client)."""
    if isinstance(body, bytes):
        return {"content": body}
    text = json.dumps(body)  # NaN and Infinity included, as Python writes them
    return {"content": text.encode(), "headers": {"content-type": "application/json"}}


def test_http_api_answers_4xx_never_5xx(db_path):
    """Random bodies, ids and names through start, events, cancel and status stay 2xx/4xx."""

    @flowcore.workflow
    async def fz_http_echo(p: Any) -> Any:
        got = await flowcore.wait_event("go")
        return [p, got]

    seen: dict[int, int] = {}
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(web_app(db_path)) as web,
    ):
        client = web.client

        def call(method: str, path: str, **kwargs: Any) -> Any:
            return portal.call(lambda: client.request(method, path, **kwargs))

        first = call("POST", "/api/workflows", json={"workflow": "fz_http_echo", "id": "target"})
        assert first.status_code == 201, first.text

        @SETTINGS
        @given(body=bodies | st.binary(max_size=50), wid=names)
        def one(body, wid):
            _check(call("POST", "/api/workflows", **_body(body)), seen)
            if isinstance(body, dict) and body.get("name") == "go":
                body = {**body, "name": "go!"}  # keep the target waiting
            raw = _body(body)
            _check(call("POST", _path("target") + "/events", **raw), seen)
            _check(call("POST", _path(wid) + "/events", **raw), seen)
            _check(call("GET", _path(wid)), seen)
            _check(call("POST", _path(wid) + "/cancel", **raw), seen)

        one()
        assert any(code < 300 for code in seen), seen
        assert any(400 <= code < 500 for code in seen), seen
        # Still healthy: the target takes its event, and a new start over HTTP runs.
        sent = call("POST", _path("target") + "/events", json={"name": "go", "payload": 1})
        assert sent.status_code == 200, sent.text
        assert portal.call(lambda: web.runtime.result("target", timeout=10)) == [None, 1]
        again = call("POST", "/api/workflows", json={"workflow": "fz_http_echo", "input": 2})
        assert again.status_code == 201, again.text
    assert verify_journal(db_path).ok
