"""The risk watch: the risk rules at work. It scores the newest model's moments as they are stored and opens an
incident for each customer whose risk is high enough, before anything went wrong that a rule could see.

Every tick of the background work (beside the detector's sweep) it reads the events after its cursor whose type is
one of the model's moments (a delivery, a landing, a finished job), at most `batch` at a time, and scores each
(customer, moment) on that customer's history up to the moment: the point-in-time features `amends train` learned
from, read for those customers alone. Every score is recorded with its reasons, so the console and the API show
a customer's risk as it was at their latest moment. Then each risk rule decides, moment by moment, highest
score first:

- a moment is scored only while its outcome can still be headed off: one already older than the label's window
  when it is read (history loaded late, a rule enabled today) is passed over;
- `at_least: p` opens an incident when the calibrated risk is at least p;
- `top: K` is a budget: at most K incidents of the rule a day (by the day they are opened, UTC), for moments of
  the last 24 hours only, and only for a risk at least the K-th highest of an average day over the last week of
  moments the watch scored (before a day of scores is recorded, the budget alone applies);
- no customer gets a second incident of the rule within its `cooldown` (the label's window when none is set).

An incident's key is the moment event's ledger key, so scoring a moment again never opens a second one. Its facts
are those of a match rule's (the moment event and its data, which templates read) plus the risk, the model
version, the rule's threshold, and the reasons in plain words.

Work is read and computed outside any write lock; the writes happen under the lock every writer of incidents
takes, after checking that the cursor did not move meanwhile (another process took the same events: then this
one drops its work). A new watch starts at the beginning of the ledger, and the window rule above keeps it from
scoring the past. Like the detector, the cursor relies on events committing in `seq` order, which ingestion
ensures by taking the detection lock; in broker mode, where each partition commits on its own, the watch reads only
events stored at least `settle` ago (as asking for feedback does). A moment is scored as soon as it is read, on the
history stored by then: an event of the customer's that arrives later is not in that score (training, on the stored
history, saw it).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import sqlalchemy as sa

from amends.detect._facts import event_ref
from amends.detect.incidents import Candidate
from amends.detect.risk.data import customer_chunks, customer_history, load_records, naive_utc
from amends.detect.risk.features import PAIR_SCHEMA, Records, feature_frame
from amends.detect.risk.model import Reason, RiskModel
from amends.detect.risk.registry import latest_model, save_scores
from amends.detect.rules import RiskRule
from amends.detect.runner import Detected, lock_incident_writes, store_findings
from amends.events import Event, Recorded, last_seq, read_recorded
from amends.store import Database, UnitOfWork, tables

__all__ = ["BUDGET_LOOKBACK", "RiskWatch", "Scoring"]

log = logging.getLogger(__name__)

BUDGET_LOOKBACK = timedelta(days=7)  # the days of scores a `top` rule's threshold is taken from
_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Scoring:
    """One moment scored: the event it is about, the calibrated risk and what pushed it up."""

    event: Event
    key: str  # the moment event's ledger key
    score: float
    reasons: tuple[Reason, ...]


class RiskWatch:
    """Scores the moments of the newest model and applies the risk rules, behind a cursor stored as `name`."""

    def __init__(self, *, name: str = "main", batch: int = 2_000, settle: timedelta | None = None) -> None:
        self.name = name
        self.batch = batch
        self.settle = settle  # broker mode: read only events stored this long ago (see the module's docstring)
        self._model: RiskModel | None = None
        self._warned = False

    def tick(self, db: Database, rules: Sequence[RiskRule], *, now: datetime) -> Detected:
        """Score the next batch of moments and open the incidents the rules call for."""
        if not rules:
            return Detected()
        with db.unit_of_work() as uow:
            model = self._newest(uow)
            if model is None:
                return Detected()
            cursor = _cursor(uow, self.name)
            moments, through = self._moments(uow, model, after=cursor, now=now)
            customers = sorted({recorded.event.subject for recorded in moments})
            until = max((recorded.event.time for recorded in moments), default=now) + timedelta(microseconds=1)
            history = customer_history(uow, customers, until=until) if moments else None
            records = load_records(uow, until=until, customers=customers) if moments else None
        if through == cursor:
            return Detected()
        scorings = _score(model, moments, history, records) if history is not None and records is not None else []
        with db.unit_of_work(writes=True) as uow:
            lock_incident_writes(uow)
            if not _advance(uow, self.name, cursor, through, now=now):
                return Detected()  # another process took these events; it scores them
            detected = Detected()
            if scorings:
                who, when = [s.event.subject for s in scorings], [naive_utc(s.event.time) for s in scorings]
                pairs = pl.DataFrame({"customer_id": who, "at": when}, schema=PAIR_SCHEMA)
                save_scores(uow, model, pairs, np.array([s.score for s in scorings]), [s.reasons for s in scorings],
                            now=now, by="watch")  # fmt: skip
                for rule in rules:
                    findings = _decide(uow, rule, model, scorings, now=now)
                    if findings:
                        detected += store_findings(uow, findings, detected_at=now, detected_by="risk")
            uow.commit()
        if detected.opened:
            log.info("risk: %d moment(s) scored, %d incident(s) opened", len(scorings), detected.opened)
        return detected

    def _newest(self, uow: UnitOfWork) -> RiskModel | None:
        """The newest stored model, loaded again only when a newer one is stored."""
        m = tables.risk_models
        newest = uow.execute(sa.select(sa.func.max(m.c.id))).scalar_one_or_none()
        if newest is None:
            if not self._warned:
                log.warning("risk rules are enabled but no risk model is trained yet: run amends train")
                self._warned = True
            return None
        if self._model is None or self._model.version != newest:
            self._model = latest_model(uow)
            log.info("risk rules now score with model version %s", newest)
        return self._model

    def _moments(self, uow: UnitOfWork, model: RiskModel, *, after: int, now: datetime) -> tuple[list[Recorded], int]:
        """The next moment events after the cursor still within the label's window of `now`, and the seq the cursor
        moves to past them."""
        if self.settle is None:
            newest = last_seq(uow)
        else:  # broker mode: partitions commit out of seq order; a seq is final once stored `settle` ago
            settled = datetime.now(UTC) - self.settle
            e = tables.events
            newest = uow.execute(
                sa.select(sa.func.coalesce(sa.func.max(e.c.seq), after)).where(
                    e.c.seq > after, e.c.received_at <= settled
                )
            ).scalar_one()
        found = read_recorded(
            uow, after=after, through=newest, not_before=now - model.spec.label.within, types=model.spec.moments,
            limit=self.batch,
        )  # fmt: skip
        return found, max(found[-1].seq if len(found) == self.batch else newest, after)


def _cursor(uow: UnitOfWork, name: str) -> int:
    w = tables.risk_watch
    seq = uow.execute(sa.select(w.c.seq).where(w.c.name == name)).scalar_one_or_none()
    return 0 if seq is None else int(seq)


def _advance(uow: UnitOfWork, name: str, cursor: int, through: int, *, now: datetime) -> bool:
    """Move the cursor from `cursor` to `through`; False if it is no longer at `cursor`."""
    w = tables.risk_watch
    if cursor == 0 and uow.execute(sa.select(w.c.seq).where(w.c.name == name)).first() is None:
        return uow.insert_missing("risk_watch", ("name", "seq", "updated_at"), [(name, through, now)]) == 1
    moved = uow.execute(w.update().where(w.c.name == name, w.c.seq == cursor).values(seq=through, updated_at=now))
    return moved.rowcount == 1


def _score(model: RiskModel, moments: Sequence[Recorded], history: pl.DataFrame, records: Records) -> list[Scoring]:
    """Each moment's risk and reasons; one score per customer and instant (the first moment event of it)."""
    seen: dict[tuple[str, datetime], tuple[str, Event]] = {}
    for moment in moments:
        seen.setdefault((moment.event.subject, naive_utc(moment.event.time)), (moment.key, moment.event))
    pairs = pl.DataFrame({"customer_id": [c for c, _ in seen], "at": [at for _, at in seen]}, schema=PAIR_SCHEMA)
    frame = feature_frame(history, pairs, model.spec, records)
    order = {(c, at): i for i, (c, at) in enumerate(frame.select("customer_id", "at").iter_rows())}
    scores = model.score(frame)
    reasons = model.reasons(frame)
    out = []
    for pair, (key, event) in seen.items():
        i = order[pair]
        out.append(Scoring(event, key, float(scores[i]), tuple(reasons[i])))
    return out


