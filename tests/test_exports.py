"""The public surface: what `import flowcore` offers is deliberate and pinned here."""

from __future__ import annotations

import ast
import pathlib

import pytest

import flowcore

EXPECTED = {
    "ActivityDef", "ActivityError", "ActivityTimeoutError", "BackendError",
    "BackendUnavailableError", "FailureInfo", "FlowcoreError", "Info", "JournalCorruptError",
    "JournalError", "JournalLockedError", "NonRetryableError", "NondeterminismError",
    "PayloadError", "RegistrationError", "RetryPolicy", "Runtime", "SchemaVersionError",
    "UnknownVersionError", "WorkflowAlreadyExistsError", "WorkflowCanceledError", "WorkflowDef",
    "WorkflowError", "WorkflowFailedError", "WorkflowHandle", "WorkflowMisuseError",
    "WorkflowNotFoundError", "WorkflowState", "WorkflowStatus", "activity", "activity_info",
    "gather", "info", "now", "random", "uuid4",
    # issue 3: timers, events, races, children, continue-as-new, custom status
    "First", "WorkflowFinishedError", "child", "continue_as_new", "first", "set_status", "sleep",
    "sleep_until", "wait_event", "workflow",
    # issue 8: a blocking API for sync code
    "BlockingRuntime",
    # issue 9: embedding in async web apps
    "lifespan",
    # issue 10: bad input is a flowcore error
    "InvalidArgumentError",
}  # fmt: skip

SRC = pathlib.Path(flowcore.__file__).parent


class TestExports:
    def test_all_is_the_expected_surface(self):
        """__all__ lists exactly the public names, sorted."""
        assert set(flowcore.__all__) == EXPECTED
        assert list(flowcore.__all__) == sorted(flowcore.__all__)

    def test_every_name_resolves(self):
        """Every exported name is an attribute of the package."""
        for name in flowcore.__all__:
            assert getattr(flowcore, name) is not None

    def test_classes_show_the_public_module(self):
        """Exported classes report `flowcore` as their module, as users import them."""
        assert repr(flowcore.Runtime).startswith("<class 'flowcore.Runtime'")
        assert flowcore.WorkflowFailedError.__module__ == "flowcore"

    def test_error_tree(self):
        """The exception hierarchy matches the documented tree."""
        assert issubclass(flowcore.UnknownVersionError, flowcore.RegistrationError)
        assert issubclass(flowcore.NondeterminismError, flowcore.WorkflowError)
        assert issubclass(flowcore.WorkflowFailedError, flowcore.WorkflowError)
        assert issubclass(flowcore.ActivityTimeoutError, flowcore.ActivityError)
        assert issubclass(flowcore.JournalLockedError, flowcore.JournalError)
        assert issubclass(flowcore.BackendUnavailableError, flowcore.BackendError)
        for name in EXPECTED:
            obj = getattr(flowcore, name)
            if isinstance(obj, type) and issubclass(obj, Exception) and name.endswith("Error"):
                assert issubclass(obj, flowcore.FlowcoreError) or obj is flowcore.NonRetryableError

    def test_public_submodules_load_on_first_use(self):
        """`import flowcore`, then `flowcore.testing.VirtualClock()`: as the README writes it."""
        import subprocess
        import sys

        code = (
            "import sys, flowcore\n"
            "loaded = 'flowcore.testing' in sys.modules\n"
            "clock = flowcore.testing.VirtualClock()\n"
            "print(loaded, type(clock).__name__, flowcore.steps.step.__name__)\n"
            "try:\n    flowcore.nothing_here\nexcept AttributeError as exc:\n    print(exc)"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True).stdout  # fmt: skip
        assert out.splitlines() == [
            "False VirtualClock step",
            "module 'flowcore' has no attribute 'nothing_here'",
        ]

    async def test_the_testing_module_offers_a_journal_in_memory(self):
        """`Runtime(journal=flowcore.testing.InMemoryJournal())`, as the README writes it."""
        import flowcore.testing

        @flowcore.workflow(name="exports_in_memory")
        async def in_memory(x: int) -> int:
            return x + 1

        runtime = flowcore.Runtime(journal=flowcore.testing.InMemoryJournal())
        assert repr(runtime) == "<flowcore.Runtime new on InMemoryJournal(':memory:')>"
        async with runtime as rt:
            assert repr(rt).startswith("<flowcore.Runtime open on")
            assert await (await rt.start(in_memory, 1)).result(timeout=10) == 2
        assert repr(runtime).startswith("<flowcore.Runtime closed on")

    def test_a_handle_says_why_it_does_not_pickle(self):
        """A handle belongs to its runtime: pickling it names the id to send instead."""
        import copy
        import pickle

        handle = flowcore.Runtime(journal=flowcore.testing.InMemoryJournal()).handle("w-1")
        for attempt in (pickle.dumps, copy.copy, copy.deepcopy):
            with pytest.raises(TypeError, match=r"pass its id \('w-1'\) instead"):
                attempt(handle)

    def test_py_typed_is_shipped(self):
        """The package is marked as typed."""
        assert (SRC / "py.typed").exists()


class TestLayering:
    def test_engine_imports_no_io_layer(self):
        """The engine imports nothing from the runtime, the journal or the backends."""
        forbidden = (
            "flowcore.runtime",
            "flowcore.journal",
            "flowcore.backends",
            "aiosqlite",
            "anyio",
            "asyncio",
            "sqlite3",
            "time",
        )
        for path in (SRC / "engine").glob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                for name in names:
                    assert not name.startswith(forbidden), f"{path.name} imports {name}"

    def test_core_imports_without_web_extras(self):
        """`import flowcore` pulls in neither starlette nor uvicorn (they are the web extra)."""
        import subprocess
        import sys

        code = (
            "import sys, flowcore\n"
            "print(sorted(m for m in ('starlette', 'uvicorn') if m in sys.modules))"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True).stdout  # fmt: skip
        assert out.strip() == "[]"

    def test_no_pickle_anywhere(self):
        """No module of the package imports pickle."""
        for path in SRC.rglob("*.py"):
            assert "import pickle" not in path.read_text(), path
