"""API keys may expire: a staff member's key stops working `staff_key_lifetime` after it is made. The staff keys
in use when this runs get the default lifetime (90 days) from now; integration keys keep none (null: until
revoked).

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-24
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    keys = sa.table(
        "api_keys",
        sa.column("staff_id", sa.String),
        sa.column("revoked_at", sa.DateTime(timezone=True)),
        sa.column("expires_at", sa.DateTime(timezone=True)),
    )
    expires_at = datetime.now(UTC) + timedelta(days=90)
    if op.get_bind().dialect.name == "sqlite":  # instants are kept there as naive UTC (store/types.py)
        expires_at = expires_at.replace(tzinfo=None)
    in_use = sa.and_(keys.c.staff_id.is_not(None), keys.c.revoked_at.is_(None))
    op.execute(keys.update().where(in_use).values(expires_at=expires_at))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("expires_at")
