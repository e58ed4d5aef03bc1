"""Email through a real SMTP server (aiosmtpd on loopback): what arrives, parsed back with the `email` package;
refusals, a server that is down and comes back, and logging in. Here TLS is checked only as far as refusing to
go on without it; test_smtp_tls.py has servers with certificates."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from pydantic import SecretStr, ValidationError

from amends.config import Settings, SettingsError
from amends.outreach.channels import SmtpChannel, channels_from_settings
from amends.outreach.outbox import (
    ChannelName,
    Draft,
    Message,
    MessageKind,
    MessageStatus,
    Settled,
    deliver_due,
    enqueue,
    get_message,
)
from amends.store import Database
from tests.conftest import NOW

USER = "amends"
PASSWORD = "correct horse battery staple"
LEASE = timedelta(minutes=5)
BASE = timedelta(minutes=1)


class Mailbox:
    """An aiosmtpd handler that keeps every message it accepts, or answers with `refusal`."""

    def __init__(self) -> None:
        self.received: list[EmailMessage] = []
        self.envelopes: list[tuple[str | None, list[str], bool]] = []
        self.refusal: str | None = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.refusal is not None:
            return self.refusal
        content = envelope.original_content or b""
        parsed = message_from_bytes(content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.received.append(parsed)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos), bool(session.authenticated)))
        return "250 OK"


def authenticate(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (USER.encode(), PASSWORD.encode())
    return AuthResult(success=ok, handled=False)  # not handled: the server answers 235 or 535 itself


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """A local SMTP server that can be stopped and started again on the same port."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox
        self.port = free_port()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(
            self.mailbox,
            hostname="127.0.0.1",
            port=self.port,
            authenticator=authenticate,
            auth_require_tls=False,  # no certificate to offer; loopback only
        )
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server(Mailbox())
    running.start()
    yield running
    running.stop()


def channel_for(server: Server, **changes: Any) -> SmtpChannel:
    options: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": server.port,
        "security": "none",
        "mail_from": "Example Care <care@shop.example.com>",
        "timeout_seconds": 5.0,
        **changes,
    }
    return SmtpChannel(**options)


def a_draft(number: int = 1, **changes: Any) -> Draft:
    draft = Draft(
        key=f"case:{number}:empathise:email",
        channel=ChannelName.EMAIL,
        kind=MessageKind.APOLOGY,
        recipient=f"Customer {number} <customer{number}@example.com>",
        subject="We are sorry about your order",
        text=f"Your order {number} came three days late. We are sorry.",
        html=f"<p>Your order <b>{number}</b> came three days late. We are sorry.</p>",
        headers={
            "List-Unsubscribe": f"<https://amends.example.com/unsubscribe/{number}>, <mailto:unsub@shop.example.com>"
        },
        case_id=number,
        customer_id=f"C-{number}",
    )
    return replace(draft, **changes)


def enqueue_all(db: Database, drafts: Sequence[Draft]) -> list[Message]:
    with db.unit_of_work() as uow:
        stored = [enqueue(uow, draft, now=NOW)[0] for draft in drafts]
        uow.commit()
    return stored


def read(db: Database, message_id: int) -> Message:
    with db.unit_of_work() as uow:
        return get_message(uow, message_id)


def deliver(db: Database, channel: SmtpChannel, *, at: timedelta = timedelta(0), max_attempts: int = 5) -> Settled:
    return deliver_due(
        db,
        {"email": channel},
        worker="w1",
        now=NOW + at,
        batch=50,
        lease=LEASE,
        max_attempts=max_attempts,
        backoff_base=BASE,
        backoff_cap=timedelta(hours=1),
    )


def test_an_email_arrives_as_text_and_html_with_its_headers(db: Database, server: Server) -> None:
    messages = enqueue_all(db, [a_draft(1), a_draft(2, html=None, headers={}), a_draft(3)])
    assert deliver(db, channel_for(server)).sent == tuple(m.id for m in messages)

    first, plain, third = server.mailbox.received
    assert first["Subject"] == "We are sorry about your order"
    assert first["From"] == "Example Care <care@shop.example.com>"
    assert first["To"] == "Customer 1 <customer1@example.com>"
    assert first["Date"] is not None
    assert first.get_content_type() == "multipart/alternative"
    text, html = first.get_body(("plain",)), first.get_body(("html",))
    assert text is not None
    assert html is not None
    assert text.get_content().strip() == "Your order 1 came three days late. We are sorry."
    assert html.get_content().strip() == "<p>Your order <b>1</b> came three days late. We are sorry.</p>"
    # Folded onto a second line (over 78 characters), as RFC 5322 allows: unfolded, it is the header we set.
    assert first["List-Unsubscribe"].strip() == (
        "<https://amends.example.com/unsubscribe/1>, <mailto:unsub@shop.example.com>"
    )
    assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    assert plain.get_content_type() == "text/plain"
    assert plain["List-Unsubscribe"] is None
    assert plain["List-Unsubscribe-Post"] is None

    ids = [email["Message-ID"] for email in (first, plain, third)]
    assert len(set(ids)) == 3
    assert all(i.startswith("<") and i.endswith("@shop.example.com>") for i in ids)
    assert [read(db, m.id).provider_id for m in messages] == ids
    assert server.mailbox.envelopes[0][:2] == ("care@shop.example.com", ["customer1@example.com"])


def test_a_mailto_only_unsubscribe_gets_no_one_click_header(db: Database, server: Server) -> None:
    enqueue_all(db, [a_draft(headers={"List-Unsubscribe": "<mailto:unsub@shop.example.com>"})])
    deliver(db, channel_for(server))
    (email,) = server.mailbox.received
    assert email["List-Unsubscribe"] == "<mailto:unsub@shop.example.com>"
    assert email["List-Unsubscribe-Post"] is None


