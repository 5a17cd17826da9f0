"""What both sides share: sizes, statistics, the child-process protocol and the recovery driver.

Standard library only: this module is imported by flowcore's harness and, in its own virtualenv
without flowcore, by the DBOS workloads (:mod:`benchmarks.dbos_workloads`).

Child processes talk to their parent in single lines ``BENCH {json}`` on stdout (anything else a
library prints there is ignored). Timestamps are ``time.monotonic()``, which on Linux is the
system-wide ``CLOCK_MONOTONIC`` and so comparable between parent and child.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterator, Sequence

REPO = Path(__file__).resolve().parents[1]

Sizes = dict[str, float]
Run = dict[str, float]

SIZES: dict[str, Sizes] = {
    "W1": {"workflows": 2000},
    "W1-normal": {"workflows": 2000},
    "W1-grown": {"workflows": 2000, "prefilled": 50_000},
    "W1-bare": {"workflows": 2000},
    "W1-lat": {"workflows": 200},
    "W2": {"activities": 1000},
    "W3-2k": {"steps": 2000},
    "W3-20k": {"steps": 20_000},
    "W4-events": {"workflows": 500},
    "W4-timers": {"workflows": 500, "sleep_s": 1.0},
    "W4-history": {"steps": 2000},
    "W5": {"workflows": 10_000},
    "W5-cached": {"workflows": 10_000},
    "W1-eager": {"workflows": 2000},
    "W1-lat-eager": {"workflows": 200},
    "W2-eager": {"activities": 1000},
    "W3-2k-eager": {"steps": 2000},
    "W3-20k-eager": {"steps": 20_000},
}
"""The sizes the issue asks for."""

QUICK_SIZES: dict[str, Sizes] = {
    "W1": {"workflows": 20},
    "W1-normal": {"workflows": 20},
    "W1-grown": {"workflows": 20, "prefilled": 100},
    "W1-bare": {"workflows": 20},
    "W1-lat": {"workflows": 10},
    "W2": {"activities": 20},
    "W3-2k": {"steps": 20},
    "W3-20k": {"steps": 200},
    "W4-events": {"workflows": 10},
    "W4-timers": {"workflows": 10, "sleep_s": 0.2},
    "W4-history": {"steps": 20},
    "W5": {"workflows": 200},
    "W5-cached": {"workflows": 200},
    "W1-eager": {"workflows": 20},
    "W1-lat-eager": {"workflows": 10},
    "W2-eager": {"activities": 20},
    "W3-2k-eager": {"steps": 20},
    "W3-20k-eager": {"steps": 200},
}
"""Tiny sizes for the smoke test (``--quick``): they check the harness works, nothing more."""


def find_redis_server() -> str | None:
    """The redis-server executable (on PATH, else /usr/bin), or None when it is not installed."""
    fallback = Path("/usr/bin/redis-server")
    return shutil.which("redis-server") or (str(fallback) if fallback.exists() else None)


CELERY_SIZES: dict[str, Sizes] = {"C-chains": {"workflows": 500}, "C-fanout": {"activities": 1000}}
"""The Celery workloads (``--celery``): flowcore on Celery next to plain Celery."""
CELERY_QUICK_SIZES: dict[str, Sizes] = {
    "C-chains": {"workflows": 5},
    "C-fanout": {"activities": 20},
}
"""Their smoke-test sizes."""

COMPARED = ("W1", "W1-lat", "W2", "W3-2k", "W4-events", "W4-timers", "W4-history")
"""The workloads that also run on DBOS in ``--compare`` mode."""

HIGHER_IS_BETTER = frozenset({"workflows_per_s", "steps_per_s"})
"""Rate metrics; every other metric is a duration (lower is better) or a size."""

NOT_COMPARED = frozenset({"kb_per_workflow", "rss_before_mb", "rss_after_mb"})

SETUP_DEADLINE = 600.0
"""Seconds a setup child may take to reach its kill point (DBOS needs minutes at full size)."""
RECOVER_DEADLINE = 600.0
"""Seconds a recovering child may take to finish everything."""


def sizes_for(name: str, *, quick: bool = False, scale: float = 1.0) -> Sizes:
    """The sizes of workload ``name``; counts (not durations) are multiplied by ``scale``."""
    table = (QUICK_SIZES if quick else SIZES) if name in SIZES else None
    base = table[name] if table else (CELERY_QUICK_SIZES if quick else CELERY_SIZES)[name]
    return {k: v if k.endswith("_s") else max(1, round(v * scale)) for k, v in base.items()}


def ratio(metric: str, flowcore: float, dbos: float) -> float | None:
    """How many times faster flowcore is: DBOS/flowcore for durations, flowcore/DBOS for rates."""
    if metric in NOT_COMPARED:
        return None
    if metric in HIGHER_IS_BETTER:
        return flowcore / dbos if dbos > 0 else None
    return dbos / flowcore if flowcore > 0 else None


# -- running and summarising -------------------------------------------------------------------


def measure(fn: Callable[[], Run], *, runs: int, warmup: int = 1) -> tuple[list[Run], list[Run]]:
    """Call ``fn`` ``warmup + runs`` times; return (warm-up runs, measured runs)."""
    done = [fn() for _ in range(warmup + runs)]
    return done[:warmup], done[warmup:]


def latency_metrics(latencies: Sequence[float]) -> Run:
    """p50 (median) and p99 (nearest rank, rounding down) of latencies, in milliseconds."""
    ordered = sorted(latencies)
    return {
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))],
    }


def summarize(runs: Sequence[Run]) -> dict[str, dict[str, Any]]:
    """Per metric: median, min, max and the values themselves."""
    out: dict[str, dict[str, Any]] = {}
    for metric in runs[0]:
        values = [r[metric] for r in runs]
        out[metric] = {
            "median": statistics.median(values),
            "min": min(values),
            "max": max(values),
            "values": values,
        }
    return out


def workload_record(
    name: str, sizes: Sizes, warmups: Sequence[Run], runs: Sequence[Run]
) -> dict[str, Any]:
    """The JSON record of one workload's runs (same shape for flowcore and DBOS)."""
    return {
        "workload": name,
        "sizes": sizes,
        "warmup_runs": len(warmups),
        "runs": len(runs),
        "metrics": summarize(runs),
    }


