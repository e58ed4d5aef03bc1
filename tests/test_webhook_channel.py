"""Webhooks to a real HTTP receiver (http.server on loopback, in a thread): what arrives, verified with the
standardwebhooks library as a receiver would; refusals that must not be retried, answers that must, a receiver
that is down and comes back, one too slow to wait for, a redirect. Time is driven with `now=`; the outbox on
PostgreSQL is covered by test_outbox.py, so these run on SQLite."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from amends.config import Settings, SettingsError
from amends.outreach.channels import channels_from_settings
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
from amends.outreach.webhook import WebhookChannel, webhook_id_for
from amends.store import Database, upgrade
from tests.conftest import NOW

SECRET = "whsec_" + base64.b64encode(b"amends-test-webhook-signing-key!").decode()
LEASE = timedelta(minutes=5)
BASE = timedelta(minutes=1)


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    client_port: int


class Receiver:
    """What the HTTP server got, and how it answers: the `script` in order, then `answer` for ever. While
    `holding`, it keeps each request waiting until `release`."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.script: list[Answer] = []
        self.answer = Answer(200, b'{"id": "sms_1"}', {"content-type": "application/json"})
        self.holding = False
        self._released = threading.Event()
        self._lock = threading.Lock()

    def take(self, request: Received) -> Answer:
        with self._lock:
            self.requests.append(request)
            answer = self.script.pop(0) if self.script else self.answer
            holding = self.holding
        if holding:
            self._released.wait(timeout=10)
        return answer

    def release(self) -> None:
        self._released.set()


