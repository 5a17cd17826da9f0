"""examples/webapp.py served the documented way (uvicorn) and used over real HTTP."""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys

import httpx

from tests.helpers import assert_eventually

EXAMPLES = pathlib.Path(__file__).parent.parent.parent / "examples"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve_example(tmp_path: pathlib.Path, port: int) -> subprocess.Popen[str]:
    """The README's command: uvicorn serving examples/webapp.py on 127.0.0.1:``port``."""
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--app-dir", str(EXAMPLES), "webapp:app",
         "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path, env={**os.environ, "WEBAPP_DB": str(tmp_path / "orders.db")},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


async def _until_up(client: httpx.AsyncClient, proc: subprocess.Popen[str]) -> None:
    """Wait until the app answers (an unknown order: 404); fail at once if uvicorn exited."""

    async def up() -> bool:
        try:
            return (await client.get("/orders/none")).status_code == 404
        except httpx.TransportError:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            return False

    await assert_eventually(up, timeout=20, interval=0.05)


class TestWebappExample:
    async def test_orders_over_http(self, tmp_path):
        """Place an order, see it wait, approve it, read the result; the dashboard lists it."""
        port = _free_port()
        proc = _serve_example(tmp_path, port)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
                await _until_up(c, proc)
                r = await c.post("/orders", json={"sku": "lamp", "qty": 3})
                assert r.status_code == 201, r.text
                oid = r.json()["id"]

                async def waiting() -> bool:
                    body = (await c.get(f"/orders/{oid}")).json()
                    return body["step"] == "waiting for approval"

                await assert_eventually(waiting)
                assert (await c.post("/orders", json={"sku": "", "qty": 0})).status_code == 422
                r = await c.post(f"/orders/{oid}/approve", json={"approver": "bo"})
                assert r.status_code == 200, r.text

                async def completed() -> bool:
                    return (await c.get(f"/orders/{oid}")).json()["status"] == "completed"

                await assert_eventually(completed)
                body = (await c.get(f"/orders/{oid}")).json()
                assert body["result"] == "receipt-lamp-30 for reservation-lamp-3, approved by bo"
                again = await c.post(f"/orders/{oid}/approve", json={"approver": "bo"})
                assert again.status_code == 409
                assert (
                    await c.post("/orders/nope/approve", json={"approver": "x"})
                ).status_code == 404
                listed = (await c.get("/flowcore/api/workflows?name=order_flow")).json()["items"]
                assert [w["id"] for w in listed] == [oid]
        finally:
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=30)
        # uvicorn re-raises the signal after its graceful shutdown
        assert proc.returncode in (0, -signal.SIGTERM), out
        assert "Application shutdown complete" in out

    async def test_ctrl_c_ends_open_dashboard_streams(self, tmp_path):
        """With a dashboard stream open, SIGINT stops uvicorn and closes the runtime."""
        port = _free_port()
        proc = _serve_example(tmp_path, port)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
                await _until_up(c, proc)
                oid = (await c.post("/orders", json={"sku": "a", "qty": 1})).json()["id"]
                async with c.stream("GET", f"/flowcore/api/workflows/{oid}/stream") as stream:
                    lines = stream.aiter_lines()
                    while not (await anext(lines)).startswith("id: 1-"):
                        pass
                    proc.send_signal(signal.SIGINT)
                    rest = [line async for line in lines]  # the server ends the stream
                assert not any(line.startswith("event: end") for line in rest)
            out, _ = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, out
        assert "Application shutdown complete" in out
