"""The Olist importer (events/olist.py, `amends import olist DIR`) on a small fixture in the published format:
quoted headers and values, a review whose comment spans two lines, a canceled order, an order still on its way."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from amends.cli import app as cli
from amends.errors import InvalidInput
from amends.events.olist import olist_events
from amends.store import Database, upgrade
from tests.conftest import SECRET, count_rows

FIXTURE = Path(__file__).parent / "fixtures" / "olist"
PERSON = "7c396fd4830fd04220f754e42b4e5bff"  # two orders under two per-order customer ids


def test_orders_and_reviews_become_a_persons_events_in_utc() -> None:
    events = list(olist_events(FIXTURE))
    assert Counter(e["type"] for e in events) == {
        "order.placed": 4, "order.shipped": 3, "order.delivered": 2, "feedback.rated": 2}  # fmt: skip
    first = next(e for e in events if e["id"] == "e481f51cbdc54678b7cc49136f2d6af7/placed")
    assert first["subject"] == PERSON
    assert first["time"] == "2017-10-02T13:56:33Z"  # São Paulo, three hours behind UTC
    assert first["data"] == {
        "order_id": "e481f51cbdc54678b7cc49136f2d6af7", "status": "delivered", "total": 38.71, "items": 1,
        "promised_by": "2017-10-19T01:59:59Z",  # the end of the estimated day in São Paulo, then on summer time
    }  # fmt: skip
    assert {e["subject"] for e in events if e["data"].get("order_id") == "47770eb9100c2d0c44946d9cf07ec65d"} == {PERSON}
    on_its_way = [e["type"] for e in events if e["id"].startswith("47770eb9100c2d0c44946d9cf07ec65d/")]
    assert on_its_way == ["order.placed", "order.shipped"]
    assert [e["type"] for e in events if e["id"].startswith("949d5b44")] == ["order.placed"]  # canceled
    late = next(e for e in events if e["type"] == "feedback.rated" and e["data"]["rating"] == 1)
    assert late["subject"] == "af07308b275d755c9edb36a90c618231"
    assert late["time"] == "2018-08-08T21:37:50Z"
    assert all("Atrasou" not in str(e["data"]) for e in events)  # the words of reviews are left out
    assert [e["id"] for e in events] == [e["id"] for e in olist_events(FIXTURE)]  # stable ids


def test_a_missing_file_or_column_or_a_bad_time_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no such folder"):
        list(olist_events(tmp_path / "nothing"))
    folder = tmp_path / "olist"
    shutil.copytree(FIXTURE, folder)
    (folder / "olist_order_items_dataset.csv").unlink()
    with pytest.raises(InvalidInput, match=r"olist_order_items_dataset\.csv is missing"):
        list(olist_events(folder))
    shutil.copy(FIXTURE / "olist_order_items_dataset.csv", folder)
    reviews = folder / "olist_order_reviews_dataset.csv"
    reviews.write_text(reviews.read_text().replace('"review_score",', '"score",', 1))
    with pytest.raises(InvalidInput) as refused:
        list(olist_events(folder))
    assert refused.value.field == "olist_order_reviews_dataset.csv"
    assert "review_score" in refused.value.reason
    shutil.copy(FIXTURE / "olist_order_reviews_dataset.csv", folder)
    orders = folder / "olist_orders_dataset.csv"
    orders.write_text(orders.read_text().replace("2017-10-02 10:56:33", "02/10/2017 10:56"))
    with pytest.raises(InvalidInput, match=r"order_purchase_timestamp: '02/10/2017 10:56' is not a time"):
        list(olist_events(folder))


def test_the_command_stores_the_events_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = Database(f"sqlite:///{tmp_path / 'amends.db'}")
    upgrade(db)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AMENDS_DATABASE_URL", db.url.render_as_string(hide_password=False))
    monkeypatch.setenv("AMENDS_SECRET_KEY", SECRET)
    runner = CliRunner()
    done = runner.invoke(cli, ["import", "olist", str(FIXTURE)])
    assert done.exit_code == 0, done.output
    assert "Stored 11 events (0 already stored, 0 rejected)" in done.output
    again = runner.invoke(cli, ["import", "olist", str(FIXTURE)])
    assert "Stored 0 events (11 already stored" in again.output
    assert count_rows(db, "events") == 11
    missing = runner.invoke(cli, ["import", "olist", str(tmp_path / "nothing")])
    assert missing.exit_code != 0
    db.dispose()
