"""What every console page shares: the session behind the cookie, the CSRF check on every form, the security
headers, the template environment, and the login attempts' rate limit.

Rules a reader must not break: every page depends on `Signed` (or `Maybe` for the login page), so no page is
reached without a live session; every POST reads its form through `form_of`, which refuses a missing or wrong
CSRF token and a post from another origin before anything is done; and the role is checked by recover/ and
feedback/ themselves, with the staff member as the actor, exactly as for their API keys.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qs, quote, unquote, urlsplit

import jinja2
from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from amends.access.login_attempts import LoginLimit, name_key
from amends.access.sessions import Session, find_session, keep_session, needs_keeping, valid_csrf
from amends.config import Settings
from amends.errors import AmendsError, Forbidden, InvalidInput, NotFound
from amends.recover.actors import Actor
from amends.recover.roles import Role
from amends.recover.staff import StaffMember, get_staff
from amends.store import Database, UnitOfWork
from amends.web import deps
from amends.web.deps import read_body

__all__ = [
    "CODE_PAGE",
    "COOKIE",
    "ENROL_PAGE",
    "SECURE_COOKIE",
    "STATIC_DIR",
    "ConsoleUser",
    "Enrolling",
    "Halfway",
    "LoginLimits",
    "Maybe",
    "Signed",
    "console_headers",
    "form_of",
    "login_allowed",
    "login_limits",
    "lookup_token",
    "redirect",
    "render",
    "rule_titles",
    "safe_next",
    "same_origin",
    "session_cookie",
    "set_session_cookie",
    "settings_of",
]

T = TypeVar("T")
STATIC_DIR = Path(str(resources.files(__package__))) / "static"
COOKIE = "amends_session"
# Over HTTPS the session cookie takes the __Host- prefix: a browser then accepts it only Secure, for path / and
# without a Domain, so a sibling subdomain (or a page over plain HTTP) cannot plant or shadow it.
SECURE_COOKIE = "__Host-amends_session"
_MAX_FORM = 256 * 1024
_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("amends.web.console", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _when(value: datetime | None, empty: str = "") -> str:
    return empty if value is None else f"{value.astimezone(UTC):%Y-%m-%d %H:%M}"


def _money(value: Decimal | float | int | None, unit: str = "") -> str:
    if value is None:
        return "no limit"
    text = f"{Decimal(value):,.2f}".rstrip("0").rstrip(".") if Decimal(value) % 1 else f"{Decimal(value):,.0f}"
    return f"{text} {unit}".strip()


def _ago(value: datetime | None, now: datetime) -> str:
    """'in 3 h' or '2 d ago': how far a due time is from now, in the largest whole unit."""
    if value is None:
        return ""
    seconds = (value - now).total_seconds()
    amount = abs(seconds)
    for size, unit in ((86_400, "d"), (3_600, "h"), (60, "min")):
        if amount >= size:
            text = f"{int(amount // size)} {unit}"
            return f"in {text}" if seconds > 0 else f"{text} ago"
    return "now"


def _plain_value(value: Any) -> str:
    if isinstance(value, str):
        try:
            instant = datetime.fromisoformat(value)
        except ValueError:
            return value
        if instant.tzinfo is not None and "T" in value:
            return f"{_when(instant)} UTC"
        return value
    if isinstance(value, list):
        return ", ".join(_plain_value(item) for item in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_plain_value(v)}" for k, v in value.items())
    return str(value)


_PROBABILITIES = ("risk", "threshold")  # a risk rule's facts that are probabilities, shown as percentages


def _plain_facts(facts: Mapping[str, Any]) -> list[tuple[str, str]]:
    """An incident's facts as a reader takes them in: an event named by its type and time, the fields of the
    event's data each on their own, instants in UTC, names without underscores, a risk rule's probabilities as
    percentages and its reasons as sentences."""
    shown: dict[str, str] = {}
    for key, value in facts.items():
        if key in _PROBABILITIES and isinstance(value, int | float) and not isinstance(value, bool):
            shown[key] = f"{value:.0%}"
        elif key == "reasons" and isinstance(value, list):  # a risk rule's: what pushed the risk up, in words
            shown["what pushed it up"] = "; ".join(str(r["text"]) for r in value if isinstance(r, dict)) or "nothing"
        elif isinstance(value, dict) and {"type", "time"} <= value.keys():
            shown[key] = f"{value['type']} at {_plain_value(value['time'])}"
        elif isinstance(value, dict):
            for inner, item in value.items():
                shown.setdefault(inner if key == "data" else f"{key} {inner}", _plain_value(item))
        else:
            shown[key] = _plain_value(value)
    return [(name.replace("_", " "), text) for name, text in shown.items()]


_templates.filters["when"] = _when
_templates.filters["segment"] = lambda value: quote(str(value), safe="")  # one path segment, "/" encoded too
_templates.filters["plain_facts"] = _plain_facts
_templates.filters["money"] = _money
_templates.globals["ago"] = _ago
_templates.globals["roles"] = Role


def console_headers(*, secure: bool) -> dict[str, str]:
    """Every console response's headers: scripts and styles only from the console's own static files (no inline
    script), no framing, no caching of pages with customers' data, and HSTS when served over HTTPS."""
    headers = {
        "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        "Cache-Control": "no-store",
        "Referrer-Policy": "same-origin",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    }
    if secure:
        headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
    return headers


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    """The person behind the session, as the actor every decision names."""

    member: StaffMember
    session: Session
    actor: Actor

    @property
    def csrf(self) -> str:
        return self.session.csrf_token


