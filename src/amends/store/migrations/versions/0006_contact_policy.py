"""Outreach: opt-outs, the hand-written card tasks, and customers' replies.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _instant() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "opt_outs",
        sa.Column("customer_id", sa.String(200), nullable=False),
        sa.Column("at", _instant(), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_opt_outs")),
    )
    op.create_table(
        "card_tasks",
        sa.Column("id", _SERIAL, autoincrement=True, nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("case_id", sa.BigInteger(), nullable=True),
        sa.Column("customer_id", sa.String(200), nullable=False),
        sa.Column("created_at", _instant(), nullable=False),
        sa.Column("printed_at", _instant(), nullable=True),
        sa.Column("written_at", _instant(), nullable=True),
        sa.Column("written_by", sa.String(100), nullable=True),
        sa.Column("posted_at", _instant(), nullable=True),
        sa.Column("posted_by", sa.String(100), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_card_tasks")),
        sa.UniqueConstraint("message_id", name=op.f("uq_card_tasks_message_id")),
    )
    op.create_index(op.f("ix_card_tasks_posted_at_created_at"), "card_tasks", ["posted_at", "created_at"])
    op.create_table(
        "inbound_replies",
        sa.Column("id", _SERIAL, autoincrement=True, nullable=False),
        sa.Column("dedup_key", sa.String(200), nullable=False),
        sa.Column("provider", sa.String(50), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        sa.Column("case_id", sa.BigInteger(), nullable=True),
        sa.Column("customer_id", sa.String(200), nullable=True),
        sa.Column("from_address", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("headers", _JSON, nullable=False),
        sa.Column("received_at", _instant(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_replies")),
        sa.UniqueConstraint("dedup_key", name=op.f("uq_inbound_replies_dedup_key")),
    )
    op.create_index(op.f("ix_inbound_replies_case_id_received_at"), "inbound_replies", ["case_id", "received_at"])
    op.create_index(op.f("ix_inbound_replies_received_at"), "inbound_replies", ["received_at"])


def downgrade() -> None:
    op.drop_table("inbound_replies")
    op.drop_table("card_tasks")
    op.drop_table("opt_outs")
