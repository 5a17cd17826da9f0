"""Timers and children work when sniffio is installed (anyio then asks it, not the loop).

sniffio tells anyio which library runs only from inside a task; the runtime arms timers and
starts children from a commit's done callback, a plain loop callback. Before the fix a timer's
cancel scope raised ``AsyncLibraryNotFoundError`` / ``NoEventLoopError`` there, so with sniffio
installed (trio, the openai SDK and every anyio before 4.12 bring it) no timer ever fired.
"""

from __future__ import annotations

import pytest

import flowcore
from flowcore import Runtime, workflow

pytest.importorskip("sniffio")  # the dev group installs it, as most applications do


@workflow
async def sniff_child(n: int) -> int:
    return n + 1


@workflow
async def sniff_parent(n: int) -> str:
    await flowcore.sleep(0.05)
    timed_out = await flowcore.wait_event("never", timeout=0.05)
    child = await flowcore.child(sniff_child, n)
    return f"slept, wait={timed_out}, child={child}"


async def test_timers_and_children_run_with_sniffio_installed(tmp_path):
    async with Runtime(tmp_path / "s.db", workflows=[sniff_parent, sniff_child]) as runtime:
        handle = await runtime.start(sniff_parent, 1)
        assert await handle.result(timeout=10) == "slept, wait=None, child=2"
