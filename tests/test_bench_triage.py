"""The triage benchmark still runs: a quick run of `bench/triage.py` scores every row and judges each target. It
asserts nothing about the numbers; that is what the benchmark says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REQUIRE_SERVICES
from tests.test_triage import DATA

BENCH = Path(__file__).resolve().parent.parent / "bench" / "triage.py"


@pytest.mark.slow
def test_a_quick_run_prints_the_table_and_a_verdict_per_target() -> None:
    if not (DATA / "sms-spam" / "SMSSpamCollection").is_file():
        reason = f"the public data is not at {DATA} (set AMENDS_SHARED_DATA)"
        if REQUIRE_SERVICES:
            pytest.fail(f"{reason}; AMENDS_REQUIRE_SERVICES=1 forbids skipping")
        pytest.skip(reason)
    run = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--backends", "fast", "--data", str(DATA)],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
        cwd=BENCH.parent.parent,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    for row in ("VADER alone", "TF-IDF + LR + VADER", "fast (whole triage)"):
        assert row in run.stdout
    for target in ("fast sentiment macro-F1", "fast spam F1 on SMS", "fast spam F1 on YouTube", "one core"):
        assert any(target in line and "MET" in line for line in run.stdout.splitlines()), target
