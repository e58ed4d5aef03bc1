"""The outreach benchmark still runs: a quick run of `bench/outreach.py` on each engine delivers every message to
its SMTP sink exactly once and prints its table. It asserts nothing about speed; that is what the benchmark says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "outreach.py"


def run_quick(*options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH), "--quick", *options],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=BENCH.parent.parent,
    )


def assert_every_message_arrived_once(run: subprocess.CompletedProcess[str]) -> None:
    assert run.returncode == 0, run.stdout + run.stderr
    assert "ceiling: every one of the 300 messages arrived exactly once" in run.stdout
    assert "outbox: every one of the 300 messages arrived exactly once" in run.stdout
    assert "ratio to ceiling" in run.stdout


@pytest.mark.slow
def test_a_quick_run_on_sqlite_delivers_every_message_once(tmp_path: Path) -> None:
    assert_every_message_arrived_once(run_quick("--database", "sqlite", "--workdir", str(tmp_path)))


@pytest.mark.slow
@pytest.mark.postgres
def test_a_quick_run_on_postgresql_delivers_every_message_once(postgres_server: str) -> None:
    assert_every_message_arrived_once(run_quick("--database", "postgresql", "--postgres-url", postgres_server))
