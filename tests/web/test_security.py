"""Safety: the bearer token on every route, the loopback rule for steering, serve --http."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from urllib.parse import quote

import httpx
import pytest

from flowcore import Runtime, workflow
from flowcore.web import create_app
from tests.helpers import assert_eventually
from tests.web.conftest import web_app

TOKEN = "s3cret-token-for-tests"  # noqa: S105 - a test token


@workflow
async def web_sec_flow(n: int) -> int:
    return n


class TestToken:
    @pytest.mark.parametrize(
        "path",
        ["/", "/workflow?id=x", "/static/list.js", "/api/workflows", "/api/counts",
         "/api/workflows/x", "/api/workflows/x/stream"],
    )  # fmt: skip
    async def test_every_route_needs_it(self, db_path, path):
        """Without the token every route answers 401 and shows no data."""
        async with web_app(db_path, token=TOKEN) as web:
            r = await web.client.get(path)
            assert r.status_code == 401
            assert r.headers["www-authenticate"] == "Bearer"
            assert TOKEN not in r.text

    async def test_header_and_cookie(self, db_path):
        """The right bearer header or cookie passes; a wrong one is refused."""
        async with web_app(db_path, token=TOKEN) as web:
            wrong = await web.client.get("/api/counts", headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            assert "wrong token" in wrong.json()["error"]
            ok = await web.client.get("/api/counts", headers={"Authorization": f"Bearer {TOKEN}"})
            assert ok.status_code == 200
            r = await web.client.post(
                "/api/workflows",
                json={"workflow": "web_sec_flow", "input": 1, "id": "t"},
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
            assert r.status_code == 201
            page = await web.client.get("/", headers={"Cookie": f"flowcore_token={TOKEN}"})
            assert page.status_code == 200
            assert "list.js" in page.text

    @pytest.mark.parametrize(
        "others",
        ['g_state={"i_l":0}', "flag", "name=two words", 'half="open', "caf\u00e9=cr\u00e8me"],
    )
    async def test_cookie_beside_other_sites_cookies(self, db_path, others):
        """The token cookie is found beside cookies the standard library's parser rejects.

        Cookies are not kept per port: a browser sends the dashboard those of every app it
        used on 127.0.0.1. One with a JSON value (Google sign-in's g_state), a space, no
        '=' or non-ASCII text made http.cookies drop the whole header, so the signed-in
        dashboard got 401 on every call and showed the sign-in page again and again.
        """
        async with web_app(db_path, token=TOKEN) as web:
            mine = f"flowcore_token={TOKEN}"
            for header in (f"{others}; {mine}", f"{mine}; {others}"):
                cookie = {"Cookie": header.encode()}
                r = await web.client.get("/api/counts", headers=cookie)
                assert r.status_code == 200, (header, r.text)

    async def test_non_ascii_token(self, db_path):
        """A token with non-ASCII characters works as a header (UTF-8) and as the cookie."""
        token = "p\u00e4ssw\u00f6rd"  # noqa: S105 - a test token
        async with web_app(db_path, token=token) as web:
            header = {"Authorization": b"Bearer " + token.encode()}
            assert (await web.client.get("/api/counts", headers=header)).status_code == 200
            cookie = {"Cookie": "flowcore_token=" + quote(token)}  # what the sign-in page sets
            assert (await web.client.get("/api/counts", headers=cookie)).status_code == 200
            wrong = {"Authorization": b"Bearer " + token.encode("latin-1")}
            assert (await web.client.get("/api/counts", headers=wrong)).status_code == 401

    @pytest.mark.parametrize("token", [" tok", "tok ", "tok\r", "tok\n"])
    def test_token_with_surrounding_whitespace_is_refused(self, db_path, token):
        """A token that begins or ends with whitespace is refused when the app is made.

        Before, it was accepted, but a bearer header's value is read without its surrounding
        whitespace, so no API client could ever match it (401 'wrong token' for everyone);
        a token read from a file edited on Windows ends with '\r'.
        """
        with pytest.raises(ValueError, match="whitespace"):
            create_app(Runtime(db_path), token=token)

    async def test_browser_gets_a_sign_in_page(self, db_path):
        """A page request without the token gets the sign-in form (401, no data)."""
        async with web_app(db_path, token=TOKEN) as web:
            r = await web.client.get("/", headers={"Accept": "text/html"})
            assert r.status_code == 401
            assert r.headers["content-type"].startswith("text/html")
            assert "flowcore_token" in r.text
            policy = r.headers["content-security-policy"]  # its own inline script only
            assert "default-src 'none'" in policy
            assert "script-src 'sha256-" in policy
            assert "unsafe-inline" not in policy


class TestLoopbackRule:
    def test_non_loopback_host_without_token_is_refused(self, db_path):
        """create_app refuses a public bind address without a token."""
        runtime = Runtime(db_path)
        with pytest.raises(ValueError, match="non-loopback"):
            create_app(runtime, host="0.0.0.0")  # noqa: S104
        create_app(runtime, host="0.0.0.0", token=TOKEN)  # noqa: S104
        create_app(runtime, host="127.0.0.1")
        create_app(runtime, host="::1")

    async def test_steering_from_a_non_loopback_address_needs_a_token(self, db_path):
        """A request arriving on a public address may read, but not steer, without a token.

        httpx's ASGI transport sets the ASGI ``server`` to the URL's host, so no traffic leaves
        the process.
        """
        async with Runtime(db_path) as runtime:
            transport = httpx.ASGITransport(app=create_app(runtime))
            async with httpx.AsyncClient(transport=transport, base_url="http://192.0.2.7") as c:
                assert (await c.get("/api/counts")).status_code == 200
                r = await c.post("/api/workflows", json={"workflow": "web_sec_flow", "input": 1})
                assert r.status_code == 403
                assert "token" in r.json()["error"]
                r = await c.post("/api/workflows/x/cancel", json={})
                assert r.status_code == 403
            assert await runtime.list() == []


class TestDnsRebinding:
    @pytest.mark.parametrize("host", ["evil.example:8080", "evil.example", "10.0.0.1:80"])
    async def test_foreign_host_name_on_loopback_is_refused(self, web, host):
        """Without a token, a loopback request naming another host can neither read nor steer."""
        r = await web.client.get("/api/counts", headers={"Host": host})
        assert r.status_code == 403
        assert "loopback host name" in r.json()["error"]
        r = await web.client.post(
            "/api/workflows", json={"workflow": "web_sec_flow", "input": 1}, headers={"Host": host}
        )
        assert r.status_code == 403
        assert await web.runtime.list() == []

    @pytest.mark.parametrize("host", ["127.0.0.1:1", "localhost:8080", "LOCALHOST", "[::1]:80",
                                      "app.localhost:8000", "127.1.2.3", "0.0.0.0:8000",
                                      "[::]:8000"])  # fmt: skip
    async def test_loopback_host_names_pass(self, web, host):
        """The names of the loopback interface (and the all-interfaces address) are served."""
        r = await web.client.get("/api/counts", headers={"Host": host})
        assert r.status_code == 200, r.text

    async def test_with_a_token_any_host_name_is_served(self, db_path):
        """A token protects the app, so it may be served under any name (a reverse proxy)."""
        async with web_app(db_path, token=TOKEN) as web:
            headers = {"Host": "flows.example.com", "Authorization": f"Bearer {TOKEN}"}
            assert (await web.client.get("/api/counts", headers=headers)).status_code == 200


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TestServeHttp:
    def _serve(self, tmp_path, address, env=None):
        (tmp_path / "web_sec_app.py").write_text(
            "import flowcore\nfrom flowcore import workflow\n\n"
            "@workflow\nasync def web_cli_flow(n: int) -> int:\n    return n + 1\n\n"
            "@workflow\nasync def web_cli_wait(n: int) -> int:\n"
            "    return await flowcore.wait_event('go')\n"
        )
        return subprocess.Popen(
            [sys.executable, "-m", "flowcore", "serve", "web_sec_app", "--db", "w.db",
             "--http", address],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {})},
        )  # fmt: skip

    def test_public_address_without_token_is_refused(self, tmp_path):
        """serve --http 0.0.0.0:PORT without FLOWCORE_WEB_TOKEN exits 2 with one line."""
        env = {"FLOWCORE_WEB_TOKEN": ""}
        proc = self._serve(tmp_path, "0.0.0.0:1", env)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 2
        assert "non-loopback" in err
        assert "FLOWCORE_WEB_TOKEN" in err
        assert not (tmp_path / "w.db").exists()  # refused before opening anything

    def test_bad_address(self, tmp_path):
        """A malformed --http value is a usage error."""
        proc = self._serve(tmp_path, "localhost")
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 2
        assert "HOST:PORT" in err

    async def test_serves_api_and_dashboard_then_stops(self, tmp_path):
        """serve --http 127.0.0.1:PORT answers the API and the dashboard; SIGTERM stops it."""
        port = _free_port()
        proc = self._serve(tmp_path, f"127.0.0.1:{port}")
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:

                async def up() -> bool:
                    try:
                        return (await c.get("/api/counts")).status_code == 200
                    except httpx.TransportError:
                        assert proc.poll() is None, proc.stderr.read()
                        return False

                await assert_eventually(up, timeout=20, interval=0.05)
                r = await c.post("/api/workflows", json={"workflow": "web_cli_flow", "input": 1,
                                                         "id": "x"})  # fmt: skip
                assert r.status_code == 201

                async def done() -> bool:
                    return (await c.get("/api/workflows/x")).json()["status"] == "completed"

                await assert_eventually(done)
                assert (await c.get("/api/workflows/x")).json()["output"] == 2
                assert "static/list.js" in (await c.get("/")).text
                # a live stream stays open while the server stops: stopping ends it
                r = await c.post(
                    "/api/workflows", json={"workflow": "web_cli_wait", "input": 0, "id": "w"}
                )
                assert r.status_code == 201
                async with c.stream("GET", "/api/workflows/w/stream") as stream:
                    lines = stream.aiter_lines()
                    async for line in lines:
                        if '"event_wait_started"' in line:
                            break
                    proc.send_signal(signal.SIGTERM)
                    rest = [line async for line in lines]
                assert not any("workflow_completed" in line for line in rest)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert f"http://127.0.0.1:{port}/" in err
        assert "graceful shutdown exceeded" not in err  # streams ended, not cut off