def handler_for(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, so a batch can reuse its connection

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            request = Received(
                path=self.path,
                headers={name.lower(): value for name, value in self.headers.items()},
                body=self.rfile.read(length),
                client_port=self.client_address[1],
            )
            answer = receiver.take(request)
            try:
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (the slow receiver's test)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class Server:
    """A local HTTP receiver that can be stopped and started again on the same port."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/amends"

    def start(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler_for(self.receiver))
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=10)
            self._server = None


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server(Receiver())
    running.start()
    yield running
    running.receiver.release()
    running.stop()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty SQLite database (this module's only engine)."""
    database = Database(f"sqlite:///{tmp_path / 'amends.db'}")
    upgrade(database)
    yield database
    database.dispose()


def channel_for(server: Server, **changes: Any) -> WebhookChannel:
    options: dict[str, Any] = {"url": server.url, "secret": SecretStr(SECRET), "timeout_seconds": 5.0, **changes}
    return WebhookChannel(**options)


def a_draft(number: int = 1, **changes: Any) -> Draft:
    draft = Draft(
        key=f"case:{number}:empathise:webhook",
        channel=ChannelName.WEBHOOK,
        kind=MessageKind.APOLOGY,
        recipient=f"+44 7700 900{number:03d}",
        subject="",
        text=f"Your order {number} came three days late. We are sorry. Reply STOP to opt out.",
        html=f"<p>Your order {number} came three days late.</p>",
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


def deliver(db: Database, channel: WebhookChannel, *, at: timedelta = timedelta(0), max_attempts: int = 5) -> Settled:
    return deliver_due(
        db,
        {"webhook": channel},
        worker="w1",
        now=NOW + at,
        batch=50,
        lease=LEASE,
        max_attempts=max_attempts,
        backoff_base=BASE,
        backoff_cap=timedelta(hours=1),
    )


def due_in(db: Database, message: Message) -> timedelta:
    return read(db, message.id).next_attempt_at - NOW


def wait_for(condition: Callable[[], bool], *, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.01)


def verify(request: Received, secret: str = SECRET) -> Any:
    return Webhook(secret).verify(request.body, request.headers)


def test_a_message_arrives_signed_with_its_payload(db: Database, server: Server) -> None:
    messages = enqueue_all(db, [a_draft(1), a_draft(2, kind=MessageKind.REMEDY, recipient="@ana:chat.example.com")])
    server.receiver.script = [Answer(200, b'{"id": "sms_42", "status": "queued"}'), Answer(204)]
    assert deliver(db, channel_for(server)).sent == tuple(m.id for m in messages)

    first, second = server.receiver.requests
    assert first.path == "/hooks/amends"
    assert first.headers["content-type"] == "application/json"
    payload = verify(first)  # what a receiver does: raises unless the signature and timestamp hold
    assert payload == {
        "type": "message.apology",
        "timestamp": "2026-05-04T12:00:00Z",
        "data": {
            "message_id": messages[0].id,
            "key": "case:1:empathise:webhook",
            "case_id": 1,
            "customer_id": "C-1",
            "kind": "apology",
            "to": "+44 7700 900001",
            "subject": "",
            "text": "Your order 1 came three days late. We are sorry. Reply STOP to opt out.",
        },
    }
    assert first.headers["webhook-id"] == webhook_id_for(read(db, messages[0].id))
    assert verify(second)["type"] == "message.remedy"
    assert verify(second)["data"]["to"] == "@ana:chat.example.com"
    assert first.headers["webhook-id"] != second.headers["webhook-id"]
    # The receiver's id when it gives one; else the webhook-id.
    assert [read(db, m.id).provider_id for m in messages] == ["sms_42", second.headers["webhook-id"]]


def test_one_batch_reuses_one_connection(db: Database, server: Server) -> None:
    enqueue_all(db, [a_draft(n) for n in range(1, 4)])
    assert len(deliver(db, channel_for(server)).sent) == 3
    assert len({request.client_port for request in server.receiver.requests}) == 1


def test_a_tampered_body_or_another_secret_fails_verification(db: Database, server: Server) -> None:
    enqueue_all(db, [a_draft()])
    deliver(db, channel_for(server))
    (request,) = server.receiver.requests
    tampered = replace(request, body=request.body.replace(b"We are sorry", b"Pay us 100"))
    with pytest.raises(WebhookVerificationError):
        verify(tampered)
    other = "whsec_" + base64.b64encode(b"someone-else's-webhook-secret-32").decode()
    with pytest.raises(WebhookVerificationError):
        verify(request, secret=other)
    replayed = {**request.headers, "webhook-timestamp": str(int(time.time()) - 3600)}
    with pytest.raises(WebhookVerificationError):
        verify(replace(request, headers=replayed))


def test_a_retried_message_carries_the_same_webhook_id_and_body(db: Database, server: Server) -> None:
    (message,) = enqueue_all(db, [a_draft()])
    server.receiver.script = [Answer(503, b"busy")]
    assert deliver(db, channel_for(server)).retrying == (message.id,)
    assert deliver(db, channel_for(server), at=due_in(db, message)).sent == (message.id,)

    failed, accepted = server.receiver.requests
    assert failed.headers["webhook-id"] == accepted.headers["webhook-id"]
    assert failed.body == accepted.body
    assert verify(failed) == verify(accepted)


@pytest.mark.parametrize("status", [400, 404, 410])
def test_a_refusal_is_dead_after_one_request_with_no_retry_storm(db: Database, server: Server, status: int) -> None:
    messages = enqueue_all(db, [a_draft(1), a_draft(2)])
    server.receiver.answer = Answer(status, b'{"error": "unknown number"}')
    assert sorted(deliver(db, channel_for(server)).dead) == [m.id for m in messages]
    assert deliver(db, channel_for(server), at=timedelta(days=1)) == Settled()

    assert len(server.receiver.requests) == 2  # once per message, and never again
    for message in messages:
        dead = read(db, message.id)
        assert (dead.status, dead.attempts) == (MessageStatus.DEAD, 1)
        assert dead.last_error is not None
        assert f"answered {status}" in dead.last_error
        assert '{"error": "unknown number"}' in dead.last_error


@pytest.mark.parametrize(("status", "headers"), [(503, {}), (429, {"retry-after": "120"})])
def test_busy_answers_are_retried_with_backoff_until_dead(
    db: Database, server: Server, status: int, headers: dict[str, str]
) -> None:
    (message,) = enqueue_all(db, [a_draft()])
    server.receiver.answer = Answer(status, b"try later", headers)
    channel = channel_for(server)

    assert deliver(db, channel).retrying == (message.id,)
    first_wait = due_in(db, message)
    assert BASE / 2 <= first_wait <= BASE
    assert deliver(db, channel, at=first_wait - timedelta(seconds=1)) == Settled()  # not due yet
    assert deliver(db, channel, at=first_wait, max_attempts=3).retrying == (message.id,)
    second_wait = due_in(db, message) - first_wait
    assert BASE <= second_wait <= BASE * 2  # doubled
    assert deliver(db, channel, at=due_in(db, message), max_attempts=3).dead == (message.id,)

    assert len(server.receiver.requests) == 3
    dead = read(db, message.id)
    assert (dead.status, dead.attempts) == (MessageStatus.DEAD, 3)
    assert f"answered {status}" in (dead.last_error or "")
    if "retry-after" in headers:
        assert "(Retry-After: 120)" in (dead.last_error or "")


def test_while_the_receiver_is_down_messages_wait_and_go_once_when_it_is_back(db: Database, server: Server) -> None:
    messages = enqueue_all(db, [a_draft(n) for n in range(1, 6)])
    channel = channel_for(server, timeout_seconds=2.0)
    server.stop()

    assert sorted(deliver(db, channel).retrying) == [m.id for m in messages]
    waiting = [read(db, m.id) for m in messages]
    assert all(m.status is MessageStatus.PENDING and m.attempts == 1 for m in waiting)
    assert f"cannot reach webhook receiver 127.0.0.1:{server.port}" in (waiting[0].last_error or "")
    assert all(f"127.0.0.1:{server.port}" in (m.last_error or "") for m in waiting)

    server.start()
    at = max(m.next_attempt_at for m in waiting) - NOW
    assert sorted(deliver(db, channel, at=at).sent) == [m.id for m in messages]
    assert deliver(db, channel, at=at + timedelta(hours=2)) == Settled()
    ids = [request.headers["webhook-id"] for request in server.receiver.requests]
    assert len(ids) == 5
    assert len(set(ids)) == 5  # none twice, none lost
    assert all(read(db, m.id).status is MessageStatus.SENT for m in messages)


def test_a_receiver_slower_than_the_timeout_is_a_temporary_failure(db: Database, server: Server) -> None:
    slow, after = enqueue_all(db, [a_draft(1), a_draft(2)])
    server.receiver.holding = True
    assert sorted(deliver(db, channel_for(server, timeout_seconds=0.5)).retrying) == [slow.id, after.id]
    server.receiver.release()

    timed_out = read(db, slow.id)
    assert timed_out.status is MessageStatus.PENDING
    assert f"webhook receiver 127.0.0.1:{server.port} did not answer within 0.5s" in (timed_out.last_error or "")
    assert "not tried" in (read(db, after.id).last_error or "")  # one timeout, not one per message
    wait_for(lambda: len(server.receiver.requests) >= 1)
    assert len(server.receiver.requests) == 1


def test_a_redirect_is_not_followed(db: Database, server: Server) -> None:
    (message,) = enqueue_all(db, [a_draft()])
    elsewhere = f"http://127.0.0.1:{server.port}/elsewhere"
    server.receiver.answer = Answer(302, b"", {"location": elsewhere})
    assert deliver(db, channel_for(server)).dead == (message.id,)
    assert [request.path for request in server.receiver.requests] == ["/hooks/amends"]
    assert read(db, message.id).last_error == (
        f"302: redirect to {elsewhere} not followed; point webhook_url at the receiver itself"
    )


def test_a_long_error_page_is_cut_short_in_the_error(db: Database, server: Server) -> None:
    (message,) = enqueue_all(db, [a_draft()])
    server.receiver.answer = Answer(422, b"<html>" + b"x" * 100_000 + b"</html>")
    assert deliver(db, channel_for(server)).dead == (message.id,)
    error = read(db, message.id).last_error or ""
    assert error.startswith(f"webhook receiver 127.0.0.1:{server.port} answered 422 Unprocessable")
    assert len(error) < 400


def test_the_secret_is_never_sent_logged_or_shown(
    db: Database, server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    (message,) = enqueue_all(db, [a_draft()])
    server.receiver.script = [Answer(500, b"oops")]
    channel = channel_for(server)
    with caplog.at_level(logging.DEBUG):
        deliver(db, channel)
        deliver(db, channel, at=due_in(db, message))
    key = SECRET.removeprefix("whsec_")
    shown = [repr(channel), caplog.text, read(db, message.id).last_error or ""]
    shown += [f"{request.headers} {request.body!r}" for request in server.receiver.requests]
    assert all(key not in text for text in shown)


def test_the_settings_make_a_webhook_channel_only_with_a_url(server: Server) -> None:
    channel = channels_from_settings(
        Settings(webhook_url=server.url, webhook_secret=SECRET, webhook_timeout_seconds=3)  # type: ignore[arg-type]
    )["webhook"]
    assert isinstance(channel, WebhookChannel)
    assert (channel.url, channel.timeout_seconds, repr(channel)) == (
        server.url,
        3,
        f"WebhookChannel(127.0.0.1:{server.port})",
    )
    assert "webhook" not in channels_from_settings(Settings())
    assert repr(WebhookChannel(url="http://[::1]:8080/h", secret=SecretStr(SECRET))) == "WebhookChannel([::1]:8080)"
    for url, secret, named in [
        ("ftp://sms.example.com/h", SECRET, "AMENDS_WEBHOOK_URL"),
        ("https://sms.example.com:99999/h", SECRET, "AMENDS_WEBHOOK_URL"),
        ("https://[::1/h", SECRET, "AMENDS_WEBHOOK_URL"),
        ("https://sms.example.com/h", "whsec_", "AMENDS_WEBHOOK_SECRET"),
    ]:
        with pytest.raises(SettingsError) as refused:
            WebhookChannel(url=url, secret=SecretStr(secret))
        assert refused.value.field == named
    for url in ("https://sms.example.com/hooks", "http://localhost:8080/h", "http://[::1]:8080/h"):  # http: loopback
        assert Settings(webhook_url=url, webhook_secret=SECRET).webhook_url == url  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        ({"webhook_url": "https://sms.example.com/hooks"}, "webhook_secret", "required when webhook_url is set"),
        ({"webhook_url": "https://sms.example.com/hooks", "webhook_secret": "hunter2"}, "webhook_secret", "whsec_"),
        (
            {"webhook_url": "https://sms.example.com/hooks", "webhook_secret": "whsec_not base64!"},
            "webhook_secret",
            "base64",
        ),
        ({"webhook_url": "https://sms.example.com/hooks", "webhook_secret": "whsec_"}, "webhook_secret", "base64"),
        ({"webhook_secret": SECRET}, "webhook_secret", "given without webhook_url"),
        ({"webhook_url": "http://sms.example.com/hooks", "webhook_secret": SECRET}, "webhook_url", "clear text"),
        ({"webhook_url": "http://203.0.113.7/hooks", "webhook_secret": SECRET}, "webhook_url", "clear text"),
        ({"webhook_url": "sms.example.com/hooks", "webhook_secret": SECRET}, "webhook_url", "absolute URL"),
        (
            {"webhook_url": "https://sms.example.com/h", "webhook_secret": SECRET, "webhook_timeout_seconds": 0},
            "webhook_timeout_seconds",
            "greater than 0",
        ),
    ],
)
def test_unsafe_or_incomplete_webhook_settings_are_refused(overrides: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(**overrides)
    error = refused.value.errors()[0]
    assert error["loc"] == (field,)
    assert reason in error["msg"]


def test_the_timestamp_of_the_payload_is_when_the_message_was_made(db: Database, server: Server) -> None:
    (message,) = enqueue_all(db, [a_draft()])
    deliver(db, channel_for(server), at=timedelta(hours=3))
    (request,) = server.receiver.requests
    assert datetime.fromisoformat(verify(request)["timestamp"]) == message.created_at
    assert json.loads(request.body)["data"].get("html") is None
