"""Eternal monitor: probe an endpoint on a durable timer, for ever, with a small history.

This is the Durable Task "monitor" / eternal orchestration pattern. Each run of the workflow
probes a (simulated) health endpoint once, pages the on-call engineer when the endpoint has
been down for ``ALERT_AFTER`` checks in a row, sleeps on a durable timer (``flowcore.sleep``)
and then calls ``flowcore.continue_as_new(state)``: the run ends and the workflow starts again
under the same id with the small ``MonitorState`` as its input, and with an empty history. A
loop inside one run would add events on every check for ever; continuing as new keeps the
journal of the current run a handful of events long however many checks have been made.

A real monitor never stops; this one returns after ``max_checks`` so the demo ends. The
interval is 0.2 s of real time here (it would be minutes in production) so the run takes about
two seconds; the timer is durable, so a monitor that was down for a while catches up on restart
instead of starting its wait over.

Run it with ``uv run python examples/monitor.py``. It journals to ``monitor.db`` in the current
directory (pass another path as the first argument).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sys
from dataclasses import dataclass

import structlog

import flowcore
from flowcore import Runtime, activity, workflow

ALERT_AFTER = 2
"""Consecutive failed checks that page the on-call engineer."""


@dataclass(frozen=True)
class MonitorState:
    """Everything carried from one run to the next: keep it small."""

    url: str
    interval: float
    """Seconds between checks."""
    max_checks: int
    """Stop after this many checks (a demo bound; a real monitor runs for ever)."""
    checks: int = 0
    failures_in_a_row: int = 0
    incidents: int = 0
    slowest_ms: int = 0


@dataclass(frozen=True)
class Probe:
    status_code: int
    latency_ms: int

    @property
    def healthy(self) -> bool:
        return self.status_code < 500  # noqa: PLR2004 - server errors mean down


OUTAGES = {"https://shop.example/health": range(4, 7)}
"""The simulated endpoints' outages: which checks find them down."""


@activity
async def probe(url: str, check: int) -> Probe:
    """GET the health endpoint (simulated: see ``OUTAGES``)."""
    await asyncio.sleep(0.01)
    if check in OUTAGES.get(url, ()):
        return Probe(503, 2000)
    return Probe(200, 40 + 7 * (check % 5))


@activity
async def page_on_call(url: str, failures: int) -> str:
    """Open an incident and page whoever is on call (simulated)."""
    await asyncio.sleep(0.01)
    return f"paged on-call: {url} down for {failures} checks"


@workflow(version="1")
async def uptime_monitor(state: MonitorState) -> MonitorState:
    """One check per run; then sleep and continue as new with the updated state."""
    check = state.checks + 1
    result = await probe(state.url, check)
    failures = 0 if result.healthy else state.failures_in_a_row + 1
    incidents = state.incidents
    if failures == ALERT_AFTER:  # page once per outage, when it is confirmed
        await page_on_call(state.url, failures)
        incidents += 1
    state = dataclasses.replace(
        state,
        checks=check,
        failures_in_a_row=failures,
        incidents=incidents,
        slowest_ms=max(state.slowest_ms, result.latency_ms),
    )
    flowcore.set_status(f"check {check}: {'up' if result.healthy else 'DOWN'}")
    if check < state.max_checks:
        await flowcore.sleep(state.interval)
        flowcore.continue_as_new(state)  # ends this run: the next one starts from `state`
    return state


async def largest_history(runtime: Runtime, workflow_id: str, sizes: list[int]) -> None:
    """Sample the size of the current run's history while the monitor runs."""
    while True:
        sizes.append(len(await runtime.history(workflow_id)))
        await asyncio.sleep(0.02)


async def main(db: str) -> None:
    initial = MonitorState(url="https://shop.example/health", interval=0.2, max_checks=10)
    sizes: list[int] = []
    async with Runtime(db) as runtime:
        handle = await runtime.start(uptime_monitor, initial, id="monitor-shop", if_exists="return")
        sampler = asyncio.create_task(largest_history(runtime, handle.id, sizes))
        final = await handle.result(timeout=30)
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        history = await handle.history()
        status = await handle.status()
    print(f"status: {status.status} / {status.custom_status}")
    print(f"history: {len(history)} events in the final run: {[e.kind for e in history]}")
    print(f"history: at most {max(sizes, default=len(history))} events in any run sampled")
    print(f"result: {final}")


if __name__ == "__main__":
    # Progress logs go to stderr at INFO; the result goes to stdout.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "monitor.db"))
