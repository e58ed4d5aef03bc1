"""The staff console: server-rendered pages where people work cases, answer feedback and approve remedies
(docs/console.md). Pages work without JavaScript; a small script only adds conveniences.

Sessions, CSRF and the security headers are in `_base.py`; each page module owns its routes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from amends.errors import AmendsError, Forbidden, NotFound
from amends.web.console import (
    account,
    approvals,
    case,
    customers,
    dashboard,
    inbox,
    ledger,
    login,
    queue,
    rules,
    second_factor,
)  # fmt: skip
from amends.web.console._base import (
    STATIC_DIR,
    LoginLimits,
    LoginRequired,
    console_headers,
    login_url,
    redirect,
    render,
)

__all__ = ["PAGES", "LoginLimits", "add_security_headers", "error_page", "router", "static_files"]

PAGES = (
    login,
    account,
    second_factor,
    queue,
    case,
    customers,
    inbox,
    approvals,
    ledger,
    rules,
    dashboard,
)  # each has its `router`
router = APIRouter(include_in_schema=False)
for _module in PAGES:
    router.include_router(_module.router)


def static_files() -> StaticFiles:
    """The console's own stylesheet and script, served at /console/static."""
    return StaticFiles(directory=STATIC_DIR)


async def error_page(request: Request, exc: Exception, status: int) -> Response:
    """What the console shows when a request fails: the login page for no session, else a page with the reason."""
    if isinstance(exc, LoginRequired):
        return redirect(exc.to or login_url(exc.next_url))
    if isinstance(exc, NotFound):
        heading, message = "Not found", "There is nothing here, or nothing you may see."
    elif isinstance(exc, Forbidden):
        heading, message = "Not allowed", str(exc)
    else:  # never a driver's own words: they stay in the log (web/errors.py logs them)
        heading, message = "That did not work", exc.shown if isinstance(exc, AmendsError) else str(exc)
    user = None  # the page is shown without the person's menu: the error may be about the session itself
    return render(request, "error.html", user, status=status, heading=heading, message=message)


def add_security_headers(app: FastAPI, *, secure: bool) -> None:
    """Give every response under /console the console's security headers: pages, redirects and errors alike.
    The static files may be cached for a few minutes; nothing else is."""
    headers = console_headers(secure=secure)

    @app.middleware("http")
    async def console_headers_middleware(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        if request.url.path.startswith("/console"):
            for name, value in headers.items():
                response.headers.setdefault(name, value)
            if request.url.path.startswith("/console/static/"):
                response.headers["Cache-Control"] = "public, max-age=300"
        return response
