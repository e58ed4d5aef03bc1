"""The batch evaluator: the whole history at once, vectorised in DuckDB, with the streaming evaluator's meaning.

Each rule compiles from the same rule objects into SQL over a table of events (one row an event, `data` as JSON
text). The heavy part, reading fields, testing conditions, windows and pairings, runs in DuckDB; Python only
turns the few rows that fire into findings and applies cooldowns, in the order the streaming evaluator would
have met them. `until` plays the watermark: events before it are evaluated, timers before it fire.

The meaning, kind by kind, as in `streaming.py`, with events in (time, ledger key) order:

- match: every matching event, keyed by the rule's key (or by the event);
- count: at an instant where the window (t - within, t] of a key holds at least N events, the rule fires; it
  starts a new incident unless it fired for the key within the window before (the episode goes on);
- sequence: each `then` event pairs with the latest `first` event before it, if within the window; a first
  pairs at most once;
- absence: the first start event of a key opens an expectation; an expected event after it and by the
  deadline satisfies it; else it fires at the deadline, and an expected event within `watch_late_for` after
  resolves it late. When the expectation is over, the next start event of the key opens a new one (rounds).
"""

# The SQL here is assembled from this module's own fragments and rule paths checked against a strict pattern
# (conditions.parse_path); every literal from a rule file travels as a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import orjson
import polars as pl

from amends.detect._facts import event_ref, instant_text
from amends.detect.conditions import AllOf, AnyOf, Compare, Condition, Exists, FieldPath, Not, Scalar
from amends.durations import format_duration
from amends.detect.incidents import Candidate, Finding, LateResolution
from amends.detect.rules import RFC3339_PATTERN, AbsenceRule, CountRule, Matcher, MatchRule, Rule, RuleSet, SequenceRule
from amends.events import Event, dedup_key

__all__ = ["BatchResult", "evaluate_history", "events_frame"]

_NUMBER_TYPES = "('BIGINT', 'UBIGINT', 'HUGEINT', 'DOUBLE')"
_INTEGER_TYPES = "('BIGINT', 'UBIGINT', 'HUGEINT')"
_LAST = "~"  # sorts after every ledger key: a position after all events of an instant
_COLUMNS = "ord, id, source, type, t, subject, data"


@dataclass(frozen=True, slots=True)
class BatchResult:
    findings: list[Finding]
    skipped: dict[str, int] = field(default_factory=dict)


def events_frame(events: Sequence[Event]) -> pl.DataFrame:
    """Events as the batch evaluator reads them: one row each, times as naive UTC, data as JSON text."""
    return pl.DataFrame(
        {
            "ord": [dedup_key(e.source, e.id) for e in events],
            "id": [e.id for e in events],
            "source": [e.source for e in events],
            "type": [e.type for e in events],
            "t": [e.time.astimezone(UTC).replace(tzinfo=None) for e in events],
            "subject": [e.subject for e in events],
            "data": [orjson.dumps(e.data).decode() for e in events],
        },
        schema={
            "ord": pl.String,
            "id": pl.String,
            "source": pl.String,
            "type": pl.String,
            "t": pl.Datetime("us"),
            "subject": pl.String,
            "data": pl.String,
        },
    )


def evaluate_history(rules: RuleSet, events: pl.DataFrame, *, until: datetime) -> BatchResult:
    """Findings of `rules` over `events` (see `events_frame`) with the watermark at `until`."""
    connection = duckdb.connect()
    try:
        connection.execute("SET TimeZone = 'UTC'")
        connection.register("ledger", events)
        connection.execute(
            f"CREATE TEMP TABLE e AS SELECT {_COLUMNS} FROM ledger WHERE t < ? ORDER BY t, ord", [_naive(until)]
        )
        findings: list[Finding] = []
        skipped: dict[str, int] = {}
        for rule in rules:
            sql = _Sql(connection, rule)
            if isinstance(rule, MatchRule):
                found = sql.match(rule)
            elif isinstance(rule, CountRule):
                found = sql.count(rule)
            elif isinstance(rule, SequenceRule):
                found = sql.sequence(rule)
            else:
                found = sql.absence(rule, _naive(until))
            findings.extend(_cooled(rule, found))
            if sql.skipped:
                skipped[rule.common.id] = sql.skipped
        return BatchResult(findings, skipped)
    finally:
        connection.close()


