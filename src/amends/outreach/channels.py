"""Channels the outbox worker sends through: email over SMTP, and a file (or the console) for development. The
webhook channel is in webhook.py; channels_from_settings builds all of them.

Each takes a batch and answers one Outcome per message; it never raises for a message that failed. SMTP answers
5xx are permanent failures; 4xx answers, timeouts and lost connections are temporary. The SMTP password is never
logged or shown.
"""

from __future__ import annotations

import hashlib
import logging
import smtplib
import ssl
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email import policy
from email.errors import MessageError
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Literal

import orjson
from pydantic import SecretStr

from amends.config import ENV_PREFIX, Settings, SettingsError
from amends.outreach.outbox import Channel, Message, Outcome
from amends.outreach.webhook import WebhookChannel

__all__ = ["FileChannel", "SmtpChannel", "channels_from_settings", "message_id_for"]

log = logging.getLogger(__name__)

_DEFAULT_PORTS = {"none": 25, "starttls": 587, "tls": 465}


class _HeaderClasses(HeaderRegistry):
    """The standard header registry, but making each kind of header's class once. The standard one makes a new
    class with `type()` each time a header is set or counted: about 30% of the time composing an email took."""

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[object, type[BaseHeader]] = {}  # by the class registered for the name

    def __getitem__(self, name: str) -> type[BaseHeader]:
        kind = self.registry.get(name.lower(), self.default_class)
        made = self._made.get(kind)
        if made is None:
            made = self._made[kind] = super().__getitem__(name)
        return made


# The `email` package's default policy (what EmailMessage uses) with that registry: the same emails, composed faster.
_POLICY = policy.default.clone(header_factory=_HeaderClasses())


