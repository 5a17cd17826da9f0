"""Faults: a full disk, a journal file deleted or replaced, hanging activities, unprintable
exceptions, too few threads, oversized and deeply nested payloads."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import threading
import time

import anyio
import pytest
import structlog

import flowcore
from flowcore import (
    ActivityError,
    ActivityTimeoutError,
    InvalidArgumentError,
    JournalError,
    PayloadError,
    RetryPolicy,
    Runtime,
    WorkflowFailedError,
    WorkflowNotFoundError,
    _cli,
)
from flowcore._verify import verify_journal
from flowcore.engine import events as ev
from tests.helpers import events_of

TEN_MB = 10 * 1024 * 1024


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.fixture
def echo_wf():
    """A workflow that waits for an event, then runs one activity."""

    @flowcore.activity
    def ft_len(x: str) -> int:
        return len(x)

    @flowcore.workflow
    async def ft_wait(x: str) -> int:
        extra = await flowcore.wait_event("go")
        return await ft_len(x) + extra

    return ft_wait


class TestDiskFull:
    async def test_stops_with_a_clear_error_loses_nothing_and_resumes(self, db_path, echo_wf):
        """SQLITE_FULL at a commit: work is refused, acks survive, a new runtime carries on."""
        acked = []
        rt = Runtime(db_path)
        await rt.open()
        try:
            for i in range(3):
                await rt.start(echo_wf, "a" * i, id=f"small{i}")
                acked.append(f"small{i}")
            writer = rt._journal._writer
            pages = (await (await writer.execute("PRAGMA page_count")).fetchone())[0]
            await writer.execute(f"PRAGMA max_page_count = {pages + 8}")  # the disk is "full"
            with pytest.raises(JournalError, match="full"):  # noqa: PT012 - fill it up
                for i in range(100):
                    await rt.start(echo_wf, "x" * 20_000, id=f"big{i}")
                    acked.append(f"big{i}")
            refused = f"big{len(acked) - 3}"
            with pytest.raises(JournalError, match="stopped accepting work"):
                await rt.start(echo_wf, "y", id="after")
            with pytest.raises(JournalError, match="stopped accepting work"):
                await rt.send_event("small0", "go", 1)
        finally:
            await rt.close()
        assert verify_journal(db_path).ok
        # Space is back (the page limit belonged to the failed runtime's connection).
        async with Runtime(db_path) as rt:
            with pytest.raises(WorkflowNotFoundError):
                await rt.status(refused)  # its start was never acknowledged, nor written
            for wid in acked:
                await rt.send_event(wid, "go", 1)
            results = {wid: await rt.result(wid, timeout=10) for wid in acked}
            assert results["small2"] == 3
            assert all(results[w] == 20_001 for w in acked if w.startswith("big"))
            assert await (await rt.start(echo_wf, "z", id="later")).status() is not None
        assert verify_journal(db_path).ok

    def test_opening_on_a_full_disk_gives_a_journal_error(self, tmp_path):
        """Opening a runtime where nothing can be written raises JournalError, not sqlite3's.

        A subprocess whose file-size limit is 0 bytes (RLIMIT_FSIZE; writes fail with EFBIG)
        stands for a full disk.
        """
        script = textwrap.dedent(
            """
            import asyncio, resource, signal, sys
            import flowcore

            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))

            async def main():
                try:
                    async with flowcore.Runtime(sys.argv[1]):
                        print("opened")
                except flowcore.JournalError as exc:
                    print("JournalError:", exc)

            asyncio.run(main())
            """
        )
        db = tmp_path / "full.db"
        done = subprocess.run(
            [sys.executable, "-c", script, str(db)],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.startswith("JournalError: journal"), done.stdout
        assert "cannot be opened" in done.stdout
        assert "has space" in done.stdout


class TestUnstorableText:
    @pytest.mark.parametrize("action", ["cancel", "terminate", "send_event"])
    async def test_is_refused_and_the_runtime_goes_on(self, db_path, echo_wf, action):
        """A reason or event name SQLite cannot store is refused; nothing stops."""
        async with Runtime(db_path) as rt:
            await rt.start(echo_wf, "a", id="w")
            call = {
                "cancel": lambda: rt.cancel("w", "bad \ud800 reason"),
                "terminate": lambda: rt.terminate("w", "bad \ud800 reason"),
                "send_event": lambda: rt.send_event("w", "go\x00", 1),
            }[action]
            with pytest.raises(InvalidArgumentError):
                await call()
            await rt.send_event("w", "go", 1)
            assert await rt.result("w", timeout=10) == 2

    async def test_lone_surrogates_the_code_produces_are_stored_and_read_back(self, db_path):
        """Values the workflow and its activities build (an exception message, a result, a
        custom status) may hold a lone surrogate: they are journaled escaped and read back as
        they were; the commit never fails (it used to stop the whole runtime)."""

        @flowcore.activity
        async def ft_bad_text(x: int) -> str:
            raise ValueError(f"bad \ud800 text {x}")

        @flowcore.workflow
        async def ft_surrogates(x: int) -> str:
            flowcore.set_status("st \udc80")
            try:
                await ft_bad_text(x)
            except flowcore.ActivityError as exc:
                return f"caught: {exc.failure.message}"
            return "no error"

        @flowcore.workflow
        async def ft_fails_badly(x: int) -> str:
            return await ft_bad_text(x)

        async with Runtime(db_path) as rt:
            assert await (await rt.start(ft_surrogates, 1, id="s")).result(timeout=10) == (
                "caught: bad \ud800 text 1"
            )
            with pytest.raises(WorkflowFailedError):
                await (await rt.start(ft_fails_badly, 2, id="f")).result(timeout=10)
            failed = await rt.status("f")
            assert failed.error is not None
            assert "bad \\ud800 text 2" in failed.error  # shown escaped in the status row
            assert (await rt.status("s")).custom_status == "st \udc80"
            assert await (await rt.start(ft_echo_result, 3)).result(timeout=10) == 3  # healthy
        assert verify_journal(db_path).ok

    async def test_split_surrogate_pair_in_a_payload_is_refused(self, db_path, echo_wf):
        """'\\ud800\\udc00' (two code points) would come back from JSON as '\\U00010000' (one):
        refused with PayloadError instead of changing the value; lone ones and real astral
        characters round-trip (found by the fuzz test of start)."""

        @flowcore.workflow
        async def ft_echo_any(x: object) -> object:
            return x

        async with Runtime(db_path) as rt:
            with pytest.raises(PayloadError, match=r"surrogate pair .* one character"):
                await rt.start(ft_echo_any, {"k": ["a\ud800\udc00b"]})
            await rt.start(echo_wf, "a", id="w")
            with pytest.raises(PayloadError, match="surrogate pair"):
                await rt.send_event("w", "go", "\udbff\udfff")
            for value in ("\ud800 \udc00", "\U00010000", "\udc00\ud800"):
                assert await (await rt.start(ft_echo_any, value)).result(timeout=10) == value
            await rt.send_event("w", "go", 1)
            assert await rt.result("w", timeout=10) == 2


@flowcore.workflow
async def ft_echo_result(x: int) -> int:
    return x


class TestJournalFileGone:
    async def test_deleted_file_is_detected_at_the_next_commit(self, db_path, echo_wf):
        """Deleting the database under a runtime fails the next commit with a clear error."""
        async with Runtime(db_path) as rt:
            await rt.start(echo_wf, "a", id="before")
            db_path.unlink()
            with pytest.raises(JournalError, match="was deleted while this runtime had it open"):
                await rt.start(echo_wf, "b", id="after")
            with pytest.raises(JournalError, match="stopped accepting work"):
                await rt.send_event("before", "go", 1)

    async def test_replaced_file_is_detected_at_the_next_commit(self, tmp_path, echo_wf):
        """Replacing the database file (a restore, a copy) under a runtime is refused too."""
        db, other = tmp_path / "a.db", tmp_path / "b.db"
        async with Runtime(other):
            pass
        async with Runtime(db) as rt:
            await rt.start(echo_wf, "a", id="before")
            other.replace(db)
            with pytest.raises(JournalError, match="replaced by another file"):
                await rt.send_event("before", "go", 1)

    async def test_deleted_write_ahead_log_is_detected_and_what_it_held_is_saved(
        self, tmp_path, echo_wf
    ):
        """Deleting the ``-wal`` file fails the next commit; acknowledged work is not lost.

        Until a checkpoint, committed transactions live only in the ``-wal``: deleting it used to
        go unnoticed (SQLite writes on into the unlinked file) and a crash then lost every
        acknowledged start. The database file (copied here as a crash would leave it, without
        a ``-wal``) must hold what was acknowledged.
        """
        db, wal = tmp_path / "w.db", tmp_path / "w.db-wal"
        async with Runtime(db) as rt:
            await rt.start(echo_wf, "a", id="before")
            wal.unlink()
            with pytest.raises(JournalError, match=r"w\.db-wal' was deleted while this runtime"):
                await rt.start(echo_wf, "b", id="after")
            shutil.copyfile(db, tmp_path / "after-crash.db")  # what a SIGKILL now leaves
        async with Runtime(tmp_path / "after-crash.db") as rt:
            assert (await rt.status("before")).status == "running"
            with pytest.raises(WorkflowNotFoundError):
                await rt.status("after")
            await rt.send_event("before", "go", 1)
            assert await rt.result("before", timeout=10) == 2


class TestHangingActivity:
    async def test_async_activity_times_out_and_the_workflow_continues(self, db_path):
        """A hung async activity's timeout fires each attempt; the workflow takes its fallback."""

        @flowcore.activity(timeout=0.1, retry=RetryPolicy(max_attempts=2, initial_interval=0.01))
        async def ft_hang_async() -> str:
            await anyio.sleep_forever()
            return "never"

        @flowcore.workflow
        async def ft_fallback() -> str:
            try:
                return await ft_hang_async()
            except ActivityTimeoutError as exc:
                return f"fallback after {exc.attempts}"

        async with Runtime(db_path) as rt:
            assert (
                await (await rt.start(ft_fallback, id="h")).result(timeout=10) == "fallback after 2"
            )
            (failed,) = await events_of(rt, "h", ev.ActivityFailed)
            assert failed.timed_out
            assert failed.attempts == 2

    async def test_sync_activity_times_out_without_waiting_for_its_thread(self, db_path):
        """A hung sync activity is abandoned at its timeout; the workflow goes on meanwhile."""
        release = threading.Event()

        @flowcore.activity(timeout=0.1, retry=RetryPolicy(max_attempts=1))
        def ft_hang_sync() -> str:
            release.wait(30)
            return "late"

        @flowcore.workflow
        async def ft_goes_on() -> str:
            try:
                return await ft_hang_sync()
            except ActivityTimeoutError:
                return "went on"

        try:
            async with Runtime(db_path) as rt:
                began = time.monotonic()
                assert await (await rt.start(ft_goes_on)).result(timeout=10) == "went on"
                assert time.monotonic() - began < 5
        finally:
            release.set()


