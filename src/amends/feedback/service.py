"""The feedback desk: receives what customers write, triages and routes it, and answers every one of them.

`FeedbackDesk.receive` runs in the caller's transaction: the feedback, its labels, the complaint that
negative feedback files, the suggestion a proposal starts, all commit together or not at all.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa

from amends.config import Settings
from amends.errors import Conflict, InvalidInput
from amends.feedback.records import (
    Feedback,
    FeedbackChannel,
    FeedbackIn,
    Labels,
    Route,
    checked,
    get_feedback,
    is_high_rating,
    is_low_rating,
    store_feedback,
    truncated,
    update_feedback,
)
from amends.feedback.routing import route_feedback
from amends.feedback.sla import BusinessHours, ResponseSla
from amends.feedback.triage import load_triage
from amends.outreach.outbox import ChannelName, Draft, MessageKind, enqueue
from amends.outreach.service import Outreach
from amends.recover.actors import Actor
from amends.recover.audit import audit
from amends.recover.intake import Intake
from amends.store import UnitOfWork, tables

__all__ = ["FeedbackDesk", "Triager"]

log = logging.getLogger(__name__)

_RESPONSE_CHANNELS = {"email": ChannelName.EMAIL, "sms": ChannelName.WEBHOOK, "card": ChannelName.CARD}
# Answers given outside amends, recorded so the feedback counts as answered.
_RECORDED_CHANNELS = ("phone", "in_person", "public")
_CORRECTABLE = {
    "spam": ("true", "false"),
    "sentiment": ("negative", "neutral", "positive"),
    "urgency": ("low", "normal", "high"),
}


class Triager(Protocol):
    def triage_one(self, text: str) -> Any:
        """Labels (spam, spam_score, sentiment, sentiment_score, topic, urgency, model) and their reasons."""
        ...


@dataclass(frozen=True)
class FeedbackDesk:
    triage: Triager
    intake: Intake
    outreach: Outreach
    sla: ResponseSla
    editable_for: timedelta  # how long a page answer may be changed
    company: str
    alerts: bool = False  # an alert webhook is configured

    @classmethod
    def from_settings(
        cls, settings: Settings, *, intake: Intake, outreach: Outreach, triage: Triager | None = None
    ) -> FeedbackDesk:
        """The desk the settings describe, with the triage backend they name unless one is given. Raises
        ModelError or TaxonomyError (naming the setting) when the triage cannot be loaded, and InvalidInput for
        bad business hours."""
        if triage is None:
            triage = load_triage(
                settings.triage_backend,
                model_dir=settings.triage_model_dir,
                taxonomy_file=settings.triage_taxonomy_file,
                max_chars=settings.triage_max_chars,
            )
        hours = BusinessHours.parse(
            settings.business_hours, settings.business_timezone or settings.default_timezone, settings.business_holidays
        )
        return cls(
            triage=triage,
            intake=intake,
            outreach=outreach,
            sla=ResponseSla.parse(settings.response_sla, hours),
            editable_for=settings.feedback_editable_for,
            company=settings.company_name,
            alerts=settings.alert_webhook_url is not None,
        )

    # --- receiving ----------------------------------------------------------------------------------------

    def receive(self, uow: UnitOfWork, incoming: FeedbackIn, *, actor: Actor, now: datetime) -> tuple[Feedback, bool]:
        """Store, triage and route feedback; (the feedback, whether it is new). The same `dedup_key` again
        returns the stored feedback and changes nothing."""
        incoming = checked(incoming, now)
        labels, reasons = self._labels(incoming)
        feedback, new = store_feedback(uow, incoming, labels, reasons, now=now)
        if not new:
            return feedback, False
        routed = route_feedback(uow, feedback, intake=self.intake, sla=self.sla, actor=actor, now=now)
        audit(uow, actor, "feedback.received", f"feedback:{routed.id}", at=now, route=routed.route.value)
        return routed, True

    def retriage(self, uow: UnitOfWork, feedback: Feedback, *, actor: Actor, now: datetime) -> Feedback:
        """Label feedback whose words changed (the customer edited their answer on the page) and, if it now
        says the customer was let down where it did not before, route it again: to a reactive case. A route
        already taken (a case, a suggestion) stays; spam stays in quarantine until staff release it."""
        incoming = FeedbackIn(
            dedup_key=feedback.dedup_key,
            channel=feedback.channel,
            received_at=feedback.received_at,
            customer_id=feedback.customer_id,
            text=feedback.text or None,
            rating=feedback.rating,
            scale=feedback.scale,
            request_id=feedback.request_id,
        )
        labels, reasons = self._labels(incoming)
        relabelled = update_feedback(
            uow,
            feedback.id,
            spam=labels.spam,
            spam_score=float(labels.spam_score),
            sentiment=labels.sentiment,
            sentiment_score=float(labels.sentiment_score),
            topic=labels.topic,
            urgency=str(labels.urgency),
            reasons=reasons,
            model=labels.model,
            updated_at=now,
        )
        if feedback.route in (Route.NONE, Route.PRAISE) and not relabelled.spam:
            negative = relabelled.sentiment == "negative" or is_low_rating(relabelled.rating, relabelled.scale)
            if negative:
                return route_feedback(uow, relabelled, intake=self.intake, sla=self.sla, actor=actor, now=now)
        return relabelled

    def _labels(self, incoming: FeedbackIn) -> tuple[Labels, dict[str, Any]]:
        """Triage's labels and reasons for the feedback, with the desk's two rules: a customer we know is
        quarantined only for sure spam, and words with no opinion take the rating's."""
        labels: Labels = self.triage.triage_one(incoming.full_text) if incoming.full_text else _rating_only(incoming)
        reasons = dict(_reasons(labels))
        if labels.spam and _vouched_for(incoming) and labels.spam_score < _SURE_SPAM:
            # A customer we know, or one answering the link we sent them, is rarely a spammer, and quarantining
            # their words would leave them unanswered: only a text that is surely spam goes to quarantine.
            spam_made_it_low = any(
                isinstance(reason, Mapping) and reason.get("feature") == "spam" for reason in reasons.get("urgency", ())
            )
            labels = _Labels.of(labels, spam=False, urgency="normal" if spam_made_it_low else None)
            reasons["spam_rule"] = (
                f"a known customer or a feedback link: spam needs a score of {_SURE_SPAM:.2f} "
                f"(this one {labels.spam_score:.2f})"
            )
        if labels.sentiment == "neutral" and incoming.rating is not None and incoming.scale is not None:
            # Words with no opinion in them, and a rating that has one: the customer's own rating says it.
            said = "negative" if is_low_rating(incoming.rating, incoming.scale) else None
            said = "positive" if is_high_rating(incoming.rating, incoming.scale) else said
            if said is not None:
                labels = _Labels.of(labels, spam=labels.spam, sentiment=said)
                reasons["sentiment_rule"] = (
                    f"the text carries no clear opinion; the rating does ({incoming.rating} on {incoming.scale.value})"
                )
        return labels, reasons

    # --- answering ----------------------------------------------------------------------------------------

    def respond(
        self,
        uow: UnitOfWork,
        feedback_id: int,
        *,
        text: str,
        channel: str | None,
        actor: Actor,
        now: datetime,
        template_id: str | None = None,
    ) -> Feedback:
        """Answer the feedback: through outreach on email, sms or card (default: what the customer can receive),
        or record an answer given by phone, in person or publicly (under a review). Spam is not answered."""
        feedback = get_feedback(uow, feedback_id, for_update=True)
        if feedback.route is Route.SPAM:
            raise Conflict(f"feedback {feedback_id} is quarantined as spam; release it first if it is not")
        body = truncated(text)
        if body is None:
            raise InvalidInput("text", "must not be empty")
        if channel is not None and channel not in _RESPONSE_CHANNELS and channel not in _RECORDED_CHANNELS:
            allowed = ", ".join([*_RESPONSE_CHANNELS, *_RECORDED_CHANNELS])
            raise InvalidInput("channel", f"one of {allowed}; got {channel!r}")
        count = uow.execute(
            sa.select(sa.func.count())
            .select_from(tables.feedback_responses)
            .where(tables.feedback_responses.c.feedback_id == feedback_id)
        ).scalar_one()
        message_id = None
        used = channel
        if channel not in _RECORDED_CHANNELS:
            if feedback.customer_id is None:
                raise InvalidInput(
                    "channel", "this feedback names no customer to write to: answer publicly, by phone or in person"
                )
            message = self.outreach.answer(
                uow,
                feedback.customer_id,
                subject=f"Your feedback to {self.company}",
                text=body,
                key=f"feedback:{feedback_id}:response:{count + 1}",
                now=now,
                case_id=feedback.case_id,
                channel=None if channel is None else _RESPONSE_CHANNELS[channel],
            )
            message_id = message.id
            used = message.channel.value
        uow.execute(
            sa.insert(tables.feedback_responses).values(
                feedback_id=feedback_id,
                by_id=None if actor.staff is None else actor.staff.id,
                template_id=template_id,
                channel=used,
                text=body,
                message_id=message_id,
                at=now,
            )
        )
        audit(uow, actor, "feedback.answered", f"feedback:{feedback_id}", at=now, channel=used)
        if feedback.responded_at is not None:
            return update_feedback(uow, feedback_id, updated_at=now)
        return update_feedback(uow, feedback_id, responded_at=now, updated_at=now)

    # --- alerting -----------------------------------------------------------------------------------------

    def raise_alerts(self, uow: UnitOfWork, *, now: datetime, limit: int = 100) -> int:
        """Alert staff, once each, of feedback past its due time and not answered: a signed webhook to
        alert_webhook_url through the outbox. Without one, nothing is written (the queue shows what is
        overdue). Returns how many alerts were written."""
        if not self.alerts:
            return 0
        f = tables.feedback
        m = tables.messages
        key = sa.literal("feedback:") + sa.cast(f.c.id, sa.String) + sa.literal(":overdue")
        rows = uow.execute(
            sa.select(f)
            .where(
                f.c.responded_at.is_(None),
                f.c.due_at.is_not(None),
                f.c.due_at < now,
                ~sa.exists().where(m.c.key == key),
            )
            .order_by(f.c.due_at, f.c.id)
            .limit(limit)
        ).all()
        for row in rows:
            late = now - row.due_at
            enqueue(
                uow,
                Draft(
                    key=f"feedback:{row.id}:overdue",
                    channel=ChannelName.ALERT,
                    kind=MessageKind.ALERT,
                    recipient="staff",
                    subject=f"Feedback {row.id} is overdue: due {row.due_at:%Y-%m-%d %H:%M} UTC",
                    text=(
                        f"Feedback {row.id} ({row.channel}, {row.sentiment}, urgency {row.urgency}) from "
                        f"{row.customer_id or row.author or 'someone we cannot name'} has waited "
                        f"{_hours(late)} past its due time for an answer.\n\n{row.text[:500]}"
                    ),
                    customer_id=row.customer_id or "-",
                    case_id=row.case_id,
                ),
                now=now,
            )
        return len(rows)

    # --- correcting ---------------------------------------------------------------------------------------

    def correct(
        self, uow: UnitOfWork, feedback_id: int, *, field: str, value: str, actor: Actor, now: datetime
    ) -> Feedback:
        """A staff correction of a triage label, kept for training (`amends triage train`). Releasing spam
        (spam false) routes the feedback as if it had never been quarantined; marking it spam quarantines it
        (a case it opened stays: it is a person's work now)."""
        feedback = get_feedback(uow, feedback_id, for_update=True)
        if field == "topic":
            new = value.strip().lower() or None
            if new is not None and len(new) > 50:
                raise InvalidInput("value", "a topic is at most 50 characters")
        elif field in _CORRECTABLE:
            new = value.strip().lower()
            if new not in _CORRECTABLE[field]:
                raise InvalidInput("value", f"{field} is one of {', '.join(_CORRECTABLE[field])}; got {value!r}")
        else:
            raise InvalidInput("field", f"one of spam, sentiment, topic, urgency; got {field!r}")
        old = getattr(feedback, field)
        old_text = None if old is None else str(old).lower()
        if old_text == new:
            return feedback
        uow.execute(
            sa.insert(tables.triage_corrections).values(
                feedback_id=feedback_id,
                field=field,
                old_value=old_text,
                new_value=new,
                by_id=actor.staff.id if actor.staff is not None else actor.key_id,
                at=now,
            )
        )
        audit(uow, actor, "feedback.corrected", f"feedback:{feedback_id}", at=now, field=field, old=old_text, new=new)
        stored: Any = (new == "true") if field == "spam" else new
        corrected = update_feedback(uow, feedback_id, **{field: stored}, updated_at=now)
        if field == "spam":
            if stored:
                return update_feedback(uow, feedback_id, route=Route.SPAM.value, due_at=None, updated_at=now)
            return route_feedback(uow, corrected, intake=self.intake, sla=self.sla, actor=actor, now=now)
        return corrected


