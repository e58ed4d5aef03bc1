"""Hand-written cards on both engines: a card message delivered by the worker becomes one task however often it
is delivered; the PDFs, read back with pypdf, carry the note, the name and the address, wrapped on A6 pages;
staff work the queue through the API (print a sheet, mark written, mark posted), and the audit log says who."""

# Cyrillic names and addresses on purpose, though some of their letters look like Latin ones.
# ruff: noqa: RUF001

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import pypdf
import pytest
from fastapi.testclient import TestClient
from fpdf import FPDF

from amends.access import Scope
from amends.errors import Conflict, InvalidInput, NotFound
from amends.outreach.cards import (
    FONT,
    CardChannel,
    CardState,
    CardTask,
    card_pdf,
    get_card_task,
    list_card_tasks,
    mark_posted,
    mark_written,
    print_sheet,
    worker_channels,
)
from amends.outreach.outbox import (
    ChannelName,
    Draft,
    Message,
    MessageKind,
    MessageStatus,
    Settled,
    claim,
    deliver_due,
    enqueue,
    get_message,
)
from amends.recover.actors import Actor
from amends.recover.audit import list_audit
from amends.recover.roles import Role
from amends.recover.staff import add_staff, create_staff_key, get_staff
from amends.store import Database
from amends.web import create_app
from tests.conftest import NOW, count_rows, new_key, settings_for

LEASE = timedelta(minutes=5)
A6_POINTS = (419.53, 297.64)  # 148 x 105 mm
POSTAL = {
    "lukasz": "Łukasz Wójcik\nul. Długa 5/12\n00-238 Warszawa\nPoland",
    "zoe": "Zoë Ñúñez\nCalle Mayor 3, 2º\n28013 Madrid\nSpain",
    "yaroslava": "Ярослава Коваленко\nвул. Хрещатик, 22\nКиїв 01001\nУкраїна",
    "wang": "王芳\n北京市朝阳区建国路 88 号\n100022\nChina",
}
NOTE = "Dear Łukasz, we are sorry your parcel came three days late. Thank you for your patience."


def a_card(number: int = 1, **changes: Any) -> Draft:
    draft = Draft(
        key=f"case:{number}:extend_experience:card",
        channel=ChannelName.CARD,
        kind=MessageKind.APOLOGY,
        recipient=POSTAL["lukasz"],
        subject="Sorry about the late parcel",
        text=NOTE,
        case_id=number,
        customer_id=f"C-{number}",
    )
    return replace(draft, **changes)


def enqueue_all(db: Database, drafts: Sequence[Draft]) -> list[Message]:
    with db.unit_of_work() as uow:
        stored = [enqueue(uow, draft, now=NOW)[0] for draft in drafts]
        uow.commit()
    return stored


def deliver(db: Database, *, worker: str = "w1", at: timedelta = timedelta(0)) -> Settled:
    return deliver_due(
        db,
        {"card": CardChannel(db, clock=lambda: NOW + at)},
        worker=worker,
        now=NOW + at,
        batch=50,
        lease=LEASE,
        max_attempts=5,
        backoff_base=timedelta(minutes=1),
        backoff_cap=timedelta(hours=1),
    )


def queued(db: Database, *drafts: Draft) -> list[CardTask]:
    """The drafts enqueued and delivered by the card channel: their tasks, in order."""
    messages = enqueue_all(db, drafts)
    assert set(deliver(db).sent) == {message.id for message in messages}
    with db.unit_of_work() as uow:
        tasks, _next = list_card_tasks(uow, state="all", limit=1000)
    by_message = {task.message_id: task for task in tasks}
    return [by_message[message.id] for message in messages]


def a_task(number: int = 1, **changes: Any) -> CardTask:
    """A task as the queue gives it, without a database: for the PDFs."""
    task = CardTask(
        id=number,
        message_id=number,
        case_id=40 + number,
        customer_id=f"C-{number}",
        kind=MessageKind.APOLOGY,
        recipient=POSTAL["lukasz"],
        subject="Sorry about the late parcel",
        text=NOTE,
        created_at=NOW,
        printed_at=None,
        written_at=None,
        written_by=None,
        posted_at=None,
        posted_by=None,
    )
    return replace(task, **changes)


