"""The webhook channel: each message is one JSON POST to an SMS or chat provider (or a relay of yours), signed the
Standard Webhooks way, with a webhook-id that is the same on every attempt so that the receiver can drop a repeat.

2xx is sent; 408, 425, 429 and 5xx are temporary; every other answer is permanent, so a receiver that refuses a
message is not asked again and again. The secret is never logged or shown (docs/outreach-delivery.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
import orjson
from pydantic import SecretStr
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

from amends.config import ENV_PREFIX, Settings, SettingsError
from amends.outreach.outbox import Message, Outcome

__all__ = ["WebhookChannel", "webhook_id_for"]

_TEMPORARY_STATUSES = frozenset({408, 425, 429})  # timeout, too early, too many requests; and every 5xx
_MAX_SHOWN_CHARS = 300  # of a response body, in an error
_MAX_READ_BYTES = 64 * 1024  # of a response body: enough for an id, and no more of a receiver's page
_MAX_PROVIDER_ID_CHARS = 500  # the width of messages.provider_id


class WebhookChannel:
    """Messages as signed JSON POSTs to one URL: one client per batch, its connections reused for every message.

    Each request carries `webhook-id`, `webhook-timestamp` and `webhook-signature` (Standard Webhooks, HMAC-SHA256
    with `secret`), and a body of `{"type": "message.<kind>", "timestamp", "data": {...}}`. Redirects are not
    followed: the signature is for this URL's receiver, and a moved receiver is a setting to change.
    """

    name = "webhook"

    def __init__(
        self,
        *,
        url: str,
        secret: SecretStr,
        timeout_seconds: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        refused = SettingsError(f"{ENV_PREFIX}WEBHOOK_URL", "expected an absolute http or https URL")
        try:
            parts = urlsplit(url)
            port = parts.port  # raises ValueError for a port that is not a number from 0 to 65535
        except ValueError:
            raise refused from None
        if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
            raise refused
        try:
            self._webhook = Webhook(secret.get_secret_value())
        except (ValueError, EmptyWebhookSecretError):  # not chained: an error about a secret never quotes it
            raise SettingsError(f"{ENV_PREFIX}WEBHOOK_SECRET", "expected whsec_ followed by base64") from None
        self.url = url
        # Errors name the host, never the whole URL: some providers put a token in its path or query.
        hostname = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        self.host = hostname if port is None else f"{hostname}:{port}"
        self.timeout_seconds = timeout_seconds
        self._transport = transport

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookChannel:
        """The webhook channel the settings describe; SettingsError if they name no URL or no secret."""
        if settings.webhook_url is None:
            raise SettingsError(f"{ENV_PREFIX}WEBHOOK_URL", "not set; the webhook channel needs a receiver")
        if settings.webhook_secret is None:
            raise SettingsError(f"{ENV_PREFIX}WEBHOOK_SECRET", "required when webhook_url is set")
        return cls(
            url=settings.webhook_url,
            secret=settings.webhook_secret,
            timeout_seconds=settings.webhook_timeout_seconds,
        )

    @classmethod
    def for_alerts(cls, settings: Settings) -> WebhookChannel | None:
        """The channel of staff alerts (alert_webhook_url), or None when none is set."""
        if settings.alert_webhook_url is None or settings.alert_webhook_secret is None:
            return None
        return cls(
            url=settings.alert_webhook_url,
            secret=settings.alert_webhook_secret,
            timeout_seconds=settings.webhook_timeout_seconds,
        )

    def __repr__(self) -> str:
        return f"WebhookChannel({self.host})"

    def body(self, message: Message) -> bytes:
        """The JSON a message is sent as. It is the same on every attempt; only the signature headers change."""
        created_at = message.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
        return orjson.dumps(
            {
                "type": f"message.{message.kind.value}",
                "timestamp": created_at,
                "data": {
                    "message_id": message.id,
                    "key": message.key,
                    "case_id": message.case_id,
                    "customer_id": message.customer_id,
                    "kind": message.kind.value,
                    "to": message.recipient,
                    "subject": message.subject,
                    "text": message.text,
                },
            }
        )

    def send(self, messages: Sequence[Message]) -> list[Outcome]:
        """POST the messages over one client; one outcome each, in order.

        A connection that fails or times out ends the batch: the rest are temporary failures without being
        tried, so a receiver that stopped answering costs one timeout, not one per message.
        """
        if not messages:
            return []
        outcomes: list[Outcome] = []
        with httpx.Client(
            timeout=self.timeout_seconds,
            follow_redirects=False,
            transport=self._transport,
            headers={"user-agent": "amends-webhook"},
        ) as client:
            for message in messages:
                outcome, reachable = self._send_one(client, message)
                outcomes.append(outcome)
                if not reachable:
                    break
        if len(outcomes) < len(messages):
            error = f"not tried: the webhook receiver at {self.host} failed on an earlier message of the batch"
            outcomes += [Outcome(message.id, ok=False, error=error) for message in messages[len(outcomes) :]]
        return outcomes

    def _send_one(self, client: httpx.Client, message: Message) -> tuple[Outcome, bool]:
        """The outcome of one POST, and whether the receiver can be asked again in this batch."""
        webhook_id = webhook_id_for(message)
        body = self.body(message)
        sent_at = datetime.now(UTC)  # Standard Webhooks receivers refuse a timestamp far from their clock
        headers = {
            "content-type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": self._webhook.sign(webhook_id, sent_at, body.decode()),
        }
        try:
            with client.stream("POST", self.url, content=body, headers=headers) as response:
                # Once the status is in, it decides: a body cut short only shortens the error shown.
                answer, whole = _read_some(response)
        except httpx.TimeoutException as exc:
            error = f"webhook receiver {self.host} did not answer within {self.timeout_seconds:g}s: {_describe(exc)}"
            return Outcome(message.id, ok=False, error=error), False
        except httpx.ConnectError as exc:
            error = f"cannot reach webhook receiver {self.host}: {_describe(exc)}"
            return Outcome(message.id, ok=False, error=error), False
        except httpx.TransportError as exc:
            # The receiver may or may not have taken the message (see the delivery guarantee): it goes again.
            error = f"connection to webhook receiver {self.host} lost while sending: {_describe(exc)}"
            return Outcome(message.id, ok=False, error=error), False
        return self._outcome(message, response, answer, webhook_id), whole

    def _outcome(self, message: Message, response: httpx.Response, answer: bytes, webhook_id: str) -> Outcome:
        status = response.status_code
        if 200 <= status <= 299:
            return Outcome(message.id, ok=True, provider_id=_provider_id(answer) or webhook_id)
        if 300 <= status <= 399:
            location = response.headers.get("location", "nowhere")[:_MAX_SHOWN_CHARS]
            error = f"{status}: redirect to {location} not followed; point webhook_url at the receiver itself"
            return Outcome(message.id, ok=False, permanent=True, error=error)
        error = f"webhook receiver {self.host} answered {status} {response.reason_phrase}".rstrip()
        if shown := _shown(answer):
            error += f": {shown}"
        if (retry_after := response.headers.get("retry-after")) is not None:
            # The outbox's backoff decides when; the receiver's wish is kept with the error for whoever looks.
            error += f" (Retry-After: {retry_after[:40]})"
        temporary = status in _TEMPORARY_STATUSES or 500 <= status <= 599
        return Outcome(message.id, ok=False, permanent=not temporary, error=error)


def webhook_id_for(message: Message) -> str:
    """The webhook-id of a message: derived from the outbox row, so every attempt carries the same one."""
    digest = hashlib.blake2b(f"{message.id}:{message.key}".encode(), digest_size=16).hexdigest()
    return f"msg_{digest}"


def _read_some(response: httpx.Response) -> tuple[bytes, bool]:
    """Up to _MAX_READ_BYTES of the response body (a receiver's long error page is not worth reading whole), and
    False when reading it failed, so the connection is not to be trusted with another message."""
    read = bytearray()
    try:
        for chunk in response.iter_bytes():
            read += chunk
            if len(read) >= _MAX_READ_BYTES:
                break
    except httpx.RequestError:  # cut off, timed out, or not decodable (a bad gzip)
        return bytes(read[:_MAX_READ_BYTES]), False
    return bytes(read[:_MAX_READ_BYTES]), True


def _provider_id(answer: bytes) -> str | None:
    """The receiver's id for the message: a string `id` in a JSON object, when it answers with one."""
    try:
        document = orjson.loads(answer)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(document, dict):
        return None
    provider_id = document.get("id")
    if not isinstance(provider_id, str) or not provider_id.strip() or len(provider_id) > _MAX_PROVIDER_ID_CHARS:
        return None
    return provider_id


def _shown(answer: bytes) -> str:
    """The start of a response body for an error: one line, at most _MAX_SHOWN_CHARS characters."""
    text = " ".join(answer.decode("utf-8", "replace").split())
    return text if len(text) <= _MAX_SHOWN_CHARS else text[: _MAX_SHOWN_CHARS - 1] + "…"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
