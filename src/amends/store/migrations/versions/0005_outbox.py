"""Outreach: the outbox of messages to customers, with the lease a worker holds while it delivers one.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _instant() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", _SERIAL, autoincrement=True, nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("case_id", sa.BigInteger(), nullable=True),
        sa.Column("customer_id", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("recipient", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("html", sa.Text(), nullable=True),
        sa.Column("headers", _JSON, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("not_before", _instant(), nullable=False),
        sa.Column("next_attempt_at", _instant(), nullable=False),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        sa.Column("lease_until", _instant(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", _instant(), nullable=False),
        sa.Column("sent_at", _instant(), nullable=True),
        sa.Column("provider_id", sa.String(500), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
        sa.UniqueConstraint("key", name=op.f("uq_messages_key")),
    )
    op.create_index(op.f("ix_messages_status_next_attempt_at"), "messages", ["status", "next_attempt_at"])
    op.create_index(op.f("ix_messages_case_id_created_at"), "messages", ["case_id", "created_at"])
    op.create_index(op.f("ix_messages_customer_id_created_at"), "messages", ["customer_id", "created_at"])
    op.create_index(op.f("ix_messages_created_at"), "messages", ["created_at"])


def downgrade() -> None:
    op.drop_table("messages")
