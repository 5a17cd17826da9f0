"""The command line, ``python -m flowcore``: run, serve, steer and inspect a journal from the shell.

Every subcommand returns an exit code: 0 success, 1 the workflow failed, was canceled or would
diverge (``check``), 2 a usage error (one line on stderr; ``--debug`` adds the traceback),
128 + the signal when a signal stopped it (130 Ctrl-C/SIGINT, 143 SIGTERM; ``serve`` exits 0, as
stopping is how it ends), 141 when the reader of stdout went away (``| head``: quietly, as if
ended by SIGPIPE); ``verify`` exits 1 when it finds problems. ``run`` and ``serve`` own the
database; steering commands queue a request in its inbox (:mod:`flowcore._inbox`) and never
take ownership; inspection opens it read-only. Results and ``--json`` output go to stdout,
everything else to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import os
import shlex
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, NoReturn, TypeVar

import structlog

from flowcore import _cli_render as render
from flowcore import _inbox, _loop, serde
from flowcore._core import check_id
from flowcore._definitions import WorkflowDef, default_registry
from flowcore._ids import new_workflow_id
from flowcore._limits import DEFAULT_MAX_PAYLOAD_BYTES, check_payload_size
from flowcore._status import WorkflowState
from flowcore._verify import verify_journal
from flowcore.errors import (
    FlowcoreError,
    InvalidArgumentError,
    JournalLockedError,
    NondeterminismError,
    PayloadError,
    WorkflowAlreadyExistsError,
    WorkflowCanceledError,
    WorkflowError,
    WorkflowFailedError,
    WorkflowNotFoundError,
)
from flowcore.journal import schema
from flowcore.journal.sqlite import SqliteJournal
from flowcore.runtime import Runtime
from flowcore.testing import replay

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Sequence
    from types import ModuleType

    from flowcore._status import WorkflowStatus

__all__ = ["main"]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 128 + signal.SIGINT  # Ctrl-C; SIGTERM gives 143, as a shell shows
_STOPPING_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)
_EXIT_STOPPED: Final = frozenset(128 + s for s in _STOPPING_SIGNALS)
EXIT_BROKEN_PIPE: Final = 141  # 128 + SIGPIPE: what a shell shows for `yes | head -1`
_PROGRESS_INTERVAL: Final = 0.2
_DEFAULT_DB: Final = "flowcore.db"
_T = TypeVar("_T")


class UsageError(Exception):
    """A mistake on the command line or in its inputs: one line on stderr, exit 2."""


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the subcommand, return its exit code."""
    args, unknown = _parser().parse_known_args(argv)
    if unknown:  # the command's parser says it, so that its message points to its --help
        args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    _configure_logging(args)
    try:
        code: int = args.func(args)
    except BrokenPipeError:  # the reader of stdout went away (``| head``)
        return _stdout_closed()
    except (UsageError, FlowcoreError, OSError, ValueError) as exc:
        if args.debug:
            traceback.print_exc()
        _say(f"flowcore {args.command}: error: {_error_text(exc, args.db)}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    if args.command == "serve" or code in _EXIT_STOPPED:
        _leave_abandoned_threads(code)
    return code


def _stdout_closed() -> int:
    """Stop quietly, as Python's docs advise for SIGPIPE: no message, no error at exit.

    Stdout goes to devnull so that the interpreter's final flush does not fail again.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_BROKEN_PIPE


def _leave_abandoned_threads(code: int) -> None:
    """Exit now rather than wait for sync activities the closed runtime abandoned.

    Their work was never recorded as done; the next runtime on the database runs them again.
    """
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not
           threading.main_thread()):  # fmt: skip
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


# -- the parser -------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line, like the CLI's other errors."""

    def error(self, message: str) -> NoReturn:
        """Print ``PROG: error: MESSAGE (see PROG --help)`` on stderr and exit 2."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _common_options(*, top: bool) -> _Parser:
    """``--db``, ``--debug`` and ``-v``, taken before the command and after it.

    The top-level parser holds the defaults; a subcommand's copies default to SUPPRESS, so a
    value given after the command overrides one given before it and nothing resets it.
    """
    common = _Parser(add_help=False)
    actions = [
        common.add_argument("--db", default=_DEFAULT_DB, metavar="PATH",
                            help=f"journal file (default: {_DEFAULT_DB})"),
        common.add_argument("--debug", action="store_true", help="show tracebacks of errors"),
        common.add_argument("-v", "--verbose", action="count", default=0, help="more log output"),
    ]  # fmt: skip
    if not top:
        for action in actions:
            action.default = argparse.SUPPRESS
    return common


def _parser() -> argparse.ArgumentParser:
    common = _common_options(top=False)
    parser = _Parser(
        prog="python -m flowcore",
        description="Run, serve, steer and inspect flowcore workflows.",
        parents=[_common_options(top=True)],
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], helptext: str) -> Any:
        cmd = sub.add_parser(name, parents=[common], help=helptext, description=helptext)
        cmd.set_defaults(func=func, command_parser=cmd)
        return cmd

    _add_running(add)
    _add_steering(add)
    _add_inspection(add)
    return parser


def _add_payload(cmd: argparse.ArgumentParser) -> None:
    group = cmd.add_mutually_exclusive_group()
    group.add_argument("--payload", help="JSON payload")
    group.add_argument("--payload-file", help="file holding the JSON payload ('-': stdin)")


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"expected a whole number of at least 1, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _add_runtime_options(cmd: argparse.ArgumentParser) -> None:
    """The Runtime settings of the commands that host one (run, serve)."""
    cmd.add_argument(
        "--dispatch",
        choices=["durable", "eager"],
        default="durable",
        help="start new work once its schedule is committed (durable, the default) or at once "
        "(eager: lower latency; see the README's Guarantees)",
    )
    cmd.add_argument(
        "--max-cached",
        type=_at_least_one,
        default=10_000,
        metavar="N",
        help="most unfinished workflows kept in memory; idle ones past it are evicted and "
        "replayed when next needed (default: %(default)s)",
    )
    cmd.add_argument(
        "--max-concurrent-activities",
        type=_at_least_one,
        default=100,
        metavar="N",
        help="most activity attempts running at once (default: %(default)s)",
    )


def _runtime_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "dispatch": args.dispatch,
        "max_cached_workflows": args.max_cached,
        "max_concurrent_activities": args.max_concurrent_activities,
    }


def _add_running(add: Callable[..., Any]) -> None:
    cmd = add("run", _cmd_run, "start (or resume) a workflow and run it in the foreground")
    cmd.add_argument("target", metavar="MODULE:WORKFLOW")
    _add_payload(cmd)
    _add_runtime_options(cmd)
    cmd.add_argument("--id", help="instance id (an unfinished one resumes)")
    cmd.add_argument(
        "--orchestra",
        action="store_true",
        help="report the run to an Orchestra task run (settings from ORCHESTRA_TASK_RUN_ID, "
        "ORCHESTRA_API_KEY, ORCHESTRA_WEBHOOK_URL; automatic when these are set)",
    )
    cmd = add("serve", _cmd_serve, "host a runtime for the modules' workflows until stopped")
    cmd.add_argument("modules", nargs="+", metavar="MODULE")
    _add_runtime_options(cmd)
    cmd.add_argument(  # issue 9: the web API and dashboard (flowcore[web])
        "--http",
        metavar="HOST:PORT",
        help="also serve the web API and dashboard there (e.g. 127.0.0.1:8080; a non-loopback "
        "host needs a token in FLOWCORE_WEB_TOKEN)",
    )
    cmd = add("check", _cmd_check, "replay unfinished instances against the current code")
    cmd.add_argument("modules", nargs="+", metavar="MODULE")
    cmd.add_argument("--json", action="store_true", help="machine-readable output")


def _add_steering(add: Callable[..., Any]) -> None:
    cmd = add("start", _cmd_start, "queue the start of a workflow; print its id")
    cmd.add_argument("name", metavar="NAME", help="workflow name, or MODULE:WORKFLOW to check it")
    _add_payload(cmd)
    cmd.add_argument("--id", help="instance id (default: a random one)")
    cmd.add_argument("--version", help="workflow version (default: the latest)")
    cmd = add("send-event", _cmd_send_event, "send an external event to an instance")
    cmd.add_argument("id", metavar="ID")
    cmd.add_argument("name", metavar="NAME")
    _add_payload(cmd)
    for name, helptext in (("cancel", "cancel an instance"), ("terminate", "end it at once")):
        cmd = add(name, _cmd_control, helptext)
        cmd.add_argument("id", metavar="ID")
        cmd.add_argument("--reason")
    for name, helptext in (("suspend", "pause an instance"), ("resume", "let it continue")):
        cmd = add(name, _cmd_control, helptext)
        cmd.add_argument("id", metavar="ID")


def _add_inspection(add: Callable[..., Any]) -> None:
    cmd = add("status", _cmd_status, "show an instance's status")
    cmd.add_argument("id", metavar="ID")
    cmd.add_argument("--json", action="store_true", help="machine-readable output")
    cmd = add("list", _cmd_list, "list instances, newest first")
    cmd.add_argument("--name", help="only this workflow")
    cmd.add_argument("--status", choices=[s.value for s in WorkflowState])
    cmd.add_argument("--limit", type=int, default=100)
    cmd.add_argument("--since", help="only those created since (ISO 8601; UTC if no zone)")
    cmd.add_argument("--json", action="store_true", help="machine-readable output")
    cmd = add("history", _cmd_history, "show an instance's history as a timeline")
    cmd.add_argument("id", metavar="ID")
    cmd.add_argument("--json", action="store_true", help="machine-readable output")
    cmd = add("export", _cmd_export, "print an instance's history as JSON rows")
    cmd.add_argument("id", metavar="ID")
    cmd.add_argument("--json", action="store_true", help="accepted and ignored: export always "
                     "prints JSON (like the other inspection commands' --json)")  # fmt: skip
    cmd = add("verify", _cmd_verify, "check the journal's integrity (read only; exit 1: problems)")
    cmd.add_argument("--json", action="store_true", help="machine-readable output")


def _configure_logging(args: argparse.Namespace) -> None:
    base = logging.WARNING if args.command == "run" else logging.INFO
    level = max(logging.DEBUG, base - 10 * args.verbose)
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )


# -- helpers ------------------------------------------------------------------------------------


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)  # noqa: T201 - the CLI talks on stderr


def _out(text: str) -> None:
    print(text, flush=True)  # noqa: T201 - results go to stdout


def _error_text(exc: BaseException, db: str) -> str:
    """An error as one line, with shell advice where its own message gives Python advice.

    The messages of WorkflowNotFoundError and WorkflowAlreadyExistsError name
    ``runtime.list()`` and ``if_exists='return'``, which the command line does not have.
    """
    on_db = "" if db == _DEFAULT_DB else f" --db {shlex.quote(db)}"
    wid = shlex.quote(exc.workflow_id) if isinstance(exc, WorkflowError) else ""
    if isinstance(exc, WorkflowNotFoundError):
        return (
            f"no workflow with id {exc.workflow_id!r} in {db!r}; check the id (and --db), or "
            f"list the instances with `python -m flowcore list{on_db}`"
        )
    if isinstance(exc, WorkflowAlreadyExistsError):
        return (
            f"a workflow with id {exc.workflow_id!r} already exists (status {exc.status}); pick "
            f"another --id, or follow that one with `python -m flowcore run MODULE:WORKFLOW "
            f"--id {wid}{on_db}` or `python -m flowcore status {wid}{on_db}`"
        )
    return _one_line(exc)


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def _load_module(name: str) -> ModuleType:
    cwd = os.getcwd()  # noqa: PTH109
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    if name.endswith(".py"):
        name = _module_of_file(name, cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise UsageError(f"cannot import module {name!r}: no such module") from exc
        raise UsageError(f"importing module {name!r} failed: {exc}") from exc
    except Exception as exc:
        msg = f"importing module {name!r} failed: {type(exc).__name__}: {exc}"
        raise UsageError(msg + " (--debug shows the traceback)") from exc


def _module_of_file(path: str, cwd: str) -> str:
    """The module name of a file path (``app.py``, ``./pkg/app.py``, ``/abs/dir/app.py``).

    A file under ``cwd`` is named from ``cwd`` (``pkg.app``); one elsewhere is imported from
    its own directory, which goes on ``sys.path``.
    """
    full = os.path.abspath(path)  # noqa: PTH100
    relative = os.path.relpath(full, cwd)
    if relative.startswith(os.pardir + os.sep):
        directory, relative = os.path.split(full)
        if directory not in sys.path:
            sys.path.insert(0, directory)
    return relative.removesuffix(".py").replace(os.sep, ".")


def _workflow(target: str) -> WorkflowDef[Any, Any]:
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"expected MODULE:WORKFLOW, got {target!r}")
    module = _load_module(module_name)
    found = getattr(module, attr, None)
    if isinstance(found, WorkflowDef):
        return found
    if found is None and attr in default_registry.workflows:
        return default_registry.workflow(attr)
    known = sorted(n for n, v in vars(module).items() if isinstance(v, WorkflowDef))
    raise UsageError(
        f"module {module_name!r} has no @workflow {attr!r} (it defines: "
        f"{', '.join(known) or 'none'})"
    )


def _payload(args: argparse.Namespace) -> Any:
    if args.payload_file is not None:
        source = "--payload-file"
        if args.payload_file == "-":
            text = sys.stdin.read()
        else:
            with open(args.payload_file, encoding="utf-8") as file:  # noqa: PTH123
                text = file.read()
    elif args.payload is not None:
        source, text = "--payload", args.payload
    else:
        return None
    try:
        payload = serde.loads(text)
    except PayloadError as exc:
        raise UsageError(f"{source} is not valid JSON: {exc}") from exc
    try:  # the runtime would refuse it too, after it sat in the database's inbox
        check_payload_size(
            payload, DEFAULT_MAX_PAYLOAD_BYTES, f"the {source} value", raise_hint=None
        )
    except PayloadError as exc:
        raise UsageError(str(exc)) from exc
    return payload


def _check_payload(defn: WorkflowDef[Any, Any], payload: Any, *, given: bool = True) -> None:
    """Fail before anything is written when the payload does not fit the input's type hint."""
    if not defn.takes_input:
        try:
            defn.check_payload(payload, fix="leave out --payload and --payload-file")
        except InvalidArgumentError as exc:
            raise UsageError(str(exc)) from exc
        return
    signature, hints, _ = serde.signature_hints(defn.fn)
    first = next(iter(signature.parameters))
    try:
        serde.decode(payload, hints.get(first, Any))
    except PayloadError as exc:
        if not given:
            msg = (
                f"workflow {defn.name!r} takes an input: pass it as JSON with --payload or "
                f"--payload-file ({exc})"
            )
            raise UsageError(msg) from exc
        raise UsageError(f"the payload does not fit workflow {defn.name!r}: {exc}") from exc


def _run_async(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coro`` on uvloop when installed (``FLOWCORE_LOOP``: see :mod:`flowcore._loop`)."""
    try:
        return _loop.run(coro)  # closes coro, never started, when FLOWCORE_LOOP is wrong
    except _loop.LoopError as exc:
        raise UsageError(str(exc)) from None


class _Stop:
    """Set by the first of SIGINT or SIGTERM; remembers which, for the exit code."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.signum: int = signal.SIGINT
        loop = asyncio.get_running_loop()
        for signum in _STOPPING_SIGNALS:
            loop.add_signal_handler(signum, self._set, signum)

    def _set(self, signum: int) -> None:
        if not self._event.is_set():
            self.signum = signum
            self._event.set()

    async def wait(self) -> None:
        """Return once a stopping signal arrived."""
        await self._event.wait()

    @property
    def exit_code(self) -> int:
        """128 + the signal, as a shell reports a process that signal ended."""
        return 128 + self.signum


def _open_error(exc: JournalLockedError, command: str, db: str) -> UsageError:
    """The owner's message, and the commands that work beside it, spelled as they are typed."""
    on_db = "" if db == _DEFAULT_DB else f" --db {shlex.quote(db)}"
    return UsageError(
        f"cannot {command}: {_one_line(exc)} While a server owns it, steer it with "
        f"`python -m flowcore start|send-event|cancel|...{on_db}` and inspect it with "
        f"`python -m flowcore status|list|history{on_db}`."
    )


# -- run and serve ------------------------------------------------------------------------------


def _cmd_run(args: argparse.Namespace) -> int:
    defn = _workflow(args.target)
    payload = _payload(args)
    given = args.payload is not None or args.payload_file is not None
    if given or args.id is None:  # else checked once the journal shows there is nothing to resume
        _check_payload(defn, payload, given=given)
    wid = check_id(args.id) if args.id is not None else new_workflow_id()
    listeners = _orchestra(wid, requested=args.orchestra)
    target, db = shlex.quote(args.target), shlex.quote(args.db)
    again = f"python -m flowcore run {target} --db {db} --id {wid}"
    run = _run(args.db, defn, _Payload(payload, given=given), wid, listeners,
               options=_runtime_options(args), again=again)  # fmt: skip
    return _run_async(run)


@dataclass(frozen=True, slots=True)
class _Payload:
    """``run``'s payload, and whether one was given (``run --id`` without one resumes)."""

    value: Any
    given: bool


def _orchestra(wid: str, *, requested: bool) -> list[Any]:
    """``run --orchestra``, or ORCHESTRA_* variables set: report this run to Orchestra."""
    if not requested and not any(
        os.environ.get(k) for k in ("ORCHESTRA_TASK_RUN_ID", "ORCHESTRA_API_KEY")
    ):
        return []
    try:
        from flowcore.orchestra import OrchestraReporter  # noqa: PLC0415 - an optional extra
    except ImportError as exc:
        if requested:
            raise UsageError("--orchestra needs httpx: install flowcore[orchestra]") from exc
        _say("warning: ORCHESTRA_* variables are set but flowcore[orchestra] is not installed")
        return []
    reporter = OrchestraReporter.from_env(required=requested, workflows=[wid])
    return [] if reporter is None else [reporter]


async def _run(
    db: str,
    defn: WorkflowDef[Any, Any],
    payload: _Payload,
    wid: str,
    listeners: Sequence[Any] = (),
    *,
    options: dict[str, Any] | None = None,
    again: str = "",
) -> int:
    stop = _Stop()
    # Ended before this run, not by requests the runtime applies as it opens (a queued event
    # finishing a resumed instance): only then does no journal event report the outcome.
    before = await _status_before(db, wid) if listeners else None
    ended = before if before is not None and before.status in _ENDED else None
    runtime = Runtime(db, listeners=listeners, **(options or {}))
    try:
        await runtime.open()
    except JournalLockedError as exc:
        raise _open_error(exc, "run", db) from exc
    code: int | None = None
    try:
        existing = await _existing(runtime, wid)
        _check_resumed(defn, payload, wid, existing)
        await runtime.start(defn, payload.value, id=wid, if_exists="return")
        _say(f"workflow {defn.name} id {wid}")
        code = await _follow(runtime, wid, stop, again)
        if before is not None and before.status is WorkflowState.PARKED:
            ended = await _still_parked(runtime, before)
        return code
    finally:
        await runtime.close()
        if ended is not None:  # no event will report it: tell the listeners (Orchestra) now
            for listener in listeners:
                report = getattr(listener, "report_outcome", None)
                if report is not None:
                    await report(ended)
        elif code in _EXIT_STOPPED:  # this task run ends here, its workflow does not
            for listener in listeners:
                interrupted = getattr(listener, "report_interrupted", None)
                if interrupted is not None:
                    await interrupted(defn.name, f"'{again}'")


async def _status_before(db: str, wid: str) -> WorkflowStatus | None:
    """The status of instance ``wid`` (None: no such instance), read before a runtime opens."""
    if not os.path.exists(db):  # noqa: ASYNC240, PTH110 - one stat, before any task runs
        return None
    async with SqliteJournal(db, readonly=True) as journal:
        return await journal.status(wid)


async def _still_parked(runtime: Runtime, before: WorkflowStatus) -> WorkflowStatus | None:
    """Its status if the instance stays parked for the reason it was parked for before the run.

    The runtime journals no new WorkflowParked then, so no listener heard of it in this run.
    """
    now = await runtime.status(before.id)
    same = now.status is WorkflowState.PARKED and now.error == before.error
    return now if same else None


async def _existing(runtime: Runtime, wid: str) -> WorkflowStatus | None:
    """The status of instance ``wid``, or None when there is none."""
    try:
        return await runtime.status(wid)
    except WorkflowNotFoundError:
        return None


def _check_resumed(
    defn: WorkflowDef[Any, Any], payload: _Payload, wid: str, existing: WorkflowStatus | None
) -> None:
    """``run --id``: refuse another workflow's id; say that a resumed one keeps its input."""
    if existing is None:
        if not payload.given:
            _check_payload(defn, payload.value, given=False)
        return
    if existing.name != defn.name:
        msg = (
            f"id {wid!r} belongs to an instance of workflow {existing.name!r}, not {defn.name!r}; "
            "pick another --id (or leave it out for a new one)"
        )
        raise UsageError(msg)
    if payload.given and payload.value != existing.input:
        _say(f"note: {wid!r} exists and keeps the input it started with; --payload is ignored")
    if existing.version != defn.version:
        _say(
            f"note: {wid!r} started at version {existing.version!r} and keeps it, not version "
            f"{defn.version!r}: it runs its version's code (the latest's if none is registered)"
        )


_ENDED: Final = frozenset(
    {
        WorkflowState.COMPLETED,
        WorkflowState.FAILED,
        WorkflowState.CANCELED,
        WorkflowState.TERMINATED,
    }
)


async def _follow(runtime: Runtime, wid: str, stop: _Stop, again: str = "") -> int:
    result = asyncio.ensure_future(runtime.result(wid))
    stopped = asyncio.ensure_future(stop.wait())
    progress = asyncio.ensure_future(_progress(runtime, wid))
    try:
        await asyncio.wait({result, stopped, progress}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (stopped, progress):
            task.cancel()
        _end_progress_line()
    if not result.done():
        result.cancel()
        if progress.done() and not progress.cancelled() and progress.exception() is None:
            parked = progress.result()
            _say(f"workflow {wid!r} is parked: {parked.error}")
            return EXIT_FAILED
        again = again or f"python -m flowcore run MODULE:WORKFLOW --id {wid}"
        _say(f"interrupted; '{again}' resumes workflow {wid!r}")
        return stop.exit_code
    return _report(wid, result)


def _report(wid: str, result: asyncio.Future[Any]) -> int:
    try:
        value = result.result()
    except WorkflowFailedError as exc:
        _say(f"workflow {wid!r} failed: {exc.failure}")
        return EXIT_FAILED
    except WorkflowCanceledError as exc:
        _say(_one_line(exc))
        return EXIT_FAILED
    _out(serde.dumps(value))
    return EXIT_OK


async def _progress(runtime: Runtime, wid: str) -> WorkflowStatus:
    """Show progress until the instance parks (then return its status); cancelled otherwise."""
    tty = sys.stderr.isatty()
    seen: tuple[object, ...] = ()
    items: list[render.Item] = []
    shown = ""
    while True:
        status = await runtime.status(wid)
        if (status.updated_at, status.status) != seen:
            seen = (status.updated_at, status.status)
            items = render.timeline(await runtime.history(wid))
        line = render.progress_line(status, items, time.time() if tty else None)
        if tty:
            width = max(20, _terminal_width() - 1)
            sys.stderr.write("\r\x1b[2K" + line[:width])
            sys.stderr.flush()
        elif line != shown:
            _say(line)
        shown = line
        if status.status is WorkflowState.PARKED:
            return status
        await asyncio.sleep(_PROGRESS_INTERVAL)


def _terminal_width() -> int:
    with contextlib.suppress(OSError):
        return os.get_terminal_size(sys.stderr.fileno()).columns
    return 80


def _end_progress_line() -> None:
    if sys.stderr.isatty():
        sys.stderr.write("\r\x1b[2K")
        sys.stderr.flush()


def _cmd_serve(args: argparse.Namespace) -> int:
    for name in args.modules:
        _load_module(name)
    return _run_async(_serve(args.db, args.http, _runtime_options(args)))


async def _serve(db: str, http: str | None = None, options: dict[str, Any] | None = None) -> int:
    stop = _Stop()
    options = options or {}
    runtime = Runtime(db, **options)
    web = _http_server(runtime, http) if http is not None else None
    try:
        await runtime.open()
    except JournalLockedError as exc:
        raise _open_error(exc, "serve", db) from exc
    try:
        names = _served(default_registry.workflows)
        if web is not None:
            await web.start()
            _say(f"dashboard and API at {web.url}")
        settings = ", ".join(f"{k}={v}" for k, v in options.items())
        _say(f"serving {db} (workflows: {names}{'; ' if settings else ''}{settings}); "
             "Ctrl-C or SIGTERM stops")  # fmt: skip
        await stop.wait()
        _say("stopping; unfinished workflows continue when a runtime opens the database again")
    finally:
        if web is not None:
            await web.stop()
        await runtime.close()
    return EXIT_OK


def _served(workflows: dict[str, dict[str, WorkflowDef[Any, Any]]]) -> str:
    """``order v1/v2 (new: v2), fan v1``: each workflow's versions, and the default's if many."""
    parts = []
    for name in sorted(workflows):
        versions = list(workflows[name])
        text = f"{name} " + "/".join(f"v{v}" for v in versions)
        parts.append(text if len(versions) == 1 else f"{text} (new: v{versions[-1]})")
    return ", ".join(parts) or "none"


def _http_server(runtime: Runtime, address: str) -> Any:
    """The ``--http`` server (checked before anything opens); needs the web extra."""
    try:
        from flowcore.web._serve import HttpServer, parse_address  # noqa: PLC0415 - optional
    except ImportError as exc:
        msg = "--http needs the web extra: pip install 'flowcore[web]'"
        raise UsageError(msg) from exc
    host, port = parse_address(address)
    return HttpServer(runtime, host, port)


# -- steering -----------------------------------------------------------------------------------


def _cmd_start(args: argparse.Namespace) -> int:
    name, payload, version = args.name, _payload(args), args.version
    if ":" in name:
        defn = _workflow(name)
        if version is not None:
            defn = default_registry.workflow(defn.name, version)
        _check_payload(
            defn, payload, given=args.payload is not None or args.payload_file is not None
        )
        name, version = defn.name, defn.version  # the version checked, as `run` starts it
    wid = check_id(args.id) if args.id is not None else new_workflow_id()
    data = {"name": name, "version": version, "input": payload}
    _post(args.db, "start", wid, data, create=True)
    if ":" not in args.name and not _run_async(_has_run(args.db, name)):
        _say(
            f"note: no workflow named {name!r} has run in this database; if the owner does not "
            "define it, the request is dropped. Pass MODULE:WORKFLOW to check the name and "
            "payload now."
        )
    _out(wid)
    return EXIT_OK


async def _has_run(db: str, name: str) -> bool:
    """Whether any instance in the journal (read-only) is of workflow ``name``."""
    async with _readonly(db) as journal:
        return bool(await journal.list(name=name, limit=1))


def _cmd_send_event(args: argparse.Namespace) -> int:
    if not args.name:
        raise UsageError("an event name must not be empty")
    data = {"name": args.name, "payload": _payload(args)}
    _post(args.db, "event", check_id(args.id), data)
    return EXIT_OK


def _cmd_control(args: argparse.Namespace) -> int:
    data = {"reason": args.reason} if args.command in ("cancel", "terminate") else {}
    _post(args.db, args.command, check_id(args.id), data)
    return EXIT_OK


def _post(db: str, kind: str, wid: str, data: dict[str, Any], *, create: bool = False) -> None:
    _ensure_inbox(db, create=create)
    rid = _inbox.post(db, kind, wid, data)
    _say(
        f"queued request {rid} ({kind} {wid}) in {db}; the runtime that owns it applies it "
        "(at once if one is running, else when one opens it)"
    )


def _ensure_inbox(db: str, *, create: bool) -> None:
    """Make sure the file is a journal with an inbox: create or migrate it if nobody owns it."""
    version = _inbox.schema_version(db)
    if version is None and not create:
        raise UsageError(f"no flowcore database at {db!r} (pass --db PATH)")
    if version is not None and version >= schema.READABLE_FROM:
        return
    try:
        _run_async(_touch(db))
    except JournalLockedError as exc:
        raise UsageError(
            f"{db!r} is served by a runtime of an older flowcore that has no inbox; upgrade "
            "and restart it"
        ) from exc


async def _touch(db: str) -> int:
    async with SqliteJournal(db):  # creates or migrates the file, then lets go of it
        return EXIT_OK


# -- inspection ---------------------------------------------------------------------------------


def _readonly(db: str) -> SqliteJournal:
    if not os.path.exists(db):  # noqa: PTH110
        raise UsageError(f"no flowcore database at {db!r} (pass --db PATH)")
    return SqliteJournal(db, readonly=True)


def _cmd_status(args: argparse.Namespace) -> int:
    async def status() -> int:
        async with _readonly(args.db) as journal:
            found = await journal.status(args.id)
        requests = _inbox.pending(args.db, args.id)
        if found is None and not requests:
            raise WorkflowNotFoundError(args.id)
        data = {"id": args.id} if found is None else render.status_json(found)
        if found is None:
            data["status"] = "requested"
        data["pending_requests"] = [{"id": r.id, "kind": r.kind, "at": r.at} for r in requests]
        if args.json:
            _out(render.to_json(data))
        else:
            _out("\n".join(render.status_lines(data)))
        return EXIT_OK

    return _run_async(status())


def _cmd_list(args: argparse.Namespace) -> int:
    since = _since(args.since)

    async def listing() -> int:
        limit = args.limit
        async with _readonly(args.db) as journal:  # one more row tells whether more exist
            found = await journal.list(name=args.name, status=args.status,
                                       limit=limit + 1 if limit >= 0 else limit)  # fmt: skip
        cut = len(found) > limit
        # newest first: the rows created since `since` are a prefix of the list
        found = [s for s in found[:limit] if since is None or s.created_at >= since]
        if args.json:
            _out(render.to_json([render.status_json(s) for s in found]))
        else:
            _out(render.list_table(found))
            _note_queued_starts(args)
        if cut and limit > 0 and (since is None or len(found) == limit):
            _say(f"showing the newest {limit}; more match: pass --limit N to see more")
        return EXIT_OK

    return _run_async(listing())


def _note_queued_starts(args: argparse.Namespace) -> None:
    """Say which start requests wait in the inbox: ``list`` shows only instances that exist."""
    starts = [r for r in _inbox.pending_starts(args.db)
              if args.name is None or r.data.get("name") == args.name]  # fmt: skip
    if starts and args.status is None:
        shown = 5
        more = ", ..." if len(starts) > shown else ""
        ids = ", ".join(r.workflow_id for r in starts[:shown]) + more
        _say(
            f"{len(starts)} start request(s) queued, not yet applied by a runtime owning the "
            f"database: {ids} (`status ID` shows one)"
        )


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        msg = f"--since wants an ISO 8601 time such as 2026-01-31T12:00, not {text!r}"
        raise UsageError(msg) from exc
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


async def _history(db: str, wid: str) -> list[Any]:
    async with _readonly(db) as journal:
        events = await journal.history(wid)
    if not events:
        raise WorkflowNotFoundError(wid)
    return events


def _cmd_history(args: argparse.Namespace) -> int:
    events = _run_async(_history(args.db, args.id))
    items = render.timeline(events)
    if args.json:
        _out(render.to_json([item.to_json() for item in items]))
    else:
        _out("\n".join(render.timeline_lines(items)))
    return EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    events = _run_async(_history(args.db, args.id))
    _out(render.to_json(render.export_rows(events)))
    return EXIT_OK


# -- verify -------------------------------------------------------------------------------------


def _cmd_verify(args: argparse.Namespace) -> int:
    if not os.path.exists(args.db):  # noqa: PTH110
        raise UsageError(f"no flowcore database at {args.db!r} (pass --db PATH)")
    report = verify_journal(args.db)
    if args.json:
        _out(render.to_json(report.to_json()))
    else:
        for problem in report.problems:
            _out(str(problem))
        verdict = "ok" if report.ok else f"{len(report.problems)} problem(s)"
        _say(f"{report.workflows} workflow(s), {report.events} event(s) checked: {verdict}")
    return EXIT_OK if report.ok else EXIT_FAILED


# -- check --------------------------------------------------------------------------------------


def _cmd_check(args: argparse.Namespace) -> int:
    for name in args.modules:
        _load_module(name)
    return _run_async(_check(args.db, as_json=args.json))


async def _check(db: str, *, as_json: bool) -> int:
    results = []
    async with _readonly(db) as journal:
        for wid in await journal.unfinished():
            events = await journal.history(wid)
            if events:
                results.append(_check_one(wid, events))
    if as_json:
        _out(render.to_json(results))
    else:
        for r in results:
            where = f"{r['workflow']} v{r['version']} id {r['id']}"
            problem = "" if r["problem"] is None else f": {r['problem']}"
            _out(f"{r['status'].upper() if problem else 'ok':<9} {where}{problem}")
        diverging = sum(1 for r in results if r["status"] == "diverges")
        missing = sum(1 for r in results if r["status"] == "missing")
        summary = f"{len(results)} unfinished instance(s) checked; {diverging} would diverge"
        if missing:
            summary += f"; {missing} not registered in the given modules"
        _say(summary)
    return EXIT_OK if all(r["problem"] is None for r in results) else EXIT_FAILED


def _check_one(wid: str, events: list[Any]) -> dict[str, Any]:
    """One instance's ``check`` record; its ``status`` is ``ok``, ``diverges`` or ``missing``."""
    started = events[0]
    found: dict[str, Any] = dict.fromkeys(("problem", "step", "recorded", "now"))
    found.update(id=wid, workflow=started.name, version=started.version, status="diverges")
    if started.name not in default_registry.workflows:
        problem = (
            f"workflow {started.name!r} is not registered in the given modules: import the "
            "module that defines it (check MODULE [MODULE ...])"
        )
        found.update(status="missing", problem=problem)
        return found
    try:
        defn = default_registry.for_replay(started.name, started.version)
        replay(events, defn, workflow_id=wid)
    except NondeterminismError as exc:
        problem = f"step {exc.step}: recorded {exc.recorded}, now {exc.attempted}"
        note = default_registry.fallback_note(started.name, started.version)  # a dropped version
        found.update(problem=f"{problem}.{note}" if note else problem,
                     step=exc.step, recorded=exc.recorded, now=exc.attempted)  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - report every instance, whatever breaks
        found["problem"] = _one_line(exc)
    else:
        found["status"] = "ok"
    return found
