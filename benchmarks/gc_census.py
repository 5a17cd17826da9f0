"""GC-tracked objects kept alive per in-flight W1 workflow, by type (a diagnostic, not a benchmark).

Run from the repository root: ``uv run python -m benchmarks.gc_census [durable|eager] [N]``.
It warms a runtime on a fresh SQLite file, counts ``gc.get_objects()`` by type, starts N
``three_steps`` workflows without awaiting them, counts again after a full collection and prints
the difference divided by N (largest first), then lets the workflows finish.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import logging
import sys
import tempfile
from pathlib import Path

import structlog

from benchmarks.workloads import three_steps
from flowcore import Runtime


def _census() -> collections.Counter[str]:
    return collections.Counter(
        f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects()
    )


async def _main(dispatch: str, n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "j.db")
        async with Runtime(path, workflows=[three_steps], dispatch=dispatch) as rt:  # type: ignore[arg-type]
            handles = await asyncio.gather(*(rt.start(three_steps, i) for i in range(100)))
            await asyncio.gather(*(h.result() for h in handles))
            gc.collect()
            before = _census()
            handles = await asyncio.gather(*(rt.start(three_steps, i) for i in range(n)))
            gc.collect()
            diff = _census() - before
            print(f"tracked objects per in-flight workflow ({dispatch}): {diff.total() / n:.1f}")
            for name, count in diff.most_common(30):
                print(f"{count / n:6.2f} {name}")
            await asyncio.gather(*(h.result() for h in handles))


if __name__ == "__main__":
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    kind = sys.argv[1] if len(sys.argv) > 1 else "durable"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    asyncio.run(_main(kind, count))
