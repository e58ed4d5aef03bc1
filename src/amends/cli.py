"""The command line: parse, call one service function, render. `main` is where errors become exit codes.

Exit codes: 0 done; 1 done but not everything could be stored (rows rejected), or a runtime failure
(the database unreachable); 2 bad invocation, bad settings or bad input that stopped the command.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import stat
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, BinaryIO

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

import amends
from amends.access import Scope, create_key, list_keys, revoke_key
from amends.allocator import limit_arenas
from amends.config import Settings, config_path, load_settings
from amends.durations import format_duration
from amends.errors import AmendsError, InvalidInput
from amends.events import (
    ColumnMapping,
    EventSink,
    FileFormat,
    FileProgress,
    FileReport,
    LedgerWatcher,
    RejectedRow,
    ingest_file,
)
from amends.logs import configure_logging
from amends.store import Database, head_revision, upgrade
from amends.store.backup import running_on

if TYPE_CHECKING:
    from amends.detect import RuleSetError
    from amends.detect.service import Detection
    from amends.feedback.asking import Asking
    from amends.feedback.service import FeedbackDesk
    from amends.insights.experiment import Estimate
    from amends.outreach.delivery import Delivery
    from amends.recover.service import Recovery

app = typer.Typer(
    name="amends",
    help="Proactive service recovery: notice when a customer was let down, and make amends.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(help="API keys for integrations.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
rules_app = typer.Typer(help="Detection rules.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")
playbooks_app = typer.Typer(help="Recovery playbooks.", no_args_is_help=True)
app.add_typer(playbooks_app, name="playbooks")
remedies_app = typer.Typer(help="The remedy policy: kinds, authority limits, budgets, proposals.", no_args_is_help=True)
app.add_typer(remedies_app, name="remedies")
staff_app = typer.Typer(help="Staff: the people who own cases and grant remedies.", no_args_is_help=True)
app.add_typer(staff_app, name="staff")
triage_app = typer.Typer(help="Triage of what customers write: spam, sentiment, topic, urgency.", no_args_is_help=True)
app.add_typer(triage_app, name="triage")
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

_SHOWN_REJECTIONS = 20


def _now() -> datetime:
    return datetime.now(UTC)


@app.command()
def init() -> None:
    """Create the database, or upgrade it to the newest schema. Safe to run again."""
    settings = load_settings()
    db = Database.from_settings(settings)
    try:
        upgrade(db)
    finally:
        db.dispose()
    console.print(f"Database ready: {db.url.render_as_string(hide_password=True)} (schema {head_revision()})")
    if settings.secret_key is None and not config_path().exists():
        _write_config(config_path())
        console.print(f"Wrote {config_path()} with a new secret key (keep it private; it is not in git).")


def _write_config(path: Path) -> None:
    secret = secrets.token_urlsafe(48)
    text = (
        "# amends settings; every key can also be set as an AMENDS_<KEY> environment variable.\n"
        f'secret_key = "{secret}"\n'
        '# database_url = "postgresql://user:password@localhost/amends"\n'
    )
    with _private_file(path, new=True) as file:
        file.write(text.encode())


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (default: the host setting).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default: the port setting).")] = None,
) -> None:
    """Serve the HTTP API (OpenAPI at /docs)."""
    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = load_settings(**overrides)
    _serve(settings)


def _serve(settings: Settings) -> None:
    limit_arenas()  # before any thread starts: importing the web app starts native libraries' thread pools
    import uvicorn

    from amends.detect import RuleSetError
    from amends.web import create_app

    settings.require_secret_key()
    try:
        application = create_app(settings)
    except RuleSetError as exc:
        _print_rule_problems(exc)
        raise typer.Exit(2) from None
    console.print(
        f"amends {amends.__version__} is serving at {settings.base_url}  (API docs: {settings.base_url}/docs)"
    )
    configure_logging(settings)
    with running_on(settings.database_url):  # `amends restore` refuses while this runs
        uvicorn.run(
            application,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            log_config=None,  # configure_logging's handler, masking secrets, for uvicorn's records too
            access_log=False,  # the access line is amends' own, with the request id (web/request_ids.py)
            proxy_headers=False,
        )


@app.command()
def worker() -> None:
    """Run the background work: fire the detection deadlines that fall due (picking up changed rules), take
    new incidents into cases, ask for feedback about new interactions (feedback_request_event_types) and deliver
    the messages that are due, every `detect_sweep_seconds`, until Ctrl-C or SIGTERM. Needed when `amends serve`
    does not do it itself; several workers share the outbox."""
    limit_arenas()  # before any thread starts: importing the work starts native libraries' thread pools
    from amends.background import Background
    from amends.feedback.asking import Asking
    from amends.feedback.service import FeedbackDesk
    from amends.outreach.delivery import Delivery
    from amends.outreach.service import Outreach
    from amends.privacy.retention import Retention

    settings = load_settings()
    configure_logging(settings)
    db = Database.from_settings(settings)
    running = contextlib.ExitStack()
    try:
        running.enter_context(running_on(settings.database_url))  # `amends restore` refuses while this runs
        # In broker mode the partitions' detection is made by _broker_worker, even with detection off.
        detection = _detection(db, settings) if settings.broker_url is None else None
        recovery = _recovery(db, settings)
        delivery = Delivery.from_settings(db, settings) if settings.outbox_deliver else None
        asking = alerts = None
        if recovery is not None:  # asking and alerts write through outreach, which needs the remedy policy
            outreach = Outreach.from_settings(settings, recovery.policy)
            asking = Asking.from_settings(db, settings, outreach)
            if settings.alert_webhook_url is not None:
                alerts = (FeedbackDesk.from_settings(settings, intake=recovery.intake, outreach=outreach), db)
        asking = asking if asking is not None and asking.enabled else None
        if settings.broker_url is not None:
            _broker_worker(db, settings, recovery, delivery, asking, alerts)
            return
        keeping = Retention.from_settings(db, settings)
        if detection is None and recovery is None and delivery is None and not keeping.enabled:
            raise InvalidInput(
                "detect_enabled",
                "detection, recovery, delivery and retention are switched off: a worker has nothing to do",
            )
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
        rules = "no" if detection is None else len(detection.detector.rules)
        console.print(
            f"amends worker: {rules} rules, case intake {'on' if recovery else 'off'}, outbox "
            f"{'on: ' + ', '.join(sorted(delivery.channels)) if delivery else 'off'}, every "
            f"{settings.detect_sweep_seconds:g} s by the {settings.detect_clock} clock. Ctrl-C stops it."
        )
        with contextlib.suppress(KeyboardInterrupt):
            Background(
                detection,
                recovery,
                seconds=settings.detect_sweep_seconds,
                delivery=delivery,
                asking=asking,
                feedback=alerts,
                retention=keeping,
            ).run(stop)
        if detection is not None:
            detected = detection.detector.detected
            console.print(f"Stopped: {detected.opened:,} incident(s) opened, {detected.resolved_late:,} resolved late.")
    finally:
        db.dispose()
        running.close()


@app.command()
def backfill(
    since: Annotated[
        str | None, typer.Option(help="Only events at or after this date or instant (UTC unless it says).")
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            help="The watermark: events before it are evaluated, deadlines before it fire. "
            "Default: now, less the allowed lateness.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Replay stored history through the rules (the batch evaluator) and store the incidents it finds.
    Incidents already stored, by streaming or an earlier backfill, are not opened twice."""
    from amends.detect import RuleSetError
    from amends.detect.backfill import backfill as run_backfill
    from amends.detect.service import RuleSource

    settings = load_settings()
    start = None if since is None else _instant_option(since, "--since")
    end = _now() - settings.detect_allowed_lateness if until is None else _instant_option(until, "--until")
    try:
        rules = RuleSource(settings.rule_packs, settings.rules_dir).load()
    except RuleSetError as exc:
        _print_rule_problems(exc)
        raise typer.Exit(2) from None
    if not rules:
        raise InvalidInput("rule_packs", "no rules to run: set rule_packs or rules_dir")
    db = Database.from_settings(settings)
    try:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,.0f}/{task.total:,.0f} events"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task("Reading history", total=0)
            done = run_backfill(
                db,
                rules,
                since=start,
                until=end,
                now=_now(),
                progress=lambda read, total: bar.update(task, completed=read, total=total),
            )
    finally:
        db.dispose()
    table = Table("rule", "findings", "skipped", title=f"Backfill of {done.events:,} events before {end.isoformat()}")
    for rule in rules:
        rule_id = rule.common.id
        table.add_row(rule_id, f"{done.by_rule.get(rule_id, 0):,}", f"{done.skipped.get(rule_id, 0):,}")
    console.print(table)
    console.print(
        f"Read in {done.read_seconds:.1f} s, evaluated in {done.evaluate_seconds:.1f} s. "
        f"{done.findings:,} findings: {done.detected.opened:,} incidents opened (the others were stored "
        f"already), {done.detected.resolved_late:,} marked resolved late."
    )


