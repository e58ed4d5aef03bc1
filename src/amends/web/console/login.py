"""Logging in and out. A login makes a new session (the old cookie, if any, is never reused: no session
fixation), is rate-limited per client address and per login name, and is written to the audit log either way;
a wrong name and a wrong password get the same answer in the same time.

For a person with a second step, or whose role needs one (`console_second_factor_roles`), the password opens a
halfway session that reaches only the code page (or the page to set the second step up); a right code replaces
it with a full session under a new token. Wrong codes count against the same rate limit as wrong passwords."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from amends.access.sessions import end_session, end_session_of_token, start_session
from amends.config import Settings
from amends.recover.actors import Actor
from amends.recover.audit import audit
from amends.recover.second_factor import check_second_step, second_factor_of
from amends.recover.staff import check_login, staff_id_for_login
from amends.store import UnitOfWork
from amends.web.console._base import (
    CODE_PAGE,
    ENROL_PAGE,
    ConsoleUser,
    Halfway,
    LoginRequired,
    Maybe,
    form_fields,
    form_of,
    login_allowed,
    login_limits,
    redirect,
    render,
    safe_next,
    same_origin,
    session_cookie,
    set_session_cookie,
    settings_of,
    writing,
)

__all__ = ["router"]

router = APIRouter(prefix="/console", include_in_schema=False)
_LOGIN_NONCE = "amends_login"  # a random value the login form repeats (double submit): login CSRF


def _login_page(request: Request, next_url: str, *, error: str | None = None, status: int = 200) -> HTMLResponse:
    nonce = secrets.token_urlsafe(24)
    response = render(
        request, "login.html", None, status=status, next_url=safe_next(next_url), nonce=nonce, error=error
    )
    response.set_cookie(
        _LOGIN_NONCE, nonce, max_age=3600, path="/console/login", secure=settings_of(request).secure_cookies,
        httponly=True, samesite="strict",
    )  # fmt: skip
    return response


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, user: Maybe, next: str | None = None) -> Response:
    if user is not None and user.session.stage is None:
        return redirect(safe_next(next), status=303)
    return _login_page(request, next or "/console")  # a halfway session may start again


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    fields = await form_fields(request)
    next_url = safe_next(fields.get("next"))
    nonce = request.cookies.get(_LOGIN_NONCE)
    # Double submit alone trusts whoever can set a cookie for this host (a sibling subdomain can): a login posted
    # from another site is refused like every other form of the console.
    if not same_origin(request) or not nonce or not secrets.compare_digest(nonce, fields.get("nonce", "")):
        return _login_page(request, next_url, error="The login form had expired. Please try again.", status=403)
    previous = request.cookies.get(session_cookie(settings_of(request)))
    login_name = fields.get("login", "").strip()
    password = fields.get("password", "")
    origin = request.client.host if request.client is not None else "unknown"
    if not await login_allowed(request, origin, login_name):
        await writing(request, lambda uow: _record(uow, request, origin, login_name, "console.login_limited"))
        return _login_page(request, next_url, error="Too many attempts. Wait a minute, then try again.", status=429)
    settings = settings_of(request)

    def attempt(uow: UnitOfWork) -> tuple[str, str | None] | None:
        now = datetime.now(UTC)
        member = check_login(uow, login_name, password)
        if member is None:
            _record(uow, request, origin, login_name, "console.login_failed")
            login_limits(request).failed(uow, origin, login_name, now=now)
            return None
        if previous:
            end_session_of_token(uow, previous)  # a browser's earlier session ends when it logs in again
        # With a second step on, or required of the role and not set up, the session is halfway until it is done.
        if second_factor_of(uow, member.id).is_on:
            stage: str | None = "code"
        elif member.role.value in settings.console_second_factor_roles:
            stage = "enrol"
        else:
            stage = None
        _session, token = start_session(
            uow, member.id, now=now, lifetime=settings.console_session_lifetime, origin=origin,
            user_agent=request.headers.get("user-agent"), stage=stage,
        )  # fmt: skip
        action = "console.login" if stage is None else "console.login_password_only"
        halfway = {"stage": stage} if stage else {}
        audit(uow, Actor(None, member, member.scopes, origin), action, f"staff:{member.id}", at=now, **halfway)
        return token, stage

    started = await writing(request, attempt)
    if started is None:
        return _login_page(request, next_url, error="That login name and password do not match.", status=401)
    token, stage = started
    going = {"code": f"{CODE_PAGE}?next={quote(next_url, safe='/')}", "enrol": ENROL_PAGE}.get(stage or "", next_url)
    response = _with_session(redirect(going), token, settings)
    response.delete_cookie(_LOGIN_NONCE, path="/console/login")
    return response


def _with_session(response: Response, token: str, settings: Settings) -> Response:
    return set_session_cookie(response, token, settings)


@router.get(CODE_PAGE.removeprefix("/console"), response_class=HTMLResponse)
async def code_page(request: Request, user: Halfway, next: str | None = None) -> Response:
    """The second step: the code of the person's authenticator app, or one of their recovery codes."""
    if user is None:
        return redirect("/console" if request.cookies.get(session_cookie(settings_of(request))) else "/console/login")
    return _code_page(request, user, safe_next(next))


