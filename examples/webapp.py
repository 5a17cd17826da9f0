"""A FastAPI order service on flowcore: the runtime lives in the app's lifespan.

``POST /orders`` starts an ``order_flow`` workflow and returns its id at once (the start is
committed before the answer); the workflow reserves stock, then waits (durably, for up to two
days) for an ``approval`` event. ``POST /orders/{id}/approve`` sends that event;
``GET /orders/{id}`` shows the status and, once done, the result. The flowcore dashboard and
JSON API are mounted at ``/flowcore/``.

Serve it (needs the web extra and FastAPI; the dev group has both)::

    uv run uvicorn --app-dir examples webapp:app          # journal: webapp.db (or $WEBAPP_DB)
    curl -X POST localhost:8000/orders -H 'Content-Type: application/json' \\
         -d '{"sku": "book", "qty": 2}'
    curl -X POST localhost:8000/orders/ID/approve -H 'Content-Type: application/json' \\
         -d '{"approver": "ann"}'
    curl localhost:8000/orders/ID                         # and http://localhost:8000/flowcore/

Stop it with Ctrl-C: the lifespan ends open dashboard streams and closes the runtime; an order
still waiting for its approval continues when the service starts again. ``uv run python
examples/webapp.py [journal]`` runs the same app on a free loopback port, places and approves
one order over HTTP, and prints the result.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from datetime import timedelta

import httpx
import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

import flowcore
import flowcore.web
from flowcore import activity, workflow


class OrderRequest(BaseModel):
    sku: str = Field(min_length=1)
    qty: int = Field(gt=0)


class Approval(BaseModel):
    approver: str = Field(min_length=1)


@activity
async def reserve_stock(order: OrderRequest) -> str:
    return f"reservation-{order.sku}-{order.qty}"


@activity
async def charge_card(order: OrderRequest) -> str:
    return f"receipt-{order.sku}-{order.qty * 10}"


@workflow(version="1")
async def order_flow(order: OrderRequest) -> str:
    reservation = await reserve_stock(order)
    flowcore.set_status("waiting for approval")
    approval = await flowcore.wait_event("approval", type=Approval, timeout=timedelta(days=2))
    if approval is None:
        return f"expired ({reservation} released)"
    flowcore.set_status("charging")
    receipt = await charge_card(order)
    return f"{receipt} for {reservation}, approved by {approval.approver}"


def make_app(db: str) -> FastAPI:
    """The order service with its own runtime on journal ``db``."""
    runtime = flowcore.Runtime(db)
    app = FastAPI(title="orders", lifespan=flowcore.lifespan(runtime))
    app.mount("/flowcore", flowcore.web.create_app(runtime))

    @app.post("/orders", status_code=201)
    async def place_order(order: OrderRequest) -> dict[str, str]:
        handle = await runtime.start(order_flow, order)
        return {"id": handle.id}

    @app.post("/orders/{order_id}/approve")
    async def approve(order_id: str, approval: Approval) -> dict[str, str]:
        try:
            await runtime.send_event(order_id, "approval", approval)
        except flowcore.WorkflowNotFoundError:
            raise HTTPException(404, f"no order {order_id!r}") from None
        except flowcore.WorkflowFinishedError:
            raise HTTPException(409, f"order {order_id!r} is already finished") from None
        return {"id": order_id, "approved_by": approval.approver}

    @app.get("/orders/{order_id}")
    async def order_status(order_id: str) -> dict[str, object]:
        try:
            status = await runtime.status(order_id)
        except flowcore.WorkflowNotFoundError:
            raise HTTPException(404, f"no order {order_id!r}") from None
        return {
            "id": order_id,
            "status": status.status.value,
            "step": status.custom_status,
            "result": status.output,
        }

    return app


app = make_app(os.environ.get("WEBAPP_DB", "webapp.db"))


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # noqa: ANN202 - the demo stops the server itself
        yield


async def _until_done(client: httpx.AsyncClient, order_id: str) -> dict[str, str]:
    """Poll the order's status over HTTP (what a client of this service does) for 10 s at most."""
    async with asyncio.timeout(10):
        while True:
            status = (await client.get(f"/orders/{order_id}")).json()
            if status["result"] is not None:
                return status
            await asyncio.sleep(0.02)


async def demo(db: str) -> None:
    """Serve the app on a free loopback port, place and approve one order over HTTP."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = _Server(uvicorn.Config(make_app(db), log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn has no startup event
                await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            order_id = (await client.post("/orders", json={"sku": "book", "qty": 2})).json()["id"]
            # events sent before the workflow waits are kept: no need to wait for it here
            await client.post(f"/orders/{order_id}/approve", json={"approver": "ann"})
            status = await _until_done(client, order_id)
        print(f"order {order_id}: {status['status']}")
        print(f"result: {status['result']}")
    finally:
        server.should_exit = True
        await task
        sock.close()


if __name__ == "__main__":
    asyncio.run(demo(sys.argv[1] if len(sys.argv) > 1 else "webapp.db"))
