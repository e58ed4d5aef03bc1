"""Recovery: staff, cases with their steps, handoffs and contacts, complaints, approvals, the remedy ledger,
the audit log, and case intake's cursor. The ledger and the audit log refuse UPDATE and DELETE.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_APPEND_ONLY = ("ledger", "audit_log")


def _instant() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _id(table: str) -> tuple[sa.Column[int], sa.PrimaryKeyConstraint]:
    return sa.Column("id", _SERIAL, autoincrement=True, nullable=False), sa.PrimaryKeyConstraint(
        "id", name=op.f(f"pk_{table}")
    )


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("staff_id", sa.String(100), nullable=True))
    op.create_table(
        "staff",
        sa.Column("id", sa.String(100), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("team", sa.String(100), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", _instant(), nullable=False),
        sa.Column("last_assigned_at", _instant(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff")),
    )
    op.create_table(
        "cases",
        *_id("cases"),
        sa.Column("customer_id", sa.String(200), nullable=False),
        sa.Column("origin", sa.String(10), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("playbook", sa.String(100), nullable=False),
        sa.Column("severity", sa.Integer(), nullable=False),
        sa.Column("fault", sa.String(10), nullable=False),
        sa.Column("owner_id", sa.String(100), nullable=True),
        sa.Column("team", sa.String(100), nullable=True),
        sa.Column("acknowledged_at", _instant(), nullable=True),
        sa.Column("opened_at", _instant(), nullable=False),
        sa.Column("resolved_at", _instant(), nullable=True),
        sa.Column("closed_at", _instant(), nullable=True),
        sa.Column("first_contact_at", _instant(), nullable=True),
        sa.Column("customer_spoke_at", _instant(), nullable=True),
        sa.Column("reopened", sa.Integer(), nullable=False),
        sa.Column("resolution", sa.Text(), nullable=True),
    )
    op.create_index(op.f("ix_cases_status_opened_at"), "cases", ["status", "opened_at"])
    op.create_index(op.f("ix_cases_owner_id_status"), "cases", ["owner_id", "status"])
    op.create_index(op.f("ix_cases_customer_id_opened_at"), "cases", ["customer_id", "opened_at"])
    op.create_index(
        "uq_cases_open_customer",
        "cases",
        ["customer_id"],
        unique=True,
        sqlite_where=sa.text("status = 'open'"),
        postgresql_where=sa.text("status = 'open'"),
    )
    op.create_table(
        "case_incidents",
        sa.Column("incident_id", sa.BigInteger(), nullable=False),
        sa.Column("case_id", sa.BigInteger(), nullable=False),
        sa.Column("joined_at", _instant(), nullable=False),
        sa.PrimaryKeyConstraint("incident_id", name=op.f("pk_case_incidents")),
    )
    op.create_index(op.f("ix_case_incidents_case_id"), "case_incidents", ["case_id"])
    op.create_table(
        "case_steps",
        sa.Column("case_id", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("due_at", _instant(), nullable=True),
        sa.Column("completed_at", _instant(), nullable=True),
        sa.Column("completed_by", sa.String(100), nullable=True),
        sa.Column("draft", sa.Text(), nullable=True),
        sa.Column("outcome", _JSON, nullable=True),
        sa.PrimaryKeyConstraint("case_id", "kind", name=op.f("pk_case_steps")),
    )
    op.create_index(op.f("ix_case_steps_completed_at_due_at"), "case_steps", ["completed_at", "due_at"])
    op.create_table(
        "handoffs",
        *_id("handoffs"),
        sa.Column("case_id", sa.BigInteger(), nullable=False),
        sa.Column("from_id", sa.String(100), nullable=True),
        sa.Column("to_id", sa.String(100), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("by_id", sa.String(100), nullable=True),
        sa.Column("at", _instant(), nullable=False),
    )
    op.create_index(op.f("ix_handoffs_case_id_at"), "handoffs", ["case_id", "at"])
    op.create_table(
        "case_contacts",
        *_id("case_contacts"),
        sa.Column("case_id", sa.BigInteger(), nullable=False),
        sa.Column("direction", sa.String(10), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("at", _instant(), nullable=False),
        sa.Column("by_id", sa.String(100), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
    )
    op.create_index(op.f("ix_case_contacts_case_id_at"), "case_contacts", ["case_id", "at"])
    op.create_table(
        "complaints",
        *_id("complaints"),
        sa.Column("source", sa.String(500), nullable=False),
        sa.Column("external_id", sa.String(500), nullable=False),
        sa.Column("customer_id", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("reference", sa.String(500), nullable=True),
        sa.Column("received_at", _instant(), nullable=False),
        sa.Column("case_id", sa.BigInteger(), nullable=False),
        sa.Column("incident_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", _instant(), nullable=False),
        sa.UniqueConstraint("source", "external_id", name=op.f("uq_complaints_source_external_id")),
    )
    op.create_index(op.f("ix_complaints_case_id"), "complaints", ["case_id"])
    op.create_table(
        "approvals",
        *_id("approvals"),
        sa.Column("case_id", sa.BigInteger(), nullable=False),
        sa.Column("slot", sa.String(100), nullable=False),
        sa.Column("incident_id", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.String(100), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("cash_value", sa.BigInteger(), nullable=False),
        sa.Column("policy", sa.String(100), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("requested_by", sa.String(100), nullable=False),
        sa.Column("requested_at", _instant(), nullable=False),
        sa.Column("decided_by", sa.String(100), nullable=True),
        sa.Column("decided_at", _instant(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
    )
    op.create_index(op.f("ix_approvals_status_requested_at"), "approvals", ["status", "requested_at"])
    op.create_index(op.f("ix_approvals_case_id"), "approvals", ["case_id"])
    op.create_index(
        "uq_approvals_pending_slot",
        "approvals",
        ["case_id", "slot"],
        unique=True,
        sqlite_where=sa.text("status = 'pending'"),
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "ledger",
        *_id("ledger"),
        sa.Column("entry_key", sa.String(200), nullable=False),
        sa.Column("case_id", sa.BigInteger(), nullable=False),
        sa.Column("slot", sa.String(100), nullable=False),
        sa.Column("customer_id", sa.String(200), nullable=False),
        sa.Column("incident_id", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.String(100), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("unit", sa.String(50), nullable=False),
        sa.Column("cash_value", sa.BigInteger(), nullable=False),
        sa.Column("policy", sa.String(100), nullable=False),
        sa.Column("granted_by", sa.String(100), nullable=False),
        sa.Column("approval_id", sa.BigInteger(), nullable=True),
        sa.Column("reverses_id", sa.BigInteger(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("at", _instant(), nullable=False),
        sa.UniqueConstraint("entry_key", name=op.f("uq_ledger_entry_key")),
    )
    op.create_index(op.f("ix_ledger_case_id"), "ledger", ["case_id"])
    op.create_index(op.f("ix_ledger_kind_at"), "ledger", ["kind", "at"])
    op.create_index(op.f("ix_ledger_granted_by_at"), "ledger", ["granted_by", "at"])
    op.create_table(
        "audit_log",
        *_id("audit_log"),
        sa.Column("at", _instant(), nullable=False),
        sa.Column("actor", sa.String(120), nullable=False),
        sa.Column("action", sa.String(50), nullable=False),
        sa.Column("target", sa.String(120), nullable=False),
        sa.Column("origin", sa.String(100), nullable=True),
        sa.Column("details", _JSON, nullable=False),
    )
    op.create_index(op.f("ix_audit_log_target_at"), "audit_log", ["target", "at"])
    op.create_index(op.f("ix_audit_log_at"), "audit_log", ["at"])
    op.create_table(
        "recover_cursors",
        sa.Column("name", sa.String(50), nullable=False),
        sa.Column("incident_id", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", _instant(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_recover_cursors")),
    )
    _append_only(op.get_bind().dialect.name)


def _append_only(dialect: str) -> None:
    """Triggers that refuse to change or delete a row of the ledger or the audit log."""
    if dialect == "postgresql":
        op.execute(
            """
            CREATE FUNCTION amends_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP;
            END $$
            """
        )
        for table in _APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION amends_append_only()"
            )
        return
    for table in _APPEND_ONLY:
        for operation in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {operation} refused'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in _APPEND_ONLY:
            op.execute(f"DROP TRIGGER {table}_append_only ON {table}")
        op.execute("DROP FUNCTION amends_append_only()")
    for table in (
        "recover_cursors",
        "audit_log",
        "ledger",
        "approvals",
        "complaints",
        "case_contacts",
        "handoffs",
        "case_steps",
        "case_incidents",
        "cases",
        "staff",
    ):
        op.drop_table(table)
    op.drop_column("api_keys", "staff_id")
