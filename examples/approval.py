"""Human interaction with a timeout: an expense report waits for a manager's approval.

This is the Durable Task "human interaction" pattern. The workflow notifies the manager, shows
``"waiting for approval"`` with ``flowcore.set_status``, then races an external ``approval``
event (``flowcore.wait_event``) against a 24-hour durable timer (``flowcore.sleep``) with
``flowcore.first``. Whichever finishes first decides: an approval pays the expense out, the
timeout escalates the report to finance. The loser is cancelled. Both the wait and the timer are
journaled: a restart in the middle of the 24 hours keeps the original deadline.

The script runs two instances:

- ``expense-1``: the script plays the manager and sends the event with ``runtime.send_event``;
- ``expense-2``: nobody answers, so the 24-hour timer fires.

Waiting a real day would make a poor demo, so the runtime uses
``flowcore.testing.VirtualClock``: whenever the runtime has nothing to do but wait for a timer
while someone awaits a result, the clock jumps to the timer's deadline. The timeout therefore
takes milliseconds of real time, while the workflow sees (and reports) a full day. With the
default system clock the same code really waits 24 hours.

Run it with ``uv run python examples/approval.py``. It journals to ``approval.db`` in the
current directory (pass another path as the first argument).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import structlog

import flowcore
from flowcore import Runtime, activity, workflow
from flowcore.testing import VirtualClock

APPROVAL_TIMEOUT = timedelta(hours=24)


@dataclass(frozen=True)
class ExpenseReport:
    id: str
    employee: str
    manager: str
    amount: Decimal
    purpose: str


@dataclass(frozen=True)
class Approval:
    """The payload of the ``approval`` event the manager sends."""

    approver: str
    approved: bool
    comment: str = ""


@dataclass(frozen=True)
class Decision:
    report_id: str
    outcome: str
    decided_by: str
    waited: timedelta


@activity
async def notify_manager(report: ExpenseReport) -> str:
    """Send the manager a link to approve or reject the report (simulated)."""
    await asyncio.sleep(0.01)
    return f"mailed {report.manager}: {report.employee} asks {report.amount} for {report.purpose}"


@activity
async def pay_out(report: ExpenseReport) -> str:
    """Reimburse the employee (simulated payroll call)."""
    await asyncio.sleep(0.01)
    return f"payout-{report.id}"


@activity
async def escalate(report: ExpenseReport) -> str:
    """Open a ticket for finance to decide instead (simulated)."""
    await asyncio.sleep(0.01)
    return f"ticket-{report.id}"


@workflow(version="1")
async def expense_approval(report: ExpenseReport) -> Decision:
    """Ask for approval; pay out if approved, escalate if nobody answers within 24 hours."""
    submitted = flowcore.now()
    await notify_manager(report)
    flowcore.set_status("waiting for approval")
    winner = await flowcore.first(
        flowcore.wait_event("approval", type=Approval),
        flowcore.sleep(APPROVAL_TIMEOUT),
    )
    waited = flowcore.now() - submitted
    if winner.index == 0:
        approval: Approval = winner.value
        if approval.approved:
            await pay_out(report)
            outcome = f"approved ({approval.comment})" if approval.comment else "approved"
        else:
            outcome = f"rejected ({approval.comment})" if approval.comment else "rejected"
        flowcore.set_status(outcome)
        return Decision(report.id, outcome, approval.approver, waited)
    ticket = await escalate(report)
    flowcore.set_status("escalated to finance")
    return Decision(report.id, f"timed out, escalated as {ticket}", "nobody", waited)


async def wait_for_status(runtime: Runtime, workflow_id: str, value: str) -> None:
    """Poll the committed status until the workflow shows ``value`` (as a dashboard would)."""
    async with asyncio.timeout(10):
        while True:
            if (await runtime.status(workflow_id)).custom_status == value:
                return
            await asyncio.sleep(0.01)


async def main(db: str) -> None:
    reports = [
        ExpenseReport("expense-1", "alice", "maria", Decimal("420.00"), "conference ticket"),
        ExpenseReport("expense-2", "bob", "maria", Decimal("89.90"), "team lunch"),
    ]
    clock = VirtualClock()
    async with Runtime(db, clock=clock) as runtime:
        # 1. The manager answers three (virtual) hours later: the script sends the event.
        approved = await runtime.start(
            expense_approval, reports[0], id=reports[0].id, if_exists="return"
        )
        if not (await approved.status()).is_finished:
            await wait_for_status(runtime, approved.id, "waiting for approval")
            print(f"status: {approved.id}: {(await approved.status()).custom_status}")
            clock.advance(timedelta(hours=3).total_seconds())
            await runtime.send_event(
                approved.id, "approval", Approval("maria", approved=True, comment="within budget")
            )
        first_decision = await approved.result(timeout=30)

        # 2. Nobody answers: the virtual clock skips the 24 hours.
        ignored = await runtime.start(
            expense_approval, reports[1], id=reports[1].id, if_exists="return"
        )
        second_decision = await ignored.result(timeout=30)
        statuses = [await runtime.status(r.id) for r in reports]

    for decision, status in zip([first_decision, second_decision], statuses, strict=True):
        print(f"result: {decision}")
        print(f"status: {status.id}: {status.status} / {status.custom_status}")


if __name__ == "__main__":
    # Progress logs go to stderr at INFO; the result goes to stdout.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "approval.db"))
