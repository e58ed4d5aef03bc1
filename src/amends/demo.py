"""The demo: a sample world of the shop, the airline and the car service, run day by day through the whole product
(detection, recovery, outreach to the file channel, feedback), with demo staff doing a day's work on it, so that the
console opens on believable work: cases worked and waiting, remedies granted and awaiting approval, customers' answers
triaged, answered or overdue.

Everything goes through the same functions the API and the console call; only the people are simulated: which case
an agent takes on, which answer a customer writes (from the texts below, chosen by what happened to them). Seeded:
the same seed gives the same world and the same work.
"""

from __future__ import annotations

import heapq
import random
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from amends.config import Settings
from amends.detect.service import Detection
from amends.errors import AmendsError, Conflict
from amends.events import Item, ingest_items
from amends.feedback.asking import Asking, answer_request
from amends.feedback.records import FeedbackChannel, FeedbackIn
from amends.feedback.requests import get_request
from amends.feedback.service import FeedbackDesk
from amends.insights.experiment import Estimate, analyse
from amends.insights.outcomes import outcomes_from_settings
from amends.outreach.delivery import Delivery
from amends.outreach.service import Outreach
from amends.recover import cases as work
from amends.recover import remedies
from amends.recover.actors import Actor
from amends.recover.cases import Status
from amends.recover.roles import Role
from amends.recover.service import Recovery
from amends.recover.staff import StaffMember, add_staff, set_password
from amends.simulation import tell_world
from amends.store import Database, UnitOfWork, tables
from amends.world import WorldStream, generate_world

__all__ = [
    "DEMO_HOLDOUT_HORIZON", "DEMO_HOLDOUT_SHARE", "DEMO_STAFF", "DEMO_TEAMS", "DEMO_TRUE_EFFECT", "DemoReport",
    "build_demo", "demo_settings",
]  # fmt: skip

# The demo's people: an agent per business, a lead, a manager who approves, an admin (docs/console.md#trying-it).
DEMO_STAFF = (
    ("ana", "Ana Silva", Role.AGENT, "airport"),
    ("ben", "Ben Okafor", Role.AGENT, "web-shop"),
    ("cara", "Cara Nowak", Role.AGENT, "workshop"),
    ("lee", "Lee Chen", Role.LEAD, "airport"),
    ("max", "Max Weber", Role.MANAGER, None),
    ("root", "Root Admin", Role.ADMIN, None),
)
DEMO_TEAMS = (("air-*", "airport"), ("shop-*", "web-shop"), ("car-*", "workshop"))
_BUSINESSES = ("shop", "airline", "car_service")
_BUSINESS_OF = {"C": "shop", "P": "airline", "D": "car_service"}  # by the first letter of their customers' ids
DEMO_TRUE_EFFECT = 0.3  # how much a timely apology with a remedy lowers a demo customer's chance to complain, leave
DEMO_HOLDOUT_SHARE = 0.25  # more than the default tenth: the demo's 45 days are short for an experiment
DEMO_HOLDOUT_HORIZON = timedelta(days=14)  # rounds of two weeks: the first has a verdict once its 30 days are over
_ASKED_ABOUT = ("order.delivered", "flight.arrived", "service.completed")
_UNTOUCHED = timedelta(hours=12)  # the newest cases are left for the person trying the demo
_TAKE_ON = 0.8  # an agent takes on this share of older cases the day after they open
_RESOLVE = 0.15  # a case whose remedy is settled is resolved this share of days (the follow-up comes after)
_APPROVE = 0.6  # a manager decides a pending request this share of days (a sixth of decisions deny)
_ANSWER_PAGE = 0.3  # customers who answer the feedback link on a given day
_ANSWER_FEEDBACK = 0.6  # staff answer waiting feedback this share of days
_SEVERE = 3  # from this severity on an agent may offer more than the policy proposes
_GENEROUS = 0.5  # and does, this share of the time


@dataclass
class DemoReport:
    """What the demo built: counts to print, and the logins to try."""

    events: int = 0
    incidents: int = 0
    cases: int = 0
    apologies: int = 0
    grants: int = 0
    approvals_pending: int = 0
    held_out: int = 0  # cases held out of proactive recovery by the experiment
    feedback: int = 0
    answered: int = 0
    complained: Estimate | None = None  # the experiment's estimate of "complained within 30 days" (its first round)
    password: str = ""
    logins: list[tuple[str, str, str]] = field(default_factory=list)  # id, role, team


