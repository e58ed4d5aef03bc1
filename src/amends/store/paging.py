"""Page cursors: an opaque token for "after this (instant, id)" in lists ordered newest first."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

from amends.errors import InvalidInput

__all__ = ["decode_cursor", "encode_cursor"]


def encode_cursor(instant: datetime, number: int) -> str:
    raw = f"{instant.isoformat()}|{number}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The (instant, id) a cursor stands for; InvalidInput naming `cursor` if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, number = raw.split("|")
        instant = datetime.fromisoformat(moment)
        if instant.tzinfo is None:
            raise ValueError("naive")
        return instant, int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidInput("cursor", "not a cursor from a previous page") from exc
