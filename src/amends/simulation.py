"""A world that reacts: a sample world run step by step with the product in the loop, to check the holdout
experiment's estimator against a known truth (docs/insights.md#a-world-that-reacts).

Events go in through the normal ingest and detection; recovery opens cases and draws the holdout; a simulated
recovery desk works every case it may (apologise, grant what the policy proposes, within authority); the outbox
delivers to a file; and the world reads back, from the outbox and the ledger, which customers received an apology
with a remedy, and when. A timely one lowers their chance to complain and to leave by the world's `true_effect`.

The truth the estimate is checked against is the world's own: the complaints its customers did not make because a
recovery won them back. With the complaints they made, that is what the treated customers would have done without
recovery; the difference in the share who complained within 30 days is the effect on the treated
(`Truth.complained`), which the experiment estimates by comparing them with the held-out customers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import sqlalchemy as sa

from amends.config import Settings
from amends.detect.service import Detection
from amends.errors import AmendsError, Conflict, InvalidInput, NotFound
from amends.events import Item, ingest_items
from amends.insights.experiment import Estimate, Experiment, analyse
from amends.insights.outcomes import Outcome, shipped_outcomes
from amends.outreach.delivery import Delivery
from amends.outreach.service import Outreach
from amends.recover import cases as work
from amends.recover import remedies
from amends.recover.actors import Actor
from amends.recover.cases import WITHHELD, Status
from amends.recover.roles import Role
from amends.recover.service import Recovery
from amends.recover.staff import StaffMember, add_staff, get_staff
from amends.store import Database, UnitOfWork, tables
from amends.world import DEFAULT_START, Reacted, WorldStream, generate_world

__all__ = ["Simulation", "Truth", "simulate", "simulation_settings", "tell_world", "work_open_cases"]

_COMPLAINED = "complained"
_COMPLAINED_WITHIN = timedelta(days=30)
_DESK = "desk"


@dataclass(frozen=True, slots=True)
class Truth:
    """The world's own account of the effect on the treated: the share of treated units whose customer complained
    within 30 days, and the share who would have without recovery (the complaints a recovery prevented added)."""

    treated: int
    complained: float
    without_recovery: float

    @property
    def effect(self) -> float:
        """Treated minus what they would have done without recovery: what the experiment estimates."""
        return self.complained - self.without_recovery

    @property
    def relative(self) -> float | None:
        """The effect as a share of what would have been: the experiment's relative estimate, and what the world's
        true effect becomes once complaints made before a recovery arrived (which none can prevent) are counted."""
        return self.complained / self.without_recovery - 1 if self.without_recovery else None


@dataclass
class Simulation:
    business: str
    customers: int
    days: int
    seed: int
    true_effect: float
    events: int = 0
    incidents: int = 0
    cases: int = 0
    held_out: int = 0
    apologies: int = 0
    grants: int = 0
    recoveries_told: int = 0
    reacted: Reacted | None = None
    experiment: Experiment | None = None
    truth: Truth | None = None
    outcomes: tuple[Outcome, ...] = field(default_factory=tuple)

    def estimate(self, outcome: str = _COMPLAINED, group: str = "all") -> Estimate | None:
        """The first round's estimate of an outcome (the final look), or None."""
        if self.experiment is None or not self.experiment.rounds:
            return None
        return next(
            (e for e in self.experiment.rounds[0].estimates if e.outcome.id == outcome and e.group == group), None
        )


def simulation_settings(settings: Settings, *, business: str, outbox_file: Path, holdout_share: float) -> Settings:
    """The settings a simulation runs with: the business's rule pack, the events' clock, messages to a file, the
    holdout at `holdout_share`, and no quiet hours or caps (the desk works around the clock)."""
    return settings.model_copy(
        update={
            "rule_packs": (business,),
            "detect_clock": "events",
            "outbox_file": outbox_file,
            "holdout_share": holdout_share,
            "holdout_shares": {},
            "quiet_hours": "",
            "business_hours": "Mon-Sun 00:00-24:00",
            "feedback_request_event_types": (),
            "assign_teams": {},
        }
    )