def demo_settings(settings: Settings, outbox_file: str) -> Settings:
    """The settings the demo runs with: every rule pack, teams by rule, feedback asked after every delivery, flight
    and finished job, messages written to a file instead of sent."""
    update: dict[str, Any] = {"outbox_file": Path(outbox_file), "detect_clock": "events"}
    if not settings.rule_packs and settings.rules_dir is None:
        update["rule_packs"] = _BUSINESSES
    if not settings.assign_teams:
        update["assign_teams"] = dict(DEMO_TEAMS)
    if not settings.feedback_request_event_types:
        update["feedback_request_event_types"] = _ASKED_ABOUT
    update["feedback_cap_per_month"] = 0
    update["holdout_share"] = DEMO_HOLDOUT_SHARE
    update["holdout_horizon"] = DEMO_HOLDOUT_HORIZON
    update["quiet_hours"] = ""
    update["business_hours"] = "Mon-Sun 08:00-20:00"
    return settings.model_copy(update=update)


def build_demo(
    db: Database, settings: Settings, *, now: datetime, customers: int = 400, days: int = 45, seed: int = 7
) -> DemoReport:
    """Build the demo world up to `now` in `db` (migrated and empty: Conflict otherwise, so that the demo never sets
    a password on someone real), with `settings` from `demo_settings`."""
    with db.unit_of_work() as uow:
        if _count(uow, tables.staff) or _count(uow, tables.cases):
            raise Conflict("the demo builds its world in an empty database; this one has staff or cases")
    rng = random.Random(seed)  # noqa: S311  (who does what in a sample world; nothing secret)
    report = DemoReport(password=_password())
    staff = _add_staff(db, report, now)
    detection = Detection.from_settings(db, settings)
    recovery = Recovery.from_settings(db, settings)
    outreach = Outreach.from_settings(settings, recovery.policy)
    asking = Asking.from_settings(db, settings, outreach)
    desk = FeedbackDesk.from_settings(settings, intake=recovery.intake, outreach=outreach)
    delivery = Delivery.from_settings(db, settings)
    start = (now - timedelta(days=days)).replace(minute=0, second=0, microsecond=0)
    streams = {
        business: generate_world(
            business, customers=customers, days=days, seed=seed, start=start, true_effect=DEMO_TRUE_EFFECT
        )
        for business in _BUSINESSES
    }
    told: set[int] = set()

    def won_back(customer: str, at: datetime) -> bool:
        return streams[_BUSINESS_OF[customer[0]]].won_back(customer, at)

    for day_end, events in _days(list(streams.values()), now, start):
        for first in range(0, len(events), 5_000):
            chunk = [Item(envelope) for envelope in events[first : first + 5_000]]
            report.events += ingest_items(db, chunk, received_at=day_end, watcher=detection.detector).accepted
        recovery.tick(now=day_end)
        asking.tick(day_end)
        with db.unit_of_work(writes=True) as uow:
            _customers_answer(uow, desk, rng, day_end, won_back)
            _staff_work(uow, recovery, outreach, desk, staff, rng, day_end)
            uow.commit()
        delivery.tick(now=day_end)  # to the file channel: the day's messages go out that day
        # The customers read them: a timely apology with a remedy wins some back (docs/world.md#reacting).
        tell_world(db, lambda customer, at: streams[_BUSINESS_OF[customer[0]]].recovered(customer, at), told)
    _spam(db, desk, now)
    with db.unit_of_work() as uow:
        report.incidents = _count(uow, tables.incidents)
        report.cases = _count(uow, tables.cases)
        report.apologies = _count(uow, tables.messages, tables.messages.c.kind == "apology")
        report.grants = _count(uow, tables.ledger)
        report.approvals_pending = _count(uow, tables.approvals, tables.approvals.c.status == "pending")
        report.held_out = _count(uow, tables.holdout_draws, tables.holdout_draws.c.held_out.is_(True))
        report.feedback = _count(uow, tables.feedback)
        report.answered = _count(uow, tables.feedback, tables.feedback.c.responded_at.is_not(None))
        experiment = analyse(uow, outcomes_from_settings(settings), as_of=now, horizon=settings.holdout_horizon,
                             by_rule=False)  # fmt: skip
    if experiment.rounds:
        report.complained = next(
            (e for e in experiment.rounds[0].estimates if e.outcome.id == "complained" and e.group == "all"), None
        )
    return report


