"""A customer's story: events, incidents, cases, messages, remedies, complaints and feedback in one time line.

Managers and admins may open any customer and see all of it (the `customers:read` right). Agents and leads see a
customer only through the cases they may see, as through the API: the story of those cases (their incidents,
messages, remedies, complaints and feedback), not the customer's events, contact details or other teams' cases.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse

from amends.access import Scope
from amends.detect.risk.registry import latest_score
from amends.errors import NotFound
from amends.insights.story import StoryPage, customer_story
from amends.outreach.contact import opt_out_of
from amends.outreach.profiles import customer_profile
from amends.outreach.service import Outreach
from amends.recover.queries import CaseFilter, list_cases
from amends.store import UnitOfWork
from amends.web.console._base import ConsoleUser, Signed, reading, render, rule_titles

__all__ = ["router"]

router = APIRouter(prefix="/console/customers", include_in_schema=False)


def _visible_cases(uow: UnitOfWork, user: ConsoleUser, customer_id: str) -> frozenset[int] | None:
    """The ids of the customer's cases this person may see; None when they may see the whole customer."""
    if Scope.CUSTOMERS_READ in user.actor.scopes:
        return None
    flt = CaseFilter(customer_id=customer_id)
    cases = list_cases(uow, flt, actor=user.actor, now=datetime.now(UTC), limit=500).cases
    if not cases:
        raise NotFound(f"no customer {customer_id!r} you may see")
    return frozenset(case.id for case in cases)


@router.get("/{customer_id:path}", response_class=HTMLResponse)
async def customer_page(
    request: Request,
    user: Signed,
    customer_id: Annotated[str, Path(min_length=1, max_length=200)],
    before: Annotated[datetime | None, Query()] = None,
) -> HTMLResponse:
    outreach: Outreach = request.app.state.outreach
    titles = rule_titles(request)
    if before is not None and before.tzinfo is None:
        before = before.replace(tzinfo=UTC)

    def run(uow: UnitOfWork) -> dict[str, Any]:
        visible = _visible_cases(uow, user, customer_id)
        story = customer_story(uow, customer_id, before=before, limit=100, rule_titles=titles)
        if not story.moments and before is None:
            raise NotFound(f"nothing is known of customer {customer_id!r}")
        if visible is not None:  # only what belongs to the cases this person may see
            kept = tuple(m for m in story.moments if m.case_id in visible)
            story = StoryPage(kept, story.older)
        whole = visible is None
        return {
            "story": story,
            "profile": customer_profile(uow, customer_id, event_types=outreach.profile_events) if whole else None,
            "opted_out": opt_out_of(uow, customer_id),
            "risk": latest_score(uow, customer_id),
            "whole": whole,
        }

    view = await reading(request, run)
    return render(request, "customer.html", user, customer_id=customer_id, **view)
