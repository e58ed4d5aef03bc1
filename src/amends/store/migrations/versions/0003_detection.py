"""Detection: incidents, the streaming evaluator's state (with its durable timers) and its cursor.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _instant() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", _SERIAL, autoincrement=True, nullable=False),
        sa.Column("rule_id", sa.String(100), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.String(200), nullable=False),
        sa.Column("severity", sa.Integer(), nullable=False),
        sa.Column("playbook", sa.String(100), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("failure_at", _instant(), nullable=False),
        sa.Column("detected_at", _instant(), nullable=False),
        sa.Column("detected_by", sa.String(20), nullable=False),
        sa.Column("resolved_at", _instant(), nullable=True),
        sa.Column("facts", _JSON, nullable=False),
        sa.Column("resolution", _JSON, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
        sa.UniqueConstraint("rule_id", "key", name=op.f("uq_incidents_rule_id_key")),
    )
    op.create_index(op.f("ix_incidents_customer_id_failure_at"), "incidents", ["customer_id", "failure_at"])
    op.create_index(op.f("ix_incidents_failure_at"), "incidents", ["failure_at"])
    op.create_table(
        "detect_state",
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("rule_id", sa.String(100), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("due", _instant(), nullable=False),
        sa.Column("payload", _JSON, nullable=False),
        sa.PrimaryKeyConstraint("kind", "rule_id", "key", name=op.f("pk_detect_state")),
    )
    op.create_table(
        "detect_cursors",
        sa.Column("name", sa.String(50), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("low_seq", sa.BigInteger(), nullable=True),
        sa.Column("watermark", _instant(), nullable=True),
        sa.Column("latest", _instant(), nullable=True),
        sa.Column("late_events", sa.BigInteger(), nullable=False),
        sa.Column("skipped", _JSON, nullable=False),
        sa.Column("updated_at", _instant(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_detect_cursors")),
    )


def downgrade() -> None:
    op.drop_table("detect_cursors")
    op.drop_table("detect_state")
    op.drop_index(op.f("ix_incidents_failure_at"), table_name="incidents")
    op.drop_index(op.f("ix_incidents_customer_id_failure_at"), table_name="incidents")
    op.drop_table("incidents")
