"""Signed links in messages: the unsubscribe link that works without a login.

A link carries the customer id, signed with the server's secret key (itsdangerous, HMAC-SHA1 over a key
derived per purpose): it cannot be made for another customer, nor changed, without the key. An unsubscribe
link never expires (mail clients and RFC 8058 expect it to keep working), and using it twice is harmless.
"""

from __future__ import annotations

from urllib.parse import quote

from itsdangerous import BadData, URLSafeSerializer

from amends.errors import InvalidInput

__all__ = ["InvalidLink", "Links"]

_UNSUBSCRIBE = "amends.unsubscribe"


class InvalidLink(InvalidInput):
    """A link that was not made by this server, was changed, or is not for this purpose."""

    def __init__(self) -> None:
        super().__init__("token", "this link is not valid: it was changed, or it was not made by this server")


class Links:
    def __init__(self, secret: str, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._unsubscribe = URLSafeSerializer(secret, salt=_UNSUBSCRIBE)

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