def simulate(
    db: Database,
    settings: Settings,
    *,
    business: str,
    customers: int,
    days: int,
    seed: int,
    true_effect: float,
    step: timedelta = timedelta(hours=6),
    start: datetime = DEFAULT_START,
) -> Simulation:
    """Run the world for `days` in steps through the product (in `db`: migrated and empty, Conflict otherwise, with
    settings from `simulation_settings`), then analyse the holdout experiment as of the end, with its horizon
    30 days before the end so that the complaints of the first round's units are all in."""
    if days < 45:
        raise InvalidInput("days", "at least 45: the experiment needs 30 days after its horizon")
    with db.unit_of_work() as uow:
        if uow.execute(sa.select(sa.func.count()).select_from(tables.cases)).scalar_one():
            raise Conflict("a simulation runs in an empty database; this one has cases")
    result = Simulation(business, customers, days, seed, true_effect)
    world = generate_world(business, customers=customers, days=days, seed=seed, start=start, true_effect=true_effect)
    desk = _desk(db, start)
    detection = Detection.from_settings(db, settings)
    recovery = Recovery.from_settings(db, settings)
    outreach = Outreach.from_settings(settings, recovery.policy)
    delivery = Delivery.from_settings(db, settings)
    told: set[int] = set()
    refused: set[int] = set()
    for step_end, events in _steps(world, start, days, step):
        if events:
            result.events += ingest_items(db, [Item(e) for e in events], received_at=step_end,
                                          watcher=detection.detector).accepted  # fmt: skip
        recovery.tick(now=step_end)
        with db.unit_of_work(writes=True) as uow:
            _work(uow, recovery, outreach, desk, step_end, refused)
            uow.commit()
        delivery.tick(now=step_end)
        result.recoveries_told += tell_world(db, world.recovered, told)
    end = start + timedelta(days=days)
    outcomes = shipped_outcomes((business,))
    with db.unit_of_work() as uow:
        # The horizon ends 30 days before the end, counted from the period's start (its first draw): the complaints
        # of the first round's units are all in, and that round's look is final.
        started = uow.execute(sa.select(sa.func.min(tables.holdout_periods.c.started_at))).scalar() or start
        horizon = max(timedelta(days=1), end - _COMPLAINED_WITHIN - started)
        result.experiment = analyse(uow, outcomes, as_of=end, horizon=horizon)
        result.truth = _truth(uow, world, result.experiment)
        count = _counter(uow)
        result.incidents = count(tables.incidents)
        result.cases = count(tables.cases)
        result.held_out = count(tables.holdout_draws, tables.holdout_draws.c.held_out.is_(True))
        result.apologies = count(tables.messages, tables.messages.c.kind == "apology")
        result.grants = count(tables.ledger)
    result.reacted = world.reacted
    result.outcomes = outcomes
    return result


def _steps(world: WorldStream, start: datetime, days: int, step: timedelta) -> Iterator[tuple[datetime, list[Any]]]:
    """The world's events a step at a time (by event time), each step with its end."""
    end = start + timedelta(days=days)
    step_end = start + step
    batch: list[Any] = []
    for envelope in world:
        at = datetime.fromisoformat(envelope["time"])
        while at >= step_end:
            yield step_end, batch
            batch, step_end = [], step_end + step
        batch.append(envelope)
    while step_end <= end:
        yield step_end, batch
        batch, step_end = [], step_end + step


def work_open_cases(db: Database, settings: Settings, *, now: datetime) -> None:
    """The simulated desk (a manager, added if missing) works every open case once, as `simulate` does each step:
    take it on, apologise, grant what the policy proposes, resolve. For comparing two runs of the same events."""
    try:
        with db.unit_of_work() as uow:
            member = get_staff(uow, _DESK)
        desk = Actor(None, member, member.scopes, None)
    except NotFound:
        desk = _desk(db, now)
    recovery = Recovery.from_settings(db, settings)
    outreach = Outreach.from_settings(settings, recovery.policy)
    with db.unit_of_work(writes=True) as uow:
        _work(uow, recovery, outreach, desk, now, set())
        uow.commit()


def _desk(db: Database, now: datetime) -> Actor:
    """The simulated recovery desk: a manager, so that the policy's proposals are within authority; the only staff,
    so every case is theirs."""
    with db.unit_of_work(writes=True) as uow:
        member: StaffMember = add_staff(uow, _DESK, name="Recovery desk", role=Role.MANAGER, team=None, now=now)
        uow.commit()
    return Actor(None, member, member.scopes, None)