class _UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


class TestUnserialisableExceptions:
    @pytest.mark.parametrize("kind", ["unprintable", "cycle", "objects"])
    async def test_failure_info_is_still_recorded(self, db_path, kind):
        """Whatever the exception holds, its failure is journaled with its type."""

        @flowcore.activity(retry=RetryPolicy(max_attempts=1))
        def ft_raise(kind: str) -> None:
            if kind == "unprintable":
                raise _UnprintableError
            if kind == "cycle":
                a, b = ValueError("a"), KeyError("b")
                a.__cause__, b.__cause__ = b, a
                raise a
            raise ValueError(object(), lambda: 1, threading.Lock())

        @flowcore.workflow
        async def ft_raises(kind: str) -> None:
            await ft_raise(kind)

        async with Runtime(db_path) as rt:
            with pytest.raises(WorkflowFailedError) as info:
                await (await rt.start(ft_raises, kind, id=kind)).result(timeout=10)
            (failed,) = await events_of(rt, kind, ev.ActivityFailed)
        expected = "_UnprintableError" if kind == "unprintable" else "ValueError"
        assert failed.failure.short_type == expected
        assert info.value.failure.is_caused_by(expected)
        if kind == "unprintable":
            assert "unprintable _UnprintableError" in failed.failure.message
        if kind == "cycle":
            assert failed.failure.cause.short_type == "KeyError"
            assert failed.failure.cause.cause is None  # the cycle is cut
        assert verify_journal(db_path).ok

    async def test_unprintable_exception_from_workflow_code(self, db_path):
        """A workflow raising an unprintable exception fails with it recorded."""

        @flowcore.workflow
        async def ft_bad_wf() -> None:
            raise _UnprintableError

        async with Runtime(db_path) as rt:
            with pytest.raises(WorkflowFailedError) as info:
                await (await rt.start(ft_bad_wf)).result(timeout=10)
        assert info.value.failure.short_type == "_UnprintableError"