def test_a_message_sent_again_carries_the_same_message_id(db: Database) -> None:
    (message,) = enqueue_all(db, [a_draft()])
    channel = SmtpChannel(host="127.0.0.1", mail_from="care@shop.example.com")
    assert channel.compose(message)["Message-ID"] == channel.compose(replace(message, attempts=2))["Message-ID"]


def test_a_sender_with_a_line_break_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(SettingsError, match="MAIL_FROM"):
        SmtpChannel(host="127.0.0.1", mail_from="care@shop.example.com\r\nBcc: everyone@example.com")


def test_a_550_answer_makes_the_message_dead_after_one_attempt(db: Database, server: Server) -> None:
    (message,) = enqueue_all(db, [a_draft()])
    server.mailbox.refusal = "550 5.7.1 Message rejected"
    assert deliver(db, channel_for(server)).dead == (message.id,)
    dead = read(db, message.id)
    assert (dead.status, dead.attempts) == (MessageStatus.DEAD, 1)
    assert dead.last_error is not None
    assert "550 5.7.1 Message rejected" in dead.last_error


def test_a_451_answer_is_tried_again_later(db: Database, server: Server) -> None:
    (message,) = enqueue_all(db, [a_draft()])
    server.mailbox.refusal = "451 4.3.0 Try again later"
    assert deliver(db, channel_for(server)).retrying == (message.id,)
    server.mailbox.refusal = None
    retry_at = read(db, message.id).next_attempt_at - NOW
    assert deliver(db, channel_for(server), at=retry_at).sent == (message.id,)
    assert len(server.mailbox.received) == 1


def test_while_the_server_is_down_messages_wait_and_go_once_when_it_is_back(db: Database, server: Server) -> None:
    messages = enqueue_all(db, [a_draft(n) for n in range(1, 6)])
    channel = channel_for(server, timeout_seconds=2.0)
    server.stop()

    assert sorted(deliver(db, channel).retrying) == [m.id for m in messages]
    waiting = [read(db, m.id) for m in messages]
    assert all(m.status is MessageStatus.PENDING and m.attempts == 1 for m in waiting)
    assert all(NOW + BASE / 2 <= m.next_attempt_at <= NOW + BASE for m in waiting)
    assert all("cannot reach SMTP server" in (m.last_error or "") for m in waiting)

    at = max(m.next_attempt_at for m in waiting) - NOW
    deliver(db, channel, at=at)  # still down: the wait doubles
    at = max(read(db, m.id).next_attempt_at for m in messages) - NOW
    assert at >= BASE * 2

    server.start()
    assert sorted(deliver(db, channel, at=at).sent) == [m.id for m in messages]
    assert deliver(db, channel, at=at + timedelta(hours=2)) == Settled()
    ids = [email["Message-ID"] for email in server.mailbox.received]
    assert len(ids) == 5
    assert len(set(ids)) == 5  # none twice
    assert all(read(db, m.id).status is MessageStatus.SENT for m in messages)


def test_logging_in_sends_the_mail_as_the_user_and_never_shows_the_password(
    db: Database, server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    (message,) = enqueue_all(db, [a_draft()])
    channel = channel_for(server, username=USER, password=SecretStr(PASSWORD))
    with caplog.at_level(logging.DEBUG):
        assert deliver(db, channel).sent == (message.id,)
    assert server.mailbox.envelopes[0][2] is True  # the session was authenticated
    assert PASSWORD not in repr(channel)
    assert PASSWORD not in caplog.text


def test_a_wrong_password_is_a_temporary_failure_that_does_not_show_it(db: Database, server: Server) -> None:
    (message,) = enqueue_all(db, [a_draft()])
    wrong = "not the password"
    assert deliver(db, channel_for(server, username=USER, password=SecretStr(wrong))).retrying == (message.id,)
    failed = read(db, message.id)
    assert failed.last_error is not None
    assert "535" in failed.last_error
    assert wrong not in failed.last_error
    assert server.mailbox.received == []


def test_starttls_asked_of_a_server_without_it_never_sends_in_clear_text(db: Database, server: Server) -> None:
    (message,) = enqueue_all(db, [a_draft()])
    channel = channel_for(server, security="starttls", username=USER, password=SecretStr(PASSWORD))
    assert deliver(db, channel).retrying == (message.id,)
    assert "STARTTLS" in (read(db, message.id).last_error or "")
    assert server.mailbox.received == []


def test_the_settings_make_an_smtp_channel_or_in_development_a_file_one(tmp_path: Any) -> None:
    smtp = channels_from_settings(
        Settings(smtp_host="mail.example.com", mail_from="care@example.com", smtp_security="tls")
    )["email"]
    assert isinstance(smtp, SmtpChannel)
    assert (smtp.host, smtp.port, smtp.security) == ("mail.example.com", 465, "tls")
    development = channels_from_settings(Settings(outbox_file=tmp_path / "out.jsonl"))
    assert development["email"] is development["file"]
    assert "email" not in channels_from_settings(Settings(environment="production"))


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"smtp_host": "mail.example.com"}, "mail_from"),
        (
            {
                "smtp_host": "mail.example.com",
                "mail_from": "a@example.com",
                "smtp_security": "none",
                "smtp_username": "u",
            },
            "smtp_username",
        ),
        ({"smtp_password": "secret"}, "smtp_password"),
        ({"mail_from": "nobody"}, "mail_from"),
        ({"outbox_backoff_base_seconds": 600, "outbox_backoff_cap_seconds": 60}, "outbox_backoff_cap_seconds"),
    ],
)
def test_unsafe_or_incomplete_mail_settings_are_refused(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(**overrides)
    assert refused.value.errors()[0]["loc"] == (field,)