@app.command()
def ingest(
    path: Annotated[Path, typer.Argument(help="A .jsonl/.ndjson, .csv or .parquet file.", dir_okay=False)],
    file_format: Annotated[
        FileFormat | None, typer.Option("--format", help="The file's format, when its name does not say.")
    ] = None,
    mapping: Annotated[
        list[str] | None,
        typer.Option("--map", help="ATTRIBUTE=COLUMN: read an envelope attribute from a column. Repeatable."),
    ] = None,
    event_type: Annotated[str | None, typer.Option("--type", help="The type of every event in the file.")] = None,
    source: Annotated[str | None, typer.Option(help="The source of every event in the file.")] = None,
    flat: Annotated[
        bool,
        typer.Option(help="JSONL only: read each line as a flat record (like a CSV row), not an envelope."),
    ] = False,
    timezone: Annotated[
        str | None, typer.Option(help="Time zone for times written without one, e.g. America/Sao_Paulo.")
    ] = None,
    rejects: Annotated[
        Path | None, typer.Option(help="Write every rejected row to this file as JSONL.", dir_okay=False)
    ] = None,
) -> None:
    """Load events from a file; rows are committed in batches and counted as they are stored."""
    settings = load_settings()
    column_mapping = ColumnMapping.parse(
        mapping or [], constants={"type": event_type, "source": source}, flat=flat, timezone=timezone
    )
    if not path.is_file():
        raise InvalidInput("PATH", f"no such file: {path}")
    chosen = file_format or FileFormat.of(path)
    if settings.broker_url is not None:
        _publish_file(settings, path, chosen, column_mapping, rejects)
        return
    db = Database.from_settings(settings)
    try:
        detection = _detection(db, settings)
        recovery = _recovery(db, settings)
        watcher = detection.detector if detection is not None else None
        report = _ingest_with_progress(db, settings, path, chosen, column_mapping, rejects, watcher)
        taken = recovery.tick() if recovery is not None else None
    finally:
        db.dispose()
    _print_report(report)
    if detection is not None:
        detected = detection.detector.detected
        console.print(f"Detection: {detected.opened:,} incident(s) opened, {detected.resolved_late:,} resolved late.")
    if taken is not None and taken.incidents:
        console.print(f"Recovery: {taken.opened:,} case(s) opened, {taken.joined:,} incident(s) joined an open case.")
    if report.rejected:
        raise typer.Exit(1)


def _shown(url: str | None) -> str:
    """A URL without the user and password it may carry."""
    from amends.events.broker import EventBroker

    return "" if url is None else EventBroker(url, partitions=1).shown_url


def _broker_worker(
    db: Database,
    settings: Settings,
    recovery: Recovery | None,
    delivery: Delivery | None,
    asking: Asking | None,
    alerts: tuple[FeedbackDesk, Database] | None,
) -> None:
    """`amends worker` in broker mode: own partitions of the stream until Ctrl-C or SIGTERM (amends.broker_worker)."""
    import asyncio

    from amends.background import Background
    from amends.broker_worker import BrokerWorker
    from amends.detect import RuleSetError
    from amends.detect.service import Detection
    from amends.privacy.retention import Retention

    # The partitions store every event, rules or none: with detection off, they evaluate an empty rule set.
    rules = settings if settings.detect_enabled else settings.model_copy(update={"rule_packs": (), "rules_dir": None})
    try:
        detection = Detection.from_settings(db, rules)
    except RuleSetError as exc:
        _print_rule_problems(exc)
        raise typer.Exit(2) from None
    background = Background(
        detection, recovery, seconds=settings.detect_sweep_seconds, delivery=delivery, asking=asking, feedback=alerts,
        retention=Retention.from_settings(db, settings),
    )  # fmt: skip
    worker = BrokerWorker(db, settings, detection, background=background)
    console.print(
        f"amends worker (broker mode): {len(detection.rules)} rules, {settings.broker_partitions} partitions of "
        f"{settings.broker_stream} at {_shown(settings.broker_url)}, case intake {'on' if recovery else 'off'}, outbox "
        f"{'on: ' + ', '.join(sorted(delivery.channels)) if delivery else 'off'}. Ctrl-C stops it."
    )

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        serving = None
        if settings.worker_metrics_port is not None:
            from amends.web.worker import serve_worker_http

            serving = await serve_worker_http(worker, settings.host, settings.worker_metrics_port)
        try:
            await worker.run(stop)
        finally:
            if serving is not None:
                await serving.stop()

    asyncio.run(run())
    console.print(f"Stopped: {worker.taken_total['accepted']:,} event(s) stored.")


def _detection(db: Database, settings: Settings) -> Detection | None:
    """Detection as the settings describe it, or None when it is switched off; rule problems are printed
    (file, line, sentence) and exit with 2."""
    from amends.detect import RuleSetError
    from amends.detect.service import Detection

    if not settings.detect_enabled:
        return None
    try:
        return Detection.from_settings(db, settings)
    except RuleSetError as exc:
        _print_rule_problems(exc)
        raise typer.Exit(2) from None


def _recovery(db: Database, settings: Settings) -> Recovery | None:
    """Recovery as the settings describe it, or None when it is switched off; problems in the playbooks or
    the remedy policy are printed (file, line, sentence) and exit with 2."""
    from amends.recover.playbooks import PlaybookSetError
    from amends.recover.policy import PolicyError
    from amends.recover.service import Recovery

    if not settings.recover_enabled:
        return None
    try:
        return Recovery.from_settings(db, settings)
    except (PlaybookSetError, PolicyError) as exc:
        _print_problems(exc.problems, "nothing was loaded")
        raise typer.Exit(2) from None


def _print_problems(problems: Sequence[object], outcome: str) -> None:
    for problem in problems:
        err_console.print(str(problem), soft_wrap=True)
    err_console.print(f"[red]{len(problems)} problem(s); {outcome}.[/]")


def _print_rule_problems(exc: RuleSetError) -> None:
    for problem in exc.problems:
        err_console.print(str(problem), soft_wrap=True)
    err_console.print(f"[red]{len(exc.problems)} problem(s); no rule was loaded.[/]")


def _publish_file(
    settings: Settings, path: Path, file_format: FileFormat, mapping: ColumnMapping, rejects: Path | None
) -> None:
    """`amends ingest` in broker mode: publish the file's events to the stream; the workers store them."""
    from amends.events.broker import BrokerSink, EventBroker

    broker = EventBroker(
        str(settings.broker_url),
        partitions=settings.broker_partitions,
        stream=settings.broker_stream,
        retention=settings.broker_retention,
    )
    db = Database.from_settings(settings)  # not written to: the workers store what is published
    try:
        with BrokerSink(broker) as sink:
            report = _ingest_with_progress(db, settings, path, file_format, mapping, rejects, None, sink)
    finally:
        db.dispose()
    _print_report(report)
    console.print(f"Published to {settings.broker_stream} at {broker.shown_url}; the workers store the events.")
    if report.rejected:
        raise typer.Exit(1)


