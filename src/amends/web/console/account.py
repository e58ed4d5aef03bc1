"""The signed-in person's own account: their details, changing their password (with the current one; a strength
estimate as they type), and their console sessions, any other of which they can end. A wrong current password
counts against the login rate limit, as a failed login does. A changed password ends every other session of the
person (the one they changed it from stays) and emails them (outreach/staff_notices.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from amends.access.passwords import MAX_PASSWORD, MIN_PASSWORD, estimate_strength
from amends.errors import AmendsError, InvalidInput
from amends.outreach.staff_notices import notify_account_change
from amends.recover import account
from amends.recover.audit import audit
from amends.recover.second_factor import second_factor_of
from amends.recover.staff import renew_staff_key, revoke_staff_key, staff_key_of
from amends.store import UnitOfWork
from amends.web.console._base import (
    ConsoleUser,
    Signed,
    form_of,
    login_allowed,
    login_limits,
    reading,
    redirect,
    render,
    settings_of,
    writing,
)
from amends.web.errors import status_of

__all__ = ["router"]

router = APIRouter(prefix="/console/account", include_in_schema=False)
_DONE = {
    "password": "Your password is changed, and your other sessions have ended. If you have an email address with us, "
    "you are sent a note of it.",
    "ended": "That session has ended.",
    "gone": "That session had ended already.",
    "others": "Every other session of yours has ended.",
    "key_revoked": "Your API key is revoked: requests with it are refused from now on.",
}


def _address(user: ConsoleUser) -> str:
    return user.actor.origin or "unknown"


async def _page(
    request: Request, user: ConsoleUser, *, notice: str | None = None, error: AmendsError | None = None,
    code: int = 200, new_key: str | None = None,
) -> HTMLResponse:  # fmt: skip
    settings = settings_of(request)
    sessions, second, key = await reading(
        request,
        lambda uow: (
            account.own_sessions(uow, user.actor, now=datetime.now(UTC), idle=settings.console_session_idle),
            second_factor_of(uow, user.member.id),
            staff_key_of(uow, user.member.id),
        ),
    )
    response = render(
        request, "account.html", user, status=code, sessions=sessions, current=user.session.id,
        second_on=second.is_on, min_password=MIN_PASSWORD, max_password=MAX_PASSWORD, notice=notice,
        error=str(error) if error is not None else None, field=getattr(error, "field", None), key=key,
        key_expired=key is not None and key.is_expired(datetime.now(UTC)), new_key=new_key,
        key_lifetime=settings.staff_key_lifetime.days,
    )  # fmt: skip
    response.headers["Cache-Control"] = "no-store"  # a new key's text is on it, once
    return response


@router.get("", response_class=HTMLResponse)
async def account_page(request: Request, user: Signed, done: str | None = None) -> HTMLResponse:
    return await _page(request, user, notice=_DONE.get(done or ""))


@router.post("/password")
async def change_password(request: Request, user: Signed) -> Response:
    """Change one's own password: the current one, the new one and the same again."""
    fields = await form_of(request, user)
    address, login_name = _address(user), user.member.id
    if not await login_allowed(request, address, login_name):
        limited = InvalidInput("current", "too many wrong passwords: wait a minute, then try again")
        return await _page(request, user, error=limited, code=429)
    company = settings_of(request).company_name

    def run(uow: UnitOfWork) -> None:
        now = datetime.now(UTC)
        account.change_own_password(
            uow, user.actor, current=fields.get("current", ""), new=fields.get("new", ""),
            repeat=fields.get("repeat", ""), session_id=user.session.id, now=now,
        )  # fmt: skip
        notify_account_change(
            uow, user.member, change="Your console password was changed.", company=company,
            origin=user.actor.origin, now=now,
        )  # fmt: skip

    try:
        await writing(request, run)
    except account.WrongPassword as exc:

        def failed(uow: UnitOfWork) -> None:
            now = datetime.now(UTC)
            audit(uow, user.actor, "staff.password_change_failed", f"staff:{login_name}", at=now,
                  reason="wrong current password")  # fmt: skip
            login_limits(request).failed(uow, address, login_name, now=now)

        await writing(request, failed)
        return await _page(request, user, error=exc, code=status_of(exc))
    except AmendsError as exc:
        return await _page(request, user, error=exc, code=status_of(exc))
    return redirect("/console/account?done=password")


@router.post("/strength")
async def strength(request: Request, user: Signed) -> JSONResponse:
    """How hard the typed password is to guess, for the meter beside the field (console.js); nothing is kept."""
    fields = await form_of(request, user)
    password = fields.get("password", "")[: MAX_PASSWORD + 1]
    member = user.member
    estimate = estimate_strength(password, (member.id, member.name, member.email or ""))
    too_short = len(password) < MIN_PASSWORD
    return JSONResponse(
        {
            "score": estimate.score,
            "words": estimate.words,
            "enough": estimate.is_enough and not too_short and len(password) <= MAX_PASSWORD,
            "warning": f"At least {MIN_PASSWORD} characters." if too_short else estimate.warning,
            "suggestions": list(estimate.suggestions),
        },
        headers={"Cache-Control": "no-store"},
    )


@router.post("/sessions/end")
async def end_session(request: Request, user: Signed) -> Response:
    """End another session of one's own (`session`: its reference), or every other one (`session=others`)."""
    fields = await form_of(request, user)
    which = fields.get("session", "").strip()

    def run(uow: UnitOfWork) -> str:
        now = datetime.now(UTC)
        if which == "others":
            account.end_own_sessions(uow, user.actor, current=user.session.id, now=now)
            return "others"
        ended = account.end_own_session(uow, user.actor, which, current=user.session.id, now=now)
        return "ended" if ended is not None else "gone"

    try:
        done = await writing(request, run)
    except AmendsError as exc:
        return await _page(request, user, error=exc, code=status_of(exc))
    return redirect(f"/console/account?done={done}")


@router.post("/key")
async def make_key(request: Request, user: Signed) -> Response:
    """Make one's own API key, in place of the one in use (revoked): it acts as its maker, with their role's rights,
    until `staff_key_lifetime` from now. Its text is on the answer's page, this once. Made here, past the second step
    when the person has one, it is the only way a role that needs that step gets a key (web/api/staff.py)."""
    await form_of(request, user)
    lifetime = settings_of(request).staff_key_lifetime

    def run(uow: UnitOfWork) -> str:
        now = datetime.now(UTC)
        key, text = renew_staff_key(uow, user.member.id, now=now, lifetime=lifetime)
        audit(uow, user.actor, "staff.key_created", f"staff:{user.member.id}", at=now, key_id=key.id, via="console")
        return text

    text = await writing(request, run)
    return await _page(request, user, notice="Your new API key is below. Keep it now: it is not shown again.",
                       new_key=text)  # fmt: skip


@router.post("/key/revoke")
async def revoke_own_key(request: Request, user: Signed) -> Response:
    """Revoke one's own API key in use, if there is one."""
    await form_of(request, user)

    def run(uow: UnitOfWork) -> None:
        now = datetime.now(UTC)
        key = revoke_staff_key(uow, user.member.id, now=now)
        if key is None:
            return
        audit(uow, user.actor, "staff.key_revoked", f"staff:{user.member.id}", at=now, key_id=key.id, via="console")

    await writing(request, run)
    return redirect("/console/account?done=key_revoked")