def pages_of(pdf: bytes) -> list[pypdf.PageObject]:
    assert pdf.startswith(b"%PDF-")
    return list(pypdf.PdfReader(io.BytesIO(pdf)).pages)


def text_of(page: pypdf.PageObject) -> str:
    """A page's text with runs of spaces and line breaks made one space: what a reader sees, unwrapped."""
    return " ".join(page.extract_text().split())


def lines_of(page: pypdf.PageObject) -> list[str]:
    return [" ".join(line.split()) for line in page.extract_text().splitlines() if line.strip()]


# --- the channel -----------------------------------------------------------------------------------------


def test_a_card_message_delivered_by_the_worker_becomes_a_task_to_write(db: Database) -> None:
    (message,) = enqueue_all(db, [a_card()])
    settled = deliver(db)
    assert settled.sent == (message.id,)
    with db.unit_of_work() as uow:
        (task,), following = list_card_tasks(uow, state=CardState.TO_WRITE)
        sent = get_message(uow, message.id)
    assert following is None
    assert sent.status is MessageStatus.SENT
    assert sent.provider_id == f"card-task:{task.id}"
    assert (task.message_id, task.case_id, task.customer_id, task.kind) == (message.id, 1, "C-1", MessageKind.APOLOGY)
    assert (task.recipient, task.subject, task.text) == (POSTAL["lukasz"], "Sorry about the late parcel", NOTE)
    assert task.postal_lines == ("Łukasz Wójcik", "ul. Długa 5/12", "00-238 Warszawa", "Poland")
    assert task.name == "Łukasz Wójcik"
    assert task.state is CardState.TO_WRITE
    assert task.created_at == NOW
    assert (task.printed_at, task.written_at, task.posted_at) == (None, None, None)


def test_a_card_delivered_again_after_its_worker_died_is_still_one_task(db: Database) -> None:
    (message,) = enqueue_all(db, [a_card()])
    (claimed,) = claim(db, worker="dead", batch=10, lease=LEASE, now=NOW)
    channel = CardChannel(db, clock=lambda: NOW)
    (first,) = channel.send([claimed])  # ... the task is made, and the worker stops before settling
    (twice,) = channel.send([claimed])  # a channel asked twice answers the same
    assert first.ok
    assert twice == first
    assert deliver(db, worker="w2", at=LEASE - timedelta(seconds=1)) == Settled()  # the lease has not run out
    settled = deliver(db, worker="w2", at=LEASE)
    assert settled.sent == (message.id,)
    assert count_rows(db, "card_tasks") == 1
    with db.unit_of_work() as uow:
        sent = get_message(uow, message.id)
        (task,), _next = list_card_tasks(uow, state="all")
    assert sent.attempts == 2
    assert sent.provider_id == first.provider_id == f"card-task:{task.id}"
    assert task.created_at == NOW  # the first delivery's, kept
    assert deliver(db, at=timedelta(hours=1)) == Settled()  # sent: nothing more to deliver


def test_a_card_for_a_name_alone_is_a_task_without_an_address_and_an_empty_block_fails(db: Database) -> None:
    name_only, fine = enqueue_all(db, [a_card(1, recipient="Łukasz Wójcik"), a_card(2)])
    settled = deliver(db)
    assert settled.sent == (name_only.id, fine.id)
    with db.unit_of_work() as uow:
        tasks, _next = list_card_tasks(uow, state="all")
    by_message = {task.message_id: task for task in tasks}
    assert by_message[name_only.id].has_address is False
    assert by_message[name_only.id].name == "Łukasz Wójcik"
    assert by_message[fine.id].has_address is True
    assert "no postal address on file" in " ".join(map(text_of, pages_of(card_pdf(by_message[name_only.id]))))
    (empty,) = CardChannel(db).send([replace(fine, id=999, recipient=" \n\t\n ")])
    assert (empty.ok, empty.permanent) == (False, True)
    assert empty.error is not None
    assert "the postal block is empty" in empty.error


def test_a_worker_built_from_settings_has_the_card_channel(db: Database) -> None:
    channels = worker_channels(settings_for(db, environment="production"), db)
    assert isinstance(channels["card"], CardChannel)
    assert "file" in channels
    assert "email" not in channels  # production without an SMTP server: as channels_from_settings says


