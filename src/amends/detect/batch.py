"""The batch evaluator: the whole history at once, vectorised in DuckDB, with the streaming evaluator's meaning.

Each rule compiles from the same rule objects into SQL over a table of events (one row an event, `data` as JSON
text). The heavy part, reading fields, testing conditions, windows and pairings, runs in DuckDB; the facts of
the rows that fire are put together as JSON by Polars, and Python only turns them into findings and applies
cooldowns, in the order the streaming evaluator would have met them. `until` plays the watermark: events
before it are evaluated, timers before it fire.

So that the work grows with the events and not with the events times the rules, every JSON document is
parsed once (`_Fields` takes every field the rules read of an event type in one pass), the streaming order is
computed once as an integer position `p` (time, then ledger key), and no step revisits the history per key:
no correlated subqueries, no rounds.

The meaning, kind by kind, as in `streaming.py`, with events in (time, ledger key) order:

- match: every matching event, keyed by the rule's key (or by the event);
- count: at an instant where the window (t - within, t] of a key holds at least N events, the rule fires; it
  starts a new incident unless it fired for the key within the window before (the episode goes on);
- sequence: each `then` event pairs with the latest `first` event before it, if within the window; a first
  pairs at most once;
- absence: the first start event of a key opens an expectation; an expected event from the start on (the
  start itself included, when it is both) and by the deadline satisfies it; else it fires at the deadline,
  and an expected event within `watch_late_for` after resolves it late. When the expectation is over, the
  next start event of the key opens a new one.
"""

# The SQL here is assembled from this module's own fragments and rule paths checked against a strict pattern
# (conditions.parse_path); every literal from a rule file travels as a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import orjson
import polars as pl

from amends.detect.conditions import AllOf, AnyOf, Compare, Condition, Exists, FieldPath, Not, Scalar
from amends.detect.incidents import Candidate, Finding, LateResolution
from amends.detect.rules import RFC3339_PATTERN, AbsenceRule, CountRule, Matcher, MatchRule, Rule, RuleSet, SequenceRule
from amends.durations import format_duration
from amends.events import Event, dedup_key

__all__ = ["FRAME_SCHEMA", "BatchResult", "condition_sql", "envelopes_frame", "evaluate_history", "events_frame"]

_NUMBER_TYPES = "('BIGINT', 'UBIGINT', 'HUGEINT', 'DOUBLE')"
_INTEGER_TYPES = "('BIGINT', 'UBIGINT', 'HUGEINT')"

FRAME_SCHEMA: dict[str, pl.DataType] = {
    "ord": pl.String(),  # the event's ledger key (`dedup_key`): the tiebreak between events of one instant
    "id": pl.String(),
    "source": pl.String(),
    "type": pl.String(),
    "t": pl.Datetime("us"),  # the event's time as naive UTC
    "subject": pl.String(),
    "data": pl.String(),  # JSON text
}


@dataclass(frozen=True, slots=True)
class BatchResult:
    findings: list[Finding]
    skipped: dict[str, int] = field(default_factory=dict)


def events_frame(events: Sequence[Event]) -> pl.DataFrame:
    """Events as the batch evaluator reads them (`FRAME_SCHEMA`): one row each."""
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
        schema=FRAME_SCHEMA,
    )