# --- findings in the streaming order, and cooldowns ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Found:
    position: tuple[datetime, str]  # where the streaming evaluator meets it: (failure_at, tiebreak)
    finding: Finding


def _cooled(rule: Rule, found: list[_Found]) -> list[Finding]:
    found.sort(key=lambda item: item.position)
    cooldown = rule.common.cooldown
    if cooldown is None:
        return [item.finding for item in found]
    kept: list[Finding] = []
    last: dict[str, datetime] = {}
    for item in found:
        finding = item.finding
        if isinstance(finding, Candidate):
            previous = last.get(finding.customer)
            if previous is not None and finding.failure_at - previous < cooldown:
                continue
            last[finding.customer] = finding.failure_at
        kept.append(finding)
    return kept


# --- SQL ------------------------------------------------------------------------------------------------


class _Sql:
    """The SQL of one rule; literals travel as parameters, paths are the rule's own (checked) text."""

    def __init__(self, connection: duckdb.DuckDBPyConnection, rule: Rule) -> None:
        self.connection = connection
        self.rule = rule
        self.skipped = 0

    def rows(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        cursor = self.connection.execute(sql, params)
        names = [column[0] for column in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def selected(self, matcher: Matcher, key: FieldPath | None, name: str) -> None:
        """Create temp table `name` of the events the matcher takes, with their key `k`; count the skipped."""
        params: list[Any] = [matcher.type]
        where = "type = ?"
        if matcher.condition is not None:
            where += f" AND coalesce({_condition(matcher.condition, params)}, false)"
        key_sql = "ord" if key is None else _key(key)
        self.connection.execute(
            f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT *, {key_sql} AS k FROM e WHERE {where}", params
        )
        missing = self.connection.execute(f"SELECT count(*) FROM {name} WHERE k IS NULL").fetchone()
        self.skipped += 0 if missing is None else int(missing[0])
        self.connection.execute(f"DELETE FROM {name} WHERE k IS NULL")

    def match(self, rule: MatchRule) -> list[_Found]:
        self.selected(rule.on, rule.key, "m")
        found = []
        for row in self.rows(f"SELECT {_COLUMNS}, k FROM m", []):
            event = _event(row)
            facts = {"event": event_ref(event), "data": event.data}
            found.append(_Found((event.time, row["ord"]), _candidate(rule, row["k"], event, event.time, facts)))
        return found

    def count(self, rule: CountRule) -> list[_Found]:
        self.selected(rule.on, rule.key, "c")
        # RANGE includes its start, and the window is (t - within, t]: one microsecond less.
        within_us = (rule.within - timedelta(microseconds=1)) // timedelta(microseconds=1)
        sql = f"""
            WITH counted AS (
                SELECT k, t, ord,
                       count(*) OVER w AS n,
                       min(t) OVER w AS first_at,
                       row_number() OVER (PARTITION BY k, t ORDER BY ord DESC) AS from_last
                FROM c
                WINDOW w AS (PARTITION BY k ORDER BY t RANGE BETWEEN INTERVAL {within_us} MICROSECOND PRECEDING
                                                                AND CURRENT ROW)
            ),
            fired AS (
                SELECT k, t, ord, n, first_at, lag(t) OVER (PARTITION BY k ORDER BY t) AS previous
                FROM counted WHERE n >= ? AND from_last = 1
            )
            SELECT c.{_COLUMNS.replace(", ", ", c.")}, fired.k, fired.n, fired.first_at
            FROM fired JOIN c ON c.ord = fired.ord
            WHERE fired.previous IS NULL OR fired.t - fired.previous > ?
        """
        found = []
        for row in self.rows(sql, [rule.at_least, rule.within]):
            event = _event(row)
            facts = {
                "count": int(row["n"]),
                "within": format_duration(rule.within),
                "first_at": instant_text(row["first_at"].replace(tzinfo=UTC)),
                "last": event_ref(event),
            }
            key = f"{row['k']}@{instant_text(event.time)}"
            found.append(_Found((event.time, row["k"]), _candidate(rule, key, event, event.time, facts)))
        return found

    def sequence(self, rule: SequenceRule) -> list[_Found]:
        self.selected(rule.first, rule.key, "sf")
        self.selected(rule.then, rule.key, "st")
        sql = """
            WITH flags AS (
                SELECT ord, any_value(k) AS k, bool_or(is_first) AS is_first, bool_or(is_then) AS is_then
                FROM (
                    SELECT ord, k, true AS is_first, false AS is_then FROM sf
                    UNION ALL SELECT ord, k, false, true FROM st
                ) GROUP BY ord
            ),
            marked AS (SELECT flags.*, e.t FROM flags JOIN e USING (ord)),
            paired AS (
                SELECT ord AS then_ord, t AS then_t, k,
                       last_value(CASE WHEN is_first THEN ord END IGNORE NULLS) OVER w AS first_ord,
                       is_then
                FROM marked
                WINDOW w AS (PARTITION BY k ORDER BY t, ord ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
            ),
            firsts AS (
                SELECT p.first_ord, arg_min(p.then_ord, p.then_t::VARCHAR || p.then_ord) AS then_ord,
                       any_value(p.k) AS k
                FROM paired p JOIN e f ON f.ord = p.first_ord
                WHERE p.is_then AND p.then_t - f.t <= ?
                GROUP BY p.first_ord
            )
            SELECT firsts.k, firsts.first_ord, firsts.then_ord FROM firsts
        """
        pairs = self.rows(sql, [rule.within])
        events = self._events({row["first_ord"] for row in pairs} | {row["then_ord"] for row in pairs})
        found = []
        for row in pairs:
            first, then = events[row["first_ord"]], events[row["then_ord"]]
            facts = {
                "first": event_ref(first),
                "first_data": first.data,
                "then": event_ref(then),
                "then_data": then.data,
            }
            key = f"{row['k']}@{instant_text(first.time)}"
            found.append(_Found((then.time, row["then_ord"]), _candidate(rule, key, then, then.time, facts)))
        return found

    def absence(self, rule: AbsenceRule, until: datetime) -> list[_Found]:
        self.selected(rule.after, rule.key, "starts")
        self.selected(rule.expect, rule.key, "expects")
        deadline_sql = _deadline_sql(rule)
        self.connection.execute("ALTER TABLE starts ADD COLUMN d TIMESTAMP")
        # greatest() skips NULLs; a start without a deadline must stay without one (and be skipped).
        self.connection.execute(f"UPDATE starts SET d = {deadline_sql}", [rule.deadline.offset])
        self.connection.execute("UPDATE starts SET d = t WHERE d < t")
        missing = self.connection.execute("SELECT count(*) FROM starts WHERE d IS NULL").fetchone()
        self.skipped += 0 if missing is None else int(missing[0])
        self.connection.execute("DELETE FROM starts WHERE d IS NULL")
        # Where each key's previous expectation ended: a start must come after it to open the next one.
        self.connection.execute("CREATE OR REPLACE TEMP TABLE horizon (k VARCHAR, t TIMESTAMP, ord VARCHAR)")
        found: list[_Found] = []
        while True:
            sql = """
                WITH opened AS (
                    SELECT s.* FROM starts s LEFT JOIN horizon h USING (k)
                    WHERE h.k IS NULL OR s.t > h.t OR (s.t = h.t AND s.ord > h.ord)
                    QUALIFY row_number() OVER (PARTITION BY s.k ORDER BY s.t, s.ord) = 1
                )
                SELECT o.k, o.ord, o.d,
                    EXISTS (
                        SELECT 1 FROM expects x
                        WHERE x.k = o.k AND (x.t > o.t OR (x.t = o.t AND x.ord > o.ord)) AND x.t <= o.d
                    ) AS satisfied,
                    (
                        SELECT x.ord FROM expects x WHERE x.k = o.k AND x.t > o.d AND x.t <= o.d + ?
                        ORDER BY x.t, x.ord LIMIT 1
                    ) AS resolved_ord
                FROM opened o
            """
            rounds = self.rows(sql, [rule.watch_late_for])
            if not rounds:
                return found
            starts = self._events({row["ord"] for row in rounds}, table="starts")
            resolutions = self._events({row["resolved_ord"] for row in rounds if row["resolved_ord"]}, table="expects")
            ends: list[tuple[str, datetime, str]] = []
            for row in rounds:
                d: datetime = row["d"]
                if row["satisfied"]:
                    if d < until:
                        ends.append((row["k"], d, _LAST))
                    continue
                if d >= until:
                    continue  # still waiting
                start = starts[row["ord"]]
                deadline = d.replace(tzinfo=UTC)
                facts = {"start": event_ref(start), "data": start.data, "deadline": instant_text(deadline)}
                found.append(_Found((deadline, row["k"]), _candidate(rule, row["k"], start, deadline, facts)))
                if row["resolved_ord"] is not None:
                    late = resolutions[row["resolved_ord"]]
                    resolution = LateResolution(rule.common.id, row["k"], late.time, event_ref(late))
                    found.append(_Found((late.time, row["resolved_ord"]), resolution))
                    ends.append((row["k"], _naive(late.time), row["resolved_ord"]))
                elif d + rule.watch_late_for < until:
                    ends.append((row["k"], d + rule.watch_late_for, _LAST))
            self.connection.execute("DELETE FROM horizon")
            if not ends:
                return found
            self.connection.executemany("INSERT INTO horizon VALUES (?, ?, ?)", ends)
            self.connection.execute("DELETE FROM starts WHERE k NOT IN (SELECT k FROM horizon)")

    def _events(self, ords: set[str], table: str = "e") -> dict[str, Event]:
        if not ords:
            return {}
        rows = self.rows(f"SELECT {_COLUMNS} FROM {table} WHERE ord IN (SELECT unnest(?))", [sorted(ords)])
        return {row["ord"]: _event(row) for row in rows}


def _naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


def _event(row: dict[str, Any]) -> Event:
    return Event(
        id=row["id"],
        source=row["source"],
        type=row["type"],
        time=row["t"].replace(tzinfo=UTC),
        subject=row["subject"],
        data=orjson.loads(row["data"]),
    )


def _candidate(rule: Rule, key: str, event: Event, failure_at: datetime, facts: dict[str, Any]) -> Candidate:
    common = rule.common
    return Candidate(common.id, key, event.subject, common.severity.of(event), failure_at, facts, common.playbook)


# --- fields, keys, conditions and deadlines as SQL ------------------------------------------------------


def _json(path: FieldPath) -> str:
    return f"json_extract(data, '{path.json_path()}')"


def _text(path: FieldPath) -> str:
    return f"json_extract_string(data, '{path.json_path()}')"


def _kind(path: FieldPath) -> str:
    return f"json_type({_json(path)})"


def _key(path: FieldPath) -> str:
    """The correlation key as text: non-empty text, or a whole number; else NULL (the event is skipped)."""
    if path.root != "data":
        return f"nullif({path.root}, '')"
    return (
        f"CASE WHEN {_kind(path)} = 'VARCHAR' THEN nullif({_text(path)}, '') "
        f"WHEN {_kind(path)} IN {_INTEGER_TYPES} THEN {_text(path)} END"
    )


def _deadline_sql(rule: AbsenceRule) -> str:
    path = rule.deadline.path
    if path is None:
        return "t + ?"
    pattern = RFC3339_PATTERN.replace("'", "''")
    return (
        f"CASE WHEN {_kind(path)} = 'VARCHAR' AND regexp_full_match({_text(path)}, '{pattern}') "
        f"THEN CAST(try_cast({_text(path)} AS TIMESTAMPTZ) AS TIMESTAMP) + ? END"
    )


def _condition(condition: Condition, params: list[Any]) -> str:
    """Three-valued SQL for a condition (NULL for unknown), appending its literals to `params` in order."""
    if isinstance(condition, AllOf | AnyOf):
        joiner = " AND " if isinstance(condition, AllOf) else " OR "
        return "(" + joiner.join(_condition(part, params) for part in condition.parts) + ")"
    if isinstance(condition, Not):
        return f"(NOT {_condition(condition.part, params)})"
    path = condition.path
    if isinstance(condition, Exists):
        if path.root != "data":
            return "true" if condition.expected else "false"
        present = f"({_json(path)} IS NOT NULL AND {_kind(path)} <> 'NULL')"
        return present if condition.expected else f"(NOT {present})"
    return _compare(condition, params)


def _compare(condition: Compare, params: list[Any]) -> str:
    path, op, operand = condition.path, condition.op, condition.operand
    envelope = path.root != "data"
    value_kind = "'VARCHAR'" if envelope else _kind(path)
    text = path.root if envelope else _text(path)
    raw = None if envelope else _json(path)

    def equal(scalar: Scalar) -> str:
        if isinstance(scalar, bool):
            if envelope:
                return "false"
            return f"({value_kind} = 'BOOLEAN' AND CAST({raw} AS BOOLEAN) = {'true' if scalar else 'false'})"
        if isinstance(scalar, int | float):
            if envelope:
                return "false"
            params.append(float(scalar))
            return f"({value_kind} IN {_NUMBER_TYPES} AND CAST({raw} AS DOUBLE) = ?)"
        params.append(scalar)
        return f"({value_kind} = 'VARCHAR' AND {text} = ?)"

    if op in ("eq", "ne", "in", "nin"):
        options = operand if isinstance(operand, tuple) else (operand,)
        test = "(" + " OR ".join(equal(option) for option in options) + ")"
        if op in ("ne", "nin"):
            test = f"(NOT {test})"
    elif op == "contains":
        assert not isinstance(operand, tuple)
        if envelope:
            if not isinstance(operand, str):
                return "NULL"
            params.append(operand)
            return f"contains({text}, ?)"
        element = _element_equal(operand, params)
        when_text = ""
        if isinstance(operand, str):
            when_text = f"WHEN {value_kind} = 'VARCHAR' THEN contains({text}, ?) "
            params.insert(len(params) - 1, operand)  # the text test comes first in the SQL
        test = (
            f"(CASE {when_text}WHEN {value_kind} = 'ARRAY' THEN "
            f"coalesce(list_bool_or(list_transform(json_extract({raw}, '$[*]'), lambda x: {element})), false) "
            "END)"
        )
    else:
        assert not isinstance(operand, tuple | bool)
        symbol = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
        if isinstance(operand, str):
            params.append(operand)
            test = f"(CASE WHEN {value_kind} = 'VARCHAR' THEN {text} {symbol} ? END)"
        else:
            if envelope:
                return "NULL"
            params.append(float(operand))
            test = f"(CASE WHEN {value_kind} IN {_NUMBER_TYPES} THEN CAST({raw} AS DOUBLE) {symbol} ? END)"
    if envelope:
        return test
    return f"(CASE WHEN {raw} IS NULL OR {value_kind} = 'NULL' THEN NULL ELSE {test} END)"


def _element_equal(operand: Scalar, params: list[Any]) -> str:
    if isinstance(operand, bool):
        return f"(json_type(x) = 'BOOLEAN' AND CAST(x AS BOOLEAN) = {'true' if operand else 'false'})"
    if isinstance(operand, int | float):
        params.append(float(operand))
        return f"(json_type(x) IN {_NUMBER_TYPES} AND CAST(x AS DOUBLE) = ?)"
    params.append(operand)
    return "(json_type(x) = 'VARCHAR' AND json_extract_string(x, '$') = ?)"