# --- the queue -------------------------------------------------------------------------------------------


def test_the_queue_lists_by_state_oldest_first_a_page_at_a_time(db: Database) -> None:
    tasks = queued(db, *(a_card(n) for n in range(1, 6)))
    agent = _actor(db, "ana")
    with db.unit_of_work() as uow:
        mark_written(uow, tasks[1].id, by=agent, now=NOW)
        mark_written(uow, tasks[2].id, by=agent, now=NOW)
        mark_posted(uow, tasks[2].id, by=agent, now=NOW)
        uow.commit()
    with db.unit_of_work() as uow:
        first, cursor = list_card_tasks(uow, state="to_write", limit=2)
        rest, end = list_card_tasks(uow, state="to_write", limit=2, cursor=cursor)
        written, _ = list_card_tasks(uow, state="written")
        posted, _ = list_card_tasks(uow, state="posted")
        everything, _ = list_card_tasks(uow, state="all")
    assert [t.id for t in first + rest] == [tasks[0].id, tasks[3].id, tasks[4].id]
    assert end is None
    assert [t.id for t in written] == [tasks[1].id]
    assert [t.id for t in posted] == [tasks[2].id]
    assert [t.id for t in everything] == [t.id for t in tasks]
    assert [t.state for t in everything] == ["to_write", "written", "posted", "to_write", "to_write"]
    with db.unit_of_work() as uow:
        for kwargs, field in (({"state": "lost"}, "state"), ({"limit": 0}, "limit"), ({"cursor": "x"}, "cursor")):
            with pytest.raises(InvalidInput) as refused:
                list_card_tasks(uow, **kwargs)
            assert refused.value.field == field
        with pytest.raises(NotFound, match="no card task 999"):
            get_card_task(uow, 999)


def test_a_card_is_written_then_posted_each_once_and_audited(db: Database) -> None:
    (task,) = queued(db, a_card())
    ana, bob = _actor(db, "ana"), _actor(db, "bob")
    with db.unit_of_work() as uow, pytest.raises(Conflict, match="not written yet"):
        mark_posted(uow, task.id, by=ana, now=NOW)
    with db.unit_of_work() as uow:
        written = mark_written(uow, task.id, by=ana, now=NOW + timedelta(minutes=1))
        uow.commit()
    assert (written.state, written.written_by, written.written_at) == ("written", "ana", NOW + timedelta(minutes=1))
    with db.unit_of_work() as uow, pytest.raises(Conflict) as twice:
        mark_written(uow, task.id, by=bob, now=NOW + timedelta(minutes=2))
    assert str(twice.value) == f"card {task.id} was marked written at 2026-05-04T12:01:00Z by ana"
    with db.unit_of_work() as uow:
        posted = mark_posted(uow, task.id, by=bob, now=NOW + timedelta(hours=2))
        uow.commit()
    assert (posted.state, posted.posted_by, posted.written_by) == ("posted", "bob", "ana")
    with db.unit_of_work() as uow, pytest.raises(Conflict, match="marked posted at 2026-05-04T14:00:00Z by bob"):
        mark_posted(uow, task.id, by=ana, now=NOW + timedelta(hours=3))
    with db.unit_of_work() as uow:
        log = list_audit(uow, target=f"card:{task.id}")
    assert [(entry.action, entry.actor) for entry in reversed(log)] == [
        ("card.written", "staff:ana"),
        ("card.posted", "staff:bob"),
    ]


def _actor(db: Database, staff_id: str) -> Actor:
    with db.unit_of_work() as uow:
        try:
            member = get_staff(uow, staff_id)
        except NotFound:
            member = add_staff(uow, staff_id, name=staff_id.title(), role=Role.AGENT, team=None, now=NOW)
            uow.commit()
    return Actor(None, member, member.scopes, "127.0.0.1")


# --- the PDFs --------------------------------------------------------------------------------------------