class SmtpChannel:
    """Email over SMTP: one connection per batch, reused for every message in it.

    `security`: `starttls` upgrades the connection before anything else is said and refuses to go on in clear
    text when the server does not offer it; `tls` speaks TLS from the start; `none` is for a relay on the same
    machine. Each message is multipart (text, and HTML when it has some) with a Message-ID that is the same on
    every attempt, so that a message sent twice can be recognised as one.
    """

    name = "email"

    def __init__(
        self,
        *,
        host: str,
        mail_from: str,
        port: int | None = None,
        security: Literal["none", "starttls", "tls"] = "starttls",
        username: str | None = None,
        password: SecretStr | None = None,
        timeout_seconds: float = 30.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        sender = parseaddr(mail_from)[1]
        if "@" not in sender or "\r" in mail_from or "\n" in mail_from:
            raise SettingsError(f"{ENV_PREFIX}MAIL_FROM", f"expected an email address, got {mail_from!r}")
        self.host = host
        self.port = port or _DEFAULT_PORTS[security]
        self.security = security
        self.username = username
        self._password = password
        self.timeout_seconds = timeout_seconds
        self.mail_from = mail_from
        # Parsed once: the same (immutable) header serves every email, where parsing it took a tenth of compose.
        self._from_header: BaseHeader = _POLICY.header_factory("From", mail_from)
        self._sender = sender
        self.domain = sender.rpartition("@")[2]
        self._tls_context = tls_context

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpChannel:
        """The SMTP channel the settings describe; SettingsError if they name no server."""
        if settings.smtp_host is None:
            raise SettingsError(f"{ENV_PREFIX}SMTP_HOST", "not set; email needs an SMTP server")
        if settings.mail_from is None:
            raise SettingsError(f"{ENV_PREFIX}MAIL_FROM", "required when smtp_host is set")
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            security=settings.smtp_security,
            username=settings.smtp_username,
            password=settings.smtp_password,
            timeout_seconds=settings.smtp_timeout_seconds,
            mail_from=settings.mail_from,
            tls_context=_trusting(settings.smtp_ca_file),
        )

    def __repr__(self) -> str:
        user = f", username={self.username!r}" if self.username else ""
        return f"SmtpChannel({self.host}:{self.port}, {self.security}{user})"

    def compose(self, message: Message, *, now: datetime | None = None) -> EmailMessage:
        """The email for a message: text, with an HTML alternative when it has one, and its headers."""
        email = EmailMessage(policy=_POLICY)
        email["From"] = self._from_header
        email["To"] = message.recipient
        email["Subject"] = message.subject
        email["Date"] = format_datetime(now or datetime.now(UTC), usegmt=True)
        email["Message-ID"] = message_id_for(message, self.domain)
        for name, value in message.headers.items():
            email[name] = value
        unsubscribe = _header(message.headers, "List-Unsubscribe") or ""
        if "<https://" in unsubscribe.lower() and _header(message.headers, "List-Unsubscribe-Post") is None:
            # RFC 8058: with an https link, mail clients may unsubscribe in one click, by POST, without a page.
            email["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        email.set_content(message.text)
        if message.html is not None:
            email.add_alternative(message.html, subtype="html")
        return email

    def send(self, messages: Sequence[Message]) -> list[Outcome]:
        """Send the messages over one connection; one outcome each, in order."""
        if not messages:
            return []
        try:
            smtp = self._connect()
        except smtplib.SMTPResponseException as exc:
            return _all_failed(messages, f"SMTP server {self.host}:{self.port} refused us: {_answer(exc)}")
        except (smtplib.SMTPException, OSError) as exc:
            return _all_failed(messages, f"cannot reach SMTP server {self.host}:{self.port}: {_describe(exc)}")
        outcomes: list[Outcome] = []
        try:
            for message in messages:
                outcome, connected = self._send_one(smtp, message)
                outcomes.append(outcome)
                if not connected:
                    break
        finally:
            _close(smtp)
        if len(outcomes) < len(messages):
            outcomes += _all_failed(messages[len(outcomes) :], "not tried: the connection to the SMTP server was lost")
        return outcomes

    def _tls(self) -> ssl.SSLContext:
        # Made once, when first needed: loading the system's certificates for every batch took 8% of a worker's
        # time, and with `security = none` they are not needed at all.
        if self._tls_context is None:
            self._tls_context = ssl.create_default_context()
        return self._tls_context

    def _connect(self) -> smtplib.SMTP:
        smtp: smtplib.SMTP
        if self.security == "tls":
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout_seconds, context=self._tls())
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_seconds)
        try:
            smtp.ehlo()
            if self.security == "starttls":
                # Raises SMTPNotSupportedError when the server offers no STARTTLS: never fall back to clear text.
                smtp.starttls(context=self._tls())
                smtp.ehlo()
            if self.username is not None:
                password = self._password.get_secret_value() if self._password is not None else ""
                smtp.login(self.username, password)
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _send_one(self, smtp: smtplib.SMTP, message: Message) -> tuple[Outcome, bool]:
        """The outcome of sending one message, and whether the connection can go on being used."""
        try:
            email = self.compose(message)
        except (MessageError, ValueError, TypeError) as exc:
            return Outcome(message.id, ok=False, permanent=True, error=f"cannot be made into an email: {exc}"), True
        recipient = parseaddr(message.recipient)[1]
        try:
            smtp.send_message(email, from_addr=self._sender, to_addrs=[recipient])
        except smtplib.SMTPRecipientsRefused as exc:
            code, answer = next(iter(exc.recipients.values()), (0, b""))
            error = f"recipient refused: {code} {_text(answer)}"
            return Outcome(message.id, ok=False, permanent=_is_permanent(code), error=error), True
        except smtplib.SMTPResponseException as exc:  # the sender or the content refused
            return Outcome(message.id, ok=False, permanent=_is_permanent(exc.smtp_code), error=_answer(exc)), True
        except smtplib.SMTPNotSupportedError as exc:  # e.g. an address that needs SMTPUTF8, which it lacks
            return Outcome(message.id, ok=False, permanent=True, error=f"not supported by the server: {exc}"), True
        except (smtplib.SMTPException, OSError) as exc:
            # The connection broke: the server may or may not have taken the message (see the delivery guarantee).
            return Outcome(message.id, ok=False, error=f"connection lost while sending: {_describe(exc)}"), False
        return Outcome(message.id, ok=True, provider_id=str(email["Message-ID"])), True


