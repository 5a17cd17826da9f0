"""Public-API usage checked by mypy strict; never executed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import flowcore
from flowcore import RetryPolicy, Runtime, WorkflowStatus, activity, steps, workflow
from flowcore.celery import CeleryBackend, CeleryStarter, register
from flowcore.compat import py_orchestrate
from flowcore.orchestra import OrchestraReporter, set_output
from flowcore.orchestra import task as orchestra_task

if TYPE_CHECKING:
    from celery import Celery


@dataclass
class Order:
    sku: str
    qty: int


@activity(retry=RetryPolicy(max_attempts=3), timeout=5)
async def charge(order: Order) -> int:
    return order.qty


@activity
def label(order: Order, *, prefix: str = "") -> str:
    return prefix + order.sku


@workflow(version="2")
async def place(order: Order) -> str:
    total: int = await charge(order)
    name: str = await label(order, prefix="x")
    both = await flowcore.gather(charge(order), charge(order))
    first: int = both[0]
    outcomes = await flowcore.gather(charge(order), charge(order), return_exceptions=True)
    each: int | Exception = outcomes[0]
    if isinstance(each, Exception):
        raise each
    flowcore.now().isoformat()
    flowcore.uuid4().hex  # noqa: B018
    flowcore.random() + 1.0
    version: str = flowcore.info().version
    return f"{name}{total}{first}{version}"


@workflow
async def no_input() -> None:
    return None


async def main() -> None:
    async with Runtime("x.db", durability="normal", max_concurrent_activities=10) as rt:
        handle = await rt.start(place, Order("a", 1), id="o1", if_exists="return")
        await rt.start("no_input")
        out: object = await handle.result(timeout=1.0)
        status: WorkflowStatus = await rt.status(handle.id)
        rows: list[WorkflowStatus] = await rt.list(name="place", limit=5)
        events = await rt.history("o1")
        print(out, status.current_activity, rows, events)  # noqa: T201


# -- the Orchestra adapter (flowcore[orchestra]) ----------------------------------------------

reporter = OrchestraReporter(task_run_id="00000000-0000-0000-0000-000000000000", api_key="k")


@reporter.run()
def report_me(n: int) -> str:
    return str(n)


@orchestra_task
async def report_me_too(n: int) -> int:
    return n


@workflow
async def with_outputs(n: int) -> int:
    await set_output("n", n)
    return n


async def orchestra_main() -> None:
    text: str = report_me(1)
    number: int = await report_me_too(2)
    async with Runtime("x.db", listeners=[reporter]) as rt:
        await rt.start(with_outputs, number, id=text)


def blocking_main() -> None:
    with flowcore.BlockingRuntime("x.db", max_concurrent_activities=4) as rt:
        wid: str = rt.start(place, Order("a", 1), if_exists="return")
        out: object = rt.result(wid, timeout=1.0)
        status: WorkflowStatus = rt.status(wid)
        rt.send_event(wid, "approval", {"ok": True})
        print(out, status, rt.list(name="place", limit=5))  # noqa: T201


class PipelineState(steps.OrchestrationState):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


@steps.step(number=1, state_class=PipelineState, skippable=True)
def greet(state: PipelineState) -> None:
    state.name = state.name.title()


async def pipeline_main(rt: Runtime) -> None:
    handle = await steps.start(rt, "default_orchestration", {"name": "x"}, config={"k": 1})
    result: steps.PipelineResult = await handle.result()
    state: object = steps.get_orchestration("default_orchestration").load_state(result.state)
    print(state, greet)  # noqa: T201


@py_orchestrate.activity("typed_fetch")
def typed_fetch(user_id: int) -> dict[str, int]:
    return {"id": user_id}


@py_orchestrate.workflow("typed_notify")
def typed_notify(user_id: int) -> dict[str, int]:
    return typed_fetch(user_id)


def orchestrator_main() -> None:
    orch = py_orchestrate.Orchestrator("x.db", max_workers=2)
    orch.start()
    wid: str = orch.invoke_workflow("typed_notify", user_id=1)
    status: dict[str, object] | None = orch.get_workflow_status(wid)
    print(status, orch.list_workflows(), typed_notify(1)["id"] + 1)  # noqa: T201
    orch.stop()


async def web_app() -> None:
    from starlette.applications import Starlette

    import flowcore.web

    runtime = Runtime("web.db")
    app = Starlette(lifespan=flowcore.lifespan(runtime))
    app.mount("/flowcore", flowcore.web.create_app(runtime, token="t", max_body=4096))  # noqa: S106
    async with flowcore.lifespan(runtime)(app) as state:
        same: Runtime = state["flowcore"]
        del same
    flowcore.web.close_streams(runtime)


@activity(backend="celery", queue="gpu", timeout=30)
def remote_render(page: int) -> bytes:
    return bytes(page)


async def on_celery(app: Celery) -> None:
    rt = Runtime("y.db", backends={"celery": CeleryBackend(app)})
    async with rt, CeleryStarter(app, rt):
        note: str | None = (await rt.status("x")).backend_note
        print(note)  # noqa: T201
    register(app)


async def testing_main() -> None:
    clock = flowcore.testing.VirtualClock()  # after only `import flowcore`, as the README has it
    async with Runtime("t.db", clock=clock) as rt:
        await rt.start(place, Order("a", 1))
    flowcore.testing.FakeClock().advance(60.0)
    flowcore.testing.replay([{"kind": "workflow_started", "data": {}, "at": 0.0}], place)
    policy: flowcore.retry.RetryPolicy = flowcore.retry.RetryPolicy()
    print(policy, flowcore.serde.encode(1), flowcore.listeners.collect)  # noqa: T201