def test_a_cards_pdf_has_the_note_then_the_name_and_address_for_the_envelope() -> None:
    pages = pages_of(card_pdf(a_task()))
    assert len(pages) == 2
    for page in pages:
        assert [round(float(side), 2) for side in page.mediabox[2:]] == list(A6_POINTS)
    note, envelope = (text_of(page) for page in pages)
    assert note.startswith("Card 1, case 41, apology: Sorry about the late parcel")
    assert NOTE in note
    assert "Warszawa" not in note  # the address is for the envelope's page
    assert lines_of(pages[1])[1:] == ["Łukasz Wójcik", "ul. Długa 5/12", "00-238 Warszawa", "Poland"]
    assert "for the envelope" in envelope
    assert "\ufffd" not in note + envelope


@pytest.mark.parametrize("who", ["lukasz", "zoe", "yaroslava"])
def test_names_and_addresses_in_latin_and_cyrillic_print_as_they_are(who: str) -> None:
    note = f"Dear {POSTAL[who].splitlines()[0]}, thank you — “truly”. Дякуємо! Dziękujemy! ¡Gracias!"
    pages = pages_of(card_pdf(a_task(recipient=POSTAL[who], text=note)))
    assert note in text_of(pages[0])
    assert lines_of(pages[-1])[1:] == POSTAL[who].splitlines()
    assert "\ufffd" not in "".join(text_of(page) for page in pages)


def test_a_decomposed_name_prints_composed() -> None:
    decomposed = "Zoe\u0308 N\u0303u\u0301n\u0303ez"  # as some keyboards and systems send it
    pages = pages_of(card_pdf(a_task(recipient=f"{decomposed}\nCalle Mayor 3\nMadrid")))
    assert lines_of(pages[-1])[1] == "Zoë Ñúñez"


def test_characters_the_font_lacks_print_as_a_marked_replacement_and_are_named() -> None:
    pages = pages_of(card_pdf(a_task(recipient=POSTAL["wang"], text="亲爱的王芳, thank you.")))
    assert len(pages) == 2
    note, envelope = text_of(pages[0]), text_of(pages[-1])
    assert "\ufffd\ufffd\ufffd\ufffd\ufffd, thank you." in note
    assert lines_of(pages[-1])[1] == "\ufffd\ufffd"  # 王芳
    assert "China" in envelope
    for text in (note, envelope):
        assert "marks characters this font cannot show" in text
        assert "U+738B" in text  # 王
        assert "U+82B3" in text  # 芳
        assert "the exact text is in the card queue, card 1" in text


def test_a_long_note_wraps_onto_more_pages_and_every_line_fits_the_card() -> None:
    words = [f"word{n:03d}" for n in range(400)]
    long_word = "https://example.com/" + "x" * 300  # no space to break at: broken where the line ends
    pages = pages_of(card_pdf(a_task(text=" ".join(words) + " " + long_word)))
    assert len(pages) >= 4  # three or more pages of note, then the envelope
    note_lines = [line for page in pages[:-1] for line in lines_of(page)[1:]]
    assert " ".join(note_lines).split()[: len(words)] == words  # every word, in order, none lost
    assert "".join(note_lines).endswith(long_word)
    measure = FPDF(unit="mm")
    measure.add_font("noto", "", str(resources.files(FONT[0]).joinpath(FONT[1])))
    measure.set_font("noto", size=12)
    widths = {line: measure.get_string_width(line) for line in note_lines}
    measure.output()  # closes the font file
    for line, width in widths.items():
        assert width <= 148 - 2 * 10 + 0.5, line
    for page in pages:
        for x, y in _text_origins(page):
            assert 0 < x < A6_POINTS[0]
            assert 0 < y < A6_POINTS[1]


def _text_origins(page: pypdf.PageObject) -> list[tuple[float, float]]:
    origins: list[tuple[float, float]] = []

    def visit(text: str, cm: list[float], tm: list[float], font: object, size: float) -> None:
        if text.strip():
            origins.append((tm[4] * cm[0] + cm[4], tm[5] * cm[3] + cm[5]))

    page.extract_text(visitor_text=visit)
    return origins


