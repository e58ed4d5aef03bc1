"""The feedback inbox: what customers wrote, the unanswered first with their due times, each with its triage
labels and the reasons behind them; reply, correct a label, quarantine spam or release it; and the suggestion
tracker ("you said, we did"). The rights are the API's: every staff role reads and answers feedback, managers
move suggestions along."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from amends.access import Scope
from amends.errors import AmendsError, Forbidden, InvalidInput
from amends.feedback.records import Feedback, Route, list_feedback
from amends.feedback.service import FeedbackDesk
from amends.feedback.suggestions import SuggestionStatus, list_suggestions, move_suggestion
from amends.feedback.triage.topics import load_taxonomy
from amends.store import UnitOfWork, tables
from amends.web.console._base import ConsoleUser, Signed, form_of, reading, redirect, render, writing
from amends.web.errors import status_of

__all__ = ["router"]

router = APIRouter(prefix="/console/feedback", include_in_schema=False)
View = Literal["unanswered", "all", "spam"]
_PAGE = 25
_DONE = {
    "replied": "Your answer is on its way (or recorded).",
    "corrected": "The label is corrected; the correction is kept for training.",
    "spam": "Quarantined as spam.",
    "released": "Released from the quarantine and routed.",
    "moved": "The suggestion has moved on.",
}
REPLY_CHANNELS = ("email", "sms", "card", "phone", "in_person", "public")
LABELS = {
    "sentiment": ("negative", "neutral", "positive"),
    "urgency": ("low", "normal", "high"),
}


def _topics(request: Request) -> tuple[str, ...]:
    """The taxonomy's topics, offered when a topic is corrected (read once per app)."""
    state = request.app.state
    if not hasattr(state, "console_topics"):
        state.console_topics = load_taxonomy(state.settings.triage_taxonomy_file).names
    topics: tuple[str, ...] = state.console_topics
    return topics


def _need(user: ConsoleUser, scope: Scope, doing: str) -> None:
    if scope not in user.actor.scopes:
        raise Forbidden(f"{doing} needs the right {scope.value!r}; {user.member.id} is {user.member.role.value}")


def _responses(uow: UnitOfWork, ids: list[int]) -> dict[int, list[Any]]:
    if not ids:
        return {}
    r = tables.feedback_responses
    found: dict[int, list[Any]] = {}
    for row in uow.execute(r.select().where(r.c.feedback_id.in_(ids)).order_by(r.c.at, r.c.id)):
        found.setdefault(row.feedback_id, []).append(row)
    return found


async def _page(
    request: Request,
    user: ConsoleUser,
    view: View,
    cursor: str | None,
    *,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
    typed: Mapping[str, str] | None = None,
) -> HTMLResponse:
    _need(user, Scope.FEEDBACK_READ, "reading feedback")

    def run(uow: UnitOfWork) -> tuple[list[Feedback], str | None, dict[int, list[Any]]]:
        items, following = list_feedback(
            uow,
            unanswered=view == "unanswered",
            route=Route.SPAM if view == "spam" else None,
            limit=_PAGE,
            cursor=cursor,
        )
        return items, following, _responses(uow, [f.id for f in items])

    items, following, responses = await reading(request, run)
    return render(
        request, "inbox.html", user, status=status, notice=notice, error=error, view=view, items=items,
        following=following, responses=responses, channels=REPLY_CHANNELS, labels=LABELS,
        topics=_topics(request), typed=dict(typed or {}),
        may_answer=Scope.FEEDBACK_ANSWER in user.actor.scopes,
    )  # fmt: skip


@router.get("", response_class=HTMLResponse)
async def inbox(
    request: Request,
    user: Signed,
    view: Annotated[View, Query()] = "unanswered",
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    done: str | None = None,
) -> HTMLResponse:
    return await _page(request, user, view, cursor, notice=_DONE.get(done or ""))