def _ingest_with_progress(
    db: Database,
    settings: Settings,
    path: Path,
    file_format: FileFormat,
    mapping: ColumnMapping,
    rejects: Path | None,
    watcher: LedgerWatcher | None,
    sink: EventSink | None = None,
) -> FileReport:
    reject_file = rejects.open("wb") if rejects is not None else None

    def on_rejected(row: RejectedRow) -> None:
        if reject_file is not None:
            reject_file.write(orjson.dumps({"line": row.line, "field": row.field, "reason": row.reason}) + b"\n")

    try:
        if not console.is_terminal:
            # No live bar in a log or a pipe: one line per commit, each naming what is durably stored.
            def on_line(p: FileProgress) -> None:
                console.print(f"stored: {p.accepted} accepted, {p.duplicates} duplicates, {p.rejected} rejected")

            return ingest_file(
                db,
                path,
                received_at=_now(),
                file_format=file_format,
                mapping=mapping,
                commit_rows=settings.ingest_commit_rows,
                on_progress=on_line,
                on_rejected=on_rejected,
                watcher=watcher,
                sink=sink,
            )
        columns = [TextColumn("{task.description}"), BarColumn()]
        if file_format is not FileFormat.PARQUET:
            columns.append(DownloadColumn())
        else:
            columns.append(TextColumn("{task.completed:,.0f}/{task.total:,.0f} rows"))
        columns += [TextColumn("{task.fields[counts]}"), TimeRemainingColumn()]
        with Progress(*columns, console=console, transient=False) as bar:
            task = bar.add_task(f"Ingesting {path.name}", total=None, counts="")

            def on_progress(p: FileProgress) -> None:
                counts = f"{p.accepted:,} accepted · {p.duplicates:,} duplicates · {p.rejected:,} rejected"
                bar.update(task, completed=p.done, total=p.total, counts=counts)

            return ingest_file(
                db,
                path,
                received_at=_now(),
                file_format=file_format,
                mapping=mapping,
                commit_rows=settings.ingest_commit_rows,
                on_progress=on_progress,
                on_rejected=on_rejected,
                watcher=watcher,
                sink=sink,
            )
    finally:
        if reject_file is not None:
            reject_file.close()


def _print_report(report: FileReport) -> None:
    table = Table(title="Ingest summary", show_header=True)
    table.add_column("rows", justify="right")
    table.add_column("accepted", justify="right", style="green")
    table.add_column("duplicates", justify="right")
    table.add_column("rejected", justify="right", style="red" if report.rejected else None)
    table.add_row(f"{report.rows:,}", f"{report.accepted:,}", f"{report.duplicates:,}", f"{report.rejected:,}")
    console.print(table)
    if report.rejections:
        rejected = Table(title="Rejected rows", show_header=True)
        rejected.add_column("line", justify="right")
        rejected.add_column("field")
        rejected.add_column("reason")
        for row in report.rejections[:_SHOWN_REJECTIONS]:
            rejected.add_row(str(row.line), row.field, row.reason)
        console.print(rejected)
        if report.rejected > _SHOWN_REJECTIONS:
            console.print(f"… and {report.rejected - _SHOWN_REJECTIONS:,} more (use --rejects FILE to keep them all)")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="Who the key is for, e.g. 'shop'.")],
    scope: Annotated[list[Scope] | None, typer.Option(help="What the key may do; repeatable. Default: all.")] = None,
) -> None:
    """Create an API key and print it once; only its hash is kept."""
    db = Database.from_settings(load_settings())
    try:
        with db.unit_of_work() as uow:
            key, text = create_key(uow, name, scope or list(Scope), now=_now())
            uow.commit()
    finally:
        db.dispose()
    err_console.print(f"Created key {key.name!r} (id {key.id}) with scopes {', '.join(sorted(key.scopes))}.")
    err_console.print("Keep it now; it will not be shown again:")
    print(text)


@keys_app.command("list")
def keys_list() -> None:
    """List API keys (never their secrets)."""
    db = Database.from_settings(load_settings())
    try:
        with db.unit_of_work() as uow:
            keys = list_keys(uow)
    finally:
        db.dispose()
    table = Table(show_header=True)
    for column in ("id", "name", "scopes", "created", "expires", "revoked"):
        table.add_column(column)
    for key in keys:
        revoked = key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else ""
        expires = key.expires_at.isoformat(timespec="seconds") if key.expires_at else ""
        table.add_row(
            key.id,
            key.name,
            ", ".join(sorted(key.scopes)),
            key.created_at.isoformat(timespec="seconds"),
            expires,
            revoked,
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(name: Annotated[str, typer.Argument(help="The key's name or id.")]) -> None:
    """Revoke an API key: requests with it are refused from now on."""
    db = Database.from_settings(load_settings())
    try:
        with db.unit_of_work() as uow:
            key = revoke_key(uow, name, now=_now())
            uow.commit()
    finally:
        db.dispose()
    console.print(f"Revoked key {key.name!r} (id {key.id}).")


@rules_app.command("check")
def rules_check(
    paths: Annotated[
        list[Path], typer.Argument(help="Rule files, or directories of *.yaml / *.yml files.", show_default=False)
    ],
) -> None:
    """Check rule files without running them: every problem with its file, line and a sentence."""
    from amends.detect import RuleSetError, load_rules
    from amends.detect.rules import event_types

    missing = [path for path in paths if not path.exists()]
    if missing:
        raise InvalidInput("paths", f"no such file or directory: {missing[0]}")
    try:
        rules = load_rules(paths)
    except RuleSetError as exc:
        _print_rule_problems(exc)
        raise typer.Exit(2) from None
    table = Table("rule", "kind", "reads", "severity", "playbook", title=f"{len(rules)} rules ready")
    for rule in rules.enabled:
        common = rule.common
        by = common.severity.by
        severity = f"by {by.text}" if by is not None else str(common.severity.fixed)
        reads = " → ".join(event_types(rule)) or "the risk model's moments"
        table.add_row(common.id, rule.kind, reads, severity, common.playbook or "")
    console.print(table)
    if rules.disabled:
        console.print(f"Disabled: {', '.join(rule.common.id for rule in rules.disabled)}")


# --- amends triage: feedback triage (docs/feedback.md#triage) ---


@triage_app.command("check")
def triage_check(
    texts: Annotated[list[str], typer.Argument(help="Texts to triage, each in quotes.", show_default=False)],
) -> None:
    """Triage texts with the configured backend and show each label with the reasons that drove it."""
    from amends.feedback import load_triage

    settings = load_settings()
    triage = load_triage(
        settings.triage_backend,
        model_dir=settings.triage_model_dir,
        taxonomy_file=settings.triage_taxonomy_file,
        max_chars=settings.triage_max_chars,
    )
    for text, result in zip(texts, triage.triage_many(texts), strict=True):
        table = Table("label", "value", "why", title=text if len(text) <= 80 else text[:79] + "…", title_justify="left")
        reasons = result.reasons
        table.add_row("spam", f"{'yes' if result.spam else 'no'} ({result.spam_score:.2f})", _why(reasons.spam))
        table.add_row("sentiment", f"{result.sentiment} ({result.sentiment_score:+.2f})", _why(reasons.sentiment))
        table.add_row("topic", result.topic or "none", _why(reasons.topic))
        table.add_row("urgency", result.urgency, _why(reasons.urgency))
        console.print(table)
        console.print(f"model: {result.model}{'; the text was truncated' if result.truncated else ''}\n")


def _why(reasons: Sequence[object]) -> str:
    return ", ".join(str(reason) for reason in reasons) or "—"


@triage_app.command("train")
def triage_train(
    corrections: Annotated[
        Path, typer.Argument(help='A JSONL file of staff corrections: {"text", "field", "label"} per line.')
    ],
    out: Annotated[
        Path | None, typer.Option(help="Where to write the models (default: the triage_model_dir setting).")
    ] = None,
    fresh: Annotated[
        bool, typer.Option(help="Start from the shipped models, not from the ones already in the directory.")
    ] = False,
) -> None:
    """Teach triage staff corrections: write models that the fast backend loads from triage_model_dir."""
    from amends.feedback.triage import read_corrections, train_from_corrections
    from amends.feedback.triage.fast import load_fast_models

    settings = load_settings()
    target = out or settings.triage_model_dir
    if target is None:
        raise InvalidInput("--out", "name a directory, or set triage_model_dir, for the trained models")
    has_models = (target / "sentiment" / "model.json").is_file()
    base = load_fast_models(target if has_models and not fresh else None)
    items = list(read_corrections(corrections))
    models = train_from_corrections(items, base)
    models.save(target)
    console.print(f"Trained on {len(items)} corrections ({models.corrections} in all); models in {target}.")
    if out is not None and out != settings.triage_model_dir:
        console.print(f'Set triage_model_dir = "{target}" (or AMENDS_TRIAGE_MODEL_DIR) for triage to use them.')


@triage_app.command("build-models")
def triage_build_models(
    data: Annotated[Path, typer.Option(help="The public data folder (shared/data: sentences, SMS, YouTube).")],
    out: Annotated[
        Path | None, typer.Option(help="Where to write them (default: the package's models directory).")
    ] = None,
    embeddings: Annotated[
        bool, typer.Option(help="Also build the embeddings backend's head (needs amends[embeddings]).")
    ] = False,
) -> None:
    """Rebuild the shipped triage models from the public data, byte for byte (docs/feedback.md#models)."""
    from amends.feedback.triage import build_models
    from amends.feedback.triage.fast import SHIPPED_MODELS_DIR

    target = out or SHIPPED_MODELS_DIR
    build_models(data).save(target)
    console.print(f"Built the fast models in {target}.")
    if embeddings:
        from amends.feedback.triage.embeddings import build_head

        build_head(data).save(target / "embeddings" / "sentiment")
        console.print(f"Built the embeddings head in {target / 'embeddings'}.")


# --- amends playbooks / remedies / staff: recovery (docs/playbooks.md, docs/remedies.md, docs/recovery.md) ---


@playbooks_app.command("check")
def playbooks_check(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Playbook files or directories; default: the shipped playbooks.", show_default=False),
    ] = None,
    rules: Annotated[
        list[Path] | None, typer.Option(help="Also report rules (files or directories) naming a missing playbook.")
    ] = None,
) -> None:
    """Check playbooks without running them: every problem with its file, line and a sentence."""
    from amends.detect import RuleSetError, load_rules
    from amends.recover.packs import PLAYBOOKS_DIR
    from amends.recover.playbooks import PlaybookSetError, load_playbooks, unknown_playbooks

    chosen = paths or [PLAYBOOKS_DIR]
    missing = [path for path in [*chosen, *(rules or [])] if not path.exists()]
    if missing:
        raise InvalidInput("paths", f"no such file or directory: {missing[0]}")
    try:
        playbooks = load_playbooks(chosen)
    except PlaybookSetError as exc:
        _print_problems(exc.problems, "no playbook was loaded")
        raise typer.Exit(2) from None
    if rules:
        try:
            unknown = unknown_playbooks(playbooks, load_rules(rules))
        except RuleSetError as exc:
            _print_rule_problems(exc)
            raise typer.Exit(2) from None
        if unknown:
            _print_problems(unknown, "these rules' cases would follow the default playbook")
            raise typer.Exit(2)
    table = Table("playbook", "steps (due)", title=f"{len(playbooks)} playbooks ready")
    for playbook in playbooks:
        steps = ", ".join(
            f"{step.kind.value} ({format_duration(step.due)}{' after resolution' if step.anchor == 'resolved' else ''})"
            for step in playbook.steps
        )
        table.add_row(playbook.id, steps)
    console.print(table)


