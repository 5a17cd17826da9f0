"""Public-API usage checked by mypy strict; never executed."""

from __future__ import annotations

from dataclasses import dataclass

import flowcore
from flowcore import RetryPolicy, Runtime, WorkflowStatus, activity, workflow


@dataclass
class Order:
    sku: str
    qty: int


@activity(retry=RetryPolicy(max_attempts=3), timeout=5)
async def charge(order: Order) -> int:
    return order.qty


@activity
def label(order: Order, *, prefix: str = "") -> str:
    return prefix + order.sku


@workflow(version="2")
async def place(order: Order) -> str:
    total: int = await charge(order)
    name: str = await label(order, prefix="x")
    both = await flowcore.gather(charge(order), charge(order))
    first: int = both[0]
    flowcore.now().isoformat()
    flowcore.uuid4().hex  # noqa: B018
    flowcore.random() + 1.0
    version: str = flowcore.info().version
    return f"{name}{total}{first}{version}"


@workflow
async def no_input() -> None:
    return None


async def main() -> None:
    async with Runtime("x.db", durability="normal", max_concurrent_activities=10) as rt:
        handle = await rt.start(place, Order("a", 1), id="o1", if_exists="return")
        await rt.start("no_input")
        out: object = await handle.result(timeout=1.0)
        status: WorkflowStatus = await rt.status(handle.id)
        rows: list[WorkflowStatus] = await rt.list(name="place", limit=5)
        events = await rt.history("o1")
        print(out, status.current_activity, rows, events)  # noqa: T201


async def web_app() -> None:
    from starlette.applications import Starlette

    import flowcore.web

    runtime = Runtime("web.db")
    app = Starlette(lifespan=flowcore.lifespan(runtime))
    app.mount("/flowcore", flowcore.web.create_app(runtime, token="t", max_body=4096))  # noqa: S106
    async with flowcore.lifespan(runtime)(app) as state:
        same: Runtime = state["flowcore"]
        del same
    flowcore.web.close_streams(runtime)
