"""Email over real TLS: aiosmtpd on loopback with a certificate from a private CA (made by trustme), by STARTTLS
and by TLS from the start. The channel is built from the settings, as a worker builds it. It delivers when
`smtp_ca_file` trusts the CA and the certificate names the host; otherwise it fails, and nothing (neither the
message nor the password) is said in clear text, even to a server that would take it."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from pydantic import SecretStr, ValidationError

from amends.config import Settings, SettingsError, load_settings
from amends.outreach.channels import SmtpChannel
from amends.outreach.outbox import MessageStatus
from amends.store import Database, upgrade
from tests.test_smtp_channel import PASSWORD, USER, Mailbox, a_draft, deliver, enqueue_all, free_port, read

Security = Literal["starttls", "tls"]
MODES: tuple[Security, ...] = ("starttls", "tls")


class TlsMailbox(Mailbox):
    """A mailbox that also notes, for each message, the TLS version it came over (None: clear text), and every
    login attempt, successful or not."""

    def __init__(self) -> None:
        super().__init__()
        self.tls_versions: list[str | None] = []
        self.logins: list[bytes] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert server.transport is not None
        ssl_object = server.transport.get_extra_info("ssl_object")
        self.tls_versions.append(ssl_object.version() if ssl_object is not None else None)
        return await super().handle_DATA(server, session, envelope)

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        if isinstance(data, LoginPassword):
            self.logins.append(data.password)
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (USER.encode(), PASSWORD.encode())
        return AuthResult(success=ok, handled=False)


@dataclass
class TlsServer:
    mailbox: TlsMailbox
    port: int


@contextmanager
def tls_server(security: Security, certificate: trustme.LeafCert, *, strict: bool = True) -> Iterator[TlsServer]:
    """An SMTP server on loopback that offers `certificate`: by STARTTLS on a plain connection, or from the start.

    `strict`: a STARTTLS server that refuses mail and logins before the upgrade, as a submission server should.
    Not strict, it takes both in clear text too: the server a test of "never in clear text" needs, since a strict
    one would refuse a client that went on without TLS and hide the mistake."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(context)
    mailbox = TlsMailbox()
    port = free_port()
    options: dict[str, Any] = {"hostname": "127.0.0.1", "port": port, "authenticator": mailbox.authenticate}
    if security == "starttls":
        controller = Controller(
            mailbox, tls_context=context, require_starttls=strict, auth_require_tls=strict, **options
        )
    else:
        # aiosmtpd counts only a STARTTLS upgrade as TLS when it decides whether to allow AUTH; here the whole
        # connection is TLS, so it must be told not to refuse the login.
        controller = Controller(mailbox, ssl_context=context, auth_require_tls=False, **options)
    controller.start()
    try:
        yield TlsServer(mailbox, port)
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA(organization_name="amends test CA")


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Database]:
    """An outbox on SQLite: what is tested here is the channel, on any engine the same."""
    database = Database(f"sqlite:///{tmp_path / 'amends.db'}")
    upgrade(database)
    yield database
    database.dispose()


def channel_for(server: TlsServer, security: Security, ca_file: Path | None, host: str = "localhost") -> SmtpChannel:
    settings = Settings(
        smtp_host=host,
        smtp_port=server.port,
        smtp_security=security,
        smtp_ca_file=ca_file,
        smtp_username=USER,
        smtp_password=SecretStr(PASSWORD),
        smtp_timeout_seconds=5.0,
        mail_from="Example Care <care@shop.example.com>",
    )
    return SmtpChannel.from_settings(settings)


@pytest.mark.parametrize("security", MODES)
@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_mail_goes_over_tls_and_logs_in_when_the_ca_file_trusts_the_servers_certificate(
    outbox: Database, ca: trustme.CA, ca_file: Path, security: Security, host: str
) -> None:
    (message,) = enqueue_all(outbox, [a_draft()])
    with tls_server(security, ca.issue_cert("localhost", "127.0.0.1")) as server:
        assert deliver(outbox, channel_for(server, security, ca_file, host)).sent == (message.id,)
    (email,) = server.mailbox.received
    assert email["Message-ID"] == read(outbox, message.id).provider_id
    (version,) = server.mailbox.tls_versions
    assert version in ("TLSv1.2", "TLSv1.3")
    assert server.mailbox.envelopes[0][2] is True  # logged in, over TLS


@pytest.mark.parametrize("security", MODES)
@pytest.mark.parametrize("trusting", ["the system's CAs", "another CA"])
def test_a_certificate_from_a_ca_not_trusted_is_refused_and_nothing_goes_in_clear_text(
    outbox: Database, ca: trustme.CA, tmp_path: Path, security: Security, trusting: str
) -> None:
    (message,) = enqueue_all(outbox, [a_draft()])
    other_ca_file = None
    if trusting == "another CA":
        other_ca_file = tmp_path / "other-ca.pem"
        trustme.CA().cert_pem.write_to_path(str(other_ca_file))
    with tls_server(security, ca.issue_cert("localhost"), strict=False) as server:
        assert deliver(outbox, channel_for(server, security, other_ca_file)).retrying == (message.id,)
    failed = read(outbox, message.id)
    assert failed.status is MessageStatus.PENDING
    assert "CERTIFICATE_VERIFY_FAILED" in (failed.last_error or "")
    assert server.mailbox.received == []
    assert server.mailbox.logins == []


@pytest.mark.parametrize("security", MODES)
def test_a_certificate_for_another_host_is_refused_and_nothing_goes_in_clear_text(
    outbox: Database, ca: trustme.CA, ca_file: Path, security: Security
) -> None:
    (message,) = enqueue_all(outbox, [a_draft()])
    with tls_server(security, ca.issue_cert("mail.example.net"), strict=False) as server:
        assert deliver(outbox, channel_for(server, security, ca_file)).retrying == (message.id,)
    error = read(outbox, message.id).last_error or ""
    assert "CERTIFICATE_VERIFY_FAILED" in error
    assert "mismatch" in error.lower()
    assert server.mailbox.received == []
    assert server.mailbox.logins == []


def test_a_ca_file_that_is_missing_or_holds_no_certificate_stops_start_up_naming_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no amends.toml
    monkeypatch.setenv("AMENDS_SMTP_HOST", "mail.example.com")
    monkeypatch.setenv("AMENDS_MAIL_FROM", "care@example.com")
    not_a_certificate = tmp_path / "notes.txt"
    not_a_certificate.write_text("not a certificate\n", encoding="utf-8")
    for path, reason in (
        (tmp_path / "missing.pem", "cannot be read: No such file or directory"),
        (tmp_path, "cannot be read: Is a directory"),
        (not_a_certificate, "holds no PEM certificate"),
    ):
        monkeypatch.setenv("AMENDS_SMTP_CA_FILE", str(path))
        with pytest.raises(SettingsError) as refused:
            load_settings()
        assert refused.value.field == "AMENDS_SMTP_CA_FILE"
        assert reason in refused.value.reason


def test_a_ca_file_without_tls_is_refused(ca_file: Path) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(smtp_host="127.0.0.1", mail_from="care@example.com", smtp_security="none", smtp_ca_file=ca_file)
    assert refused.value.errors()[0]["loc"] == ("smtp_ca_file",)