def envelopes_frame(envelopes: Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    """CloudEvents envelopes already known to be valid (a sample world's, say) as the batch evaluator reads them,
    without building an Event of each: `time` in RFC 3339, `data` a mapping."""
    rows: dict[str, list[Any]] = {name: [] for name in FRAME_SCHEMA}
    for e in envelopes:
        source, event_id = str(e["source"]), str(e["id"])
        rows["ord"].append(dedup_key(source, event_id))
        rows["id"].append(event_id)
        rows["source"].append(source)
        rows["type"].append(e["type"])
        rows["t"].append(_naive(datetime.fromisoformat(str(e["time"]))))
        rows["subject"].append(e["subject"])
        rows["data"].append(orjson.dumps(e.get("data", {})).decode())
    return pl.DataFrame(rows, schema=FRAME_SCHEMA)


def evaluate_history(rules: RuleSet, events: pl.DataFrame, *, until: datetime) -> BatchResult:
    """Findings of `rules` over `events` (a frame of `FRAME_SCHEMA`, any row order) with the watermark at
    `until`, in the order the streaming evaluator finds them, rule by rule."""
    cutoff = _naive(until)
    # `i` finds a row again, `p` is its place in the streaming order: computed once, for every rule.
    frame = events.select(list(FRAME_SCHEMA)).with_row_index("i")
    frame = frame.with_columns(p=_positions(frame))
    connection = duckdb.connect()
    try:
        connection.execute("SET TimeZone = 'UTC'")
        fields = _Fields(frame, rules, cutoff)
        # Arrow's string views are Polars' own layout: DuckDB reads the frame where it is, without a copy.
        ledger = frame.with_columns(code=fields.codes).to_arrow(compat_level=pl.CompatLevel.newest())
        connection.register("ledger", ledger)
        fields.create(connection)
        facts = _Facts(frame)
        findings: list[Finding] = []
        skipped: dict[str, int] = {}
        nearest: dict[Hashable, tuple[str, int]] = {}
        for rule in rules:
            sql = _Sql(connection, fields, rule, nearest)
            if isinstance(rule, MatchRule):
                found = facts.match(sql.match(rule))
            elif isinstance(rule, CountRule):
                found = facts.count(rule, sql.count(rule))
            elif isinstance(rule, SequenceRule):
                found = facts.sequence(sql.sequence(rule))
            else:
                found = facts.absence(sql.absence(rule, cutoff))
            findings.extend(facts.findings(rule, found))
            if sql.skipped:
                skipped[rule.common.id] = sql.skipped
        return BatchResult(findings, skipped)
    finally:
        connection.close()


# --- fields: each document parsed once ------------------------------------------------------------------


class _Fields:
    """Per event type a table of its events before `until`: `i`, `p`, `t`, the envelope fields the rules read
    (`ord` for a match rule keyed by the event), and the JSON value of every `data` path they read (a column
    each, NULL when missing).

    `codes` numbers the rows by those types (NULL for the others and for events at or after `until`), so that
    each table is cut from the frame by comparing small integers rather than text, once per table.
    """

    def __init__(self, frame: pl.DataFrame, rules: RuleSet, until: datetime) -> None:
        self.wanted: dict[str, dict[str, FieldPath]] = {}
        for rule in rules:
            for matcher, paths in _reads(rule):
                known = self.wanted.setdefault(matcher.type, {})
                for path in paths:
                    known.setdefault(path.text, path)
        numbers = {event_type: number for number, event_type in enumerate(self.wanted)}
        self.codes = frame.select(
            pl.when(pl.col("t") < until).then(
                pl.col("type").replace_strict(numbers, default=None, return_dtype=pl.Int32)
            )
        ).to_series()
        self.tables: dict[str, _Columns] = {}

    def create(self, connection: duckdb.DuckDBPyConnection) -> None:
        """The tables, from `ledger`: the frame with `codes` as its column `code`."""
        for number, (event_type, by_text) in enumerate(self.wanted.items()):
            paths = list(by_text.values())
            envelope = sorted({path.root for path in paths if path.root != "data"})
            inside = [path for path in paths if path.root == "data"]
            columns = _Columns(f"ev_{number}", {path.text: f"f{n}" for n, path in enumerate(inside)})
            picked = ", ".join(["i", "p", "t", *envelope])
            if inside:
                # One parse per document, whatever the number of paths: json_extract takes a list of them.
                listed = ", ".join(f"'{path.json_path()}'" for path in inside)
                unpacked = ", ".join(f"j[{n + 1}] AS f{n}" for n in range(len(inside)))
                source = f"(SELECT {picked}, json_extract(data, [{listed}]) AS j FROM ledger WHERE code = ?)"
                select = f"SELECT {picked}, {unpacked} FROM {source}"
            else:
                select = f"SELECT {picked} FROM ledger WHERE code = ?"
            connection.execute(f"CREATE TEMP TABLE {columns.table} AS {select}", [number])
            self.tables[event_type] = columns

    def of(self, event_type: str) -> _Columns:
        return self.tables[event_type]


@dataclass(frozen=True, slots=True)
class _Columns:
    """How SQL reads a path in one event type's table."""

    table: str
    data: dict[str, str]  # data path text -> its column

    def raw(self, path: FieldPath) -> str:
        """The JSON value (NULL when missing)."""
        return self.data[path.text]

    def text(self, path: FieldPath) -> str:
        """Text as text, other JSON values as their JSON text."""
        if path.root != "data":
            return path.root
        return f"json_extract_string({self.raw(path)}, '$')"

    def kind(self, path: FieldPath) -> str:
        return f"json_type({self.raw(path)})"


def _reads(rule: Rule) -> Iterator[tuple[Matcher, list[FieldPath]]]:
    """What each role of a rule reads of its event type: the condition's paths, the key and the deadline."""
    if isinstance(rule, MatchRule):
        yield rule.on, [*_paths(rule.on.condition), _LEDGER_KEY if rule.key is None else rule.key]
    elif isinstance(rule, CountRule):
        yield rule.on, [*_paths(rule.on.condition), rule.key]
    elif isinstance(rule, SequenceRule):
        yield rule.first, [*_paths(rule.first.condition), rule.key]
        yield rule.then, [*_paths(rule.then.condition), rule.key]
    else:
        deadline = [] if rule.deadline.path is None else [rule.deadline.path]
        yield rule.after, [*_paths(rule.after.condition), rule.key, *deadline]
        yield rule.expect, [*_paths(rule.expect.condition), rule.key]


_LEDGER_KEY = FieldPath("ord", "ord")  # not a path of the rule language: the frame's column of ledger keys


def condition_sql(condition: Condition, params: list[Any]) -> str:
    """A condition as three-valued SQL over rows with the envelope's columns and `data` as JSON text, with the
    meaning the rules give it here (risk features filter their events with it); its literals go to `params`."""
    paths = [path for path in _paths(condition) if path.root == "data"]
    columns = _Columns("", {path.text: f"json_extract(data, '{path.json_path()}')" for path in paths})
    return _condition(condition, params, columns)


def _paths(condition: Condition | None) -> list[FieldPath]:
    if condition is None:
        return []
    if isinstance(condition, AllOf | AnyOf):
        return [path for part in condition.parts for path in _paths(part)]
    if isinstance(condition, Not):
        return _paths(condition.part)
    return [condition.path]


# --- SQL: what fires, as row numbers and keys -----------------------------------------------------------


class _Sql:
    """The SQL of one rule; literals travel as parameters, paths are the rule's own (checked) text."""

    def __init__(
        self,
        connection: duckdb.DuckDBPyConnection,
        fields: _Fields,
        rule: Rule,
        nearest: dict[Hashable, tuple[str, int]],
    ) -> None:
        self.connection = connection
        self.fields = fields
        self.rule = rule
        self.nearest = nearest  # shared by the absence rules of one run: see `absence`
        self.skipped = 0

    def frame(self, sql: str, params: Sequence[Any] = ()) -> pl.DataFrame:
        result = self.connection.sql(sql, params=list(params)).pl()
        assert isinstance(result, pl.DataFrame)
        return result

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> int:
        row = self.connection.execute(sql, list(params)).fetchone()
        return 0 if row is None else int(row[0])

    def selected(self, matcher: Matcher, key: FieldPath | None, name: str, extra: str = "") -> int:
        """Create temp table `name` (i, p, t, k, then `extra`) of the events the matcher takes; drop those
        without a key, and return how many they were."""
        columns = self.fields.of(matcher.type)
        params: list[Any] = []
        where = "true"
        if matcher.condition is not None:
            where = f"coalesce({_condition(matcher.condition, params, columns)}, false)"
        self.connection.execute(
            f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT i, p, t, {_key(key or _LEDGER_KEY, columns)} AS k{extra} "
            f"FROM {columns.table} WHERE {where}",
            params,
        )
        missing = self.scalar(f"SELECT count(*) FROM {name} WHERE k IS NULL")
        self.connection.execute(f"DELETE FROM {name} WHERE k IS NULL")
        return missing

    def match(self, rule: MatchRule) -> pl.DataFrame:
        """(i, p, k): each matching event."""
        self.skipped += self.selected(rule.on, rule.key, "m")
        return self.frame("SELECT i, p, k FROM m")

    def count(self, rule: CountRule) -> pl.DataFrame:
        """(i, k, n, first_at): the last event of each instant where a new episode starts."""
        self.skipped += self.selected(rule.on, rule.key, "c")
        # RANGE includes its start, and the window is (t - within, t]: one microsecond less.
        within_us = (rule.within - _MICROSECOND) // _MICROSECOND
        sql = f"""
            WITH counted AS (
                SELECT k, t, i,
                       count(*) OVER w AS n,
                       min(t) OVER w AS first_at,
                       p = max(p) OVER (PARTITION BY k, t) AS is_last
                FROM c
                WINDOW w AS (PARTITION BY k ORDER BY t RANGE BETWEEN INTERVAL {within_us} MICROSECOND PRECEDING
                                                                AND CURRENT ROW)
            ),
            fired AS (
                SELECT k, t, i, n, first_at, lag(t) OVER (PARTITION BY k ORDER BY t) AS previous
                FROM counted WHERE n >= ? AND is_last
            )
            SELECT i, k, n, first_at FROM fired WHERE previous IS NULL OR t - previous > ?
        """
        return self.frame(sql, [rule.at_least, rule.within])

    def sequence(self, rule: SequenceRule) -> pl.DataFrame:
        """(first_i, then_i, k, then_p): each first with the earliest then that pairs with it."""
        self.skipped += self.selected(rule.first, rule.key, "sf")
        self.skipped += self.selected(rule.then, rule.key, "st")
        # An event that is both a then and a first (role 0 and 1 at the same p) pairs as a then with an earlier
        # first before it becomes the latest first, as in the streaming evaluator.
        sql = """
            WITH paired AS (
                SELECT i, p, t, k, role,
                       last_value(CASE WHEN role = 1 THEN i END IGNORE NULLS) OVER w AS first_i,
                       last_value(CASE WHEN role = 1 THEN t END IGNORE NULLS) OVER w AS first_t
                FROM (SELECT i, p, t, k, 0 AS role FROM st UNION ALL SELECT i, p, t, k, 1 AS role FROM sf)
                WINDOW w AS (PARTITION BY k ORDER BY p, role ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
            )
            SELECT first_i, arg_min(i, p) AS then_i, any_value(k) AS k, min(p) AS then_p
            FROM paired
            WHERE role = 0 AND first_i IS NOT NULL AND t - first_t <= ?
            GROUP BY first_i
        """
        return self.frame(sql, [rule.within])

    def absence(self, rule: AbsenceRule, until: datetime) -> pl.DataFrame:
        """(k, i, d, late_i, late_p): each expectation that fired, and its late resolution if any."""
        # What does not depend on the deadline's offset nor on `watch_late_for` is worked out once for the
        # rules that share their start, expected event, key and deadline field (a late and a lost parcel).
        basis = (rule.after, rule.expect, rule.key, rule.deadline.path)
        if basis not in self.nearest:
            name = f"nearest_{len(self.nearest)}"
            self.nearest[basis] = (name, self._nearest(rule, name))
        table, skipped = self.nearest[basis]
        self.skipped += skipped
        # Due before it started means due at once.
        offset = rule.deadline.offset
        self.connection.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE a AS
            SELECT *, coalesce(xt <= d, false) AS satisfied, coalesce(xt > d AND xt <= d + ?, false) AS late
            FROM (SELECT *, CASE WHEN due_at + ? < t THEN t ELSE due_at + ? END AS d FROM {table})
            """,
            [rule.watch_late_for, offset, offset],
        )
        fired = "NOT satisfied AND d < ?"
        columns = "k, i, d, CASE WHEN late THEN xi END AS late_i, CASE WHEN late THEN xp END AS late_p"
        alone = self.frame(f"SELECT {columns} FROM a WHERE NOT shared AND {fired}", [until])
        if not self.scalar("SELECT count(*) FROM a WHERE shared"):
            return alone
        self.connection.register("opened", _openers(self._next_starts(rule, until)).to_frame("n"))
        try:
            chained = self.frame(f"SELECT {columns} FROM chain JOIN opened USING (n) WHERE {fired}", [until])
        finally:
            self.connection.unregister("opened")
        return pl.concat([alone, chained])

    def _nearest(self, rule: AbsenceRule, name: str) -> int:
        """Create table `name`: every start as if it opened an expectation, with its deadline before the offset
        (`due_at`), its first expected event from it on (`xt`, `xi`, `xp`; NULL if none), and whether its key
        has other starts (`shared`). Return how many events were skipped for want of a key or a deadline.

        Only that first expected event matters: it satisfies the expectation if it comes by the deadline, else
        it is the late resolution if it comes within `watch_late_for`. A start that is also an expected event
        has the same p, so `>=` takes it: the streaming evaluator opens the expectation, then sees the event
        satisfy it.
        """
        due_at = _due_at_sql(rule, self.fields.of(rule.after.type))
        skipped = self.selected(rule.after, rule.key, "starts", f", {due_at} AS due_at")
        skipped += self.scalar("SELECT count(*) FROM starts WHERE due_at IS NULL")
        self.connection.execute("DELETE FROM starts WHERE due_at IS NULL")
        skipped += self.selected(rule.expect, rule.key, "expects")
        self.connection.execute(
            f"""
            CREATE TEMP TABLE {name} AS
            SELECT s.k, s.i, s.p, s.t, s.due_at, x.t AS xt, x.i AS xi, x.p AS xp,
                   count(*) OVER (PARTITION BY s.k) > 1 AS shared
            FROM starts s ASOF LEFT JOIN expects x ON s.k = x.k AND x.p >= s.p
            """
        )
        return skipped

    def _next_starts(self, rule: AbsenceRule, until: datetime) -> pl.DataFrame:
        """Table `chain`: the starts of keys with more than one, numbered `n` in streaming order; returned as
        (n, is_first, next_n): whether each is its key's first, and the start that opens the next expectation
        after the one it would open ends (NULL: none, before the watermark).

        An expectation ends at its deadline (satisfied; starts after that instant open the next), at its late
        resolution (starts after that event), when the watch for one ends (after that instant), or not before
        the watermark.
        """
        self.connection.execute(
            """
            CREATE OR REPLACE TEMP TABLE chain AS
            SELECT *, row_number() OVER (ORDER BY p) - 1 AS n, p = min(p) OVER (PARTITION BY k) AS is_first,
                   CASE WHEN satisfied AND d < ? THEN d
                        WHEN NOT satisfied AND NOT late AND d + ? < ? THEN d + ? END AS end_t,
                   CASE WHEN late THEN xp END AS end_p
            FROM a WHERE shared
            """,
            [until, rule.watch_late_for, until, rule.watch_late_for],
        )
        return self.frame(
            """
            WITH instants AS (SELECT k, t, min(p) AS p FROM chain GROUP BY k, t),
            by_time AS (
                SELECT c.n, s.p AS next_p FROM (SELECT n, k, end_t FROM chain WHERE end_t IS NOT NULL) c
                ASOF JOIN instants s ON c.k = s.k AND s.t > c.end_t
            ),
            by_event AS (
                SELECT c.n, s.p AS next_p FROM (SELECT n, k, end_p FROM chain WHERE end_p IS NOT NULL) c
                ASOF JOIN chain s ON c.k = s.k AND s.p > c.end_p
            ),
            nexts AS (SELECT * FROM by_time UNION ALL SELECT * FROM by_event)
            SELECT chain.n, chain.is_first, following.n AS next_n
            FROM chain LEFT JOIN nexts USING (n) LEFT JOIN chain following ON following.p = nexts.next_p
            ORDER BY chain.n
            """
        )


def _openers(starts: pl.DataFrame) -> pl.Series:
    """The starts that open an expectation: each key's first, then the next start after each one's end.

    Pointer doubling: after step j, `reached` holds every start within 2**j hops of a key's first one and
    `jump` leads 2**j hops on, so a chain of any length takes log2 of it in whole-array steps.
    """
    size = starts.height
    jump = pl.concat([starts.get_column("next_n").cast(pl.Int64).fill_null(size), pl.Series([size], dtype=pl.Int64)])
    firsts = starts.get_column("is_first").arg_true()
    reached = pl.Series("n", [False] * (size + 1), dtype=pl.Boolean)
    reached.scatter(firsts, True)
    while not (jump.gather(firsts) == size).all():
        reached.scatter(jump.gather(reached.arg_true()), True)
        jump = jump.gather(jump)
    return reached.head(size).arg_true().cast(pl.Int64)


# --- facts: what the findings say, put together as JSON by Polars ---------------------------------------

_MICROSECOND = timedelta(microseconds=1)


class _Facts:
    """Turns the rows that fire into findings. The facts are the same values `_facts.py` gives the streaming
    evaluator (an event as `event_ref`, instants as `instant_text`), written here as JSON text for a whole rule
    at once, so that Python does one `orjson.loads` per finding; the equivalence test holds the two equal."""

    def __init__(self, frame: pl.DataFrame) -> None:
        self.frame = frame.select("id", "source", "type", "t", "subject", "data")

    def rows(self, numbers: pl.Series, prefix: str = "") -> pl.DataFrame:
        """The events at these row numbers, in that order, with `ref` (their `event_ref` as JSON)."""
        picked = self.frame[numbers.cast(pl.Int64)]
        ref = pl.struct("id", "source", "type", time=_instant(pl.col("t"))).struct.json_encode()
        return picked.select(pl.all(), ref.alias("ref")).rename(lambda name: prefix + name)

    def match(self, matched: pl.DataFrame) -> pl.DataFrame:
        event = self.rows(matched.get_column("i"))
        return pl.concat([matched, event], how="horizontal").select(
            at=pl.col("t"),
            phase=pl.lit(0),
            by_place=pl.col("p").cast(pl.Int64),
            by_key=pl.lit(None, pl.String),
            key=pl.col("k"),
            customer=pl.col("subject"),
            facts=_json_object(event=pl.col("ref"), data=pl.col("data")),
            severity_of=pl.col("i"),
            late=pl.lit(False),
        )

    def count(self, rule: CountRule, fired: pl.DataFrame) -> pl.DataFrame:
        last = self.rows(fired.get_column("i"))
        return pl.concat([fired, last], how="horizontal").select(
            at=pl.col("t"),
            phase=pl.lit(0),
            by_place=pl.lit(None, pl.Int64),
            by_key=pl.col("k"),
            key=pl.concat_str(pl.col("k"), pl.lit("@"), _instant(pl.col("t"))),
            customer=pl.col("subject"),
            facts=_json_object(
                count=pl.col("n").cast(pl.String),
                within=_json_text(pl.lit(format_duration(rule.within))),
                first_at=_json_text(_instant(pl.col("first_at"))),
                last=pl.col("ref"),
            ),
            severity_of=pl.col("i"),
            late=pl.lit(False),
        )

    def sequence(self, pairs: pl.DataFrame) -> pl.DataFrame:
        first = self.rows(pairs.get_column("first_i"), "first_")
        then = self.rows(pairs.get_column("then_i"), "then_")
        return pl.concat([pairs, first, then], how="horizontal").select(
            at=pl.col("then_t"),
            phase=pl.lit(0),
            by_place=pl.col("then_p").cast(pl.Int64),
            by_key=pl.lit(None, pl.String),
            key=pl.concat_str(pl.col("k"), pl.lit("@"), _instant(pl.col("first_t"))),
            customer=pl.col("then_subject"),
            facts=_json_object(
                first=pl.col("first_ref"),
                first_data=pl.col("first_data"),
                then=pl.col("then_ref"),
                then_data=pl.col("then_data"),
            ),
            severity_of=pl.col("then_i"),
            late=pl.lit(False),
        )

    def absence(self, fired: pl.DataFrame) -> pl.DataFrame:
        # The deadline is a timer: at its instant it fires after the events (phase 1 after 0), in key order.
        start = self.rows(fired.get_column("i"))
        candidates = pl.concat([fired, start], how="horizontal").select(
            at=pl.col("d"),
            phase=pl.lit(1),
            by_place=pl.lit(None, pl.Int64),
            by_key=pl.col("k"),
            key=pl.col("k"),
            customer=pl.col("subject"),
            facts=_json_object(start=pl.col("ref"), data=pl.col("data"), deadline=_json_text(_instant(pl.col("d")))),
            severity_of=pl.col("i"),
            late=pl.lit(False),
        )
        resolved = fired.filter(pl.col("late_i").is_not_null())
        late = self.rows(resolved.get_column("late_i"))
        resolutions = pl.concat([resolved, late], how="horizontal").select(
            at=pl.col("t"),
            phase=pl.lit(0),
            by_place=pl.col("late_p").cast(pl.Int64),
            by_key=pl.lit(None, pl.String),
            key=pl.col("k"),
            customer=pl.col("subject"),
            facts=pl.col("ref"),
            severity_of=pl.col("late_i"),
            late=pl.lit(True),
        )
        return pl.concat([candidates, resolutions])

    def findings(self, rule: Rule, found: pl.DataFrame) -> list[Finding]:
        """Findings in the order the streaming evaluator meets them, with the rule's cooldown applied."""
        # At one instant, events come before timers (phase), events in streaming order (by_place), and count
        # rules and timers by key (by_key), as in the streaming evaluator.
        found = found.sort("at", "phase", "by_place", "by_key")
        common = rule.common
        severities: list[int] | None = None
        if common.severity.fixed is None:
            events = self.events(found.filter(~pl.col("late")).get_column("severity_of"))
            severities = [common.severity.of(event) for event in events]
        kept: list[Finding] = []
        last: dict[str, datetime] = {}
        cooldown, fixed = common.cooldown, common.severity.fixed
        candidates = 0
        columns = [found.get_column(name).to_list() for name in ("late", "key", "customer", "at", "facts")]
        for is_late, key, customer, naive_at, facts in zip(*columns, strict=True):
            at = naive_at.replace(tzinfo=UTC)
            if is_late:
                kept.append(LateResolution(common.id, key, at, orjson.loads(facts)))
                continue
            severity = fixed if severities is None else severities[candidates]
            candidates += 1
            if cooldown is not None:
                previous = last.get(customer)
                if previous is not None and at - previous < cooldown:
                    continue
                last[customer] = at
            assert severity is not None
            kept.append(Candidate(common.id, key, customer, severity, at, orjson.loads(facts), common.playbook))
        return kept

    def events(self, numbers: pl.Series) -> list[Event]:
        """The events at these row numbers, in that order (for a severity read from the event)."""
        picked = self.frame[numbers.cast(pl.Int64)]
        columns = [picked.get_column(name).to_list() for name in ("id", "source", "type", "t", "subject", "data")]
        return [
            Event(id=i, source=s, type=k, time=t.replace(tzinfo=UTC), subject=c, data=orjson.loads(d))
            for i, s, k, t, c, d in zip(*columns, strict=True)
        ]


def _instant(value: pl.Expr) -> pl.Expr:
    """`instant_text` as a Polars expression: RFC 3339 in UTC with microseconds."""
    return value.dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ")


def _json_text(value: pl.Expr) -> pl.Expr:
    return pl.struct(value.alias("v")).struct.json_encode().str.slice(5).str.head(-1)


def _json_object(**members: pl.Expr) -> pl.Expr:
    """A JSON object whose members are JSON texts already."""
    parts: list[pl.Expr] = []
    for index, (name, value) in enumerate(members.items()):
        parts += [pl.lit(("{" if index == 0 else ",") + orjson.dumps(name).decode() + ":"), value]
    return pl.concat_str([*parts, pl.lit("}")])


def _positions(frame: pl.DataFrame) -> pl.Series:
    """Each row's place in the streaming order: by time, then by ledger key.

    Sorting by time alone is several times faster than by time and text; then only the rows of instants that
    several events share are sorted by ledger key among themselves, in the places those instants took.
    """
    times = frame.get_column("t")
    order = times.arg_sort()
    in_order = times.gather(order)
    tied = ((in_order == in_order.shift(1)) | (in_order == in_order.shift(-1))).fill_null(False).arg_true()
    if len(tied):
        rows = order.gather(tied)
        among = frame.select(pl.col("t", "ord").gather(rows)).select(pl.arg_sort_by("t", "ord")).to_series()
        order.scatter(tied, rows.gather(among))
    return order.arg_sort()


def _naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


# --- keys, conditions and deadlines as SQL over an event type's columns --------------------------------


def _key(path: FieldPath, columns: _Columns) -> str:
    """The correlation key as text: non-empty text, or a whole number; else NULL (the event is skipped)."""
    if path.root != "data":
        return f"nullif({path.root}, '')"
    kind, text = columns.kind(path), columns.text(path)
    return f"CASE WHEN {kind} = 'VARCHAR' THEN nullif({text}, '') WHEN {kind} IN {_INTEGER_TYPES} THEN {text} END"


def _due_at_sql(rule: AbsenceRule, columns: _Columns) -> str:
    """The instant a deadline counts its offset from: the start's time, or the RFC 3339 time in its field
    (NULL when that is missing or not one: the start is skipped)."""
    path = rule.deadline.path
    if path is None:
        return "t"
    pattern = RFC3339_PATTERN.replace("'", "''")
    kind, text = columns.kind(path), columns.text(path)
    return (
        f"(CASE WHEN {kind} = 'VARCHAR' AND regexp_full_match({text}, '{pattern}') "
        f"THEN CAST(try_cast({text} AS TIMESTAMPTZ) AS TIMESTAMP) END)"
    )


def _condition(condition: Condition, params: list[Any], columns: _Columns) -> str:
    """Three-valued SQL for a condition (NULL for unknown), appending its literals to `params` in order."""
    if isinstance(condition, AllOf | AnyOf):
        joiner = " AND " if isinstance(condition, AllOf) else " OR "
        return "(" + joiner.join(_condition(part, params, columns) for part in condition.parts) + ")"
    if isinstance(condition, Not):
        return f"(NOT {_condition(condition.part, params, columns)})"
    path = condition.path
    if isinstance(condition, Exists):
        if path.root != "data":
            return "true" if condition.expected else "false"
        present = f"({columns.raw(path)} IS NOT NULL AND {columns.kind(path)} <> 'NULL')"
        return present if condition.expected else f"(NOT {present})"
    return _compare(condition, params, columns)


def _compare(condition: Compare, params: list[Any], columns: _Columns) -> str:
    path, op, operand = condition.path, condition.op, condition.operand
    envelope = path.root != "data"
    value_kind = "'VARCHAR'" if envelope else columns.kind(path)
    text = columns.text(path)
    raw = None if envelope else columns.raw(path)

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
