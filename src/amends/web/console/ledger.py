"""The remedy ledger: every grant and reversal, filtered, exported as CSV (text cells safe for spreadsheets),
and a manager's reversal of an entry (a new, negative entry: nothing is ever edited). Managers and admins only:
the `ledger:read` right, as through the API."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from amends.access import Scope
from amends.errors import AmendsError, Forbidden, InvalidInput
from amends.recover import remedies
from amends.recover.ledger import LedgerFilter, export_csv, list_ledger
from amends.store import Database
from amends.web.console._base import ConsoleUser, Signed, form_of, reading, redirect, render, writing
from amends.web.errors import status_of

__all__ = ["router"]

router = APIRouter(prefix="/console/ledger", include_in_schema=False)
_PAGE = 50


def _need(user: ConsoleUser) -> None:
    if Scope.LEDGER_READ not in user.actor.scopes:
        raise Forbidden(f"the ledger is for managers and admins; {user.member.id} is {user.member.role.value}")


@dataclass(frozen=True, slots=True)
class _Shown:
    """The ledger's filters as the URL gives them (the page and its CSV export take the same)."""

    kind: str | None
    granted_by: str | None
    since: date | None
    until: date | None

    def ledger_filter(self) -> LedgerFilter:
        start = None if self.since is None else datetime.combine(self.since, time(), UTC)
        end = None if self.until is None else datetime.combine(self.until, time(), UTC) + timedelta(days=1)
        if start is not None and end is not None and start >= end:
            raise InvalidInput("since", "must be on or before until")
        return LedgerFilter(self.kind or None, self.granted_by or None, None, None, start, end)

    def given(self) -> dict[str, object]:
        values = {"kind": self.kind, "granted_by": self.granted_by, "since": self.since, "until": self.until}
        return {key: value for key, value in values.items() if value}


def _shown(
    kind: Annotated[str | None, Query(max_length=50)] = None,
    granted_by: Annotated[str | None, Query(max_length=100)] = None,
    since: Annotated[date | None, Query()] = None,
    until: Annotated[date | None, Query()] = None,
) -> _Shown:
    return _Shown(kind, granted_by, since, until)


Shown = Annotated[_Shown, Depends(_shown)]


@router.get("", response_class=HTMLResponse)
async def ledger_page(
    request: Request,
    user: Signed,
    shown: Shown,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    done: str | None = None,
) -> HTMLResponse:
    notice = "The entry is reversed by a new one." if done == "reversed" else None
    return await _page(request, user, shown, cursor, notice=notice)


async def _page(
    request: Request,
    user: ConsoleUser,
    shown: _Shown,
    cursor: str | None = None,
    *,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    _need(user)
    flt = shown.ledger_filter()
    entries, following = await reading(request, lambda uow: list_ledger(uow, flt, limit=_PAGE, cursor=cursor))
    query = shown.given()
    policy = request.app.state.recovery.policy
    return render(
        request, "ledger.html", user, status=status, entries=entries, following=following,
        query=urlencode(query), filters=query, kinds=list(policy.kinds), notice=notice, error=error,
    )  # fmt: skip


@router.get("/export.csv")
async def ledger_csv(request: Request, user: Signed, shown: Shown) -> StreamingResponse:
    _need(user)
    flt = shown.ledger_filter()
    db: Database = request.app.state.db

    def stream() -> Iterator[str]:
        with db.unit_of_work() as uow:
            yield from export_csv(uow, flt)

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        stream(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="amends-ledger-{stamp}.csv"'},
    )


@router.post("/{entry_id}/reverse")
async def reverse(request: Request, user: Signed, entry_id: int) -> Response:
    fields = await form_of(request, user)
    try:
        _need(user)
        await writing(
            request,
            lambda uow: remedies.reverse(
                uow, entry_id, reason=fields.get("reason", "").strip()[:2000], actor=user.actor, now=datetime.now(UTC)
            ),
        )
    except AmendsError as exc:
        return await _page(request, user, _Shown(None, None, None, None), error=str(exc), status=status_of(exc))
    return redirect("/console/ledger?done=reversed")
