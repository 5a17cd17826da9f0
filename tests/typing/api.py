"""Public-API usage checked by mypy strict; never executed."""

from __future__ import annotations

from dataclasses import dataclass

import flowcore
from flowcore import RetryPolicy, Runtime, WorkflowStatus, activity, workflow
from flowcore.orchestra import OrchestraReporter, set_output
from flowcore.orchestra import task as orchestra_task


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


# -- the Orchestra adapter (flowcore[orchestra]) ----------------------------------------------

reporter = OrchestraReporter(task_run_id="00000000-0000-0000-0000-000000000000", api_key="k")


@reporter.run()
def report_me(n: int) -> str:
    return str(n)


@orchestra_task
async def report_me_too(n: int) -> int:
    return n


@workflow
async def with_outputs(n: int) -> int:
    await set_output("n", n)
    return n


async def orchestra_main() -> None:
    text: str = report_me(1)
    number: int = await report_me_too(2)
    async with Runtime("x.db", listeners=[reporter]) as rt:
        await rt.start(with_outputs, number, id=text)