@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    """A temporary directory on disk (not tmpfs when avoidable: fsync must cost what it costs)."""
    base = os.environ.get("FLOWCORE_BENCH_TMP")
    with tempfile.TemporaryDirectory(prefix="flowcore-bench-", dir=base) as tmp:
        yield Path(tmp)


LOOP_ENV = "BENCH_LOOP"
"""The event loop every side of a run uses (inherited by child processes): asyncio or uvloop."""


def loop_choice() -> str:
    """The loop of this run: ``BENCH_LOOP``, else ``asyncio``."""
    name = os.environ.get(LOOP_ENV) or "asyncio"
    if name not in ("asyncio", "uvloop"):
        msg = f"{LOOP_ENV} must be asyncio or uvloop, not {name!r}"
        raise ValueError(msg)
    return name


def has_uvloop() -> bool:
    """Whether uvloop is installed in this interpreter's environment."""
    import importlib.util  # noqa: PLC0415 - imported when needed, like everything a child uses

    return importlib.util.find_spec("uvloop") is not None


def run_loop(coro: Coroutine[Any, Any, Any]) -> Any:
    """``asyncio.run(coro)``, or ``uvloop.run(coro)`` when the run's loop is uvloop."""
    import asyncio  # noqa: PLC0415 - imported when needed, like everything a child uses

    if loop_choice() == "uvloop":
        import uvloop  # noqa: PLC0415 - optional (flowcore[speed]; the DBOS venv installs it)

        return uvloop.run(coro)
    return asyncio.run(coro)


_KEPT: list[Path] = []


def keep_dir() -> Path:
    """A scratch directory (as :func:`scratch_dir`) that lives until this process exits."""
    if not _KEPT:
        path = Path(
            tempfile.mkdtemp(
                prefix="flowcore-bench-keep-", dir=os.environ.get("FLOWCORE_BENCH_TMP")
            )
        )
        atexit.register(shutil.rmtree, path, ignore_errors=True)
        _KEPT.append(path)
    return _KEPT[0]


# -- the child-process protocol ----------------------------------------------------------------

PREFIX = "BENCH "


