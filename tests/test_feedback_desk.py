"""The feedback desk through the API, on both engines: feedback stored once, routed by its labels (spam
quarantined, negative to a reactive case, a suggestion to the tracker, praise to the staff it names), due
within the SLA, answered through outreach or recorded, corrected, and measured.

Routing is a function of the triage labels, so these tests give the labels themselves (`Labeller`, a fixed
table of words below); the triage that makes labels from text is tested in tests/test_triage.py."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from standardwebhooks.webhooks import Webhook

from amends.access import Scope
from amends.feedback.records import TRUNCATED, FeedbackChannel, FeedbackIn
from amends.feedback.service import FeedbackDesk
from amends.outreach.channels import channels_from_settings
from amends.outreach.contact import opt_out
from amends.outreach.delivery import Delivery
from amends.recover.actors import SYSTEM
from amends.recover.roles import Role
from amends.store import Database, tables
from amends.web import create_app
from tests.conftest import new_key, settings_for
from tests.test_recovery import profile, staff_key
from tests.test_webhook_channel import SECRET, Receiver
from tests.test_webhook_channel import Server as HookServer


@dataclass(frozen=True)
class Labels:
    spam: bool
    sentiment: str
    spam_score: float = 0.0
    sentiment_score: float = 0.0
    topic: str | None = None
    urgency: str = "normal"
    model: str = "test-labels"
    reasons: dict[str, list[str]] | None = None


class Labeller:
    """Labels by a fixed table of words, so that each test says which route it exercises."""

    def triage_one(self, text: str) -> Labels:
        lowered = text.lower()
        if "subscribe to my channel" in lowered:
            return Labels(spam=True, sentiment="neutral", spam_score=0.99, reasons={"spam": ["subscribe"]})
        if any(word in lowered for word in ("broken", "late", "never")):
            return Labels(spam=False, sentiment="negative", sentiment_score=-0.7, reasons={"sentiment": ["broken"]})
        if any(word in lowered for word in ("great", "thank", "lovely")):
            return Labels(spam=False, sentiment="positive", sentiment_score=0.8)
        return Labels(spam=False, sentiment="neutral")


@dataclass
class Desk:
    client: TestClient
    db: Database
    keys: dict[str, str]

    def as_(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def post(self, who: str = "site", **body: Any) -> dict[str, Any]:
        response = self.client.post("/v1/feedback", json=body, headers=self.as_(who))
        assert response.status_code in (200, 201), response.text
        answer: dict[str, Any] = response.json()
        return answer

    def get(self, path: str, who: str = "ana") -> Any:
        response = self.client.get(path, headers=self.as_(who))
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def desk(db: Database) -> Iterator[Desk]:
    keys = {
        "ana": staff_key(db, "ana", Role.AGENT, "shop"),
        "boss": staff_key(db, "boss", Role.MANAGER, "shop"),
        "site": new_key(db, "site", [Scope.FEEDBACK_WRITE]),
        "crm": new_key(db, "crm", [Scope.EVENTS_WRITE]),
    }
    with db.unit_of_work(writes=True) as uow:  # ana has a full name customers may use
        uow.execute(sa.update(tables.staff).where(tables.staff.c.id == "ana").values(name="Ana Lima"))
        uow.commit()
    settings = settings_for(db, company_name="Example Shop", quiet_hours="", business_hours="Mon-Sun 00:00-23:59")
    app = create_app(settings, db)
    app.state.feedback = FeedbackDesk.from_settings(
        settings, triage=Labeller(), intake=app.state.recovery.intake, outreach=app.state.outreach
    )
    with TestClient(app) as client:
        yield Desk(client, db, keys)


def customer(desk: Desk, customer_id: str = "C-1") -> None:
    event = profile(customer_id, name="Zoë Ñúñez", email=f"{customer_id.lower()}@example.com", language="en")
    response = desk.client.post("/v1/events", json=[event], headers=desk.as_("crm"))
    assert response.status_code == 200, response.text


def test_negative_feedback_opens_a_reactive_case_and_waits_for_an_answer_by_its_due_time(desk: Desk) -> None:
    customer(desk)
    posted = desk.post(source="mail", id="m-1", channel="email", customer="C-1", text="The parcel came broken.")
    assert posted["route"] == "case"
    assert posted["triage"]["sentiment"] == "negative"
    assert posted["triage"]["reasons"] == {"sentiment": ["broken"]}
    case = desk.get(f"/v1/cases/{posted['case_id']}", who="boss")
    assert case["case"]["origin"] == "reactive"
    assert case["case"]["customer_spoke_first"] is True
    due = datetime.fromisoformat(posted["due_at"])
    received = datetime.fromisoformat(posted["received_at"])
    assert timedelta(hours=23) < due - received <= timedelta(hours=24)  # one business day of 23:59
    again = desk.client.post(
        "/v1/feedback",
        json={"source": "mail", "id": "m-1", "channel": "email", "customer": "C-1", "text": "The parcel came broken."},
        headers=desk.as_("site"),
    )
    assert again.status_code == 200
    assert again.json()["id"] == posted["id"]  # the same (source, id): one feedback, one case
    with desk.db.unit_of_work() as uow:
        assert uow.execute(sa.select(sa.func.count()).select_from(tables.complaints)).scalar_one() == 1

    # A rating alone says enough: a detractor's NPS is negative feedback too.
    rated = desk.post(source="mail", id="m-2", channel="web_comment", customer="C-2", rating=3, scale="nps")
    assert (rated["route"], rated["triage"]["sentiment"], rated["triage"]["model"]) == ("case", "negative", "rating")
    queue = desk.get("/v1/feedback?unanswered=true")["feedback"]
    assert [item["id"] for item in queue] == [posted["id"], rated["id"]]  # the earliest due first


def test_spam_is_quarantined_never_routed_nor_answered_and_can_be_released(desk: Desk) -> None:
    spam = desk.post(
        source="blog", id="c-9", channel="web_comment", text="Great post! Subscribe to my channel http://x"
    )
    assert (spam["route"], spam["due_at"], spam["case_id"]) == ("spam", None, None)
    assert desk.get("/v1/feedback?unanswered=true")["feedback"] == []
    assert [f["id"] for f in desk.get("/v1/feedback?route=spam")["feedback"]] == [spam["id"]]
    refused = desk.client.post(f"/v1/feedback/{spam['id']}/responses", json={"text": "Thanks"}, headers=desk.as_("ana"))
    assert refused.status_code == 409
    released = desk.client.post(
        f"/v1/feedback/{spam['id']}/corrections", json={"field": "spam", "value": "false"}, headers=desk.as_("ana")
    ).json()
    assert released["triage"]["spam"] is False
    assert released["route"] == "none"
    assert released["due_at"] is not None  # not spam after all: it waits for an answer like the rest
    with desk.db.unit_of_work() as uow:
        corrections = uow.execute(sa.select(tables.triage_corrections)).all()
    assert [(c.field, c.old_value, c.new_value, c.by_id) for c in corrections] == [("spam", "true", "false", "ana")]


def test_a_suggestion_is_tracked_and_its_askers_are_told_when_it_is_done(desk: Desk) -> None:
    customer(desk, "C-1")
    customer(desk, "C-2")
    first = desk.post(
        source="mail", id="s-1", channel="email", customer="C-1", text="It would be great if you offered gift wrapping."
    )
    second = desk.post(source="mail", id="s-2", channel="email", customer="C-2", text="Please add gift wrap!")
    assert first["route"] == second["route"] == "suggestion"
    merged = desk.client.post(
        f"/v1/suggestions/{second['suggestion_id']}/merge",
        json={"into": first["suggestion_id"]},
        headers=desk.as_("boss"),
    )
    assert merged.status_code == 200, merged.text
    assert merged.json()["askers"] == 2
    path = f"/v1/suggestions/{first['suggestion_id']}"
    assert desk.client.patch(path, json={"status": "done"}, headers=desk.as_("ana")).status_code == 403  # managers
    no_note = desk.client.patch(path, json={"status": "done"}, headers=desk.as_("boss"))
    assert no_note.status_code == 422
    assert no_note.json()["field"] == "note"
    done = desk.client.patch(
        path, json={"status": "done", "note": "Gift wrapping is now offered at checkout."}, headers=desk.as_("boss")
    ).json()
    assert (done["status"], done["askers"], done["notified"]) == ("done", 2, 2)
    with desk.db.unit_of_work() as uow:
        told = uow.execute(sa.select(tables.messages).order_by(tables.messages.c.id)).all()
    assert [(m.customer_id, m.kind, m.recipient) for m in told] == [
        ("C-1", "reply", "c-1@example.com"),
        ("C-2", "reply", "c-2@example.com"),
    ]
    assert all("gift wrapping is now offered" in m.text.lower() for m in told)
    again = desk.client.patch(path, json={"status": "done"}, headers=desk.as_("boss")).json()
    assert again["notified"] == 2  # nobody is told twice
    with desk.db.unit_of_work() as uow:
        assert uow.execute(sa.select(sa.func.count()).select_from(tables.messages)).scalar_one() == 2


def test_praise_names_the_staff_member_and_an_answer_goes_by_email_or_is_recorded(desk: Desk) -> None:
    customer(desk)
    praise = desk.post(source="mail", id="p-1", channel="email", customer="C-1", text="Ana Lima was lovely, thank you!")
    assert (praise["route"], praise["staff_id"]) == ("praise", "ana")
    answered = desk.client.post(
        f"/v1/feedback/{praise['id']}/responses",
        json={"text": "Thank you, Zoë! Ana says hello."},
        headers=desk.as_("ana"),
    ).json()
    assert answered["responded_at"] is not None
    [response] = answered["responses"]
    assert (response["channel"], response["by_id"]) == ("email", "ana")
    with desk.db.unit_of_work() as uow:
        message = uow.execute(sa.select(tables.messages).where(tables.messages.c.id == response["message_id"])).one()
    assert (message.kind, message.recipient, message.note) == ("reply", "c-1@example.com", None)
    assert desk.get("/v1/feedback?unanswered=true")["feedback"] == []

    review = desk.post(source="reviews", id="r-1", channel="review", author="J.", text="Fine shop.")
    public = desk.client.post(
        f"/v1/feedback/{review['id']}/responses",
        json={"text": "Thanks, J.", "channel": "public"},
        headers=desk.as_("ana"),
    ).json()
    assert public["responses"][0]["message_id"] is None  # answered under the review, recorded here
    no_one = desk.client.post(f"/v1/feedback/{review['id']}/responses", json={"text": "Hi"}, headers=desk.as_("ana"))
    assert no_one.status_code == 422  # nobody to email: the review names no customer
    assert no_one.json()["field"] == "channel"

    measures = desk.get("/v1/feedback/measures")
    by_channel = {m["channel"]: m for m in measures}
    assert by_channel["email"]["answered"] == 1
    assert by_channel["email"]["response_rate"] == 1.0
    assert by_channel["email"]["within_sla"] == 1.0


def test_bad_feedback_is_refused_naming_the_field_and_long_or_hostile_text_is_kept_as_text(desk: Desk) -> None:
    for body, field in (
        ({"source": "s", "id": "1", "channel": "fax", "text": "hi"}, "channel"),
        ({"source": "s", "id": "2", "channel": "email", "rating": 11, "scale": "nps"}, "rating"),
        ({"source": "s", "id": "3", "channel": "email", "rating": 4}, "scale"),
        ({"source": "s", "id": "4", "channel": "email", "text": "   "}, "text"),
        (
            {"source": "s", "id": "5", "channel": "email", "text": "x", "received_at": "2999-01-01T00:00:00Z"},
            "received_at",
        ),
    ):
        refused = desk.client.post("/v1/feedback", json=body, headers=desk.as_("site"))
        assert refused.status_code == 422, body
        assert refused.json()["field"] == field, refused.json()
    with desk.db.unit_of_work() as uow:
        assert uow.execute(sa.select(sa.func.count()).select_from(tables.feedback)).scalar_one() == 0

    hostile = "<script>alert(1)</script>" + "a" * 20_000
    kept = desk.post(source="s", id="6", channel="web_comment", text=hostile)
    assert kept["text"].startswith("<script>alert(1)</script>")  # stored as text; pages escape it
    assert kept["text"].endswith(TRUNCATED)
    assert len(kept["text"]) == 10_000 + len(TRUNCATED)

    assert desk.client.get("/v1/feedback", headers=desk.as_("site")).status_code == 403  # posting is not reading
    assert desk.client.post("/v1/feedback", json={}, headers=desk.as_("crm")).status_code == 403


def test_feedback_past_its_due_time_alerts_staff_once_by_a_signed_webhook(db: Database) -> None:

    receiver = HookServer(Receiver())
    receiver.start()
    try:
        settings = settings_for(
            db,
            company_name="Example Shop",
            business_hours="Mon-Sun 00:00-23:59",
            alert_webhook_url=receiver.url,
            alert_webhook_secret=SECRET,
        )
        app = create_app(settings, db)
        desk = FeedbackDesk.from_settings(
            settings, triage=Labeller(), intake=app.state.recovery.intake, outreach=app.state.outreach
        )
        now = datetime.now(UTC)
        with db.unit_of_work(writes=True) as uow:
            late, _ = desk.receive(
                uow,
                FeedbackIn("mail|old", FeedbackChannel.EMAIL, now - timedelta(days=3), "C-7", text="It was late."),
                actor=SYSTEM,
                now=now,
            )
            fresh, _ = desk.receive(
                uow, FeedbackIn("mail|new", FeedbackChannel.EMAIL, now, "C-8", text="Fine."), actor=SYSTEM, now=now
            )
            assert desk.raise_alerts(uow, now=now) == 1  # only the one past due
            assert desk.raise_alerts(uow, now=now + timedelta(minutes=1)) == 0  # once
            opt_out(uow, "C-7", source="staff", actor=SYSTEM, now=now)  # stops messages to her, not alerts to staff
            uow.commit()
        delivery = Delivery.from_settings(db, settings)
        assert "alert" in channels_from_settings(settings)
        assert len(delivery.tick(now=now).sent) == 1
        [request] = receiver.receiver.requests
        payload = Webhook(SECRET).verify(request.body, request.headers)
        assert payload["type"] == "message.alert"
        assert f"Feedback {late.id} is overdue" in payload["data"]["subject"]
        assert fresh.id != late.id
        # Staff alerts do not count against the customer's cap, and an opt-out does not cancel them.
        with db.unit_of_work() as uow:
            kinds = uow.execute(sa.select(tables.messages.c.kind, tables.messages.c.customer_id)).all()
        assert [(k.kind, k.customer_id) for k in kinds] == [("alert", "C-7")]
    finally:
        receiver.stop()


def test_with_the_shipped_triage_a_known_customer_is_quarantined_only_for_sure_spam(db: Database) -> None:
    settings = settings_for(db, company_name="Example Shop", business_hours="Mon-Sun 00:00-23:59")
    app = create_app(settings, db)
    desk: FeedbackDesk = app.state.feedback  # the shipped fast triage
    now = datetime.now(UTC)
    # The SMS spam data taught the model that "reply", orders and numbers are promotions: spam, not surely spam.
    order = "Order 12345 - reply with the tracking code."
    with db.unit_of_work(writes=True) as uow:
        known, _ = desk.receive(
            uow, FeedbackIn("mail|1", FeedbackChannel.EMAIL, now, "C-1", text=order), actor=SYSTEM, now=now
        )
        anonymous, _ = desk.receive(
            uow, FeedbackIn("blog|1", FeedbackChannel.WEB_COMMENT, now, text=order), actor=SYSTEM, now=now
        )
        sure, _ = desk.receive(
            uow,
            FeedbackIn(
                "mail|2", FeedbackChannel.EMAIL, now, "C-2", text="WIN a FREE iPhone!!! Click http://bit.ly/x now"
            ),
            actor=SYSTEM,
            now=now,
        )
        uow.commit()
    assert known.spam_score == anonymous.spam_score > 0.5
    assert (known.spam, known.route.value) == (False, "none")
    assert "known customer" in known.reasons["spam_rule"]
    assert (anonymous.spam, anonymous.route.value) == (True, "spam")
    assert (sure.spam, sure.route.value) == (True, "spam")


def test_a_text_with_no_opinion_takes_its_sentiment_from_the_customers_rating(desk: Desk) -> None:
    low = desk.post(
        source="m", id="r-1", channel="email", customer="C-1", text="About my order.", rating=1, scale="csat"
    )
    assert (low["triage"]["sentiment"], low["route"]) == ("negative", "case")
    assert "rating" in low["triage"]["reasons"]["sentiment_rule"]
    high = desk.post(
        source="m", id="r-2", channel="email", customer="C-2", text="About my order.", rating=10, scale="nps"
    )
    assert (high["triage"]["sentiment"], high["route"]) == ("positive", "praise")
    middling = desk.post(
        source="m", id="r-3", channel="email", customer="C-3", text="About my order.", rating=3, scale="csat"
    )
    assert middling["triage"]["sentiment"] == "neutral"
    assert "sentiment_rule" not in middling["triage"]["reasons"]
    # An opinion in the words stands, whatever the rating.
    words = desk.post(
        source="m", id="r-4", channel="email", customer="C-4", text="It came broken.", rating=5, scale="csat"
    )
    assert words["triage"]["sentiment"] == "negative"


def test_very_long_negative_feedback_still_files_its_complaint(desk: Desk) -> None:
    long = "It came broken. " + "x" * 12_000
    posted = desk.post(
        source="m",
        id="long",
        channel="email",
        customer="C-1",
        text=long,
        liked=long,
        disliked=long,
        reference="O" * 600,
    )
    assert posted["route"] == "case"
    assert len(posted["text"]) > 20_000  # the feedback keeps all three parts, each cut at 10,000
    with desk.db.unit_of_work() as uow:
        complaint = uow.execute(sa.select(tables.complaints)).one()
    assert len(complaint.text) == 20_000
    assert len(complaint.reference) == 500
