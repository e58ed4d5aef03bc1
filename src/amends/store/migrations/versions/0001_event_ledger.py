"""The event ledger, customers and API keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _instant() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("created_at", _instant(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
    )
    op.create_table(
        "events",
        sa.Column("seq", _SERIAL, autoincrement=True, nullable=False),
        sa.Column("source", sa.String(500), nullable=False),
        sa.Column("event_id", sa.String(500), nullable=False),
        sa.Column("type", sa.String(200), nullable=False),
        sa.Column("time", _instant(), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("data", _JSON, nullable=False),
        sa.Column("attributes", _JSON, nullable=True),
        sa.Column("received_at", _instant(), nullable=False),
        sa.ForeignKeyConstraint(["subject"], ["customers.id"], name=op.f("fk_events_subject_customers")),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_events")),
        sa.UniqueConstraint("source", "event_id", name=op.f("uq_events_source_event_id")),
    )
    op.create_index(op.f("ix_events_subject_time_seq"), "events", ["subject", "time", "seq"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(16), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("scopes", _JSON, nullable=False),
        sa.Column("created_at", _instant(), nullable=False),
        sa.Column("revoked_at", _instant(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
    )
    op.create_index(
        "uq_api_keys_active_name",
        "api_keys",
        ["name"],
        unique=True,
        sqlite_where=sa.text("revoked_at IS NULL"),
        postgresql_where=sa.text("revoked_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_table("events")
    op.drop_table("customers")
