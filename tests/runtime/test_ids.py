"""Generated workflow ids are time-ordered UUIDs (version 7): new rows go to the index's end."""

from __future__ import annotations

import asyncio
import time
import uuid

from flowcore import Runtime, _ids, activity, workflow
from flowcore._ids import _uuid7_hex, new_workflow_id


def _fields(hex_id: str) -> tuple[int, int, int, int]:
    """(unix ms, version, counter, variant) of a version-7 id in hex."""
    value = int(hex_id, 16)
    return value >> 80, value >> 76 & 0xF, value >> 64 & 0xFFF, value >> 62 & 0b11


class TestUuid7:
    def test_layout(self):
        """An id is 32 lowercase hex digits of an RFC 9562 version-7 UUID stamped now."""
        before = time.time_ns() // 1_000_000
        made = _uuid7_hex()
        after = time.time_ns() // 1_000_000
        assert len(made) == 32
        assert made == made.lower()
        parsed = uuid.UUID(hex=made)
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        ms, _, _, _ = _fields(made)
        assert before <= ms <= after + 1  # +1: a counter run out borrows the next millisecond

    def test_strictly_increasing(self):
        """Ids made one after another sort in the order they were made, and never repeat."""
        made = [_uuid7_hex() for _ in range(20_000)]
        assert made == sorted(made)
        assert len(set(made)) == len(made)

    def test_counter_runs_out_within_one_millisecond(self, monkeypatch):
        """More than 4,096 ids in one millisecond borrow the next one and stay in order."""
        frozen = time.time_ns() + 10**12  # later than any id made so far
        monkeypatch.setattr(_ids, "_last", _ids._last)  # restored after the test
        monkeypatch.setattr(_ids.time, "time_ns", lambda: frozen)
        made = [_uuid7_hex() for _ in range(5000)]
        assert made == sorted(made)
        assert len(set(made)) == len(made)
        stamps = {_fields(m)[0] for m in made}
        assert stamps == {frozen // 1_000_000, frozen // 1_000_000 + 1}

    def test_clock_stepping_back(self, monkeypatch):
        """A clock set back keeps the ids increasing (the last millisecond is kept)."""
        now = [time.time_ns() + 2 * 10**12]
        monkeypatch.setattr(_ids, "_last", _ids._last)  # restored after the test
        monkeypatch.setattr(_ids.time, "time_ns", lambda: now[0])
        first = _uuid7_hex()
        now[0] -= 60 * 10**9
        second = _uuid7_hex()
        assert second > first
        assert _fields(second)[0] == _fields(first)[0]

    def test_random_bits_differ(self, monkeypatch):
        """Two processes stamping the same millisecond and counter still differ (random bits)."""
        frozen = time.time_ns() + 3 * 10**12
        monkeypatch.setattr(_ids.time, "time_ns", lambda: frozen)
        monkeypatch.setattr(_ids, "_last", (0, 0))  # restored after the test
        one = _uuid7_hex()
        monkeypatch.setattr(_ids, "_last", (0, 0))  # as another process would start
        other = _uuid7_hex()
        assert one[:16] == other[:16]
        assert one != other

    def test_state_is_restored(self):
        """The tests above that move the clock leave no id stamped in the future behind."""
        assert _fields(_uuid7_hex())[0] <= time.time_ns() // 1_000_000 + 1

    def test_public_maker_is_version_7(self):
        """new_workflow_id (stdlib uuid7 where it exists) makes increasing version-7 ids."""
        made = [new_workflow_id() for _ in range(1000)]
        assert all(uuid.UUID(hex=m).version == 7 for m in made)
        assert made == sorted(made)


@activity
async def _echo(x: int) -> int:
    return x


@workflow
async def _one_step(x: int) -> int:
    return await _echo(x)


class TestRuntimeIds:
    async def test_generated_ids_follow_start_order(self, db_path):
        """Workflows started without an id get time-ordered ids, in the order they started."""
        async with Runtime(db_path) as rt:
            handles = [await rt.start(_one_step, i) for i in range(50)]
            handles += await asyncio.gather(*(rt.start(_one_step, i) for i in range(50)))
            ids = [h.id for h in handles]
            assert ids[:50] == sorted(ids[:50])
            assert max(ids[:50]) < min(ids[50:])
            assert all(uuid.UUID(hex=i).version == 7 for i in ids)
            assert [await h.result() for h in handles[:3]] == [0, 1, 2]

    async def test_explicit_ids_are_kept(self, db_path):
        """An id given by the caller is used as it is."""
        async with Runtime(db_path) as rt:
            handle = await rt.start(_one_step, 1, id="order-42")
            assert handle.id == "order-42"
            assert await handle.result() == 1


def test_py_orchestrate_ids_are_dashed_version_7(db_path):
    """py-orchestrate's invoke_workflow returns dashed UUIDs, time-ordered like every other."""
    from flowcore.compat.py_orchestrate import Orchestrator
    from flowcore.compat.py_orchestrate import activity as po_activity
    from flowcore.compat.py_orchestrate import workflow as po_workflow

    @po_activity("ids_echo")
    def ids_echo(x: int) -> int:
        return x

    @po_workflow("ids_flow")
    def ids_flow(x: int) -> dict[str, int]:
        return {"x": ids_echo(x)}

    orch = Orchestrator(str(db_path), max_workers=2)
    orch.start()
    try:
        ids = [orch.invoke_workflow("ids_flow", x=i) for i in range(3)]
        for wid in ids:
            assert orch.wait_for_workflow(wid, timeout=10)["status"] == "done"
    finally:
        orch.stop(timeout=0)
    assert all(str(uuid.UUID(wid)) == wid and uuid.UUID(wid).version == 7 for wid in ids)
    assert ids == sorted(ids)
