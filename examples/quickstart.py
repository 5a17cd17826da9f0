"""Quickstart: an order workflow with a chain, a fan-out and a retried activity, on SQLite.

Run it with ``uv run python examples/quickstart.py``. It journals to ``quickstart.db`` in the
current directory (pass another path as the first argument). Kill it at any point and run it
again: the order with the same id is recovered from the journal and finishes without repeating
the activities it already completed.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass
from decimal import Decimal

import structlog

import flowcore
from flowcore import RetryPolicy, Runtime, activity, workflow


@dataclass(frozen=True)
class Item:
    sku: str
    price: Decimal


@dataclass(frozen=True)
class Order:
    id: str
    items: list[Item]


@dataclass(frozen=True)
class Receipt:
    order_id: str
    total: Decimal
    reservations: list[str]


_flaky_calls = 0


@activity
def reserve(item: Item) -> str:
    """Reserve stock (sync: runs in a worker thread)."""
    return f"res-{item.sku}"


@activity(retry=RetryPolicy(max_attempts=3, initial_interval=0.05))
async def charge(order_id: str, amount: Decimal) -> str:
    """Charge the card (async); the first attempt fails to show a journaled retry."""
    global _flaky_calls  # noqa: PLW0603 - a demo of a transient failure
    _flaky_calls += 1
    if _flaky_calls == 1:
        raise ConnectionError("payment gateway timed out")
    return f"ch-{order_id}-{amount}"


@workflow(version="1")
async def place_order(order: Order) -> Receipt:
    """Reserve every item in parallel, then charge the total."""
    reservations = await flowcore.gather(*(reserve(item) for item in order.items))
    total = sum((item.price for item in order.items), Decimal(0))
    await charge(order.id, total)
    return Receipt(order_id=order.id, total=total, reservations=reservations)


async def main(db: str) -> None:
    order = Order(
        id="order-42", items=[Item("apple", Decimal("1.20")), Item("pear", Decimal("2.05"))]
    )
    async with Runtime(db) as runtime:
        handle = await runtime.start(place_order, order, id=order.id, if_exists="return")
        receipt = await handle.result(timeout=30)
        status = await runtime.status(order.id)
    print(f"status: {status.status}")
    print(f"result: {receipt}")


if __name__ == "__main__":
    # Progress logs go to stderr at INFO; the result goes to stdout.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "quickstart.db"))
