"""Broker mode (docs/scaling.md): the streaming evaluator's state belongs to one detector (`main` in embedded mode,
one per partition of the stream in broker mode), and where each partition's events were taken up to in the stream.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("detect_state", recreate="always") as batch:
        batch.add_column(sa.Column("detector", sa.String(50), nullable=False, server_default="main"))
        batch.drop_constraint("pk_detect_state", type_="primary")
        batch.create_primary_key("pk_detect_state", ["detector", "kind", "rule_id", "key"])
    with op.batch_alter_table("detect_state") as batch:
        batch.alter_column("detector", server_default=None)
    op.create_table(
        "broker_positions",
        sa.Column("stream", sa.String(100), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("partitions", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("stream", "partition", name=op.f("pk_broker_positions")),
    )


def downgrade() -> None:
    op.drop_table("broker_positions")
    op.execute("DELETE FROM detect_state WHERE detector <> 'main'")
    with op.batch_alter_table("detect_state", recreate="always") as batch:
        batch.drop_constraint("pk_detect_state", type_="primary")
        batch.create_primary_key("pk_detect_state", ["kind", "rule_id", "key"])
        batch.drop_column("detector")
