"""The event envelope: CloudEvents 1.0 in structured JSON form, as amends accepts it.

Required: `id`, `source`, `type`, `time` (with a time zone, in the years 1900 to 2999; kept in UTC) and
`subject` (the customer's id). `data` is a JSON object. Other CloudEvents attributes and extensions are kept as sent.
Validation runs on every ingested event, so it is a TypedDict checked by pydantic-core, not a model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NotRequired

import orjson
from pydantic import AwareDatetime, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict

__all__ = ["EARLIEST", "ENVELOPE_SCHEMA", "LATEST", "Event", "Violation", "validate_event"]

# The instants an event may have. Detection adds windows and deadlines of up to a hundred years each
# (durations.MAX_DURATION) to them, which must stay within Python's years 1 to 9999; and a time outside is a
# placeholder ("never", "unknown"), not when something happened.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)
# CloudEvents 1.0 §3.1.1: extension attribute names are lower-case letters and digits.
_EXTENSION_NAME = re.compile(r"^[a-z0-9]{1,20}$")
_JSON_MEDIA_TYPE = re.compile(r"^application/([\w.+-]+\+)?json(\s*;.*)?$", re.IGNORECASE)


def _no_epoch_numbers(value: Any) -> Any:
    # Pydantic would read a number as seconds since the epoch; CloudEvents times are RFC 3339 text.
    if isinstance(value, int | float):
        raise ValueError("must be an RFC 3339 timestamp such as 2024-05-01T12:00:00Z, not a number")
    return value


@with_config(ConfigDict(extra="allow"))
class _Envelope(TypedDict):
    """The wire shape of one event (the schema published in the API docs)."""

    specversion: NotRequired[Literal["1.0"]]
    id: Annotated[str, Field(min_length=1, max_length=500, description="Unique within its source.")]
    source: Annotated[str, Field(min_length=1, max_length=500, description="The system that sent it.")]
    type: Annotated[str, Field(min_length=1, max_length=200, examples=["order.delivered"])]
    time: Annotated[
        AwareDatetime,
        BeforeValidator(_no_epoch_numbers),
        Field(description="When it happened, RFC 3339 with a time zone."),
    ]
    subject: Annotated[str, Field(min_length=1, max_length=200, description="The customer's id.")]
    data: NotRequired[dict[str, Any]]
    datacontenttype: NotRequired[str]
    dataschema: NotRequired[Annotated[str, Field(max_length=2000)]]


_ADAPTER: TypeAdapter[_Envelope] = TypeAdapter(_Envelope)
_KNOWN = frozenset(_Envelope.__annotations__)
_CORE = frozenset({"specversion", "id", "source", "type", "time", "subject", "data"})

ENVELOPE_SCHEMA: dict[str, Any] = _ADAPTER.json_schema()


@dataclass(frozen=True, slots=True)
class Event:
    """One fact about one customer, from one of the company's systems. `time` is aware UTC."""

    id: str
    source: str
    type: str
    time: datetime
    subject: str
    data: dict[str, Any] = field(default_factory=dict)
    attributes: dict[str, Any] | None = None  # optional CloudEvents attributes and extensions

    def envelope(self) -> dict[str, Any]:
        """The event as a CloudEvents 1.0 JSON object."""
        return {
            "specversion": "1.0",
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "time": self.time.isoformat().replace("+00:00", "Z"),
            "subject": self.subject,
            **(self.attributes or {}),
            "data": self.data,
        }


@dataclass(frozen=True, slots=True)
class Violation:
    """Why one item was refused: the field (a dotted path) and the reason."""

    field: str
    reason: str


def validate_event(item: Any) -> Event | Violation:
    """Validate one decoded JSON item as an event."""
    if not isinstance(item, dict):
        return Violation("event", f"expected a JSON object, got {_json_kind(item)}")
    try:
        valid = _ADAPTER.validate_python(item)
    except ValidationError as exc:
        return _first_violation(exc)
    attributes: dict[str, Any] | None = None
    if len(valid.keys() - _CORE):
        attributes = {k: v for k, v in valid.items() if k not in _CORE}
        if (problem := _check_attributes(attributes)) is not None:
            return problem
    if (problem := _find_nul(valid)) is not None:
        return problem
    time = valid["time"]
    if not EARLIEST <= time < LATEST:  # compared as instants: converting 0001-01-01T00:00+01:00 would overflow
        return Violation("time", f"must lie in the years {EARLIEST.year} to {LATEST.year - 1} (UTC), got {time}")
    return Event(
        id=valid["id"],
        source=valid["source"],
        type=valid["type"],
        time=time.astimezone(UTC),
        subject=valid["subject"],
        data=valid.get("data", {}),
        attributes=attributes,
    )


