"""Benchmark of detection: the streaming evaluator, the backfill from stored history, memory, and a peer.

For N events of the sample world (amends.world; a mix of the shop, the airline and the car service by
default, 1% of events up to two hours late) and the shipped rule packs (or, where they cannot be loaded, a
rule file of this script's own, which the output says), it measures:

- streaming (in memory): the events validated and their ledger keys computed before the clock starts, then
  `Evaluator.observe` + `advance` in batches of 1,000 with the allowed lateness of two hours;
- backfill, per engine: the events stored in a fresh database (SQLite file; PostgreSQL database created for
  the run and dropped after it), then `read_history` and `evaluate_history` timed apart and together, and
  whether the incidents (after `fold`) equal the streaming evaluator's;
- memory: peak RSS of a child process that streams N and then `--scale-events` events from the generator
  through the evaluator, holding no history (state grows with open windows and pending timers);
- the peer: the packs' absence and count rules that Bytewax can express, as a Bytewax 0.21.1 dataflow
  (bench/peer_bytewax.py, in its own virtualenv bench/.peer-venv, made on first use), over the same events,
  in a child process; beside it our evaluator with the same rules, in a child process too.

The streaming evaluator with durable state and incidents is not measured here yet.

Run (from the repository root):

    .venv/bin/python bench/detect.py                      # 1M events, 10M for the memory check
    .venv/bin/python bench/detect.py --events 100000 --engines sqlite --out bench/out/detect.md
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from amends.detect import Evaluator, Incident, IncidentKey, RuleSet, fold, load_rules, parse_rules
from amends.detect.batch import evaluate_history
from amends.detect.history import read_history
from amends.detect.packs import PACKS, pack_paths
from amends.detect.rules import AbsenceRule, CountRule
from amends.events import Event, dedup_key, validate_event
from amends.events.ledger import append_events
from amends.store import Database, upgrade
from amends.world import generate_world
from ingest import BenchError, _check_postgres, fresh_database

ROOT = Path(__file__).resolve().parent.parent
PEER_VENV = ROOT / "bench" / ".peer-venv"
PEER_SCRIPT = ROOT / "bench" / "peer_bytewax.py"
BYTEWAX = "bytewax==0.21.1"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://amends:amends@localhost:5432/amends_test"
LATENESS = timedelta(hours=2)
BATCH = 1_000  # events per observe + advance
STORE_ROWS = 50_000  # events per stored transaction
DAYS = 180
# Events per customer and day in each sample business, measured: sizes the world so N events span ~150 days.
RATES = {"shop": 0.0973, "airline": 0.2316, "car_service": 0.0246}
STREAM_TARGET = 100_000  # events/s, streaming with durable state (measured elsewhere once it exists)
PEER_TARGET = 2.0  # ours/peer
BACKFILL_TARGET_SECONDS = 10.0  # for 10M stored events

out = Console(highlight=False)
if not out.is_terminal:
    out = Console(highlight=False, width=180)
log = Console(stderr=True, highlight=False)

FALLBACK_RULES = """\
rules:
  - {id: late-delivery, kind: absence, after: order.placed, expect: order.delivered, key: data.order_id,
     deadline: data.promised_by, watch_late_for: 14d}
  - {id: not-delivered, kind: absence, after: order.placed, expect: order.delivered, key: data.order_id,
     deadline: data.promised_by + 8d, severity: 4}
  - {id: not-shipped, kind: absence, after: order.placed, expect: order.shipped, key: data.order_id, deadline: 2d}
  - {id: damaged-item, kind: match, on: order.delivered, where: {data.damaged: true}, key: data.order_id}
  - {id: return-after-delivery, kind: sequence, first: order.delivered, then: order.returned, key: data.order_id,
     within: 7d}
  - {id: contact-storm, kind: count, on: support.contact, at_least: 3, within: 7d, cooldown: 14d}
  - {id: long-delay, kind: match, on: flight.arrived, where: {data.delay_minutes: {gte: 180}},
     severity: {by: data.delay_minutes, steps: [[180, 2], [360, 3], [720, 4]]}}
  - {id: cancellation, kind: match, on: flight.cancelled, key: data.booking_ref}
  - {id: missed-connection, kind: match, on: connection.missed, key: data.booking_ref}
  - {id: delayed-bag, kind: absence, after: bag.checked, expect: bag.delivered, key: data.bag_tag,
     deadline: data.expected_by + 12h}
  - {id: lost-bag, kind: absence, after: bag.checked, expect: bag.delivered, key: data.bag_tag,
     deadline: data.expected_by + 5d}
  - {id: rework, kind: sequence, first: service.completed, then: service.opened, key: data.vehicle_id, within: 30d}
  - {id: long-wait, kind: match, on: service.started, where: {data.wait_minutes: {gte: 60}}, key: data.job_id}
  - {id: job-late, kind: absence, after: service.opened, expect: service.completed, key: data.job_id,
     deadline: data.promised_by}
  - {id: job-not-done, kind: absence, after: service.opened, expect: service.completed, key: data.job_id,
     deadline: data.promised_by + 4d}
  - {id: low-ratings, kind: count, on: feedback.rated, where: {data.rating: {lte: 2}}, at_least: 2, within: 90d}
  - {id: complaint, kind: match, on: complaint.filed}
  - {id: contact-per-order, kind: count, on: support.contact, key: data.order_id, at_least: 2, within: 7d}
  - {id: contact-per-booking, kind: count, on: support.contact, key: data.booking_ref, at_least: 2, within: 3d}
  - {id: delay-then-complaint, kind: sequence, first: flight.arrived, first_where: {data.delay_minutes: {gte: 60}},
     then: complaint.filed, key: data.booking_ref, within: 14d}
