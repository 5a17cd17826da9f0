"""Fan-out/fan-in: a month-end billing run over many customers, in parallel.

This is the Durable Task "fan-out/fan-in" pattern. The workflow

1. fans out one ``meter_usage`` activity per customer with ``flowcore.gather`` (they all run at
   once; the results come back in argument order),
2. fans out again, this time to a two-step per-customer pipeline written as an ordinary
   sub-coroutine (``bill``: render the invoice, then send it), also with ``flowcore.gather``,
3. fans in: it aggregates the invoices into a ``BillingSummary``.

Every activity result is journaled, so a crash in the middle of the run resumes with only the
unfinished customers' steps. Each activity takes ~0.1 s; the run takes about two of those, not
``2 x N``.

Run it with ``uv run python examples/fan_out_fan_in.py``. It journals to ``fan_out_fan_in.db``
in the current directory (pass another path as the first argument).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import zlib
from dataclasses import dataclass
from decimal import Decimal

import structlog

import flowcore
from flowcore import Runtime, activity, workflow

UNIT_PRICE = Decimal("0.25")
"""Price of one API call."""


@dataclass(frozen=True)
class BillingRun:
    period: str
    customers: list[str]


@dataclass(frozen=True)
class Usage:
    customer: str
    api_calls: int


@dataclass(frozen=True)
class Invoice:
    number: str
    customer: str
    amount: Decimal
    sent_to: str | None = None


@dataclass(frozen=True)
class BillingSummary:
    period: str
    invoices: int
    total: Decimal
    largest: str


@activity
async def meter_usage(customer: str, period: str) -> Usage:
    """Read the customer's metered usage for the period (simulated: deterministic per name)."""
    await asyncio.sleep(0.1)
    return Usage(customer, 100 + zlib.crc32(f"{customer}/{period}".encode()) % 900)


@activity
def render_invoice(usage: Usage, period: str) -> Invoice:
    """Price the usage and render the invoice (sync: runs in a worker thread)."""
    time.sleep(0.05)
    amount = (usage.api_calls * UNIT_PRICE).quantize(Decimal("0.01"))
    return Invoice(f"INV-{period}-{usage.customer}", usage.customer, amount)


@activity
async def send_invoice(invoice: Invoice) -> Invoice:
    """E-mail the invoice to the customer's billing address."""
    await asyncio.sleep(0.05)
    return Invoice(invoice.number, invoice.customer, invoice.amount, f"billing@{invoice.customer}")


async def bill(usage: Usage, period: str) -> Invoice:
    """The per-customer pipeline: render, then send (two journaled steps in sequence)."""
    invoice = await render_invoice(usage, period)
    return await send_invoice(invoice)


@workflow(version="1")
async def month_end_billing(run: BillingRun) -> BillingSummary:
    """Meter every customer in parallel, bill each one through its pipeline, then total up."""
    usages = await flowcore.gather(*(meter_usage(c, run.period) for c in run.customers))
    invoices = await flowcore.gather(*(bill(u, run.period) for u in usages))
    largest = max(invoices, key=lambda i: i.amount)
    return BillingSummary(
        period=run.period,
        invoices=len(invoices),
        total=sum((i.amount for i in invoices), Decimal(0)),
        largest=f"{largest.customer} ({largest.amount})",
    )


async def main(db: str) -> None:
    run = BillingRun(
        period="2024-05",
        customers=[f"{name}.example" for name in ("acme", "globex", "initech", "umbrella",
                                                   "hooli", "stark", "wayne", "wonka")],
    )  # fmt: skip
    began = time.perf_counter()
    async with Runtime(db) as runtime:
        handle = await runtime.start(
            month_end_billing, run, id=f"billing-{run.period}", if_exists="return"
        )
        summary = await handle.result(timeout=30)
    elapsed = time.perf_counter() - began
    print(f"customers: {len(run.customers)}, activities: {3 * len(run.customers)}")
    print(f"elapsed: {elapsed:.2f}s (sequential would be ~{0.2 * len(run.customers):.1f}s)")
    print(f"result: {summary}")


if __name__ == "__main__":
    # Progress logs go to stderr at INFO; the result goes to stdout.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "fan_out_fan_in.db"))
