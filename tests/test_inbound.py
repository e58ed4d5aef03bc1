"""Customers' replies by email, on both engines: the apology goes over SMTP to a real server, the customer's reply
to the email that arrived is posted as each provider posts it (Postmark's JSON, a Mailgun route's form, SendGrid's
Inbound Parse form, the message itself), and lands on the case thread without the quoted original; a repeat
changes nothing; a reply that matches nothing is kept; bad posts name the field; the key may come as a Basic
password. The parsers are also checked alone, on what providers send that the round trip does not."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

import pytest

from amends.access import Scope
from amends.errors import InvalidInput
from amends.outreach.inbound import InboundProvider, parse_inbound, reply_text
from amends.outreach.outbox import deliver_due
from amends.store import Database
from tests.conftest import new_key
from tests.test_outreach import ZOE, World, late_flight, world_with
from tests.test_smtp_channel import Mailbox, Server, channel_for

SETTLE: dict[str, Any] = {
    "batch": 10,
    "lease": timedelta(minutes=5),
    "max_attempts": 3,
    "backoff_base": timedelta(minutes=1),
    "backoff_cap": timedelta(hours=1),
}
REPLY = "Thanks, the miles arrived.\nCould you also check my bag? It is still in Madrid."
PROVIDERS = ["postmark", "mailgun", "sendgrid", "rfc822"]


@pytest.fixture
def world(db: Database) -> Iterator[World]:
    yield from _with_mail_keys(db)


def _with_mail_keys(db: Database, **settings: Any) -> Iterator[World]:
    for world in world_with(db, **settings):
        world.keys["mail"] = new_key(db, "mail", [Scope.INBOUND_WRITE])
        yield world


def deliver(world: World) -> list[EmailMessage]:
    """Deliver what is due through a real SMTP server; what it received."""
    mailbox = Mailbox()
    server = Server(mailbox)
    server.start()
    try:
        deliver_due(world.db, {"email": channel_for(server)}, worker="w1", now=datetime.now(UTC), **SETTLE)
    finally:
        server.stop()
    return mailbox.received


def apologise(world: World, customer: str = "C-1", **profile: Any) -> int:
    case_id = late_flight(world, customer, **(profile or ZOE))
    world.post(f"/v1/cases/{case_id}/acknowledge")
    world.post(f"/v1/cases/{case_id}/steps/empathise/complete")
    return case_id


def reply_to(received: EmailMessage, text: str = REPLY, *, sender: str = "Zoë Ñúñez <zoe@example.com>") -> EmailMessage:
    """The customer's reply, as a mail client writes it: the original quoted under an attribution line."""
    reply = EmailMessage()
    reply["From"] = sender
    reply["To"] = str(received["From"])
    reply["Subject"] = f"Re: {received['Subject']}"
    reply["Date"] = format_datetime(datetime.now(UTC))
    reply["Message-ID"] = make_msgid(domain="example.com")
    reply["In-Reply-To"] = str(received["Message-ID"])
    reply["References"] = str(received["Message-ID"])
    body = received.get_body(("plain",))
    assert body is not None
    quoted = "\n".join(f"> {line}".rstrip() for line in body.get_content().splitlines())
    reply.set_content(f"{text}\n\nOn {received['Date']}, {received['From']} wrote:\n{quoted}\n")
    return reply


