"""Numbered-step pipelines (pyorchestration's model) on durable workflows."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import sys
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from flowcore import (
    ActivityError,
    ActivityTimeoutError,
    FailureInfo,
    PayloadError,
    RegistrationError,
    RetryPolicy,
    Runtime,
    WorkflowFailedError,
    WorkflowState,
    steps,
    workflow,
)
from flowcore.backends.base import ActivityOutcome
from flowcore.engine.events import (
    ActivityAttemptFailed,
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
)
from flowcore.steps import OrchestrationState, PipelineResult, SkippedStep, step


class Greeting(OrchestrationState):
    """pyorchestration's README state, unchanged but for the import."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.said: list[str] = []

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> Greeting:
        return cls(payload["name"])


class Ledger(OrchestrationState):
    """A state whose annotated attributes come back typed from each checkpoint."""

    total: Decimal
    lines: list[str]

    def __init__(self, total: Decimal) -> None:
        super().__init__()
        self.total = total
        self.lines = []

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> Ledger:
        return cls(Decimal(payload.get("total", "0")))


PIPELINE_MODULE = """
from flowcore.steps import OrchestrationState, step


@step(1, state_class=OrchestrationState, orchestration="st_reload")
def prepare(state):
    state.prepared = True


@step(2, state_class=OrchestrationState, orchestration="st_reload")
def work(state):
    state.worked = True
"""
TWICE = """

@step(2, state_class=OrchestrationState, orchestration="st_reload")
def work(state):
    state.worked_again = True
"""


async def run(db_path, name: str, payload: Any = None) -> tuple[PipelineResult, Any]:
    async with Runtime(db_path) as rt:
        handle = await rt.start(name, payload)
        result = await handle.result(timeout=30)
        status = await handle.status()
        history = await handle.history()
    return result, (status, history)


class TestReadmeScenario:
    async def test_default_orchestration_from_a_json_payload(self, db_path, caplog):
        """The README's two steps run in order on MyState built from a JSON string payload."""

        @step(number=1, state_class=Greeting)
        def say_hi(state: Greeting) -> None:
            logging.getLogger("readme").info("hi %s", state.name)
            state.said.append(f"hi {state.name}")

        @step(number=2, state_class=Greeting)
        def say_bye(state: Greeting) -> None:
            logging.getLogger("readme").info("bye %s", state.name)
            state.said.append(f"bye {state.name}")

        caplog.set_level(logging.INFO, logger="readme")
        result, (status, history) = await run(
            db_path, "default_orchestration", json.dumps({"name": "Andrea"})
        )
        assert result.state == {"name": "Andrea", "said": ["hi Andrea", "bye Andrea"]}
        assert result.skipped == ()
        assert status.status is WorkflowState.COMPLETED
        assert [r.getMessage() for r in caplog.records] == ["hi Andrea", "bye Andrea"]
        names = [e.name for e in history if isinstance(e, ActivityScheduled)]
        assert names == [
            "default_orchestration:init",
            "default_orchestration:1:say_hi",
            "default_orchestration:2:say_bye",
        ]
        state = steps.get_orchestration("default_orchestration").load_state(result.state)
        assert isinstance(state, Greeting)
        assert state.said == ["hi Andrea", "bye Andrea"]


