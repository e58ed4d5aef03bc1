"""Outreach wired to the case work, through the API on both engines: the apology, the remedy confirmation, the
follow-up and the thank-you are written into the outbox in the same transaction as the decision; the
contact policy (opt-out by a signed link, the cap, quiet hours, a customer who spoke first) decides when and
whether; a real SMTP server receives what the outbox delivers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from amends.access import Scope
from amends.errors import InvalidInput
from amends.outreach.contact import ContactPolicy, QuietHours, opt_out
from amends.outreach.outbox import ChannelName, Draft, MessageKind, deliver_due, enqueue
from amends.outreach.profiles import profile_from_data
from amends.recover.actors import SYSTEM
from amends.recover.roles import Role
from amends.store import Database, tables
from amends.web import create_app
from tests.conftest import new_key, settings_for
from tests.test_recovery import World as RecoveryWorld
from tests.test_recovery import arrival, booking, profile, staff_key
from tests.test_smtp_channel import Mailbox, Server, channel_for

NOW = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


# --- the profile ---------------------------------------------------------------------------------------


def test_a_profile_is_its_events_folded_the_latest_value_of_each_field_winning() -> None:
    folded = profile_from_data(
        "C-1",
        [
            {"name": "Zoë Ñúñez", "email": "zoe@example.com", "timezone": "Europe/Madrid", "language": "es"},
            {
                "email": "zoe.nunez@example.com",
                "address": {"street": "Calle Mayor 5", "postcode": "28013", "city": "Madrid", "country": "Spain"},
            },
            {"phone": "+34 600 000 000", "channel": "sms"},
        ],
    )
    assert folded.name == "Zoë Ñúñez"
    assert folded.email == "zoe.nunez@example.com"
    assert folded.language == "es"
    assert folded.timezone == "Europe/Madrid"
    assert folded.address == ("Calle Mayor 5", "28013 Madrid", "Spain")
    assert folded.postal_block == "Zoë Ñúñez\nCalle Mayor 5\n28013 Madrid\nSpain"
    assert folded.channel == "sms"
    assert folded.problems == ()


def test_unusable_profile_values_count_as_absent_and_say_why() -> None:
    folded = profile_from_data(
        "C-1",
        [
            {"email": "zoe@example.com", "timezone": "Europe/Madrid"},
            {"email": "not an address", "timezone": "Mars/Olympus", "channel": "pigeon", "address": 42},
        ],
    )
    assert folded.email is None
    assert folded.timezone is None
    assert folded.channel is None
    assert folded.address == ()
    problems = " | ".join(folded.problems)
    for field in ("email:", "timezone:", "channel:", "address:"):
        assert field in problems
    # A later good value clears the problem, and null clears a field.
    fixed = profile_from_data("C-1", [{"email": "bad"}, {"email": "ok@example.com", "name": None}])
    assert fixed.email == "ok@example.com"
    assert fixed.problems == ()


# --- the contact policy --------------------------------------------------------------------------------


def test_quiet_hours_delay_to_their_end_in_the_customers_zone_across_midnight() -> None:
    quiet = QuietHours.parse("21:00-08:00")
    berlin = ZoneInfo("Europe/Berlin")
    evening = datetime(2026, 11, 1, 21, 30, tzinfo=berlin)
    assert quiet.after(evening, berlin) == datetime(2026, 11, 2, 8, 0, tzinfo=berlin)
    early = datetime(2026, 11, 2, 6, 0, tzinfo=berlin)
    assert quiet.after(early, berlin) == datetime(2026, 11, 2, 8, 0, tzinfo=berlin)
    noon = datetime(2026, 11, 2, 12, 0, tzinfo=berlin)
    assert quiet.after(noon, berlin) == noon
    # The night before the clocks go back: the end is 08:00 local time, whatever the offset.
    before_change = datetime(2026, 10, 24, 23, 0, tzinfo=berlin)
    assert quiet.after(before_change, berlin).astimezone(berlin).hour == 8
    with pytest.raises(InvalidInput):
        QuietHours.parse("8-21")


def test_the_cap_delays_a_message_until_the_window_has_room_and_opting_out_withholds(db: Database) -> None:
    policy = ContactPolicy(cap=2, window=timedelta(days=7), quiet=None)
    with db.unit_of_work() as uow:
        for number, days_ago in ((1, 3), (2, 1)):
            draft = Draft(
                key=f"m{number}",
                channel=ChannelName.EMAIL,
                kind=MessageKind.APOLOGY,
                recipient="c@example.com",
                subject="s",
                text="t",
                customer_id="C-1",
                not_before=NOW - timedelta(days=days_ago),
            )
            enqueue(uow, draft, now=NOW - timedelta(days=days_ago))
        timing = policy.timing(uow, "C-1", channel=ChannelName.EMAIL, proactive=True, timezone=None, at=NOW)
        assert timing.not_before == NOW - timedelta(days=3) + timedelta(days=7)  # when the older one leaves
        assert timing.note is not None
        assert "cap of 2" in timing.note
        # A reply to a customer who wrote is not capped.
        assert (
            policy.timing(uow, "C-1", channel=ChannelName.EMAIL, proactive=False, timezone=None, at=NOW).not_before
            is None
        )
        assert opt_out(uow, "C-1", source="link", actor=SYSTEM, now=NOW) is True
        assert opt_out(uow, "C-1", source="link", actor=SYSTEM, now=NOW + timedelta(hours=1)) is False
        withheld = policy.timing(uow, "C-1", channel=ChannelName.EMAIL, proactive=False, timezone=None, at=NOW)
        assert withheld.withheld is not None
        assert "opted out" in withheld.withheld
        statuses = uow.execute(sa.select(tables.messages.c.status)).scalars().all()
        assert set(statuses) == {"cancelled"}  # what waited to go does not go
        uow.commit()


# --- through the API -----------------------------------------------------------------------------------


class World(RecoveryWorld):
    """The recovery tests' world, with the shortcuts these tests use."""

    def case_id(self, customer: str) -> int:
        listed = self.client.get(f"/v1/cases?customer={customer}", headers=self.as_("boss")).json()["cases"]
        assert len(listed) == 1
        return int(listed[0]["id"])

    def detail(self, case_id: int) -> dict[str, Any]:
        detail: dict[str, Any] = self.client.get(f"/v1/cases/{case_id}", headers=self.as_("boss")).json()
        return detail

    def post(self, path: str, who: str = "ana", **body: Any) -> dict[str, Any]:
        response = self.client.post(path, json=body, headers=self.as_(who))
        assert response.status_code in (200, 201), response.text
        answer: dict[str, Any] = response.json()
        return answer


