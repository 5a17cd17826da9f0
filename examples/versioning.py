"""Versioning: change a workflow's code while old instances are still running.

This is the Durable Task versioning example. Version 1 of the ``order`` workflow reserves stock,
charges the card, waits for the warehouse and ships. Version 2 adds a third activity (a gift
card for first orders) in the middle. Replaying an in-flight version-1 instance through code
that suddenly schedules ``issue_gift_card`` would not match its journal (flowcore would park it
as nondeterministic), so the new step is guarded by the version the instance *started* with::

    if int(flowcore.info().version) >= 2:
        await issue_gift_card(order)

``info().version`` is recorded in the journal when an instance starts and never changes, so one
function body serves both versions: it is registered twice, as ``order`` version "1" and
version "2" (``flowcore.workflow(name="order", version=...)(process_order)``). Versions are
strings; compare them as numbers, not as text ("10" < "2" as text).

The script plays a deploy:

1. "before the deploy" a runtime serving only version 1 starts ``order-1001``, which stops to
   wait for the warehouse; the runtime closes (the process would be restarted here);
2. "after the deploy" a runtime serving versions 1 and 2 recovers ``order-1001`` from the
   journal and starts ``order-1002``, which gets the latest version, 2;
3. the warehouse event arrives for both: ``order-1001`` finishes on the old path (no gift card),
   ``order-1002`` on the new one.

Run it with ``uv run python examples/versioning.py``. It journals to ``versioning.db`` in the
current directory (pass another path as the first argument).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass
from decimal import Decimal

import structlog

import flowcore
from flowcore import Runtime, activity, workflow


@dataclass(frozen=True)
class Order:
    id: str
    customer: str
    amount: Decimal


@dataclass(frozen=True)
class OrderResult:
    order_id: str
    version: str
    steps: list[str]


@activity
async def reserve_stock(order: Order) -> str:
    """Activity one: hold the goods."""
    await asyncio.sleep(0.01)
    return f"reserved:{order.id}"


@activity
async def charge_card(order: Order) -> str:
    """Activity two: take the payment."""
    await asyncio.sleep(0.01)
    return f"charged:{order.amount}"


@activity
async def issue_gift_card(order: Order) -> str:
    """Activity three, new in version 2: a welcome gift card."""
    await asyncio.sleep(0.01)
    return f"gift-card:{order.customer}"


@activity
async def ship(order: Order) -> str:
    """Hand the parcel to the carrier."""
    await asyncio.sleep(0.01)
    return f"shipped:{order.id}"


async def process_order(order: Order) -> OrderResult:
    """The body of every version of ``order``; new steps are guarded by the recorded version."""
    steps = [await reserve_stock(order), await charge_card(order)]
    if int(flowcore.info().version) >= 2:  # noqa: PLR2004 - the version that added the step
        steps.append(await issue_gift_card(order))
    flowcore.set_status("waiting for the warehouse")
    await flowcore.wait_event("warehouse_ready")
    steps.append(await ship(order))
    return OrderResult(order.id, flowcore.info().version, steps)


order_v1 = workflow(name="order", version="1")(process_order)
order_v2 = workflow(name="order", version="2")(process_order)


async def wait_for_warehouse(runtime: Runtime, order_id: str) -> None:
    """Poll until the order waits for the warehouse (or is already finished, on a re-run)."""
    async with asyncio.timeout(10):
        while True:
            status = await runtime.status(order_id)
            if status.is_finished or status.custom_status == "waiting for the warehouse":
                return
            await asyncio.sleep(0.01)


async def main(db: str) -> None:
    old = Order("order-1001", "grace", Decimal("59.00"))
    new = Order("order-1002", "linus", Decimal("24.50"))

    # 1. Before the deploy: only version 1 exists.
    async with Runtime(db, workflows=[order_v1]) as runtime:
        await runtime.start("order", old, id=old.id, if_exists="return")
        await wait_for_warehouse(runtime, old.id)
        print(f"before deploy: {old.id} is at version {(await runtime.status(old.id)).version}")

    # 2. After the deploy: both versions are served; new instances get the latest, "2".
    async with Runtime(db, workflows=[order_v1, order_v2]) as runtime:
        await runtime.start("order", new, id=new.id, if_exists="return")
        results = []
        for order in (old, new):
            await wait_for_warehouse(runtime, order.id)
            if not (await runtime.status(order.id)).is_finished:
                await runtime.send_event(order.id, "warehouse_ready")
            results.append(await runtime.result(order.id, timeout=30))

    for result in results:
        print(f"result: {result.order_id} v{result.version}: {' -> '.join(result.steps)}")


if __name__ == "__main__":
    # Progress logs go to stderr at INFO; the result goes to stdout.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "versioning.db"))