class TestOrdering:
    async def test_steps_run_in_number_order_not_declaration_order(self, db_path):
        """Steps declared 30, 10, 20 run 10, 20, 30, each on the state the previous one left."""

        @step(30, state_class=Greeting, orchestration="st_order")
        def third(state: Greeting) -> None:
            state.said.append("30")

        @step(10, state_class=Greeting, orchestration="st_order")
        def first(state: Greeting) -> None:
            state.said.append("10")

        @step(20, state_class=Greeting, orchestration="st_order")
        async def second(state: Greeting) -> None:
            state.said.append("20")

        result, _ = await run(db_path, "st_order", {"name": "x"})
        assert result.state["said"] == ["10", "20", "30"]

    def test_duplicate_step_number_is_refused_at_decoration(self):
        """A second function with a taken number raises RegistrationError when decorated."""

        @step(1, state_class=Greeting, orchestration="st_dup")
        def one(state: Greeting) -> None: ...

        with pytest.raises(RegistrationError, match="already has step 1"):

            @step(1, state_class=Greeting, orchestration="st_dup")
            def other(state: Greeting) -> None: ...

    def test_same_name_defined_twice_with_one_number_is_refused(self, tmp_path, monkeypatch):
        """A copy-pasted step (same number, same function name) in one module is an error.

        It used to replace the first definition silently, so one of the two never ran.
        """
        monkeypatch.syspath_prepend(str(tmp_path))
        (tmp_path / "st_twice_mod.py").write_text(PIPELINE_MODULE + TWICE, encoding="utf-8")
        with pytest.raises(RegistrationError, match="defines step 2 twice") as caught:
            importlib.import_module("st_twice_mod")
        assert "st_twice_mod.work" in str(caught.value)
        monkeypatch.delitem(sys.modules, "st_twice_mod", raising=False)

    def test_a_reloaded_module_replaces_its_steps(self, tmp_path, monkeypatch):
        """importlib.reload of an edited pipeline module re-registers its steps, no error."""
        monkeypatch.syspath_prepend(str(tmp_path))
        source = tmp_path / "st_reload_mod.py"
        source.write_text(PIPELINE_MODULE, encoding="utf-8")
        module = importlib.import_module("st_reload_mod")
        monkeypatch.setitem(sys.modules, "st_reload_mod", module)
        first = steps.get_orchestration("st_reload").steps[2].fn
        source.write_text("# edited: the steps moved down\n\n" + PIPELINE_MODULE, encoding="utf-8")
        importlib.reload(module)
        again = steps.get_orchestration("st_reload").steps[2].fn
        assert again is module.work
        assert again is not first
        assert sorted(steps.get_orchestration("st_reload").steps) == [1, 2]

    def test_state_class_mismatch_and_name_clash_are_refused(self):
        """One orchestration has one state class; a plain workflow's name cannot be reused."""

        @step(1, state_class=Greeting, orchestration="st_cls")
        def one(state: Greeting) -> None: ...

        with pytest.raises(RegistrationError, match="one state class"):

            @step(2, state_class=Ledger, orchestration="st_cls")
            def two(state: Ledger) -> None: ...

        @workflow(name="st_taken")
        async def taken() -> None: ...

        with pytest.raises(RegistrationError, match="already registered"):

            @step(1, state_class=Greeting, orchestration="st_taken")
            def clash(state: Greeting) -> None: ...

    def test_state_class_needs_from_dict(self):
        """A state class without from_dict is refused with the fix named."""

        class Bare:
            pass

        with pytest.raises(RegistrationError, match="from_dict"):
            steps.orchestration("st_bare", state_class=Bare)
        with pytest.raises(RegistrationError, match="state_class"):
            steps.orchestration("st_never_made")


