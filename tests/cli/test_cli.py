"""Subprocess tests of ``python -m flowcore`` against a real database in a temporary directory."""

from __future__ import annotations

import json
import signal

import pytest

from flowcore import NondeterminismError, workflow
from flowcore.testing import replay
from tests.cli.conftest import stop, wait_for, write_app


class TestRun:
    def test_prints_the_result_as_json(self, cli):
        """run starts the workflow, waits for it and prints its result on stdout."""
        done = cli("run", "app:fan", "--payload", "4", "--id", "f1")
        assert (done.returncode, done.stdout.strip()) == (0, "14")
        assert "workflow fan id f1" in done.stderr
        assert "running" in done.stderr  # plain progress lines when not a TTY

    def test_progress_into_a_log_changes_only_with_the_instance(self, cli):
        """Not a TTY: a timer shows once as the time it fires, not as a countdown a line per
        poll (a run waiting a day wrote 432,000 lines)."""
        done = cli("run", "app:napper", "--payload", "1.0", "--id", "n1")
        assert (done.returncode, done.stdout.strip()) == (0, '"rested"'), done.stderr
        sleeping = [line for line in done.stderr.splitlines() if "sleeping" in line]
        assert len(sleeping) == 1, done.stderr
        assert sleeping[0].startswith("running · sleeping until 20"), sleeping

    @pytest.mark.parametrize("spelling", ["app.py", "./app.py", "{cwd}/app.py", "{cwd}/./app.py"])
    def test_module_as_a_file_path(self, cli, spelling):
        """MODULE may be the module's file, as a shell completes it: relative or absolute.

        Before, './app.py' and an absolute path were read as relative imports ('..app'):
        exit 2 with "TypeError: the 'package' argument is required".
        """
        target = spelling.format(cwd=cli.cwd) + ":fan"
        done = cli("run", target, "--payload", "4")
        assert (done.returncode, done.stdout.strip()) == (0, "14"), done.stderr

    def test_module_file_in_another_directory(self, cli, tmp_path_factory):
        """A module file outside the current directory is imported from its own directory."""
        elsewhere = tmp_path_factory.mktemp("elsewhere")
        write_app(elsewhere)
        (elsewhere / "app.py").rename(elsewhere / "remote_app.py")
        done = cli("run", f"{elsewhere}/remote_app.py:fan", "--payload", "4")
        assert (done.returncode, done.stdout.strip()) == (0, "14"), done.stderr

    def test_payload_file(self, cli):
        """--payload-file reads the JSON payload from a file."""
        (cli.cwd / "payload.json").write_text("4\n")
        done = cli("run", "app:fan", "--payload-file", "payload.json", "--id", "pf")
        assert (done.returncode, done.stdout.strip()) == (0, "14")

    def test_failure_exits_1(self, cli):
        """A workflow that raises ends run with exit code 1 and the error on stderr."""
        done = cli("run", "app:boom")
        assert done.returncode == 1
        assert "kaput" in done.stderr
        assert done.stdout == ""

    def test_interrupted_then_resumed(self, cli):
        """SIGINT stops run cleanly (exit 130); run with the same id resumes the instance."""
        proc = cli.spawn("run", "app:gated", "--payload", "1", "--id", "g1")
        try:
            wait_for((cli.cwd / "g.entered").exists, 10, "the activity to start")
            _, err = stop(proc, signal.SIGINT)
        finally:
            stop(proc)
        assert proc.returncode == 130, err
        hint = "'python -m flowcore run app:gated --db flowcore.db --id g1' resumes workflow 'g1'"
        assert hint in err
        assert cli.status_of("g1") == "running"
        (cli.cwd / "g.open").touch()
        done = cli("run", "app:gated", "--id", "g1")  # as the hint says: no payload needed
        assert (done.returncode, done.stdout.strip()) == (0, "2"), done.stderr
        assert "note:" not in done.stderr
        kinds = [row["kind"] for row in json.loads(cli("export", "g1").stdout)]
        assert kinds.count("workflow_started") == 1
        assert kinds.count("activity_scheduled") == 1

    @pytest.mark.parametrize(
        ("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
    )
    def test_exit_code_names_the_signal(self, cli, sig, code):
        """A signal stopping run exits 128 + its number, as a shell shows it (SIGTERM gave 130)."""
        proc = cli.spawn("run", "app:gated", "--payload", "1", "--id", "sig")
        try:
            wait_for((cli.cwd / "g.entered").exists, 10, "the activity to start")
            _, err = stop(proc, sig)
        finally:
            stop(proc)
        assert proc.returncode == code, err
        assert "resumes workflow 'sig'" in err
        assert cli.status_of("sig") == "running"

    def test_resumed_id_keeps_its_input(self, cli):
        """run --id of an existing instance with another payload says the payload is ignored."""
        cli("run", "app:fan", "--payload", "2", "--id", "f1")
        again = cli("run", "app:fan", "--payload", "5", "--id", "f1")
        assert (again.returncode, again.stdout.strip()) == (0, "1")
        note = "'f1' exists and keeps the input it started with; --payload is ignored"
        assert note in again.stderr

    def test_payload_for_a_workflow_without_input_is_refused(self, cli):
        """run and start refuse --payload for a workflow that takes no input; nothing is written."""
        for command in ("run", "start"):
            done = cli(command, "app:boom", "--payload", "1", "--id", "b1")
            assert done.returncode == 2, done.stderr
            assert "workflow 'boom'" in done.stderr
            assert "takes no input" in done.stderr
            assert "leave out --payload" in done.stderr
            assert not (cli.cwd / "flowcore.db").exists()

    def test_new_id_without_payload_asks_for_one(self, cli):
        """run --id of no instance, for a workflow that takes an input, asks for --payload."""
        done = cli("run", "app:fan", "--id", "nope")
        assert done.returncode == 2
        assert "workflow 'fan' takes an input: pass it as JSON with --payload" in done.stderr
        assert cli.status_of("nope") is None

    def test_id_of_another_workflow_is_refused(self, cli):
        """run --id naming an instance of another workflow refuses to follow it as this one."""
        cli("run", "app:fan", "--payload", "2", "--id", "f1")
        done = cli("run", "app:gated", "--payload", "1", "--id", "f1")
        assert done.returncode == 2
        assert "id 'f1' belongs to an instance of workflow 'fan', not 'gated'" in done.stderr
        assert done.stdout == ""

    def test_finished_id_returns_the_recorded_result(self, cli):
        """run on a finished id prints its recorded result without running it again."""
        cli("run", "app:fan", "--payload", "2", "--id", "f1")
        again = cli("run", "app:fan", "--payload", "2", "--id", "f1")
        assert (again.returncode, again.stdout.strip()) == (0, "1")


class TestServe:
    @pytest.mark.usefixtures("serving")
    def test_send_event_reaches_a_live_server_promptly(self, cli):
        """start and send-event are applied by the running server well under a second."""
        started = cli("start", "app:approval", "--payload", "{}", "--id", "a1")
        assert (started.returncode, started.stdout.strip()) == (0, "a1"), started.stderr
        cli.wait_status("a1", "running")
        sent = cli("send-event", "a1", "approval", "--payload", '{"by": "ann"}')
        assert sent.returncode == 0, sent.stderr
        assert cli.wait_status("a1", "completed", timeout=2) < 1.5
        assert cli.sql("SELECT output FROM workflows WHERE id = 'a1'") == [('"approved by ann"',)]
        assert cli.sql("SELECT count(*) FROM inbox") == [(0,)]

    @pytest.mark.usefixtures("serving")
    def test_suspend_resume_terminate(self, cli):
        """suspend, resume and terminate steer an instance hosted by the server."""
        cli("start", "approval", "--payload", "{}", "--id", "a2")
        cli.wait_status("a2", "running")
        assert cli("suspend", "a2").returncode == 0
        cli.wait_status("a2", "suspended")
        assert cli("resume", "a2").returncode == 0
        cli.wait_status("a2", "running")
        assert cli("terminate", "a2", "--reason", "enough").returncode == 0
        cli.wait_status("a2", "terminated")

    @pytest.mark.usefixtures("serving")
    def test_run_on_a_served_database_is_refused(self, cli):
        """run needs ownership: it names the owner and exits 2."""
        done = cli("run", "app:fan", "--payload", "1")
        assert done.returncode == 2
        assert "owned by another runtime" in done.stderr
        assert "Traceback" not in done.stderr
        # the commands as typed: there is no `flowcore` executable to run 'flowcore start'
        assert "`python -m flowcore start|send-event|cancel|...`" in done.stderr
        assert "'flowcore start'" not in done.stderr

    @pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
    def test_stops_gracefully(self, cli, serving, sig):
        """SIGTERM or Ctrl-C closes the runtime and exits 0; the owner row is gone."""
        _, err = stop(serving, sig)
        assert serving.returncode == 0, err
        assert "Traceback" not in err
        assert cli.sql("SELECT count(*) FROM owner") == [(0,)]


class TestSteeringWithoutServer:
    def test_requests_apply_when_a_server_starts(self, cli):
        """Requests queued with no server are kept durably and applied in order on open."""
        cli("run", "app:fan", "--payload", "1", "--id", "seed")  # creates the database
        assert cli("start", "app:approval", "--payload", "{}", "--id", "a1").stdout == "a1\n"
        assert cli("send-event", "a1", "approval", "--payload", '{"by": "bo"}').returncode == 0
        generated = cli("start", "approval", "--payload", "{}").stdout.strip()
        assert cli("cancel", generated, "--reason", "no").returncode == 0
        status = json.loads(cli("status", "a1", "--json").stdout)
        assert status["status"] == "requested"
        assert [r["kind"] for r in status["pending_requests"]] == ["start", "event"]
        proc = cli.spawn("serve", "app")
        try:
            cli.wait_status("a1", "completed")
            cli.wait_status(generated, "canceled")
        finally:
            stop(proc)
        assert cli.sql("SELECT count(*) FROM inbox") == [(0,)]

    def test_start_of_a_name_never_run_warns(self, cli):
        """start NAME notes on stderr that a name no instance has had may be dropped."""
        cli("run", "app:fan", "--payload", "1", "--id", "seed")
        unknown = cli("start", "aproval", "--payload", "{}", "--id", "a1")
        assert (unknown.returncode, unknown.stdout) == (0, "a1\n")
        note = (
            "note: no workflow named 'aproval' has run in this database; if the owner does not "
            "define it, the request is dropped. Pass MODULE:WORKFLOW to check the name and "
            "payload now."
        )
        assert note in unknown.stderr
        assert cli.sql("SELECT workflow_id FROM inbox") == [("a1",)]  # still queued
        known = cli("start", "fan", "--payload", "1", "--id", "f2")
        checked = cli("start", "app:approval", "--payload", "{}", "--id", "a2")
        for done in (known, checked):
            assert done.returncode == 0, done.stderr
            assert "note:" not in done.stderr

    def test_start_without_a_payload_asks_for_one(self, cli):
        """start MODULE:WORKFLOW of a workflow taking an input, with no --payload, asks for one.

        It said "the payload does not fit ... got NoneType None" of a payload never given.
        """
        done = cli("start", "app:fan", "--id", "nothing")
        assert done.returncode == 2
        assert "workflow 'fan' takes an input: pass it as JSON with --payload" in done.stderr
        assert "does not fit" not in done.stderr

    def test_start_creates_a_missing_database(self, cli):
        """start on a missing database creates it, and the request waits there."""
        assert cli("start", "approval", "--id", "x").returncode == 0
        assert cli.sql("SELECT workflow_id, kind FROM inbox") == [("x", "start")]

    def test_list_mentions_queued_starts(self, cli):
        """list shows instances; a start not applied yet is named on stderr, not lost from view."""
        cli("run", "app:fan", "--payload", "1", "--id", "f1")
        assert cli("start", "approval", "--id", "x", "--payload", "{}").returncode == 0
        listed = cli("list")
        assert "f1" in listed.stdout
        assert "x" not in listed.stdout.split()
        assert "1 start request(s) queued, not yet applied" in listed.stderr
        assert ": x (`status ID` shows one)" in listed.stderr
        assert "queued" not in cli("list", "--name", "fan").stderr
        assert "queued" not in cli("list", "--status", "completed").stderr


VERSIONED_APP = """
import flowcore
from flowcore import workflow


async def body(n: int) -> str:
    return flowcore.info().version


order_v1 = workflow(name="order", version="1")(body)
order_v2 = workflow(name="order", version="2")(body)
"""


class TestVersions:
    def test_start_module_workflow_starts_that_version(self, cli):
        """start MODULE:WORKFLOW starts the version that definition has, as run does.

        Found by a new-user run: ``start ver:order_v1`` queued a start without a version, so
        the owner started version 2 (the latest) while ``run ver:order_v1`` started version 1.
        """
        (cli.cwd / "ver.py").write_text(VERSIONED_APP)
        for args in (
            ("ver:order_v1", "--id", "s1"),
            ("ver:order_v1", "--version", "2", "--id", "s2"),
            ("order", "--id", "plain"),
        ):
            done = cli("start", *args, "--payload", "1")
            assert done.returncode == 0, done.stderr
        proc = cli.spawn("serve", "ver")
        try:
            for wid in ("s1", "s2", "plain"):
                cli.wait_status(wid, "completed")
        finally:
            stop(proc, signal.SIGINT)
        rows = dict(cli.sql("SELECT id, version FROM workflows"))
        assert rows == {"s1": "1", "s2": "2", "plain": "2"}
        assert cli("run", "ver:order_v1", "--payload", "1", "--id", "r1").stdout == '"1"\n'

    def test_run_id_of_another_version_says_the_instance_keeps_its_own(self, cli):
        """run MODULE:WORKFLOW --id of an instance started at another version notes that it
        keeps the version it started with (found by a new-user run: nothing said so)."""
        (cli.cwd / "ver.py").write_text(VERSIONED_APP)
        assert cli("run", "ver:order_v1", "--payload", "1", "--id", "r1").returncode == 0
        again = cli("run", "ver:order_v2", "--id", "r1")
        assert (again.returncode, again.stdout) == (0, '"1"\n')
        assert "note: 'r1' started at version '1' and keeps it, not version '2'" in again.stderr
        assert "note:" not in cli("run", "ver:order_v1", "--id", "r1").stderr

    def test_serve_names_the_versions_it_serves(self, cli):
        """serve's banner names each workflow's versions and the one new instances get.

        Found by a new-user run: it named only ``order``, so a deploy that registered the
        versions in another order (the last registered is the default) went unnoticed.
        """
        (cli.cwd / "ver.py").write_text(VERSIONED_APP)
        proc = cli.spawn("serve", "ver")
        try:
            wait_for(lambda: (cli.cwd / "flowcore.db").exists() and cli.sql("SELECT 1 FROM owner"),
                     10, "serve to own the database")  # fmt: skip
        finally:
            _, err = stop(proc, signal.SIGINT)
        assert "(workflows: order v1/v2 (new: v2);" in err

    def test_check_says_when_an_instance_version_is_not_registered(self, cli):
        """check of modules that dropped an instance's version says it replayed on another.

        Found by a new-user run: ``DIVERGES order v1`` read as if version 1's code had changed.
        """
        (cli.cwd / "ver.py").write_text(VERSIONED_APP.replace("return flowcore", (
            "await flowcore.wait_event('go')\n    return flowcore")))  # fmt: skip
        assert cli("start", "ver:order_v1", "--payload", "1", "--id", "w1").returncode == 0
        proc = cli.spawn("serve", "ver")
        try:
            wait_for(lambda: cli.sql("SELECT count(*) FROM events WHERE workflow_id = 'w1'")
                     >= [(2,)], 10, "w1 to wait")  # fmt: skip
        finally:
            stop(proc, signal.SIGINT)
        (cli.cwd / "ver2.py").write_text(
            "import flowcore\n\n\n@flowcore.workflow(name='order', version='2')\n"
            "async def order(n: int) -> str:\n    await flowcore.sleep(1)\n    return 'x'\n"
        )
        done = cli("check", "ver2")
        assert done.returncode == 1
        assert done.stdout.startswith("DIVERGES  order v1 id w1: step 1: recorded wait_event")
        assert "Version '1', which this instance started with, is not registered" in done.stdout
        [report] = json.loads(cli("check", "ver2", "--json").stdout)
        assert "replayed on version '2'" in report["problem"]
        assert "not registered" not in cli("check", "ver").stdout


class TestInspection:
    def test_status_list_history_export(self, cli):
        """status, list, history and export read the journal, as text or JSON."""
        assert cli("run", "app:fan", "--payload", "3", "--id", "f1").returncode == 0
        cli("run", "app:boom", "--id", "b1")
        status = cli("status", "f1")
        assert "completed" in status.stdout
        assert json.loads(cli("status", "f1", "--json").stdout)["output"] == 5
        listed = json.loads(cli("list", "--json").stdout)
        assert {s["id"] for s in listed} == {"f1", "b1"}
        failed = json.loads(cli("list", "--status", "failed", "--json").stdout)
        assert [s["id"] for s in failed] == ["b1"]
        assert json.loads(cli("list", "--since", "2999-01-01", "--json").stdout) == []
        assert "f1" in cli("list", "--name", "fan").stdout
        history = cli("history", "f1").stdout
        assert "activity flaky(0)" in history
        assert "attempt 1: failed" in history
        assert "ValueError: first try fails" in history
        rows = json.loads(cli("export", "f1").stdout)
        assert rows[0]["kind"] == "workflow_started"
        assert set(rows[0]) == {"kind", "data", "at"}

    def test_list_says_when_the_limit_cut_it(self, cli):
        """list notes on stderr that more instances match than --limit shows; not otherwise."""
        for i in range(3):
            assert cli("run", "app:fan", "--payload", "1", "--id", f"f{i}").returncode == 0
        cut = cli("list", "--limit", "2", "--json")
        assert [s["id"] for s in json.loads(cut.stdout)] == ["f2", "f1"]
        assert "showing the newest 2; more match: pass --limit N to see more" in cut.stderr
        for args in (("--limit", "3"), ("--limit", "0"), ("--since", "2999-01-01")):
            assert "more match" not in cli("list", *args).stderr, args

    def test_export_takes_json_as_a_no_op(self, cli):
        """export --json prints the same JSON rows as export (it always prints JSON)."""
        assert cli("run", "app:fan", "--payload", "1", "--id", "f1").returncode == 0
        plain, flagged = cli("export", "f1"), cli("export", "f1", "--json")
        assert flagged.returncode == 0, flagged.stderr
        assert json.loads(flagged.stdout) == json.loads(plain.stdout)

    def test_a_closed_stdout_ends_quietly(self, cli):
        """Output into a pipe nobody reads (``| head``) ends with exit 141 and no message."""
        assert cli("run", "app:fan", "--payload", "3", "--id", "f1").returncode == 0
        for args in (("status", "f1"), ("list",), ("history", "f1"), ("export", "f1")):
            done = cli.into_closed_pipe(*args)
            assert (done.returncode, done.stderr) == (141, ""), args

    @pytest.mark.usefixtures("serving")
    def test_inspection_works_beside_a_server(self, cli):
        """Read-only commands work while a server owns the database."""
        cli("start", "approval", "--payload", "{}", "--id", "a1")
        cli.wait_status("a1", "running")
        assert "waiting" in cli("history", "a1").stdout
        assert "a1" in cli("list").stdout


class TestCheck:
    def test_catches_an_incompatible_code_change(self, cli, serving):
        """check replays unfinished instances and reports the one the new code diverges from."""
        cli("start", "approval", "--payload", "{}", "--id", "a1")
        cli.wait_status("a1", "running")
        stop(serving, signal.SIGINT)
        ok = cli("check", "app")
        assert ok.returncode == 0, ok.stderr
        assert "ok" in ok.stdout
        write_app(cli.cwd, activity="flaky")
        bad = cli("check", "app", "--json")
        assert bad.returncode == 1
        [report] = json.loads(bad.stdout)
        assert (report["id"], report["step"], report["status"]) == ("a1", 1, "diverges")
        assert "square" in report["recorded"]
        assert "flaky" in report["now"]

    def test_an_unregistered_workflow_is_missing_not_diverging(self, cli):
        """An instance whose workflow the given modules do not define is MISSING, exit 1."""
        assert cli("start", "approval", "--payload", "{}", "--id", "a1").returncode == 0
        proc = cli.spawn("serve", "app")
        try:
            cli.wait_status("a1", "running")
        finally:
            stop(proc, signal.SIGINT)
        (cli.cwd / "other.py").write_text("")
        done = cli("check", "other")
        assert done.returncode == 1
        assert done.stdout.startswith("MISSING   approval v")
        assert "not registered in the given modules: import the module that defines it" in (
            done.stdout
        )
        assert "DIVERGES" not in done.stdout
        assert "0 would diverge; 1 not registered in the given modules" in done.stderr
        [report] = json.loads(cli("check", "other", "--json").stdout)
        assert (report["id"], report["status"]) == ("a1", "missing")
        [fine] = json.loads(cli("check", "app", "--json").stdout)
        assert (fine["status"], fine["problem"]) == ("ok", None)

    def test_testing_replay_takes_exported_rows(self, cli):
        """flowcore.testing.replay accepts export rows and raises on a diverging workflow."""
        assert cli("run", "app:fan", "--payload", "2", "--id", "f1").returncode == 0
        rows = json.loads(cli("export", "f1").stdout)

        @workflow(name="fan")
        async def other(n: int) -> int:
            return n

        with pytest.raises(NondeterminismError) as info:
            replay(rows, other, workflow_id="f1")
        assert info.value.step == 1


class TestGlobalOptions:
    def test_db_before_the_command(self, cli):
        """--db may come before the command; given on both sides, the one after it wins."""
        done = cli("--db", "other.db", "run", "app:fan", "--payload", "2", "--id", "f1")
        assert (done.returncode, done.stdout.strip()) == (0, "1"), done.stderr
        assert (cli.cwd / "other.db").exists()
        assert not (cli.cwd / "flowcore.db").exists()
        status = cli("--db", "other.db", "status", "f1", "--json")
        assert json.loads(status.stdout)["status"] == "completed", status.stderr
        both = cli("--db", "missing.db", "status", "f1", "--db", "other.db")
        assert both.returncode == 0, both.stderr
        wrong = cli("--db", "other.db", "status", "f1", "--db", "missing.db")
        assert wrong.returncode == 2
        assert "no flowcore database at 'missing.db'" in wrong.stderr


class TestErrors:
    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (("run", "nosuchmodule:wf"), "cannot import module 'nosuchmodule'"),
            (("run", "app:nope"), "has no @workflow 'nope'"),
            (("run", "app"), "expected MODULE:WORKFLOW"),
            (("run", "app:fan", "--payload", "{bad"), "--payload is not valid JSON"),
            (("run", "app:fan", "--payload", '"x"'), "does not fit workflow 'fan'"),
            (("status", "x", "--db", "missing.db"), "no flowcore database at 'missing.db'"),
            (("send-event", "x", "e", "--db", "missing.db"), "no flowcore database"),
            (("serve", "nosuchmodule"), "cannot import module"),
            (("status",), "python -m flowcore status: error: the following arguments are required"),
            (("export", "x", "--foo"), "unrecognized arguments: --foo (see python -m flowcore ex"),
            (("nosuch",), "python -m flowcore: error: argument COMMAND: invalid choice"),
            (("list", "--status", "bogus"), "argument --status: invalid choice: 'bogus'"),
            ((), "the following arguments are required: COMMAND (see python -m flowcore --help)"),
        ],
    )
    def test_usage_errors_exit_2_with_one_line(self, cli, args, message):
        """Each mistake is one line on stderr and exit code 2, without a traceback."""
        done = cli(*args)
        assert done.returncode == 2, done.stderr
        assert message in done.stderr
        assert "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1

    def test_unknown_and_finished_ids(self, cli):
        """Steering an unknown or finished id exits 2 and queues nothing."""
        cli("run", "app:fan", "--payload", "1", "--id", "f1")
        unknown = cli("send-event", "nope", "e")
        assert unknown.returncode == 2
        assert "no workflow with id 'nope'" in unknown.stderr
        finished = cli("cancel", "f1")
        assert finished.returncode == 2
        assert "already ended" in finished.stderr
        duplicate = cli("start", "fan", "--id", "f1")
        assert duplicate.returncode == 2
        assert "already exists" in duplicate.stderr
        assert cli("status", "nope").returncode == 2
        assert cli.sql("SELECT count(*) FROM inbox") == [(0,)]

    def test_advice_names_cli_commands(self, cli):
        """Errors a CLI user meets advise CLI commands, not Python calls."""
        cli("--db", "my.db", "run", "app:fan", "--payload", "1", "--id", "f1")
        unknown = cli("status", "nope", "--db", "my.db")
        assert "`python -m flowcore list --db my.db`" in unknown.stderr
        duplicate = cli("start", "fan", "--id", "f1", "--db", "my.db")
        assert duplicate.returncode == 2
        assert "`python -m flowcore run MODULE:WORKFLOW --id f1 --db my.db`" in duplicate.stderr
        assert "`python -m flowcore status f1 --db my.db`" in duplicate.stderr
        (cli.cwd / "big.json").write_text('"' + "x" * (4 * 1024 * 1024) + '"')
        big = cli("start", "fan", "--payload-file", "big.json", "--db", "my.db")
        assert big.returncode == 2
        assert "more than the 4,194,304-byte limit" in big.stderr
        for done in (unknown, duplicate, big):
            assert len(done.stderr.strip().splitlines()) == 1
            for python_advice in ("runtime.", "if_exists", "Runtime("):
                assert python_advice not in done.stderr

    def test_debug_shows_the_traceback(self, cli):
        """--debug prints the traceback before the one-line error."""
        done = cli("run", "nosuchmodule:wf", "--debug")
        assert done.returncode == 2
        assert "Traceback" in done.stderr


