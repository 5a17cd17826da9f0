"""Function chaining: a loan application runs through a fixed sequence of activities.

This is the Durable Task "function chaining" pattern: each activity consumes the previous one's
output. The business object is a ``LoanApplication`` dataclass that every step enriches and
hands on (validate, score, price, draft the offer); the workflow itself is plain sequential
``await`` code, and each step's result is journaled, so after a crash the chain resumes at the
first step that had not completed.

Run it with ``uv run python examples/chaining.py``. It journals to ``chaining.db`` in the current
directory (pass another path as the first argument); run it again and the recorded offer comes
back from the journal without running the chain a second time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
from dataclasses import dataclass
from decimal import Decimal

import structlog

from flowcore import Runtime, activity, workflow
from flowcore.engine.events import ActivityScheduled


@dataclass(frozen=True)
class LoanApplication:
    """The business object passed down the chain; each step returns an enriched copy."""

    id: str
    applicant: str
    amount: Decimal
    term_months: int
    annual_income: Decimal
    validated: bool = False
    credit_score: int | None = None
    annual_rate: Decimal | None = None


@dataclass(frozen=True)
class Offer:
    application_id: str
    applicant: str
    amount: Decimal
    annual_rate: Decimal
    monthly_payment: Decimal
    letter: str


@activity
def validate(app: LoanApplication) -> LoanApplication:
    """Check the application is complete and within policy."""
    if app.amount <= 0 or not 6 <= app.term_months <= 120:  # noqa: PLR2004 - policy limits
        raise ValueError(f"application {app.id} is outside policy")
    return dataclasses.replace(app, validated=True)


@activity
async def score(app: LoanApplication) -> LoanApplication:
    """Ask the (simulated) credit bureau for a score."""
    await asyncio.sleep(0.05)  # the bureau's latency
    debt_ratio = app.amount / app.annual_income
    return dataclasses.replace(app, credit_score=max(300, 820 - int(debt_ratio * 200)))


@activity
def price(app: LoanApplication) -> LoanApplication:
    """Pick the interest rate from the score."""
    assert app.credit_score is not None  # noqa: S101 - set by the previous step
    rate = Decimal("0.049") if app.credit_score >= 740 else Decimal("0.089")  # noqa: PLR2004
    return dataclasses.replace(app, annual_rate=rate)


@activity
def draft_offer(app: LoanApplication) -> Offer:
    """Compute the monthly payment (annuity formula) and draft the offer letter."""
    assert app.annual_rate is not None  # noqa: S101 - set by the previous step
    r = app.annual_rate / 12
    n = app.term_months
    payment = (app.amount * r / (1 - (1 + r) ** -n)).quantize(Decimal("0.01"))
    letter = (
        f"Dear {app.applicant}, we offer {app.amount} over {n} months at "
        f"{app.annual_rate:.1%}: {payment} a month."
    )
    return Offer(app.id, app.applicant, app.amount, app.annual_rate, payment, letter)


@workflow(version="1")
async def loan_offer(app: LoanApplication) -> Offer:
    """Validate -> score -> price -> draft: each step consumes the previous step's output."""
    app = await validate(app)
    app = await score(app)
    app = await price(app)
    return await draft_offer(app)


async def main(db: str) -> None:
    app = LoanApplication(
        id="loan-1001",
        applicant="Ada Lovelace",
        amount=Decimal("12000.00"),
        term_months=36,
        annual_income=Decimal("64000.00"),
    )
    async with Runtime(db) as runtime:
        handle = await runtime.start(loan_offer, app, id=app.id, if_exists="return")
        offer = await handle.result(timeout=30)
        history = await handle.history()
    steps = [event.name for event in history if isinstance(event, ActivityScheduled)]
    print(f"steps: {' -> '.join(steps)}")
    print(f"result: {offer}")


if __name__ == "__main__":
    # Progress logs go to stderr at INFO; the result goes to stdout.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "chaining.db"))