class LoginRequired(AmendsError):
    """No live session: the console answers with the login page (a redirect that remembers where to go); or a
    halfway one, answered with the page of the step still due (`to`)."""

    def __init__(self, next_url: str, *, to: str | None = None) -> None:
        super().__init__("log in to continue")
        self.next_url = next_url
        self.to = to


CODE_PAGE = "/console/login/code"  # where a session waiting for its second step's code goes
ENROL_PAGE = "/console/account/second-factor"  # where one whose role needs a second step not set up goes


def settings_of(request: Request) -> Settings:
    """The app's settings."""
    settings: Settings = request.app.state.settings
    return settings


def login_limits(request: Request) -> LoginLimits:
    """The app's limits on sign-in attempts (passwords and second-step codes alike)."""
    limits_: LoginLimits = request.app.state.console_login_limits
    return limits_


def _origin(request: Request) -> str | None:
    return request.client.host if request.client is not None else None


def _lookup(db: Database, token: str, settings: Settings, origin: str | None) -> ConsoleUser | None:
    """The person a session cookie stands for. A page view only reads; the session's last use is written at most
    once a minute, in a unit of work of its own (ended sessions are removed at their person's next login)."""
    now, idle = datetime.now(UTC), settings.console_session_idle
    with db.unit_of_work() as uow:
        session = find_session(uow, token, now=now, idle=idle)
        try:
            member = None if session is None else get_staff(uow, session.staff_id)
        except NotFound:
            member = None
    if session is not None and needs_keeping(session, now=now):
        with db.unit_of_work(writes=True) as uow:
            keep_session(uow, token, now=now, idle=idle)
            uow.commit()
    if session is None or member is None or not member.active:
        return None
    return ConsoleUser(member, session, Actor(None, member, member.scopes, origin))


async def lookup_token(request: Request, token: str) -> ConsoleUser | None:
    """The person a session token stands for (one just made, before its cookie reaches the browser)."""
    return await run_in_threadpool(_lookup, request.app.state.db, token, settings_of(request), _origin(request))


def session_cookie(settings: Settings) -> str:
    """The session cookie's name: with the __Host- prefix when cookies are Secure."""
    return SECURE_COOKIE if settings.secure_cookies else COOKIE


def set_session_cookie(response: Response, token: str, settings: Settings) -> Response:
    """Give the browser its session: script cannot read it, other sites' links send it but their forms do not."""
    response.set_cookie(
        session_cookie(settings), token, max_age=int(settings.console_session_lifetime.total_seconds()), path="/",
        secure=settings.secure_cookies, httponly=True, samesite="lax",
    )  # fmt: skip
    return response


async def _maybe_user(request: Request) -> ConsoleUser | None:
    token = request.cookies.get(session_cookie(settings_of(request)))
    if not token:
        return None
    return await run_in_threadpool(_lookup, request.app.state.db, token, settings_of(request), _origin(request))


def _target(request: Request) -> str:
    return (
        request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.method == "GET"
        else ("/console")
    )


async def _signed_user(request: Request, user: Annotated[ConsoleUser | None, Depends(_maybe_user)]) -> ConsoleUser:
    """A person fully signed in: a halfway session (second step still due) opens no page but that step's."""
    if user is None:
        raise LoginRequired(_target(request))
    if user.session.stage == "code":
        raise LoginRequired(_target(request), to=CODE_PAGE)
    if user.session.stage == "enrol":
        raise LoginRequired(_target(request), to=ENROL_PAGE)
    return user


async def _enrolling_user(request: Request, user: Annotated[ConsoleUser | None, Depends(_maybe_user)]) -> ConsoleUser:
    """A person fully signed in, or one whose role needs a second step they are to set up now."""
    if user is None:
        raise LoginRequired(_target(request))
    if user.session.stage == "code":
        raise LoginRequired(_target(request), to=CODE_PAGE)
    return user


async def _halfway_user(
    request: Request, user: Annotated[ConsoleUser | None, Depends(_maybe_user)]
) -> ConsoleUser | None:
    """A person whose password was right and whose second step's code is due; None for anyone else."""
    return user if user is not None and user.session.stage == "code" else None


Maybe = Annotated[ConsoleUser | None, Depends(_maybe_user)]
Signed = Annotated[ConsoleUser, Depends(_signed_user)]
Enrolling = Annotated[ConsoleUser, Depends(_enrolling_user)]
Halfway = Annotated[ConsoleUser | None, Depends(_halfway_user)]


