"""The recovery queue: the cases the person may see, the step due soonest first, with filters and a "mine"
view. Agents and leads see their own and their team's cases, as through the API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from amends.errors import InvalidInput
from amends.recover.cases import Origin, Status
from amends.recover.queries import CaseFilter, QueuePage, work_queue
from amends.recover.staff import StaffMember, list_staff
from amends.store import UnitOfWork
from amends.web.console._base import Signed, reading, render, rule_titles

__all__ = ["router"]

router = APIRouter(prefix="/console", include_in_schema=False)
_PAGE = 50


@dataclass(frozen=True, slots=True)
class _Filters:
    mine: bool
    status: str
    origin: str
    rule: str
    owner: str
    team: str
    overdue: bool

    def query(self, offset: int) -> str:
        values = {
            "view": "mine" if self.mine else "all", "status": self.status, "origin": self.origin, "rule": self.rule,
            "owner": self.owner, "team": self.team, "overdue": "1" if self.overdue else "", "offset": str(offset),
        }  # fmt: skip
        return urlencode({key: value for key, value in values.items() if value})


def _origin(value: str | None) -> Origin | None:
    if not value:
        return None
    try:
        return Origin(value)
    except ValueError:
        raise InvalidInput("origin", f"proactive or reactive, not {value[:20]!r}") from None


@router.get("", response_class=HTMLResponse)
async def queue(
    request: Request,
    user: Signed,
    view: Annotated[str, Query(pattern="^(all|mine)$")] = "all",
    status: Annotated[Status, Query()] = Status.OPEN,
    origin: Annotated[str | None, Query(max_length=20)] = None,
    rule: Annotated[str | None, Query(max_length=100)] = None,
    owner: Annotated[str | None, Query(max_length=100)] = None,
    team: Annotated[str | None, Query(max_length=100)] = None,
    overdue: Annotated[bool, Query()] = False,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> HTMLResponse:
    # A form sends every field, the ones left at "any" empty: empty is no filter.
    chosen = _origin(origin)
    filters = _Filters(
        view == "mine", status.value, chosen.value if chosen else "", rule or "", owner or "", team or "", overdue
    )
    flt = CaseFilter(status, chosen, owner or None, team or None, None, rule or None, overdue, view == "mine")

    def run(uow: UnitOfWork) -> tuple[QueuePage, list[StaffMember]]:
        page = work_queue(uow, flt, actor=user.actor, now=datetime.now(UTC), limit=_PAGE, offset=offset)
        return page, list_staff(uow, active=True)

    page, staff = await reading(request, run)
    rule_ids = sorted(rule_titles(request))
    return render(
        request,
        "queue.html",
        user,
        page=page,
        filters=filters,
        staff=staff,
        teams=sorted({m.team for m in staff if m.team}),
        rule_ids=rule_ids,
        page_link=lambda at: f"/console?{filters.query(at)}",
    )
