"""Outreach: what a customer's reply needs beyond 0006 (the whole text beside the reply without its quote, the
HTML, the reply's own Message-ID, how it was matched, the case's status when it came, its attachments' names),
and an index on messages.provider_id, which a reply is matched against.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("inbound_replies") as batch:
        batch.add_column(sa.Column("email_message_id", sa.Text(), nullable=True))
        batch.add_column(sa.Column("full_text", sa.Text(), nullable=True))
        batch.add_column(sa.Column("html", sa.Text(), nullable=True))
        batch.add_column(sa.Column("matched_by", sa.String(20), nullable=True))
        batch.add_column(sa.Column("case_status", sa.String(10), nullable=True))
        batch.add_column(sa.Column("attachments", _JSON, nullable=True))
    op.create_index(op.f("ix_messages_provider_id"), "messages", ["provider_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_messages_provider_id"), table_name="messages")
    with op.batch_alter_table("inbound_replies") as batch:
        for name in ("attachments", "case_status", "matched_by", "html", "full_text", "email_message_id"):
            batch.drop_column(name)
