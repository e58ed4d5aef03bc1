"""The database schema: every table amends keeps, in one MetaData.

The store knows no stage's types; each stage reads and writes its own tables with Core expressions.
Every retried write has a key backed by a unique constraint (events on source and id). Changing a table
here needs a migration in store/migrations/versions (see docs/operations.md).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

from amends.store.types import Hundredths, JSONDocument, SerialKey, UTCDateTime

__all__ = [
    "api_keys",
    "approvals",
    "audit_log",
    "broker_positions",
    "card_tasks",
    "case_contacts",
    "case_incidents",
    "case_steps",
    "cases",
    "complaints",
    "console_sessions",
    "customers",
    "detect_cursors",
    "detect_state",
    "events",
    "feedback",
    "feedback_cursors",
    "feedback_requests",
    "feedback_responses",
    "handoffs",
    "inbound_replies",
    "incidents",
    "ledger",
    "messages",
    "metadata",
    "opt_outs",
    "recover_cursors",
    "risk_models",
    "risk_scores",
    "risk_watch",
    "staff",
    "staff_recovery_codes",
    "suggestion_askers",
    "suggestions",
    "triage_corrections",
]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# A customer is created the first time an event names them as its subject; the id is the company's own.
customers = Table(
    "customers",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("created_at", UTCDateTime(), nullable=False),
)

# The event ledger: append-only, one row per (source, event_id); `seq` is the order of arrival.
# Uniqueness is kept on `dedup_key`, a 128-bit BLAKE2b digest of (source, event_id) in 22 characters
# of URL-safe base64 (see events/ledger.py): it indexes faster and smaller than the two strings.
# `subject` has no foreign key: the ledger creates the customer in the same transaction as the event,
# and a key check per inserted row was the ledger's largest single cost.
events = Table(
    "events",
    metadata,
    Column("seq", SerialKey, primary_key=True, autoincrement=True),
    Column("dedup_key", String(22), nullable=False),
    Column("source", String(500), nullable=False),
    Column("event_id", String(500), nullable=False),
    Column("type", String(200), nullable=False),
    Column("time", UTCDateTime(), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("data", JSONDocument, nullable=False),
    # Optional CloudEvents attributes and extensions, kept as sent; NULL when there are none.
    Column("attributes", JSONDocument, nullable=True),
    Column("received_at", UTCDateTime(), nullable=False),
    UniqueConstraint("dedup_key"),
    Index(None, "subject", "time", "seq"),
)

# API keys for integrations: only a SHA-256 of the secret part is kept; `id` is the public prefix.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("key_hash", String(64), nullable=False),
    Column("scopes", JSONDocument, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime(), nullable=True),
    Column("staff_id", String(100), nullable=True),  # a staff member's own key: it acts as them, with their role
    Column("expires_at", UTCDateTime(), nullable=True),  # refused from then on; null: until revoked
)
# A name is unique among the keys still in use, so a revoked key's name can be given to its successor.
Index(
    "uq_api_keys_active_name",
    api_keys.c.name,
    unique=True,
    sqlite_where=api_keys.c.revoked_at.is_(None),
    postgresql_where=api_keys.c.revoked_at.is_(None),
)

# Incidents: one detected failure for one customer, unique on (rule, correlation key) so that evaluating
# an event again, or backfilling history the streaming evaluator has seen, never makes a second one.
# `key` is text: a correlation key is whatever the rule reads from the event (an order id, a vehicle id).
incidents = Table(
    "incidents",
    metadata,
    Column("id", SerialKey, primary_key=True, autoincrement=True),
    Column("rule_id", String(100), nullable=False),
    Column("key", Text, nullable=False),
    Column("customer_id", String(200), nullable=False),
    Column("severity", Integer, nullable=False),
    Column("playbook", String(100), nullable=True),
    Column("status", String(20), nullable=False),  # open | resolved_late
    Column("failure_at", UTCDateTime(), nullable=False),  # when it went wrong (event time)
    Column("detected_at", UTCDateTime(), nullable=False),  # when amends noticed (wall clock)
    Column("detected_by", String(20), nullable=False),  # stream | backfill
    Column("resolved_at", UTCDateTime(), nullable=True),  # the expected event, when it came late
    Column("facts", JSONDocument, nullable=False),
    Column("resolution", JSONDocument, nullable=True),  # the late event, by reference
    UniqueConstraint("rule_id", "key"),
    Index(None, "customer_id", "failure_at"),
    Index(None, "failure_at"),
)

# The streaming evaluator's state, one row per entry (an absence rule's expectation, a count window, a
# sequence's pending first event, a cooldown), written in the same transaction as the events that changed
# it. `due` is when the entry next needs attention: an expectation's deadline is its durable timer.
# `detector` names the evaluator it belongs to, as `detect_cursors.name` does.
detect_state = Table(
    "detect_state",
    metadata,
    Column("detector", String(50), nullable=False),
    Column("kind", String(10), nullable=False),
    Column("rule_id", String(100), nullable=False),
    Column("key", Text, nullable=False),
    Column("due", UTCDateTime(), nullable=False),
    Column("payload", JSONDocument, nullable=False),
    PrimaryKeyConstraint("detector", "kind", "rule_id", "key"),
)

# Where each streaming evaluator is (one, `main`, in embedded mode; one per partition in broker mode): the last
# ledger `seq` it has taken, the oldest one still waiting above its watermark, the watermark itself, and a version
# that every evaluation increments, so a process can tell that another one has moved the state on.
detect_cursors = Table(
    "detect_cursors",
    metadata,
    Column("name", String(50), primary_key=True),
    Column("version", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("low_seq", BigInteger, nullable=True),
    Column("watermark", UTCDateTime(), nullable=True),
    Column("latest", UTCDateTime(), nullable=True),
    Column("late_events", BigInteger, nullable=False),
    Column("skipped", JSONDocument, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

# Broker mode: how far each partition of the events stream has been taken into the ledger (the stream sequence of
# its last message stored), written in the transaction that stores the messages. A new owner of the partition
# goes on from the message after it. `partitions` is the partition count the position was taken under,
# `stream_created` when the stream was made (a stream made anew starts its sequence again); `epoch` counts the
# takings of the partition: a batch is stored only by the owner of the current epoch (detect/partitioned.py).
broker_positions = Table(
    "broker_positions",
    metadata,
    Column("stream", String(100), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("partitions", Integer, nullable=False),
    Column("stream_created", String(40), nullable=False),
    Column("epoch", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("stream", "partition"),
)

# --- recovery (recover/) ---------------------------------------------------------------------------------

# Staff: the people who work cases. `id` is the company's own staff id (events may name who served a
# customer by it). `last_assigned_at` makes round-robin assignment fair across processes and restarts.
staff = Table(
    "staff",
    metadata,
    Column("id", String(100), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("email", String(320), nullable=True),
    Column("role", String(20), nullable=False),  # agent | lead | manager | admin
    Column("team", String(100), nullable=True),
    Column("active", Boolean, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("last_assigned_at", UTCDateTime(), nullable=True),
    # The console password as an Argon2id hash (access/passwords.py); null: this person cannot log in.
    Column("password_hash", String(200), nullable=True),
    Column("password_changed_at", UTCDateTime(), nullable=True),
    # The second step at login (access/totp.py): the shared secret, base32, never shown again once confirmed; it
    # is on when `totp_enabled_at` is set (a secret without it is an enrolment not yet confirmed). The last time
    # step accepted, so that no code is used twice.
    Column("totp_secret", String(64), nullable=True),
    Column("totp_enabled_at", UTCDateTime(), nullable=True),
    Column("totp_last_step", BigInteger, nullable=True),
)

# One-time recovery codes for the second step, as SHA-256 hashes; a used one keeps its row with `used_at`.
staff_recovery_codes = Table(
    "staff_recovery_codes",
    metadata,
    Column("staff_id", String(100), primary_key=True),
    Column("code_hash", String(64), primary_key=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("used_at", UTCDateTime(), nullable=True),
)

# Failed console sign-ins (access/login_attempts.py), counted here so that every process counts the same ones: by
# the client's address and by a keyed hash of the name tried. Only a window's worth is kept.
login_failures = Table(
    "login_failures",
    metadata,
    Column("id", SerialKey, primary_key=True, autoincrement=True),
    Column("address", String(64), nullable=False),
    Column("name_key", String(64), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Index(None, "address", "at"),
    Index(None, "name_key", "at"),
    Index(None, "at"),
)

# Console sessions: the cookie holds a random token, the table only its SHA-256. A session ends at logout,
# when idle too long, at its absolute expiry, or when the password changes (all of that person's sessions go).
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("id", String(64), primary_key=True),  # SHA-256 of the cookie's token, hex
    Column("staff_id", String(100), nullable=False, index=True),
    Column("csrf_token", String(64), nullable=False),  # every form of the session carries it back
    Column("created_at", UTCDateTime(), nullable=False),
    Column("last_seen_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("origin", String(100), nullable=True),  # the client's address at login
    Column("user_agent", String(200), nullable=True),  # the browser's User-Agent at login, shown to its person
    # Null: signed in. "code": the password was right, the second step's code is still to come; "enrol": the
    # person's role needs a second step they have not set up. Neither opens any page but that step's.
    Column("stage", String(10), nullable=True),
)

# Cases: the recovery work for one customer. At most one open case per customer (the partial unique
# index below): a new incident or complaint joins it. `first_contact_at` is our first contact with the
# customer, `customer_spoke_at` the first time they raised it themselves; which came first is the
# measure "the customer spoke first".
cases = Table(
    "cases",
    metadata,
    Column("id", SerialKey, primary_key=True, autoincrement=True),
    Column("customer_id", String(200), nullable=False),
    Column("origin", String(10), nullable=False),  # proactive | reactive
    Column("status", String(10), nullable=False),  # open | resolved | closed
    Column("playbook", String(100), nullable=False),
    Column("severity", Integer, nullable=False),
    Column("fault", String(10), nullable=False),  # company | customer | unknown; never changes the playbook
    Column("owner_id", String(100), nullable=True),
    Column("team", String(100), nullable=True),
    Column("acknowledged_at", UTCDateTime(), nullable=True),  # the current owner took it on
    Column("opened_at", UTCDateTime(), nullable=False),
    Column("resolved_at", UTCDateTime(), nullable=True),
    Column("closed_at", UTCDateTime(), nullable=True),
    Column("first_contact_at", UTCDateTime(), nullable=True),
    Column("customer_spoke_at", UTCDateTime(), nullable=True),
    Column("reopened", Integer, nullable=False),
    Column("resolution", Text, nullable=True),
    Column("held_out", Boolean, nullable=False, server_default=false()),  # drawn into the holdout at opening
    Column("holdout_lifted_at", UTCDateTime(), nullable=True),  # a joining incident above the ceiling lifted it
    Index(None, "status", "opened_at"),
    Index(None, "owner_id", "status"),
    Index(None, "customer_id", "opened_at"),
)
Index(
    "uq_cases_open_customer",
    cases.c.customer_id,
    unique=True,
    sqlite_where=cases.c.status == "open",
    postgresql_where=cases.c.status == "open",
)

# The holdout experiment (recover/holdout.py): the draw of every incident that opened a proactive case while
# an experiment ran, recorded once (append-only), and each period's settings.
holdout_periods = Table(
    "holdout_periods",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("plan", JSONDocument, nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
)
holdout_draws = Table(
    "holdout_draws",
    metadata,
    Column("incident_id", BigInteger, primary_key=True),
    Column("case_id", BigInteger, nullable=False),
    Column("customer_id", String(200), nullable=False),
    Column("rule_id", String(100), nullable=False),
    Column("severity", Integer, nullable=False),
    Column("failure_at", UTCDateTime(), nullable=False),
    Column("period", String(32), nullable=False),
    Column("share", Float, nullable=False),
    Column("draw", Float, nullable=False),
    Column("held_out", Boolean, nullable=False),
    Column("drawn_at", UTCDateTime(), nullable=False),
    UniqueConstraint("case_id"),
    Index(None, "period", "failure_at"),
    Index(None, "customer_id"),
)

# The risk model (detect/risk): each trained version as text and numbers (never a pickle), and the scores given.
risk_models = Table(
    "risk_models",
    metadata,
    Column("id", SerialKey, primary_key=True, autoincrement=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("trained_until", UTCDateTime(), nullable=False),  # the last labelled moment it learned from
    Column("spec", Text, nullable=False),  # the feature spec's YAML
    Column("features", JSONDocument, nullable=False),  # the feature ids, in the trees' order
    Column("booster", Text, nullable=False),  # LightGBM's model text
    Column("calibration", JSONDocument, nullable=False),  # {"x": [...], "y": [...]}: raw score to probability
    Column("usual", JSONDocument, nullable=False),  # each feature's median in training
    Column("metrics", JSONDocument, nullable=False),  # fit, calibrate and test evaluations
)
risk_scores = Table(
    "risk_scores",
    metadata,
    Column("id", SerialKey, primary_key=True, autoincrement=True),
    Column("model_id", BigInteger, nullable=False),
    Column("customer_id", String(200), nullable=False),
    Column("at", UTCDateTime(), nullable=False),  # the moment scored
    Column("score", Float, nullable=False),  # the calibrated probability
    Column("reasons", JSONDocument, nullable=False),  # [{feature, description, value, usual, push}]
    Column("scored_at", UTCDateTime(), nullable=False),
    Column("scored_by", String(20), nullable=False),  # score: `amends score`; watch: the risk watch, at a moment
    UniqueConstraint("model_id", "customer_id", "at"),
    Index(None, "customer_id", "at"),
    Index(None, "scored_by", "at"),
)
# How far into the ledger the risk watch (detect/risk/watch.py) has scored the model's moments: the last `seq`.
risk_watch = Table(
    "risk_watch",
    metadata,
    Column("name", String(50), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

# Which case each incident opened or joined: one case per incident.
case_incidents = Table(
    "case_incidents",
    metadata,
    Column("incident_id", BigInteger, primary_key=True),
    Column("case_id", BigInteger, nullable=False),
    Column("joined_at", UTCDateTime(), nullable=False),
    Index(None, "case_id"),
)

# The steps of a case's playbook, with their due times (NULL while anchored on a resolution to come).
case_steps = Table(
    "case_steps",
    metadata,
    Column("case_id", BigInteger, nullable=False),
    Column("position", Integer, nullable=False),
    Column("kind", String(30), nullable=False),
    Column("title", String(200), nullable=False),
    Column("due_at", UTCDateTime(), nullable=True),
    Column("completed_at", UTCDateTime(), nullable=True),
    Column("completed_by", String(100), nullable=True),
    Column("draft", Text, nullable=True),  # the apology's draft, for the empathise step
    Column("outcome", JSONDocument, nullable=True),  # what completed it: a note, the remedy, the answer
    PrimaryKeyConstraint("case_id", "kind"),
    Index(None, "completed_at", "due_at"),
)

# Every change of owner, with its reason: the first assignment has no `from_id`.
handoffs = Table(
    "handoffs",
    metadata,
    Column("id", SerialKey, primary_key=True, autoincrement=True),
    Column("case_id", BigInteger, nullable=False),
    Column("from_id", String(100), nullable=True),
    Column("to_id", String(100), nullable=False),
    Column("reason", Text, nullable=False),
    Column("by_id", String(100), nullable=True),  # NULL: the assignment strategy
    Column("at", UTCDateTime(), nullable=False),
    Index(None, "case_id", "at"),
)

# Contacts with the customer about a case, either way (the apology sent, a call, the customer's email).
case_contacts = Table(
    "case_contacts",
    metadata,
    Column("id", SerialKey, primary_key=True, autoincrement=True),
    Column("case_id", BigInteger, nullable=False),
    Column("direction", String(10), nullable=False),  # outbound | inbound
    Column("channel", String(20), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("by_id", String(100), nullable=True),
    Column("note", Text, nullable=True),
    Index(None, "case_id", "at"),
)

# Complaints: the customer spoke. Unique on (source, external_id) so a retried submission is one complaint.
complaints = Table(
    "complaints",
    metadata,
    Column("id", SerialKey, primary_key=True, autoincrement=True),
    Column("source", String(500), nullable=False),
    Column("external_id", String(500), nullable=False),
    Column("customer_id", String(200), nullable=False),
    Column("channel", String(20), nullable=False),
    Column("text", Text, nullable=False),
    Column("reference", String(500), nullable=True),  # what it is about: an order, a booking, a job
    Column("received_at", UTCDateTime(), nullable=False),
    Column("case_id", BigInteger, nullable=False),
    Column("incident_id", BigInteger, nullable=True),  # the incident of the open case it is about
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("source", "external_id"),
    Index(None, "case_id"),
)

# Requests to grant a remedy above the requester's authority, and the manager's decision. One pending
# request per (case, slot).
approvals = Table(
    "approvals",
    metadata,
    Column("id", SerialKey, primary_key=True, autoincrement=True),
    Column("case_id", BigInteger, nullable=False),
    Column("slot", String(100), nullable=False),
    Column("incident_id", BigInteger, nullable=True),
    Column("kind", String(100), nullable=False),
    Column("amount", Hundredths(), nullable=False),
    Column("cash_value", Hundredths(), nullable=False),
    Column("policy", String(100), nullable=False),
    Column("note", Text, nullable=True),
    Column("status", String(10), nullable=False),  # pending | approved | denied
    Column("requested_by", String(100), nullable=False),
    Column("requested_at", UTCDateTime(), nullable=False),
    Column("decided_by", String(100), nullable=True),
    Column("decided_at", UTCDateTime(), nullable=True),
    Column("reason", Text, nullable=True),
    Index(None, "status", "requested_at"),
    Index(None, "case_id"),
)
Index(
    "uq_approvals_pending_slot",
    approvals.c.case_id,
    approvals.c.slot,
    unique=True,
    sqlite_where=approvals.c.status == "pending",
    postgresql_where=approvals.c.status == "pending",
)

# The remedy ledger: append-only (triggers refuse UPDATE and DELETE). `entry_key` is the idempotency key,
# `case:<id>:<slot>` for a grant and `reverse:<id>` for a correction, so the same grant submitted any number
# of times, at once or in turn, is one entry. A correction is a reversing entry with the negated amount.
ledger = Table(
    "ledger",
    metadata,
    Column("id", SerialKey, primary_key=True, autoincrement=True),
    Column("entry_key", String(200), nullable=False),
    Column("case_id", BigInteger, nullable=False),
    Column("slot", String(100), nullable=False),
    Column("customer_id", String(200), nullable=False),
    Column("incident_id", BigInteger, nullable=True),
    Column("kind", String(100), nullable=False),
    Column("amount", Hundredths(), nullable=False),
    Column("unit", String(50), nullable=False),
    Column("cash_value", Hundredths(), nullable=False),
    Column("policy", String(100), nullable=False),  # the proposal it followed, or `discretion`
    Column("granted_by", String(100), nullable=False),
    Column("approval_id", BigInteger, nullable=True),
    Column("reverses_id", BigInteger, nullable=True),
    Column("note", Text, nullable=True),
    Column("at", UTCDateTime(), nullable=False),
    UniqueConstraint("entry_key"),
    Index(None, "case_id"),
    Index(None, "kind", "at"),
    Index(None, "granted_by", "at"),
)

# Who did what, when, from where: every decision of the recovery stage. Append-only, like the ledger.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", SerialKey, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("actor", String(120), nullable=False),  # staff:<id>, key:<id>, or system
    Column("action", String(50), nullable=False),
    Column("target", String(120), nullable=False),  # case:<id>, approval:<id>, ledger:<id>, staff:<id>
    Column("origin", String(100), nullable=True),  # the client's address, when it came over HTTP
    Column("details", JSONDocument, nullable=False),
    # SHA-256 of the entry before's hash and this entry's content (recover/audit.py): a chain, in the order of `id`.
    Column("hash", String(64), nullable=True),
    Index(None, "target", "at"),
    Index(None, "at"),
)

# Where case intake is: the last incident id it has taken.
recover_cursors = Table(
    "recover_cursors",
    metadata,
    Column("name", String(50), primary_key=True),
    Column("incident_id", BigInteger, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

# --- outreach (outreach/) --------------------------------------------------------------------------------

# The outbox: every message to a customer, written in the same transaction as the decision that causes it and
# delivered afterwards by a worker. `key` is the idempotency key (`case:12:empathise:email`): the same decision
# made twice is one message. A worker claims a due row by setting `lease_owner` and `lease_until`; only the
# lease's owner may record the outcome. `attempts` counts the claims; `not_before` is the earliest send time
# (quiet hours), and `next_attempt_at` is never before it.
messages = Table(
    "messages",
    metadata,
    Column("id", SerialKey, primary_key=True, autoincrement=True),
    Column("key", String(200), nullable=False),
    Column("case_id", BigInteger, nullable=True),
    Column("customer_id", String(200), nullable=False),
    Column("channel", String(20), nullable=False),  # email | webhook | card | file
    Column("kind", String(20), nullable=False),  # a MessageKind (outreach/outbox.py)
    Column("recipient", Text, nullable=False),  # an email address, a URL, a postal address
    Column("subject", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("html", Text, nullable=True),
    Column("headers", JSONDocument, nullable=False),  # extra headers, such as List-Unsubscribe
    Column("status", String(10), nullable=False),  # pending | sent | dead | cancelled
    Column("attempts", Integer, nullable=False),
    Column("not_before", UTCDateTime(), nullable=False),
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    Column("lease_owner", String(200), nullable=True),
    Column("lease_until", UTCDateTime(), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("sent_at", UTCDateTime(), nullable=True),
    Column("provider_id", String(500), nullable=True),  # the channel's id for it: the email's Message-ID
    Column("note", Text, nullable=True),  # what the contact policy did: delayed by quiet hours, withheld
    UniqueConstraint("key"),
    Index(None, "provider_id"),  # a customer's reply names the Message-ID of ours it answers
    Index(None, "status", "next_attempt_at"),
    Index(None, "case_id", "created_at"),
    Index(None, "customer_id", "created_at"),  # the contact policy counts a customer's recent messages
    Index(None, "created_at"),
)

# Customers who asked for no more messages (the signed unsubscribe link, or staff on their behalf). One row per
# customer; asking again keeps the first time. Re-subscribing deletes the row (the audit log keeps both).
opt_outs = Table(
    "opt_outs",
    metadata,
    Column("customer_id", String(200), primary_key=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("source", String(20), nullable=False),  # link | staff | api
)

# A hand-written card for staff to write and post: one per card message, made when the card channel delivers it.
card_tasks = Table(
    "card_tasks",
    metadata,
    Column("id", SerialKey, primary_key=True, autoincrement=True),
    Column("message_id", BigInteger, nullable=False),
    Column("case_id", BigInteger, nullable=True),
    Column("customer_id", String(200), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("printed_at", UTCDateTime(), nullable=True),
    Column("written_at", UTCDateTime(), nullable=True),
    Column("written_by", String(100), nullable=True),
    Column("posted_at", UTCDateTime(), nullable=True),
    Column("posted_by", String(100), nullable=True),
    UniqueConstraint("message_id"),  # the channel delivers at least once; the task is made once
    Index(None, "posted_at", "created_at"),
)

# Customers' replies to our messages, as an inbound-mail provider posted them; `dedup_key` makes a provider's
# retry harmless. The reply also lands on its case's thread (case_contacts).
inbound_replies = Table(
    "inbound_replies",
    metadata,
    Column("id", SerialKey, primary_key=True, autoincrement=True),
    Column("dedup_key", String(200), nullable=False),
    Column("provider", String(50), nullable=False),
    Column("message_id", BigInteger, nullable=True),  # the message of ours it answers, when known
    Column("case_id", BigInteger, nullable=True),
    Column("customer_id", String(200), nullable=True),
    Column("from_address", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("text", Text, nullable=False),  # the reply without the quoted original
    Column("headers", JSONDocument, nullable=False),  # [[name, value], ...] in the order they came
    Column("received_at", UTCDateTime(), nullable=False),
    Column("email_message_id", Text, nullable=True),  # the reply's own Message-ID
    Column("full_text", Text, nullable=True),  # the whole text part, the quote included
    Column("html", Text, nullable=True),
    Column("matched_by", String(20), nullable=True),  # in_reply_to | references | sender (a customer, no case)
    Column("case_status", String(10), nullable=True),  # the case's status when the reply came
    Column("attachments", JSONDocument, nullable=True),  # [{name, content_type, size}]: named, not kept
    UniqueConstraint("dedup_key"),
    Index(None, "case_id", "received_at"),
    Index(None, "received_at"),
)


# --- feedback -----------------------------------------------------------------------------------------------

# A question we ask about one interaction (an invoice, a finished service, a resolved case): one per
# `interaction` (e.g. event:<source>|<id>, case:<id>), answered through a signed, expiring link to its page.
feedback_requests = Table(
    "feedback_requests",
    metadata,
    Column("id", SerialKey, primary_key=True, autoincrement=True),
    Column("interaction", String(300), nullable=False),
    Column("customer_id", String(200), nullable=False),
    Column("case_id", BigInteger, nullable=True),
    Column("event_type", String(200), nullable=True),  # the event it asks about, if one
    Column("reference", Text, nullable=True),  # what it is about, in the company's words: an order, a job
    Column("scale", String(10), nullable=True),  # csat | nps | effort; NULL: no rating asked
    Column("language", String(35), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("message_id", BigInteger, nullable=True),  # the message that carried the link, if one did
    Column("answered_at", UTCDateTime(), nullable=True),
    UniqueConstraint("interaction"),
    Index(None, "customer_id", "created_at"),
)

# Where asking for feedback is: `events`, the last event looked at (`position`: its seq); `cases`, the last
# resolved case looked at (`at`: when it was resolved, `position`: its id).
feedback_cursors = Table(
    "feedback_cursors",
    metadata,
    Column("name", String(50), primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("at", UTCDateTime(), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
)

# What a customer wrote: on the page of a request, through the API (an email, a review, a phone note), or as a
# reply. Unique on `dedup_key` (request:<id>, or <source>|<external id>) so a retry is one feedback. Triage
# labels it; routing decides what follows; `due_at` is when it must be answered (NULL: no answer needed, spam).
feedback = Table(
    "feedback",
    metadata,
    Column("id", SerialKey, primary_key=True, autoincrement=True),
    Column("dedup_key", String(300), nullable=False),
    Column("request_id", BigInteger, nullable=True),
    Column("customer_id", String(200), nullable=True),  # NULL: a review by someone we cannot name
    Column("author", Text, nullable=True),  # as the source names them
    Column("channel", String(20), nullable=False),  # page | email | web_comment | review | phone | reply
    Column("liked", Text, nullable=True),  # "What do you like?"
    Column("disliked", Text, nullable=True),  # "What don't you like?"
    Column("text", Text, nullable=False),  # everything they wrote, as triaged
    Column("rating", Integer, nullable=True),
    Column("scale", String(10), nullable=True),
    Column("language", String(35), nullable=True),
    Column("reference", Text, nullable=True),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("editable_until", UTCDateTime(), nullable=True),
    # Triage: the labels, why, and by which model; corrected labels replace them (triage_corrections keeps both).
    Column("spam", Boolean, nullable=False),
    Column("spam_score", Float, nullable=False),
    Column("sentiment", String(10), nullable=False),  # negative | neutral | positive
    Column("sentiment_score", Float, nullable=False),
    Column("topic", String(50), nullable=True),
    Column("urgency", String(10), nullable=False),  # low | normal | high
    Column("reasons", JSONDocument, nullable=False),
    Column("model", String(100), nullable=False),
    # Routing: case (negative: a reactive case), suggestion, praise, spam (quarantined), none.
    Column("route", String(20), nullable=False),
    Column("case_id", BigInteger, nullable=True),
    Column("suggestion_id", BigInteger, nullable=True),
    Column("staff_id", String(100), nullable=True),  # the staff member praise names
    Column("due_at", UTCDateTime(), nullable=True),
    Column("responded_at", UTCDateTime(), nullable=True),
    UniqueConstraint("dedup_key"),
    Index(None, "responded_at", "due_at"),
    Index(None, "customer_id", "received_at"),
    Index(None, "received_at"),
    Index(None, "request_id"),
)

# The answers to feedback: by a person or from an approved template, sent through outreach (`message_id`).
feedback_responses = Table(
    "feedback_responses",
    metadata,
    Column("id", SerialKey, primary_key=True, autoincrement=True),
    Column("feedback_id", BigInteger, nullable=False),
    Column("by_id", String(100), nullable=True),  # NULL: amends itself (a template sent on its own)
    Column("template_id", String(100), nullable=True),
    Column("channel", String(20), nullable=False),
    Column("text", Text, nullable=False),
    Column("message_id", BigInteger, nullable=True),
    Column("at", UTCDateTime(), nullable=False),
    Index(None, "feedback_id", "at"),
)

# Suggestions customers made, tracked to their outcome; the customers who asked are told when one is done.
suggestions = Table(
    "suggestions",
    metadata,
    Column("id", SerialKey, primary_key=True, autoincrement=True),
    Column("title", Text, nullable=False),
    Column("status", String(10), nullable=False),  # new | planned | done | declined
    Column("note", Text, nullable=True),  # what was done, or why not: what the customers are told
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("done_at", UTCDateTime(), nullable=True),
    Index(None, "status", "updated_at"),
)

suggestion_askers = Table(
    "suggestion_askers",
    metadata,
    Column("suggestion_id", BigInteger, nullable=False),
    Column("feedback_id", BigInteger, nullable=False),
    Column("customer_id", String(200), nullable=True),
    Column("notified_at", UTCDateTime(), nullable=True),
    Column("message_id", BigInteger, nullable=True),
    PrimaryKeyConstraint("suggestion_id", "feedback_id"),
)

# Staff corrections of triage labels: the training data of `amends triage train`, and the history of a label.
triage_corrections = Table(
    "triage_corrections",
    metadata,
    Column("id", SerialKey, primary_key=True, autoincrement=True),
    Column("feedback_id", BigInteger, nullable=False),
    Column("field", String(20), nullable=False),  # spam | sentiment | topic | urgency
    Column("old_value", String(50), nullable=True),
    Column("new_value", String(50), nullable=True),
    Column("by_id", String(100), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Index(None, "feedback_id", "at"),
    Index(None, "at"),
)