def rule_titles(request: Request) -> dict[str, str]:
    """Each running rule's id and what it notices, in its own words (its description); none with detection off."""
    detection = request.app.state.detection
    if detection is None:
        return {}
    return {rule.common.id: rule.common.description or "" for rule in detection.detector.rules.enabled}


def safe_next(value: str | None) -> str:
    """Where to go after login: a path of the console only (never another site: no open redirect). Browsers drop
    tabs and newlines, read a backslash as a slash and "%2e" as a dot, so a target with any of those, or with a dot
    segment that would climb out of /console, goes to the queue instead."""
    if not value or "\\" in value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return "/console"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not (parts.path == "/console" or parts.path.startswith("/console/")):
        return "/console"
    if any(segment in (".", "..") for segment in unquote(parts.path).split("/")):
        return "/console"
    return value


def same_origin(request: Request) -> bool:
    """Whether a POST came from the console's own pages, as far as the browser tells (Origin, else Referer)."""
    settings = settings_of(request)
    claimed = request.headers.get("origin") or request.headers.get("referer")
    if claimed is None:
        return True  # not a browser, or one that sends neither: the CSRF token still has to match
    parts = urlsplit(claimed)
    theirs = f"{parts.scheme}://{parts.netloc}"
    ours = {f"{request.url.scheme}://{request.url.netloc}"}
    base = urlsplit(settings.base_url)
    ours.add(f"{base.scheme}://{base.netloc}")
    return theirs in ours


async def form_fields(request: Request) -> dict[str, str]:
    """A URL-encoded form's fields (the last value of each); no fields for an empty body; InvalidInput for another
    kind of body."""
    body = await read_body(request, _MAX_FORM)
    if not body:
        return {}
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise InvalidInput("content-type", "a console form is sent as application/x-www-form-urlencoded")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("body", "not UTF-8") from None
    return {key: values[-1] for key, values in parse_qs(text, keep_blank_values=True).items()}


async def form_of(request: Request, user: ConsoleUser) -> dict[str, str]:
    """The form of a POST by `user`, once its CSRF token and origin are checked (Forbidden otherwise)."""
    if not same_origin(request):
        raise Forbidden("the form was posted from another site")
    fields = await form_fields(request)
    if not valid_csrf(user.session, fields.get("csrf")):
        raise Forbidden("the form's CSRF token is missing or wrong; reload the page and try again")
    return fields


def render(
    request: Request,
    template: str,
    user: ConsoleUser | None,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    """A console page: the template with the person, their CSRF token and the navigation they may use."""
    settings = settings_of(request)
    context.setdefault("notice", None)
    context.setdefault("error", None)
    html = _templates.get_template(template).render(
        user=user,
        csrf=user.csrf if user is not None else "",
        now=datetime.now(UTC),
        path=request.url.path,
        company=settings.company_name,
        **context,
    )
    return HTMLResponse(html, status_code=status, headers=dict(headers or {}))  # add_security_headers adds the rest


def redirect(url: str, *, status: int = 303) -> RedirectResponse:
    """After a POST, the page to show (303: the browser fetches it with GET)."""
    return RedirectResponse(url, status_code=status)


def login_url(next_url: str) -> str:
    return f"/console/login?next={quote(safe_next(next_url), safe='/')}"


@dataclass(frozen=True, slots=True)
class LoginLimits:
    """Failed sign-in attempts per client address and per login name, counted in the database, so that every
    process counts the same ones (access/login_attempts.py); a name is kept as a keyed hash."""

    limit: LoginLimit
    settings: Settings

    @classmethod
    def from_settings(cls, settings: Settings) -> LoginLimits:
        return cls(LoginLimit.parse(settings.console_login_rate_limit), settings)

    def allows(self, uow: UnitOfWork, address: str, login: str, *, now: datetime) -> bool:
        """Whether an attempt may be tried now: neither the address nor the name is over its failures."""
        return self.limit.allows(uow, address, self.key_of(login), now=now)

    def failed(self, uow: UnitOfWork, address: str, login: str, *, now: datetime) -> None:
        """Count a failed attempt against the address and the name (a success counts against neither)."""
        self.limit.failed(uow, address, self.key_of(login), now=now)

    def key_of(self, login: str) -> str:
        """The keyed hash a login name is counted (and audited, when it is nobody's) under."""
        return name_key(self.settings.require_secret_key().get_secret_value().encode(), login)


async def login_allowed(request: Request, address: str, login: str) -> bool:
    """Whether a sign-in attempt (a password, a second step's code) from `address` for `login` may be tried now."""
    limits_ = login_limits(request)
    return await reading(request, lambda uow: limits_.allows(uow, address, login, now=datetime.now(UTC)))


async def reading(request: Request, work: Callable[[UnitOfWork], T]) -> T:
    """Run `work` in a read-only unit of work of the app's database, off the event loop."""
    return await deps.reading(request.app.state.db, work)


async def writing(request: Request, work: Callable[[UnitOfWork], T]) -> T:
    """Run `work` in one unit of work of the app's database and commit it; nothing is kept if it raises."""
    return await deps.in_transaction(request.app.state.db, work)