def world_with(db: Database, **overrides: Any) -> Iterator[World]:
    keys = {
        "ana": staff_key(db, "ana", Role.AGENT, "air"),
        "boss": staff_key(db, "boss", Role.MANAGER, "air"),
        "integration": new_key(db, "integration", [Scope.EVENTS_WRITE, Scope.COMPLAINTS_WRITE]),
    }
    settings = settings_for(
        db,
        rule_packs=("airline",),
        detect_clock="events",
        detect_allowed_lateness="0s",
        assign_teams={"air-*": "air"},
        company_name="Example Air",
        public_url="https://care.example.com",
        **{"quiet_hours": "", **overrides},
    )
    app = create_app(settings, db)
    with TestClient(app) as client:
        yield World(client, db, app.state.recovery, keys)


@pytest.fixture
def world(db: Database) -> Iterator[World]:
    yield from world_with(db)


ZOE = {
    "name": "Zoë Ñúñez",
    "email": "zoe@example.com",
    "language": "en",
    "timezone": "Europe/Madrid",
    "address": ["Calle Mayor 5", "28013 Madrid", "Spain"],
}


def late_flight(world: World, customer: str = "C-1", **fields: Any) -> int:
    number = int(customer.removeprefix("C-"))  # event ids differ per customer
    booked = {**booking(number, customer, 2500.0), "data": {"booking_ref": "BK1", "fare": 2500.0, "currency": "EUR"}}
    world.send(
        profile(customer, **(fields or ZOE)),
        booked,
        {**arrival(number, customer, 420), "data": {"flight_no": "AA1", "booking_ref": "BK1", "delay_minutes": 420}},
    )
    return world.case_id(customer)