def _text(reply: EmailMessage) -> str:
    body = reply.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def multipart(fields: list[tuple[str, bytes]], files: list[tuple[str, str, bytes]] | None = None) -> tuple[bytes, str]:
    """A multipart/form-data body made byte by byte, as a provider sends it (fields in their own charset)."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value + b"\r\n"
        for name, value in fields
    ]
    parts += [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        f"Content-Type: image/jpeg\r\n\r\n".encode()
        + data
        + b"\r\n"
        for name, filename, data in files or []
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def as_posted(provider: str, reply: EmailMessage) -> dict[str, Any]:
    """The keyword arguments of a POST that carries the reply as the provider posts it."""
    text = _text(reply)
    headers = [(name, str(value)) for name, value in reply.items()]
    if provider == "rfc822":
        return {"content": reply.as_bytes(), "headers": {"Content-Type": "message/rfc822"}}
    if provider == "postmark":
        name, _, address = str(reply["From"]).rpartition(" ")
        document = {
            "From": address.strip("<>"),
            "FromName": name,
            "FromFull": {"Email": address.strip("<>"), "Name": name, "MailboxHash": ""},
            "To": str(reply["To"]),
            "Subject": str(reply["Subject"]),
            "MessageID": str(uuid.uuid4()),  # Postmark's own id
            "Date": str(reply["Date"]),
            "TextBody": text,
            "HtmlBody": "",
            "StrippedTextReply": REPLY,  # Postmark cuts the quote itself
            "Headers": [{"Name": n, "Value": v} for n, v in headers if n not in ("From", "To", "Subject", "Date")],
            "Attachments": [],
        }
        return {"json": document}
    if provider == "mailgun":
        form = {
            "recipient": "care@shop.example.com",
            "sender": "zoe@example.com",
            "from": str(reply["From"]),
            "subject": str(reply["Subject"]),
            "body-plain": text,
            "stripped-text": REPLY,  # Mailgun cuts the quote itself
            "Message-Id": str(reply["Message-ID"]),
            "In-Reply-To": str(reply["In-Reply-To"]),
            "References": str(reply["References"]),
            "message-headers": json.dumps(headers),
            "timestamp": "1793520000",
            "token": "t" * 50,
            "signature": "0" * 64,
        }
        return {"data": form}
    block = reply.as_bytes().split(b"\n\n", 1)[0]
    body, content_type = multipart(
        [
            ("headers", block),
            ("from", str(reply["From"]).encode()),
            ("to", str(reply["To"]).encode()),
            ("subject", str(reply["Subject"]).encode()),
            ("text", text.encode()),
            ("envelope", b'{"to":["care@shop.example.com"],"from":"zoe@example.com"}'),
            ("charsets", b'{"to":"UTF-8","from":"UTF-8","subject":"UTF-8","text":"UTF-8"}'),
            ("SPF", b"pass"),
        ]
    )
    return {"content": body, "headers": {"Content-Type": content_type}}


def post(world: World, provider: str, who: str = "mail", **request: Any) -> Any:
    headers = {**request.pop("headers", {}), **world.as_(who)}
    return world.client.post(f"/v1/inbound/email/{provider}", headers=headers, **request)


# --- the round trip --------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_reply_to_the_apology_lands_on_the_case_thread_without_the_quote_once(world: World, provider: str) -> None:
    case_id = apologise(world)
    [received] = deliver(world)
    [apology] = world.detail(case_id)["messages"]
    assert apology["provider_id"] == str(received["Message-ID"])
    reply = reply_to(received)

    answer = post(world, provider, **as_posted(provider, reply))
    assert answer.status_code == 200, answer.text
    receipt = answer.json()
    assert receipt["duplicate"] is False
    assert (receipt["case_id"], receipt["message_id"], receipt["customer_id"]) == (case_id, apology["id"], "C-1")
    assert (receipt["matched_by"], receipt["case_status"]) == ("in_reply_to", "open")

    detail = world.detail(case_id)
    [shown] = detail["replies"]
    assert shown["text"] == REPLY  # the quote is gone
    assert shown["from_address"] == "zoe@example.com"
    assert shown["subject"] == f"Re: {received['Subject']}"
    assert shown["after_resolution"] is False
    [inbound] = [c for c in detail["contacts"] if c["direction"] == "inbound"]
    assert inbound["channel"] == "email"
    assert inbound["note"].startswith(f"email reply {receipt['id']}: Thanks, the miles arrived.")
    assert detail["case"]["customer_spoke_at"] is not None
    assert detail["case"]["customer_spoke_first"] is False  # we wrote first; she answered

    stored = world.client.get(f"/v1/inbound/{receipt['id']}", headers=world.as_("boss")).json()
    assert stored["provider"] == provider
    assert "wrote:" in stored["full_text"]  # the whole text is kept beside the reply
    assert stored["email_message_id"] in (str(reply["Message-ID"]), None)

    # The reply is feedback too: triaged, and due for an answer like everything customers write.
    feedback = world.client.get(f"/v1/feedback/{receipt['feedback_id']}", headers=world.as_("boss")).json()
    assert (feedback["channel"], feedback["customer_id"], feedback["text"]) == ("reply", "C-1", REPLY)
    assert feedback["due_at"] is not None
    assert feedback["triage"]["model"].startswith("fast")

    again = post(world, provider, **as_posted(provider, reply))  # a provider's retry
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert again.json()["id"] == receipt["id"]
    assert again.json()["feedback_id"] == receipt["feedback_id"]  # one feedback, as one reply
    detail = world.detail(case_id)
    assert len(detail["replies"]) == 1
    assert len([c for c in detail["contacts"] if c["direction"] == "inbound"]) == 1


def test_a_reply_is_matched_by_its_references_when_in_reply_to_names_another_message(world: World) -> None:
    case_id = apologise(world)
    [received] = deliver(world)
    reply = reply_to(received)
    reply.replace_header("In-Reply-To", "<a-message-of-her-own@example.com>")
    reply.replace_header("References", f"{received['Message-ID']} <a-message-of-her-own@example.com>")
    receipt = post(world, "rfc822", **as_posted("rfc822", reply)).json()
    assert (receipt["case_id"], receipt["matched_by"]) == (case_id, "references")


def test_a_reply_that_matches_no_message_is_kept_without_a_case_and_listed(world: World) -> None:
    case_id = apologise(world)
    [received] = deliver(world)
    forwarded = reply_to(received, "Is this really from you?")
    del forwarded["In-Reply-To"]
    del forwarded["References"]
    known = post(world, "rfc822", **as_posted("rfc822", forwarded)).json()
    # Her profile's address says whose it is; nothing says which case, so none is guessed.
    assert (known["case_id"], known["customer_id"], known["matched_by"]) == (None, "C-1", "sender")

    stranger = reply_to(received, "Who are you?", sender="Someone <someone@example.org>")
    stranger.replace_header("In-Reply-To", "<never-sent@shop.example.com>")
    stranger.replace_header("References", "<never-sent@shop.example.com>")
    unknown = post(world, "rfc822", **as_posted("rfc822", stranger)).json()
    assert (unknown["case_id"], unknown["customer_id"], unknown["matched_by"]) == (None, None, None)

    assert world.detail(case_id)["replies"] == []
    assert [c for c in world.detail(case_id)["contacts"] if c["direction"] == "inbound"] == []
    listed = world.client.get("/v1/inbound?unmatched=true&limit=1", headers=world.as_("boss")).json()
    assert [r["id"] for r in listed["replies"]] == [unknown["id"]]  # newest first
    rest = world.client.get(listed["next"], headers=world.as_("boss")).json()
    assert [(r["id"], r["text"]) for r in rest["replies"]] == [(known["id"], "Is this really from you?")]
    assert rest["next"] is None
    assert world.client.get("/v1/inbound", headers=world.as_("ana")).status_code == 403  # an agent reads cases
    assert world.client.get("/v1/inbound/999999", headers=world.as_("boss")).status_code == 404
    both = world.client.get(f"/v1/inbound?unmatched=true&case_id={case_id}", headers=world.as_("boss"))
    assert (both.status_code, both.json()["field"]) == (422, "unmatched")


def test_a_reply_to_a_resolved_case_is_shown_and_flagged_and_the_case_stays_resolved(world: World) -> None:
    case_id = apologise(world)
    [received] = deliver(world)
    resolved = world.post(f"/v1/cases/{case_id}/resolve", resolution="6000 miles")
    follow_up = next(m for m in resolved["messages"] if m["kind"] == "follow_up")

    receipt = post(world, "rfc822", **as_posted("rfc822", reply_to(received, "Thank you, all good now."))).json()
    assert (receipt["case_id"], receipt["case_status"]) == (case_id, "resolved")
    detail = world.detail(case_id)
    assert detail["case"]["status"] == "resolved"
    [shown] = detail["replies"]
    assert (shown["after_resolution"], shown["text"]) == (True, "Thank you, all good now.")
    still = next(m for m in detail["messages"] if m["id"] == follow_up["id"])
    assert still["status"] == "pending"  # nothing was reopened, so nothing was cancelled
    flagged = world.client.get("/v1/inbound?after_resolution=true", headers=world.as_("boss")).json()["replies"]
    assert [r["id"] for r in flagged] == [receipt["id"]]


def test_after_a_customer_replies_what_the_case_writes_is_an_answer_not_capped(db: Database) -> None:
    for world in _with_mail_keys(db, contact_cap=1):
        replied = apologise(world, "C-1")
        silent = apologise(world, "C-2", **{**ZOE, "email": "zoe.two@example.com"})
        received = {str(mail["To"]): mail for mail in deliver(world)}
        answer = post(world, "rfc822", **as_posted("rfc822", reply_to(received["zoe@example.com"])))
        assert answer.json()["case_id"] == replied

        for case_id in (replied, silent):
            world.post(f"/v1/cases/{case_id}/remedies", kind="miles", amount="6000")
        remedy = {
            case_id: next(m for m in world.detail(case_id)["messages"] if m["kind"] == "remedy")
            for case_id in (replied, silent)
        }
        assert remedy[replied]["note"] is None  # she wrote: an answer goes at once
        assert datetime.fromisoformat(remedy[replied]["not_before"]) <= datetime.now(UTC)
        assert "cap of 1" in remedy[silent]["note"]  # the same message to a customer who did not is capped


# --- refusals --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "request_", "field"),
    [
        ("postmark", {"content": b"{not json", "headers": {"Content-Type": "application/json"}}, "body"),
        ("postmark", {"json": []}, "body"),
        ("postmark", {"json": {"Subject": "Hi", "TextBody": "x"}}, "From"),
        ("postmark", {"json": {"From": "nobody", "TextBody": "x"}}, "From"),
        ("postmark", {"json": {"FromFull": {"Email": 42}, "TextBody": "x"}}, "FromFull.Email"),
        ("postmark", {"json": {"From": "zoe@example.com", "Headers": "In-Reply-To: x"}}, "Headers"),
        ("postmark", {"json": {"From": "zoe@example.com", "Headers": [{"Name": "X", "Value": 1}]}}, "Headers[0].Value"),
        ("mailgun", {"data": {"from": "zoe@example.com", "subject": "Hi"}}, "body-plain"),
        ("mailgun", {"data": {"body-plain": "Hi"}}, "from"),
        (
            "mailgun",
            {"data": {"from": "zoe@example.com", "body-plain": "x", "message-headers": "[["}},
            "message-headers",
        ),
        (
            "mailgun",
            {"data": {"from": "zoe@example.com", "body-plain": "x", "message-headers": '[["a"]]'}},
            "message-headers[0]",
        ),
        ("rfc822", {"content": b"", "headers": {"Content-Type": "message/rfc822"}}, "body"),
        ("rfc822", {"content": b"Subject: hi\r\n\r\nno sender", "headers": {"Content-Type": "message/rfc822"}}, "From"),
        ("gmail", {"json": {}}, "provider"),
    ],
)
def test_a_bad_post_is_422_naming_the_field(world: World, provider: str, request_: dict[str, Any], field: str) -> None:
    answer = post(world, provider, **request_)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field


def test_a_bad_sendgrid_form_names_the_field_and_a_wrong_media_type_is_415(world: World) -> None:
    for fields, field in (
        ([("headers", b"Message-ID: <a@b.c>"), ("text", b"hi")], "from"),
        ([("from", b"zoe@example.com"), ("text", b"hi")], "headers"),
        ([("from", b"zoe@example.com"), ("headers", b"X: y"), ("charsets", b"latin-1")], "charsets"),
    ):
        body, content_type = multipart(fields)
        answer = post(world, "sendgrid", content=body, headers={"Content-Type": content_type})
        assert (answer.status_code, answer.json()["field"]) == (422, field), answer.text
    no_boundary = post(world, "sendgrid", content=b"from=x", headers={"Content-Type": "multipart/form-data"})
    assert (no_boundary.status_code, no_boundary.json()["field"]) == (422, "body")
    wrong = post(world, "postmark", content=b"From: zoe@example.com", headers={"Content-Type": "text/plain"})
    assert (wrong.status_code, wrong.json()["field"]) == (415, "Content-Type")
    assert world.client.get("/v1/inbound?unmatched=true", headers=world.as_("boss")).json()["replies"] == []


def test_the_key_comes_as_a_bearer_token_or_a_basic_password_and_needs_inbound_write(world: World) -> None:
    email = {"json": {"From": "zoe@example.com", "Subject": "Hi", "TextBody": "Hello", "MessageID": "pm-1"}}
    url = "/v1/inbound/email/postmark"
    missing = world.client.post(url, **email)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Basic ")  # webhook senders answer a Basic challenge
    assert "Bearer" in missing.headers["www-authenticate"]
    wrong = world.client.post(url, headers={"Authorization": "Bearer amends_000000000000_" + "x" * 43}, **email)
    assert wrong.status_code == 401
    assert world.client.post(url, headers=world.as_("integration"), **email).status_code == 403  # no inbound:write
    assert world.client.post(url, headers=world.as_("ana"), **email).status_code == 403  # an agent cannot post

    basic = world.client.post(url, auth=("postmark", world.keys["mail"]), **email)
    assert basic.status_code == 200, basic.text
    assert basic.json()["customer_id"] is None
    assert world.client.post(url, auth=("postmark", "not-the-key"), **email).status_code == 401
    garbled = world.client.post(url, headers={"Authorization": "Basic %%%"}, **email)
    assert garbled.status_code == 401


def test_a_nul_in_an_email_is_dropped_rather_than_refused_by_the_database(world: World) -> None:
    email = {"From": "zoe@example.com", "Subject": "Hi\u0000", "TextBody": "Broken\u0000 client", "MessageID": "pm-9"}
    answer = post(world, "postmark", json={**email, "Headers": [{"Name": "X-Odd", "Value": "a\u0000b"}]})
    assert answer.status_code == 200, answer.text
    stored = world.client.get(f"/v1/inbound/{answer.json()['id']}", headers=world.as_("boss")).json()
    assert (stored["subject"], stored["text"], stored["headers"]) == ("Hi", "Broken client", [["X-Odd", "ab"]])


def test_a_body_over_the_limit_is_413(db: Database) -> None:
    for world in _with_mail_keys(db, inbound_max_body_bytes=64 * 1024):
        big = EmailMessage()
        big["From"] = "zoe@example.com"
        big.set_content("x" * 70_000)
        answer = post(world, "rfc822", content=big.as_bytes(), headers={"Content-Type": "message/rfc822"})
        assert (answer.status_code, answer.json()["field"]) == (413, "body")


# --- the parsers alone -----------------------------------------------------------------------------------


def test_the_reply_is_cut_at_the_quote_in_the_usual_forms_and_inline_answers_are_kept() -> None:
    assert reply_text("Thanks!\n\n-----Original Message-----\nFrom: Care\nSent: Sunday\n\nWe are sorry") == "Thanks!"
    gmail = "Thanks a lot\n\nOn Sun, Nov 1, 2026 at 10:00 AM Example Care <\ncare@example.com> wrote:\n\n> Dear Zoë,\n"
    assert reply_text(gmail) == "Thanks a lot"
    german = "Danke für die Meilen.\n\nAm So., 1. Nov. 2026 um 10:00 Uhr schrieb Example <care@example.com>:\n> Liebe"
    assert reply_text(german) == "Danke für die Meilen."
    # A language the parser has no header for: the quote at the end and the line before it go all the same.
    french = "Merci !\n\nLe dim. 1 nov. 2026 à 10:00, Example <care@example.com> a écrit :\n> Chère Zoë\n> désolés"
    assert reply_text(french) == "Merci !"
    inline = "Not great.\n> We granted 6000 miles\nThey never arrived.\n> Kind regards"
    assert reply_text(inline).startswith("Not great.\n> We granted 6000 miles\nThey never arrived.")
    assert reply_text("> only the quote\n> nothing else") == "> only the quote\n> nothing else"
    assert reply_text("") == ""


def test_an_html_only_email_is_read_as_text_and_its_blockquote_is_the_quote() -> None:
    email = EmailMessage()
    email["From"] = "=?utf-8?q?Zo=C3=AB?= <zoe@example.com>"
    email["Subject"] = "=?utf-8?q?R=C3=A9?= : AA1"
    email.set_content(
        "<html><head><style>p{}</style></head><body><p>Merci&nbsp;!</p><div>Le dim. 1 nov., Example a écrit :"
        "</div><blockquote><p>Chère Zoë</p></blockquote></body></html>",
        subtype="html",
    )
    parsed = parse_inbound(InboundProvider.RFC822, email.as_bytes(), "message/rfc822")
    assert (parsed.from_name, parsed.subject) == ("Zoë", "Ré : AA1")
    assert "> Chère Zoë" in parsed.text
    assert parsed.reply == "Merci !"  # a no-break space is a space in the text


def test_sendgrid_fields_are_read_in_the_charset_it_names_and_attachments_are_named() -> None:
    body, content_type = multipart(
        [
            ("headers", b"Message-ID: <r1@example.com>\r\nIn-Reply-To: <ours@shop.example.com>"),
            ("from", b"Zo\xeb <zoe@example.com>"),
            ("subject", "Ré: délai".encode("iso-8859-1")),
            ("text", "Café froid.\n\n> Nous sommes désolés".encode("iso-8859-1")),
            ("charsets", b'{"from":"iso-8859-1","subject":"iso-8859-1","text":"iso-8859-1"}'),
        ],
        files=[("attachment1", "bag.jpg", b"\xff\xd8\xff" + b"\x00" * 997)],
    )
    parsed = parse_inbound(InboundProvider.SENDGRID, body, content_type)
    assert (parsed.from_name, parsed.subject, parsed.reply) == ("Zoë", "Ré: délai", "Café froid.")
    assert (parsed.message_id, parsed.in_reply_to) == ("<r1@example.com>", ("<ours@shop.example.com>",))
    [photo] = parsed.attachments
    assert (photo.name, photo.content_type, photo.size) == ("bag.jpg", "image/jpeg", 1000)


def test_mailgun_headers_are_read_from_message_headers_and_its_stripped_text_is_preferred() -> None:
    headers = [["Message-Id", "<r2@example.com>"], ["References", "<a@x> <ours@shop.example.com>"]]
    form = {
        "from": "zoe@example.com",
        "subject": "Re: AA1",
        "body-plain": "Fine.\n-- \nZoë\n\n> quoted",
        "stripped-text": "Fine.",
        "message-headers": json.dumps(headers),
    }
    from urllib.parse import urlencode

    parsed = parse_inbound(InboundProvider.MAILGUN, urlencode(form).encode(), "application/x-www-form-urlencoded")
    assert (parsed.reply, parsed.message_id) == ("Fine.", "<r2@example.com>")
    assert parsed.references == ("<a@x>", "<ours@shop.example.com>")
    assert parsed.text.startswith("Fine.\n-- \nZoë")


def test_postmark_names_the_sender_from_fromfull_and_its_attachments() -> None:
    document = {
        "From": "ignored@example.com",
        "FromFull": {"Email": "zoe@example.com", "Name": "Zoë Ñúñez"},
        "Subject": "Re: AA1",
        "MessageID": "7a1e",
        "TextBody": "Here is the bag tag.",
        "Attachments": [{"Name": "tag.png", "ContentType": "image/png", "ContentLength": 2048, "Content": "..."}],
    }
    parsed = parse_inbound(InboundProvider.POSTMARK, json.dumps(document).encode(), "application/json")
    assert (parsed.from_address, parsed.from_name, parsed.provider_id) == ("zoe@example.com", "Zoë Ñúñez", "7a1e")
    assert parsed.message_id is None
    assert parsed.attachments[0].size == 2048
    with pytest.raises(InvalidInput) as refused:
        parse_inbound(InboundProvider.POSTMARK, b'{"From": "zoe@example.com", "Attachments": {}}', "application/json")
    assert refused.value.field == "Attachments"
