"""Worker process for kill-at-every-commit with generated ids (``test_kill_every_commit_fresh``).

Run as ``python -m tests.chaos.fresh_app DB LOG ACKS SEED COUNT DISPATCH start|recover`` from the
repository root. ``start`` starts the ``COUNT`` workflows of :func:`plan` on ``DB`` *without* an
id (``runtime.start()`` generates one; under ``Runtime(dispatch="eager")`` the first step then
runs while the start commits), one every :data:`STAGGER` seconds without waiting for the
previous one, and waits until they have ended. ``recover`` only
opens the runtime (recovery) and waits until no workflow is left unfinished: a crashed worker's
generated ids are known to nobody but the journal.

The shapes are those of :mod:`tests.chaos.chaos_app` that need no steering from outside (no
event, no cancellation); the ``LOG`` and ``ACKS`` files have its formats, so
:class:`tests.chaos.campaign.Campaign` checks them. Each input names its plan entry
(``"plan"``), which ties a generated id to the outcome a crash-free run gives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from typing import Any

from tests.chaos import chaos_app
from tests.helpers import run_app

SHAPES = ("chain", "fanout", "sub", "timer", "child", "retry", "fail")
"""Shapes that end without an event or a cancellation sent from outside."""
STAGGER = 0.001
"""Seconds between two starts (about a commit): a crash finds some starts in flight."""


def plan(seed: int, count: int) -> list[chaos_app.Spec]:
    """``count`` workflows of :data:`SHAPES`, each input naming its entry (``"plan"``)."""
    specs = [s for s in chaos_app.build_plan(seed, count * 2, max_delay=0.05) if s.shape in SHAPES]
    return [chaos_app.Spec(s.id, s.shape, {**s.payload, "plan": s.id}) for s in specs[:count]]


async def _start(rt: Any, shapes: dict[str, Any], spec: chaos_app.Spec) -> str:
    handle = await rt.start(shapes[spec.shape], spec.payload)  # no id: one is generated
    chaos_app._append(chaos_app._Files.acks, f"start {handle.id}\n")
    return str(handle.id)


async def run(db: str, specs: list[chaos_app.Spec], dispatch: str, *, start: bool) -> None:
    """Start the plan (``start``) or only recover; then wait until every workflow has ended."""
    import flowcore

    shapes = chaos_app.define()
    async with flowcore.Runtime(db, dispatch=dispatch) as rt:  # type: ignore[arg-type]
        ids = []
        if start:  # one start a millisecond: starts straddle commits, first steps run early
            starts = []
            for spec in specs:
                starts.append(asyncio.ensure_future(_start(rt, shapes, spec)))
                await asyncio.sleep(STAGGER)
            ids = await asyncio.gather(*starts)
        unfinished = [s.id for s in await rt.list(status="running", limit=10_000)]
        for wid in dict.fromkeys([*ids, *unfinished]):
            with contextlib.suppress(flowcore.WorkflowFailedError, flowcore.WorkflowCanceledError):
                await rt.result(wid, timeout=60)


def main(argv: list[str]) -> int:
    """Entry point: ``DB LOG ACKS SEED COUNT DISPATCH start|recover``."""
    db, log, acks, seed, count, dispatch, mode = argv
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    chaos_app.open_files(log, acks)
    run_app(run(db, plan(int(seed), int(count)), dispatch, start=mode == "start"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