class TestFailures:
    async def test_skippable_step_failure_is_recorded_and_the_run_continues(self, db_path):
        """A failing skippable step is journaled as failed and skipped; its changes are dropped."""

        @step(1, state_class=Greeting, orchestration="st_skip")
        def before(state: Greeting) -> None:
            state.said.append("before")

        @step(2, state_class=Greeting, orchestration="st_skip", skippable=True)
        def flaky(state: Greeting) -> None:
            state.said.append("half-done")  # lost: the next step starts from step 1's checkpoint
            raise ZeroDivisionError("100 / 0")

        @step(3, state_class=Greeting, orchestration="st_skip")
        def after(state: Greeting) -> None:
            state.said.append("after")

        result, (status, history) = await run(db_path, "st_skip", {"name": "x"})
        assert result.state["said"] == ["before", "after"]
        assert result.skipped == (
            SkippedStep(number=2, name="flaky", error="ZeroDivisionError: 100 / 0"),
        )
        assert status.status is WorkflowState.COMPLETED
        assert status.custom_status == {"skipped": [2]}
        [failed] = [e for e in history if isinstance(e, ActivityFailed)]
        assert failed.failure.is_caused_by(ZeroDivisionError)

    async def test_failing_step_fails_the_run_and_stops_it(self, db_path):
        """A non-skippable failure fails the workflow; later steps never run."""
        ran: list[int] = []

        @step(1, state_class=Greeting, orchestration="st_fail")
        def breaks(state: Greeting) -> None:
            ran.append(1)
            raise RuntimeError("broken")

        @step(2, state_class=Greeting, orchestration="st_fail")
        def never(state: Greeting) -> None:
            ran.append(2)

        with pytest.raises(WorkflowFailedError) as caught:
            await run(db_path, "st_fail", {"name": "x"})
        assert caught.value.failure.is_caused_by(RuntimeError)
        assert ran == [1]

    async def test_a_failed_run_names_the_pipeline_step_number(self, db_path):
        """The run's error names the failing step by its @step number, not the journal's count.

        It said "activity 'st_which:5:five' (step 3) failed": the journal's command number
        (init is 1), which a pyorchestration user reads as step 3.
        """

        @step(1, state_class=Greeting, orchestration="st_which")
        def one(state: Greeting) -> None: ...

        @step(5, state_class=Greeting, orchestration="st_which")
        def five(state: Greeting) -> None:
            raise RuntimeError("broken")

        with pytest.raises(WorkflowFailedError) as caught:
            await run(db_path, "st_which", {"name": "x"})
        failure = caught.value.failure
        assert failure.short_type == "StepFailedError"
        assert failure.message == (
            "step 5 (five) of orchestration 'st_which' failed after 1 attempt: RuntimeError: broken"
        )
        assert "(step 3)" not in str(caught.value)
        assert failure.is_caused_by(ActivityError)
        assert failure.is_caused_by(RuntimeError)

    async def test_a_timed_out_step_stays_an_activity_timeout(self, db_path):
        """The failure chain keeps the step's own ActivityTimeoutError under StepFailedError."""

        @step(1, state_class=Greeting, orchestration="st_slow", timeout=0.05)
        async def slow(state: Greeting) -> None:
            await asyncio.Event().wait()

        with pytest.raises(WorkflowFailedError) as caught:
            await run(db_path, "st_slow", {"name": "x"})
        assert caught.value.failure.is_caused_by(ActivityTimeoutError)

    async def test_a_state_that_cannot_be_built_names_step_0(self, db_path):
        """A from_dict that raises fails the run as step 0, building the state from the payload."""

        @step(1, state_class=Greeting, orchestration="st_nobuild")
        def one(state: Greeting) -> None: ...

        with pytest.raises(WorkflowFailedError) as caught:
            await run(db_path, "st_nobuild", {"nome": "x"})
        assert caught.value.failure.message == (
            "step 0 (building the state from the payload) of orchestration 'st_nobuild' "
            "failed after 1 attempt: KeyError: 'name'"
        )

    async def test_per_step_retry_policy(self, db_path):
        """A step with a RetryPolicy is attempted again; its attempts are journaled."""
        attempts: list[int] = []

        @step(
            1,
            state_class=Greeting,
            orchestration="st_retry",
            retry=RetryPolicy(max_attempts=3, initial_interval=0.0, backoff=1.0),
        )
        def shaky(state: Greeting) -> None:
            attempts.append(1)
            if len(attempts) < 3:
                raise ConnectionError("try again")
            state.said.append("made it")

        result, (_, history) = await run(db_path, "st_retry", {"name": "x"})
        assert result.state["said"] == ["made it"]
        assert len(attempts) == 3
        assert len([e for e in history if isinstance(e, ActivityAttemptFailed)]) == 2


