"""Values in the form the bulk paths of the unit of work take them, per dialect.

`UnitOfWork.insert_missing`, `insert_new` and `upsert` hand rows to the driver with no per-value
processing: on SQLite as one JSON array, on PostgreSQL through COPY. These are the forms each expects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from psycopg.types.json import Jsonb

__all__ = ["BulkValues", "bulk_values"]


@dataclass(frozen=True, slots=True)
class BulkValues:
    """How one dialect takes an instant (an aware datetime) and a JSON document in a bulk row."""

    instant: Callable[[datetime], Any]
    document: Callable[[Any], Any]


def bulk_values(dialect: str) -> BulkValues:
    if dialect == "sqlite":
        return _SQLITE
    return _POSTGRESQL


def _sqlite_instant(value: datetime) -> str:
    # The text form SQLAlchemy's SQLite DateTime reads back: UTC wall time, always with microseconds.
    return value.astimezone(UTC).isoformat(" ", "microseconds")[:26]


def _aware(value: datetime) -> datetime:
    return value


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def _jsonb(value: Any) -> Jsonb:
    return Jsonb(value, dumps=_json_text)


_SQLITE = BulkValues(_sqlite_instant, _json_text)
_POSTGRESQL = BulkValues(_aware, _jsonb)
