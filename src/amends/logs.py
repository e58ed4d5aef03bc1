"""Logging for every process: one line per record on standard error, as text or as JSON (`log_format`), each
with the id of the HTTP request it belongs to, and with the secrets of the settings masked wherever they would
appear (a message, an exception, a database URL in a driver's error).
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

import orjson
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from amends.config import Settings

__all__ = ["REQUEST_ID", "configure_logging", "secrets_of"]

# The request a record belongs to: set by the web layer for each request, copied into its worker threads.
REQUEST_ID: ContextVar[str | None] = ContextVar("amends_request_id", default=None)
MASK = "***"
_MIN_SECRET = 6  # shorter values would mask ordinary words


def secrets_of(settings: Settings) -> list[str]:
    """The settings' secret values, longest first: keys, passwords, and the passwords inside URLs."""
    keys = (settings.secret_key, settings.smtp_password, settings.webhook_secret, settings.alert_webhook_secret)
    found = [secret.get_secret_value() for secret in keys if secret is not None]
    for url in (settings.database_url, settings.broker_url):
        if url is None:
            continue
        try:
            password = make_url(url).password
        except ArgumentError:  # a nats:// URL is not SQLAlchemy's; its password is after the first ':' of user info
            userinfo = url.partition("://")[2].rpartition("@")[0]
            password = userinfo.partition(":")[2] or None
        if password:
            found.append(str(password))
        # As written in the URL too: a password with reserved characters is percent-encoded there.
        raw = url.partition("://")[2].rpartition("@")[0].partition(":")[2]
        if raw:
            found.append(raw)
    return sorted({s for s in found if len(s) >= _MIN_SECRET}, key=len, reverse=True)


class _Masking(logging.Formatter):
    """Masks the secrets in whatever the formatter makes of a record, traceback included."""

    def __init__(self, secrets: list[str], *, as_json: bool) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        self.secrets = secrets
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        request_id = REQUEST_ID.get()
        record.request_id = request_id or "-"
        if self.as_json:
            entry: dict[str, object] = {
                "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": record.getMessage(),
            }
            if request_id is not None:
                entry["request_id"] = request_id
            for name in ("method", "path", "status", "ms"):  # the access line's fields
                if hasattr(record, name):
                    entry[name] = getattr(record, name)
            if record.exc_info:
                entry["exception"] = self.formatException(record.exc_info)
            text = orjson.dumps(entry).decode()
        else:
            text = super().format(record)
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text


def configure_logging(settings: Settings) -> None:
    """Send every logger's records (uvicorn's too) to standard error, formatted and masked."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Masking(secrets_of(settings), as_json=settings.log_format == "json"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
