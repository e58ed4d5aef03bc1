"""Who owns a new case: the staff member who served the customer, when the incident's event names one;
else the next in turn (round-robin) among the active agents and leads of the case's team.

The team comes from the rule that fired (`teams`: rule id patterns such as `air-*` to team names). Turns are
kept in the database (`staff.last_assigned_at`), so they stay fair across processes and restarts.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from amends.detect.conditions import FieldPath, parse_path
from amends.errors import InvalidInput, NotFound
from amends.recover.roles import Role
from amends.recover.staff import StaffMember, get_staff
from amends.store import UnitOfWork, tables

__all__ = ["Assigner", "Assignment"]

_staff = tables.staff
# Where an incident's facts keep the data of the event(s) it came from (detect/streaming.py).
_DATA_FACTS = ("data", "then_data", "first_data")


@dataclass(frozen=True, slots=True)
class Assignment:
    owner: StaffMember | None
    team: str | None  # the team the rule maps to
    reason: str

    @property
    def case_team(self) -> str | None:
        """The case's team: the rule's, else its owner's (so the owner's lead and team see it)."""
        return self.team if self.team is not None else (None if self.owner is None else self.owner.team)


@dataclass(frozen=True)
class Assigner:
    served_by: tuple[FieldPath, ...] = ()
    teams: tuple[tuple[str, str], ...] = ()  # (rule id pattern, team), first match wins

    @classmethod
    def from_texts(cls, served_by: Sequence[str], teams: Mapping[str, str]) -> Assigner:
        """From settings: paths such as `data.advisor_id`, and `{"air-*": "airport"}`."""
        paths = []
        for text in served_by:
            if not text.startswith("data."):
                raise InvalidInput("assign_served_by", f"{text!r} must be a path into the event's data, data.…")
            try:
                paths.append(parse_path(text))
            except ValueError as exc:
                raise InvalidInput("assign_served_by", str(exc)) from None
        return cls(tuple(paths), tuple(teams.items()))

    def team_for(self, rule_id: str | None) -> str | None:
        if rule_id is None:
            return None
        for pattern, team in self.teams:
            if fnmatch.fnmatchcase(rule_id, pattern):
                return team
        return None

    def choose(
        self, uow: UnitOfWork, *, rule_id: str | None, facts: Mapping[str, Any] | None, now: datetime
    ) -> Assignment:
        team = self.team_for(rule_id)
        served = self._served_by(uow, facts or {})
        if served is not None:
            return Assignment(served, team, "served the customer when it happened")
        member = _next_in_turn(uow, team, now)
        if member is None and team is not None:
            member = _next_in_turn(uow, None, now)
            reason = f"next in turn (no one active in team {team})"
        else:
            reason = "next in turn" + (f" in team {team}" if team else "")
        return Assignment(member, team, reason if member is not None else "no active agent")

    def _served_by(self, uow: UnitOfWork, facts: Mapping[str, Any]) -> StaffMember | None:
        for path in self.served_by:
            for name in _DATA_FACTS:
                data = facts.get(name)
                if not isinstance(data, Mapping):
                    continue
                value = _read(data, path.steps)
                if isinstance(value, str | int) and not isinstance(value, bool):
                    try:
                        member = get_staff(uow, str(value))
                    except NotFound:
                        continue
                    if member.active:
                        return member
        return None


def _read(data: Mapping[str, Any], steps: Sequence[str | int]) -> Any:
    value: Any = data
    for step in steps:
        if isinstance(step, str) and isinstance(value, Mapping):
            value = value.get(step)
        elif isinstance(step, int) and isinstance(value, list) and -len(value) <= step < len(value):
            value = value[step]
        else:
            return None
    return value


def _next_in_turn(uow: UnitOfWork, team: str | None, now: datetime) -> StaffMember | None:
    """The active agent or lead of the team (of any team when None) whose turn it is: the longest since
    their last assignment. They go to the back of the line. Callers hold the recovery lock."""
    query = (
        sa.select(_staff.c.id)
        .where(_staff.c.active.is_(True), _staff.c.role.in_([Role.AGENT.value, Role.LEAD.value]))
        .order_by(_staff.c.last_assigned_at.is_not(None), _staff.c.last_assigned_at, _staff.c.id)
        .limit(1)
    )
    if team is not None:
        query = query.where(_staff.c.team == team)
    staff_id = uow.execute(query).scalar()
    if staff_id is None:
        return None
    uow.execute(sa.update(_staff).where(_staff.c.id == staff_id).values(last_assigned_at=now))
    return get_staff(uow, staff_id)