def test_a_print_sheet_lists_the_batch_then_has_each_card_on_pages_of_its_own() -> None:
    tasks = [
        a_task(1),
        a_task(2, recipient=POSTAL["zoe"], subject="Gracias", text="Querida Zoë, gracias."),
        a_task(3, recipient=POSTAL["yaroslava"], subject="Дякуємо", text="Дорога Ярославо, дякуємо!", case_id=None),
    ]
    pdf = print_sheet(tasks, now=NOW)
    pages = pages_of(pdf)
    assert len(pages) == 1 + sum(len(pages_of(card_pdf(task))) for task in tasks)
    listing = lines_of(pages[0])
    assert listing[0] == "Cards printed 2026-05-04T12:00:00Z: 3"
    assert listing[1] == "Card Customer Case Heading"
    assert listing[2:] == [
        "1 Łukasz Wójcik (C-1) 41 Sorry about the late parcel",
        "2 Zoë Ñúñez (C-2) 42 Gracias",
        "3 Ярослава Коваленко (C-3) Дякуємо",
    ]
    texts = [text_of(page) for page in pages[1:]]
    assert NOTE in texts[0]
    assert texts[1].startswith("Card 1, case 41: for the envelope")
    assert "Querida Zoë, gracias." in texts[2]
    assert "Zoë Ñúñez Calle Mayor 3, 2º 28013 Madrid Spain" in texts[3]
    assert texts[4].startswith("Card 3, apology: Дякуємо")
    assert "Ярослава Коваленко вул. Хрещатик, 22 Київ 01001 Україна" in texts[5]


def test_the_same_card_makes_the_same_pdf() -> None:
    assert card_pdf(a_task()) == card_pdf(a_task())


# --- the API ---------------------------------------------------------------------------------------------


@dataclass
class Desk:
    client: TestClient
    db: Database
    keys: dict[str, str]

    def as_(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}


def staff_key(db: Database, staff_id: str, role: Role) -> str:
    with db.unit_of_work() as uow:
        add_staff(uow, staff_id, name=staff_id.title(), role=role, team=None, now=NOW)
        _key, text = create_staff_key(uow, staff_id, now=datetime.now(UTC))  # it expires: made now, not at NOW
        uow.commit()
    return text


@pytest.fixture
def desk(db: Database) -> Iterator[Desk]:
    keys = {
        "ana": staff_key(db, "ana", Role.AGENT),
        "bob": staff_key(db, "bob", Role.LEAD),
        "boss": staff_key(db, "boss", Role.MANAGER),
        "reader": new_key(db, "reader", [Scope.CASES_READ, Scope.MESSAGES_READ]),
    }
    with TestClient(create_app(settings_for(db), db)) as client:
        yield Desk(client, db, keys)