def _password() -> str:
    # One password for every demo person, new each run and printed once: the demo is never open to all.
    return "demo-" + secrets.token_urlsafe(9)


def _add_staff(db: Database, report: DemoReport, now: datetime) -> dict[str, StaffMember]:
    staff = {}
    with db.unit_of_work(writes=True) as uow:
        for staff_id, name, role, team in DEMO_STAFF:
            member = add_staff(uow, staff_id, name=name, role=role, team=team, email=f"{staff_id}@demo.example",
                               now=now)  # fmt: skip
            set_password(uow, staff_id, report.password, now=now)
            staff[staff_id] = member
            report.logins.append((staff_id, role.value, team or ""))
        uow.commit()
    return staff


def _days(streams: list[WorldStream], now: datetime, start: datetime) -> Iterator[tuple[datetime, list[Any]]]:
    """The businesses' events, a day at a time (by event time), each day with its end; none after `now`. The worlds
    run only as far as the day being worked, so that what amends did the day before reaches them in time."""
    events = heapq.merge(*streams, key=lambda e: datetime.fromisoformat(e["time"]))
    day_end = start + timedelta(days=1)
    today: list[Any] = []
    for envelope in events:
        at = datetime.fromisoformat(envelope["time"])
        if at >= now:
            break
        while at >= day_end:
            yield min(day_end, now), today
            today, day_end = [], day_end + timedelta(days=1)
        today.append(envelope)
    yield now, today


def _actor(member: StaffMember) -> Actor:
    return Actor(None, member, member.scopes, None)


def _staff_work(
    uow: UnitOfWork,
    recovery: Recovery,
    outreach: Outreach,
    desk: FeedbackDesk,
    staff: dict[str, StaffMember],
    rng: random.Random,
    now: datetime,
) -> None:
    """A day's work: owners take on the cases opened before yesterday, apologise and grant (or ask a manager), and
    resolve some; the manager decides requests; everyone answers some of the waiting feedback."""
    c = tables.cases
    open_cases = uow.execute(
        sa.select(c.c.id, c.c.owner_id, c.c.acknowledged_at, c.c.opened_at)
        .where(c.c.status == Status.OPEN.value, c.c.opened_at < now - _UNTOUCHED)
        .order_by(c.c.id)
    ).all()
    for row in open_cases:
        owner = staff.get(row.owner_id or "")
        if owner is None:
            continue
        actor = _actor(owner)
        try:
            if row.acknowledged_at is None:
                if rng.random() >= _TAKE_ON:
                    continue
                # Sometime in the working day after it opened, not all at the day's end.
                at = max(row.opened_at + timedelta(minutes=20), now - timedelta(hours=rng.uniform(0.5, 11)))
                work.acknowledge(uow, row.id, actor=actor, now=at)
                outreach.apologise(uow, row.id, actor=actor, now=at)
                _remedy(uow, recovery, outreach, actor, row.id, at, generous=rng.random() < _GENEROUS)
            elif _remedy_state(uow, row.id) == "none":  # a manager said no to more: the proposal, then
                _remedy(uow, recovery, outreach, actor, row.id, now, generous=False)
            elif _remedy_state(uow, row.id) == "granted" and rng.random() < _RESOLVE:
                playbook = recovery.playbooks.get(work.load_case(uow, row.id).playbook)
                outreach.resolve(uow, row.id, resolution="Apologised and made good.", actor=actor, now=now,
                                 playbook=playbook)  # fmt: skip
        except AmendsError:
            continue  # what a person could not do that day (a customer with no address): the case waits for them
    manager = _actor(staff["max"])
    for approval in remedies.list_approvals(uow, status="pending", actor=manager, limit=100):
        if approval.requested_at > now - timedelta(days=2) or rng.random() >= _APPROVE:
            continue
        try:
            if rng.random() < 1 / 6:
                remedies.deny(
                    uow, approval.id, reason="Within policy a smaller remedy will do.", actor=manager, now=now
                )
            else:
                entry = remedies.approve(uow, approval.id, reason="A long-standing customer; agreed.",
                                         policy=recovery.policy, actor=manager, now=now)  # fmt: skip
                outreach.confirm_remedy(uow, entry, now=now)
        except AmendsError:
            continue
    f = tables.feedback
    waiting = uow.execute(
        sa.select(f.c.id, f.c.sentiment, f.c.route, f.c.customer_id)
        .where(f.c.responded_at.is_(None), f.c.due_at.is_not(None), f.c.received_at < now - timedelta(days=1))
        .order_by(f.c.id)
    ).all()
    answerers = [staff["ana"], staff["ben"], staff["cara"]]
    for row in waiting:
        if rng.random() >= _ANSWER_FEEDBACK:
            continue
        text = _ANSWERS.get(row.route, _ANSWERS["none"])
        try:
            desk.respond(uow, row.id, text=text, channel=None, actor=_actor(rng.choice(answerers)), now=now)
        except AmendsError:
            continue


