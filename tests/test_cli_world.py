"""`amends world generate`: a sample world written from the command line, and its bad arguments refused."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from amends.cli import app
from amends.events import Event, validate_event

runner = CliRunner()


def generate(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["world", "generate", *args])
    return result.exit_code, result.output


def test_a_small_world_is_written_with_its_truth_and_a_summary(tmp_path: Path) -> None:
    out = tmp_path / "shop.jsonl"

    code, output = generate("--business", "shop", "--customers", "200", "--days", "30", str(out))

    assert code == 0, output
    lines = out.read_bytes().splitlines()
    first = validate_event(orjson.loads(lines[0]))
    assert isinstance(first, Event), first
    assert first.type == "customer.profile"  # every customer's profile comes first, then their orders
    truth = (tmp_path / "shop.jsonl.truth.jsonl").read_bytes().splitlines()
    assert len(truth) == 200
    assert "World written: shop" in output
    assert f"│ events     │ {len(lines):,}" in output
    assert "order.delivered" in output
    assert f"Events:       {out}" in output
    assert f"Ground truth: {tmp_path / 'shop.jsonl.truth.jsonl'}" in output


def test_the_same_seed_writes_the_same_bytes_and_the_options_reach_the_world(tmp_path: Path) -> None:
    args = ["--business", "car-service", "--customers", "300", "--days", "20", "--seed", "7", "--start", "2025-06-01"]
    args += ["--late-share", "0.05", "--max-lateness", "30m", "--duplicate-share", "0.02"]

    for name in ("a.jsonl", "b.jsonl"):
        code, output = generate(*args, "--truth", str(tmp_path / f"{name}.truth"), str(tmp_path / name))
        assert code == 0, output

    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert (tmp_path / "a.jsonl.truth").read_bytes() == (tmp_path / "b.jsonl.truth").read_bytes()
    events = [orjson.loads(line) for line in (tmp_path / "a.jsonl").read_bytes().splitlines()]
    assert {e["subject"][:2] for e in events} == {"D-"}
    assert min(datetime.fromisoformat(e["time"]) for e in events) == datetime(2025, 6, 1, tzinfo=UTC)
    assert len({(e["source"], e["id"]) for e in events}) < len(events)  # some were sent twice


@pytest.mark.parametrize(
    ("args", "option", "reason"),
    [
        (["--business", "bakery"], "'--business'", "expected one of shop, airline, car-service; got 'bakery'"),
        (["--customers", "-5"], "'--customers'", "greater than or equal to 1"),
        (["--late-share", "1.5"], "'--late-share'", "less than or equal to 1"),
        (["--max-lateness", "2 hours"], "'--max-lateness'", "expected a duration like '30m'"),
        (["--start", "someday"], "'--start'", "expected a date like 2025-01-01"),
    ],
)
def test_a_bad_argument_exits_with_2_naming_the_option(
    args: list[str], option: str, reason: str, tmp_path: Path
) -> None:
    defaults = {"--business": "shop", "--customers": "10", "--days": "5"}
    defaults.update(zip(args[::2], args[1::2], strict=True))
    out = tmp_path / "world.jsonl"

    code, output = generate(*[part for pair in defaults.items() for part in pair], str(out))

    assert code == 2
    assert f"Invalid value for {option}" in output
    assert reason in " ".join(output.replace("│", " ").split())  # the error box may wrap the sentence
    assert not out.exists()


def test_a_path_that_cannot_be_written_is_refused_before_any_work(tmp_path: Path) -> None:
    code, output = generate("--business", "shop", "--customers", "10", "--days", "5", str(tmp_path / "no" / "w.jsonl"))
    assert code == 2
    assert "Invalid value for 'OUT'" in output
    assert "no such directory" in output

    code, output = generate(
        "--business", "shop", "--customers", "10", "--days", "5", "--truth", str(tmp_path), str(tmp_path / "w.jsonl")
    )
    assert code == 2
    assert "Invalid value for '--truth'" in output
    assert not (tmp_path / "w.jsonl").exists()