@remedies_app.command("check")
def remedies_check(
    path: Annotated[Path | None, typer.Argument(help="A remedy policy file; default: the shipped one.")] = None,
    rules: Annotated[
        list[Path] | None, typer.Option(help="Also report proposals naming rules that are not in these files.")
    ] = None,
) -> None:
    """Check a remedy policy: every problem with its file, line and a sentence."""
    from amends.detect import RuleSetError, load_rules
    from amends.recover.packs import REMEDY_POLICY_FILE
    from amends.recover.policy import PolicyError, load_policy, unknown_rules

    chosen = path or REMEDY_POLICY_FILE
    if not chosen.is_file():
        raise InvalidInput("path", f"no such file: {chosen}")
    try:
        policy = load_policy(chosen)
    except PolicyError as exc:
        _print_problems(exc.problems, "the policy was not loaded")
        raise typer.Exit(2) from None
    if rules:
        try:
            unknown = unknown_rules(policy, load_rules(rules))
        except RuleSetError as exc:
            _print_rule_problems(exc)
            raise typer.Exit(2) from None
        if unknown:
            _print_problems(unknown, "those proposal entries would never match")
            raise typer.Exit(2)
    table = Table("kind", "unit", "cash per unit", "agent limit (grant / day)", "monthly budget", title="remedy kinds")
    from amends.recover.roles import Role

    for kind in policy.kinds.values():
        limit = policy.limit(Role.AGENT, kind.id)
        budget = policy.monthly_budget(kind.id)
        table.add_row(
            kind.id,
            kind.unit or "—",
            str(kind.cash_per_unit),
            f"{_limit_text(limit.per_grant)} / {_limit_text(limit.per_day)}",
            "—" if budget is None else str(budget),
        )
    console.print(table)
    console.print(f"{len(policy.proposals)} proposal entries; currency {policy.currency}.")


def _limit_text(value: object) -> str:
    return "unlimited" if value is None else str(value)


@staff_app.command("add")
def staff_add(
    staff_id: Annotated[str, typer.Argument(help="The company's own staff id, e.g. 'ana' or 'E-1042'.")],
    name: Annotated[str, typer.Option(help="Their name.")],
    role: Annotated[str, typer.Option(help="agent, lead, manager or admin.")] = "agent",
    team: Annotated[str | None, typer.Option(help="Their team, e.g. 'airport'.")] = None,
    email: Annotated[str | None, typer.Option(help="Their email address.")] = None,
    key: Annotated[bool, typer.Option(help="Also create their API key and print it once.")] = False,
) -> None:
    """Add a staff member (and, with --key, their own API key)."""
    from amends.recover.actors import SYSTEM
    from amends.recover.audit import audit
    from amends.recover.staff import add_staff, create_staff_key

    settings = load_settings()
    db = Database.from_settings(settings)
    text = None
    try:
        with db.unit_of_work() as uow:
            member = add_staff(uow, staff_id, name=name, role=role, team=team, email=email, now=_now())
            audit(uow, SYSTEM, "staff.added", f"staff:{member.id}", at=_now(), role=member.role.value, via="cli")
            if key:
                created, text = create_staff_key(uow, member.id, now=_now(), lifetime=settings.staff_key_lifetime)
                audit(uow, SYSTEM, "staff.key_created", f"staff:{member.id}", at=_now(), key_id=created.id, via="cli")
            uow.commit()
    finally:
        db.dispose()
    err_console.print(
        f"Added {member.id} ({member.name}), {member.role.value}" + (f" in {member.team}." if member.team else ".")
    )
    if text is not None:
        err_console.print("Their API key; keep it now, it will not be shown again:")
        print(text)


@staff_app.command("key")
def staff_key(
    staff_id: Annotated[str, typer.Argument(help="The staff member's id.")],
    renew: Annotated[bool, typer.Option(help="Revoke their key in use, if any, and make a new one.")] = False,
) -> None:
    """Create an API key that acts as this staff member, with their role's rights, for `staff_key_lifetime`;
    printed once."""
    from amends.recover.actors import SYSTEM
    from amends.recover.audit import audit
    from amends.recover.staff import create_staff_key, renew_staff_key

    settings = load_settings()
    db = Database.from_settings(settings)
    make = renew_staff_key if renew else create_staff_key
    try:
        with db.unit_of_work() as uow:
            key, text = make(uow, staff_id, now=_now(), lifetime=settings.staff_key_lifetime)
            audit(uow, SYSTEM, "staff.key_created", f"staff:{staff_id}", at=_now(), key_id=key.id, via="cli")
            uow.commit()
    finally:
        db.dispose()
    expires = f"{key.expires_at:%Y-%m-%d %H:%M} UTC" if key.expires_at else "never"
    err_console.print(f"Created key {key.id} for {staff_id}, until {expires}. Keep it now; it will not be shown again:")
    print(text)


@staff_app.command("password")
def staff_password(
    staff_id: Annotated[str, typer.Argument(help="The staff member's id.")],
    stdin: Annotated[bool, typer.Option("--stdin", help="Read the password from standard input (one line).")] = False,
) -> None:
    """Set a staff member's console password (12 to 256 characters; asked twice, not echoed). Every session
    they had ends."""
    from amends.access.passwords import check_new_password
    from amends.recover.actors import SYSTEM
    from amends.recover.audit import audit
    from amends.recover.staff import set_password

    if stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    check_new_password(password)  # before the database is opened: a refused password changes nothing
    db = Database.from_settings(load_settings())
    try:
        with db.unit_of_work() as uow:
            member = set_password(uow, staff_id, password, now=_now())
            audit(uow, SYSTEM, "staff.password_set", f"staff:{member.id}", at=_now(), via="cli")
            uow.commit()
    finally:
        db.dispose()
    err_console.print(f"Set the console password of {member.id}; their sessions have ended.")


