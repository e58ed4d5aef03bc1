"""Instants as the API takes them: RFC 3339 date-times with an offset, as the OpenAPI schema says (`date-time`).

Pydantic alone would also read `"0"` or `0` as an instant (1970, from Unix seconds) and `2026-05-01 10:00Z`; a
client that sends those gets a 422 naming the field rather than a guess. (Booleans and integers in bodies are
pydantic's StrictBool and StrictInt, for the same reason: `0` is not `false`, nor `"5"` or `true` a number.)
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, BeforeValidator

__all__ = ["Instant"]

# RFC 3339, section 5.6: date "T" time, with seconds and an offset (Z or +hh:mm).
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def _rfc3339(value: object) -> object:
    if isinstance(value, datetime) or (isinstance(value, str) and _RFC3339.fullmatch(value)):
        return value
    raise ValueError("expected an RFC 3339 date-time with an offset, e.g. 2026-05-01T10:00:00Z")


Instant = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]