class TestConfig:
    async def test_dict_config_and_a_per_run_override(self, db_path):
        """state.cfg holds the bound dict; a run's $config replaces top-level keys for that run."""
        seen: list[dict[str, Any]] = []

        steps.orchestration("st_cfg", state_class=Greeting, config={"region": "eu", "batch": 10})

        @step(1, orchestration="st_cfg")
        def read(state: Greeting, cfg: dict[str, Any]) -> None:
            assert cfg == state.cfg
            seen.append(state.cfg)

        await run(db_path, "st_cfg", {"name": "x"})
        await run(db_path, "st_cfg", steps.run_payload({"name": "y"}, config={"batch": 99}))
        assert seen == [{"region": "eu", "batch": 10}, {"region": "eu", "batch": 99}]

    async def test_a_step_changing_cfg_changes_neither_later_steps_nor_later_runs(self, db_path):
        """Each step gets a copy of the run's journaled config, as the migration guide says."""
        seen: list[dict[str, Any]] = []
        steps.orchestration("st_cfg_copy", state_class=Greeting, config={"batch": 10})

        @step(1, orchestration="st_cfg_copy")
        def change(state: Greeting) -> None:
            state.cfg["batch"] = 0

        @step(2, orchestration="st_cfg_copy")
        def read(state: Greeting, cfg: dict[str, Any]) -> None:
            seen.append(dict(cfg))

        await run(db_path, "st_cfg_copy", {"name": "x"})
        await run(db_path, "st_cfg_copy", {"name": "y"})
        assert seen == [{"batch": 10}, {"batch": 10}]

    async def test_toml_config_file_is_read_and_journaled(self, db_path, tmp_path):
        """A TOML file is read when the run starts; its contents are journaled with the state."""
        cfg_file = tmp_path / "pipeline.toml"
        cfg_file.write_text('name = "Andrea"\n[test]\nfoo = "bar"\n')
        seen: list[dict[str, Any]] = []

        @step(1, state_class=Greeting, orchestration="st_toml", config_file=cfg_file)
        def read(state: Greeting) -> None:
            seen.append(state.cfg)

        _, (_, history) = await run(db_path, "st_toml", {"name": "x"})
        assert seen == [{"name": "Andrea", "test": {"foo": "bar"}}]
        init = next(e for e in history if isinstance(e, ActivityCompleted))
        assert init.result["cfg"] == {"name": "Andrea", "test": {"foo": "bar"}}

    async def test_pyorchestration_positional_arguments(self, db_path, tmp_path):
        """@step(number, state_class, orchestration_name, config_file, skippable) positionally."""
        cfg_file = tmp_path / "positional.json"
        cfg_file.write_text('{"greeting": "hello"}')

        @step(1, Greeting, "st_positional", cfg_file, True)
        def fails(state: Greeting) -> None:
            raise RuntimeError(state.cfg["greeting"])

        @step(2, Greeting, "st_positional")
        def greets(state: Greeting) -> None:
            state.said.append(state.cfg["greeting"])

        result, _ = await run(db_path, "st_positional", {"name": "x"})
        assert result.state["said"] == ["hello"]
        assert [s.number for s in result.skipped] == [1]

    def test_unreadable_config_is_refused_at_registration(self, tmp_path):
        """An unknown config format (or YAML without PyYAML) is a RegistrationError up front."""
        with pytest.raises(RegistrationError, match="cannot read config"):
            steps.orchestration("st_ini", state_class=Greeting, config=tmp_path / "cfg.ini")
        try:
            import yaml  # noqa: F401
        except ImportError:
            with pytest.raises(RegistrationError, match="PyYAML"):
                steps.orchestration("st_yaml", state_class=Greeting, config=tmp_path / "c.yml")


