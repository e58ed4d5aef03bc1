"""The sample world end to end, on both engines: an airline's events go in through the API, detection opens
long-delay cases, and one case writes to its customer as the world's profile says: the apology and the remedy
confirmation by email at once, the follow-up by email when its step falls due, the thank-you as a
hand-written card whose PDF carries the customer's name and address. A real SMTP server receives the mail."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pypdf
import pytest
from fastapi.testclient import TestClient

from amends.access import Scope
from amends.outreach.cards import CardChannel, card_pdf, list_card_tasks
from amends.outreach.delivery import Delivery
from amends.recover.roles import Role
from amends.store import Database
from amends.web import create_app
from amends.world import generate_world
from tests.conftest import new_key, settings_for
from tests.test_recovery import staff_key
from tests.test_smtp_channel import Mailbox, Server, channel_for


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server(Mailbox())
    running.start()
    yield running
    running.stop()


def test_a_case_from_the_sample_world_writes_to_its_customer_on_schedule(db: Database, server: Server) -> None:
    keys = {
        "ana": staff_key(db, "ana", Role.AGENT, "air"),
        "integration": new_key(db, "integration", [Scope.EVENTS_WRITE]),
    }
    settings = settings_for(
        db,
        rule_packs=("airline",),
        detect_clock="events",
        detect_allowed_lateness="0s",
        assign_teams={"air-*": "air"},
        company_name="Example Air",
        public_url="https://care.example.com",
        quiet_hours="",  # the test delivers at the due times, whatever the hour in the customer's zone
    )
    events = list(generate_world("airline", customers=400, days=45, seed=4))
    profiles = {e["subject"]: e["data"] for e in events if e["type"] == "customer.profile"}
    app = create_app(settings, db)
    with TestClient(app) as client:

        def call(method: str, path: str, **body: Any) -> Any:
            response = client.request(
                method,
                path,
                json=body if method == "POST" else None,
                headers={"Authorization": f"Bearer {keys['ana']}"},
            )
            assert response.status_code in (200, 201), response.text
            return response.json()

        for start in range(0, len(events), 2000):
            response = client.post(
                "/v1/events",
                json=events[start : start + 2000],
                headers={"Authorization": f"Bearer {keys['integration']}"},
            )
            assert response.status_code == 200, response.text
        app.state.recovery.tick()

        # A long-delay case of a customer the world gave an email and an address and no wish for texts or cards,
        # in a script the card's font has (it marks the others, as test_cards shows).
        cases = [
            case for case in call("GET", "/v1/cases?status=open&limit=500")["cases"] if case["playbook"] == "long-delay"
        ]
        reachable = [
            case
            for case in cases
            if {"email", "address"} <= set(profile := profiles[case["customer_id"]])
            and "channel" not in profile
            and not profile["language"].startswith("ja")
        ]
        assert reachable, f"the world made no long-delay case to write about ({len(cases)} cases)"
        case = reachable[0]
        customer = profiles[case["customer_id"]]
        case_id = case["id"]
        draft = call("GET", f"/v1/cases/{case_id}")["apology"]
        assert draft["channel"] == "email"
        assert draft["recipient"] == customer["email"]

        call("POST", f"/v1/cases/{case_id}/acknowledge")
        call("POST", f"/v1/cases/{case_id}/steps/empathise/complete")
        call("POST", f"/v1/cases/{case_id}/remedies", kind="miles", amount="6000")
        resolved = call("POST", f"/v1/cases/{case_id}/resolve", resolution="6,000 miles and an apology")

    scheduled = {m["kind"]: m for m in resolved["messages"]}
    assert set(scheduled) == {"apology", "remedy", "follow_up", "thank_you"}
    assert scheduled["thank_you"]["channel"] == "card"
    follow_up_at = datetime.fromisoformat(scheduled["follow_up"]["not_before"])
    thank_you_at = datetime.fromisoformat(scheduled["thank_you"]["not_before"])
    assert follow_up_at < thank_you_at

    delivery = Delivery(
        db,
        {"email": channel_for(server), "card": CardChannel(db)},
        batch=10,
        lease=timedelta(minutes=5),
        max_attempts=3,
        backoff_base=timedelta(minutes=1),
        backoff_cap=timedelta(hours=1),
    )
    now = datetime.now(UTC)
    assert len(delivery.tick(now=now).sent) == 2  # the apology and the remedy; the rest wait for their days
    assert [mail["To"] for mail in server.mailbox.received] == [customer["email"]] * 2
    assert len(delivery.tick(now=follow_up_at + timedelta(minutes=1)).sent) == 1
    assert len(server.mailbox.received) == 3
    assert len(delivery.tick(now=thank_you_at + timedelta(minutes=1)).sent) == 1
    assert delivery.tick(now=thank_you_at + timedelta(days=30)).sent == ()  # each went once

    apology, remedy, follow_up = server.mailbox.received
    assert apology.get_body(("plain",)).get_content().split() == draft["text"].split()  # as drafted, word for word
    assert "6,000 miles" in remedy.get_body(("plain",)).get_content()
    assert str(follow_up["List-Unsubscribe"]).strip().startswith("<https://care.example.com/u/")

    with db.unit_of_work() as uow:
        (task,), _next = list_card_tasks(uow, state="all")
    assert task.case_id == case_id
    assert task.has_address
    pages = pypdf.PdfReader(io.BytesIO(card_pdf(task))).pages
    envelope = " ".join(" ".join(page.extract_text().split()) for page in pages)
    for line in (customer["name"], *customer["address"]):
        assert " ".join(line.split()) in envelope
