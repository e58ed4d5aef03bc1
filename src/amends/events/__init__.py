"""Events: the ledger of what happened to customers, and every way events come in.

Owns the CloudEvents envelope, validation, idempotent storage (once per source and id), customers
created on first sight, and ingestion from HTTP batches and files. Knows nothing of detection.
"""

from amends.events.batches import (
    BatchFormat,
    BatchReport,
    Item,
    Rejected,
    decode_batch,
    ingest_items,
    validate_items,
)
from amends.events.customers import Customer, StoredEvent, TimelinePage, get_customer, timeline
from amends.events.envelope import ENVELOPE_SCHEMA, Event, Violation, validate_event
from amends.events.errors import BatchTooLarge, EventsError, MalformedJSON
from amends.events.files import (
    ColumnMapping,
    EventSink,
    FileFormat,
    FileProgress,
    FileReport,
    LedgerSink,
    RejectedRow,
    ingest_file,
)
from amends.events.ledger import (
    Appended,
    LedgerWatcher,
    Recorded,
    append_events,
    dedup_key,
    last_seq,
    read_recorded,
)

__all__ = [
    "ENVELOPE_SCHEMA",
    "Appended",
    "BatchFormat",
    "BatchReport",
    "BatchTooLarge",
    "ColumnMapping",
    "Customer",
    "Event",
    "EventSink",
    "EventsError",
    "FileFormat",
    "FileProgress",
    "FileReport",
    "Item",
    "LedgerSink",
    "LedgerWatcher",
    "MalformedJSON",
    "Recorded",
    "Rejected",
    "RejectedRow",
    "StoredEvent",
    "TimelinePage",
    "Violation",
    "append_events",
    "decode_batch",
    "dedup_key",
    "get_customer",
    "ingest_file",
    "ingest_items",
    "last_seq",
    "read_recorded",
    "timeline",
    "validate_event",
    "validate_items",
]