def test_a_case_writes_its_apology_remedy_follow_up_and_thank_you_and_smtp_receives_them(world: World) -> None:
    case_id = late_flight(world)
    draft = world.detail(case_id)["apology"]
    assert draft["template"] == "air-long-delay-apology"
    assert draft["channel"] == "email"
    assert draft["recipient"] == "zoe@example.com"
    assert "AA1" in draft["text"]
    assert "7 hours" in draft["text"]
    assert "Zoë" in draft["text"]
    assert world.detail(case_id)["messages"] == []  # a draft is not a message

    world.post(f"/v1/cases/{case_id}/acknowledge")
    edited = draft["text"].replace("We are sorry", "We are truly sorry")
    world.client.put(f"/v1/cases/{case_id}/draft", json={"text": edited}, headers=world.as_("ana"))
    assert world.detail(case_id)["apology"]["edited"] is True
    after = world.post(f"/v1/cases/{case_id}/steps/empathise/complete")
    assert after["apology"] is None
    [apology] = after["messages"]
    assert (apology["kind"], apology["channel"], apology["status"]) == ("apology", "email", "pending")
    assert apology["text"] == edited
    assert "truly sorry" in apology["html"]
    assert after["case"]["first_contact_at"] is not None

    world.post(f"/v1/cases/{case_id}/remedies", kind="miles", amount="6000")
    messages = world.detail(case_id)["messages"]
    remedy = next(m for m in messages if m["kind"] == "remedy")
    assert "6,000 miles" in remedy["text"]
    assert "AA1" in remedy["text"]

    resolved = world.post(f"/v1/cases/{case_id}/resolve", resolution="6000 miles")
    due = {step["kind"]: step["due_at"] for step in resolved["steps"]}
    scheduled = {m["kind"]: m for m in resolved["messages"]}
    assert scheduled["follow_up"]["channel"] == "email"
    assert _instant(scheduled["follow_up"]["not_before"]) == _instant(due["manage_memory"])
    assert scheduled["thank_you"]["channel"] == "card"  # she has an address: a hand-written card
    assert scheduled["thank_you"]["recipient"] == "Zoë Ñúñez\nCalle Mayor 5\n28013 Madrid\nSpain"
    assert _instant(scheduled["thank_you"]["not_before"]) == _instant(due["extend_experience"])

    mailbox = Mailbox()
    server = Server(mailbox)
    server.start()
    try:
        channels = {"email": channel_for(server)}
        settle = {
            "batch": 10,
            "lease": timedelta(minutes=5),
            "max_attempts": 3,
            "backoff_base": timedelta(minutes=1),
            "backoff_cap": timedelta(hours=1),
        }
        now = datetime.now(UTC)
        first = deliver_due(world.db, channels, worker="w1", now=now, **settle)
        assert len(first.sent) == 2  # the apology and the remedy; the follow-up waits for its day
        later = _instant(scheduled["follow_up"]["not_before"]) + timedelta(minutes=1)
        assert len(deliver_due(world.db, channels, worker="w1", now=later, **settle).sent) == 1
    finally:
        server.stop()
    subjects = [mail["Subject"] for mail in mailbox.received]
    assert len(subjects) == 3
    assert all("AA1" in s for s in subjects[:2])
    for mail in mailbox.received:
        assert mail["To"] == "zoe@example.com"
        assert str(mail["List-Unsubscribe"]).strip().startswith("<https://care.example.com/u/")
        assert mail.get_body(("plain",)) is not None
    follow_up = mailbox.received[2].get_body(("plain",)).get_content()
    assert "right" in follow_up.lower()


def _instant(text: str | datetime) -> datetime:
    return text if isinstance(text, datetime) else datetime.fromisoformat(text)


def test_reopening_cancels_the_follow_up_that_has_not_gone_and_the_next_resolution_schedules_it_anew(
    world: World,
) -> None:
    case_id = late_flight(world)
    world.post(f"/v1/cases/{case_id}/acknowledge")
    world.post(f"/v1/cases/{case_id}/resolve", resolution="called her")
    reopened = world.post(f"/v1/cases/{case_id}/reopen", reason="she wrote back")
    states = {m["kind"]: (m["status"], m["note"]) for m in reopened["messages"]}
    assert states["follow_up"] == ("cancelled", "not sent: the case was reopened")
    again = world.post(f"/v1/cases/{case_id}/resolve", resolution="done")
    pending = [m["kind"] for m in again["messages"] if m["status"] == "pending"]
    assert sorted(pending) == ["follow_up", "thank_you"]
    # A follow-up done by hand cancels the scheduled one.
    done = world.post(f"/v1/cases/{case_id}/steps/manage_memory/complete", channel="phone", answer="made_it_right")
    follow_ups = [m for m in done["messages"] if m["kind"] == "follow_up" and m["status"] == "pending"]
    assert follow_ups == []


