"""The audit log becomes a hash chain (each entry's `hash` covers the one before), sealed here for the entries
already written; and the append-only remedy ledger and holdout draws take one change, erasure: a customer's id
replaced by a `forgotten:` pseudonym (and a ledger entry's note removed), every other column as it was.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from amends.recover.audit import GENESIS, entry_hash
from amends.store.types import JSONDocument, UTCDateTime

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The columns of each table as of this revision, for SQLite's triggers (PostgreSQL compares whole rows).
_COLUMNS = {
    "ledger": (
        "id",
        "entry_key",
        "case_id",
        "slot",
        "incident_id",
        "kind",
        "amount",
        "unit",
        "cash_value",
        "policy",
        "granted_by",
        "approval_id",
        "reverses_id",
        "at",
    ),
    "holdout_draws": (
        "incident_id",
        "case_id",
        "rule_id",
        "severity",
        "failure_at",
        "period",
        "share",
        "draw",
        "held_out",
        "drawn_at",
    ),
}


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.add_column("audit_log", sa.Column("hash", sa.String(64), nullable=True))  # no batch: the triggers stay
    _seal_audit_log(postgres)
    if postgres:
        op.execute(
            """
            CREATE FUNCTION amends_append_only_but_erasure() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_OP = 'UPDATE' AND NEW.customer_id LIKE 'forgotten:%' AND OLD.customer_id NOT LIKE 'forgotten:%'
                   AND to_jsonb(NEW) ->> 'note' IS NULL
                   AND to_jsonb(NEW) - 'customer_id' - 'note' = to_jsonb(OLD) - 'customer_id' - 'note' THEN
                    RETURN NEW;
                END IF;
                RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP;
            END $$
            """
        )
        for table in _COLUMNS:
            op.execute(f"DROP TRIGGER {table}_append_only ON {table}")
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION amends_append_only_but_erasure()"
            )
        return
    for table, columns in _COLUMNS.items():
        same = " AND ".join(f"NEW.{c} IS OLD.{c}" for c in columns)
        note = " AND NEW.note IS NULL" if table == "ledger" else ""
        op.execute(f"DROP TRIGGER {table}_no_update")
        op.execute(
            f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} WHEN NOT (NEW.customer_id LIKE 'forgotten:%' "
            f"AND OLD.customer_id NOT LIKE 'forgotten:%'{note} AND {same}) "
            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: UPDATE refused'); END"
        )


def _seal_audit_log(postgres: bool) -> None:
    """Chain the entries already written, in the order of their ids (the triggers let nothing change meanwhile)."""
    if postgres:
        op.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
    else:
        op.execute("DROP TRIGGER audit_log_no_update")
    bind = op.get_bind()
    log = sa.table(
        "audit_log",
        sa.column("id"),
        sa.column("at", UTCDateTime()),
        sa.column("actor"),
        sa.column("action"),
        sa.column("target"),
        sa.column("origin"),
        sa.column("details", JSONDocument),
        sa.column("hash"),
    )
    previous = GENESIS
    for row in bind.execute(sa.select(log).order_by(log.c.id)).all():
        previous = entry_hash(previous, row.at, row.actor, row.action, row.target, row.origin, row.details)
        bind.execute(sa.update(log).where(log.c.id == row.id).values(hash=previous))
    if postgres:
        op.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
    else:
        op.execute(
            "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
            "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused'); END"
        )


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        for table in _COLUMNS:
            op.execute(f"DROP TRIGGER {table}_append_only ON {table}")
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION amends_append_only()"
            )
        op.execute("DROP FUNCTION amends_append_only_but_erasure()")
    else:
        for table in _COLUMNS:
            op.execute(f"DROP TRIGGER {table}_no_update")
            op.execute(
                f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: UPDATE refused'); END"
            )
    op.drop_column("audit_log", "hash")  # no batch: the triggers stay
