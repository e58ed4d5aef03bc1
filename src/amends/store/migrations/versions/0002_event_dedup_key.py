"""Events are unique on a digest of (source, event_id); no foreign key from events to customers.

The pair of strings made a wide index that every insert had to descend; a 16-byte digest makes a narrow
one (22 characters). The foreign key cost a lookup per inserted event, and the ledger already creates each customer in
the same transaction as their events. Existing rows get their digest here.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import base64
import hashlib
from collections.abc import Sequence

import orjson
import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 10_000


def _dedup_key(source: str, event_id: str) -> str:
    # Frozen here on purpose: it must stay equal to amends.events.ledger.dedup_key for stored rows.
    digest = hashlib.blake2b(orjson.dumps([source, event_id]), digest_size=16).digest()
    return base64.urlsafe_b64encode(digest)[:22].decode()


def upgrade() -> None:
    op.add_column("events", sa.Column("dedup_key", sa.String(22), nullable=True))
    connection = op.get_bind()
    events = sa.table("events", sa.column("seq"), sa.column("source"), sa.column("event_id"), sa.column("dedup_key"))
    last = 0
    while rows := connection.execute(
        sa.select(events.c.seq, events.c.source, events.c.event_id)
        .where(events.c.seq > last)
        .order_by(events.c.seq)
        .limit(_BATCH)
    ).all():
        connection.execute(
            events.update().where(events.c.seq == sa.bindparam("b_seq")).values(dedup_key=sa.bindparam("b_key")),
            [{"b_seq": seq, "b_key": _dedup_key(source, event_id)} for seq, source, event_id in rows],
        )
        last = rows[-1].seq
    with op.batch_alter_table("events") as batch:
        batch.alter_column("dedup_key", existing_type=sa.String(22), nullable=False)
        batch.drop_constraint("uq_events_source_event_id", type_="unique")
        batch.drop_constraint("fk_events_subject_customers", type_="foreignkey")
        batch.create_unique_constraint("uq_events_dedup_key", ["dedup_key"])


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_constraint("uq_events_dedup_key", type_="unique")
        batch.create_foreign_key("fk_events_subject_customers", "customers", ["subject"], ["id"])
        batch.create_unique_constraint("uq_events_source_event_id", ["source", "event_id"])
        batch.drop_column("dedup_key")
