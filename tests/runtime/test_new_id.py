"""Generated workflow ids: random UUID4 hex text, as ``uuid.uuid4().hex`` gives."""

from __future__ import annotations

import uuid

from flowcore import workflow
from flowcore._core import new_id
from flowcore.journal.memory import InMemoryJournal
from flowcore.runtime import Runtime


class TestNewId:
    def test_is_uuid4_hex(self):
        """An id is 32 lowercase hex digits that parse as a version 4, RFC 4122 UUID."""
        for _ in range(200):
            wid = new_id()
            parsed = uuid.UUID(hex=wid)
            assert parsed.hex == wid
            assert parsed.version == 4
            assert parsed.variant == uuid.RFC_4122

    def test_ids_differ(self):
        """Ids do not repeat."""
        assert len({new_id() for _ in range(1000)}) == 1000

    async def test_start_without_an_id_uses_one(self):
        """A workflow started without an id gets such an id."""

        @workflow
        async def nid_flow() -> int:
            return 1

        async with Runtime(journal=InMemoryJournal()) as rt:
            handle = await rt.start(nid_flow)
            assert uuid.UUID(hex=handle.id).version == 4
            assert await handle.result() == 1
