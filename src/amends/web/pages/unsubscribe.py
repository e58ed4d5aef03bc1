"""The unsubscribe page, `/u/{token}`: the link in every email (and its List-Unsubscribe header).

GET shows the page and changes nothing (mail scanners open links); POST stops our messages: the page's own
button, or a mail client's one-click request (RFC 8058, `List-Unsubscribe=One-Click`). The signed token is
the only credential, so there is no session for a forged request to ride on, and the page sends no referrer
that could leak it. Using it again is harmless.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from amends.outreach.contact import opt_out, opted_out_at
from amends.outreach.links import InvalidLink
from amends.outreach.service import Outreach
from amends.recover.actors import SYSTEM
from amends.store import UnitOfWork
from amends.web.deps import DB, OutreachState, in_transaction, reading
from amends.web.pages import PublicPage, public_headers, templates

__all__ = ["router"]

router = APIRouter(include_in_schema=False, route_class=PublicPage)

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:0;padding:2rem 1rem;background:#f6f6f4;color:#1d1d1b}"
    "main{max-width:32rem;margin:0 auto;background:#fff;padding:1.5rem 2rem;border-radius:.5rem}"
    "h1{font-size:1.4rem}button{font-size:1rem;padding:.6rem 1.2rem;border:0;border-radius:.3rem;"
    "background:#1d4e89;color:#fff;cursor:pointer}button:focus{outline:3px solid #f2a900;outline-offset:2px}"
)
_HEADERS = public_headers(_STYLE)


def _page(
    outreach: Outreach,
    title: str,
    paragraphs: list[str],
    *,
    status: int = 200,
    action: str | None = None,
    button: str | None = None,
) -> HTMLResponse:
    html = templates.get_template("page.html").render(
        language=outreach.default_language,
        title=title,
        company=outreach.company["name"],
        style=_STYLE,
        paragraphs=paragraphs,
        action=action,
        button=button,
    )
    return HTMLResponse(html, status_code=status, headers=_HEADERS)


def _invalid(outreach: Outreach) -> HTMLResponse:
    return _page(
        outreach,
        "This link does not work",
        [
            "The link may have been cut short or changed on its way. Please open it again from the message, "
            "or reply to the message and we will stop writing to you.",
        ],
        status=404,
    )


@router.get("/u/{token}", response_class=HTMLResponse)
async def unsubscribe_page(token: str, request: Request, db: DB, outreach: OutreachState) -> HTMLResponse:
    try:
        customer_id = outreach.links.customer_of(token)
    except InvalidLink:
        return _invalid(outreach)
    since = await reading(db, lambda uow: opted_out_at(uow, customer_id))
    company = outreach.company["name"]
    if since is not None:
        return _page(outreach, "You are unsubscribed", [f"{company} sends you no more messages through amends."])
    return _page(
        outreach,
        f"Stop messages from {company}?",
        [
            f"{company} writes to you when something went wrong with an order, a trip or a service, to put it "
            "right, and to ask how it went.",
            "If you would rather not hear from us this way, confirm below. You can still write to us at any time.",
        ],
        action=str(request.url.path),
        button="Stop these messages",
    )


@router.post("/u/{token}", response_class=HTMLResponse)
async def unsubscribe(token: str, db: DB, outreach: OutreachState) -> HTMLResponse:
    """The page's button, or a mail client's one-click request (RFC 8058): either way, stop our messages."""
    try:
        customer_id = outreach.links.customer_of(token)
    except InvalidLink:
        return _invalid(outreach)

    def run(uow: UnitOfWork) -> bool:
        return opt_out(uow, customer_id, source="link", actor=SYSTEM, now=datetime.now(UTC))

    await in_transaction(db, run)
    company = outreach.company["name"]
    return _page(
        outreach,
        "You are unsubscribed",
        [f"{company} will send you no more of these messages. Thank you for telling us."],
    )
