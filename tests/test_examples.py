"""Every example runs end to end as a user would run it."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


class TestExamples:
    @pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
    def test_example_runs(self, path, tmp_path):
        """The example exits 0 with its journal in a temporary directory."""
        proc = subprocess.run(
            [sys.executable, str(path), str(tmp_path / "example.db")],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr
        assert "result:" in proc.stdout

    def test_quickstart_prints_the_receipt_twice(self, tmp_path):
        """Run again on the same journal, the quickstart returns the recorded result."""
        db = tmp_path / "qs.db"
        outputs = [
            subprocess.run(
                [sys.executable, str(ROOT / "examples" / "quickstart.py"), str(db)],
                capture_output=True, text=True, timeout=60, check=True, cwd=tmp_path,
            ).stdout
            for _ in range(2)
        ]  # fmt: skip
        assert outputs[0] == outputs[1]
        assert "Receipt(order_id='order-42', total=Decimal('3.25')" in outputs[0]

    def test_saga_undoes_the_leg_booked_after_the_failure(self, tmp_path):
        """The hotel finishes booking after the car failed: it is cancelled all the same."""
        done = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "saga.py"), str(tmp_path / "saga.db")],
            capture_output=True, text=True, timeout=60, check=True, cwd=tmp_path,
        )  # fmt: skip
        assert "failed=['car: no cars left in Lisbon']" in done.stdout
        assert "undone=['FLIGHT-LIS-12', 'HOTEL-LIS-12']" in done.stdout
