"""What amends knows of how to reach a customer: name, email, phone, postal address, language and time zone.

The company's own systems say it, as events like any other: a `customer.profile` (or `customer.updated`)
event for the customer carries the fields that changed, and the profile is every such event folded in event
time, the latest value of each field winning. Nothing is copied at ingest: the profile is read when a
message is written, so a late event or a correction counts from then on. A value that cannot be used (an
email without an `@`, a time zone the tz database does not know) counts as absent, and the profile says why
in `problems`, so a message is never written to a broken address.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa

from amends.store import UnitOfWork, tables

__all__ = ["DEFAULT_PROFILE_EVENTS", "CustomerProfile", "customer_profile", "customers_with_email", "profile_from_data"]

DEFAULT_PROFILE_EVENTS = ("customer.profile", "customer.updated")

_events = tables.events
_EMAIL = re.compile(r"^[^@\s<>,;\"]{1,64}@[^@\s<>,;\"]{1,255}\.[^@\s<>,;\"]{1,63}$")
_PHONE = re.compile(r"^\+?[0-9 ()./-]{6,30}$")
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")
_CHANNELS = ("email", "sms", "card")
_MAX_TEXT = 500


@dataclass(frozen=True, slots=True)
class CustomerProfile:
    customer_id: str
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    address: tuple[str, ...] = ()  # the postal address, one line each, without the name
    language: str | None = None  # a BCP 47 tag as given: de-AT
    timezone: str | None = None  # an IANA zone the tz database knows
    channel: str | None = None  # the customer's own preference: email, sms or card
    problems: tuple[str, ...] = field(default=())  # values given but not usable, and why

    @property
    def postal_block(self) -> str:
        """The name and address as written on an envelope; empty without an address."""
        if not self.address:
            return ""
        return "\n".join([self.name or "", *self.address]).strip()


def customer_profile(uow: UnitOfWork, customer_id: str, *, event_types: Sequence[str]) -> CustomerProfile:
    """The customer's profile from their profile events, oldest first, the latest value of each field winning.
    A customer with no such events has an empty profile (every field None)."""
    if not event_types:
        return CustomerProfile(customer_id)
    rows = uow.execute(
        sa.select(_events.c.data)
        .where(_events.c.subject == customer_id, _events.c.type.in_(list(event_types)))
        .order_by(_events.c.time, _events.c.seq)
    ).scalars()
    return profile_from_data(customer_id, rows)


def customers_with_email(uow: UnitOfWork, address: str, *, event_types: Sequence[str], limit: int = 10) -> list[str]:
    """The customers whose profile's email is `address` now (compared without regard to case), at most `limit`.

    A profile event ever naming the address makes a candidate, and the candidate's profile as it is now decides:
    an address a customer has since changed no longer finds them. Reads every profile event (the events table has
    no index on `data`), so it is for the rare email that names no message of ours, not for each event."""
    wanted = address.strip().lower()
    if not event_types or not wanted:
        return []
    email = sa.func.lower(_events.c.data["email"].as_string())
    candidates = uow.execute(
        sa.select(_events.c.subject)
        .where(_events.c.type.in_(list(event_types)), email == wanted)
        .group_by(_events.c.subject)
        .order_by(_events.c.subject)
        .limit(limit * 10)
    ).scalars()
    found: list[str] = []
    for subject in candidates:
        current = customer_profile(uow, subject, event_types=event_types).email
        if current is not None and current.lower() == wanted:
            found.append(subject)
            if len(found) == limit:
                break
    return found


def profile_from_data(customer_id: str, updates: Iterable[Any]) -> CustomerProfile:
    """Fold profile updates (event data, oldest first) into a profile. A field set to null clears it."""
    values: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for data in updates:
        if not isinstance(data, Mapping):
            continue
        for name, (value, problem) in _fields(data).items():
            values[name] = value
            if problem is None:
                problems.pop(name, None)
            else:
                problems[name] = problem
    return CustomerProfile(customer_id, **values, problems=tuple(f"{k}: {v}" for k, v in sorted(problems.items())))


def _fields(data: Mapping[str, Any]) -> dict[str, tuple[Any, str | None]]:
    """Each profile field `data` says something about: (its value or None, why a given value is unusable)."""
    out: dict[str, tuple[Any, str | None]] = {}
    name = _first(data, "name", "full_name")
    if name is _ABSENT and ("first_name" in data or "last_name" in data):
        name = " ".join(str(data[k]).strip() for k in ("first_name", "last_name") if data.get(k)) or None
    if name is not _ABSENT:
        out["name"] = _text(name, "name")
    if (email := _first(data, "email")) is not _ABSENT:
        out["email"] = _checked(email, _EMAIL, "email", "an address like name@example.com")
    if (phone := _first(data, "phone", "mobile")) is not _ABSENT:
        out["phone"] = _checked(phone, _PHONE, "phone", "digits, spaces and + ( ) . / - only")
    if (language := _first(data, "language", "locale")) is not _ABSENT:
        out["language"] = _checked(language, _LANGUAGE, "language", "a language tag such as en or de-AT")
    if (zone := _first(data, "timezone", "time_zone", "tz")) is not _ABSENT:
        out["timezone"] = _zone(zone)
    if (address := _first(data, "address", "postal_address")) is not _ABSENT:
        out["address"] = _address(address)
    if (channel := _first(data, "channel", "preferred_channel")) is not _ABSENT:
        if channel is None or str(channel).strip().lower() in _CHANNELS:
            out["channel"] = (None if channel is None else str(channel).strip().lower(), None)
        else:
            out["channel"] = (None, f"{str(channel)[:50]!r} is not one of {', '.join(_CHANNELS)}")
    return out


_ABSENT: Any = object()


def _first(data: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if name in data:
            return data[name]
    return _ABSENT


def _text(value: Any, what: str) -> tuple[str | None, str | None]:
    if value is None:
        return None, None
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return None, f"expected text, got {type(value).__name__}"
    text = " ".join(str(value).split())
    if not text:
        return None, None
    if len(text) > _MAX_TEXT:
        return None, f"longer than {_MAX_TEXT} characters"
    return text, None


def _checked(value: Any, pattern: re.Pattern[str], what: str, expected: str) -> tuple[str | None, str | None]:
    text, problem = _text(value, what)
    if text is None:
        return None, problem
    if not pattern.match(text):
        return None, f"{text[:80]!r} is not usable: expected {expected}"
    return text, None


def _zone(value: Any) -> tuple[str | None, str | None]:
    text, problem = _text(value, "timezone")
    if text is None:
        return None, problem
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        return None, f"{text[:80]!r} is not a time zone the tz database knows (e.g. Europe/Berlin)"
    return text, None


def _address(value: Any) -> tuple[tuple[str, ...], str | None]:
    lines: list[str] = []
    if value is None:
        return (), None
    if isinstance(value, str):
        lines = [" ".join(line.split()) for line in value.splitlines()]
    elif isinstance(value, list | tuple):
        lines = [" ".join(str(line).split()) for line in value if isinstance(line, str | int)]
    elif isinstance(value, Mapping):
        postcode = value.get("postcode") or value.get("postal_code") or value.get("zip")
        street = " ".join(str(value[k]) for k in ("street", "house") if isinstance(value.get(k), str | int))
        for item in (value.get("line1"), value.get("line2"), street, _joined(postcode, value.get("city"))):
            if isinstance(item, str | int):
                lines.append(" ".join(str(item).split()))
        for part in ("region", "country"):
            if isinstance(value.get(part), str):
                lines.append(" ".join(value[part].split()))
    else:
        return (), f"expected text, a list of lines or a mapping, got {type(value).__name__}"
    lines = [line for line in lines if line]
    if sum(map(len, lines)) > _MAX_TEXT or len(lines) > 10:
        return (), "longer than an envelope takes (10 lines, 500 characters)"
    return tuple(lines), None


def _joined(*parts: Any) -> str:
    return " ".join(str(part) for part in parts if isinstance(part, str | int) and str(part).strip())