def test_a_customer_without_email_gets_a_card_and_without_any_address_a_task_for_staff(world: World) -> None:
    address = "вул. Хрещатик 1\n01001 Київ\nUkraine"
    case_id = late_flight(world, "C-2", name="Ярослава Петренко", address=address)
    world.post(f"/v1/cases/{case_id}/acknowledge")
    [card] = world.post(f"/v1/cases/{case_id}/steps/empathise/complete")["messages"]
    assert card["channel"] == "card"
    assert card["recipient"].startswith("Ярослава Петренко\nвул. Хрещатик 1")  # noqa: RUF001 - Ukrainian, on purpose
    assert card["html"] is None

    case_id = late_flight(world, "C-3", name="Nobody Known")
    world.post(f"/v1/cases/{case_id}/acknowledge")
    [task] = world.post(f"/v1/cases/{case_id}/steps/empathise/complete")["messages"]
    assert task["channel"] == "card"
    assert task["recipient"] == "Nobody Known"  # the name alone: the card queue shows it has no address
    assert "reach the customer another way" in task["note"]
    # Asking for email the customer cannot receive is refused, naming why; nothing is kept.
    refused = world.client.post(
        f"/v1/cases/{case_id}/steps/empathise/complete", json={"channel": "email"}, headers=world.as_("ana")
    )
    assert refused.status_code in (409, 422)