class TestState:
    async def test_annotated_attributes_come_back_typed(self, db_path):
        """A Decimal attribute survives every checkpoint as a Decimal, not a string."""

        @step(1, state_class=Ledger, orchestration="st_ledger")
        def add(state: Ledger) -> None:
            state.total += Decimal("0.10")
            state.lines.append("fee")

        @step(2, state_class=Ledger, orchestration="st_ledger")
        def check(state: Ledger) -> None:
            assert isinstance(state.total, Decimal)
            state.total *= 2

        result, _ = await run(db_path, "st_ledger", {"total": "1.15"})
        state = steps.get_orchestration("st_ledger").load_state(result.state)
        assert state.total == Decimal("2.50")
        assert state.lines == ["fee"]

    async def test_a_step_may_return_a_new_state(self, db_path):
        """A frozen dataclass state works: each step returns the next state."""

        @dataclass(frozen=True)
        class Counter:
            n: int

            @classmethod
            def from_dict(cls, payload: dict[str, Any]) -> Counter:
                return cls(payload["n"])

        @step(1, state_class=Counter, orchestration="st_frozen")
        def bump(state: Counter) -> Counter:
            return Counter(state.n + 1)

        @step(2, state_class=Counter, orchestration="st_frozen")
        def double(state: Counter) -> Counter:
            return Counter(state.n * 2)

        result, _ = await run(db_path, "st_frozen", {"n": 4})
        assert result.state == {"n": 10}

    async def test_two_orchestrations_side_by_side(self, db_path):
        """Two orchestrations with different states run concurrently in one runtime."""

        @step(1, state_class=Greeting, orchestration="st_side_a")
        def greet(state: Greeting) -> None:
            state.said.append("a")

        @step(1, state_class=Ledger, orchestration="st_side_b")
        def charge(state: Ledger) -> None:
            state.total += 1

        async with Runtime(db_path) as rt:
            a = await rt.start("st_side_a", {"name": "x"})
            b = await rt.start("st_side_b", {"total": "2"})
            ra, rb = await a.result(timeout=30), await b.result(timeout=30)
        assert ra.state["said"] == ["a"]
        assert rb.state["total"] == "3"
        assert {o.name for o in (steps.get_orchestration("st_side_a"),)} == {"st_side_a"}

    async def test_steps_run_in_the_runtime_under_a_remote_default_backend(self, db_path):
        """Runtime(backend=CeleryBackend(app)) does not send the pipeline's steps to workers.

        They used to go there: a worker cannot import a step's runner (a closure) or the
        bound ``Orchestration._init``, so every run failed at step 0 with a TypeError.
        """
        sent: list[str] = []

        class Remote:
            """Stands in for CeleryBackend: records what it is asked to run, runs nothing."""

            name = "remote"
            remote = True

            async def open(self) -> None: ...

            async def close(self) -> None: ...

            async def execute(self, task: Any, **_: Any) -> ActivityOutcome:
                sent.append(task.activity.name)
                error = FailureInfo.from_exception(ImportError("not on this worker"))
                return ActivityOutcome(failure=error)

        @step(1, state_class=Greeting, orchestration="st_remote")
        def hello(state: Greeting) -> None:
            state.said.append("hello")

        async with Runtime(db_path, backend=Remote()) as rt:
            handle = await rt.start("st_remote", {"name": "x"})
            result = await handle.result(timeout=30)
        assert result.state["said"] == ["hello"]
        assert sent == []

    async def test_steps_start_checks_before_writing(self, db_path):
        """steps.start refuses an unknown name or a non-object payload; nothing is journaled."""

        @step(1, state_class=Greeting, orchestration="st_entry")
        def hello(state: Greeting) -> None:
            state.said.append(f"hello {state.cfg['greeting']}")

        async with Runtime(db_path) as rt:
            with pytest.raises(RegistrationError, match="no orchestration named 'st_nope'"):
                await steps.start(rt, "st_nope", "{}")
            with pytest.raises(PayloadError, match="st_entry"):
                await steps.start(rt, "st_entry", "not json")
            assert await rt.list() == []
            handle = await steps.start(
                rt, "st_entry", json.dumps({"name": "Andrea"}), config={"greeting": "there"}
            )
            result = await handle.result(timeout=30)
        assert result.state["said"] == ["hello there"]

    async def test_bad_payload_fails_the_run_with_a_clear_error(self, db_path):
        """A payload that is not a JSON object fails the run naming the orchestration."""

        @step(1, state_class=Greeting, orchestration="st_badpayload")
        def one(state: Greeting) -> None: ...

        with pytest.raises(WorkflowFailedError, match="must be a JSON object"):
            await run(db_path, "st_badpayload", "[1, 2]")