def emit(event: str, **fields: Any) -> None:
    """Child side: tell the parent something (one line, flushed at once)."""
    sys.stdout.write(PREFIX + json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def rss_kb() -> int:
    """This process's resident set size in KiB (VmRSS; peak RSS where /proc is missing)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:  # noqa: PTH123
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource  # noqa: PLC0415 - Unix only, and only where /proc is missing

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


def child_env(*paths: Path) -> dict[str, str]:
    """The environment for a child: ``paths`` first on PYTHONPATH, a bytecode cache, no buffering.

    Children write and reuse compiled bytecode in one cache directory for the whole invocation
    (``PYTHONPYCACHEPREFIX``, so nothing is written beside the sources), even where
    ``PYTHONDONTWRITEBYTECODE`` is set: a restarted service has its ``.pyc`` files, and without
    them every child would compile all it imports (a big share of DBOS's start-up). The warm-up
    run fills the cache.
    """
    env = dict(os.environ)
    parts = [str(p) for p in paths]
    if env.get("PYTHONPATH"):
        parts.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = pycache_dir()
    return env


def pycache_dir() -> str:
    """The bytecode cache shared by every child of this invocation (inherited by grandchildren)."""
    path = os.environ.get(PYCACHE_ENV)
    if not path:
        path = tempfile.mkdtemp(prefix="flowcore-bench-pycache-")
        os.environ[PYCACHE_ENV] = path
        atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


PYCACHE_ENV = "FLOWCORE_BENCH_PYCACHE"


class Child:
    """A subprocess that reports ``BENCH`` lines; killed (SIGKILL) on exit if still running."""

    def __init__(self, argv: Sequence[str], *, env: dict[str, str], cwd: Path = REPO) -> None:
        self.argv = list(argv)
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in kill()
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.proc = subprocess.Popen(
            self.argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=self._stderr, text=True
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None  # noqa: S101 - stdout=PIPE
        for line in self.proc.stdout:
            if line.startswith(PREFIX):
                self._lines.put(line[len(PREFIX) :])
        self._lines.put(None)

    def expect(self, event: str, timeout: float) -> dict[str, Any]:
        """Wait for the child's next report named ``event``; fail on exit or after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {event!r} from the child within {timeout}s{self._tail()}")
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait(timeout=10)
                raise RuntimeError(
                    f"the child exited with {self.proc.returncode} before {event!r}{self._tail()}"
                )
            report = json.loads(line)
            if report.get("event") == "error":
                raise RuntimeError(f"the child failed: {report.get('message')}{self._tail()}")
            if report.get("event") == event:
                return report

    def _tail(self) -> str:
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace").strip()
        return f"\n{' '.join(self.argv)}\nstderr:\n{text[-3000:]}" if text else ""

    def sigkill(self) -> None:
        """SIGKILL the child (if it still runs) and reap it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def finish(self, timeout: float = 60.0) -> None:
        """Let the child exit by itself (bounded), then reap it."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.sigkill()

    def close(self) -> None:
        self.sigkill()
        self._reader.join(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- the recovery workloads (W4), driven from the parent ---------------------------------------

RECOVERY = {"W4-events": "events", "W4-timers": "timers", "W4-history": "history"}


def run_recovery(
    workload: str, child_argv: Sequence[str], env: dict[str, str], sizes: Sizes
) -> Run:
    """One W4 run: a setup child is SIGKILLed once its workflows wait; a fresh child recovers.

    ``child_argv`` starts the side's child module; it is given ``setup|recover KIND DB SIZES``.
    The measured time starts just before the recovering child is spawned and ends when it reports
    that every workflow finished, so it includes interpreter start-up and imports
    (``startup_s``), opening the engine, which recovers (``open_s``), and sending the events and
    awaiting every result (``finish_s``); ``engine_s`` is the last two (no interpreter start-up).
    """
    kind = RECOVERY[workload]
    with scratch_dir() as tmp:
        args = [kind, str(tmp / "bench.db"), json.dumps(sizes)]
        with Child([*child_argv, "setup", *args], env=env) as setup:
            setup.expect("ready", SETUP_DEADLINE)
            setup.sigkill()
        if kind == "timers":  # every timer was scheduled before "ready": let them all expire
            time.sleep(sizes["sleep_s"] + 0.25)
        began = time.monotonic()
        with Child([*child_argv, "recover", *args], env=env) as recover:
            done = recover.expect("done", RECOVER_DEADLINE)
            recover.finish()
    return {
        "total_s": done["t_done"] - began,
        "startup_s": done["t_imported"] - began,
        "open_s": done["t_open"] - done["t_imported"],
        "finish_s": done["t_done"] - done["t_open"],
        "engine_s": done["t_done"] - done["t_imported"],
    }


def child_main(
    handlers: dict[str, Callable[[str, Path, Sizes], Coroutine[Any, Any, None]]],
) -> None:
    """Child side: run ``handlers[MODE](KIND, DB, SIZES)`` from ``argv``; report a failure."""
    mode, kind, db, sizes = sys.argv[1], sys.argv[2], Path(sys.argv[3]), json.loads(sys.argv[4])
    try:
        run_loop(handlers[mode](kind, db, sizes))
    except BaseException as exc:
        emit("error", message=f"{type(exc).__name__}: {exc}")
        raise
