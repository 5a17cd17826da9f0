"""Saga: book a trip's flight, hotel and car in parallel; undo what was booked if one fails.

The workflow

1. books the three legs at once with ``flowcore.gather(..., return_exceptions=True)``: the
   gather waits for every leg, and a leg that failed comes back as its ``ActivityError`` in
   its place (a plain ``gather`` would raise at the first failure and leave the workflow free
   to end while a slower leg is still booking, so that leg would never be undone);
2. if any leg failed, cancels every leg that was booked (the compensations), then
3. returns an ``Itinerary`` saying what was booked, what failed and what was undone.

The car rental here always refuses (``NonRetryableError``: no retries), and the hotel is the
slowest leg: it is booked after the car already failed, and is cancelled all the same. Every
booking and cancellation is journaled, so a crash in the middle resumes without booking or
cancelling anything twice.

Run it with ``uv run python examples/saga.py``. It journals to ``saga.db`` in the current
directory (pass another path as the first argument).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass, field

import structlog

import flowcore
from flowcore import ActivityError, NonRetryableError, Runtime, activity, workflow


@dataclass(frozen=True)
class Trip:
    traveller: str
    city: str


@dataclass(frozen=True)
class Itinerary:
    trip: Trip
    booked: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    undone: list[str] = field(default_factory=list)


LEGS = {"flight": 0.05, "hotel": 0.2, "car": 0.1}
"""Each leg's booking time in seconds: the hotel finishes after the car failed."""


@activity
async def book(leg: str, trip: Trip) -> str:
    """Reserve one leg of the trip; return its confirmation code."""
    await asyncio.sleep(LEGS[leg])
    if leg == "car":
        raise NonRetryableError(f"no cars left in {trip.city}")
    return f"{leg.upper()}-{trip.city[:3].upper()}-{len(trip.traveller)}"


@activity
async def cancel(confirmation: str) -> str:
    """Release a reservation (the compensation of ``book``)."""
    await asyncio.sleep(0.02)
    return confirmation


@workflow(version="1")
async def book_trip(trip: Trip) -> Itinerary:
    """Book every leg at once; if any fails, cancel those that were booked."""
    legs = list(LEGS)
    outcomes = await flowcore.gather(*(book(leg, trip) for leg in legs), return_exceptions=True)
    booked = [o for o in outcomes if isinstance(o, str)]
    failed = [f"{leg}: {o.failure.message}" for leg, o in zip(legs, outcomes, strict=True)
              if isinstance(o, ActivityError)]  # fmt: skip
    if not failed:
        return Itinerary(trip, booked=booked)
    undone = await flowcore.gather(*(cancel(code) for code in booked))
    return Itinerary(trip, failed=failed, undone=undone)


async def main(db: str) -> None:
    trip = Trip("Ada Lovelace", "Lisbon")
    async with Runtime(db) as runtime:
        handle = await runtime.start(book_trip, trip, id="trip-ada-lisbon", if_exists="return")
        itinerary = await handle.result(timeout=30)
    print(f"booked then undone: {', '.join(itinerary.undone) or 'nothing'}")
    print(f"result: {itinerary}")


if __name__ == "__main__":
    # Progress logs go to stderr at INFO; the result goes to stdout.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "saga.db"))