"""


# --- the world and the rules ----------------------------------------------------------------------------


def world(count: int, business: str, seed: int) -> Iterator[dict[str, Any]]:
    """`count` envelopes of the sample world in arrival order; a mix interleaves the businesses by time."""
    names = list(RATES) if business == "mix" else [business]
    shares = [count // len(names) + (1 if n < count % len(names) else 0) for n in range(len(names))]
    streams: list[Iterator[dict[str, Any]]] = []
    for name, share in zip(names, shares, strict=True):
        customers = max(10, math.ceil(share / (RATES[name] * DAYS) * 1.25))
        stream = generate_world(name, customers=customers, days=DAYS, seed=seed, late_share=0.01)  # type: ignore[arg-type]
        streams.append(itertools.islice(stream, share))
    if len(streams) == 1:
        return streams[0]
    return heapq.merge(*streams, key=lambda envelope: datetime.fromisoformat(envelope["time"]))


def load(envelopes: Iterator[dict[str, Any]] | list[dict[str, Any]]) -> list[Event]:
    events = []
    for envelope in envelopes:
        event = validate_event(envelope)
        if isinstance(event, Event):
            events.append(event)
    return events


def rules_in_use() -> tuple[RuleSet, str]:
    try:
        rules = load_rules(pack_paths(PACKS))
    except Exception as exc:  # the packs are missing or broken: say so and measure with our own
        log.print(f"[yellow]The shipped packs could not be loaded ({exc}); using this script's own rules.[/]")
        return parse_rules([(None, FALLBACK_RULES)]), "this script's fallback rules (the packs could not be loaded)"
    return rules, f"the shipped packs ({', '.join(PACKS)})"


def peer_rules(rules: RuleSet) -> RuleSet:
    """The rules Bytewax's windowing operators can express: absence and count rules without conditions,
    keys and deadline fields without list indexes."""
    chosen = []
    for rule in rules:
        if isinstance(rule, AbsenceRule):
            plain = rule.after.condition is None and rule.expect.condition is None
            paths = [rule.key] + ([rule.deadline.path] if rule.deadline.path else [])
        elif isinstance(rule, CountRule):
            plain, paths = rule.on.condition is None and rule.common.cooldown is None, [rule.key]
        else:
            continue
        if plain and all(all(isinstance(step, str) for step in path.steps) for path in paths):
            chosen.append(rule)
    return RuleSet(tuple(chosen))


def peer_spec(rules: RuleSet, events: Path, result: Path, until: datetime, start: datetime) -> dict[str, Any]:
    absence, count = [], []
    for rule in rules:
        if isinstance(rule, AbsenceRule):
            absence.append(
                {
                    "id": rule.common.id,
                    "after": rule.after.type,
                    "expect": rule.expect.type,
                    "key": rule.key.text,
                    "deadline_field": None if rule.deadline.path is None else rule.deadline.path.text,
                    "offset_seconds": rule.deadline.offset.total_seconds(),
                    "watch_late_seconds": rule.watch_late_for.total_seconds(),
                }
            )
        elif isinstance(rule, CountRule):
            count.append(
                {
                    "id": rule.common.id,
                    "on": rule.on.type,
                    "key": rule.key.text,
                    "at_least": rule.at_least,
                    "within_seconds": rule.within.total_seconds(),
                    "hop_seconds": timedelta(days=1).total_seconds(),
                }
            )
    return {
        "absence": absence,
        "count": count,
        "lateness_seconds": LATENESS.total_seconds(),
        "until": until.isoformat(),
        "start": start.isoformat(),
        "events": str(events),
        "out": str(result),
    }


# --- measurements -----------------------------------------------------------------------------------------


@dataclass
class Streamed:
    seconds: float
    incidents: dict[IncidentKey, Incident]
    until: datetime
    state: int


def stream(rules: RuleSet, events: Sequence[Event], until: datetime | None = None) -> Streamed:
    """observe + advance in batches; the ledger keys are computed before the clock, as the ledger has them.
    With `until`, the watermark is finally moved there (to compare with a run over more events)."""
    keys = [dedup_key(event.source, event.id) for event in events]
    evaluator = Evaluator(rules, lateness=LATENESS)
    findings = []
    started = time.perf_counter()
    for first in range(0, len(events), BATCH):
        findings += evaluator.observe(events[first : first + BATCH], keys=keys[first : first + BATCH])
        findings += evaluator.advance()
    if until is not None:
        findings += evaluator.advance(until + LATENESS)
    seconds = time.perf_counter() - started
    assert evaluator.watermark is not None
    state = len(evaluator.expectations) + len(evaluator.windows) + len(evaluator.pending) + evaluator.buffered
    return Streamed(seconds, fold(findings), evaluator.watermark, state)


@dataclass
class Backfill:
    engine: str
    read_seconds: float
    evaluate_seconds: float
    incidents: dict[IncidentKey, Incident]
    store_seconds: float


def backfill(
    engine: str, rules: RuleSet, events: Sequence[Event], until: datetime, args: argparse.Namespace
) -> Backfill:
    with fresh_database(engine, args.workdir_path, args.postgres_url) as url:
        db = Database(url)
        try:
            upgrade(db)
            started = time.perf_counter()
            received = datetime.now(UTC)
            for first in range(0, len(events), STORE_ROWS):
                with db.unit_of_work(writes=True) as uow:
                    append_events(uow, events[first : first + STORE_ROWS], received_at=received)
                    uow.commit()
            stored = time.perf_counter() - started
            started = time.perf_counter()
            frame = read_history(db)
            read = time.perf_counter() - started
            started = time.perf_counter()
            result = evaluate_history(rules, frame, until=until)
            evaluated = time.perf_counter() - started
        finally:
            db.dispose()
    return Backfill(engine, read, evaluated, fold(result.findings), stored)


@dataclass
class Child:
    seconds: float
    events: int
    peak_rss_kib: int
    result: dict[str, Any]


def run_child(command: list[str], timeout: float, result: Path | None = None) -> Child:
    """Run a child to its end; its result (with its peak RSS) from stdout or from `result`."""
    started = time.perf_counter()
    try:
        # Read the pipes while the child runs: a result bigger than a pipe's buffer would block it otherwise.
        ended = subprocess.run(command, capture_output=True, cwd=ROOT, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{' '.join(command[:3])} took over {timeout:.0f} s and was killed") from exc
    seconds = time.perf_counter() - started
    stdout, stderr = ended.stdout, ended.stderr
    if ended.returncode != 0:
        failed = stderr.decode(errors="replace")[-2000:]
        raise BenchError(f"{' '.join(command[:3])} failed ({ended.returncode}):\n{failed}")
    data = json.loads(result.read_text() if result is not None else stdout)
    # The child's own VmHWM: ru_maxrss from wait4 would carry this (large) process's peak across fork and exec.
    return Child(float(data.get("seconds", seconds)), int(data["events"]), int(data["peak_rss_kib"]), data)


def ensure_peer_venv() -> Path:
    python = PEER_VENV / "bin" / "python"
    if not python.exists():
        uv = Path(sys.executable).with_name("uv")
        log.print(f"[dim]…[/] creating {PEER_VENV.relative_to(ROOT)} with {BYTEWAX}")
        subprocess.run([str(uv), "venv", "--python", sys.executable, str(PEER_VENV)], check=True, capture_output=True)
        subprocess.run([str(uv), "pip", "install", "--python", str(python), BYTEWAX], check=True, capture_output=True)
    return python


# --- child processes: memory, and our side of the peer comparison ----------------------------------------


def peak_rss_kib() -> int:
    """This process's own peak RSS (VmHWM). Not ru_maxrss: Linux carries the parent's peak across fork and exec."""
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def child_memory(count: int, business: str, seed: int) -> int:
    """Stream `count` events from the generator through the evaluator, holding no history."""
    rules, _ = rules_in_use()
    evaluator = Evaluator(rules, lateness=LATENESS)
    incidents = 0
    started = time.perf_counter()
    envelopes = world(count, business, seed)
    while chunk := list(itertools.islice(envelopes, BATCH)):
        incidents += len(evaluator.observe(load(chunk)))
        incidents += len(evaluator.advance())
    state = len(evaluator.expectations) + len(evaluator.windows) + len(evaluator.pending) + evaluator.buffered
    seconds = time.perf_counter() - started
    result = {"events": count, "seconds": seconds, "findings": incidents, "state": state}
    print(json.dumps({**result, "peak_rss_kib": peak_rss_kib()}))
    return 0


def child_subset(path: Path, rule_ids: list[str], until: str) -> int:
    """Our evaluator with the peer's rules over the peer's events (pre-validated, keys computed)."""
    rules, _ = rules_in_use()
    subset = RuleSet(tuple(rule for rule in rules if rule.common.id in rule_ids))
    with path.open("rb") as file:
        events = load(orjson.loads(line) for line in file)
    streamed = stream(subset, events, datetime.fromisoformat(until))
    keys: dict[str, list[str]] = {}
    for incident in streamed.incidents.values():
        rule = subset.get(incident.rule_id)
        if isinstance(rule, AbsenceRule):
            suffix = "|resolved_late" if incident.status == "resolved_late" else ""
            keys.setdefault(incident.rule_id, []).append(incident.key + suffix)
    counts: dict[str, int] = {}
    for incident in streamed.incidents.values():
        counts[incident.rule_id] = counts.get(incident.rule_id, 0) + 1
    result = {"events": len(events), "seconds": streamed.seconds, "incidents": counts, "keys": keys}
    print(json.dumps({**result, "peak_rss_kib": peak_rss_kib()}))
    return 0


# --- the report -----------------------------------------------------------------------------------------

COLUMNS = ("measurement", "engine", "events", "seconds", "events/s", "peak RSS", "incidents", "same as streaming")


def rate(events: int, seconds: float) -> str:
    return f"{events / seconds:,.0f}" if seconds > 0 else "—"


def mib(kib: int | None) -> str:
    return "—" if kib is None else f"{kib / 1024:,.0f} MiB"


def markdown(title: str, rows: list[list[str]], notes: list[str]) -> str:
    lines = [f"## {title}", "", "| " + " | ".join(COLUMNS) + " |"]
    text = ("measurement", "engine", "same as streaming")
    lines.append("|" + "|".join("---" if column in text else "---:" for column in COLUMNS) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", *(f"- {note}" for note in notes), ""]
    return "\n".join(lines)


class _Rows(list[list[str]]):
    """The table's rows; each is also logged as it comes, so an interrupted run leaves its numbers behind."""

    def append(self, row: list[str]) -> None:
        log.print("  " + " | ".join(row))
        super().append(row)

    def __iadd__(self, rows: Any) -> _Rows:  # type: ignore[override]
        for row in rows:
            self.append(row)
        return self