def test_staff_print_a_sheet_then_mark_each_card_written_and_posted(desk: Desk) -> None:
    tasks = queued(
        desk.db,
        a_card(1),
        a_card(2, recipient=POSTAL["zoe"], text="Querida Zoë, gracias."),
        a_card(3, recipient=POSTAL["yaroslava"], text="Дорога Ярославо!"),
    )
    ids = [task.id for task in tasks]
    listed = desk.client.get("/v1/cards?state=to_write&limit=2", headers=desk.as_("ana"))
    assert listed.status_code == 200, listed.text
    page = listed.json()
    assert [card["id"] for card in page["cards"]] == ids[:2]
    assert page["next_cursor"] is not None
    assert f"cursor={page['next_cursor']}" in page["next"]
    card = page["cards"][0]
    assert card["state"] == "to_write"
    assert card["name"] == "Łukasz Wójcik"
    assert card["postal_lines"] == ["Łukasz Wójcik", "ul. Długa 5/12", "00-238 Warszawa", "Poland"]
    assert (card["subject"], card["text"], card["kind"], card["case_id"]) == (
        "Sorry about the late parcel",
        NOTE,
        "apology",
        1,
    )
    rest = desk.client.get(f"/v1/cards?state=to_write&limit=2&cursor={page['next_cursor']}", headers=desk.as_("ana"))
    assert [card["id"] for card in rest.json()["cards"]] == ids[2:]
    assert rest.json()["next"] is None

    sheet = desk.client.post("/v1/cards/sheet", json={"state": "to_write", "limit": 2}, headers=desk.as_("ana"))
    assert sheet.status_code == 200, sheet.text
    assert sheet.headers["content-type"] == "application/pdf"
    assert "attachment" in sheet.headers["content-disposition"]
    pages = pages_of(sheet.content)
    assert lines_of(pages[0])[2:] == [
        f"{ids[0]} Łukasz Wójcik (C-1) 1 Sorry about the late parcel",
        f"{ids[1]} Zoë Ñúñez (C-2) 2 Sorry about the late parcel",
    ]
    assert "Querida Zoë, gracias." in " ".join(text_of(page) for page in pages)
    printed = [desk.client.get(f"/v1/cards/{task_id}", headers=desk.as_("ana")).json() for task_id in ids]
    assert [card["printed_at"] is not None for card in printed] == [True, True, False]
    assert [card["state"] for card in printed] == ["to_write"] * 3  # printed is not written

    one = desk.client.get(f"/v1/cards/{ids[2]}.pdf", headers=desk.as_("bob"))
    assert one.status_code == 200
    assert one.headers["content-type"] == "application/pdf"
    assert "Дорога Ярославо!" in text_of(pages_of(one.content)[0])
    assert desk.client.get(f"/v1/cards/{ids[2]}", headers=desk.as_("bob")).json()["printed_at"] is None  # a GET

    written = desk.client.post(f"/v1/cards/{ids[0]}/written", headers=desk.as_("ana"))
    assert written.status_code == 200, written.text
    assert (written.json()["state"], written.json()["written_by"]) == ("written", "ana")
    posted = desk.client.post(f"/v1/cards/{ids[0]}/posted", headers=desk.as_("bob"))
    assert posted.status_code == 200, posted.text
    assert (posted.json()["state"], posted.json()["posted_by"], posted.json()["written_by"]) == ("posted", "bob", "ana")
    assert [c["id"] for c in desk.client.get("/v1/cards?state=posted", headers=desk.as_("ana")).json()["cards"]] == [
        ids[0]
    ]
    assert [c["id"] for c in desk.client.get("/v1/cards?state=to_write", headers=desk.as_("ana")).json()["cards"]] == (
        ids[1:]
    )

    audit = desk.client.get(f"/v1/audit?target=card:{ids[0]}", headers=desk.as_("boss")).json()
    assert [(entry["action"], entry["actor"]) for entry in reversed(audit)] == [
        ("card.printed", "staff:ana"),
        ("card.written", "staff:ana"),
        ("card.posted", "staff:bob"),
    ]
    assert audit[-1]["origin"] == "testclient"
    assert [
        entry["action"] for entry in desk.client.get(f"/v1/audit?target=card:{ids[2]}", headers=desk.as_("boss")).json()
    ] == []


def test_a_sheet_of_named_cards_prints_them_in_that_order_and_printing_again_keeps_the_first_time(desk: Desk) -> None:
    first, second = queued(desk.db, a_card(1), a_card(2))
    sheet = desk.client.post("/v1/cards/sheet", json={"ids": [second.id, first.id]}, headers=desk.as_("ana"))
    assert sheet.status_code == 200, sheet.text
    assert [line.split()[0] for line in lines_of(pages_of(sheet.content)[0])[2:]] == [str(second.id), str(first.id)]
    printed_at = desk.client.get(f"/v1/cards/{first.id}", headers=desk.as_("ana")).json()["printed_at"]
    again = desk.client.post("/v1/cards/sheet", json={"ids": [first.id]}, headers=desk.as_("bob"))
    assert again.status_code == 200
    assert desk.client.get(f"/v1/cards/{first.id}", headers=desk.as_("ana")).json()["printed_at"] == printed_at
    audit = desk.client.get(f"/v1/audit?target=card:{first.id}", headers=desk.as_("boss")).json()
    assert [(entry["actor"], entry["details"]["again"]) for entry in reversed(audit)] == [
        ("staff:ana", False),
        ("staff:bob", True),
    ]


