"""Feedback: requests for feedback about an interaction, what customers wrote (triaged and routed), the
responses to it, suggestions with the customers who asked, and staff corrections of triage labels.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _instant() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "feedback_requests",
        sa.Column("id", _SERIAL, autoincrement=True, nullable=False),
        sa.Column("interaction", sa.String(300), nullable=False),
        sa.Column("customer_id", sa.String(200), nullable=False),
        sa.Column("case_id", sa.BigInteger(), nullable=True),
        sa.Column("event_type", sa.String(200), nullable=True),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.Column("scale", sa.String(10), nullable=True),
        sa.Column("language", sa.String(35), nullable=True),
        sa.Column("created_at", _instant(), nullable=False),
        sa.Column("expires_at", _instant(), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        sa.Column("answered_at", _instant(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback_requests")),
        sa.UniqueConstraint("interaction", name=op.f("uq_feedback_requests_interaction")),
    )
    op.create_index(
        op.f("ix_feedback_requests_customer_id_created_at"), "feedback_requests", ["customer_id", "created_at"]
    )
    op.create_table(
        "feedback",
        sa.Column("id", _SERIAL, autoincrement=True, nullable=False),
        sa.Column("dedup_key", sa.String(300), nullable=False),
        sa.Column("request_id", sa.BigInteger(), nullable=True),
        sa.Column("customer_id", sa.String(200), nullable=True),
        sa.Column("author", sa.Text(), nullable=True),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("liked", sa.Text(), nullable=True),
        sa.Column("disliked", sa.Text(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("rating", sa.Integer(), nullable=True),
        sa.Column("scale", sa.String(10), nullable=True),
        sa.Column("language", sa.String(35), nullable=True),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.Column("received_at", _instant(), nullable=False),
        sa.Column("created_at", _instant(), nullable=False),
        sa.Column("updated_at", _instant(), nullable=False),
        sa.Column("editable_until", _instant(), nullable=True),
        sa.Column("spam", sa.Boolean(), nullable=False),
        sa.Column("spam_score", sa.Float(), nullable=False),
        sa.Column("sentiment", sa.String(10), nullable=False),
        sa.Column("sentiment_score", sa.Float(), nullable=False),
        sa.Column("topic", sa.String(50), nullable=True),
        sa.Column("urgency", sa.String(10), nullable=False),
        sa.Column("reasons", _JSON, nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("route", sa.String(20), nullable=False),
        sa.Column("case_id", sa.BigInteger(), nullable=True),
        sa.Column("suggestion_id", sa.BigInteger(), nullable=True),
        sa.Column("staff_id", sa.String(100), nullable=True),
        sa.Column("due_at", _instant(), nullable=True),
        sa.Column("responded_at", _instant(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback")),
        sa.UniqueConstraint("dedup_key", name=op.f("uq_feedback_dedup_key")),
    )
    op.create_index(op.f("ix_feedback_responded_at_due_at"), "feedback", ["responded_at", "due_at"])
    op.create_index(op.f("ix_feedback_customer_id_received_at"), "feedback", ["customer_id", "received_at"])
    op.create_index(op.f("ix_feedback_received_at"), "feedback", ["received_at"])
    op.create_index(op.f("ix_feedback_request_id"), "feedback", ["request_id"])
    op.create_table(
        "feedback_responses",
        sa.Column("id", _SERIAL, autoincrement=True, nullable=False),
        sa.Column("feedback_id", sa.BigInteger(), nullable=False),
        sa.Column("by_id", sa.String(100), nullable=True),
        sa.Column("template_id", sa.String(100), nullable=True),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        sa.Column("at", _instant(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback_responses")),
    )
    op.create_index(op.f("ix_feedback_responses_feedback_id_at"), "feedback_responses", ["feedback_id", "at"])
    op.create_table(
        "suggestions",
        sa.Column("id", _SERIAL, autoincrement=True, nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", _instant(), nullable=False),
        sa.Column("updated_at", _instant(), nullable=False),
        sa.Column("done_at", _instant(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suggestions")),
    )
    op.create_index(op.f("ix_suggestions_status_updated_at"), "suggestions", ["status", "updated_at"])
    op.create_table(
        "suggestion_askers",
        sa.Column("suggestion_id", sa.BigInteger(), nullable=False),
        sa.Column("feedback_id", sa.BigInteger(), nullable=False),
        sa.Column("customer_id", sa.String(200), nullable=True),
        sa.Column("notified_at", _instant(), nullable=True),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("suggestion_id", "feedback_id", name=op.f("pk_suggestion_askers")),
    )
    op.create_table(
        "triage_corrections",
        sa.Column("id", _SERIAL, autoincrement=True, nullable=False),
        sa.Column("feedback_id", sa.BigInteger(), nullable=False),
        sa.Column("field", sa.String(20), nullable=False),
        sa.Column("old_value", sa.String(50), nullable=True),
        sa.Column("new_value", sa.String(50), nullable=True),
        sa.Column("by_id", sa.String(100), nullable=False),
        sa.Column("at", _instant(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_triage_corrections")),
    )
    op.create_index(op.f("ix_triage_corrections_feedback_id_at"), "triage_corrections", ["feedback_id", "at"])
    op.create_index(op.f("ix_triage_corrections_at"), "triage_corrections", ["at"])


def downgrade() -> None:
    for table in (
        "triage_corrections",
        "suggestion_askers",
        "suggestions",
        "feedback_responses",
        "feedback",
        "feedback_requests",
    ):
        op.drop_table(table)
