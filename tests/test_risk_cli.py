"""`amends train` and `amends score` over a stored sample world, on each engine (detect/risk/service.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from amends.access import Scope
from amends.cli import app as cli
from amends.config import Settings
from amends.detect.risk.registry import latest_model
from amends.detect.risk.service import score_customers, train_model
from amends.detect.risk.spec import parse_spec, shipped_spec
from amends.errors import InvalidInput
from amends.events import Item, ingest_items
from amends.recover.roles import Role
from amends.store import Database, tables, upgrade
from amends.web import create_app
from amends.world import generate_world
from tests.conftest import SECRET, new_key, settings_for
from tests.test_recovery import staff_key

START = datetime(2026, 1, 5, tzinfo=UTC)
DAYS = 150


def stored_world(db: Database) -> datetime:
    """A shop's history stored as events (no detection): its end."""
    envelopes = list(generate_world("shop", customers=1_500, days=DAYS, seed=4, start=START))
    for first in range(0, len(envelopes), 10_000):
        ingest_items(db, [Item(e) for e in envelopes[first : first + 10_000]], received_at=START + timedelta(days=DAYS))
    return START + timedelta(days=DAYS)


def test_a_model_is_trained_stored_and_scores_customers_with_reasons(db: Database) -> None:
    end = stored_world(db)
    settings = Settings(database_url="sqlite://", secret_key=SECRET, rule_packs=("shop",))  # type: ignore[arg-type]
    model = train_model(db, settings, spec=shipped_spec(("shop",)), now=end, until=end)
    assert model.version == 1
    assert model.metrics["test"]["roc_auc"] > 0.6  # type: ignore[operator]
    with db.unit_of_work() as uow:
        stored = latest_model(uow)
    assert stored is not None
    assert stored.version == 1
    assert stored.features == model.features
    scored = score_customers(db, settings, now=end, at=end - timedelta(days=3))
    assert scored.recorded == len(scored.frame) > 1_000
    assert stored.score(scored.frame) == pytest.approx(scored.frame["score"].to_numpy())  # loaded as trained
    again = score_customers(db, settings, now=end, at=end - timedelta(days=3))
    assert again.recorded == 0  # a moment scored once by a version keeps its first score
    with db.unit_of_work() as uow:
        rows = uow.execute(sa.select(tables.risk_scores).order_by(tables.risk_scores.c.score.desc()).limit(1)).all()
    assert rows[0].reasons
    assert {"feature", "description", "value", "usual", "push"} <= set(rows[0].reasons[0])

    # Through the API: the versions with their evaluation, for managers; a customer's scores with their reasons.
    riskiest = rows[0].customer_id
    client = TestClient(create_app(settings_for(db, rule_packs=("shop",)), db))
    manager = {"Authorization": f"Bearer {staff_key(db, 'max', Role.MANAGER)}"}
    agent = {"Authorization": f"Bearer {staff_key(db, 'ana', Role.AGENT, 'web')}"}
    models = client.get("/v1/risk/models", headers=manager)
    assert models.status_code == 200, models.text
    [version] = models.json()["models"]
    assert version["version"] == 1
    assert version["test"]["roc_auc"] == pytest.approx(model.metrics["test"]["roc_auc"])
    assert version["label"] == "Complains, or rates 1 or 2, within 14 days"
    assert client.get("/v1/risk/models", headers=agent).status_code == 403
    integration = {"Authorization": f"Bearer {new_key(db, 'crm', [Scope.CUSTOMERS_READ])}"}
    assert client.get("/v1/risk/models", headers=integration).status_code == 403
    risk = client.get(f"/v1/customers/{riskiest}/risk", headers=integration)
    assert risk.status_code == 200, risk.text
    [score] = risk.json()["scores"]
    assert score["score"] == pytest.approx(rows[0].score)
    assert score["model"] == 1
    assert score["reasons"][0]["description"]
    assert client.get("/v1/customers/nobody/risk", headers=integration).json()["scores"] == []
    assert client.get(f"/v1/customers/{riskiest}/risk").status_code == 401


def test_scoring_with_a_model_whose_features_are_gone_from_the_data_refuses_and_names_them(db: Database) -> None:
    end = stored_world(db)
    settings = Settings(database_url="sqlite://", secret_key=SECRET, rule_packs=("shop",))  # type: ignore[arg-type]
    text = shipped_spec(("shop",)).text.replace("value: data.total", "value: data.amount")
    with pytest.raises(InvalidInput) as refused:
        train_model(db, settings, spec=parse_spec(None, text), now=end)
    assert "no order.placed event has data.amount" in str(refused.value)
    train_model(db, settings, spec=shipped_spec(("shop",)), now=end, until=end - timedelta(days=40))
    with db.unit_of_work(writes=True) as uow:  # the shop stops sending returns
        uow.execute(sa.delete(tables.events).where(tables.events.c.type == "order.returned"))
        uow.commit()
    with pytest.raises(InvalidInput) as refused:
        score_customers(db, settings, now=end)
    assert refused.value.field == "features"
    assert "features.returns_90d" in str(refused.value)
    assert "order.returned" in str(refused.value)


def test_the_commands_train_and_score(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = Database(f"sqlite:///{tmp_path / 'amends.db'}")
    upgrade(db)
    end = stored_world(db)
    db.dispose()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AMENDS_DATABASE_URL", db.url.render_as_string(hide_password=False))
    monkeypatch.setenv("AMENDS_SECRET_KEY", SECRET)
    monkeypatch.setenv("AMENDS_RULE_PACKS", "shop")
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()
    refused = runner.invoke(cli, ["score"])
    assert refused.exit_code != 0
    assert "amends train" in str(refused.exception)  # main() prints it and exits 1
    done = runner.invoke(cli, ["train", "--until", f"{end:%Y-%m-%d}"])
    assert done.exit_code == 0, done.output
    assert "Risk model version 1" in done.output
    assert "test (latest 15%)" in done.output
    assert "Strongest features:" in done.output
    scored = runner.invoke(cli, ["score", "--at", f"{end - timedelta(days=2):%Y-%m-%d}", "--top", "5"])
    assert scored.exit_code == 0, scored.output
    assert "The riskiest of" in scored.output
    assert "scores recorded" in scored.output
    bad = runner.invoke(cli, ["train", "--spec", str(tmp_path / "missing.yaml")])
    assert bad.exit_code != 0
