"""Logging in and out. A login makes a new session (the old cookie, if any, is never reused: no session
fixation), is rate-limited per client address and per login name, and is written to the audit log either way;
a wrong name and a wrong password get the same answer in the same time."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from amends.access.sessions import end_session, end_session_of_token, start_session
from amends.config import Settings
from amends.recover.actors import Actor
from amends.recover.audit import audit
from amends.recover.staff import check_login
from amends.store import UnitOfWork
from amends.web.console._base import (
    COOKIE,
    LoginLimits,
    Maybe,
    Signed,
    form_fields,
    form_of,
    redirect,
    render,
    safe_next,
    same_origin,
    writing,
)

__all__ = ["router"]

router = APIRouter(prefix="/console", include_in_schema=False)
_LOGIN_NONCE = "amends_login"  # a random value the login form repeats (double submit): login CSRF


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _limits(request: Request) -> LoginLimits:
    login_limits: LoginLimits = request.app.state.console_login_limits
    return login_limits


def _login_page(request: Request, next_url: str, *, error: str | None = None, status: int = 200) -> HTMLResponse:
    nonce = secrets.token_urlsafe(24)
    response = render(
        request, "login.html", None, status=status, next_url=safe_next(next_url), nonce=nonce, error=error
    )
    response.set_cookie(
        _LOGIN_NONCE, nonce, max_age=3600, path="/console/login", secure=_settings(request).secure_cookies,
        httponly=True, samesite="strict",
    )  # fmt: skip
    return response


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, user: Maybe, next: str | None = None) -> Response:
    if user is not None:
        return redirect(safe_next(next), status=303)
    return _login_page(request, next or "/console")


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    fields = await form_fields(request)
    next_url = safe_next(fields.get("next"))
    nonce = request.cookies.get(_LOGIN_NONCE)
    # Double submit alone trusts whoever can set a cookie for this host (a sibling subdomain can): a login posted
    # from another site is refused like every other form of the console.
    if not same_origin(request) or not nonce or not secrets.compare_digest(nonce, fields.get("nonce", "")):
        return _login_page(request, next_url, error="The login form had expired. Please try again.", status=403)
    previous = request.cookies.get(COOKIE)
    login_name = fields.get("login", "").strip()
    password = fields.get("password", "")
    origin = request.client.host if request.client is not None else "unknown"
    if not _limits(request).allows(origin, login_name):
        await writing(request, lambda uow: _record(uow, origin, login_name, "console.login_limited"))
        return _login_page(request, next_url, error="Too many attempts. Wait a minute, then try again.", status=429)
    settings = _settings(request)

    def attempt(uow: UnitOfWork) -> str | None:
        now = datetime.now(UTC)
        member = check_login(uow, login_name, password)
        if member is None:
            _record(uow, origin, login_name, "console.login_failed")
            return None
        if previous:
            end_session_of_token(uow, previous)  # a browser's earlier session ends when it logs in again
        _session, token = start_session(
            uow, member.id, now=now, lifetime=settings.console_session_lifetime, origin=origin,
            user_agent=request.headers.get("user-agent"),
        )  # fmt: skip
        audit(uow, Actor(None, member, member.scopes, origin), "console.login", f"staff:{member.id}", at=now)
        return token

    token = await writing(request, attempt)
    if token is None:
        _limits(request).failed(origin, login_name)
        return _login_page(request, next_url, error="That login name and password do not match.", status=401)
    response = redirect(next_url)
    response.set_cookie(
        COOKIE, token, max_age=int(settings.console_session_lifetime.total_seconds()), path="/",
        secure=settings.secure_cookies, httponly=True, samesite="lax",
    )  # fmt: skip
    response.delete_cookie(_LOGIN_NONCE, path="/console/login")
    return response


def _record(uow: UnitOfWork, origin: str, login_name: str, action: str) -> None:
    # The name tried is kept (cut short) to see a guessing run; the password never.
    actor = Actor(None, None, frozenset(), origin)
    audit(uow, actor, action, f"login:{login_name[:100]}", at=datetime.now(UTC))


@router.post("/logout")
async def logout(request: Request, user: Signed) -> Response:
    await form_of(request, user)

    def end(uow: UnitOfWork) -> None:
        end_session(uow, user.session.id)
        audit(uow, user.actor, "console.logout", f"staff:{user.member.id}", at=datetime.now(UTC))

    await writing(request, end)
    response = redirect("/console/login")
    response.delete_cookie(COOKIE, path="/")
    return response