def test_the_unsubscribe_link_works_without_login_and_withholds_what_follows(world: World) -> None:
    case_id = late_flight(world)
    world.post(f"/v1/cases/{case_id}/acknowledge")
    world.post(f"/v1/cases/{case_id}/steps/empathise/complete")
    with world.db.unit_of_work() as uow:
        headers = uow.execute(sa.select(tables.messages.c.headers)).scalar_one()
    path = headers["List-Unsubscribe"].strip("<>").removeprefix("https://care.example.com")

    anonymous = TestClient(world.client.app)
    page = anonymous.get(path)
    assert page.status_code == 200
    assert "Stop messages from Example Air" in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer"
    assert _opted_out(world.db) == []  # opening the page changes nothing
    done = anonymous.post(path, data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200
    assert "unsubscribed" in done.text
    assert _opted_out(world.db) == ["C-1"]
    assert anonymous.post(path).status_code == 200  # again: harmless

    tampered = anonymous.get(path[:-3] + "abc")
    assert tampered.status_code == 404
    assert "does not work" in tampered.text
    assert anonymous.post("/u/" + "x" * 40).status_code == 404

    world.post(f"/v1/cases/{case_id}/remedies", kind="miles", amount="6000")
    remedy = next(m for m in world.detail(case_id)["messages"] if m["kind"] == "remedy")
    assert remedy["status"] == "cancelled"
    assert "opted out" in remedy["note"]


def test_staff_record_an_opt_out_for_the_customer_and_only_a_manager_opts_them_in_again(world: World) -> None:
    case_id = late_flight(world)
    world.post(f"/v1/cases/{case_id}/acknowledge")
    world.post(f"/v1/cases/{case_id}/resolve", resolution="called her")  # the follow-up and thank-you wait
    contact = world.client.get("/v1/customers/C-1/contact", headers=world.as_("boss")).json()
    assert (contact["email"], contact["timezone"], contact["opted_out_at"]) == (
        "zoe@example.com",
        "Europe/Madrid",
        None,
    )
    assert contact["address"] == ["Calle Mayor 5", "28013 Madrid", "Spain"]
    assert world.client.get("/v1/customers/C-1/contact", headers=world.as_("ana")).status_code == 403  # teams

    opted = world.post("/v1/customers/C-1/opt-out")  # ana, an agent, on the phone with her
    assert opted["opted_out_by"] == "staff"
    first = opted["opted_out_at"]
    assert world.post("/v1/customers/C-1/opt-out")["opted_out_at"] == first  # again: the first time is kept
    notes = {m["kind"]: (m["status"], m["note"]) for m in world.detail(case_id)["messages"]}
    assert notes["follow_up"] == ("cancelled", "not sent: the customer opted out of our messages")
    assert notes["thank_you"][0] == "cancelled"

    refused = world.client.delete("/v1/customers/C-1/opt-out", headers=world.as_("ana"))
    assert refused.status_code == 403
    assert "messages:write" in refused.json()["reason"]
    again = world.client.delete("/v1/customers/C-1/opt-out", headers=world.as_("boss"))
    assert again.status_code == 200
    assert (again.json()["opted_out_at"], again.json()["opted_out_by"]) == (None, None)
    with world.db.unit_of_work() as uow:
        actions = {(row.action, row.actor) for row in uow.execute(sa.select(tables.audit_log))}
    assert ("customer.opted_out", "staff:ana") in actions
    assert ("customer.opted_in", "staff:boss") in actions

    # Another system of the company's records one too, with a key for just that.
    crm = new_key(world.db, "crm", [Scope.OPT_OUTS_WRITE])
    by_api = world.client.post("/v1/customers/C-9/opt-out", headers={"Authorization": f"Bearer {crm}"})
    assert by_api.status_code == 200
    assert by_api.json()["opted_out_by"] == "api"  # a customer amends has not seen yet: kept all the same
    too_long = world.client.post("/v1/customers/" + "x" * 201 + "/opt-out", headers={"Authorization": f"Bearer {crm}"})
    assert too_long.status_code == 422


def _opted_out(db: Database) -> list[str]:
    with db.unit_of_work() as uow:
        return list(uow.execute(sa.select(tables.opt_outs.c.customer_id)).scalars())


def test_quiet_hours_delay_a_proactive_apology_but_not_an_answer_to_a_customer_who_wrote(db: Database) -> None:
    hour = datetime.now(UTC).hour
    quiet = f"{(hour - 1) % 24:02d}:00-{(hour + 2) % 24:02d}:00"  # it is quiet now, in UTC
    for world in world_with(db, quiet_hours=quiet):
        case_id = late_flight(world, **{**ZOE, "timezone": "UTC"})
        world.post(f"/v1/cases/{case_id}/acknowledge")
        [apology] = world.post(f"/v1/cases/{case_id}/steps/empathise/complete")["messages"]
        assert "quiet hours" in apology["note"]
        assert _instant(apology["not_before"]).hour == (hour + 2) % 24

        complaint = {"source": "desk", "id": "T-1", "customer": "C-9", "channel": "email", "text": "Where is my bag?"}
        world.send(profile("C-9", **{**ZOE, "timezone": "UTC"}))
        filed = world.client.post("/v1/complaints", json=complaint, headers=world.as_("integration"))
        assert filed.status_code in (200, 201), filed.text
        reactive = world.case_id("C-9")
        world.post(f"/v1/cases/{reactive}/acknowledge", who=_owner(world, reactive))
        [answer] = world.post(f"/v1/cases/{reactive}/steps/empathise/complete", who=_owner(world, reactive))["messages"]
        assert answer["note"] is None
        assert _instant(answer["not_before"]) <= datetime.now(UTC)


def test_a_customer_who_contacted_us_about_the_booking_gets_answers_not_proactive_messages(db: Database) -> None:
    hour = datetime.now(UTC).hour
    quiet = f"{(hour - 1) % 24:02d}:00-{(hour + 2) % 24:02d}:00"  # it is quiet now, in UTC
    utc = {**ZOE, "timezone": "UTC"}

    def support(number: int, customer: str, booking_ref: str, day: int) -> dict[str, Any]:
        return {
            "specversion": "1.0",
            "id": f"s-{number}",
            "source": "https://air.example/support",
            "type": "support.contact",
            "time": f"2026-10-{day:02d}T12:00:00Z",  # the flight arrived on the 20th at 10:00
            "subject": customer,
            "data": {"ticket_id": f"T-{number}", "channel": "phone", "topic": "delay", "booking_ref": booking_ref},
        }

    for world in world_with(db, quiet_hours=quiet):
        # She called about this booking after the flight came in: what we write is an answer.
        case_id = late_flight(world, "C-1", **utc)
        world.send(support(1, "C-1", "BK1", day=20))
        world.post(f"/v1/cases/{case_id}/acknowledge")
        [answer] = world.post(f"/v1/cases/{case_id}/steps/empathise/complete")["messages"]
        assert answer["note"].startswith(
            "an answer, not proactive: the customer contacted us about it (support.contact"
        )
        assert "booking_ref BK1" in answer["note"]
        assert "quiet hours" not in answer["note"]
        assert _instant(answer["not_before"]) <= datetime.now(UTC)

        # Calls about another booking, or about this one before it went wrong, do not count.
        case_id = late_flight(world, "C-2", **utc)
        world.send(support(2, "C-2", "BK9", day=21), support(3, "C-2", "BK1", day=19))
        world.post(f"/v1/cases/{case_id}/acknowledge")
        [proactive] = world.post(f"/v1/cases/{case_id}/steps/empathise/complete")["messages"]
        assert "quiet hours" in proactive["note"]
        assert "an answer" not in proactive["note"]


def test_the_preview_renders_any_template_of_a_step_with_the_cases_facts(world: World) -> None:
    case_id = late_flight(world)
    ana = world.as_("ana")
    generic = world.client.get(
        f"/v1/cases/{case_id}/preview?kind=apology&template=generic-empathise-de", headers=ana
    ).json()
    assert generic["template"] == "generic-empathise-de"
    assert "Zoë" in generic["subject"] + generic["text"]
    spanish = world.client.get(f"/v1/cases/{case_id}/preview?language=es", headers=ana).json()
    assert spanish["language"] == "es"
    assert world.client.get(f"/v1/cases/{case_id}/preview?kind=remedy", headers=ana).status_code == 409
    wrong = world.client.get(f"/v1/cases/{case_id}/preview?template=generic-remedy-en", headers=ana)
    assert wrong.status_code == 422
    assert wrong.json()["field"] == "template"
    assert world.client.get(f"/v1/cases/{case_id}/preview?template=nope", headers=ana).status_code == 422
    world.post(f"/v1/cases/{case_id}/acknowledge")
    world.post(f"/v1/cases/{case_id}/remedies", kind="miles", amount="6000")
    remedy = world.client.get(f"/v1/cases/{case_id}/preview?kind=remedy", headers=ana).json()
    assert "6,000 miles" in remedy["text"]
    assert _count(world.db, "messages") == 1  # the grant's confirmation; previews write nothing


def _count(db: Database, table: str) -> int:
    with db.unit_of_work() as uow:
        return int(uow.execute(sa.select(sa.func.count()).select_from(tables.metadata.tables[table])).scalar_one())


def test_the_outbox_is_read_by_managers_and_a_dead_letter_goes_back_in_the_queue(world: World) -> None:
    case_id = late_flight(world)
    world.post(f"/v1/cases/{case_id}/acknowledge")
    [apology] = world.post(f"/v1/cases/{case_id}/steps/empathise/complete")["messages"]
    assert world.client.get("/v1/messages", headers=world.as_("ana")).status_code == 403
    with world.db.unit_of_work() as uow:
        uow.execute(sa.update(tables.messages).values(status="dead", last_error="550 no such mailbox", attempts=12))
        uow.commit()
    dead = world.client.get("/v1/messages?status=dead", headers=world.as_("boss")).json()["messages"]
    assert [(m["id"], m["last_error"]) for m in dead] == [(apology["id"], "550 no such mailbox")]
    assert world.client.post(f"/v1/messages/{apology['id']}/retry", headers=world.as_("ana")).status_code == 403
    retried = world.client.post(f"/v1/messages/{apology['id']}/retry", headers=world.as_("boss"))
    assert retried.status_code == 200
    assert retried.json()["status"] == "pending"
    assert retried.json()["attempts"] == 0
    again = world.client.post(f"/v1/messages/{apology['id']}/retry", headers=world.as_("boss"))
    assert again.status_code == 409
    assert world.client.get("/v1/messages/999999", headers=world.as_("boss")).status_code == 404


def _owner(world: World, case_id: int) -> str:
    return str(world.detail(case_id)["case"]["owner_id"] or "boss")
