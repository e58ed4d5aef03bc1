"""The feedback page, `/f/{token}`: two open questions and an optional rating, behind a signed, expiring link
bound to one feedback request (docs/feedback.md#the-page).

The token in the path is the only credential, as on the unsubscribe page: there is no session or cookie for a
forged cross-site form to ride on, so the form needs no nonce of its own; a POST whose Origin header names
another site is refused all the same. The page works without JavaScript (a plain form, then a redirect to the
answer), sends no referrer that could leak the token, and is framed by no one. Answers are rate-limited per
client address and per token; a refused post changes nothing, and what was accepted before stays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar
from urllib.parse import parse_qs, urlsplit

import limits
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from amends.config import Settings
from amends.errors import InvalidInput, NotFound, TooLarge
from amends.feedback.asking import answer_request
from amends.feedback.questions import PageTexts, page_texts
from amends.feedback.records import Feedback
from amends.feedback.requests import FeedbackRequest, NoLongerEditable, page_answer, request_for_link
from amends.feedback.service import FeedbackDesk
from amends.outreach.links import InvalidLink
from amends.outreach.service import Outreach
from amends.recover.actors import Actor
from amends.store import Database, UnitOfWork
from amends.web.deps import DB, OutreachState, read_body
from amends.web.pages import PublicPage, public_headers, templates

__all__ = ["PageLimits", "router"]

router = APIRouter(include_in_schema=False, route_class=PublicPage)
T = TypeVar("T")

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:0;padding:1.5rem .75rem;background:#f6f6f4;color:#1d1d1b;"
    "line-height:1.5}main{max-width:36rem;margin:0 auto;background:#fff;padding:1.25rem 1.5rem;"
    "border-radius:.5rem}h1{font-size:1.4rem}h2{font-size:1.1rem}label,legend{display:block;font-weight:600}"
    "textarea{box-sizing:border-box;width:100%;font:inherit;padding:.5rem;border:2px solid #55554f;"
    "border-radius:.3rem;color:#1d1d1b;background:#fff}fieldset{border:2px solid #55554f;border-radius:.3rem;"
    "margin:0 0 1rem;padding:.5rem .75rem}.hint{font-weight:400;color:#44443f}.scale{display:flex;flex-wrap:wrap;"
    "gap:.25rem .75rem}.choice{display:inline-flex;align-items:center;gap:.25rem;min-height:2.75rem}"
    ".choice input{width:1.4rem;height:1.4rem;margin:0}.choice label{font-weight:400}"
    "button{font-size:1rem;padding:.7rem 1.4rem;border:0;border-radius:.3rem;background:#1d4e89;color:#fff;"
    "cursor:pointer}textarea:focus,input:focus,button:focus{outline:3px solid #b35c00;outline-offset:2px}"
    ".error{border-left:4px solid #a4161a;padding:.25rem .75rem;color:#a4161a;font-weight:600}"
    ".said{white-space:pre-wrap;margin:0 0 1rem}dt{font-weight:600}"
)
_HEADERS = public_headers(_STYLE)
_MAX_BODY = 256 * 1024  # two texts of 10,000 characters, percent-encoded, with room to spare


@dataclass(frozen=True)
class PageLimits:
    """How many answers may be posted per client address and per token. The counts are kept in this process's
    memory: with several server processes, each counts on its own (docs/feedback.md#rate-limits)."""

    per_address: limits.RateLimitItem
    per_token: limits.RateLimitItem
    limiter: MovingWindowRateLimiter

    @classmethod
    def from_settings(cls, settings: Settings) -> PageLimits:
        return cls(
            limits.parse(settings.feedback_page_rate_limit),
            limits.parse(settings.feedback_token_rate_limit),
            MovingWindowRateLimiter(MemoryStorage()),
        )

    def allows(self, address: str, request_id: int) -> bool:
        """Count one post from `address` on request `request_id`; False when either is over its limit."""
        by_address = self.limiter.hit(self.per_address, "feedback-page", "address", address)
        by_token = self.limiter.hit(self.per_token, "feedback-page", "request", str(request_id))
        return by_address and by_token


@dataclass(frozen=True, slots=True)
class _Form:
    action: str
    button: str
    liked: str = ""
    disliked: str = ""
    rating: int | None = None
    answered: bool = False
    error: str | None = None


def _render(
    outreach: Outreach,
    language: str,
    texts: PageTexts,
    title: str,
    paragraphs: list[str],
    *,
    status: int = 200,
    request: FeedbackRequest | None = None,
    answer: Feedback | None = None,
    form: _Form | None = None,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    scale = None if request is None else request.scale
    low, high = (0, 0) if scale is None else scale.bounds
    html = templates.get_template("feedback.html").render(
        language=language,
        title=title,
        company=outreach.company["name"],
        style=_STYLE,
        paragraphs=paragraphs,
        t=texts,
        scale=scale,
        low=low,
        high=high,
        ends=texts.ends(scale) if scale is not None else ("", ""),
        answer=answer,
        form=form,
    )
    return HTMLResponse(html, status_code=status, headers={**_HEADERS, **(headers or {})})


def _invalid(outreach: Outreach, language: str | None = None, *, status: int = 404) -> HTMLResponse:
    language, texts = page_texts(language)
    return _render(outreach, language, texts, texts.invalid_title, [texts.invalid], status=status)


def _until(instant: datetime) -> str:
    return f"{instant.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _show(
    outreach: Outreach,
    request: FeedbackRequest,
    answer: Feedback | None,
    *,
    action: str,
    now: datetime,
    form: _Form | None = None,
    status: int = 200,
) -> HTMLResponse:
    """The request's page: the questions; or, once answered, what they wrote, with the form to change it while
    it may be changed."""
    language, texts = page_texts(request.language)
    if answer is None:
        reference = f" ({request.reference})" if request.reference else ""
        form = form or _Form(action, texts.submit)
        return _render(
            outreach, language, texts, texts.title, [texts.intro.format(reference=reference)],
            request=request, form=form, status=status,
        )  # fmt: skip
    paragraphs = [texts.thanks]
    editable = answer.editable_until is not None and answer.editable_until > now
    if editable and answer.editable_until is not None:
        paragraphs.append(texts.editable_until.format(until=_until(answer.editable_until)))
        form = form or _Form(
            action, texts.update, answer.liked or "", answer.disliked or "", answer.rating, answered=True
        )
    else:
        paragraphs.append(texts.not_editable)
        form = None
    return _render(
        outreach, language, texts, texts.thanks_title, paragraphs,
        request=request, answer=answer, form=form, status=status,
    )  # fmt: skip


def _desk(request: Request) -> FeedbackDesk | None:
    desk: FeedbackDesk | None = getattr(request.app.state, "feedback", None)
    return desk


def _limits(request: Request) -> PageLimits:
    page_limits: PageLimits = request.app.state.feedback_limits
    return page_limits


def _same_origin(request: Request, outreach: Outreach) -> bool:
    """Whether a POST came from our own page, as far as the browser says: no Origin header (older browsers, or
    a client that is not a browser), `null` (our page sends no referrer, so browsers send that), or our own."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return True
    ours = {f"{request.url.scheme}://{request.url.netloc}"}
    base = urlsplit(outreach.links.base_url)
    ours.add(f"{base.scheme}://{base.netloc}")
    return origin.rstrip("/") in ours


@router.get("/f/{token}", response_class=HTMLResponse)
async def feedback_page(token: str, request: Request, db: DB, outreach: OutreachState) -> HTMLResponse:
    now = datetime.now(UTC)
    try:
        link = outreach.links.request_of(token, now=now)
    except InvalidLink:
        return _invalid(outreach)

    def run(uow: UnitOfWork) -> tuple[FeedbackRequest, Feedback | None]:
        found = request_for_link(uow, link, now=now)
        return found, page_answer(uow, found)

    try:
        found, answer = await _in(db, run, writes=False)
    except NotFound:
        return _invalid(outreach)
    return _show(outreach, found, answer, action=str(request.url.path), now=now)


@router.post("/f/{token}", response_class=HTMLResponse)
async def post_feedback(token: str, request: Request, db: DB, outreach: OutreachState) -> Response:
    now = datetime.now(UTC)
    try:
        link = outreach.links.request_of(token, now=now)
    except InvalidLink:
        return _invalid(outreach)
    address = request.client.host if request.client is not None else "unknown"
    if not _limits(request).allows(address, link.request_id):
        language, texts = page_texts(None)
        return _render(
            outreach, language, texts, texts.too_many_title, [texts.too_many], status=429,
            headers={"Retry-After": "60"},
        )  # fmt: skip
    if not _same_origin(request, outreach):
        return _invalid(outreach, status=403)
    desk = _desk(request)
    if desk is None:
        language, texts = page_texts(None)
        return _render(outreach, language, texts, texts.closed_title, [texts.closed], status=503)
    try:
        fields = parse_qs((await read_body(request, _MAX_BODY)).decode("utf-8", errors="replace"))
    except TooLarge:
        return _invalid(outreach, status=413)
    liked, disliked = _field(fields, "liked"), _field(fields, "disliked")
    rating_text = (_field(fields, "rating") or "").strip()
    action = str(request.url.path)
    actor = Actor(None, None, origin=address)

    def run(uow: UnitOfWork) -> HTMLResponse | None:
        found = request_for_link(uow, link, now=now)
        try:
            rating = _rating(rating_text, found)
            answer_request(uow, found, liked=liked, disliked=disliked, rating=rating, desk=desk, now=now, actor=actor)
        except InvalidInput as exc:
            _language, texts = page_texts(found.language)
            error = texts.say_something if exc.field == "text" else exc.reason
            stored = page_answer(uow, found)
            form = _Form(
                action, texts.update if stored else texts.submit, liked or "", disliked or "",
                None, answered=stored is not None, error=error,
            )  # fmt: skip
            return _show(outreach, found, stored, action=action, now=now, form=form, status=422)
        except NoLongerEditable:
            return _show(outreach, found, page_answer(uow, found), action=action, now=now, status=409)
        return None

    try:
        shown = await _in(db, run, writes=True)
    except NotFound:
        return _invalid(outreach)
    if shown is not None:
        return shown
    # Post, then redirect, then get: a reload shows the answer rather than posting it again.
    return RedirectResponse(action, status_code=303, headers=_HEADERS)


def _field(fields: dict[str, list[str]], name: str) -> str | None:
    values = fields.get(name)
    return values[0] if values else None


def _rating(text: str, request: FeedbackRequest) -> int | None:
    if not text or request.scale is None:
        return None
    if not text.lstrip("-").isdigit():
        raise InvalidInput("rating", f"{text[:20]!r} is not a number")
    return int(text)


async def _in(db: Database, work: Callable[[UnitOfWork], T], *, writes: bool) -> T:
    """Run `work` in a unit of work on a worker thread; with `writes`, commit unless it returns a page to show
    (an answer refused: nothing of it is kept)."""

    def run() -> T:
        with db.unit_of_work(writes=writes) as uow:
            result = work(uow)
            if writes and result is None:
                uow.commit()
            return result

    return await run_in_threadpool(run)