async def _act(
    request: Request,
    user: ConsoleUser,
    done: Callable[[Mapping[str, str]], str],
    change: Callable[[UnitOfWork, Mapping[str, str]], object],
) -> Response:
    """Check the form, apply `change`, and go back to the view the form was on: with `done(form)`'s notice, or
    with the reason it was refused (and what was typed)."""
    fields = await form_of(request, user)
    back = _view(fields.get("view"))
    try:
        _need(user, Scope.FEEDBACK_ANSWER, "answering feedback")
        await writing(request, lambda uow: change(uow, fields))
    except AmendsError as exc:
        return await _page(request, user, back, None, error=str(exc), status=status_of(exc), typed=fields)
    return redirect(f"/console/feedback?view={back}&done={done(fields)}")


def _view(value: str | None) -> View:
    return "all" if value == "all" else "spam" if value == "spam" else "unanswered"


@router.post("/{feedback_id}/reply")
async def reply(request: Request, user: Signed, feedback_id: int) -> Response:
    desk: FeedbackDesk = request.app.state.feedback

    def answer(uow: UnitOfWork, fields: Mapping[str, str]) -> None:
        channel = fields.get("channel") or None
        if channel is not None and channel not in REPLY_CHANNELS:
            raise InvalidInput("channel", f"one of {', '.join(REPLY_CHANNELS)}")
        desk.respond(uow, feedback_id, text=fields.get("text", ""), channel=channel, actor=user.actor,
                     now=datetime.now(UTC))  # fmt: skip

    return await _act(request, user, lambda _f: "replied", answer)


@router.post("/{feedback_id}/correct")
async def correct(request: Request, user: Signed, feedback_id: int) -> Response:
    """Correct a label; spam true quarantines, spam false releases and routes."""
    desk: FeedbackDesk = request.app.state.feedback

    def done(fields: Mapping[str, str]) -> str:
        if fields.get("field") == "spam":
            return "spam" if fields.get("value") == "true" else "released"
        return "corrected"

    def change(uow: UnitOfWork, fields: Mapping[str, str]) -> None:
        desk.correct(uow, feedback_id, field=fields.get("field", ""), value=fields.get("value", ""),
                     actor=user.actor, now=datetime.now(UTC))  # fmt: skip

    return await _act(request, user, done, change)


@router.get("/suggestions", response_class=HTMLResponse)
async def suggestions(
    request: Request,
    user: Signed,
    status: Annotated[SuggestionStatus | None, Query()] = None,
    done: str | None = None,
) -> HTMLResponse:
    _need(user, Scope.FEEDBACK_READ, "reading suggestions")
    found = await reading(request, lambda uow: list_suggestions(uow, status=status, limit=200))
    return render(
        request, "suggestions.html", user, suggestions=found, shown=status.value if status else "",
        statuses=[s.value for s in SuggestionStatus], may_move=Scope.SUGGESTIONS_WRITE in user.actor.scopes,
        notice=_DONE.get(done or ""),
    )  # fmt: skip


@router.post("/suggestions/{suggestion_id}")
async def move(request: Request, user: Signed, suggestion_id: int) -> Response:
    desk: FeedbackDesk = request.app.state.feedback
    fields = await form_of(request, user)
    try:
        _need(user, Scope.SUGGESTIONS_WRITE, "moving a suggestion along")
        status = SuggestionStatus(fields.get("status", ""))
    except ValueError:
        error: AmendsError = InvalidInput("status", f"one of {', '.join(s.value for s in SuggestionStatus)}")
    except AmendsError as exc:
        error = exc
    else:
        try:
            await writing(
                request,
                lambda uow: move_suggestion(uow, suggestion_id, status=status, note=fields.get("note") or None,
                                            title=None, desk=desk, actor=user.actor, now=datetime.now(UTC)),
            )  # fmt: skip
            return redirect("/console/feedback/suggestions?done=moved")
        except AmendsError as exc:
            error = exc
    found = await reading(request, lambda uow: list_suggestions(uow, limit=200))
    return render(
        request, "suggestions.html", user, status=status_of(error), error=str(error), suggestions=found, shown="",
        statuses=[s.value for s in SuggestionStatus], may_move=Scope.SUGGESTIONS_WRITE in user.actor.scopes,
    )  # fmt: skip
