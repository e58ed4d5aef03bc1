"""Asking for feedback, on both engines: requests created for events of the configured types and for resolved
cases (sampled by a hash, capped per customer), their links sent through outreach under the contact policy,
signed links bound to one request, and the answer received on the page (see test_feedback_page.py for the
page itself)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from amends.errors import InvalidInput
from amends.events import Event
from amends.events.ledger import append_events
from amends.feedback.asking import Asking, answer_request
from amends.feedback.records import Scale
from amends.feedback.requests import (
    NoLongerEditable,
    create_request,
    event_interaction,
    get_request,
    is_sampled,
    page_answer,
    request_for_link,
)
from amends.feedback.service import FeedbackDesk
from amends.outreach.contact import opt_out
from amends.outreach.links import ExpiredLink, InvalidLink, Links
from amends.outreach.outbox import MessageKind, MessageStatus
from amends.outreach.service import Outreach
from amends.outreach.templates import TemplateSetError, parse_templates
from amends.recover.actors import SYSTEM
from amends.recover.service import Recovery
from amends.store import Database, tables
from tests.conftest import settings_for

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
SHOP = "https://shop.example"


def delivered(number: int, subject: str, *, days_ago: float = 1, kind: str = "order.delivered") -> Event:
    return Event(
        id=f"d-{number}",
        source=SHOP,
        type=kind,
        time=NOW - timedelta(days=days_ago),
        subject=subject,
        data={"order_id": f"O-{number:05d}", "carrier": "Parcelo"},
    )


def profile(subject: str, **data: Any) -> Event:
    fields = data or {"name": "Alex Doe", "email": f"{subject.lower()}@example.com", "language": "en"}
    return Event(
        id=f"p-{subject}", source="https://crm.example", type="customer.profile", time=NOW - timedelta(days=60),
        subject=subject, data=fields,
    )  # fmt: skip


def store(db: Database, *events: Event, received_at: datetime = NOW - timedelta(hours=1)) -> None:
    with db.unit_of_work(writes=True) as uow:
        append_events(uow, list(events), received_at=received_at)
        uow.commit()


@dataclass
class Setup:
    db: Database
    asking: Asking
    outreach: Outreach
    recovery: Recovery


def setup(db: Database, **overrides: object) -> Setup:
    chosen = {"feedback_request_event_types": "order.delivered,service.completed", "quiet_hours": "", **overrides}
    settings = settings_for(db, **chosen)
    recovery = Recovery.from_settings(db, settings)
    outreach = Outreach.from_settings(settings, recovery.policy)
    return Setup(db, Asking.from_settings(db, settings, outreach), outreach, recovery)


def rows(db: Database, table: sa.Table, *where: Any) -> list[Any]:
    with db.engine.connect() as connection:
        return list(connection.execute(sa.select(table).where(*where)).all())


# --- signed links ------------------------------------------------------------------------------------------


def test_a_feedback_link_opens_only_its_request_until_it_expires() -> None:
    links = Links("a-secret-that-is-long-enough-for-the-test-0123", "https://care.example.com")
    expires = NOW + timedelta(days=30)
    token = links.feedback_token(7, "event:shop|d-1", expires)
    link = links.request_of(token, now=NOW)
    assert link.request_id == 7
    assert link.is_for("event:shop|d-1")
    assert not link.is_for("event:shop|d-2")
    assert links.feedback_url(7, "event:shop|d-1", expires) == f"https://care.example.com/f/{token}"
    with pytest.raises(ExpiredLink):
        links.request_of(token, now=expires)
    tampered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    with pytest.raises(InvalidLink):
        links.request_of(tampered, now=NOW)
    other_server = Links("another-secret-that-is-long-enough-0123456789", "https://care.example.com")
    with pytest.raises(InvalidLink):
        other_server.request_of(token, now=NOW)
    # An unsubscribe token is no feedback token, though both are signed with the same key.
    with pytest.raises(InvalidLink):
        links.request_of(links.unsubscribe_token("C-1"), now=NOW)


def test_a_token_whose_request_id_names_another_interaction_opens_nothing(db: Database) -> None:
    s = setup(db)
    with db.unit_of_work(writes=True) as uow:
        first = create_request(uow, s.asking.policy, interaction="invoice:1", customer_id="C-1", now=NOW, language="en")
        second = create_request(
            uow, s.asking.policy, interaction="invoice:2", customer_id="C-2", now=NOW, language="en"
        )
        uow.commit()
    assert first.request is not None
    assert second.request is not None
    links = s.outreach.links
    # Signed by this server, for the first request's id but the second's interaction: refused.
    forged = links.feedback_token(first.request.id, "invoice:2", first.request.expires_at)
    with db.unit_of_work() as uow:
        with pytest.raises(Exception, match="no such feedback request"):
            request_for_link(uow, links.request_of(forged, now=NOW), now=NOW)
        good = links.feedback_token(second.request.id, "invoice:2", second.request.expires_at)
        assert request_for_link(uow, links.request_of(good, now=NOW), now=NOW).customer_id == "C-2"


# --- creating requests from events -------------------------------------------------------------------------


def test_each_event_of_a_configured_type_gets_one_request_and_its_link_goes_out(db: Database) -> None:
    s = setup(db)
    store(
        db,
        profile("C-1"),
        profile("C-2", name="Lena Schmidt", email="lena@example.de", language="de-DE"),
        delivered(1, "C-1"),
        delivered(2, "C-2"),
        delivered(3, "C-1", kind="order.placed"),  # not a type that is asked about
    )
    asked = s.asking.tick(NOW)
    assert (asked.created, asked.sent) == (2, 2)
    requests = {r.customer_id: r for r in rows(db, tables.feedback_requests)}
    assert set(requests) == {"C-1", "C-2"}
    assert requests["C-1"].interaction == event_interaction(SHOP, "d-1")
    assert requests["C-1"].reference == "O-00001"
    assert requests["C-1"].scale == "csat"
    assert requests["C-2"].language == "de-DE"
    assert requests["C-1"].expires_at == NOW + timedelta(days=30)
    messages = {m.customer_id: m for m in rows(db, tables.messages)}
    assert {m.kind for m in messages.values()} == {MessageKind.FEEDBACK_REQUEST.value}
    assert messages["C-2"].subject == "Was gefällt Ihnen? Was gefällt Ihnen nicht?"
    assert messages["C-1"].recipient == "c-1@example.com"
    assert "O-00001" in messages["C-1"].text
    assert requests["C-1"].message_id == messages["C-1"].id
    # The link in the message opens that request, and only it.
    url = next(word for word in messages["C-1"].text.split() if "/f/" in word)
    token = url.rsplit("/f/", 1)[1]
    with db.unit_of_work() as uow:
        opened = request_for_link(uow, s.outreach.links.request_of(token, now=NOW), now=NOW)
    assert opened.id == requests["C-1"].id
    # Asking again changes nothing: the cursor has passed, and the interaction has its request.
    assert s.asking.tick(NOW + timedelta(minutes=5)).created == 0
    assert len(rows(db, tables.messages)) == 2


def test_an_event_is_asked_about_once_it_has_settled_and_not_when_it_is_older_than_the_link(db: Database) -> None:
    s = setup(db)
    store(db, profile("C-1"), profile("C-2"), received_at=NOW - timedelta(days=1))
    store(db, delivered(1, "C-1", days_ago=0), received_at=NOW)
    store(db, delivered(2, "C-2", days_ago=45), received_at=NOW)  # history loaded today: too old to ask about
    assert s.asking.tick(NOW).created == 0  # received just now: a transaction with a lower seq may be open
    later = s.asking.tick(NOW + timedelta(minutes=2))
    assert (later.created, later.too_old) == (1, 1)
    assert [r.customer_id for r in rows(db, tables.feedback_requests)] == ["C-1"]


def test_the_sample_is_a_hash_of_the_interaction_and_the_cap_counts_30_days(db: Database) -> None:
    s = setup(db, feedback_sample_rate=0.5, feedback_cap_per_month=0)
    store(db, *(delivered(n, f"C-{n}") for n in range(40)))
    asked = s.asking.tick(NOW)
    expected = [n for n in range(40) if is_sampled(event_interaction(SHOP, f"d-{n}"), 0.5)]
    assert 8 <= len(expected) <= 32  # a fair hash: neither all nor none
    assert asked.created == len(expected)
    assert asked.not_sampled == 40 - len(expected)
    assert sorted(int(r.customer_id[2:]) for r in rows(db, tables.feedback_requests)) == expected

    capped = setup(db, feedback_cap_per_month=2)
    store(db, *(delivered(100 + n, "C-many", days_ago=3 - n * 0.1) for n in range(4)))
    with db.unit_of_work(writes=True) as uow:  # an earlier request, 31 days ago, no longer counts
        create_request(
            uow, capped.asking.policy, interaction="old", customer_id="C-many", now=NOW - timedelta(days=31),
            language="en",
        )  # fmt: skip
        uow.commit()
    result = capped.asking.tick(NOW)
    assert (result.created, result.capped) == (2, 2)
    assert len(rows(db, tables.feedback_requests, tables.feedback_requests.c.customer_id == "C-many")) == 3


def test_an_opted_out_customer_gets_a_request_but_its_message_is_withheld(db: Database) -> None:
    s = setup(db)
    store(db, profile("C-1"), delivered(1, "C-1"))
    with db.unit_of_work(writes=True) as uow:
        opt_out(uow, "C-1", source="link", actor=SYSTEM, now=NOW - timedelta(days=1))
        uow.commit()
    s.asking.tick(NOW)
    [message] = rows(db, tables.messages)
    assert message.status == MessageStatus.CANCELLED.value
    assert "opted out" in message.note
    assert len(rows(db, tables.feedback_requests)) == 1  # the link can still be printed on an invoice


def test_a_customer_likely_to_answer_badly_is_asked_like_everyone_else(db: Database) -> None:
    s = setup(db)
    store(db, profile("C-1"), profile("C-2"))
    with db.unit_of_work(writes=True) as uow:  # C-1 complained: an open reactive case
        s.recovery.intake.file_complaint(
            uow, source="helpdesk", external_id="t-1", customer_id="C-1", channel="email",
            text="The parcel arrived crushed and nobody answers.", reference=None, received_at=NOW - timedelta(days=2),
            actor=SYSTEM, now=NOW - timedelta(days=2),
        )  # fmt: skip
        uow.commit()
    store(db, delivered(1, "C-1"), delivered(2, "C-2"))
    assert s.asking.tick(NOW).created == 2


def test_a_resolved_case_gets_a_request_when_configured(db: Database) -> None:
    s = setup(db, feedback_request_resolved_cases=True, feedback_request_event_types="")
    store(db, profile("C-1"))
    with db.unit_of_work(writes=True) as uow:
        complaint, _new = s.recovery.intake.file_complaint(
            uow, source="helpdesk", external_id="t-1", customer_id="C-1", channel="email", text="Late again.",
            reference=None, received_at=NOW - timedelta(days=3), actor=SYSTEM, now=NOW - timedelta(days=3),
        )  # fmt: skip
        uow.commit()
    assert s.asking.tick(NOW).created == 0  # still open
    cases = tables.cases
    with db.engine.begin() as connection:  # resolved an hour ago (resolving itself is tested in test_recovery)
        connection.execute(
            sa.update(cases)
            .where(cases.c.id == complaint.case_id)
            .values(status="resolved", resolved_at=NOW - timedelta(hours=1), resolution="Refunded.")
        )
    asked = s.asking.tick(NOW)
    assert (asked.created, asked.sent) == (1, 1)
    [request] = rows(db, tables.feedback_requests)
    assert (request.interaction, request.case_id) == (f"case:{complaint.case_id}", complaint.case_id)
    assert s.asking.tick(NOW + timedelta(minutes=1)).created == 0


# --- the answer ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Labels:
    spam: bool
    spam_score: float
    sentiment: str
    sentiment_score: float
    topic: str | None
    urgency: str
    model: str


class WordLabeller:
    """A deterministic stand-in for triage (feedback/triage is tested on its own): 'bad' is negative."""

    def triage_one(self, text: str) -> _Labels:
        negative = "bad" in text.lower()
        return _Labels(False, 0.0, "negative" if negative else "positive", -0.8 if negative else 0.8, None, "normal",
                       "words")  # fmt: skip


def desk_for(db: Database, s: Setup) -> FeedbackDesk:
    settings = settings_for(db)
    return FeedbackDesk.from_settings(settings, triage=WordLabeller(), intake=s.recovery.intake, outreach=s.outreach)


def test_one_answer_per_request_changed_within_a_day_and_refused_after(db: Database) -> None:
    s = setup(db)
    desk = desk_for(db, s)
    with db.unit_of_work(writes=True) as uow:
        created = create_request(uow, s.asking.policy, interaction="invoice:9", customer_id="C-1", now=NOW,
                                 language="en")  # fmt: skip
        assert created.request is not None
        request = created.request
        answer, first = answer_request(uow, request, liked="Quick", disliked=None, rating=4, desk=desk, now=NOW)
        uow.commit()
    assert first
    assert (answer.channel.value, answer.request_id, answer.scale) == ("page", request.id, Scale.CSAT)
    assert answer.editable_until == NOW + timedelta(days=1)
    with db.unit_of_work(writes=True) as uow:
        edited, first = answer_request(
            uow,
            request,
            liked="Quick",
            disliked="The invoice was wrong",
            rating=3,
            desk=desk,
            now=NOW + timedelta(hours=5),
        )
        uow.commit()
    assert not first
    assert (edited.id, edited.rating, edited.disliked) == (answer.id, 3, "The invoice was wrong")
    assert "The invoice was wrong" in edited.text
    with db.unit_of_work(writes=True) as uow:
        with pytest.raises(NoLongerEditable):
            answer_request(
                uow, request, liked="x", disliked=None, rating=1, desk=desk, now=NOW + timedelta(days=1, seconds=1)
            )
        with pytest.raises(InvalidInput, match="csat ratings are 1 to 5"):
            answer_request(uow, request, liked=None, disliked=None, rating=9, desk=desk, now=NOW + timedelta(hours=6))
    assert len(rows(db, tables.feedback)) == 1
    with db.unit_of_work() as uow:
        stored = page_answer(uow, get_request(uow, request.id))
        assert stored is not None
        assert stored.rating == 3
        assert get_request(uow, request.id).answered_at == NOW


# --- templates ----------------------------------------------------------------------------------------------


def test_an_ask_feedback_template_cannot_read_the_case_and_others_cannot_read_the_request() -> None:
    generic = (
        "templates:\n"
        "  - {id: g1, step: empathise, language: en, subject: s, text: t}\n"
        "  - {id: g2, step: lessen_inconvenience, language: en, subject: s, text: t}\n"
        "  - {id: g3, step: manage_memory, language: en, subject: s, text: '{{ request.reference }}'}\n"
        "  - {id: g4, step: extend_experience, language: en, subject: s, text: t}\n"
        "  - {id: g5, step: ask_feedback, language: en, subject: s,\n"
        "     text: '{{ case.owner_name }} {{ links.feedback }}'}\n"
    )
    with pytest.raises(TemplateSetError) as caught:
        parse_templates([(None, generic)])
    reasons = " | ".join(problem.reason for problem in caught.value.problems)
    assert "request is None for steps other than ask_feedback" in reasons
    assert "a feedback request is about an interaction, not a case" in reasons
