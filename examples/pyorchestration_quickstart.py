"""pyorchestration's README quick start, ported to flowcore's numbered-step pipelines.

The original defines a state class with ``from_dict`` and two ``@step`` functions, then triggers
``default_orchestration`` from Celery with a JSON payload. Here the same state and steps (only
the imports change) run on a durable runtime: each step's state is checkpointed in the journal,
so a crash resumes at the next step. A sync app starts it through ``BlockingRuntime``.

Run it with ``uv run python examples/pyorchestration_quickstart.py``. It journals to
``pyorchestration_quickstart.db`` (pass another path as the first argument).
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import structlog

from flowcore import BlockingRuntime
from flowcore.steps import OrchestrationState, get_orchestration, step


class MyState(OrchestrationState):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> MyState:
        return cls(payload["name"])


@step(number=1, state_class=MyState)
def say_hi(state: MyState) -> None:
    logging.info(f"hi {state.name}")  # noqa: G004, LOG015 - the README's own line


@step(number=2, state_class=MyState)
def say_bye(state: MyState) -> None:
    logging.info(f"bye {state.name}")  # noqa: G004, LOG015 - the README's own line


def main(db: str) -> None:
    with BlockingRuntime(db) as runtime:
        # pyorchestration: celery_app.send_task("orchestration.tasks.orchestrate",
        #                                       args=["default_orchestration", json.dumps(...)])
        workflow_id = runtime.start(
            "default_orchestration", json.dumps({"name": "Andrea"}), id="andrea", if_exists="return"
        )
        result = runtime.result(workflow_id, timeout=30)
    orchestration = get_orchestration("default_orchestration")
    state = orchestration.load_state(result.state)
    print(f"steps run: {', '.join(s.name for s in orchestration.ordered())}")
    print(f"result: state.name={state.name!r}, skipped={list(result.skipped)}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    structlog.configure(  # flowcore's progress logs to stderr at INFO; the result to stdout
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    main(sys.argv[1] if len(sys.argv) > 1 else "pyorchestration_quickstart.db")