class _Peak:
    """How many calls of a sync activity run at once, and the most that ever did."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.running = 0
        self.peak = 0

    def __enter__(self) -> None:
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.running -= 1


class TestThreadExhaustion:
    @pytest.mark.parametrize("limits", ["runtime", "backend"])
    async def test_more_sync_activities_than_threads_all_complete(self, db_path, limits):
        """40 blocking activities on 3 slots all finish, never more than 3 at once."""
        from flowcore.backends.local import LocalBackend

        threads = _Peak()

        @flowcore.activity
        def ft_block(i: int) -> int:
            with threads:
                time.sleep(0.005)
            return i

        @flowcore.workflow
        async def ft_many(n: int) -> int:
            return sum(await flowcore.gather(*(ft_block(i) for i in range(n))))

        options = (
            {"max_concurrent_activities": 3}
            if limits == "runtime"
            else {"backend": LocalBackend(max_threads=3)}
        )
        async with Runtime(db_path, **options) as rt:
            assert await (await rt.start(ft_many, 40)).result(timeout=30) == sum(range(40))
        assert threads.peak <= 3

    async def test_threads_of_timed_out_activities_count_until_they_return(self, db_path):
        """Hung sync attempts that timed out keep their thread's place: threads stay bounded.

        Python cannot stop a thread: an abandoned one runs on. Were its place freed at the
        timeout, every hung attempt would add a thread (a leak without bound in a long run).
        """
        release = threading.Event()
        threads = _Peak()

        @flowcore.activity(timeout=0.05, retry=RetryPolicy(max_attempts=1))
        def ft_stuck(i: int) -> int:
            with threads:
                release.wait(30)
            return i

        @flowcore.workflow
        async def ft_gives_up(i: int) -> str:
            try:
                return str(await ft_stuck(i))
            except ActivityTimeoutError:
                return "timed out"

        try:
            async with Runtime(db_path, max_concurrent_activities=2) as rt:
                handles = [await rt.start(ft_gives_up, i) for i in range(8)]
                for handle in handles:
                    assert await handle.result(timeout=10) == "timed out"
                assert threads.peak <= 2
        finally:
            release.set()
        assert threads.peak <= 2


class TestPayloads:
    @pytest.fixture
    def big_wf(self):
        @flowcore.activity(retry=RetryPolicy(max_attempts=3, initial_interval=0.01))
        def ft_make(size: int) -> str:
            return "x" * size

        @flowcore.activity(retry=RetryPolicy(max_attempts=3, initial_interval=0.01))
        def ft_deep(depth: int) -> list:
            return _nested(depth)

        @flowcore.workflow
        async def ft_big(p: object) -> str:
            if isinstance(p, dict) and "make" in p:
                try:
                    return await ft_make(p["make"])
                except ActivityError as exc:
                    # not retried (a retry gives the same), and caused by a PayloadError
                    payload_error = exc.failure.is_caused_by(PayloadError)
                    return f"refused ({exc.attempts}, {payload_error}): {exc.failure.message}"
            if isinstance(p, dict) and "deep" in p:
                try:
                    await ft_deep(p["deep"])
                except ActivityError as exc:
                    return f"deep refused ({exc.failure.is_caused_by(PayloadError)})"
            return "ok"

        return ft_big

    async def test_ten_megabyte_input_and_event_are_refused(self, db_path, big_wf, echo_wf):
        """A 10 MB start input or event payload raises PayloadError; nothing is written."""
        big = "x" * TEN_MB
        async with Runtime(db_path) as rt:
            with pytest.raises(PayloadError, match=r"more than the 4,194,304-byte limit"):
                await rt.start(big_wf, big, id="huge")
            with pytest.raises(WorkflowNotFoundError):
                await rt.status("huge")
            await rt.start(echo_wf, "a", id="w")
            with pytest.raises(PayloadError, match="max_payload_bytes"):
                await rt.send_event("w", "go", {"blob": [big]})
            assert not await events_of(rt, "w", ev.EventReceived)
            await rt.send_event("w", "go", 1)  # still healthy
            assert await rt.result("w", timeout=10) == 2

    async def test_ten_megabyte_activity_result_fails_the_activity(self, db_path, big_wf):
        """An activity returning 10 MB fails at once with a PayloadError the workflow can catch."""
        async with Runtime(db_path) as rt:
            out = await (await rt.start(big_wf, {"make": TEN_MB})).result(timeout=30)
            assert out.startswith("refused (1, True): ")
            assert "the result of 'ft_make' is 10,485,762 bytes of JSON, more than the" in out

    async def test_the_limit_is_configurable(self, db_path, big_wf):
        """Runtime(max_payload_bytes=...) moves the limit both ways."""
        # 300 bytes: room for the workflow's result, which quotes the refusal (held to it too)
        async with Runtime(db_path, max_payload_bytes=300) as rt:
            with pytest.raises(PayloadError, match="300-byte limit"):
                await rt.start(big_wf, "x" * 400)
            assert await (await rt.start(big_wf, "x" * 50)).result(timeout=10) == "ok"
            out = await (await rt.start(big_wf, {"make": 500})).result(timeout=10)
            assert out.startswith("refused")
        with pytest.raises(ValueError, match="max_payload_bytes"):
            Runtime(db_path, max_payload_bytes=0)

    async def test_deeply_nested_payloads_give_payload_error(self, db_path, big_wf, echo_wf):
        """Nesting 10,000 levels deep is a PayloadError everywhere, never a RecursionError."""
        deep = _nested(10_000)
        async with Runtime(db_path) as rt:
            with pytest.raises(PayloadError, match="nested"):
                await rt.start(big_wf, deep)
            await rt.start(echo_wf, "a", id="w")
            with pytest.raises(PayloadError, match="nested"):
                await rt.send_event("w", "go", deep)
            assert await (await rt.start(big_wf, {"deep": 10_000})).result(timeout=10) == (
                "deep refused (True)"
            )
            assert await (await rt.start(big_wf, _nested(50))).result(timeout=10) == "ok"

    @pytest.mark.parametrize(
        ("payload", "message"),
        [
            ('"' + "x" * (5 * 1024 * 1024) + '"', "byte limit"),
            ("[" * 100_000 + "]" * 100_000, "JSON"),
        ],
        ids=["large", "deep"],
    )
    def test_cli_refuses_with_one_line(self, db_path, capsys, payload, message):
        """The CLI refuses an oversized or too deeply nested --payload with exit code 2."""
        saved = structlog.get_config()
        try:
            code = _cli.main(["start", "ft_any", "--db", str(db_path), "--payload", payload])
        finally:
            structlog.configure(**saved)
        err = capsys.readouterr().err
        assert code == 2
        assert message in err
        assert len(err.strip().splitlines()) == 1
