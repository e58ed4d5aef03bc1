"""Case intake: every new incident opens a proactive case for its customer, or joins their open case; every
complaint opens a reactive case or joins the open one, linked to the incident it is about when the case
already covers it.

Intake reads incidents in id order from a cursor, under the recovery lock, in the caller's transaction, so
an incident is taken exactly once whichever process runs it. Incidents found by a backfill of history are
passed over unless `open_backfilled` is set: a year-old late delivery needs no apology today.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from amends.detect.runner import lock_incident_writes
from amends.errors import Conflict, InvalidInput
from amends.recover.actors import SYSTEM, Actor
from amends.recover.assign import Assigner
from amends.recover.audit import audit
from amends.recover.cases import Case, Origin, add_contact, load_case, open_case, open_case_of, set_owner
from amends.recover.holdout import HoldoutPlan, draw_for, record_draw
from amends.recover.lock import recovery_lock
from amends.recover.playbooks import PlaybookSet
from amends.store import Database, UnitOfWork, tables

__all__ = ["Complaint", "Intake", "Taken", "complaint_from_row", "incident_horizon"]

_incidents = tables.incidents
_links = tables.case_incidents
_cursors = tables.recover_cursors
_complaints = tables.complaints
_cases = tables.cases
_steps = tables.case_steps
_CURSOR = "main"
_COMPLAINT_CHANNELS = ("email", "phone", "web", "chat", "letter", "in_person", "social", "review", "other")


@dataclass(frozen=True, slots=True)
class Taken:
    opened: int = 0
    joined: int = 0
    passed_over: int = 0

    @property
    def incidents(self) -> int:
        return self.opened + self.joined + self.passed_over


@dataclass(frozen=True, slots=True)
class Complaint:
    id: int
    source: str
    external_id: str
    customer_id: str
    channel: str
    text: str
    reference: str | None
    received_at: datetime
    case_id: int
    incident_id: int | None


@dataclass(frozen=True)
class Intake:
    playbooks: PlaybookSet
    assigner: Assigner
    complaint_playbook: str = "complaint"
    open_backfilled: bool = False
    holdout: HoldoutPlan = field(default_factory=HoldoutPlan)

    def take_incidents(self, uow: UnitOfWork, *, now: datetime, up_to: int, limit: int = 1_000) -> Taken:
        """Open or join cases for up to `limit` incidents past the cursor, up to the id `up_to` (from
        `incident_horizon`: every incident up to it is committed); the caller commits."""
        recovery_lock(uow)
        cursor = uow.execute(sa.select(_cursors.c.incident_id).where(_cursors.c.name == _CURSOR)).scalar()
        rows = uow.execute(
            sa.select(_incidents)
            .where(_incidents.c.id > (cursor or 0), _incidents.c.id <= up_to)
            .order_by(_incidents.c.id)
            .limit(limit)
        ).all()
        if not rows:
            return Taken()
        opened = joined = passed = 0
        for row in rows:
            if row.detected_by == "backfill" and not self.open_backfilled:
                passed += 1
                continue
            case = open_case_of(uow, row.customer_id)
            if case is None:
                self._open(uow, row, now)
                opened += 1
            else:
                _join(uow, case, row.id, row.severity, now)
                if case.withheld and row.severity > self.holdout.ceiling:
                    self._release(uow, case, now, lifted=True)
                joined += 1
        last = rows[-1].id
        if cursor is None:
            uow.execute(sa.insert(_cursors).values(name=_CURSOR, incident_id=last, updated_at=now))
        else:
            uow.execute(sa.update(_cursors).where(_cursors.c.name == _CURSOR).values(incident_id=last, updated_at=now))
        return Taken(opened, joined, passed)

    def _open(self, uow: UnitOfWork, row: sa.Row[Any], now: datetime) -> Case:
        playbook = self.playbooks.get(row.playbook)
        assignment = self.assigner.choose(uow, rule_id=row.rule_id, facts=row.facts, now=now)
        draw = draw_for(self.holdout, row) if self.holdout.running else None
        held_out = draw is not None and draw.held_out
        case = open_case(
            uow,
            customer_id=row.customer_id,
            origin=Origin.PROACTIVE,
            playbook=playbook,
            severity=row.severity,
            team=assignment.case_team,
            now=now,
            held_out=held_out,
        )
        _join(uow, case, row.id, row.severity, now)
        if draw is not None:
            record_draw(uow, self.holdout, row, case.id, draw, now=now)
        if held_out:
            # Recorded, but nobody is asked to work it and nothing falls due until the customer raises it.
            audit(uow, SYSTEM, "case.held_out", f"case:{case.id}", at=now, period=self.holdout.period)
            return case
        if assignment.owner is not None:
            case = set_owner(uow, case, assignment.owner, reason=assignment.reason, by=SYSTEM, now=now)
        return case

    def release_raised(self, uow: UnitOfWork, *, now: datetime, limit: int = 1_000) -> int:
        """Work the held-out cases the customer has raised by a way that is not intake's (a reply to us, a contact
        staff recorded): they get an owner and due steps, as a complaint gives them at once. How many."""
        waiting = sa.exists().where(_steps.c.case_id == _cases.c.id, _steps.c.due_at.is_not(None))
        raised = sa.and_(
            _cases.c.status == "open",
            _cases.c.held_out.is_(True),
            _cases.c.customer_spoke_at.is_not(None),
            _cases.c.owner_id.is_(None),
            sa.not_(waiting),
        )
        if uow.execute(sa.select(_cases.c.id).where(raised).limit(1)).first() is None:
            return 0
        recovery_lock(uow)
        rows = uow.execute(sa.select(_cases).where(raised).order_by(_cases.c.id).limit(limit)).all()
        for row in rows:
            self._release(uow, load_case(uow, row.id), now, lifted=False)
        return len(rows)

    def _release(self, uow: UnitOfWork, case: Case, now: datetime, *, lifted: bool) -> None:
        """A held-out case the customer raised, or that a severe incident lifted, is worked from now: its steps
        fall due as if it opened now, and it gets an owner as a new case would. Its draw stays as it was."""
        if lifted:
            uow.execute(sa.update(_cases).where(_cases.c.id == case.id).values(holdout_lifted_at=now))
        playbook = self.playbooks.get(case.playbook)
        for step in playbook.steps:
            uow.execute(
                sa.update(_steps)
                .where(_steps.c.case_id == case.id, _steps.c.kind == step.kind.value, _steps.c.completed_at.is_(None))
                .values(due_at=step.due_at(now, None))
            )
        reason = "lifted: a more severe incident joined" if lifted else "the customer raised it"
        audit(uow, SYSTEM, "case.holdout_released", f"case:{case.id}", at=now, reason=reason)
        if case.owner_id is None:
            first = uow.execute(
                sa.select(_incidents.c.rule_id, _incidents.c.facts)
                .join(_links, _links.c.incident_id == _incidents.c.id)
                .where(_links.c.case_id == case.id)
                .order_by(_incidents.c.id)
                .limit(1)
            ).first()
            rule_id, facts = (None, None) if first is None else (first.rule_id, first.facts)
            assignment = self.assigner.choose(uow, rule_id=rule_id, facts=facts, now=now)
            if assignment.owner is not None:
                set_owner(uow, case, assignment.owner, reason=assignment.reason, by=SYSTEM, now=now)

    def file_complaint(
        self,
        uow: UnitOfWork,
        *,
        source: str,
        external_id: str,
        customer_id: str,
        channel: str,
        text: str,
        reference: str | None,
        received_at: datetime | None,
        actor: Actor,
        now: datetime,
    ) -> tuple[Complaint, bool]:
        """Record what the customer said and put it on their case; (the complaint, whether it is new).

        The same (source, external_id) again returns the stored complaint; with different content it is a
        Conflict (`received_at` is compared only when it is given: a retry that leaves it out, to mean "now",
        is the same complaint). A complaint about something the open case covers (its `reference` is an
        incident's key, or a value in the data of an incident's event) is linked to that incident.
        """
        fields = _complaint_fields(source, external_id, customer_id, channel, text, reference, received_at or now, now)
        recovery_lock(uow)
        existing = uow.execute(
            sa.select(_complaints).where(
                _complaints.c.source == fields["source"], _complaints.c.external_id == fields["external_id"]
            )
        ).first()
        if existing is not None:
            stored = complaint_from_row(existing)
            compared = {name: value for name, value in fields.items() if name != "received_at" or received_at}
            same = all(getattr(stored, name) == value for name, value in compared.items())
            if not same:
                raise Conflict(f"complaint {external_id!r} from {source!r} was received before with other content")
            return stored, False
        case = open_case_of(uow, customer_id)
        incident_id = None
        if case is None:
            playbook = self.playbooks.get(self.complaint_playbook)
            assignment = self.assigner.choose(uow, rule_id=None, facts=None, now=now)
            case = open_case(
                uow,
                customer_id=customer_id,
                origin=Origin.REACTIVE,
                playbook=playbook,
                severity=2,
                team=assignment.case_team,
                now=now,
                customer_spoke_at=fields["received_at"],
                actor=actor,
            )
            if assignment.owner is not None:
                case = set_owner(uow, case, assignment.owner, reason=assignment.reason, by=SYSTEM, now=now)
        else:
            if reference is not None:
                incident_id = _incident_about(uow, case.id, reference)
            spoke = fields["received_at"]
            if case.withheld:
                self._release(uow, case, now, lifted=False)
            if case.customer_spoke_at is None or spoke < case.customer_spoke_at:
                uow.execute(sa.update(_cases).where(_cases.c.id == case.id).values(customer_spoke_at=spoke))
        add_contact(uow, case, "inbound", fields["channel"], None, "complaint", fields["received_at"])
        complaint_id = uow.execute(
            sa.insert(_complaints)
            .values(**fields, case_id=case.id, incident_id=incident_id, created_at=now)
            .returning(_complaints.c.id)
        ).scalar_one()
        audit(
            uow,
            actor,
            "complaint.received",
            f"case:{case.id}",
            at=now,
            complaint_id=complaint_id,
            incident_id=incident_id,
            spoke_first=load_case(uow, case.id).customer_spoke_first,
        )
        row = uow.execute(sa.select(_complaints).where(_complaints.c.id == complaint_id)).one()
        return complaint_from_row(row), True


def incident_horizon(db: Database) -> int:
    """The highest incident id below which none is still to be committed. Ids are handed out before a
    transaction commits, so a reader following ids could pass over one committed late; this waits for the
    writers of incidents in flight (their lock) and reads the highest id once they are done. Writers that
    begin afterwards get higher ids."""
    with db.unit_of_work() as uow:
        lock_incident_writes(uow)
        return int(uow.execute(sa.select(sa.func.coalesce(sa.func.max(_incidents.c.id), 0))).scalar_one())


def _join(uow: UnitOfWork, case: Case, incident_id: int, severity: int, now: datetime) -> None:
    uow.execute(sa.insert(_links).values(incident_id=incident_id, case_id=case.id, joined_at=now))
    raised = severity > case.severity
    if raised:
        uow.execute(sa.update(_cases).where(_cases.c.id == case.id).values(severity=severity))
    audit(
        uow,
        SYSTEM,
        "case.incident_joined",
        f"case:{case.id}",
        at=now,
        incident_id=incident_id,
        severity=max(severity, case.severity) if raised else None,
    )


def _incident_about(uow: UnitOfWork, case_id: int, reference: str) -> int | None:
    """The case's incident the reference names: its key (or the key before `@` of a count or sequence), or
    a value in the data its facts carry (an order id, a booking reference)."""
    rows = uow.execute(
        sa.select(_incidents.c.id, _incidents.c.key, _incidents.c.facts)
        .join(_links, _links.c.incident_id == _incidents.c.id)
        .where(_links.c.case_id == case_id)
        .order_by(_incidents.c.id)
    ).all()
    for row in rows:
        if row.key == reference or row.key.split("@", 1)[0] == reference:
            return int(row.id)
    for row in rows:
        if _mentions(row.facts, reference):
            return int(row.id)
    return None


def _mentions(facts: Mapping[str, Any], reference: str) -> bool:
    for name in ("data", "first_data", "then_data"):
        data = facts.get(name)
        if isinstance(data, Mapping) and any(
            isinstance(value, str | int) and not isinstance(value, bool) and str(value) == reference
            for value in data.values()
        ):
            return True
    return False


def _complaint_fields(
    source: str,
    external_id: str,
    customer_id: str,
    channel: str,
    text: str,
    reference: str | None,
    received_at: datetime,
    now: datetime,
) -> dict[str, Any]:
    for name, value, limit in (("source", source, 500), ("id", external_id, 500), ("customer", customer_id, 200)):
        if not value or not value.strip():
            raise InvalidInput(name, "must not be empty")
        if len(value) > limit:
            raise InvalidInput(name, f"at most {limit} characters")
    if channel not in _COMPLAINT_CHANNELS:
        raise InvalidInput("channel", f"one of {', '.join(_COMPLAINT_CHANNELS)}")
    text = text.strip()
    if not text:
        raise InvalidInput("text", "must not be empty")
    if len(text) > 20_000:
        raise InvalidInput("text", "at most 20000 characters")
    if reference is not None and not 1 <= len(reference) <= 500:
        raise InvalidInput("reference", "1-500 characters")
    if received_at.tzinfo is None:
        raise InvalidInput("received_at", "needs a time zone")
    if received_at > now:
        raise InvalidInput("received_at", "is in the future")
    return {
        "source": source,
        "external_id": external_id,
        "customer_id": customer_id,
        "channel": channel,
        "text": text,
        "reference": reference,
        "received_at": received_at,
    }


def complaint_from_row(row: sa.Row[Any]) -> Complaint:
    return Complaint(
        row.id,
        row.source,
        row.external_id,
        row.customer_id,
        row.channel,
        row.text,
        row.reference,
        row.received_at,
        row.case_id,
        row.incident_id,
    )
