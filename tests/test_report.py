"""The report, on both engines: written as HTML (charts inline), PDF (charts as images) and Markdown from the same
figures; the same figures as JSON under /v1/metrics for those allowed; an empty period says so; people's text is
escaped; bad input is refused naming the field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from amends.access import Scope
from amends.cli import app as cli
from amends.insights.experiment import Verdict
from amends.insights.outcomes import Kind, shipped_outcomes
from amends.insights.render import render
from amends.insights.report import Report, build_report
from amends.recover.roles import Role
from amends.store import Database, tables, upgrade
from amends.web import create_app
from amends.web.api.metrics import ReportOut, UpliftOut
from tests.conftest import SECRET, new_key, settings_for
from tests.test_experiment import OUTCOMES, START, world
from tests.test_recovery import staff_key

AS_OF = START + timedelta(days=200)
XSS = '<script>alert("x")</script> & evening slots'


class Maybe(NamedTuple):
    """A value that may be null."""

    of: object


# The JSON of /v1/metrics, field by field (docs/insights.md): a field dropped, renamed or typed otherwise fails.
ARM = {"units": "integer", "mean": Maybe("number")}
ESTIMATE = {
    "outcome": "string",
    "title": "string",
    "kind": {kind.value for kind in Kind},
    "better": {"higher", "lower"},
    "group": "string",
    "treated": ARM,
    "held_out": ARM,
    **dict.fromkeys(("difference", "low", "high", "relative", "relative_low", "relative_high"), Maybe("number")),
    "method": Maybe("string"),
    **dict.fromkeys(("minimum_detectable_effect", "cuped_variance_removed", "p_value"), Maybe("number")),
    "verdict": {Verdict.BETTER, Verdict.WORSE, Verdict.NO_DIFFERENCE, Verdict.TOO_SMALL, Verdict.INTERIM,
                Verdict.NO_DATA},
}  # fmt: skip
ROUND = {
    "period": "string",
    "round": "integer",
    "starts": "date-time",
    "ends": "date-time",
    "final": "boolean",
    **dict.fromkeys(("treated", "held_out", "waiting"), "integer"),
    "remedy_spend": "number",
    "retained_spend": Maybe({"estimate": "number", "low": Maybe("number"), "high": Maybe("number")}),
    "estimates": [ESTIMATE],
}
CASES = {
    **dict.fromkeys(("cases", "proactive", "reactive"), "integer"),
    "proactive_share": Maybe("number"),
    "resolved": "integer",
    **dict.fromkeys(("median_hours_to_first_contact", "median_hours_to_resolution", "first_contact_resolution_rate",
                     "mean_contacts", "mean_handoffs"), Maybe("number")),
    "remedy_cost_total": "string",  # money is text: "12.50", never a float
}  # fmt: skip
REPORT = {
    **dict.fromkeys(("since", "until", "generated_at"), "date-time"),
    "empty": "boolean",
    "currency": "string",
    **dict.fromkeys(("incidents", "feedback"), "integer"),
    "cases": CASES,
    "weeks": [{"week": "string", "starts": "date-time", **CASES}],
    "responses": [{"week": "string", "received": "integer", "answered": "integer", "response_rate": Maybe("number"),
                   "median_hours": Maybe("number"), "within_sla": Maybe("number"), "overdue": "integer"}],
    "ratings": [{"week": "string", "csat": Maybe("number"), "csat_answers": "integer", "nps": Maybe("number"),
                 "nps_answers": "integer"}],
    "remedy_spend_by_kind": [{"kind": "string", "cash_value": "string"}],
    "incidents_by_rule": [{"rule": "string", "incidents": "integer"}],
    "experiment": {"as_of": "date-time", "horizon_days": "number",
                   "periods": {"*": {"plan": {"*": "any"}, "started_at": "date-time"}}, "rounds": [ROUND]},
    "you_said_we_did": [{"title": "string", "note": Maybe("string"), "done_at": "date-time", "asked": "integer",
                         "told": "integer"}],
}  # fmt: skip
UPLIFT = {"as_of": "date-time", "horizon_days": "number", "empty": "boolean", "rounds": [ROUND]}


def shape(spec: dict[str, Any], schema: dict[str, Any]) -> object:
    """An OpenAPI schema in brief: an object as {key: shape} (every key always there), a mapping as {"*": shape},
    a list as [shape], an enum as the set of its values, a value as its type ("date-time" for an instant)."""
    if "$ref" in schema:
        return shape(spec, spec["components"]["schemas"][schema["$ref"].removeprefix("#/components/schemas/")])
    if "anyOf" in schema:
        assert {"type": "null"} in schema["anyOf"], schema
        [other] = [s for s in schema["anyOf"] if s != {"type": "null"}]
        return Maybe(shape(spec, other))
    if "enum" in schema:
        return set(schema["enum"])
    if "properties" in schema:
        assert set(schema["required"]) == set(schema["properties"]), schema["title"]
        return {key: shape(spec, value) for key, value in schema["properties"].items()}
    if schema["type"] == "object":
        values = schema["additionalProperties"]
        return {"*": "any" if values is True else shape(spec, values)}
    if schema["type"] == "array":
        return [shape(spec, schema["items"])]
    return schema.get("format", schema["type"])


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
                            currency="EUR")  # fmt: skip


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


def test_a_round_whose_windows_are_all_open_says_when_the_first_figures_come(db: Database) -> None:
    sample(db)  # 600 incidents, one an hour from START: the last fails 25 days later
    with db.unit_of_work() as uow:
        report = build_report(uow, since=START, until=START + timedelta(days=60), now=START + timedelta(days=29),
                              outcomes=OUTCOMES, horizon=timedelta(days=60), currency="EUR")  # fmt: skip
    [round_] = report.experiment.rounds
    assert round_.waiting == 600
    first = min(outcome.within for outcome in OUTCOMES)
    for format in ("html", "md"):
        text = render(report, format).decode()  # type: ignore[arg-type]
        assert "No outcome can be measured yet" in text
        assert f"{START + first:%Y-%m-%d}" in text
        assert "no data" not in text  # not a table of empty rows


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


def test_the_json_is_described_field_by_field_and_is_what_its_model_writes(db: Database) -> None:
    sample(db)
    key = new_key(db, "bi", [Scope.METRICS_READ])
    settings = settings_for(db, rule_packs=("shop",), holdout_horizon="60d")
    with TestClient(create_app(settings, db), headers={"Authorization": f"Bearer {key}"}) as client:
        spec = client.get("/openapi.json").json()
        query = {"since": START.isoformat(), "until": (START + timedelta(days=60)).isoformat()}
        for path, model, expected in (
            ("/v1/metrics/report", ReportOut, REPORT),
            ("/v1/metrics/uplift", UpliftOut, UPLIFT),
        ):
            schema = spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
            assert schema == {"$ref": f"#/components/schemas/{model.__name__}"}  # a named model, not a bare object
            assert shape(spec, schema) == expected, path
            got = client.get(path, params=query)
            assert got.status_code == 200, got.text
            # Every key of the response is the model's, each value of its type, written as the model writes it.
            assert model.model_validate_json(got.content, strict=True).model_dump_json() == got.text


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