def _decide(
    uow: UnitOfWork, rule: RiskRule, model: RiskModel, scorings: Sequence[Scoring], *, now: datetime
) -> list[Candidate]:
    """The incidents `rule` opens for these scored moments, highest risk first."""
    window = model.spec.label.within
    cooldown = rule.common.cooldown or window
    threshold = rule.at_least or 0.0
    room: int | None = None
    if rule.top is not None:
        threshold = max(threshold, _budget_threshold(uow, rule.top, now=now) or 0.0)
        room = rule.top - _opened_today(uow, rule, now=now)
    times = _incident_times(uow, rule, sorted({s.event.subject for s in scorings}))
    found: list[Candidate] = []
    for s in sorted(scorings, key=lambda s: (-s.score, s.event.time, s.key)):
        if room is not None and room <= 0:
            break
        at = s.event.time
        if s.score < threshold or at <= now - window:
            continue
        if room is not None and at <= now - _DAY:
            continue  # a day's budget is for the day's moments, not for a backlog a new watch catches up on
        near = times.setdefault(s.event.subject, [])
        if any(abs(at - t) < cooldown for t in near):  # moments come in any order: before and after count alike
            continue
        near.append(at)
        facts = {
            "event": event_ref(s.event),
            "data": s.event.data,
            "risk": round(s.score, 4),
            "model": model.version,
            "threshold": round(threshold, 4),
            "reasons": [{"feature": r.feature, "description": r.description, "value": r.value, "usual": r.usual,
                         "text": str(r)} for r in s.reasons],
        }  # fmt: skip
        found.append(
            Candidate(rule.common.id, s.key, s.event.subject, rule.common.severity.of(s.event), at, facts,
                      rule.common.playbook)
        )  # fmt: skip
        if room is not None:
            room -= 1
    return found


