"""The risk model: its trained versions (as text and numbers, never a pickle) and the scores it gave.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _instant() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "risk_models",
        sa.Column("id", _SERIAL, autoincrement=True, nullable=False),
        sa.Column("created_at", _instant(), nullable=False),
        sa.Column("trained_until", _instant(), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("features", _JSON, nullable=False),
        sa.Column("booster", sa.Text(), nullable=False),
        sa.Column("calibration", _JSON, nullable=False),
        sa.Column("usual", _JSON, nullable=False),
        sa.Column("metrics", _JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_models")),
    )
    op.create_table(
        "risk_scores",
        sa.Column("id", _SERIAL, autoincrement=True, nullable=False),
        sa.Column("model_id", sa.BigInteger(), nullable=False),
        sa.Column("customer_id", sa.String(200), nullable=False),
        sa.Column("at", _instant(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("reasons", _JSON, nullable=False),
        sa.Column("scored_at", _instant(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_scores")),
        sa.UniqueConstraint("model_id", "customer_id", "at", name=op.f("uq_risk_scores_model_id_customer_id_at")),
    )
    op.create_index(op.f("ix_risk_scores_customer_id_at"), "risk_scores", ["customer_id", "at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_risk_scores_customer_id_at"), table_name="risk_scores")
    op.drop_table("risk_scores")
    op.drop_table("risk_models")
