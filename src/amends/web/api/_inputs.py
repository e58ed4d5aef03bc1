"""Input types the API shares, which take what the OpenAPI schema promises and refuse the rest (a 422 naming the
field), where Pydantic's lax parsing would guess or the database would fail.

Pydantic alone reads `"0"` or `0` as an instant (1970, from Unix seconds) and `2026-05-01 10:00Z` too; and in a
JSON body `"5"` and `true` as the integer 5 and 1, or `0` as `false` (a boolean in a body is a StrictBool).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, BeforeValidator, Field, StrictInt

__all__ = ["BodyId", "BodyInt", "Id", "Instant"]

# RFC 3339, section 5.6: date "T" time, with seconds and an offset (Z or +hh:mm).
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def _rfc3339(value: object) -> object:
    if isinstance(value, datetime) or (isinstance(value, str) and _RFC3339.fullmatch(value)):
        return value
    raise ValueError("expected an RFC 3339 date-time with an offset, e.g. 2026-05-01T10:00:00Z")


Instant = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]

# A stored row's id in a path or a query: from 1 to below 2^63, what a database key holds. A larger number would
# overflow the database driver (a 500) rather than name nothing (a 404).
Id = Annotated[int, Field(ge=1, lt=2**63)]


def _integral(value: object) -> object:
    return int(value) if isinstance(value, float) and value.is_integer() else value


# An integer in a JSON body: a number with no fraction (2, or 2.0 as JSON Schema has it), never text or a boolean.
BodyInt = Annotated[StrictInt, BeforeValidator(_integral)]

# A stored row's id in a JSON body. (The bounds come before the validator: after it, Pydantic leaves them out of
# the JSON schema.)
BodyId = Annotated[StrictInt, Field(ge=1, lt=2**63), BeforeValidator(_integral)]
