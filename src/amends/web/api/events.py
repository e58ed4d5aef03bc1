"""POST /v1/events: one event, a JSON array batch, or NDJSON; each item accepted, duplicate or rejected.

In broker mode (docs/scaling.md) the valid events are published to the stream instead of stored here: they are
accepted once JetStream acknowledged every one of them (a worker stores them), and a duplicate is one JetStream still
remembered (within its duplicate window; a worker finds later repeats duplicates in the ledger)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from amends.access import Scope
from amends.events import (
    ENVELOPE_SCHEMA,
    BatchFormat,
    BatchReport,
    LedgerWatcher,
    Rejected,
    decode_batch,
    ingest_items,
    validate_items,
)
from amends.events.broker import EventBroker
from amends.recover.actors import Actor
from amends.store import Database
from amends.web.deps import DB, AppSettings, Watcher, read_body, require
from amends.web.errors import ErrorOut, UnsupportedMediaType

router = APIRouter(prefix="/v1", tags=["events"])

_FORMATS = {
    "application/json": BatchFormat.JSON,
    "application/cloudevents+json": BatchFormat.EVENT,
    "application/cloudevents-batch+json": BatchFormat.ARRAY,
    "application/x-ndjson": BatchFormat.NDJSON,
    "application/ndjson": BatchFormat.NDJSON,
    "application/jsonl": BatchFormat.NDJSON,
}


class RejectedItem(BaseModel):
    index: int = Field(description="Position of the item in the batch, from 0.")
    line: int | None = Field(default=None, description="Line of the item, for NDJSON bodies.")
    field: str = Field(description="The attribute at fault, as a dotted path.")
    reason: str


class IngestResult(BaseModel):
    accepted: int = Field(description="Events stored for the first time; durable when this returns.")
    duplicates: int = Field(description="Events already stored (same source and id): acknowledged, ignored.")
    rejected: list[RejectedItem] = Field(description="Items refused; the others were stored all the same.")


_array_schema = {"type": "array", "items": ENVELOPE_SCHEMA, "maxItems": 10_000}
_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "One event (CloudEvents 1.0, structured JSON), an array of them, or NDJSON.",
        "content": {
            "application/json": {"schema": {"oneOf": [ENVELOPE_SCHEMA, _array_schema]}},
            "application/cloudevents+json": {"schema": ENVELOPE_SCHEMA},
            "application/cloudevents-batch+json": {"schema": _array_schema},
            "application/x-ndjson": {"schema": {"type": "string", "description": "One event per line."}},
        },
    }
}


@router.post(
    "/events",
    response_model=IngestResult,
    openapi_extra=_REQUEST_BODY,
    summary="Send events",
    responses={
        400: {"description": "The body is not JSON; the position where parsing stopped is given."},
        401: {"description": "No API key, or a revoked one."},
        413: {"description": "More events than one batch may carry, or a body too large."},
        415: {"description": "A content type other than JSON, CloudEvents JSON or NDJSON."},
        422: {
            "description": "Some items were rejected (listed); the others were stored. Or the body as a whole is not "
            "events (not an object or an array, or an array of the wrong content type): nothing was stored.",
            "model": IngestResult | ErrorOut,
        },
        503: {
            "description": "The database is unreachable and nothing was stored; or in broker mode the broker is, and "
            "the batch is not accepted (send it again: what the broker already holds is kept once)."
        },
    },
)
async def post_events(
    request: Request,
    db: DB,
    settings: AppSettings,
    watcher: Watcher,
    _key: Annotated[Actor, Depends(require(Scope.EVENTS_WRITE))],
) -> JSONResponse:
    """Store events once per (source, id). Answers 200 when every item was stored or known, else 422."""
    batch_format = _format_of(request.headers.get("content-type", ""))
    body = await read_body(request, settings.max_body_bytes)
    broker: EventBroker | None = request.app.state.broker
    if broker is not None:
        report = await _publish(broker, body, batch_format, settings.max_batch_events)
    else:
        report = await run_in_threadpool(_ingest, db, body, batch_format, settings.max_batch_events, watcher)
    result = IngestResult(
        accepted=report.accepted,
        duplicates=report.duplicates,
        rejected=[RejectedItem(index=r.index, line=r.line, field=r.field, reason=r.reason) for r in report.rejected],
    )
    return JSONResponse(result.model_dump(exclude_none=True), status_code=422 if report.rejected else 200)


def _ingest(
    db: Database, body: bytes, batch_format: BatchFormat, max_events: int, watcher: LedgerWatcher | None
) -> BatchReport:
    items = decode_batch(body, batch_format, max_events=max_events)
    return ingest_items(db, items, received_at=datetime.now(UTC), watcher=watcher)


async def _publish(broker: EventBroker, body: bytes, batch_format: BatchFormat, max_events: int) -> BatchReport:
    await broker.ensure_connected()
    valid, rejected = await run_in_threadpool(_validate, body, batch_format, max_events, broker.max_payload)
    if not valid:
        return BatchReport(0, 0, tuple(rejected))
    acknowledged = await broker.publish(valid)
    duplicates = sum(1 for ack in acknowledged if ack.duplicate)
    return BatchReport(len(acknowledged) - duplicates, duplicates, tuple(rejected))


def _validate(
    body: bytes, batch_format: BatchFormat, max_events: int, max_bytes: int
) -> tuple[list[dict[str, Any]], list[Rejected]]:
    """The envelopes to publish, and the items rejected: invalid, or too large for one message of the broker."""
    items = decode_batch(body, batch_format, max_events=max_events)
    valid, rejected = validate_items(items)
    if not valid:
        return [], rejected
    valid_at = [index for index in range(len(items)) if index not in {r.index for r in rejected}]
    envelopes: list[dict[str, Any]] = []
    for index, event in zip(valid_at, valid, strict=True):
        envelope = event.envelope()
        size = len(orjson.dumps(envelope))
        if size > max_bytes:
            reason = f"{size:,} bytes as JSON, more than the broker's message limit of {max_bytes:,}"
            rejected.append(Rejected(index, "event", reason, items[index].line))
        else:
            envelopes.append(envelope)
    return envelopes, sorted(rejected, key=lambda r: r.index)


def _format_of(content_type: str) -> BatchFormat:
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    if media not in _FORMATS:
        shown = media or "none"
        raise UnsupportedMediaType("Content-Type", f"{shown} is not accepted; send {', '.join(_FORMATS)}")
    charset = params.strip().lower().removeprefix("charset=").strip('"') if "charset" in params.lower() else ""
    if charset and charset not in ("utf-8", "utf8"):
        raise UnsupportedMediaType("Content-Type", f"charset {charset} is not accepted; send UTF-8")
    return _FORMATS[media]
