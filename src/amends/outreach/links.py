"""Signed links in messages: the unsubscribe link and the feedback link, which work without a login.

A link carries what it is for, signed with the server's secret key (itsdangerous, HMAC-SHA1 over a key
derived per purpose): it cannot be made for another customer or request, nor changed, without the key. An
unsubscribe link never expires (mail clients and RFC 8058 expect it to keep working), and using it twice is
harmless. A feedback link is bound to one request and to its interaction, and carries when it expires: a
token for another request, or one whose request id now names another interaction, opens nothing.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from itsdangerous import BadData, URLSafeSerializer

from amends.errors import InvalidInput

__all__ = ["ExpiredLink", "FeedbackLink", "InvalidLink", "Links"]

_UNSUBSCRIBE = "amends.unsubscribe"
_FEEDBACK = "amends.feedback"


class InvalidLink(InvalidInput):
    """A link that was not made by this server, was changed, or is not for this purpose."""

    def __init__(self) -> None:
        super().__init__("token", "this link is not valid: it was changed, or it was not made by this server")


class ExpiredLink(InvalidLink):
    """A feedback link made here, unchanged, whose time is up."""

    def __init__(self) -> None:
        InvalidInput.__init__(self, "token", "this link has expired")


@dataclass(frozen=True, slots=True)
class FeedbackLink:
    """What a feedback token says: the request it opens, a digest of its interaction, and when it expires."""

    request_id: int
    interaction_digest: str
    expires_at: datetime

    def is_for(self, interaction: str) -> bool:
        return self.interaction_digest == interaction_digest(interaction)


def interaction_digest(interaction: str) -> str:
    """A short digest of an interaction (`event:<source>|<id>`), so the token stays short enough for a QR code
    and says nothing of the interaction itself."""
    digest = hashlib.blake2b(interaction.encode(), digest_size=9, person=b"amends-fb").digest()
    return base64.urlsafe_b64encode(digest).decode()


class Links:
    def __init__(self, secret: str, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._unsubscribe = URLSafeSerializer(secret, salt=_UNSUBSCRIBE)
        self._feedback = URLSafeSerializer(secret, salt=_FEEDBACK)

    def unsubscribe_token(self, customer_id: str) -> str:
        token = self._unsubscribe.dumps(customer_id)
        assert isinstance(token, str)
        return token

    def unsubscribe_url(self, customer_id: str) -> str:
        """The page where the customer stops our messages (GET shows it, POST confirms; one click by POST)."""
        return f"{self.base_url}/u/{quote(self.unsubscribe_token(customer_id), safe='')}"

    def customer_of(self, token: str) -> str:
        """The customer an unsubscribe token was made for; InvalidLink if it was not made here, or changed."""
        try:
            customer_id = self._unsubscribe.loads(token)
        except BadData:
            raise InvalidLink() from None
        if not isinstance(customer_id, str):
            raise InvalidLink()
        return customer_id

    def feedback_token(self, request_id: int, interaction: str, expires_at: datetime) -> str:
        """A token for the page of one feedback request, valid until `expires_at` (to the second)."""
        token = self._feedback.dumps([request_id, interaction_digest(interaction), int(expires_at.timestamp())])
        assert isinstance(token, str)
        return token

    def feedback_url(self, request_id: int, interaction: str, expires_at: datetime) -> str:
        """The public page of a feedback request: two open questions and an optional rating."""
        return f"{self.base_url}/f/{quote(self.feedback_token(request_id, interaction, expires_at), safe='')}"

    def request_of(self, token: str, *, now: datetime) -> FeedbackLink:
        """What a feedback token opens. InvalidLink if it was not made here or was changed; ExpiredLink if its
        time is up at `now` (the expiry is in the signed token, so the clock is the caller's, not the signer's)."""
        try:
            payload = self._feedback.loads(token)
        except BadData:
            raise InvalidLink() from None
        match payload:
            case [int(request_id), str(digest), int(expires)] if request_id > 0:
                link = FeedbackLink(request_id, digest, datetime.fromtimestamp(expires, UTC))
            case _:
                raise InvalidLink()
        if link.expires_at <= now:
            raise ExpiredLink()
        return link