def _work(
    uow: UnitOfWork, recovery: Recovery, outreach: Outreach, desk: Actor, now: datetime, refused: set[int]
) -> None:
    """Every open case the desk has not taken on: take it on, apologise, grant what the policy proposes, resolve.
    The desk tries held-out cases too: the product itself refuses them. A held-out case refused once (in `refused`)
    is tried again only once the customer has raised it."""
    c = tables.cases
    waiting = uow.execute(
        sa.select(c.c.id, WITHHELD.label("withheld"))
        .where(c.c.status == Status.OPEN.value, c.c.acknowledged_at.is_(None))
        .order_by(c.c.id)
    ).all()
    for row in waiting:
        case_id, withheld = int(row.id), bool(row.withheld)
        if withheld and case_id in refused:
            continue
        # Each case in a savepoint: what the product refuses (a held-out case, a customer with no address, a spent
        # budget) leaves nothing half done behind.
        savepoint = uow.connection.begin_nested()
        try:
            work.acknowledge(uow, case_id, actor=desk, now=now)
            outreach.apologise(uow, case_id, actor=desk, now=now)
            proposal = remedies.propose(uow, case_id, policy=recovery.policy, actor=desk, now=now)
            grant = remedies.Grant(proposal.kind, proposal.amount, note=None)
            entry, new = remedies.grant(uow, case_id, grant, policy=recovery.policy, actor=desk, now=now)
            if new:
                outreach.confirm_remedy(uow, entry, now=now)
            playbook = recovery.playbooks.get(work.load_case(uow, case_id).playbook)
            outreach.resolve(uow, case_id, resolution="Apologised and made good.", actor=desk, now=now,
                             playbook=playbook)  # fmt: skip
        except AmendsError:
            savepoint.rollback()  # a missing recovery
            if withheld:
                refused.add(case_id)
            continue
        savepoint.commit()


def tell_world(db: Database, recovered: Callable[[str, datetime], object], told: set[int]) -> int:
    """Tell a world (`recovered(customer, at)`) of each case whose apology went out and whose remedy is granted:
    when both had reached the customer. Each case once: `told` keeps the cases told."""
    m, ledger = tables.messages, tables.ledger
    with db.unit_of_work() as uow:
        rows = uow.execute(
            sa.select(
                m.c.case_id,
                m.c.customer_id,
                sa.func.min(m.c.sent_at).label("sent_at"),
                sa.func.min(ledger.c.at).label("granted_at"),
            )
            .join(ledger, ledger.c.case_id == m.c.case_id)
            .where(m.c.kind == "apology", m.c.status == "sent", ledger.c.reverses_id.is_(None))
            .group_by(m.c.case_id, m.c.customer_id)
        ).all()
    new = 0
    for row in rows:
        if row.case_id in told:
            continue
        told.add(row.case_id)
        recovered(row.customer_id, max(row.sent_at, row.granted_at))
        new += 1
    return new


def _truth(uow: UnitOfWork, world: WorldStream, experiment: Experiment) -> Truth:
    """Over the treated units of the first round (as the experiment counts them): who complained within 30 days,
    and who would have without recovery (a complaint made, or one prevented, in the window)."""
    if not experiment.rounds:
        return Truth(0, 0.0, 0.0)
    closed = experiment.as_of - _COMPLAINED_WITHIN
    units = experiment.rounds[0].units.filter(~pl.col("held_out") & (pl.col("failure_at") <= closed))
    units = units.select("customer_id", "failure_at")
    e = tables.events
    made = [
        (row.subject, row.time)
        for row in uow.execute(sa.select(e.c.subject, e.c.time).where(e.c.type == "complaint.filed"))
    ]
    prevented = list(world.prevented())
    schema: dict[str, Any] = {"customer_id": pl.String, "at": pl.Datetime("us", "UTC")}
    complaints = pl.DataFrame(made, schema=schema, orient="row").with_columns(pl.lit(False).alias("prevented"))
    complaints = pl.concat([complaints, pl.DataFrame(prevented, schema=schema, orient="row")
                            .with_columns(pl.lit(True).alias("prevented"))])  # fmt: skip
    if units.is_empty():
        return Truth(0, 0.0, 0.0)
    window = (
        units.with_row_index("unit")
        .join(complaints, on="customer_id", how="left")
        .with_columns(
            ((pl.col("at") > pl.col("failure_at")) & (pl.col("at") <= pl.col("failure_at") + _COMPLAINED_WITHIN))
            .fill_null(False)
            .alias("inside")
        )
        .group_by("unit")
        .agg(
            (pl.col("inside") & ~pl.col("prevented").fill_null(False)).any().alias("made"),
            pl.col("inside").any().alias("would_have"),
        )
    )
    return Truth(len(units), float(window["made"].mean() or 0.0), float(window["would_have"].mean() or 0.0))  # type: ignore[arg-type]


def _counter(uow: UnitOfWork) -> Any:
    def count(table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
        return int(uow.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one())

    return count