@staff_app.command("reset-second-factor")
def staff_reset_second_factor(staff_id: Annotated[str, typer.Argument(help="The staff member's id.")]) -> None:
    """Turn a staff member's second step at login off (a lost phone): their authenticator secret and recovery
    codes are removed and every session they had ends. They set it up again on their account page; if their role
    needs it (console_second_factor_roles), right after their next password."""
    from amends.recover.actors import SYSTEM
    from amends.recover.second_factor import reset_second_factor

    db = Database.from_settings(load_settings())
    try:
        with db.unit_of_work() as uow:
            had = reset_second_factor(uow, staff_id, actor=SYSTEM, now=_now())
            uow.commit()
    finally:
        db.dispose()
    if had:
        err_console.print(f"Reset the second step of {staff_id}; their sessions have ended.")
    else:
        err_console.print(f"{staff_id} had no second step; nothing else changed, but their sessions have ended.")


@staff_app.command("list")
def staff_list() -> None:
    """List staff with their roles and teams."""
    from amends.recover.staff import list_staff

    db = Database.from_settings(load_settings())
    try:
        with db.unit_of_work() as uow:
            members = list_staff(uow)
    finally:
        db.dispose()
    table = Table("id", "name", "role", "team", "active")
    for member in members:
        table.add_row(member.id, member.name, member.role.value, member.team or "", "yes" if member.active else "no")
    console.print(table)


# --- amends surveys: honest questions (docs/feedback.md#honest-questions) -------------------------------

surveys_app = typer.Typer(help="Feedback requests and pages: honest questions.", no_args_is_help=True)
app.add_typer(surveys_app, name="surveys")


@surveys_app.command("check")
def surveys_check(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Template, page or survey files, or directories of them; default: the shipped message templates "
            "and the feedback page's texts.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Find words that coach the score (asking for a 10, labelling low scores a failure, a rating chosen in
    advance, leading questions), each with its line and why. Exit code 1 when there is any."""
    from amends.feedback.questions import LANGUAGES, page_texts
    from amends.feedback.surveys import check_files, check_text
    from amends.outreach.packs import TEMPLATES_DIR

    missing = [path for path in paths or [] if not path.exists()]
    if missing:
        raise InvalidInput("paths", f"no such file or directory: {missing[0]}")
    findings = check_files(paths or [TEMPLATES_DIR])
    if not paths:
        for language in LANGUAGES:
            for name, text in page_texts(language)[1].all_texts():
                findings += check_text(text, where=f"feedback page ({language}) {name}")
    for finding in findings:
        line = "" if finding.line is None else f":{finding.line}"
        err_console.print(
            f"{finding.where}{line}: {finding.kind.value}: [bold]{finding.phrase}[/]: {finding.why}", soft_wrap=True
        )
    if findings:
        err_console.print(f"[red]{len(findings)} place(s) coach the score.[/]")
        raise typer.Exit(1)
    checked = ", ".join(str(path) for path in paths) if paths else "the shipped templates and the feedback page"
    console.print(f"No coaching found in {checked}.")


# --- amends world: sample worlds (docs/world.md) --------------------------------------------------------

world_app = typer.Typer(help="Sample worlds of a shop, an airline and a car service.", no_args_is_help=True)
app.add_typer(world_app, name="world")
import_app = typer.Typer(help="Public data sets, as events (for evaluation).", no_args_is_help=True)
app.add_typer(import_app, name="import")


@import_app.command("olist")
def import_olist(
    folder: Annotated[Path, typer.Argument(help="The folder with Olist's CSV files as published.", file_okay=False)],
) -> None:
    """Store the public Olist e-commerce data set as events: orders placed (with their promised date), shipped and
    delivered, and review scores (docs/anticipation.md#olist). Events only: `amends backfill` finds incidents."""
    from amends.events import Item, ingest_items
    from amends.events.olist import olist_events

    settings = load_settings()
    db = Database.from_settings(settings)
    accepted = duplicates = rejected = 0
    try:
        batch: list[Item] = []
        with console.status("Reading and storing the Olist files…") as status:
            for n, event in enumerate(olist_events(folder), start=1):
                batch.append(Item(event))
                if len(batch) == 5_000:
                    report = ingest_items(db, batch, received_at=_now())
                    accepted, duplicates = accepted + report.accepted, duplicates + report.duplicates
                    rejected += len(report.rejected)
                    batch = []
                    status.update(f"Reading and storing the Olist files… {n:,} events")
            if batch:
                report = ingest_items(db, batch, received_at=_now())
                accepted, duplicates = accepted + report.accepted, duplicates + report.duplicates
                rejected += len(report.rejected)
    finally:
        db.dispose()
    console.print(f"Stored {accepted:,} events ({duplicates:,} already stored, {rejected:,} rejected).")


# The option that carries each parameter a WorldError can name.
_WORLD_OPTIONS = {
    "business": "--business",
    "customers": "--customers",
    "days": "--days",
    "seed": "--seed",
    "start": "--start",
    "late_share": "--late-share",
    "max_lateness": "--max-lateness",
    "duplicate_share": "--duplicate-share",
}


@world_app.command("generate")
def world_generate(
    out: Annotated[Path, typer.Argument(help="The events file to write (JSON Lines).", dir_okay=False, metavar="OUT")],
    business: Annotated[str, typer.Option(help="shop, airline or car-service.", show_default=False)],
    customers: Annotated[int, typer.Option(min=1, help="How many customers the world has.", show_default=False)],
    days: Annotated[int, typer.Option(min=1, help="How many days of events to generate.", show_default=False)],
    seed: Annotated[int, typer.Option(help="The same seed gives the same world, byte for byte.")] = 1,
    start: Annotated[
        str, typer.Option(help="The first day (or instant) of the window, e.g. 2025-01-01; UTC unless it says.")
    ] = "2025-01-01",
    late_share: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of events that arrive late, out of order.")
    ] = 0.0,
    max_lateness: Annotated[str, typer.Option(help="How late a late event can be, e.g. 2h or 30m.")] = "2h",
    duplicate_share: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of events sent twice.")] = 0.0,
    truth: Annotated[
        Path | None,
        typer.Option(help="Where the ground truth goes (default: OUT.truth.jsonl).", dir_okay=False),
    ] = None,
) -> None:
    """Generate a seeded sample world: its events, and the ground truth of what happened to each customer."""
    from amends.durations import parse_duration
    from amends.world import WorldError, parse_business, truth_path_for, write_world

    try:
        name = parse_business(business)
    except WorldError as exc:
        raise typer.BadParameter(exc.reason, param_hint="'--business'") from None
    window_start = _world_start(start)
    try:
        lateness = parse_duration(max_lateness)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--max-lateness'") from None
    truth_path = truth if truth is not None else truth_path_for(out)
    _check_writable(out, "'OUT'")
    _check_writable(truth_path, "'--truth'")

    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f} days · {task.fields[events]:,} events"),
        TimeRemainingColumn(),
    ]
    # A pipe or a log gets no bar, only the summary.
    with Progress(*columns, console=console, disable=not console.is_terminal) as bar:
        task = bar.add_task(f"Generating {name.replace('_', ' ')}", total=days, events=0)

        def on_progress(events: int, now: datetime) -> None:
            covered = min(days, max(0.0, (now - window_start).total_seconds() / 86_400))
            bar.update(task, completed=covered, events=events)

        try:
            summary = write_world(
                out,
                name,
                customers=customers,
                days=days,
                seed=seed,
                start=window_start,
                late_share=late_share,
                max_lateness=lateness,
                duplicate_share=duplicate_share,
                truth_path=truth_path,
                progress=on_progress,
            )
        except WorldError as exc:
            option = _WORLD_OPTIONS.get(exc.field, exc.field)
            raise typer.BadParameter(exc.reason, param_hint=f"'{option}'") from None
        except OSError as exc:  # the paths were checked: this is the disk (full, gone) failing mid-way
            err_console.print(f"[red]Error:[/] could not write {exc.filename or out}: {exc.strerror or exc}")
            raise typer.Exit(1) from None
        bar.update(task, completed=days, events=summary.events)

    table = Table("", "", title=f"World written: {summary.business.replace('_', ' ')}", show_header=False)
    table.add_row("customers", f"{summary.customers:,}")
    table.add_row("window", f"{summary.start:%Y-%m-%d %H:%M} to {summary.end:%Y-%m-%d %H:%M} UTC ({days} days)")
    table.add_row("seed", str(summary.seed))
    table.add_row("events", f"{summary.events:,}")
    table.add_row("late", f"{summary.late:,}")
    table.add_row("duplicates", f"{summary.duplicates:,}")
    table.add_row("churned", f"{summary.churned:,}")
    table.add_row("complained", f"{summary.complained:,}")
    console.print(table)
    by_type = Table("event type", "events", title="Events by type")
    by_type.columns[1].justify = "right"
    for event_type, count in summary.events_by_type.items():
        by_type.add_row(event_type, f"{count:,}")
    console.print(by_type)
    console.print(f"Events:       {summary.path}", soft_wrap=True)
    console.print(f"Ground truth: {summary.truth_path}", soft_wrap=True)


