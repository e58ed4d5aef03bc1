"""Setting up the second step at login on one's account page: a secret and its QR code for an authenticator app,
turned on when a code from it is typed back, and ten recovery codes shown once. A person whose role needs a
second step (`console_second_factor_roles`) and has none is sent here right after their password, and reaches
nothing else until it is on. Turning it off is an administrator's (`amends staff reset-second-factor`)."""

from __future__ import annotations

from datetime import UTC, datetime

import segno
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from amends.access.sessions import end_session, start_session
from amends.access.totp import provisioning_uri
from amends.errors import AmendsError
from amends.outreach.staff_notices import notify_account_change
from amends.recover import second_factor
from amends.store import UnitOfWork
from amends.web.console._base import (
    ENROL_PAGE,
    ConsoleUser,
    Enrolling,
    form_of,
    lookup_token,
    reading,
    redirect,
    render,
    set_session_cookie,
    settings_of,
    writing,
)  # fmt: skip
from amends.web.errors import status_of

__all__ = ["router"]

router = APIRouter(prefix=ENROL_PAGE, include_in_schema=False)


async def _page(
    request: Request, user: ConsoleUser, *, codes: list[str] | None = None, error: AmendsError | None = None,
    code: int = 200,
) -> HTMLResponse:  # fmt: skip
    settings = settings_of(request)
    state = await reading(request, lambda uow: second_factor.second_factor_of(uow, user.member.id))
    qr = secret = None
    if state.pending_secret is not None:
        secret = state.pending_secret
        uri = provisioning_uri(secret, account=user.member.id, issuer=f"amends {settings.company_name}"[:100])
        qr = segno.make(uri, error="m").svg_data_uri(scale=5, dark="#1b1f24", light="#ffffff")
    halfway = user.session.stage is not None
    return render(
        request, "second_factor.html", None if halfway else user, status=code, state=state, secret=secret, qr=qr,
        codes=codes, halfway=halfway, form_csrf=user.csrf, member=user.member,
        required=user.member.role.value in settings.console_second_factor_roles,
        error=str(error) if error is not None else None,
    )  # fmt: skip


@router.get("", response_class=HTMLResponse)
async def second_factor_page(request: Request, user: Enrolling) -> HTMLResponse:
    return await _page(request, user)


@router.post("/start")
async def start(request: Request, user: Enrolling) -> Response:
    """Make a new secret to set up (shown on the page until it is confirmed)."""
    await form_of(request, user)
    try:
        await writing(request, lambda uow: second_factor.start_enrolment(uow, user.actor, now=datetime.now(UTC)))
    except AmendsError as exc:
        return await _page(request, user, error=exc, code=status_of(exc))
    return redirect(ENROL_PAGE)


@router.post("/confirm")
async def confirm(request: Request, user: Enrolling) -> Response:
    """Turn the second step on with a code from the app; the recovery codes are shown in the answer, once. A
    halfway session (sent here by its role) becomes a full one, under a new token."""
    fields = await form_of(request, user)
    settings = settings_of(request)

    def run(uow: UnitOfWork) -> tuple[list[str], str | None]:
        now = datetime.now(UTC)
        codes = second_factor.confirm_enrolment(uow, user.actor, fields.get("code", "")[:100], now=now)
        notify_account_change(
            uow, user.member, change="A second step (an authenticator app) was set up for your console sign-in.",
            company=settings.company_name, origin=user.actor.origin, now=now,
        )  # fmt: skip
        if user.session.stage is None:
            return codes, None
        end_session(uow, user.session.id)
        _session, token = start_session(
            uow, user.member.id, now=now, lifetime=settings.console_session_lifetime, origin=user.actor.origin,
            user_agent=request.headers.get("user-agent"),
        )  # fmt: skip
        return codes, token

    try:
        codes, token = await writing(request, run)
    except AmendsError as exc:
        return await _page(request, user, error=exc, code=status_of(exc))
    if token is None:
        return await _page(request, user, codes=codes)
    # The session was halfway: the page of codes is the new session's first, with its cookie.
    full = await lookup_token(request, token)
    response = await _page(request, full or user, codes=codes)
    return set_session_cookie(response, token, settings)
