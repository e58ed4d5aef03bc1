"""Who gave each risk score: `amends score` (at instants of its choosing) or the risk watch (at moment events), so
that a risk rule's daily budget reads the watch's moment scores alone.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index(op.f("ix_risk_scores_model_id_at"), table_name="risk_scores")
    with op.batch_alter_table("risk_scores") as batch:
        batch.add_column(sa.Column("scored_by", sa.String(20), nullable=False, server_default="score"))
    with op.batch_alter_table("risk_scores") as batch:
        batch.alter_column("scored_by", server_default=None)
    op.create_index(op.f("ix_risk_scores_scored_by_at"), "risk_scores", ["scored_by", "at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_risk_scores_scored_by_at"), table_name="risk_scores")
    with op.batch_alter_table("risk_scores") as batch:
        batch.drop_column("scored_by")
    op.create_index(op.f("ix_risk_scores_model_id_at"), "risk_scores", ["model_id", "at"])
