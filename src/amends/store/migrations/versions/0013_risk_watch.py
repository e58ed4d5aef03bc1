"""The risk watch: how far into the ledger the risk rules have scored the model's moments, and the scores of a
model by moment (for a rule's daily budget).

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "risk_watch",
        sa.Column("name", sa.String(50), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_risk_watch")),
    )
    op.create_index(op.f("ix_risk_scores_model_id_at"), "risk_scores", ["model_id", "at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_risk_scores_model_id_at"), table_name="risk_scores")
    op.drop_table("risk_watch")