class FileChannel:
    """Writes each message as one JSON line to a file (appended) or, with no path, to standard output: for
    development and demonstrations, in place of a real channel."""

    name = "file"

    def __init__(self, path: Path | None = None) -> None:
        self.path = path

    def send(self, messages: Sequence[Message]) -> list[Outcome]:
        """Write the messages; all succeed, or all fail temporarily when the file cannot be written."""
        if not messages:
            return []
        written_at = datetime.now(UTC).isoformat()
        lines = "".join(orjson.dumps(_record(message, written_at)).decode() + "\n" for message in messages)
        try:
            if self.path is None:
                sys.stdout.write(lines)
                sys.stdout.flush()
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as file:
                    file.write(lines)
        except OSError as exc:
            return _all_failed(messages, f"cannot write {self.path or 'stdout'}: {exc}")
        where = str(self.path) if self.path is not None else "stdout"
        return [Outcome(message.id, ok=True, provider_id=f"{where}#{message.id}") for message in messages]


def channels_from_settings(settings: Settings) -> dict[str, Channel]:
    """The channels a worker sends through, by message channel: `file` always (to `outbox_file`, or stdout),
    `email` over SMTP when `smtp_host` is set, else, in development only, to the file channel too; `webhook`
    when `webhook_url` is set; `alert` (staff alerts) when `alert_webhook_url` is set. In production without an
    SMTP server there is no email channel, and email waits in the outbox; without a webhook URL, webhook
    messages wait in the outbox in every environment."""
    file = FileChannel(settings.outbox_file)
    channels: dict[str, Channel] = {"file": file}
    if settings.smtp_host is not None:
        channels["email"] = SmtpChannel.from_settings(settings)
    elif settings.environment == "development":
        channels["email"] = file
    if settings.webhook_url is not None:
        channels["webhook"] = WebhookChannel.from_settings(settings)
    alerts = WebhookChannel.for_alerts(settings)
    if alerts is not None:
        channels["alert"] = alerts
    return channels


def _trusting(ca_file: Path | None) -> ssl.SSLContext | None:
    """A context that trusts only the CAs in `ca_file`, checking host names as the default one does; None (the
    system's CAs, made when first needed) without a file."""
    if ca_file is None:
        return None
    try:
        return ssl.create_default_context(cafile=ca_file)
    except OSError as exc:  # checked with the settings, so the file changed since: ssl.SSLError is an OSError too
        raise SettingsError(f"{ENV_PREFIX}SMTP_CA_FILE", f"cannot be loaded from {ca_file}: {exc}") from exc


def message_id_for(message: Message, domain: str) -> str:
    """The Message-ID of a message's email: derived from the outbox row, so every attempt carries the same one."""
    digest = hashlib.blake2b(f"{message.id}:{message.key}".encode(), digest_size=16).hexdigest()
    return f"<{digest}@{domain}>"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return next((value for key, value in headers.items() if key.lower() == name.lower()), None)


def _record(message: Message, written_at: str) -> dict[str, object]:
    return {
        "id": message.id,
        "key": message.key,
        "channel": message.channel.value,
        "kind": message.kind.value,
        "case_id": message.case_id,
        "customer_id": message.customer_id,
        "recipient": message.recipient,
        "subject": message.subject,
        "text": message.text,
        "html": message.html,
        "headers": dict(message.headers),
        "attempt": message.attempts,
        "written_at": written_at,
    }


def _all_failed(messages: Sequence[Message], error: str) -> list[Outcome]:
    return [Outcome(message.id, ok=False, error=error) for message in messages]


def _is_permanent(code: int) -> bool:
    return 500 <= code <= 599


def _answer(exc: smtplib.SMTPResponseException) -> str:
    return f"{exc.smtp_code} {_text(exc.smtp_error)}"


def _text(answer: bytes | str) -> str:
    return answer.decode("utf-8", "replace") if isinstance(answer, bytes) else answer


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _close(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        # The outcomes are already known; a connection that will not say goodbye is simply dropped.
        smtp.close()