def step(what: str) -> None:
    log.print(f"[dim]…[/] {what}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child == "memory":
        return child_memory(args.events, args.business, args.seed)
    if args.child == "subset":
        return child_subset(Path(args.events_file), args.rule_ids.split(","), args.until)
    rules, rules_note = rules_in_use()
    n: int = args.events
    scale: int = args.scale_events or 10 * n
    rows = _Rows()
    notes = [f"rules: {len(rules)} rules from {rules_note}", f"{os.cpu_count()} CPUs; allowed lateness {LATENESS}"]
    verdicts: list[str] = []
    try:
        if "postgresql" in args.engines:
            _check_postgres(args.postgres_url)
        with tempfile.TemporaryDirectory(prefix="amends-detect-", dir=args.workdir) as temporary:
            args.workdir_path = Path(temporary)
            step(f"generating and validating {n:,} events of the {args.business} world")
            started = time.perf_counter()
            events = load(world(n, args.business, args.seed))
            log.print(f"  {len(events):,} events in {time.perf_counter() - started:.1f} s")

            step("streaming, in memory")
            streamed = stream(rules, events)
            found = len(streamed.incidents)
            rows.append(
                ["streaming, in memory", "—", f"{len(events):,}", f"{streamed.seconds:.2f}",
                 rate(len(events), streamed.seconds), "—", f"{found:,}", "—"]
            )  # fmt: skip

            for engine in args.engines:
                step(f"backfill on {engine}: store, read_history, evaluate_history")
                done = backfill(engine, rules, events, streamed.until, args)
                same = "yes" if done.incidents == streamed.incidents else "NO"
                both = done.read_seconds + done.evaluate_seconds
                for label, seconds in (
                    ("backfill: read_history", done.read_seconds),
                    ("backfill: evaluate_history", done.evaluate_seconds),
                    ("backfill: read + evaluate", both),
                ):
                    incidents = f"{len(done.incidents):,}" if label.endswith("evaluate") else "—"
                    rows.append(
                        [label, engine, f"{len(events):,}", f"{seconds:.2f}", rate(len(events), seconds), "—",
                         incidents, same if label.endswith("evaluate") else "—"]
                    )  # fmt: skip
                notes.append(f"{engine}: storing the events (not part of the backfill) took {done.store_seconds:.1f} s")
                projected = both * 10_000_000 / len(events)
                verdict = "MET" if projected < BACKFILL_TARGET_SECONDS and same == "yes" else "NOT MET"
                scope = "measured" if len(events) >= 10_000_000 else "projected linearly from this run"
                verdicts.append(
                    f"{verdict}: backfill of 10M stored events on {engine} in under {BACKFILL_TARGET_SECONDS:.0f} s "
                    f"with the streaming evaluator's incidents ({scope}: {projected:.1f} s; same incidents: {same})"
                )

            for count in (n, scale):
                step(f"memory: streaming {count:,} events from the generator in a child process")
                child = run_child(
                    [sys.executable, __file__, "--child", "memory", "--events", str(count), "--business",
                     args.business, "--seed", str(args.seed)],
                    args.timeout,
                )  # fmt: skip
                rows.append(
                    ["streaming from the generator (memory)", "—", f"{count:,}", f"{child.seconds:.2f}",
                     rate(count, child.seconds), mib(child.peak_rss_kib), f"{child.result['findings']:,} findings",
                     "—"]
                )  # fmt: skip
                notes.append(
                    f"memory at {count:,} events: {child.result['state']:,} open expectations, windows, pending "
                    "firsts and buffered events at the end (generation and validation are inside the time)"
                )

            if not args.no_peer:
                rows += peer(rules, events, streamed.until, args, notes, verdicts)
    except BenchError as exc:
        log.print(f"[red]Benchmark failed:[/] {exc}")
        return 1
    notes.append(
        f"NOT MEASURED: streaming with state and incidents durable on SQLite and PostgreSQL (target ≥ "
        f"{STREAM_TARGET:,} events/s and ≥ {PEER_TARGET:.0f}x the peer); the durable runner is measured elsewhere"
    )
    title = f"amends detection, {n:,} events of the {args.business} world"
    table = Table(title=title)
    for name in COLUMNS:
        table.add_column(name, justify="left" if name in ("measurement", "engine", "same as streaming") else "right")
    for row in rows:
        table.add_row(*row, style="red" if row[-1] == "NO" else None)
    out.print(table)
    for line in [*notes, *verdicts]:
        out.print(line, style="green" if line.startswith("MET") else "red" if line.startswith("NOT MET") else None)
    if args.out is not None:
        args.out.write_text(markdown(title, rows, [*notes, *verdicts]), encoding="utf-8")
        out.print(f"Wrote {args.out}")
    return 0


def peer(
    rules: RuleSet,
    events: Sequence[Event],
    until: datetime,
    args: argparse.Namespace,
    notes: list[str],
    verdicts: list[str],
) -> list[list[str]]:
    subset = peer_rules(rules)
    if not len(subset):
        notes.append("peer: none of the rules is an absence or count rule Bytewax can express; not run")
        return []
    types: set[str] = set()
    for rule in subset:
        types |= {rule.after.type, rule.expect.type} if isinstance(rule, AbsenceRule) else {rule.on.type}  # type: ignore[union-attr]
    workdir: Path = args.workdir_path
    chosen = workdir / "peer-events.jsonl"
    kept = 0
    with chosen.open("wb") as file:
        for event in events:
            if event.type in types:
                file.write(orjson.dumps(event.envelope()) + b"\n")
                kept += 1
    python = ensure_peer_venv()
    spec_path, result_path = workdir / "peer-spec.json", workdir / "peer-result.json"
    start = min(event.time for event in events).replace(hour=0, minute=0, second=0, microsecond=0)
    spec_path.write_text(json.dumps(peer_spec(subset, chosen, result_path, until, start)))
    ids = ",".join(rule.common.id for rule in subset)
    step(f"peer: Bytewax over {kept:,} events, rules {ids}")
    theirs = run_child([str(python), str(PEER_SCRIPT), str(spec_path)], args.timeout, result_path)
    step("peer: our evaluator over the same events and rules")
    ours = run_child(
        [sys.executable, __file__, "--child", "subset", "--events-file", str(chosen), "--rule-ids", ids,
         "--until", until.isoformat()],
        args.timeout,
    )  # fmt: skip
    ratio = (ours.events / ours.seconds) / (theirs.events / theirs.seconds)
    agree = []
    for rule in subset:
        if isinstance(rule, AbsenceRule):
            mine, their = (sorted(side.result["keys"].get(rule.common.id, [])) for side in (ours, theirs))
            same = mine == their
            agree.append(f"{rule.common.id}: {'same keys' if same else 'keys differ'}")
    rows = [
        ["peer: Bytewax 0.21.1 dataflow", "—", f"{theirs.events:,}", f"{theirs.seconds:.2f}",
         rate(theirs.events, theirs.seconds), mib(theirs.peak_rss_kib),
         ", ".join(f"{k} {v:,}" for k, v in sorted(theirs.result["incidents"].items())), "—"],
        ["ours: Evaluator, same rules and events", "—", f"{ours.events:,}", f"{ours.seconds:.2f}",
         rate(ours.events, ours.seconds), mib(ours.peak_rss_kib),
         ", ".join(f"{k} {v:,}" for k, v in sorted(ours.result["incidents"].items())), "—"],
    ]  # fmt: skip
    notes.append(f"peer: ours/peer events/s = {ratio:.2f} (both in memory, events loaded before the clock)")
    notes.append("peer: absence incidents " + "; ".join(agree))
    notes.append(
        "peer: count rules differ by design (Bytewax: hopping 7-day windows, one every day, an incident per window "
        "with ≥ N events; amends: a window sliding with every event, one incident per episode); peer late events: "
        f"{theirs.result['late']:,}"
    )
    verdicts.append(
        f"{'MET' if ratio >= PEER_TARGET else 'NOT MET'}: in-memory streaming ≥ {PEER_TARGET:.0f}x the peer "
        f"(got {ratio:.2f}x; the issue's target is for durable streaming, not measured here)"
    )
    return rows


def _count(text: str) -> int:
    value = int(text.replace("_", "").replace(",", ""))
    if value < 10:
        raise argparse.ArgumentTypeError("must be at least 10")
    return value


def _engines(text: str) -> list[str]:
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    if not chosen or any(engine not in ("sqlite", "postgresql") for engine in chosen):
        raise argparse.ArgumentTypeError("choose from sqlite, postgresql (comma-separated)")
    return chosen


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=_count, default=1_000_000, help="events of the world (default 1000000)")
    parser.add_argument("--scale-events", type=_count, help="events for the second memory run (default 10 x --events)")
    parser.add_argument("--business", choices=["mix", *RATES], default="mix", help="which world (default mix)")
    parser.add_argument("--engines", type=_engines, default=["sqlite", "postgresql"], help="sqlite,postgresql")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("AMENDS_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="a PostgreSQL server whose role may CREATE DATABASE (default: AMENDS_TEST_POSTGRES_URL or %(default)s)",
    )
    parser.add_argument("--out", type=Path, help="also write the table as markdown to this file")
    parser.add_argument("--no-peer", action="store_true", help="skip the Bytewax peer")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds a child process may take")
    parser.add_argument("--workdir", type=Path, help="where the temporary directory goes")
    parser.add_argument("--seed", type=int, default=7, help="seed of the world (default 7)")
    parser.add_argument("--child", choices=["memory", "subset"], help=argparse.SUPPRESS)
    parser.add_argument("--events-file", help=argparse.SUPPRESS)
    parser.add_argument("--rule-ids", help=argparse.SUPPRESS)
    parser.add_argument("--until", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