def test_every_command_has_help(cli):
    """--help lists the subcommands."""
    done = cli("--help")
    for command in ("run", "serve", "start", "send-event", "cancel", "terminate", "suspend",
                    "resume", "status", "list", "history", "export", "check"):  # fmt: skip
        assert command in done.stdout


class TestRuntimeOptions:
    def test_serve_takes_the_runtimes_settings(self, cli):
        """serve --max-cached evicts idle workflows (and replays them), with eager dispatch."""
        proc = cli.spawn("serve", "app", "-vv", "--max-cached", "1", "--dispatch", "eager",
                         "--max-concurrent-activities", "3")  # fmt: skip
        try:
            wait_for(lambda: (cli.cwd / "flowcore.db").exists() and cli.sql("SELECT 1 FROM owner"),
                     10, "serve to own the database")  # fmt: skip
            for wid in ("a1", "a2", "a3"):
                assert cli("start", "approval", "--payload", "{}", "--id", wid).returncode == 0
                cli.wait_status(wid, "running")
            for wid in ("a1", "a2", "a3"):
                sent = cli("send-event", wid, "approval", "--payload", '{"by": "cy"}')
                assert sent.returncode == 0, sent.stderr
                cli.wait_status(wid, "completed")
        finally:
            _, err = stop(proc, signal.SIGTERM)
        assert proc.returncode == 0, err
        assert "dispatch=eager, max_cached_workflows=1, max_concurrent_activities=3" in err
        assert "workflow evicted" in err
        outputs = cli.sql("SELECT output FROM workflows WHERE id LIKE 'a%' ORDER BY id")
        assert outputs == [('"approved by cy"',)] * 3

    def test_run_takes_them_too(self, cli):
        done = cli("run", "app:fan", "--payload", "4", "--dispatch", "eager", "--max-cached", "1")
        assert (done.returncode, done.stdout.strip()) == (0, "14"), done.stderr

    @pytest.mark.parametrize("option", ["--max-cached", "--max-concurrent-activities"])
    def test_a_bound_under_one_is_a_usage_error(self, cli, option):
        done = cli("run", "app:fan", option, "0")
        assert done.returncode == 2
        assert f"argument {option}: expected a whole number of at least 1, not '0'" in done.stderr
        assert "Traceback" not in done.stderr


class TestEventLoop:
    def test_run_on_the_standard_loop(self, cli, monkeypatch):
        monkeypatch.setenv("FLOWCORE_LOOP", "asyncio")
        done = cli("run", "app:fan", "--payload", "4", "-vv")
        assert (done.returncode, done.stdout.strip()) == (0, "14"), done.stderr
        assert "loop=asyncio" in done.stderr

    def test_uvloop_when_installed(self, cli, monkeypatch):
        pytest.importorskip("uvloop", reason="uvloop is not installed (flowcore[speed])")
        monkeypatch.delenv("FLOWCORE_LOOP", raising=False)
        done = cli("run", "app:fan", "--payload", "4", "-vv")
        assert (done.returncode, done.stdout.strip()) == (0, "14"), done.stderr
        assert "loop=uvloop" in done.stderr

    def test_an_unknown_loop_is_a_usage_error(self, cli, monkeypatch):
        monkeypatch.setenv("FLOWCORE_LOOP", "trio")
        done = cli("run", "app:fan", "--payload", "4")
        assert done.returncode == 2
        assert "FLOWCORE_LOOP must be one of auto, uvloop, asyncio, not 'trio'" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
