# /// script
# dependencies = ["nox>=2024.10.9"]
# ///
"""Developer sessions: tests, lint, typecheck, bench."""

from __future__ import annotations

from pathlib import Path

import nox

nox.needs_version = ">=2024.10.9"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "lint", "typecheck"]

PYPROJECT = nox.project.load_toml("pyproject.toml")
PYTHONS = nox.project.python_versions(PYPROJECT)
DEV = nox.project.dependency_groups(PYPROJECT, "dev")


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite with branch coverage."""
    session.install("-e", ".", *DEV, "coverage[toml]>=7.5")
    session.env["COVERAGE_FILE"] = f".coverage.{session.python}"
    session.run("coverage", "run", "-m", "pytest", *session.posargs)
    session.run("coverage", "combine", success_codes=[0, 1])
    session.run("coverage", "report", "--skip-covered", "--show-missing")


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff lint and format check."""
    session.install("ruff>=0.8")
    paths = ("src", "tests", "benchmarks", "examples", "noxfile.py")
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy strict on src/ and the typing tests."""
    extras = ".[web,orchestra,yaml,celery,speed]"  # every optional import src/ makes
    session.install("-e", extras, "mypy>=1.13", "pytest>=8.3", "pydantic>=2.6")
    session.run("mypy")


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Run the benchmarks; writes JSON under benchmarks/results/ (options: --help)."""
    session.install("-e", ".[celery,speed]")  # Celery cases (--celery); uvloop (--loop auto)
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session(default=False)
def bench_dbos(session: nox.Session) -> None:
    """DBOS Transact's own virtualenv for bench_compare: dbos only, never flowcore."""
    session.install("dbos>=3", "uvloop>=0.19")  # the harness's loop, on both sides
    session.run(
        "python", "-c", "import dbos, importlib.metadata as m; print('dbos', m.version('dbos'))"
    )


@nox.session(default=False, requires=["bench_dbos"])
def bench_compare(session: nox.Session) -> None:
    """flowcore and DBOS Transact (SQLite) side by side, with ratios (options after --)."""
    session.install("-e", ".[celery,speed]")
    venv = session.virtualenv.location
    dbos_python = Path(venv).parent / "bench_dbos" / "bin" / "python"
    if not dbos_python.exists():
        session.error(f"the bench_dbos session's virtualenv is missing: {dbos_python}")
    session.run(
        "python",
        "-m",
        "benchmarks",
        "--compare",
        "--dbos-python",
        str(dbos_python),
        *session.posargs,
    )


@nox.session(default=False)
def chaos(session: nox.Session) -> None:
    """The long crash campaign (>= 500 workflows, >= 50 SIGKILLs) and the slow load tests.

    Options after ``--`` go to ``python -m tests.chaos.campaign`` (``--seed``, ``--workflows``,
    ``--kills``, ``--max-delay``, ``--dispatch eager``); the seed makes a run reproducible.
    """
    session.install("-e", ".", *DEV)
    session.run("python", "-m", "tests.chaos.campaign", *(session.posargs or ["--seed", "1"]))
    session.run("pytest", "-q", "-m", "slow", "tests/chaos")