_NUL = "\x00"
_NUL_REASON = "must not contain the NUL character (\\u0000); databases cannot store it in text"


def _find_nul(valid: Mapping[str, Any]) -> Violation | None:
    # PostgreSQL refuses NUL in text and jsonb, and SQLite's text functions stop at it: an event holding
    # one could not be stored intact, so it is refused here with the field named. JSON escapes NUL as
    # \u0000, so one search of the serialised event rules it out; only a hit is looked at closely.
    try:
        serialised = orjson.dumps(valid, default=str)
    except orjson.JSONEncodeError:
        # a value JSON cannot hold; only Python callers (a Parquet file's 128-bit integers) can hand one in
        return _unencodable(valid, ()) or Violation("event", "cannot be written as JSON")
    if b"\\u0000" not in serialised:
        return None
    path = _nul_path(valid, ())  # a plain dict at run time: pydantic returns TypedDicts as dicts
    return None if path is None else Violation(".".join(path), _NUL_REASON)


_INT64 = (-(2**63), 2**64 - 1)  # what orjson writes: signed and unsigned 64-bit integers


def _unencodable(value: Any, path: tuple[str, ...]) -> Violation | None:
    """The first value that cannot be written as JSON: an integer past 64 bits, or text with a lone surrogate."""
    match value:
        case bool():
            return None
        case int() if not _INT64[0] <= value <= _INT64[1]:
            return Violation(".".join(path), "an integer beyond 64 bits; send it as text")
        case str() if not _is_unicode(value):
            return Violation(".".join(path), "is not valid Unicode text (it holds a lone surrogate)")
        case dict():
            for key, item in value.items():
                if isinstance(key, str) and not _is_unicode(key):
                    return Violation(".".join(path) or "data", f"a key is not valid Unicode text: {key!r}")
                if (found := _unencodable(item, (*path, str(key)))) is not None:
                    return found
        case list():
            for index, item in enumerate(value):
                if (found := _unencodable(item, (*path, str(index)))) is not None:
                    return found
    return None


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _nul_path(value: Any, path: tuple[str, ...]) -> tuple[str, ...] | None:
    match value:
        case str():
            return path if _NUL in value else None
        case dict():
            for key, item in value.items():
                if _NUL in key:
                    return (*path, key.replace(_NUL, "\\u0000"))
                if (found := _nul_path(item, (*path, key))) is not None:
                    return found
        case list():
            for index, item in enumerate(value):
                if (found := _nul_path(item, (*path, str(index)))) is not None:
                    return found
    return None


def _check_attributes(attributes: dict[str, Any]) -> Violation | None:
    for name, value in attributes.items():
        if name == "data_base64":
            return Violation(name, "binary data is not accepted; send data as a JSON object")
        if name == "datacontenttype":
            if not _JSON_MEDIA_TYPE.match(value):
                return Violation(name, f"must be a JSON media type, got {value!r}; amends keeps data as JSON")
        elif name in _KNOWN:
            continue
        elif not _EXTENSION_NAME.match(name):
            return Violation(name, "unknown attribute: extension names are 1-20 lower-case letters or digits")
        elif value is not None and not isinstance(value, str | int | bool):
            return Violation(name, "an extension attribute must be a string, integer or boolean")
    return None


def _first_violation(exc: ValidationError) -> Violation:
    error = exc.errors(include_url=False)[0]
    field = ".".join(str(part) for part in error["loc"]) or "event"
    match error["type"]:
        case "missing":
            reason = "required"
        case "timezone_aware":
            reason = "needs a time zone, e.g. 2024-05-01T12:00:00Z or +02:00"
        case "datetime_parsing" | "datetime_from_date_parsing" | "datetime_type":
            detail = str(error["msg"]).rpartition(", ")[2]
            reason = f"expected an RFC 3339 timestamp such as 2024-05-01T12:00:00Z ({detail})"
        case "literal_error" if field == "specversion":
            reason = "only CloudEvents 1.0 is supported"
        case _:
            reason = str(error["msg"]).removeprefix("Value error, ")
    return Violation(field, reason)


def _json_kind(value: Any) -> str:
    match value:
        case list():
            return "an array"
        case str():
            return "a string"
        case bool():
            return "a boolean"
        case int() | float():
            return "a number"
        case None:
            return "null"
    return type(value).__name__
