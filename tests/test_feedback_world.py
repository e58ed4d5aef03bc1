"""Feedback end to end on the sample world, both engines, with the shipped triage: a car service's finished
jobs (its invoices) get feedback links sent to their customers; answers on the page land, are triaged and
routed (a complaint to a reactive case, a suggestion to the tracker); each is answered or waits visibly in the
unanswered queue; and a suggestion done tells the customer who asked."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from amends.access import Scope
from amends.feedback.asking import Asking
from amends.recover.roles import Role
from amends.store import Database, tables
from amends.web import create_app
from amends.world import generate_world
from tests.conftest import new_key, settings_for
from tests.test_recovery import staff_key


def test_invoices_in_the_sample_world_get_links_and_answers_are_triaged_routed_and_answered(db: Database) -> None:
    now = datetime.now(UTC)
    keys = {
        "advisor": staff_key(db, "advisor", Role.AGENT, "workshop"),
        "boss": staff_key(db, "boss", Role.MANAGER, "workshop"),
        "garage": new_key(db, "garage", [Scope.EVENTS_WRITE]),
    }
    settings = settings_for(
        db,
        rule_packs=("car_service",),
        detect_clock="events",
        company_name="Example Garage",
        public_url="http://testserver",
        quiet_hours="",
        feedback_request_event_types=("service.completed",),
        feedback_cap_per_month=0,
        business_hours="Mon-Sun 00:00-23:59",
        feedback_page_rate_limit="100/minute",
    )
    # A recent world: links are only sent about what happened within their lifetime.
    start = (now - timedelta(days=12)).replace(microsecond=0)
    events = list(generate_world("car_service", customers=60, days=10, seed=8, start=start))
    completed = [e for e in events if e["type"] == "service.completed"]
    emails = {e["subject"]: e["data"].get("email") for e in events if e["type"] == "customer.profile"}
    app = create_app(settings, db)
    with TestClient(app) as client:

        def call(method: str, path: str, who: str = "advisor", **body: Any) -> Any:
            response = client.request(
                method, path, json=body if method != "GET" else None, headers={"Authorization": f"Bearer {keys[who]}"}
            )
            assert response.status_code in (200, 201), response.text
            return response.json()

        for first in range(0, len(events), 2000):
            posted = client.post(
                "/v1/events", json=events[first : first + 2000], headers={"Authorization": f"Bearer {keys['garage']}"}
            )
            assert posted.status_code == 200, posted.text
        asked = Asking.from_settings(db, settings, app.state.outreach).tick(now + timedelta(minutes=2))

        with db.unit_of_work() as uow:
            requests = uow.execute(sa.select(tables.feedback_requests).order_by(tables.feedback_requests.c.id)).all()
            links = uow.execute(
                sa.select(tables.messages.c.customer_id, tables.messages.c.recipient, tables.messages.c.text).where(
                    tables.messages.c.kind == "feedback_request"
                )
            ).all()
        assert asked.created == len(requests) == len(completed)  # every invoice is asked about, once
        assert Counter(r.customer_id for r in requests) == Counter(e["subject"] for e in completed)
        assert {link.customer_id for link in links} == {r.customer_id for r in requests if emails[r.customer_id]}
        assert all(link.recipient == emails[link.customer_id] for link in links)
        assert all("http://testserver/f/" in link.text for link in links)

        # Two customers answer on the page their link opens.
        unhappy, suggesting = requests[0], requests[1]
        late = "The car was not ready when you promised and nobody called me."
        online = "It would be great if you offered online booking."
        for request, answer in (
            (unhappy, {"liked": "", "disliked": late, "rating": "1"}),
            (suggesting, {"liked": "Friendly staff.", "disliked": online, "rating": "4"}),
        ):
            path = call("GET", f"/v1/feedback-requests/{request.id}")["url"].removeprefix("http://testserver")
            page = client.get(path)
            assert page.status_code == 200
            assert "What don" in page.text
            done = client.post(path, data=answer, follow_redirects=False)
            assert done.status_code == 303, done.text

        inbox = {f["customer_id"]: f for f in call("GET", "/v1/feedback")["feedback"]}
        complaint = inbox[unhappy.customer_id]
        assert complaint["channel"] == "page"
        assert complaint["triage"]["sentiment"] == "negative"
        assert complaint["triage"]["reasons"]["sentiment"]  # and why
        assert complaint["route"] == "case"
        case = call("GET", f"/v1/cases/{complaint['case_id']}", who="boss")
        assert case["case"]["customer_id"] == unhappy.customer_id
        idea = inbox[suggesting.customer_id]
        assert idea["route"] == "suggestion"

        # A customer who changes their answer within the day is heard again: now let down, they get a case.
        third = requests[2]
        path = call("GET", f"/v1/feedback-requests/{third.id}")["url"].removeprefix("http://testserver")
        assert client.post(path, data={"liked": "Fine.", "rating": "3"}, follow_redirects=False).status_code == 303
        first_answer = {f["customer_id"]: f for f in call("GET", "/v1/feedback")["feedback"]}[third.customer_id]
        assert first_answer["route"] in ("none", "praise")
        assert first_answer["case_id"] is None
        edited = {"liked": "", "disliked": "The brakes squeak again; it was not fixed.", "rating": "1"}
        assert client.post(path, data=edited, follow_redirects=False).status_code == 303
        changed = call("GET", f"/v1/feedback/{first_answer['id']}")
        assert changed["text"] == "The brakes squeak again; it was not fixed."
        assert (changed["triage"]["sentiment"], changed["route"]) == ("negative", "case")
        assert changed["case_id"] is not None
        call("POST", f"/v1/feedback/{changed['id']}/responses", text="We will fix it today, free of charge.")

        # Every one is answered, or waits in the queue with its due time.
        queue = [f["id"] for f in call("GET", "/v1/feedback?unanswered=true")["feedback"]]
        assert sorted(queue) == sorted([complaint["id"], idea["id"]])
        answered = call(
            "POST", f"/v1/feedback/{complaint['id']}/responses", text="We are sorry. Your advisor will call you today."
        )
        assert answered["responded_at"] is not None
        [waiting] = call("GET", "/v1/feedback?unanswered=true")["feedback"]
        assert waiting["id"] == idea["id"]
        assert waiting["due_at"] is not None
        assert waiting["overdue"] is False

        # The suggestion is done: the customer who asked is told.
        moved = call(
            "PATCH",
            f"/v1/suggestions/{idea['suggestion_id']}",
            who="boss",
            status="done",
            note="You can now book online at garage.example.com.",
        )
        assert (moved["askers"], moved["notified"]) == (1, 1)
        with db.unit_of_work() as uow:
            told = uow.execute(
                sa.select(tables.messages.c.text).where(
                    tables.messages.c.customer_id == suggesting.customer_id, tables.messages.c.kind == "reply"
                )
            ).scalars()
            assert any("book online" in text for text in told)