@world_app.command("simulate")
def world_simulate(
    business: Annotated[str, typer.Option(help="shop, airline or car-service.", show_default=False)],
    true_effect: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, help="How much a timely apology with a remedy lowers the chance to complain and to leave."
        ),
    ] = 0.3,
    days: Annotated[int, typer.Option(min=45, max=730, help="Days the world runs.")] = 180,
    customers: Annotated[int, typer.Option(min=50, max=200_000, help="How many customers the world has.")] = 3_000,
    seed: Annotated[int, typer.Option(help="The same seed gives the same world and the same run.")] = 1,
    holdout_share: Annotated[
        float, typer.Option(min=0.01, max=0.5, help="The share of incidents held out of proactive recovery.")
    ] = 0.5,
    database: Annotated[Path, typer.Option(help="The simulation's own SQLite file, made anew.", dir_okay=False)] = Path(
        "amends-simulation.db"
    ),
) -> None:
    """Run a sample world day by day with amends in the loop (detection, the holdout draw, a recovery desk that
    apologises and grants, the outbox), with customers who react to a timely recovery by the true effect; then
    estimate the effect from the holdout experiment and set it beside the world's own truth."""
    from amends.simulation import simulate, simulation_settings
    from amends.world import WorldError, parse_business

    try:
        name = parse_business(business)
    except WorldError as exc:
        raise typer.BadParameter(exc.reason, param_hint="--business") from None
    path = database.resolve()
    _check_writable(path, "--database")
    for suffix in ("", "-wal", "-shm", "-journal"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    settings = load_settings().model_copy(update={"database_url": f"sqlite:///{path}"})
    settings = simulation_settings(
        settings, business=name, outbox_file=path.with_suffix(".outbox.jsonl"), holdout_share=holdout_share
    )
    db = Database.from_settings(settings)
    try:
        upgrade(db)
        with console.status(f"Running the {name} for {days} days with amends in the loop…"):
            result = simulate(db, settings, business=name, customers=customers, days=days, seed=seed,
                              true_effect=true_effect)  # fmt: skip
    finally:
        db.dispose()
    table = Table("", "", title=f"The {name}, {days} days, {customers:,} customers, seed {seed}", show_header=False)
    reacted = result.reacted
    for label, value in (
        ("events", result.events), ("incidents", result.incidents), ("cases", result.cases),
        ("held out", result.held_out), ("apologies", result.apologies), ("remedies granted", result.grants),
        ("recovered in time", reacted.timely if reacted else 0), ("recovered late", reacted.late if reacted else 0),
        ("won back", reacted.won_back if reacted else 0),
        ("complaints prevented", reacted.complaints_prevented if reacted else 0),
        ("departures prevented", reacted.departures_prevented if reacted else 0),
    ):  # fmt: skip
        table.add_row(label, f"{value:,}")
    console.print(table)
    if result.experiment is None or result.experiment.empty:
        console.print("No incident was drawn into the experiment: nothing to estimate.")
        return
    first = result.experiment.rounds[0]
    uplift = Table("outcome", "treated", "held out", "difference (95% CI)", "relative (95% CI)", "detectable",
                   "verdict", title=f"The holdout experiment, first round ({first.treated:,} treated, "
                   f"{first.held_out:,} held out)")  # fmt: skip
    for estimate in first.estimates:
        if estimate.group != "all":
            continue
        share = estimate.outcome.kind.is_share
        uplift.add_row(
            estimate.outcome.title,
            _share_or_mean(estimate.treated.mean, share),
            _share_or_mean(estimate.held_out.mean, share),
            _interval(estimate.difference, estimate.low, estimate.high, "pts" if share else ""),
            _interval(estimate.relative, estimate.relative_low, estimate.relative_high, "%"),
            _share_or_mean(estimate.mde, share),
            estimate.verdict,
        )
    console.print(uplift)
    truth = result.truth
    if truth is not None and truth.treated:
        console.print(
            f"The world's own truth for the treated: {truth.complained:.1%} complained within 30 days; without "
            f"recovery {truth.without_recovery:.1%} would have: an effect of {truth.effect * 100:+.1f} points"
            + ("" if truth.relative is None else f", {truth.relative:+.0%}")
            + f" (the world was given {true_effect:.0%} fewer complaints and departures for a timely recovery; a "
            "complaint made before the apology arrives is not prevented)."
        )


def _print_demo_uplift(complained: Estimate | None) -> None:
    """What the demo's holdout experiment says so far, beside what its customers were given."""
    from amends.demo import DEMO_TRUE_EFFECT

    given = (
        f"The demo's customers were given a {DEMO_TRUE_EFFECT:.0%} lower chance to complain after a timely apology "
        "with a remedy; `amends world simulate` measures the estimator against a known truth on a larger world."
    )
    if complained is None or complained.difference is None:
        console.print(f"\nWhat recovery does: nothing measured yet. {given}")
        return
    console.print(
        f"\nWhat recovery does, the experiment's first round: {complained.treated.mean:.1%} of "
        f"{complained.treated.units:,} treated customers complained within 30 days, against "
        f"{complained.held_out.mean:.1%} of {complained.held_out.units:,} held out: "
        f"{_interval(complained.difference, complained.low, complained.high, 'pts')}, "
        f"{_interval(complained.relative, complained.relative_low, complained.relative_high, '%')} "
        f"({complained.verdict}). {given}",
    )


def _share_or_mean(value: float | None, share: bool) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1%}" if share else f"{value:,.2f}"


def _interval(value: float | None, low: float | None, high: float | None, unit: str) -> str:
    """A difference and its interval: in percentage points (`pts`), as a relative change (`%`), or as a number."""
    if value is None:
        return "n/a"

    def one(x: float) -> str:
        return f"{x * 100:+.1f}" if unit == "pts" else f"{x:+.0%}" if unit == "%" else f"{x:+,.2f}"

    text = one(value) + (" pts" if unit == "pts" else "")
    return text if low is None or high is None else f"{text} [{one(low)}, {one(high)}]"


def _world_start(text: str) -> datetime:
    return _instant_option(text, "--start")


