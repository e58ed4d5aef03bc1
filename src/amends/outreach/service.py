"""Outreach as a part of a running process: the messages a case sends, written in the same transaction as the
decision that causes them (docs/outreach.md).

- Sending the apology (completing `empathise`) writes the apology: the draft as staff left it, or the
  template's text for the case.
- A remedy granted or approved writes its confirmation (`lessen_inconvenience`), naming what was granted.
- Resolving the case schedules the follow-up (`manage_memory`) and the thank-you (`extend_experience`) for
  when their steps fall due; reopening it cancels them if they have not gone.

Each message goes on the channel the customer can receive: their preference, else email, else a text
through the webhook, else a hand-written card (with no postal address, the card is a task for staff to reach
the customer another way). The contact policy decides when it may go, and whether at all.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from markupsafe import escape

from amends.config import Settings
from amends.errors import InvalidInput
from amends.outreach.contact import ContactPolicy, QuietHours, Timing
from amends.outreach.links import Links
from amends.outreach.outbox import ChannelName, Draft, Message, MessageKind, cancel_pending, enqueue
from amends.outreach.profiles import CustomerProfile, customer_profile
from amends.outreach.templates import (
    ASK_FEEDBACK,
    CompanyContext,
    IncidentContext,
    MessageContext,
    RemedyContext,
    Rendered,
    Template,
    TemplateSet,
    format_amount,
    format_money,
    incident_context,
    load_templates,
    primary_language,
    render,
    shipped_templates,
    with_shipped_asking,
)
from amends.recover import cases as work
from amends.recover.actors import Actor
from amends.recover.cases import Case, CaseStep, load_case
from amends.recover.holdout import refuse_if_withheld
from amends.recover.playbooks import Playbook, StepKind
from amends.recover.policy import RemedyPolicy
from amends.recover.remedies import LedgerEntry
from amends.recover.staff import get_staff
from amends.store import UnitOfWork, tables

__all__ = ["Composed", "Outreach", "contact_channel_of"]

log = logging.getLogger(__name__)

_incidents = tables.incidents
_case_incidents = tables.case_incidents
_messages = tables.messages

# The step each kind of message is written for.
_STEP_OF = {
    MessageKind.APOLOGY: StepKind.EMPATHISE,
    MessageKind.REMEDY: StepKind.LESSEN_INCONVENIENCE,
    MessageKind.FOLLOW_UP: StepKind.MANAGE_MEMORY,
    MessageKind.THANK_YOU: StepKind.EXTEND_EXPERIENCE,
}
# A case's contact channels (recover/cases.py) that amends delivers itself, and the outbox channel of each;
# the others (phone, chat, in person) staff use themselves, and amends only records.
_DELIVERED = {"email": ChannelName.EMAIL, "sms": ChannelName.WEBHOOK, "letter": ChannelName.CARD}
_CONTACT_OF = {outbox: contact for contact, outbox in _DELIVERED.items()}
_PROFILE_CHANNEL = {"email": ChannelName.EMAIL, "sms": ChannelName.WEBHOOK, "card": ChannelName.CARD}


@dataclass(frozen=True, slots=True)
class Composed:
    """A message written for a case: what it says, in which template and language, and where it goes.
    `recipient` is empty for a card with no postal address (a task for staff)."""

    kind: MessageKind
    template_id: str
    language: str
    rendered: Rendered
    channel: ChannelName
    recipient: str
    profile: CustomerProfile


def contact_channel_of(channel: ChannelName) -> str:
    """The case contact channel a message on this outbox channel is recorded as."""
    return _CONTACT_OF.get(channel, "other")


@dataclass(frozen=True)
class Outreach:
    templates: TemplateSet
    policy: ContactPolicy
    links: Links
    remedies: RemedyPolicy
    company: CompanyContext
    profile_events: tuple[str, ...]
    contact_events: tuple[str, ...]
    default_language: str
    sms_enabled: bool  # a webhook for texts is configured

    @classmethod
    def from_settings(cls, settings: Settings, remedies: RemedyPolicy) -> Outreach:
        """Raises TemplateSetError or InvalidInput (a setting named) when what the settings name has problems."""
        templates = load_templates([settings.templates_dir]) if settings.templates_dir else shipped_templates()
        templates = with_shipped_asking(templates)
        quiet = QuietHours.parse(settings.quiet_hours) if settings.quiet_hours else None
        policy = ContactPolicy(settings.contact_cap, settings.contact_window, quiet, settings.default_timezone)
        if settings.secret_key is not None or settings.environment == "production":
            secret = settings.require_secret_key().get_secret_value()
        else:  # development without `amends init`: links last as long as the process
            log.warning("no secret_key is set: unsubscribe links will stop working when this process ends")
            secret = secrets.token_urlsafe(32)
        company = CompanyContext(
            name=settings.company_name,
            signature=settings.company_signature or f"The care team at {settings.company_name}",
        )
        return cls(
            templates=templates,
            policy=policy,
            links=Links(secret, settings.base_url),
            remedies=remedies,
            company=company,
            profile_events=settings.profile_event_types,
            contact_events=settings.contact_event_types,
            default_language=settings.default_language,
            sms_enabled=settings.webhook_url is not None,
        )

    # --- writing ------------------------------------------------------------------------------------------

    def compose(
        self,
        uow: UnitOfWork,
        case: Case,
        kind: MessageKind,
        *,
        now: datetime,
        remedy: LedgerEntry | None = None,
        template_id: str | None = None,
        language: str | None = None,
        channel: ChannelName | None = None,
    ) -> Composed:
        """Write the message of `kind` for the case with its template (the one given, else the most specific
        for the case's rule and the customer's language). InvalidInput if no template fits or it cannot be
        rendered with the case's facts (a template's check prevents that for shipped and loaded sets)."""
        step = _STEP_OF.get(kind)
        if step is None:
            raise InvalidInput("kind", f"no template step writes a {kind.value} message")
        profile = customer_profile(uow, case.customer_id, event_types=self.profile_events)
        incident, rule_id = self._incident(uow, case, None if remedy is None else remedy.incident_id)
        context = self._context(uow, case, profile, incident, remedy, language, now)
        template = self._template(step, rule_id, context, template_id)
        chosen = self.channel_for(profile, channel)
        recipient = _recipient(profile, chosen)
        return Composed(
            kind, template.id, context["customer"]["language"], render(template, context), chosen, recipient, profile
        )

    def channel_for(self, profile: CustomerProfile, requested: ChannelName | None = None) -> ChannelName:
        """The channel to reach the customer on: the one asked for, if the customer can receive it; else
        their preference; else email, a text, a card, in that order. A card without an address is a task."""
        if requested is not None:
            # A card can always be asked for: without an address, it is a task for staff to reach them.
            if requested is not ChannelName.CARD and not _reachable(profile, requested, self.sms_enabled):
                raise InvalidInput("channel", f"the customer cannot be reached by {requested.value}: {_why(requested)}")
            return requested
        preferred = _PROFILE_CHANNEL.get(profile.channel or "")
        if preferred is not None and _reachable(profile, preferred, self.sms_enabled):
            return preferred
        for option in (ChannelName.EMAIL, ChannelName.WEBHOOK, ChannelName.CARD):
            if _reachable(profile, option, self.sms_enabled):
                return option
        return ChannelName.CARD

    def send(
        self,
        uow: UnitOfWork,
        case: Case,
        kind: MessageKind,
        *,
        now: datetime,
        key: str,
        text: str | None = None,
        remedy: LedgerEntry | None = None,
        channel: ChannelName | None = None,
        due: datetime | None = None,
        proactive: bool | None = None,
    ) -> Message:
        """Write the message and put it in the outbox, in the caller's transaction, under the contact policy
        (see `put`)."""
        composed = self.compose(uow, case, kind, now=now, remedy=remedy, channel=channel)
        return self.put(uow, case, composed, now=now, key=key, text=text, due=due, proactive=proactive)

    def put(
        self,
        uow: UnitOfWork,
        case: Case,
        composed: Composed,
        *,
        now: datetime,
        key: str,
        text: str | None = None,
        due: datetime | None = None,
        proactive: bool | None = None,
    ) -> Message:
        """Put a composed message in the outbox, in the caller's transaction, under the contact policy. `text`
        replaces the template's text (staff edited the draft). `due`: not before then (a follow-up).
        `proactive`: whether we write unasked; by default, unless the customer has spoken on the case (first, by
        a complaint, or later, by a reply to us) or contacted us about what it is about (`contacted_about`): then
        we are answering someone who wrote."""
        rendered = composed.rendered
        if text is not None and text.strip() != rendered.text.strip():
            rendered = Rendered(rendered.subject, text, _html_of(text))
        answered: str | None = None
        if proactive is None:
            spoke = case.customer_spoke_at is not None
            contact = None if spoke else contacted_about(uow, case, self.contact_events, now=now)
            proactive = not spoke and contact is None
            if contact is not None:
                answered = f"an answer, not proactive: the customer contacted us about it ({contact})"
        refuse_if_withheld(case, f"sending the {composed.kind}")
        timing = self.policy.timing(
            uow,
            case.customer_id,
            channel=composed.channel,
            proactive=proactive,
            timezone=composed.profile.timezone,
            at=max(due or now, now),
        )
        if answered is not None:
            timing = replace(timing, note="; ".join(filter(None, [answered, timing.note])))
        draft = self._draft(case, composed, rendered, key=key, due=due, timing=timing)
        message, new = enqueue(uow, draft, now=now)
        if new:
            log.debug("outreach: %s for case %d on %s (%s)", composed.kind, case.id, message.channel, message.status)
        return message

    def answer(
        self,
        uow: UnitOfWork,
        customer_id: str,
        *,
        subject: str,
        text: str,
        key: str,
        now: datetime,
        case_id: int | None = None,
        channel: ChannelName | None = None,
    ) -> Message:
        """Answer a customer who wrote to us (their feedback, a reply), in the caller's transaction: written as
        given, on the channel they can receive, never proactive (no cap, no quiet hours; an opt-out still
        withholds it). `key` makes a retry the same message."""
        profile = customer_profile(uow, customer_id, event_types=self.profile_events)
        chosen = self.channel_for(profile, channel)
        recipient = _recipient(profile, chosen)
        note = None
        if chosen is ChannelName.CARD and not recipient:
            recipient = profile.name or customer_id  # the name alone: a card task with no address
            note = "no email, phone or postal address: reach the customer another way"
        timing = self.policy.timing(
            uow, customer_id, channel=chosen, proactive=False, timezone=profile.timezone, at=now
        )
        headers = self._unsubscribe_headers(chosen, customer_id)
        draft = Draft(
            key=key,
            channel=chosen,
            kind=MessageKind.REPLY,
            recipient=recipient,
            subject=subject,
            text=text,
            html=_html_of(text) if chosen is ChannelName.EMAIL else None,
            headers=headers,
            case_id=case_id,
            customer_id=customer_id,
            not_before=timing.not_before,
            note="; ".join(filter(None, [note, timing.note])) or None,
            withheld=timing.withheld,
        )
        message, _new = enqueue(uow, draft, now=now)
        return message

    def ask_for_feedback(
        self,
        uow: UnitOfWork,
        customer_id: str,
        *,
        url: str,
        reference: str | None,
        expires_at: datetime,
        language: str | None,
        key: str,
        now: datetime,
        case_id: int | None = None,
    ) -> Message | None:
        """Send the link of a feedback request (the ask_feedback template in the customer's language), in the
        caller's transaction. It is proactive: the cap and quiet hours apply, an opt-out withholds it. It goes
        by email, else by text; None when the customer has neither (a link is no use on a hand-written card:
        the request's link can still be printed, on an invoice, say). `key` makes a retry the same message."""
        profile = customer_profile(uow, customer_id, event_types=self.profile_events)
        chosen = next(
            (c for c in (ChannelName.EMAIL, ChannelName.WEBHOOK) if _reachable(profile, c, self.sms_enabled)), None
        )
        preferred = _PROFILE_CHANNEL.get(profile.channel or "")
        if preferred in (ChannelName.EMAIL, ChannelName.WEBHOOK) and _reachable(profile, preferred, self.sms_enabled):
            chosen = preferred
        if chosen is None:
            return None
        language = language or profile.language or self.default_language
        context = MessageContext(
            customer={"id": customer_id, "name": profile.name, "language": language, "timezone": profile.timezone},
            company=self.company,
            case=None,
            incident=None,
            remedy=None,
            request={"reference": reference, "expires_at": expires_at},
            links={"feedback": url, "unsubscribe": self.links.unsubscribe_url(customer_id)},
            now=now,
        )
        template = self.templates.choose(step=ASK_FEEDBACK, rule_id=None, language=language, facts=context)
        if template is None:
            raise InvalidInput("template", f"no {ASK_FEEDBACK} template fits (the shipped ones stand in for none)")
        rendered = render(template, context)
        timing = self.policy.timing(uow, customer_id, channel=chosen, proactive=True, timezone=profile.timezone, at=now)
        headers = self._unsubscribe_headers(chosen, customer_id)
        draft = Draft(
            key=key,
            channel=chosen,
            kind=MessageKind.FEEDBACK_REQUEST,
            recipient=_recipient(profile, chosen),
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html if chosen is ChannelName.EMAIL else None,
            headers=headers,
            case_id=case_id,
            customer_id=customer_id,
            not_before=timing.not_before,
            note=timing.note,
            withheld=timing.withheld,
        )
        message, _new = enqueue(uow, draft, now=now)
        return message

    def confirm_remedy(self, uow: UnitOfWork, entry: LedgerEntry, *, now: datetime) -> Message | None:
        """The confirmation of a remedy just granted or approved; None for a remedy with nothing to confirm
        (an apology only, a reversal)."""
        if entry.reverses_id is not None or entry.amount <= 0 or not self._has_amount(entry.kind):
            return None
        case = load_case(uow, entry.case_id)
        return self.send(uow, case, MessageKind.REMEDY, now=now, key=f"ledger:{entry.id}:remedy", remedy=entry)

    def schedule_after_resolving(
        self, uow: UnitOfWork, case_id: int, due: Mapping[StepKind, datetime | None], *, now: datetime
    ) -> list[Message]:
        """The follow-up and the thank-you of a case just resolved, each for when its step is due. A reopened
        case schedules them anew (a new key for each resolution)."""
        case = load_case(uow, case_id)
        profile = customer_profile(uow, case.customer_id, event_types=self.profile_events)
        # A thank-you is best hand-written: a card where the customer has an address, else what reaches them.
        card = ChannelName.CARD if _reachable(profile, ChannelName.CARD, self.sms_enabled) else None
        scheduled: list[Message] = []
        for kind, step in (
            (MessageKind.FOLLOW_UP, StepKind.MANAGE_MEMORY),
            (MessageKind.THANK_YOU, StepKind.EXTEND_EXPERIENCE),
        ):
            if step not in due:
                continue  # the playbook has no such step
            key = f"case:{case.id}:r{case.reopened}:{kind.value}"
            channel = card if kind is MessageKind.THANK_YOU else None
            scheduled.append(
                self.send(uow, case, kind, now=now, key=key, due=due[step], channel=channel, proactive=True)
            )
        return scheduled

    def cancel_scheduled(
        self,
        uow: UnitOfWork,
        case_id: int,
        *,
        reason: str,
        now: datetime,
        kinds: tuple[MessageKind, ...] = (MessageKind.FOLLOW_UP, MessageKind.THANK_YOU),
    ) -> list[Message]:
        """Cancel the case's scheduled messages that have not gone (the case was reopened, or staff followed up
        themselves)."""
        return cancel_pending(uow, case_id=case_id, kinds=kinds, note=f"not sent: {reason}", now=now)

    # --- the work on a case that writes to the customer -----------------------------------------------------

    def apologise(
        self,
        uow: UnitOfWork,
        case_id: int,
        *,
        actor: Actor,
        now: datetime,
        text: str | None = None,
        channel: str | None = None,
        note: str | None = None,
    ) -> tuple[CaseStep, Message | None]:
        """Complete the empathise step and, on a channel amends delivers (email, sms, letter), send the
        apology: `text`, else the saved draft, else the template's text. Without a channel, the one the customer
        can receive. On a channel staff use themselves (phone, in person), it is only recorded."""
        case = work.visible_case(uow, case_id, actor)
        refuse_if_withheld(case, "apologising")
        composed = None
        if channel is None or channel in _DELIVERED:
            wanted = None if channel is None else _DELIVERED[channel]
            composed = self.compose(uow, case, MessageKind.APOLOGY, now=now, channel=wanted)
            channel = contact_channel_of(composed.channel)
            if text is None and _draft_of(uow, case_id) is None:
                text = composed.rendered.text
        outcome = {} if text is None else {"text": text}
        step = work.complete_step(
            uow, case_id, StepKind.EMPATHISE, actor=actor, now=now, note=note, outcome=outcome, channel=channel
        )
        if composed is None:
            return step, None
        sent = str((step.outcome or {}).get("text") or "")
        return step, self.put(uow, case, composed, now=now, key=f"case:{case.id}:apology", text=sent)

    def resolve(
        self, uow: UnitOfWork, case_id: int, *, resolution: str, actor: Actor, now: datetime, playbook: Playbook
    ) -> Case:
        """Resolve the case and schedule its follow-up and thank-you for when their steps fall due."""
        case = work.resolve_case(uow, case_id, resolution=resolution, actor=actor, now=now, playbook=playbook)
        due = {
            step.kind: step.due_at
            for step in work.load_steps(uow, case_id)
            if step.completed_at is None and step.due_at is not None
        }
        self.schedule_after_resolving(uow, case_id, due, now=now)
        return case

    def reopen(
        self, uow: UnitOfWork, case_id: int, *, reason: str, actor: Actor, now: datetime, playbook: Playbook
    ) -> Case:
        """Reopen the case; the follow-up and thank-you that have not gone are cancelled (the next resolution
        schedules them anew)."""
        case = work.reopen_case(uow, case_id, reason=reason, actor=actor, now=now, playbook=playbook)
        self.cancel_scheduled(uow, case_id, reason="the case was reopened", now=now)
        return case

    def complete_later_step(
        self,
        uow: UnitOfWork,
        case_id: int,
        kind: StepKind,
        *,
        actor: Actor,
        now: datetime,
        note: str | None,
        outcome: Mapping[str, Any],
        channel: str | None,
    ) -> CaseStep:
        """Complete the follow-up or the thank-you by hand (staff called, or wrote the card themselves): the
        scheduled message of that step that has not gone is cancelled."""
        step = work.complete_step(uow, case_id, kind, actor=actor, now=now, note=note, outcome=outcome, channel=channel)
        kinds = tuple(message for message, of in _STEP_OF.items() if of is kind)
        done_by = "" if actor.staff is None else f" by {actor.staff.id}"
        self.cancel_scheduled(uow, case_id, reason=f"the step was completed{done_by} without it", now=now, kinds=kinds)
        return step

    # --- parts --------------------------------------------------------------------------------------------

    def _has_amount(self, kind_id: str) -> bool:
        kind = self.remedies.kinds.get(kind_id)
        return kind is None or kind.needs_amount

    def _incident(
        self, uow: UnitOfWork, case: Case, incident_id: int | None
    ) -> tuple[IncidentContext | None, str | None]:
        i, ci = _incidents, _case_incidents
        query = sa.select(i).join(ci, ci.c.incident_id == i.c.id).where(ci.c.case_id == case.id)
        if incident_id is not None:
            query = query.where(i.c.id == incident_id)
        row = uow.execute(query.order_by(ci.c.joined_at, i.c.id).limit(1)).first()
        if row is None:
            return None, None
        context = incident_context(
            rule_id=row.rule_id, key=row.key, severity=row.severity, failure_at=row.failure_at, facts=row.facts
        )
        return context, row.rule_id

    def _context(
        self,
        uow: UnitOfWork,
        case: Case,
        profile: CustomerProfile,
        incident: IncidentContext | None,
        remedy: LedgerEntry | None,
        language: str | None,
        now: datetime,
    ) -> MessageContext:
        language = language or profile.language or self.default_language
        owner = None if case.owner_id is None else get_staff(uow, case.owner_id).name
        return MessageContext(
            customer={"id": case.customer_id, "name": profile.name, "language": language, "timezone": profile.timezone},
            company=self.company,
            case={"id": case.id, "opened_at": case.opened_at, "playbook": case.playbook, "owner_name": owner},
            incident=incident,
            remedy=None if remedy is None else self._remedy(remedy, primary_language(language)),
            request=None,
            links={"feedback": None, "unsubscribe": self.links.unsubscribe_url(case.customer_id)},
            now=now,
        )

    def _remedy(self, entry: LedgerEntry, language: str) -> RemedyContext:
        kind = self.remedies.kinds.get(entry.kind)
        label = kind.label if kind is not None else entry.kind
        if entry.amount <= 0:
            return RemedyContext(kind=entry.kind, label=label, amount=Decimal(0), unit=None, text="")
        if entry.unit == self.remedies.currency:
            text = format_money(entry.amount, entry.unit, language)
        else:
            text = f"{format_amount(entry.amount, language)} {entry.unit}"
        return RemedyContext(kind=entry.kind, label=label, amount=entry.amount, unit=entry.unit, text=text)

    def _template(
        self, step: StepKind, rule_id: str | None, context: MessageContext, template_id: str | None
    ) -> Template:
        facts: Mapping[str, Any] = context
        if template_id is not None:
            template = self.templates.get(template_id)
            if template is None:
                raise InvalidInput("template", f"no template {template_id!r}")
            if template.step != step.value:
                raise InvalidInput("template", f"{template_id!r} is for {template.step}, not {step.value}")
            return template
        chosen = self.templates.choose(
            step=step.value, rule_id=rule_id, language=context["customer"]["language"], facts=facts
        )
        if chosen is None:
            raise InvalidInput("template", f"no template for {step.value} fits this case (every set has a generic one)")
        return chosen

    def _unsubscribe_headers(self, channel: ChannelName, customer_id: str) -> dict[str, str]:
        """An email's List-Unsubscribe header: the customer's signed link (other channels have none)."""
        if channel is not ChannelName.EMAIL:
            return {}
        return {"List-Unsubscribe": f"<{self.links.unsubscribe_url(customer_id)}>"}

    def _draft(
        self, case: Case, composed: Composed, rendered: Rendered, *, key: str, due: datetime | None, timing: Timing
    ) -> Draft:
        headers = self._unsubscribe_headers(composed.channel, case.customer_id)
        recipient = composed.recipient
        note = timing.note
        if composed.channel is ChannelName.CARD and not recipient:
            recipient = composed.profile.name or case.customer_id  # the name alone: a card task with no address
            note = "; ".join(filter(None, [note, "no email, phone or postal address: reach the customer another way"]))
        return Draft(
            key=key,
            channel=composed.channel,
            kind=composed.kind,
            recipient=recipient,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html if composed.channel is ChannelName.EMAIL else None,
            headers=headers,
            case_id=case.id,
            customer_id=case.customer_id,
            not_before=timing.not_before or due,
            note=note,
            withheld=timing.withheld,
        )


# Keys of event data that name a thing (an order, a booking, a job, a bag, a vehicle), not a quality of it.
_REFERENCE_SUFFIXES = ("_id", "_ref", "_tag", "_no", "_number")
_MAX_CONTACTS = 500


def contacted_about(uow: UnitOfWork, case: Case, event_types: Sequence[str], *, now: datetime) -> str | None:
    """Whether the customer contacted us about what the case is about, after it went wrong and before `now`:
    an event of theirs of one of `event_types` (a support contact, a complaint) whose data names a thing one of
    the case's incidents names, under the same key (`booking_ref`, `order_id`, `bag_tag`: keys ending in
    _id, _ref, _tag, _no or _number). Says which event ("support.contact at 2025-03-01 16:20 UTC, booking_ref
    K7Q2ZD"), or None."""
    if not event_types:
        return None
    incidents = uow.execute(
        sa.select(tables.incidents.c.failure_at, tables.incidents.c.facts)
        .join(tables.case_incidents, tables.case_incidents.c.incident_id == tables.incidents.c.id)
        .where(tables.case_incidents.c.case_id == case.id)
    ).all()
    if not incidents:
        return None
    named: dict[str, set[str]] = {}
    for incident in incidents:
        _references(incident.facts, named)
    if not named:
        return None
    since = min(incident.failure_at for incident in incidents)
    events = tables.events
    rows = uow.execute(
        sa.select(events.c.type, events.c.time, events.c.data)
        .where(
            events.c.subject == case.customer_id,
            events.c.type.in_(list(event_types)),
            events.c.time >= since,
            events.c.time <= now,
        )
        .order_by(events.c.time, events.c.seq)
        .limit(_MAX_CONTACTS)
    )
    for row in rows:
        found: dict[str, set[str]] = {}
        _references(row.data, found)
        for name, values in found.items():
            same = values & named.get(name, set())
            if same:
                return f"{row.type} at {row.time:%Y-%m-%d %H:%M} UTC, {name} {min(same)}"
    return None


def _references(value: Any, into: dict[str, set[str]], depth: int = 0) -> None:
    """Collect the reference-like keys and their values anywhere in `value` (a few levels deep)."""
    if depth > 4 or not isinstance(value, Mapping):
        return
    for name, item in value.items():
        if isinstance(item, Mapping):
            _references(item, into, depth + 1)
        elif (
            isinstance(name, str)
            and name.endswith(_REFERENCE_SUFFIXES)
            and isinstance(item, str | int)
            and not isinstance(item, bool)
            and str(item).strip()
        ):
            into.setdefault(name, set()).add(str(item).strip())


def _reachable(profile: CustomerProfile, channel: ChannelName, sms_enabled: bool) -> bool:
    if channel is ChannelName.EMAIL:
        return profile.email is not None
    if channel is ChannelName.WEBHOOK:
        return sms_enabled and profile.phone is not None
    if channel is ChannelName.CARD:
        return bool(profile.address)
    return False


def _why(channel: ChannelName) -> str:
    return {
        ChannelName.EMAIL: "no usable email address in their profile",
        ChannelName.WEBHOOK: "no usable phone number in their profile, or no webhook for texts is configured",
        ChannelName.CARD: "no postal address in their profile",
    }.get(channel, "amends does not write on this channel")


def _recipient(profile: CustomerProfile, channel: ChannelName) -> str:
    if channel is ChannelName.EMAIL and profile.email is not None:
        return profile.email
    if channel is ChannelName.WEBHOOK and profile.phone is not None:
        return profile.phone
    if channel is ChannelName.CARD:
        return profile.postal_block
    return ""


def _html_of(text: str) -> str:
    """Plain text as HTML: each paragraph a <p>, line breaks kept, everything escaped."""
    paragraphs = [part.strip() for part in text.replace("\r\n", "\n").split("\n\n") if part.strip()]
    return "\n".join(f"<p>{escape(part)}</p>".replace("\n", "<br>\n") for part in paragraphs)


def _draft_of(uow: UnitOfWork, case_id: int) -> str | None:
    step = next((step for step in work.load_steps(uow, case_id) if step.kind is StepKind.EMPATHISE), None)
    return None if step is None else step.draft
