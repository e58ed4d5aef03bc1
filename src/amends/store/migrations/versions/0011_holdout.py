"""The holdout experiment: each proactive case's draw, recorded once, and the periods of the experiment's settings.
Draws refuse UPDATE and DELETE, like the ledger; a held-out case says so on itself.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _instant() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "holdout_periods",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("plan", _JSON, nullable=False),
        sa.Column("started_at", _instant(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_holdout_periods")),
    )
    op.create_table(
        "holdout_draws",
        sa.Column("incident_id", sa.BigInteger(), nullable=False),
        sa.Column("case_id", sa.BigInteger(), nullable=False),
        sa.Column("customer_id", sa.String(200), nullable=False),
        sa.Column("rule_id", sa.String(100), nullable=False),
        sa.Column("severity", sa.Integer(), nullable=False),
        sa.Column("failure_at", _instant(), nullable=False),
        sa.Column("period", sa.String(32), nullable=False),
        sa.Column("share", sa.Float(), nullable=False),
        sa.Column("draw", sa.Float(), nullable=False),
        sa.Column("held_out", sa.Boolean(), nullable=False),
        sa.Column("drawn_at", _instant(), nullable=False),
        sa.PrimaryKeyConstraint("incident_id", name=op.f("pk_holdout_draws")),
        sa.UniqueConstraint("case_id", name=op.f("uq_holdout_draws_case_id")),
    )
    op.create_index(op.f("ix_holdout_draws_period_failure_at"), "holdout_draws", ["period", "failure_at"])
    op.create_index(op.f("ix_holdout_draws_customer_id"), "holdout_draws", ["customer_id"])
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("held_out", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("holdout_lifted_at", _instant(), nullable=True))
    # The draws and the periods take no UPDATE or DELETE, and a case's held_out never changes once written.
    if op.get_bind().dialect.name == "postgresql":
        for table in ("holdout_draws", "holdout_periods"):  # amends_append_only() was made by 0004
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION amends_append_only()"
            )
        op.execute(
            """
            CREATE FUNCTION amends_held_out_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'cases.held_out is fixed when the case opens: UPDATE refused';
            END $$
            """
        )
        op.execute(
            "CREATE TRIGGER cases_held_out_fixed BEFORE UPDATE OF held_out ON cases FOR EACH ROW "
            "WHEN (OLD.held_out IS DISTINCT FROM NEW.held_out) EXECUTE FUNCTION amends_held_out_fixed()"
        )
    else:
        for table in ("holdout_draws", "holdout_periods"):
            for operation in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {operation} refused'); END"
                )
        op.execute(
            "CREATE TRIGGER cases_held_out_fixed BEFORE UPDATE OF held_out ON cases "
            "WHEN OLD.held_out IS NOT NEW.held_out "
            "BEGIN SELECT RAISE(ABORT, 'cases.held_out is fixed when the case opens: UPDATE refused'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER cases_held_out_fixed ON cases")
        op.execute("DROP FUNCTION amends_held_out_fixed()")
    else:
        op.execute("DROP TRIGGER cases_held_out_fixed")
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("holdout_lifted_at")
        batch.drop_column("held_out")
    op.drop_index(op.f("ix_holdout_draws_customer_id"), table_name="holdout_draws")
    op.drop_index(op.f("ix_holdout_draws_period_failure_at"), table_name="holdout_draws")
    op.drop_table("holdout_draws")  # their triggers go with them
    op.drop_table("holdout_periods")