_SURE_SPAM = 0.9
_ANONYMOUS = (FeedbackChannel.WEB_COMMENT, FeedbackChannel.REVIEW)


def _vouched_for(incoming: FeedbackIn) -> bool:
    """Feedback from a customer we can name, not posted anonymously on the web, or answering our link."""
    if incoming.request_id is not None:
        return True
    return incoming.customer_id is not None and incoming.channel not in _ANONYMOUS


@dataclass(frozen=True, slots=True)
class _Labels:
    spam: bool
    spam_score: float
    sentiment: str
    sentiment_score: float
    topic: str | None
    urgency: str
    model: str

    @classmethod
    def of(cls, labels: Labels, *, spam: bool, urgency: str | None = None, sentiment: str | None = None) -> _Labels:
        return cls(
            spam,
            labels.spam_score,
            sentiment or labels.sentiment,
            labels.sentiment_score,
            labels.topic,
            urgency or str(labels.urgency),
            labels.model,
        )


def _rating_only(incoming: FeedbackIn) -> _Labels:
    """The labels of a rating with no words: nothing to call spam, the sentiment a low rating says."""
    low = is_low_rating(incoming.rating, incoming.scale)
    return _Labels(
        spam=False,
        spam_score=0.0,
        sentiment="negative" if low else "neutral",
        sentiment_score=-0.5 if low else 0.0,
        topic=None,
        urgency="normal",
        model="rating",
    )


def _hours(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return (
        f"{hours:.0f} hour{'s' if round(hours) != 1 else ''}"
        if hours >= 1
        else f"{span.total_seconds() / 60:.0f} minutes"
    )


def _reasons(labels: Labels) -> Mapping[str, Any]:
    reasons = getattr(labels, "reasons", None)
    if reasons is None:
        return {}
    if dataclasses.is_dataclass(reasons) and not isinstance(reasons, type):
        return dataclasses.asdict(reasons)
    if isinstance(reasons, Mapping):
        return {str(key): value for key, value in reasons.items()}
    return {"all": reasons}