def _budget_threshold(uow: UnitOfWork, top: int, *, now: datetime) -> float | None:
    """The `top`-th highest score of an average day over the last week of moments the watch scored (by any model
    version: they are calibrated probabilities alike, so a retrained model has its budget at once); None before a
    day of them is recorded. `amends score`'s scores, at instants of its own choosing, are not moments."""
    s = tables.risk_scores
    since = now - BUDGET_LOOKBACK
    scored = (s.c.scored_by == "watch", s.c.at >= since, s.c.at <= now)
    first = uow.execute(sa.select(sa.func.min(s.c.at, type_=s.c.at.type)).where(*scored)).scalar_one_or_none()
    if first is None:
        return None
    days = (now - first.astimezone(UTC)) / _DAY
    if days < 1:
        return None
    rank = max(1, round(top * days))
    found = uow.execute(
        sa.select(s.c.score).where(*scored).order_by(s.c.score.desc()).offset(rank - 1).limit(1)
    ).scalar_one_or_none()
    return None if found is None else float(found)


def _opened_today(uow: UnitOfWork, rule: RiskRule, *, now: datetime) -> int:
    i = tables.incidents
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return int(
        uow.execute(
            sa.select(sa.func.count()).where(i.c.rule_id == rule.common.id, i.c.detected_at >= midnight)
        ).scalar_one()
    )


def _incident_times(uow: UnitOfWork, rule: RiskRule, customers: Sequence[str]) -> dict[str, list[datetime]]:
    """When each customer's incidents of the rule went wrong."""
    i = tables.incidents
    out: dict[str, list[datetime]] = {}
    for chunk in customer_chunks(customers):
        rows = uow.execute(
            sa.select(i.c.customer_id, i.c.failure_at).where(i.c.rule_id == rule.common.id, i.c.customer_id.in_(chunk))
        )
        for row in rows:
            out.setdefault(row.customer_id, []).append(row.failure_at.astimezone(UTC))
    return out
