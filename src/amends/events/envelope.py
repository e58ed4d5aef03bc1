"""The event envelope: CloudEvents 1.0 in structured JSON form, as amends accepts it.

Required: `id`, `source`, `type`, `time` (with a time zone; kept in UTC) and `subject` (the customer's
id). `data` is a JSON object. Other CloudEvents attributes and extensions are kept as sent.
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

__all__ = ["ENVELOPE_SCHEMA", "Event", "Violation", "validate_event"]

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
    return Event(
        id=valid["id"],
        source=valid["source"],
        type=valid["type"],
        time=valid["time"].astimezone(UTC),
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
    if b"\\u0000" not in orjson.dumps(valid, default=str):
        return None
    path = _nul_path(valid, ())  # a plain dict at run time: pydantic returns TypedDicts as dicts
    return None if path is None else Violation(".".join(path), _NUL_REASON)


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