def _remedy(
    uow: UnitOfWork,
    recovery: Recovery,
    outreach: Outreach,
    actor: Actor,
    case_id: int,
    now: datetime,
    *,
    generous: bool,
) -> None:
    """Grant what the policy proposes; for a severe failure, a `generous` agent offers twice that, which may be
    above their authority: then they ask a manager."""
    proposal = remedies.propose(uow, case_id, policy=recovery.policy, actor=actor, now=now)
    severe = work.load_case(uow, case_id).severity >= _SEVERE
    amount = proposal.amount * 2 if generous and severe else proposal.amount
    grant = remedies.Grant(proposal.kind, amount, note="a serious failure" if amount != proposal.amount else None)
    kind = recovery.policy.kind(proposal.kind)
    assert actor.staff is not None
    if remedies.within_authority(uow, actor.staff, kind, amount, policy=recovery.policy, now=now):
        entry, new = remedies.grant(uow, case_id, grant, policy=recovery.policy, actor=actor, now=now)
        if new:
            outreach.confirm_remedy(uow, entry, now=now)
    else:
        remedies.request_approval(uow, case_id, grant, policy=recovery.policy, actor=actor, now=now)


def _remedy_state(uow: UnitOfWork, case_id: int) -> str:
    """ "granted", "pending" (a manager has yet to decide), or "none" yet."""
    if uow.execute(sa.select(tables.ledger.c.id).where(tables.ledger.c.case_id == case_id)).first() is not None:
        return "granted"
    a = tables.approvals
    pending = uow.execute(sa.select(a.c.id).where(a.c.case_id == case_id, a.c.status == "pending")).first()
    return "pending" if pending is not None else "none"


def _customers_answer(
    uow: UnitOfWork, desk: FeedbackDesk, rng: random.Random, now: datetime, won_back: Callable[[str, datetime], bool]
) -> None:
    """Some customers answer yesterday's feedback links: in words that fit what happened to them, and kindly if a
    timely recovery has won them back (`won_back`, the world's own reaction)."""
    r = tables.feedback_requests
    open_requests = uow.execute(
        sa.select(r.c.id, r.c.customer_id, r.c.event_type)
        .where(r.c.answered_at.is_(None), r.c.created_at < now - timedelta(hours=12), r.c.expires_at > now)
        .order_by(r.c.id)
    ).all()
    for row in open_requests:
        if rng.random() >= _ANSWER_PAGE:
            continue
        i = tables.incidents
        recent = sa.select(i.c.rule_id).where(
            i.c.customer_id == row.customer_id, i.c.failure_at > now - timedelta(days=10)
        )
        rules = list(uow.execute(recent).scalars())
        liked: str | None
        disliked: str | None
        if rules and won_back(row.customer_id, now):
            liked, disliked, rating = rng.choice(_MADE_GOOD), None, rng.choice((4, 5, 5))
        else:
            liked, disliked, rating = _answer_for(row.event_type or "", rules, rng)
        request = get_request(uow, row.id)
        try:
            answer_request(uow, request, liked=liked, disliked=disliked, rating=rating, desk=desk, now=now)
        except AmendsError:
            continue


