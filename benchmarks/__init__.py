"""flowcore benchmarks: run with ``uv run python -m benchmarks`` (or ``nox -s bench``)."""
