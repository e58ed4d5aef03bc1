"""The load test still runs: a short, light run of `bench/load.py` against a real `amends serve` gets every kind of
request answered without an error and prints its tables. It asserts nothing about speed or memory; the recorded
10-minute run in docs/benchmarks.md#load says those."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "load.py"


@pytest.mark.slow
def test_a_short_run_answers_every_request_without_error(tmp_path: Path) -> None:
    out = tmp_path / "load.md"
    run = subprocess.run(
        [sys.executable, str(BENCH), "--seconds", "15", "--clients", "10", "--rate", "100", "--viewers", "2",
         "--answerers", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=300, check=False, cwd=BENCH.parent.parent,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    table = out.read_text()
    rows = {line.split("|")[1].strip(): line.split("|") for line in table.splitlines() if line.startswith("| ")}
    for kind in ("events", "console", "feedback"):
        assert int(rows[kind][2].replace(",", "")) > 0  # requests made
        assert rows[kind][8].strip() == "0"  # errors
    assert "server memory (RSS)" in table