def _answer_for(event_type: str, rules: list[str], rng: random.Random) -> tuple[str | None, str | None, int]:
    business = event_type.split(".")[0]  # order, flight, service
    if rules:
        problem = next((text for key, text in _PROBLEMS.items() if any(key in rule for rule in rules)), None)
        disliked = problem or rng.choice(_GENERIC_COMPLAINTS)
        liked = rng.choice(_LIKED.get(business, _LIKED["order"])) if rng.random() < 0.3 else None
        return liked, disliked, rng.choice((1, 1, 2, 2, 3))
    if rng.random() < 0.18:
        return rng.choice(_LIKED.get(business, _LIKED["order"])), rng.choice(_SUGGESTIONS[business]), rng.choice((4, 5))
    if rng.random() < 0.12:
        return None, rng.choice(_MINOR[business]), rng.choice((2, 3))
    return rng.choice(_LIKED.get(business, _LIKED["order"])), None, rng.choice((4, 5, 5))


def _spam(db: Database, desk: FeedbackDesk, now: datetime) -> None:
    """The comment spam every website gets, under the blog and the reviews: it should land in the quarantine."""
    texts = (
        "Great post!!! Earn $5000 a week from home, click www.fast-cash.example now",
        "WINNER!! You have been selected for a FREE iPhone. Call 09061701461 to claim your prize",
        "Check out my channel for free followers and likes, subscribe!!! http://followers.example",
    )
    with db.unit_of_work(writes=True) as uow:
        for number, text in enumerate(texts):
            incoming = FeedbackIn(
                dedup_key=f"demo-blog|comment-{number}", channel=FeedbackChannel.WEB_COMMENT,
                received_at=now - timedelta(hours=3 * (number + 1)), author=f"visitor{number + 1}", text=text,
            )  # fmt: skip
            desk.receive(uow, incoming, actor=Actor(None, None), now=now)
        uow.commit()


def _count(uow: UnitOfWork, table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
    return int(uow.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one())


# What customers write on the feedback page: sample texts for the demo, chosen by what happened to them.
_MADE_GOOD = (
    "You told me about the problem before I had to ask, apologised, and made it good. Thank you.",
    "Things went wrong, but the way you put them right was excellent.",
    "I appreciated the apology and the gesture. That is how it should be done.",
)
_PROBLEMS = {
    "late-delivery": "My parcel came days after the date you promised, and nobody told me it would be late.",
    "not-delivered": "I am still waiting for my order. Tracking has said the same thing for a week.",
    "damaged": "The box was crushed and the item inside was broken. Very disappointing.",
    "return": "It was not what the pictures showed, so I had to send it back.",
    "long-delay": "Our flight was hours late and the updates at the gate were useless.",
    "cancelled": "The flight was cancelled the night before and rebooking took forever on the phone.",
    "missed-connection": "We missed our connection because of the delay and spent the night at the airport.",
    "bag": "My bag did not arrive with me and I had to buy clothes for the first two days.",
    "rework": "The same noise came back two days after the repair. I had to bring the car in again.",
    "long-wait": "I waited almost three hours in the lounge for a simple service.",
    "job-late": "The car was not ready at the time you promised and nobody called me.",
    "not-completed": "You kept my car for days and the job still is not finished.",
    "repeated-contacts": "I had to call three times before anyone could tell me anything.",
}
_GENERIC_COMPLAINTS = (
    "Nobody answered my emails for days.",
    "It took far too long and I had to chase you for every update.",
)
_LIKED = {
    "order": ("Easy to order and the parcel came quickly.", "Good prices and the item is exactly as described."),
    "flight": ("The crew were friendly and the seat was comfortable.", "Boarding was quick and we left on time."),
    "service": ("The advisor explained everything clearly and the car was spotless.", "Friendly staff and fair price."),
}
_SUGGESTIONS = {
    "order": (
        "It would be great if you offered evening delivery slots.",
        "Please add a way to change the address after ordering.",
    ),
    "flight": (
        "It would be nice if I could choose my seat online for free.",
        "Please add vegetarian meals on short flights.",
    ),
    "service": ("It would be great if you offered online booking.", "A courtesy car would make a big difference."),
}
_MINOR = {
    "order": ("The packaging was far too big for such a small item.",),
    "flight": ("The coffee on board was cold.",),
    "service": ("The waiting room was a bit cold.",),
}
_ANSWERS = {
    "case": "We are very sorry. Your case is with one of our team, who will be in touch with you today.",
    "suggestion": "Thank you for the idea. We have passed it to the team and will let you know what we decide.",
    "praise": "Thank you so much for your kind words. We have passed them on to the team.",
    "none": "Thank you for taking the time to tell us. We read every answer.",
}