def _code_page(
    request: Request, user: ConsoleUser, next_url: str, *, error: str | None = None, status: int = 200
) -> HTMLResponse:
    # Shown without the person's menu: nothing but this step is open to them yet.
    return render(request, "code.html", None, status=status, next_url=next_url, code_csrf=user.csrf, error=error)


@router.post(CODE_PAGE.removeprefix("/console"))
async def enter_code(request: Request, user: Maybe) -> Response:
    """Check the second step's code; a right one makes the session a full one, under a new token."""
    if user is None:
        return redirect("/console/login")
    fields = await form_of(request, user)  # every form of a session, this one too, needs its token
    if user.session.stage != "code":
        return redirect("/console")  # signed in already, or sent to set a second step up
    next_url = safe_next(fields.get("next"))
    origin = user.actor.origin or "unknown"
    login_name = user.member.id
    if not await login_allowed(request, origin, login_name):
        await writing(request, lambda uow: _record(uow, request, origin, login_name, "console.login_limited"))
        return _code_page(request, user, next_url, error="Too many attempts. Wait a minute, then try again.",
                          status=429)  # fmt: skip
    settings = settings_of(request)

    def attempt(uow: UnitOfWork) -> str | None:
        now = datetime.now(UTC)
        how = check_second_step(uow, user.actor, fields.get("code", "")[:100], now=now)
        if how is None:
            audit(uow, user.actor, "console.code_failed", f"staff:{login_name}", at=now)
            login_limits(request).failed(uow, origin, login_name, now=now)
            return None
        end_session(uow, user.session.id)  # a new token for the full session, as at every login
        _session, token = start_session(
            uow, login_name, now=now, lifetime=settings.console_session_lifetime, origin=user.actor.origin,
            user_agent=request.headers.get("user-agent"),
        )  # fmt: skip
        audit(uow, user.actor, "console.login", f"staff:{login_name}", at=now, second_step=how)
        return token

    token = await writing(request, attempt)
    if token is None:
        return _code_page(request, user, next_url, error="That code is not right, or it was used already.",
                          status=401)  # fmt: skip
    return _with_session(redirect(next_url), token, settings)


def _record(uow: UnitOfWork, request: Request, origin: str, login_name: str, action: str) -> None:
    """Audit an attempt that failed or was refused. The target names the staff member when the name tried is one
    of theirs. Any other name is kept only as a keyed hash: people type passwords into the name field, and the audit
    log is never erased; the hash still shows one name tried again and again."""
    actor = Actor(None, None, frozenset(), origin)
    known = staff_id_for_login(uow, login_name)
    target = f"login:{known}" if known is not None else f"login:unknown:{login_limits(request).key_of(login_name)[:16]}"
    audit(uow, actor, action, target, at=datetime.now(UTC))


@router.post("/logout")
async def logout(request: Request, user: Maybe) -> Response:
    if user is None:  # a halfway session may log out too: it is how its person starts again
        raise LoginRequired("/console")
    await form_of(request, user)

    def end(uow: UnitOfWork) -> None:
        end_session(uow, user.session.id)
        audit(uow, user.actor, "console.logout", f"staff:{user.member.id}", at=datetime.now(UTC))

    await writing(request, end)
    response = redirect("/console/login")
    settings = settings_of(request)
    response.delete_cookie(session_cookie(settings), path="/", secure=settings.secure_cookies, httponly=True)
    return response
