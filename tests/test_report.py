"""The report, on both engines: written as HTML (charts inline), PDF (charts as images) and Markdown from the same
figures; the same figures as JSON under /v1/metrics for those allowed; an empty period says so; people's text is
escaped; bad input is refused naming the field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from amends.access import Scope
from amends.cli import app as cli
from amends.insights.outcomes import shipped_outcomes
from amends.insights.render import render
from amends.insights.report import Report, build_report
from amends.recover.roles import Role
from amends.store import Database, tables, upgrade
from amends.web import create_app
from tests.conftest import SECRET, new_key, settings_for
from tests.test_experiment import OUTCOMES, START, world
from tests.test_recovery import staff_key

AS_OF = START + timedelta(days=200)
XSS = '<script>alert("x")</script> & evening slots'


def sample(db: Database) -> None:
    world(db, 600, complain=(0.10, 0.30), spend=(20.0, 0.0))
    with db.unit_of_work(writes=True) as uow:
        done_at = START + timedelta(days=20)
        suggestion = uow.execute(
            sa.insert(tables.suggestions)
            .values(
                title=XSS,
                status="done",
                note="Evening slots from March",
                created_at=START,
                updated_at=done_at,
                done_at=done_at,
            )
            .returning(tables.suggestions.c.id)
        ).scalar_one()
        uow.execute(
            sa.insert(tables.suggestion_askers),
            [
                {"suggestion_id": suggestion, "feedback_id": 1, "customer_id": "C-1", "notified_at": done_at},
                {"suggestion_id": suggestion, "feedback_id": 2, "customer_id": "C-2", "notified_at": None},
            ],
        )
        uow.commit()


def report_of(db: Database, since: datetime = START, until: datetime = START + timedelta(days=60)) -> Report:
    with db.unit_of_work() as uow:
        return build_report(uow, since=since, until=until, now=AS_OF, outcomes=OUTCOMES, horizon=timedelta(days=60),
                            currency="EUR", spend_outcome="spend")  # fmt: skip


def test_the_report_is_written_three_ways_from_the_same_figures(db: Database) -> None:
    sample(db)
    report = report_of(db)
    assert not report.empty
    [round_] = report.experiment.rounds
    assert round_.final
    assert (round_.treated, round_.held_out) == (300, 300)
    html = render(report, "html").decode()
    assert html.startswith("<!doctype html>")
    assert html.count("<svg") == 1  # the uplift chart; no cases in this sample, so no case chart
    assert "Complained" in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; evening slots" in html
    assert "<script>" not in html
    assert "Return on recovery" in html
    md = render(report, "md").decode()
    assert "## What recovery does" in md
    complained = next(line for line in md.splitlines() if line.startswith("| Complained |"))
    assert "better" in complained  # 10 % against 30 %, six hundred customers: a clear verdict
    assert "&lt;script&gt;alert" in md  # shown as text by a Markdown viewer, never run
    assert "<script>" not in md
    assert "| 2 | 1 |" in md  # two asked for the suggestion, one was told
    pdf = render(report, "pdf")
    assert pdf.startswith(b"%PDF")
    assert pdf.count(b"/Subtype /Image") >= 1


def test_an_empty_period_says_so_instead_of_showing_zeros(db: Database) -> None:
    sample(db)
    report = report_of(db, since=START - timedelta(days=400), until=START - timedelta(days=300))
    assert report.empty
    for format in ("html", "md"):
        text = render(report, format).decode()  # type: ignore[arg-type]
        assert "No data in this period" in text
        assert "0.0%" not in text
        assert "What recovery does" not in text
    assert render(report, "pdf").startswith(b"%PDF")


def test_the_same_figures_are_json_for_those_allowed(db: Database) -> None:
    sample(db)
    keys = {
        "boss": staff_key(db, "boss", Role.MANAGER),
        "ana": staff_key(db, "ana", Role.AGENT, "air"),
        "metrics": new_key(db, "bi", [Scope.METRICS_READ]),
        "events": new_key(db, "integration", [Scope.EVENTS_WRITE]),
    }
    settings = settings_for(db, rule_packs=("shop",), holdout_horizon="60d")
    with TestClient(create_app(settings, db)) as client:
        query = {"since": START.isoformat(), "until": (START + timedelta(days=60)).isoformat()}
        got = client.get("/v1/metrics/report", params=query, headers={"Authorization": f"Bearer {keys['boss']}"})
        assert got.status_code == 200, got.text
        body = got.json()
        assert body["empty"] is False
        assert body["you_said_we_did"][0]["title"] == XSS
        assert body["you_said_we_did"][0]["asked"] == 2
        [round_] = body["experiment"]["rounds"]
        estimates = {(e["outcome"], e["group"]): e for e in round_["estimates"]}
        assert estimates["complained", "all"]["held_out"]["units"] == 300
        assert estimates["complained", "all"]["low"] < estimates["complained", "all"]["high"] < 0
        uplift = client.get("/v1/metrics/uplift", params=query, headers={"Authorization": f"Bearer {keys['metrics']}"})
        assert uplift.status_code == 200, uplift.text
        assert uplift.json()["rounds"][0]["treated"] == 300
        for who in ("ana", "events"):
            refused = client.get("/v1/metrics/report", headers={"Authorization": f"Bearer {keys[who]}"})
            assert refused.status_code == 403, refused.text
        backwards = {"since": query["until"], "until": query["since"]}
        bad = client.get("/v1/metrics/uplift", params=backwards, headers={"Authorization": f"Bearer {keys['boss']}"})
        assert bad.status_code == 422
        assert bad.json()["field"] == "since"


def test_an_outcome_naming_an_unknown_event_type_fails_its_check(db: Database, tmp_path: Path) -> None:
    sample(db)
    outcomes = tmp_path / "outcomes.yaml"
    outcomes.write_text(
        "outcomes:\n  - {id: bought, title: Bought, kind: happened, events: [order.plaecd], within: 9d, better: higher}"
    )
    boss = staff_key(db, "boss", Role.MANAGER)
    settings = settings_for(db, rule_packs=("shop",), outcomes_file=outcomes)
    with TestClient(create_app(settings, db)) as client:
        refused = client.get("/v1/metrics/uplift", headers={"Authorization": f"Bearer {boss}"})
        assert refused.status_code == 422, refused.text
        assert refused.json()["field"] == "outcomes.bought.events"
        assert "order.plaecd" in refused.json()["reason"]


def test_amends_report_writes_the_file_and_refuses_bad_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = Database(f"sqlite:///{tmp_path / 'amends.db'}")  # once, on the embedded default: the figures are the
    upgrade(db)  # same on both engines (the tests above)
    sample(db)
    db.dispose()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AMENDS_DATABASE_URL", db.url.render_as_string(hide_password=False))
    monkeypatch.setenv("AMENDS_SECRET_KEY", SECRET)
    monkeypatch.setenv("AMENDS_RULE_PACKS", "shop")
    runner = CliRunner()
    for format in ("html", "pdf", "md"):
        out = tmp_path / f"r.{format}"
        done = runner.invoke(cli, ["report", "--from", "2026-01-01", "--to", "2026-03-01", "--format", format,
                                   "--out", str(out)])  # fmt: skip
        assert done.exit_code == 0, done.output
        assert out.stat().st_size > 1_000
    assert (tmp_path / "r.pdf").read_bytes().startswith(b"%PDF")
    assert "What recovery does" in (tmp_path / "r.html").read_text()
    bad = runner.invoke(cli, ["report", "--format", "docx"])
    assert bad.exit_code == 2
    assert "--format" in bad.output
    backwards = runner.invoke(cli, ["report", "--from", "2026-03-01", "--to", "2026-01-01"])
    assert backwards.exit_code == 2
    assert "--from" in backwards.output
    assert datetime.now(UTC) > START
    assert shipped_outcomes(("shop",))
