"""Broker mode: each partition's position also says which stream it was taken from (the stream's creation time: a
stream made anew starts its sequence again) and which taking of the partition may store batches (`epoch`), so
that a worker that lost the partition can store nothing more.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("broker_positions") as batch:
        batch.add_column(sa.Column("stream_created", sa.String(40), nullable=False, server_default=""))
        batch.add_column(sa.Column("epoch", sa.BigInteger(), nullable=False, server_default="0"))
    with op.batch_alter_table("broker_positions") as batch:
        batch.alter_column("stream_created", server_default=None)
        batch.alter_column("epoch", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("broker_positions") as batch:
        batch.drop_column("epoch")
        batch.drop_column("stream_created")