def _instant_option(text: str, option: str) -> datetime:
    """`2025-01-01` (midnight UTC), or an instant; one without an offset is taken as UTC."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(
            f"expected a date like 2025-01-01 or an instant like 2025-01-01T06:00:00+01:00, got {text!r}",
            param_hint=f"'{option}'",
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _check_writable(path: Path, hint: str) -> None:
    """Refuse a path that cannot be written before any work is done, naming the option it came from."""
    parent = path.parent
    if path.is_dir():
        raise typer.BadParameter(f"{path} is a directory; name a file", param_hint=hint)
    if not parent.is_dir():
        raise typer.BadParameter(f"no such directory: {parent}", param_hint=hint)
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise typer.BadParameter(f"cannot write {path}: permission denied", param_hint=hint)


@app.command()
def demo(
    customers: Annotated[int, typer.Option(min=20, max=5_000, help="Customers per business.")] = 400,
    days: Annotated[int, typer.Option(min=7, max=365, help="Days of history, up to now.")] = 45,
    seed: Annotated[int, typer.Option(help="The same seed builds the same world and the same work.")] = 7,
) -> None:
    """Run a sample world of the three businesses through detection, recovery, outreach (to a file) and feedback
    with demo staff at work, in a database of its own (amends-demo.db, made anew), and serve the console with
    their logins."""
    limit_arenas()  # it serves too: before any thread starts
    from amends.demo import build_demo, demo_settings

    settings = load_settings()
    if settings.secret_key is None and not config_path().exists():
        _write_config(config_path())
        console.print(f"Wrote {config_path()} with a new secret key (keep it private; it is not in git).")
        settings = load_settings()
    # The demo's own database, made anew each time: a configured database (with real staff) is never touched.
    demo_file = Path("amends-demo.db").resolve()
    for suffix in ("", "-wal", "-shm", "-journal"):
        demo_file.with_name(demo_file.name + suffix).unlink(missing_ok=True)
    settings = demo_settings(
        settings.model_copy(update={"database_url": f"sqlite:///{demo_file}"}), outbox_file="amends-demo-outbox.jsonl"
    )
    db = Database.from_settings(settings)
    try:
        upgrade(db)
        with console.status("Building the sample world and a day's work on it, day by day…"):
            report = build_demo(db, settings, now=_now(), customers=customers, days=days, seed=seed)
        with db.unit_of_work() as uow:
            if any(k.name == "demo" and not k.is_revoked for k in list_keys(uow)):
                revoke_key(uow, "demo", now=_now())
            _key, text = create_key(uow, "demo", list(Scope), now=_now())
            uow.commit()
    finally:
        db.dispose()
    table = Table("", "", title="The demo world", show_header=False)
    for label, value in (
        ("events", report.events), ("incidents", report.incidents), ("cases", report.cases),
        ("apologies sent", report.apologies), ("remedies granted", report.grants),
        ("awaiting a manager", report.approvals_pending), ("held out (the experiment)", report.held_out),
        ("feedback", report.feedback),
        ("feedback answered", report.answered),
    ):  # fmt: skip
        table.add_row(label, f"{value:,}")
    console.print(table)
    _print_demo_uplift(report.complained)
    base = settings.base_url
    console.print(f"\nThe console: {base}/console   (messages to customers: amends-demo-outbox.jsonl)")
    console.print(f"Log in as any of them with the password [bold]{report.password}[/]:")
    for staff_id, role, team in report.logins:
        console.print(f"  {staff_id:<5} {role}{', ' + team if team else ''}")
    console.print(f"An API key with every right: {text}   (the API: {base}/docs)\n", soft_wrap=True)
    # The history was read on the events' own clock; from now on the world is live, and detection follows the wall
    # clock, so an event sent now is evaluated within the allowed lateness instead of waiting for a later one.
    _serve(settings.model_copy(update={"detect_clock": "wall"}))


@app.command()
def report(
    since: Annotated[
        str | None, typer.Option("--from", help="The first day (YYYY-MM-DD, UTC); default: 90 days before --to.")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--to", help="The last day, included (YYYY-MM-DD); default: today.")
    ] = None,
    format: Annotated[str, typer.Option("--format", help="html, pdf or md.")] = "html",
    out: Annotated[
        Path | None, typer.Option(help="The file to write; default: amends-report-FROM-TO.FORMAT.", dir_okay=False)
    ] = None,
) -> None:
    """Write the report a CX lead forwards: recovery and feedback week by week, what the holdout experiment says
    recovery does for customers, and "you said, we did" (docs/insights.md#the-report)."""
    from amends.detect.service import known_event_types
    from amends.insights.outcomes import check_event_types, outcomes_from_settings
    from amends.insights.render import FORMATS, render
    from amends.insights.report import build_report
    from amends.recover.service import Recovery

    if format not in FORMATS:
        raise typer.BadParameter(f"one of {', '.join(FORMATS)}, got {format!r}", param_hint="'--format'")
    now = _now()
    last = _instant_option(until, "--to") if until else now
    end = datetime.combine(last.date(), datetime.min.time(), UTC) + timedelta(days=1)
    start = _instant_option(since, "--from") if since else end - timedelta(days=90)
    start = datetime.combine(start.date(), datetime.min.time(), UTC)
    if start >= end:
        raise typer.BadParameter("must be on or before --to", param_hint="'--from'")
    path = out or Path(f"amends-report-{start:%Y-%m-%d}-{end - timedelta(days=1):%Y-%m-%d}.{format}")
    _check_writable(path.resolve(), "--out")
    settings = load_settings()
    outcomes = outcomes_from_settings(settings)
    db = Database.from_settings(settings)
    try:
        currency = Recovery.from_settings(db, settings).policy.currency
        with db.unit_of_work() as uow:
            check_event_types(uow, outcomes, known=known_event_types(settings))
            built = build_report(uow, since=start, until=end, now=now, outcomes=outcomes,
                                 horizon=settings.holdout_horizon, currency=currency)  # fmt: skip
    finally:
        db.dispose()
    path.write_bytes(render(built, format))
    if built.empty:
        console.print(f"No data between {start:%Y-%m-%d} and {end - timedelta(days=1):%Y-%m-%d}: the report says so.")
    console.print(f"Wrote {path}", soft_wrap=True)


@app.command()
def train(
    spec: Annotated[
        Path | None,
        typer.Option(
            help="The feature spec (YAML); default: the setting risk_spec_file, else the shipped one.", dir_okay=False
        ),
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Learn from the history before this day or instant (default: now).")
    ] = None,
) -> None:
    """Learn the risk model from the stored history (docs/anticipation.md): point-in-time features at each moment
    the spec names, labels from what came after, trees fitted on the earlier moments, calibrated and evaluated on
    the later ones; stored as a new version, and its evaluation printed."""
    from amends.detect.risk.service import spec_from_settings, train_model
    from amends.detect.risk.spec import load_spec

    settings = load_settings()
    chosen = load_spec(spec) if spec is not None else spec_from_settings(settings)
    end = _instant_option(until, "--until") if until else None
    db = Database.from_settings(settings)
    try:
        with console.status("Reading the history and learning from it…"):
            model = train_model(db, settings, spec=chosen, now=_now(), until=end)
    finally:
        db.dispose()
    title = f"Risk model version {model.version}: {chosen.label.description or 'label'}"
    table = Table("part", "moments", "positives", "base rate", "ROC-AUC", "PR-AUC", "Brier", "precision, top 10%",
                  "recall, top 10%", title=title)  # fmt: skip
    for part, label in (
        ("fit", "fit (earliest 70%)"),
        ("calibrate", "calibrate (next 15%)"),
        ("test", "test (latest 15%)"),
    ):
        m = model.metrics[part]
        table.add_row(
            label, f"{m['rows']:,}", f"{m['positives']:,}", _ratio(m["base_rate"]), _ratio(m["roc_auc"], 3),
            _ratio(m["pr_auc"], 3), _ratio(m["brier"], 4), _ratio(m["precision_top_10pct"]),
            _ratio(m["recall_top_10pct"]),
        )  # fmt: skip
    console.print(table)
    importance = model.booster.feature_importance(importance_type="gain")
    ranked = sorted(zip(model.features, importance, strict=True), key=lambda pair: -pair[1])[:5]
    console.print("Strongest features: " + "; ".join(
        (f.description if (f := chosen.get(name)) else name) for name, _ in ranked))  # fmt: skip
    console.print(f"Learned from moments up to {model.trained_until:%Y-%m-%d %H:%M} UTC. Score with: amends score")


@app.command()
def score(
    at: Annotated[str | None, typer.Option(help="Score as of this day or instant (default: now).")] = None,
    customer: Annotated[
        list[str] | None, typer.Option(help="Score only this customer. Repeatable.", show_default=False)
    ] = None,
    top: Annotated[int, typer.Option(min=0, max=1000, help="How many of the riskiest to print.")] = 10,
) -> None:
    """Score customers in bulk with the newest risk model: everyone with an event in the year before the moment (or
    those named), each with the features that pushed their score up; the scores are recorded."""
    from amends.detect.risk.service import score_customers

    settings = load_settings()
    moment = _instant_option(at, "--at") if at else None
    db = Database.from_settings(settings)
    try:
        with console.status("Scoring…"):
            scored = score_customers(db, settings, now=_now(), at=moment, customers=customer)
    finally:
        db.dispose()
    frame = scored.frame.with_row_index("row").sort("score", descending=True)
    table = Table("customer", "risk", "why", title=f"The riskiest of {len(frame):,} customers at "
                  f"{scored.at:%Y-%m-%d %H:%M} UTC (model version {scored.model.version})")  # fmt: skip
    for row in frame.head(top).iter_rows(named=True):
        why = "; ".join(str(reason) for reason in scored.reasons[row["row"]]) or "nothing stands out"
        table.add_row(row["customer_id"], f"{row['score']:.1%}", why)
    console.print(table)
    console.print(f"{scored.recorded:,} scores recorded.")


def _ratio(value: object, digits: int | None = None) -> str:
    if not isinstance(value, int | float):
        return "n/a"
    return f"{value:.{digits}f}" if digits is not None else f"{value:.1%}"


@app.command()
def backup(
    target: Annotated[Path, typer.Argument(help="The new file to write the copy to (never overwritten).")],
) -> None:
    """Copy the embedded SQLite database to TARGET while it runs (SQLite's online backup API), and check the copy.
    For PostgreSQL, use pg_dump (docs/operations.md#backups)."""
    from amends.store.backup import backup_sqlite

    db = Database.from_settings(load_settings())
    try:
        info = backup_sqlite(db, target)
    finally:
        db.dispose()
    err_console.print(
        f"Backed up to {info.path}: {info.bytes / 1e6:,.1f} MB, schema {info.revision}, "
        f"{info.events:,} events, {info.cases:,} cases; checked whole."
    )


@app.command()
def restore(
    source: Annotated[Path, typer.Argument(help="A copy made by `amends backup`.")],
    yes: Annotated[bool, typer.Option("--yes", help="Replace the database without asking.")] = False,
) -> None:
    """Replace the embedded database's content with a backup's, after checking the backup whole; then bring its
    schema up to date. Stop the server and the workers first."""
    from amends.store.backup import check_backup, restore_sqlite

    settings = load_settings()
    info = check_backup(source)
    question = (f"Replace everything in {settings.database_url.split('@')[-1]} with {source} "
                f"({info.events:,} events, {info.cases:,} cases)? Stop the server and the workers first")  # fmt: skip
    if not yes and not typer.confirm(question):
        raise typer.Exit(1)
    db = Database.from_settings(settings)
    try:
        restored = restore_sqlite(source, db)
        upgrade(db)
    finally:
        db.dispose()
    err_console.print(
        f"Restored {restored.events:,} events and {restored.cases:,} cases from {source} "
        f"(schema {restored.revision}, now {head_revision()})."
    )


@app.command()
def retention() -> None:
    """Apply the retention settings now (the background work does it once an hour): delete the events older than
    events_retention, and erase what customers wrote longer ago than feedback_text_retention."""
    from amends.privacy.retention import Retention

    settings = load_settings()
    db = Database.from_settings(settings)
    try:
        keeper = Retention.from_settings(db, settings)
        if not keeper.enabled:
            raise InvalidInput("events_retention", "neither events_retention nor feedback_text_retention is set")
        done = keeper.run(_now())
    finally:
        db.dispose()
    erased = ", ".join(f"{kind} {count:,}" for kind, count in done.erased.items()) or "none (not set)"
    err_console.print(f"Retention applied: {done.events:,} events deleted; texts erased: {erased}.")


customers_app = typer.Typer(help="A customer's personal data: a copy of it, or its erasure.", no_args_is_help=True)
app.add_typer(customers_app, name="customers")
audit_app = typer.Typer(help="The audit log: check its hash chain, or export it.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


def _private_file(path: Path, *, new: bool = False) -> BinaryIO:
    """`path` opened for writing from the start, readable by its owner only (it holds personal data or secrets);
    with `new`, only if no such file exists (FileExistsError otherwise)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if new else os.O_TRUNC)
    fd = os.open(path, flags, stat.S_IRUSR | stat.S_IWUSR)
    os.fchmod(fd, stat.S_IRUSR | stat.S_IWUSR)  # a file that was there already keeps its mode otherwise
    return os.fdopen(fd, "wb")


def _write_json(document: object, out: Path | None) -> None:
    import orjson

    text = orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"
    if out is None:
        sys.stdout.buffer.write(text)
        sys.stdout.flush()
    else:
        with _private_file(out) as file:
            file.write(text)


@customers_app.command("export")
def customers_export(
    customer_id: Annotated[str, typer.Argument(help="The company's own id of the customer.")],
    out: Annotated[Path | None, typer.Option(help="Write the JSON document here (default: standard output).")] = None,
) -> None:
    """Everything amends holds about one customer, as one JSON document (the right of access): their events,
    incidents, cases and steps, complaints, remedies, messages, feedback, replies, scores and opt-outs."""
    from amends.privacy import export_customer

    db = Database.from_settings(load_settings())
    try:
        with db.unit_of_work() as uow:
            document = export_customer(uow, customer_id, now=_now())
    finally:
        db.dispose()
    _write_json(document, out)
    if out is not None:
        rows = sum(len(v) for v in document.values() if isinstance(v, list))
        err_console.print(f"Wrote {rows:,} rows about {customer_id} to {out}.")


@customers_app.command("forget")
def customers_forget(
    customer_id: Annotated[str, typer.Argument(help="The company's own id of the customer.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do it without asking (erasure cannot be undone).")] = False,
) -> None:
    """Erase one customer's personal data on request, keeping the anonymised ledger and metrics: their rows get a
    random pseudonym, what they wrote and every address is erased, unsent messages are cancelled and open cases
    closed. Cannot be undone (docs/security.md#privacy)."""
    from amends.privacy import forget_customer
    from amends.recover.actors import SYSTEM

    if not yes and not typer.confirm(f"Erase everything personal about {customer_id}? This cannot be undone"):
        raise typer.Exit(1)
    db = Database.from_settings(load_settings())
    try:
        with db.unit_of_work(writes=True) as uow:
            forgotten = forget_customer(uow, customer_id, SYSTEM, now=_now(), via="cli")
            uow.commit()
    finally:
        db.dispose()
    changed = {name: count for name, count in forgotten.rows.items() if count}
    err_console.print(
        f"Forgot {customer_id}: {sum(changed.values()):,} rows now name {forgotten.pseudonym} "
        f"({', '.join(f'{n} {c:,}' for n, c in changed.items()) or 'none'}); "
        f"{forgotten.cancelled_messages} unsent messages cancelled, {forgotten.closed_cases} open cases closed."
    )


@audit_app.command("verify")
def audit_verify(
    head: Annotated[
        str | None, typer.Option(help="A hash printed by an earlier check: it must still be in the chain.")
    ] = None,
) -> None:
    """Recompute the audit log's hash chain. Exit 0 when it holds, 1 at the first entry that does not (changed,
    removed or slipped in). Keep the newest hash it prints somewhere else, and pass it next time with --head: then
    a log cut short is found too."""
    from amends.recover.audit import check_chain

    db = Database.from_settings(load_settings())
    try:
        with db.unit_of_work() as uow:
            check = check_chain(uow, head=head)
    finally:
        db.dispose()
    if not check.intact:
        where = f"at entry {check.broken_at}" if check.broken_at is not None else "at its end"
        err_console.print(f"[red]The audit chain is broken {where}:[/] {check.reason} ({check.entries:,} entries hold)")
        raise typer.Exit(1)
    err_console.print(f"The audit chain holds: {check.entries:,} entries. Newest hash:")
    print(check.head)


@audit_app.command("export")
def audit_export(
    out: Annotated[Path | None, typer.Option(help="Write JSON Lines here (default: standard output).")] = None,
    since: Annotated[str | None, typer.Option(help="Only entries at or after this date or instant (ISO 8601).")] = None,
) -> None:
    """The audit log as JSON Lines, oldest first, each entry with its hash: anyone can check the chain from it
    with the recipe in docs/security.md#audit-log, without amends."""
    import orjson

    from amends.recover.audit import iter_audit

    start = None
    if since is not None:
        try:
            start = datetime.fromisoformat(since)
        except ValueError:
            raise InvalidInput("--since", f"not an ISO 8601 date or instant: {since!r}") from None
        start = start if start.tzinfo is not None else start.replace(tzinfo=UTC)
    db = Database.from_settings(load_settings())
    stream = sys.stdout.buffer if out is None else _private_file(out)
    count = 0
    try:
        with db.unit_of_work() as uow:
            for entry in iter_audit(uow, since=start):
                line = {"id": entry.id, "at": entry.at.astimezone(UTC).isoformat(timespec="microseconds"),
                        "actor": entry.actor, "action": entry.action, "target": entry.target, "origin": entry.origin,
                        "details": entry.details, "hash": entry.hash}  # fmt: skip
                stream.write(orjson.dumps(line) + b"\n")
                count += 1
    finally:
        db.dispose()
        if out is not None:
            stream.close()
        else:
            stream.flush()
    if out is not None:
        err_console.print(f"Wrote {count:,} audit entries to {out}.")


def main() -> None:
    """Console entry point: the one place where errors become exit codes."""
    try:
        app()
    except AmendsError as exc:
        err_console.print(f"[red]Error:[/] {exc}")
        raise SystemExit(2 if isinstance(exc, InvalidInput) else 1) from None


if __name__ == "__main__":
    main()