def test_conflicts_unknown_cards_and_bad_requests_are_refused_and_change_nothing(desk: Desk) -> None:
    (task,) = queued(desk.db, a_card())
    ana = desk.as_("ana")
    early = desk.client.post(f"/v1/cards/{task.id}/posted", headers=ana)
    assert early.status_code == 409
    assert early.json()["reason"] == f"card {task.id} is not written yet; mark it written before posting it"
    assert desk.client.post(f"/v1/cards/{task.id}/written", headers=ana).status_code == 200
    twice = desk.client.post(f"/v1/cards/{task.id}/written", headers=desk.as_("bob"))
    assert twice.status_code == 409
    assert re.fullmatch(rf"card {task.id} was marked written at \S+Z by ana", twice.json()["reason"])
    assert desk.client.post(f"/v1/cards/{task.id}/posted", headers=ana).status_code == 200
    posted_twice = desk.client.post(f"/v1/cards/{task.id}/posted", headers=ana)
    assert posted_twice.status_code == 409
    assert "was marked posted at" in posted_twice.json()["reason"]
    assert "by ana" in posted_twice.json()["reason"]

    for method, path in (
        ("GET", "/v1/cards/999"),
        ("GET", "/v1/cards/999.pdf"),
        ("POST", "/v1/cards/999/written"),
        ("POST", "/v1/cards/999/posted"),
    ):
        missing = desk.client.request(method, path, headers=ana)
        assert missing.status_code == 404, path
        assert missing.json()["reason"] == "no card task 999"
    unknown_on_sheet = desk.client.post("/v1/cards/sheet", json={"ids": [task.id, 999]}, headers=ana)
    assert unknown_on_sheet.status_code == 404
    nothing_waiting = desk.client.post("/v1/cards/sheet", json={"state": "to_write"}, headers=ana)
    assert nothing_waiting.status_code == 409
    assert nothing_waiting.json()["reason"] == "no card task is to_write; there is nothing to print"

    for request, field in (
        (("GET", "/v1/cards?state=lost", None), "state"),
        (("GET", "/v1/cards?limit=0", None), "limit"),
        (("GET", "/v1/cards?cursor=nonsense", None), "cursor"),
        (("GET", "/v1/cards/abc", None), "task_id"),
        (("POST", "/v1/cards/sheet", {}), "ids"),
        (("POST", "/v1/cards/sheet", {"ids": [task.id], "state": "to_write"}), "ids"),
        (("POST", "/v1/cards/sheet", {"ids": []}), "ids"),
        (("POST", "/v1/cards/sheet", {"ids": ["one"]}), "ids.0"),
        (("POST", "/v1/cards/sheet", {"ids": list(range(1, 202))}), "ids"),
        (("POST", "/v1/cards/sheet", {"state": "lost"}), "state"),
        (("POST", "/v1/cards/sheet", {"state": "to_write", "limit": 0}), "limit"),
        (("POST", "/v1/cards/sheet", {"ids": [task.id], "colour": "red"}), "colour"),
    ):
        method, path, body = request
        refused = desk.client.request(method, path, json=body, headers=ana)
        assert refused.status_code == 422, (path, body, refused.text)
        assert refused.json()["field"] == field, (path, body, refused.json())
    with desk.db.unit_of_work() as uow:
        stored = get_card_task(uow, task.id)
    assert stored.printed_at is None  # no refused sheet marked anything


def test_only_a_key_with_cards_write_works_the_queue(desk: Desk) -> None:
    (task,) = queued(desk.db, a_card())
    requests = [
        ("GET", "/v1/cards", None),
        ("GET", f"/v1/cards/{task.id}", None),
        ("GET", f"/v1/cards/{task.id}.pdf", None),
        ("POST", "/v1/cards/sheet", {"ids": [task.id]}),
        ("POST", f"/v1/cards/{task.id}/written", None),
        ("POST", f"/v1/cards/{task.id}/posted", None),
    ]
    for method, path, body in requests:
        anonymous = desk.client.request(method, path, json=body)
        assert anonymous.status_code == 401, path
        forbidden = desk.client.request(method, path, json=body, headers=desk.as_("reader"))
        assert forbidden.status_code == 403, path
        assert "cards:write" in forbidden.json()["reason"]
    with desk.db.unit_of_work() as uow:
        stored = get_card_task(uow, task.id)
    assert (stored.printed_at, stored.written_at) == (None, None)
    every_role = [desk.client.get("/v1/cards", headers=desk.as_(who)).status_code for who in ("ana", "bob", "boss")]
    assert every_role == [200, 200, 200]
