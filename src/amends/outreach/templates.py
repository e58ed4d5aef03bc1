"""Message templates: what the apology, the remedy confirmation, the follow-up and the thank-you say, per
playbook step, per rule and per language, in the customer's own terms (DESIGN §1 A, C, F; §4 "Message";
docs/outreach.md, "Templates").

Templates are Jinja2 in a sandbox (no template reaches Python's internals), HTML parts autoescaped, text
parts not. A set of template files is checked whole when it is loaded, so that a template which could fail
on a real case fails its check instead of the customer's message: every fact it reads is always in the
context or listed under `requires`, and it renders against an example context. A set with any problem
loads nothing.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Annotated, Any, NamedTuple, TypedDict
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
import yaml
from jinja2 import meta, nodes, pass_context
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from amends.detect import RuleSet
from amends.errors import InvalidInput
from amends.outreach.packs import TEMPLATES_DIR
from amends.recover.playbooks import StepKind
from amends.yamldoc import (
    FileProblem,
    FileProblemsError,
    FileReport,
    Lines,
    parse_yaml,
    pydantic_reason,
    read_sources,
)

__all__ = [
    "ASK_FEEDBACK",
    "DEFAULT_LANGUAGE",
    "STEPS",
    "CaseContext",
    "CompanyContext",
    "CustomerContext",
    "IncidentContext",
    "LinksContext",
    "MessageContext",
    "RemedyContext",
    "Rendered",
    "RequestContext",
    "Template",
    "TemplateRenderError",
    "TemplateSet",
    "TemplateSetError",
    "format_amount",
    "format_day",
    "format_minutes",
    "format_money",
    "incident_context",
    "load_templates",
    "parse_templates",
    "preview_context",
    "primary_language",
    "render",
    "shipped_templates",
    "unknown_rules",
    "with_shipped_asking",
]

DEFAULT_LANGUAGE = "en"

# The message that carries a feedback request's link (feedback/requests.py). It is about an interaction (an
# invoice, a finished service), not a case: its templates read `request`, and case, incident and remedy are None.
ASK_FEEDBACK = "ask_feedback"
# The steps that write to the customer. take_ownership is work inside the company: it sends nothing.
STEPS: tuple[str, ...] = (
    StepKind.EMPATHISE.value,  # the apology
    StepKind.LESSEN_INCONVENIENCE.value,  # the remedy confirmation
    StepKind.MANAGE_MEMORY.value,  # the follow-up: did we make it right?
    StepKind.EXTEND_EXPERIENCE.value,  # the thank-you card or the invitation to return
    ASK_FEEDBACK,  # the link to a feedback request's page
)
_REMEDY_STEP = StepKind.LESSEN_INCONVENIENCE.value
_CASE_NAMES = ("case", "incident", "remedy")  # None in an ask_feedback message


# --- the context a template is rendered with ------------------------------------------------------------


class CustomerContext(TypedDict):
    id: str
    name: str | None
    language: str  # a BCP 47 tag; templates are chosen by its primary subtag
    timezone: str | None  # an IANA zone such as "Europe/Berlin"; `day` counts days in it (UTC without one)


class CompanyContext(TypedDict):
    name: str
    signature: str  # how messages are signed: "The care team at Example Air"


class CaseContext(TypedDict):
    id: int
    opened_at: datetime
    playbook: str
    owner_name: str | None


class IncidentContext(TypedDict):
    rule_id: str
    failure_at: datetime
    severity: int
    key: str
    data: Mapping[str, Any]  # the data of the event the incident is about (see `incident_context`)
    first_data: Mapping[str, Any]  # a sequence rule's first event's data; empty for other rules
    risk: float | None  # a risk rule's calibrated risk at the moment (the case is a check-in); None for other rules


class RemedyContext(TypedDict):
    kind: str  # the policy's kind: miles, credit, refund, voucher, ...
    label: str  # the policy's label: "Miles"
    amount: Decimal  # 0 for a remedy without an amount (an apology only)
    unit: str | None  # EUR, miles; None for a remedy without an amount
    text: str  # the amount in words, in the customer's language: "6,000 miles", "€25.00"; "" without an amount


class RequestContext(TypedDict):
    reference: str | None  # what it asks about, in the company's words: "order O-00012345"; None if nothing
    expires_at: datetime  # when the link stops working


class LinksContext(TypedDict):
    feedback: str | None
    unsubscribe: str | None


class MessageContext(TypedDict):
    """Everything a template can read. `incident` is None for a case no incident opened (a complaint);
    `remedy` is None except for the remedy confirmation (step lessen_inconvenience); `request` is None except
    for a feedback request's message (step ask_feedback), where case, incident and remedy are None."""

    customer: CustomerContext
    company: CompanyContext
    case: CaseContext | None
    incident: IncidentContext | None
    remedy: RemedyContext | None
    request: RequestContext | None
    links: LinksContext
    now: datetime  # when the message is written: `day` says "yesterday" relative to it


# The fields of each name of the context; None: a value with no fields of ours (a datetime).
_CONTEXT: Mapping[str, frozenset[str] | None] = MappingProxyType(
    {
        "customer": frozenset(CustomerContext.__annotations__),
        "company": frozenset(CompanyContext.__annotations__),
        "case": frozenset(CaseContext.__annotations__),
        "incident": frozenset(IncidentContext.__annotations__),
        "remedy": frozenset(RemedyContext.__annotations__),
        "request": frozenset(RequestContext.__annotations__),
        "links": frozenset(LinksContext.__annotations__),
        "now": None,
    }
)
_FACTS = ("data", "first_data")  # the incident's mappings of arbitrary facts


def incident_context(
    *, rule_id: str, key: str, severity: int, failure_at: datetime, facts: Mapping[str, Any]
) -> IncidentContext:
    """The `incident` of a context, from an incident's facts as the evaluators write them.

    A match or absence rule's facts carry the event's data (for an absence rule, the event that started the
    wait); a sequence rule's carry `first_data` and `then_data`, and `data` is then the second event's; a
    count rule's carry the count and the window, which `data` holds as `count` and `within`. A risk rule's carry
    the moment event's data and the risk, which `risk` holds.
    """
    first: Mapping[str, Any] = {}
    if isinstance(facts.get("data"), Mapping):
        data: Mapping[str, Any] = facts["data"]
    elif isinstance(facts.get("then_data"), Mapping):
        data = facts["then_data"]
        first = facts["first_data"] if isinstance(facts.get("first_data"), Mapping) else {}
    else:
        data = {name: facts[name] for name in ("count", "within") if name in facts}
    risk = facts.get("risk")
    return IncidentContext(
        rule_id=rule_id, failure_at=failure_at, severity=severity, key=key, data=data, first_data=first,
        risk=float(risk) if isinstance(risk, int | float) and not isinstance(risk, bool) else None,
    )  # fmt: skip


# --- values --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Template:
    """One message template: for which step, rule and language, the facts it needs, and its parts."""

    id: str
    step: str
    rule: str | None  # None: the step's generic template, for any case
    language: str  # a BCP 47 primary language subtag: en, de, es
    requires: tuple[str, ...]  # dotted paths into the context that must be present (not None) to choose it
    subject: str
    text: str
    html: str | None
    file: Path | None = None
    line: int | None = None


@dataclass(frozen=True, slots=True)
class Rendered:
    """A message as the customer will read it: a one-line subject, plain text and optionally HTML."""

    subject: str
    text: str
    html: str | None


_Slot = tuple[str, str | None, str]  # (step, rule, language)


@dataclass(frozen=True)
class TemplateSet:
    """The checked templates of a set of files; at most one per step, rule and language, and a generic
    English one for every step (so every case can be written to)."""

    templates: tuple[Template, ...]
    _slots: Mapping[_Slot, Template] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        slots = {(t.step, t.rule, t.language): t for t in self.templates}
        assert len(slots) == len(self.templates), "one template per step, rule and language"
        object.__setattr__(self, "_slots", MappingProxyType(slots))

    def choose(self, *, step: str, rule_id: str | None, language: str, facts: Mapping[str, Any]) -> Template | None:
        """The most specific template for a message whose `requires` are all present in `facts` (the
        context): the rule's in the customer's language, the rule's in English, the generic one in the
        customer's language, the generic one in English. None if none fits."""
        primary = primary_language(language)
        order: list[_Slot] = []
        for rule in (rule_id, None) if rule_id is not None else (None,):
            for lang in (primary, DEFAULT_LANGUAGE):
                if (step, rule, lang) not in order:
                    order.append((step, rule, lang))
        for slot in order:
            template = self._slots.get(slot)
            if template is not None and all(_present(facts, _split(path)) for path in template.requires):
                return template
        return None

    def get(self, template_id: str) -> Template | None:
        """The template called `template_id`, if the set has it."""
        return next((t for t in self.templates if t.id == template_id), None)

    def __iter__(self) -> Iterator[Template]:
        return iter(self.templates)

    def __len__(self) -> int:
        return len(self.templates)


class TemplateSetError(FileProblemsError):
    """A set of template files with one or more problems; nothing of it is loaded."""


class TemplateRenderError(InvalidInput):
    """A template that cannot be rendered with a context: a fact missing, a value of the wrong kind, or
    something the sandbox refuses. `line` is the line within the part (subject, text or html)."""

    def __init__(self, template_id: str, part: str, reason: str, line: int | None = None) -> None:
        super().__init__(f"{template_id}.{part}", reason)
        self.template_id = template_id
        self.part = part
        self.line = line


def primary_language(tag: str) -> str:
    """The primary subtag of a language tag, lower-case: `de-AT` and `DE` are `de`."""
    return re.split(r"[-_]", tag.strip(), maxsplit=1)[0].lower()


# --- filters -------------------------------------------------------------------------------------------

_SEPARATORS: Mapping[str, tuple[str, str]] = {  # (thousands, decimal)
    "en": (",", "."),
    "de": (".", ","),
    "es": (".", ","),
    "fr": ("\u202f", ","),
    "pt": (".", ","),
}
_SYMBOLS: Mapping[str, str] = {"EUR": "€", "USD": "$", "GBP": "£"}
_TIME_WORDS: Mapping[str, tuple[str, str, str, str, str]] = {  # hour, hours, minute, minutes, and
    "en": ("hour", "hours", "minute", "minutes", "and"),
    "de": ("Stunde", "Stunden", "Minute", "Minuten", "und"),
    "es": ("hora", "horas", "minuto", "minutos", "y"),
    "fr": ("heure", "heures", "minute", "minutes", "et"),
    "pt": ("hora", "horas", "minuto", "minutos", "e"),
}
_DAY_WORDS: Mapping[str, tuple[str, str, str]] = {  # today, yesterday, tomorrow
    "en": ("today", "yesterday", "tomorrow"),
    "de": ("heute", "gestern", "morgen"),
    "es": ("hoy", "ayer", "mañana"),
    "fr": ("aujourd'hui", "hier", "demain"),
    "pt": ("hoje", "ontem", "amanhã"),
}
_MONTHS: Mapping[str, tuple[str, ...]] = {
    "en": ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"),
    "de": ("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober",
           "November", "Dezember"),
    "es": ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "octubre",
           "noviembre", "diciembre"),
    "fr": ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
           "novembre", "décembre"),
    "pt": ("janeiro", "fevereiro", "março", "abril", "maio", "junho", "julho", "agosto", "setembro", "outubro",
           "novembro", "dezembro"),
}  # fmt: skip


def _decimal(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (Decimal, int, float, str)):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    try:
        # repr of a float is its shortest exact form: 26.6, not 26.600000000000001...
        number = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
    except InvalidOperation:
        raise ValueError(f"expected a number, got {value!r}") from None
    if not number.is_finite():
        raise ValueError(f"expected a finite number, got {value!r}")
    if number.adjusted() >= _MAX_DIGITS:  # rounding it to the cent would need more digits than Decimal keeps
        raise ValueError(f"expected a number below 10^{_MAX_DIGITS}, got one of {number.adjusted() + 1} digits")
    return number


_MAX_DIGITS = 20


def _digits(number: Decimal, language: str) -> str:
    """`number` as written in `language`: grouped thousands and its decimal mark."""
    plain = f"{number:f}"
    separators = _SEPARATORS.get(language)
    if separators is None:
        return plain  # a language we know nothing of: digits and a point, no grouping
    group, mark = separators
    if language == "es" and abs(number) < 10_000:
        group = ""  # Spanish groups only from five digits: 6000, but 16.000
    grouped = f"{number:,f}"
    return grouped.replace(",", "\0").replace(".", mark).replace("\0", group)


def format_amount(value: Any, language: str) -> str:
    """A number as `language` writes it: 6,000 (en), 6.000 (de), 1.5 (en), 1,5 (de); a whole number has no
    decimals."""
    number = _decimal(value)
    if number == number.to_integral_value():
        number = number.quantize(Decimal(1))
    return _digits(number, primary_language(language))


def format_money(value: Any, currency: str, language: str) -> str:
    """An amount of money as `language` writes it, to the cent: €26.60 (en), 26,60 € (de)."""
    number = _decimal(value).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    language = primary_language(language)
    code = currency.strip().upper()
    symbol = _SYMBOLS.get(code)
    digits = _digits(abs(number), language)
    sign = "-" if number < 0 else ""
    if language == "en":
        return f"{sign}{symbol}{digits}" if symbol else f"{sign}{code}\u00a0{digits}"
    return f"{sign}{digits}\u00a0{symbol or code}"


def format_minutes(value: Any, language: str) -> str:
    """A number of minutes as hours and minutes in `language`: 420 is "7 hours", 200 "3 hours and 20 minutes".
    The sign is dropped; fractions round to the nearest minute."""
    total = int(abs(_decimal(value)).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    hours, minutes = divmod(total, 60)
    words = _TIME_WORDS.get(primary_language(language))
    if words is None:
        return f"{hours} h {minutes} min" if hours and minutes else (f"{hours} h" if hours else f"{minutes} min")
    hour, hours_word, minute, minutes_word, conjunction = words
    parts = []
    if hours:
        parts.append(f"{hours} {hour if hours == 1 else hours_word}")
    if minutes or not hours:
        parts.append(f"{minutes} {minute if minutes == 1 else minutes_word}")
    return f" {conjunction} ".join(parts)


@functools.cache
def _zone(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None  # an unknown zone counts days in UTC rather than failing the message


def _instant(value: Any) -> datetime | date:
    if isinstance(value, datetime | date):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"expected a date or time like 2025-05-03T18:40:00Z, got {value!r}") from None
    raise TypeError(f"expected a date or time, got {type(value).__name__}")


def format_day(value: Any, *, now: datetime | None, timezone: str | None, language: str) -> str:
    """The day of an instant as `language` says it relative to `now`, counted in `timezone` (UTC without
    one): "today", "yesterday", "tomorrow", else "on 3 May" ("on 3 May 2024" in another year). In a
    language without words here, the ISO date."""
    zone = _zone(timezone) or UTC
    instant = _instant(value)
    if isinstance(instant, datetime):
        aware = instant if instant.tzinfo is not None else instant.replace(tzinfo=UTC)
        day = aware.astimezone(zone).date()
    else:
        day = instant
    language = primary_language(language)
    words, months = _DAY_WORDS.get(language), _MONTHS.get(language)
    if words is None or months is None:
        return day.isoformat()
    today = None if now is None else (now if now.tzinfo else now.replace(tzinfo=UTC)).astimezone(zone).date()
    if today is not None and abs((day - today).days) <= 1:
        return {0: words[0], -1: words[1], 1: words[2]}[(day - today).days]
    month, year = months[day.month - 1], day.year
    with_year = today is None or year != today.year
    if language == "de":
        return f"am {day.day}. {month}" + (f" {year}" if with_year else "")
    if language == "es":
        return f"el {day.day} de {month}" + (f" de {year}" if with_year else "")
    if language == "fr":
        return f"le {'1er' if day.day == 1 else day.day} {month}" + (f" {year}" if with_year else "")
    if language == "pt":
        return f"em {day.day} de {month}" + (f" de {year}" if with_year else "")
    return f"on {day.day} {month}" + (f" {year}" if with_year else "")


def _filters(language: str) -> dict[str, Callable[..., str]]:
    """The filters amends adds, bound to a template's language. Each takes plain values and returns text,
    so none hands a template an object to explore."""

    @pass_context
    def day(context: Context, value: Any) -> str:
        now, customer = context.get("now"), context.get("customer")
        zone = customer.get("timezone") if isinstance(customer, Mapping) else None
        return format_day(
            value,
            now=now if isinstance(now, datetime) else None,
            timezone=zone if isinstance(zone, str) else None,
            language=language,
        )

    def money(value: Any, currency: str = "EUR") -> str:
        return format_money(value, currency, language)

    def amount(value: Any) -> str:
        return format_amount(value, language)

    def minutes(value: Any) -> str:
        return format_minutes(value, language)

    return {"day": day, "money": money, "amount": amount, "minutes": minutes}


# --- the sandbox ---------------------------------------------------------------------------------------

_MAX_REPEAT = 10_000  # the longest string or list `*` may build, and the widest a width or count may be
_MAX_EXPONENT = 100
_MAX_POWER_BITS = 4_096  # about 1,200 digits: far past any amount, far short of Python's limit of 4,300
_MAX_LOOP_STEPS = 100_000  # items all `for` loops of one part may go through, together
_MAX_OUTPUT = 1_000_000  # characters one part may write
_LOOP_BUDGET = "__amends_loop_budget"  # not a name a template can write: names starting with '_' are refused
_loop_steps: ContextVar[list[int]] = ContextVar("template_loop_steps")
# A width or count in a format: `%9999999d`, `{:>9999999}`.
_FORMAT_WIDTHS = re.compile(r"%[-#0 +]*(\d+)(?:\.(\d+))?|\{[^{}]*?:[^{}\d]*(\d+)(?:\.(\d+))?")
_SIZED_FILTERS = ("center", "indent", "truncate", "wordwrap", "batch", "slice", "format")


def _refuse_huge_format(text: str) -> None:
    for match in _FORMAT_WIDTHS.finditer(text):
        if any(int(width) > _MAX_REPEAT for width in match.groups() if width):
            raise jinja2.exceptions.SecurityError(f"a width in {match[0]!r} is over {_MAX_REPEAT}")


def _refuse_huge_counts(name: str, args: Sequence[Any]) -> None:
    for arg in args:
        if isinstance(arg, int) and not isinstance(arg, bool) and not -_MAX_REPEAT <= arg <= _MAX_REPEAT:
            raise jinja2.exceptions.SecurityError(f"{name}: {arg} is over {_MAX_REPEAT}")


def _sized(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """A built-in filter that refuses widths and counts that would build huge values, and says why in words
    where Jinja would assert (`truncate(-5)`)."""

    @functools.wraps(function)  # keeps Jinja's pass_environment mark
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _refuse_huge_counts(name, [*args, *kwargs.values()])
        if name == "format" and args and isinstance(args[0], str):  # the format is the value filtered
            _refuse_huge_format(args[0])
        try:
            return function(*args, **kwargs)
        except AssertionError as exc:
            raise ValueError(f"{name}: {exc}") from None

    return bounded


def _counted(items: Any) -> Iterator[Any]:
    """A `for` loop's items, each counted against the part's budget: loops inside loops over range() or long
    text would otherwise run for hours without writing anything."""
    steps = _loop_steps.get(None) or [_MAX_LOOP_STEPS]  # rendered outside render(): each loop on its own budget
    for item in items:
        steps[0] -= 1
        if steps[0] < 0:
            raise jinja2.exceptions.SecurityError(f"the loops went through over {_MAX_LOOP_STEPS} items")
        yield item


class _Sandbox(SandboxedEnvironment):
    """Jinja's sandbox, reading a mapping's keys before its methods (an order's `items` is its count, not
    dict.items) and refusing what would build huge values or run for long: repeats, powers, widths, and
    loops past a budget."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def compile(
        self, source: str | nodes.Template, name: str | None = None, filename: str | None = None,
        raw: bool = False, defer_init: bool = False,
    ) -> Any:  # fmt: skip
        if isinstance(source, str):
            source = self.parse(source, name, filename)
        for loop in source.find_all(nodes.For):  # each loop's items go through the budget
            loop.iter = nodes.Call(nodes.Name(_LOOP_BUDGET, "load"), [loop.iter], [], None, None, lineno=loop.lineno)
        if raw:
            return super().compile(source, name, filename, True, defer_init)
        return super().compile(source, name, filename, False, defer_init)

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 (Jinja's names)
        if isinstance(getattr(__obj, "__self__", None), str):  # 'x'.center(10**9), 'x'.zfill(10**9)
            _refuse_huge_counts(__obj.__name__, [*args, *kwargs.values()])
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:  # '{:>999999999}'.format(1)
            _refuse_huge_format(value.__self__)
        return wrapped

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > _MAX_EXPONENT:
            raise jinja2.exceptions.SecurityError(f"exponent {right} is over {_MAX_EXPONENT}")
        is_power = operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0
        if is_power and abs(left).bit_length() * right > _MAX_POWER_BITS:
            raise jinja2.exceptions.SecurityError(f"the power would have over {_MAX_POWER_BITS} bits")
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                is_repeat = isinstance(sequence, str | list | tuple) and isinstance(times, int)
                if is_repeat and len(sequence) * times > _MAX_REPEAT:
                    raise jinja2.exceptions.SecurityError(f"repeating would build over {_MAX_REPEAT} items")
        if operator == "%" and isinstance(left, str):
            _refuse_huge_format(left)
        return super().call_binop(context, operator, left, right)


def _blank_none(value: Any) -> Any:
    """A None prints as nothing rather than "None"."""
    return "" if value is None else value


@functools.cache
def _environment(language: str, html: bool) -> _Sandbox:
    environment = _Sandbox(
        undefined=jinja2.StrictUndefined,
        autoescape=html,
        finalize=_blank_none,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    environment.filters.update({name: _sized(name, environment.filters[name]) for name in _SIZED_FILTERS})
    environment.filters.update(_filters(language))
    environment.globals.pop("lipsum", None)
    environment.globals[_LOOP_BUDGET] = _counted
    return environment


@functools.lru_cache(maxsize=1024)
def _compiled(language: str, html: bool, source: str) -> jinja2.Template:
    return _environment(language, html).from_string(source)


# --- rendering -----------------------------------------------------------------------------------------

# RecursionError: a macro that calls itself.
_RENDER_ERRORS = (
    jinja2.TemplateError, TypeError, ValueError, ArithmeticError, LookupError, AttributeError, RecursionError,
)  # fmt: skip


def render(template: Template, context: Mapping[str, Any]) -> Rendered:
    """Fill a template's parts with a context (see `MessageContext`).

    Raises TemplateRenderError naming the template and its part if anything it reads is undefined (a
    checked template reads only what its `requires` and the context promise), if a value is of the wrong
    kind, or if the sandbox refuses an access.
    """
    variables = dict(context)
    subject = " ".join(_render_part(template, "subject", template.subject, variables, html=False).split())
    text = _tidy(_render_part(template, "text", template.text, variables, html=False))
    html = None
    if template.html is not None:
        html = _render_part(template, "html", template.html, variables, html=True).strip()
    return Rendered(subject, text, html)


def _tidy(text: str) -> str:
    """Plain text without trailing spaces, and at most one blank line in a row (a condition that writes
    nothing leaves no gap)."""
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


def _render_part(template: Template, part: str, source: str, variables: dict[str, Any], *, html: bool) -> str:
    budget = _loop_steps.set([_MAX_LOOP_STEPS])
    try:
        written: list[str] = []
        size = 0
        for chunk in _compiled(template.language, html, source).generate(variables):
            size += len(chunk)
            if size > _MAX_OUTPUT:
                raise jinja2.exceptions.SecurityError(f"it writes over {_MAX_OUTPUT:,} characters")
            written.append(chunk)
        return "".join(written)
    except _RENDER_ERRORS as exc:
        reason = exc.message if isinstance(exc, jinja2.TemplateError) and exc.message else str(exc)
        raise TemplateRenderError(template.id, part, reason, _template_line(exc)) from exc
    finally:
        _loop_steps.reset(budget)


def _template_line(exc: BaseException) -> int | None:
    """The line of the template being rendered when `exc` was raised (Jinja maps its frames to them)."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return exc.lineno
    line = None
    trace: TracebackType | None = exc.__traceback__
    while trace is not None:
        if trace.tb_frame.f_code.co_filename == "<template>":
            line = trace.tb_lineno
        trace = trace.tb_next
    return line


# --- the example context -------------------------------------------------------------------------------

_PREVIEW_NOW = datetime(2025, 5, 4, 9, 30, tzinfo=UTC)
_PREVIEW_PEOPLE: Mapping[str, tuple[str, str]] = {  # customer, owner
    "en": ("Alex Morgan", "Sam Taylor"),
    "de": ("Lena Schmidt", "Jonas Weber"),
    "es": ("Lucía García", "Pablo Martín"),
    "fr": ("Camille Martin", "Hugo Bernard"),
    "pt": ("Ana Costa", "João Silva"),
}
_PREVIEW_MILES: Mapping[str, str] = {"de": "Meilen", "es": "millas", "pt": "milhas"}
_PREVIEW_ZONES: Mapping[str, str] = {
    "en": "Europe/London",
    "de": "Europe/Berlin",
    "es": "Europe/Madrid",
    "fr": "Europe/Paris",
    "pt": "Europe/Lisbon",
}
# The facts of the sample world's events (docs/world.md), one example of each field, so that a template for
# any of the shipped rules finds the facts it requires. A template may give samples of its own.
_PREVIEW_DATA: Mapping[str, Any] = MappingProxyType(
    {
        "booking_ref": "K7Q2XM",
        "flight_no": "AA123",
        "next_flight_no": "AA456",
        "origin": "LIS",
        "destination": "FRA",
        "delay_minutes": 420,
        "scheduled_arrival": "2025-05-03T13:40:00.000+02:00",
        "reason": "technical",
        "bag_tag": "0123456789",
        "expected_by": "2025-05-03T14:40:00.000+02:00",
        "order_id": "O-00012345",
        "total": 86.5,
        "currency": "EUR",
        "items": 2,
        "promised_by": "2025-05-02T20:00:00.000+01:00",
        "carrier": "Parcelo",
        "damaged": True,
        "job_id": "J-00004321",
        "vehicle_id": "V-000123-1",
        "kind": "repair",
        "wait_minutes": 75,
        "count": 3,
        "within": "7d",
    }
)
_PREVIEW_FIRST_DATA: Mapping[str, Any] = MappingProxyType(
    {"job_id": "J-00004100", "vehicle_id": "V-000123-1", "invoice_total": 310.0, "currency": "USD"}
)


def preview_context(language: str = "en") -> dict[str, Any]:
    """A full example context (see `MessageContext`) in `language`: a customer whose flight AA123 arrived
    seven hours late yesterday and who was granted 6,000 miles, with the facts of every sample business.
    The check renders every template with it; a preview shows what a template would write."""
    language = primary_language(language) or DEFAULT_LANGUAGE
    customer, owner = _PREVIEW_PEOPLE.get(language, _PREVIEW_PEOPLE[DEFAULT_LANGUAGE])
    miles = f"{format_amount(6000, language)} {_PREVIEW_MILES.get(language, 'miles')}"
    return {
        "customer": {
            "id": "C-000028",
            "name": customer,
            "language": language,
            "timezone": _PREVIEW_ZONES.get(language, "UTC"),
        },
        "company": {"name": "Example Company", "signature": "The care team at Example Company"},
        "case": {
            "id": 1042,
            "opened_at": datetime(2025, 5, 4, 7, 15, tzinfo=UTC),
            "playbook": "long-delay",
            "owner_name": owner,
        },
        "incident": {
            "rule_id": "air-long-delay",
            "failure_at": datetime(2025, 5, 3, 18, 40, tzinfo=UTC),
            "severity": 3,
            "key": "K7Q2XM",
            "data": dict(_PREVIEW_DATA),
            "first_data": dict(_PREVIEW_FIRST_DATA),
            "risk": None,
        },
        "remedy": {
            "kind": "miles",
            "label": "Miles",
            "amount": Decimal(6000),
            "unit": "miles",
            "text": miles,
        },
        "request": {"reference": "O-00012345", "expires_at": datetime(2025, 6, 3, 9, 30, tzinfo=UTC)},
        "links": {
            "feedback": "https://care.example.com/f/eyJjYXNlIjoxMDQyfQ",
            "unsubscribe": "https://care.example.com/u/eyJjdXN0b21lciI6IkMtMDAwMDI4In0",
        },
        "now": _PREVIEW_NOW,
    }


def _sparse_context(language: str) -> dict[str, Any]:
    """The example context with every field that may be None set to None, a case no incident opened, and an
    apology-only remedy: what a template must also survive."""
    context = preview_context(language)
    context["customer"]["name"] = None
    context["customer"]["timezone"] = None
    context["case"]["owner_name"] = None
    context["incident"] = None
    context["links"] = {"feedback": None, "unsubscribe": None}
    context["request"] = {"reference": None, "expires_at": _PREVIEW_NOW}
    context["remedy"] = {"kind": "apology", "label": "Apology only", "amount": Decimal(0), "unit": None, "text": ""}
    return context


# --- the file's shape ----------------------------------------------------------------------------------

_ID = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,99}$")]
_PART = Annotated[str, StringConstraints(min_length=1, max_length=100_000)]


class _TemplateSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: _ID
    step: str
    rule: _ID | None = None
    language: str
    requires: list[str] = []
    samples: dict[str, Any] = {}
    subject: _PART
    text: _PART
    html: _PART | None = None


_Where = tuple[str | int, ...]
_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}$")
_PARTS = ("subject", "text", "html")


# --- loading -------------------------------------------------------------------------------------------


def load_templates(paths: Iterable[Path]) -> TemplateSet:
    """Read and check template files (a directory means its *.yaml and *.yml files, sorted by name).

    Raises TemplateSetError listing every problem; on any problem nothing is returned, so a caller keeps the
    templates it had.
    """
    sources, problems = read_sources(paths)
    if problems:
        raise TemplateSetError(problems)
    return parse_templates(sources)


def parse_templates(sources: Sequence[tuple[Path | None, str]]) -> TemplateSet:
    """Check template files given as (file, text); the same contract as `load_templates`."""
    problems: list[FileProblem] = []
    templates: list[Template] = []
    ids: dict[str, str] = {}  # every id written: where it is first
    slots: dict[_Slot, str] = {}  # every (step, rule, language) written: where it is first
    unreadable = False  # a file whose templates cannot be known, so it may hold a generic one
    for file, text in sources:
        parsed = parse_yaml(file, text, problems)
        if parsed is None:
            unreadable = True
            continue
        document, lines = parsed
        report = FileReport(file, lines, problems)
        if not isinstance(document, dict) or not isinstance(document.get("templates"), list):
            report.add(("templates",), "a template file is a mapping with a list under 'templates:'")
            unreadable = True
            continue
        for extra in sorted(set(document) - {"templates"}, key=str):
            report.add((str(extra),), "unknown top-level key; only 'templates'")
        for index, raw in enumerate(document["templates"]):
            where: _Where = ("templates", index)
            here = f"{file or 'the same text'}:{lines.at(where)}"
            template = _parse_template(raw, where, report)
            if isinstance(raw, dict) and isinstance(raw.get("id"), str):
                first = ids.setdefault(raw["id"], here)
                if first != here:
                    report.add((*where, "id"), f"duplicate template id {raw['id']!r} (first defined at {first})")
                    template = None
            if template is not None:
                slot = (template.step, template.rule, template.language)
                first = slots.setdefault(slot, here)
                if first != here:
                    rule = "generic" if template.rule is None else f"rule {template.rule!r}"
                    reason = (
                        f"duplicate template for step {template.step!r}, {rule}, language {template.language!r} "
                        f"(first defined at {first}); only one can be chosen"
                    )
                    report.add(where, reason)
                    template = None
            if template is not None:
                templates.append(template)
    if not unreadable:
        problems.extend(_missing_generic(templates, slots))
    if problems:
        raise TemplateSetError(problems)
    return TemplateSet(tuple(templates))


def shipped_templates() -> TemplateSet:
    """The templates amends ships: generic ones for every step in English, German and Spanish, and English
    ones for the sample businesses' most common incidents."""
    return load_templates([TEMPLATES_DIR])


def unknown_rules(templates: TemplateSet, rules: RuleSet) -> list[FileProblem]:
    """A problem for each template written for a rule that is not in `rules` (enabled or disabled): such a
    template is never chosen. This is for a check before deploying."""
    known = {rule.common.id for rule in rules.every}
    return [
        FileProblem(t.file, t.line, "rule", f"no rule {t.rule!r} in the rule set; template {t.id!r} is never chosen")
        for t in templates
        if t.rule is not None and t.rule not in known
    ]


def with_shipped_asking(templates: TemplateSet) -> TemplateSet:
    """The set, with the shipped ask_feedback templates for each language it has none of: a deployment's own
    set written before feedback requests existed still has a message to carry their links."""
    own = {(t.step, t.rule, t.language) for t in templates}
    added = [t for t in shipped_templates() if t.step == ASK_FEEDBACK and (t.step, t.rule, t.language) not in own]
    return TemplateSet((*templates.templates, *added)) if added else templates


def _missing_generic(templates: Sequence[Template], slots: Mapping[_Slot, str]) -> list[FileProblem]:
    problems = []
    for step in (step for step in STEPS if step != ASK_FEEDBACK):  # the shipped ones stand in: with_shipped_asking
        generic = next((t for t in templates if (t.step, t.rule, t.language) == (step, None, DEFAULT_LANGUAGE)), None)
        if generic is None and (step, None, DEFAULT_LANGUAGE) not in slots:
            reason = (
                f"no generic template (without a rule) for step {step!r} in {DEFAULT_LANGUAGE!r}; every case must "
                "have one to fall back on"
            )
            problems.append(FileProblem(None, None, "templates", reason))
        elif generic is not None and generic.requires:
            reason = (
                f"the generic {DEFAULT_LANGUAGE!r} template of step {step!r} is the last one tried, so it can "
                f"require nothing; it requires {', '.join(generic.requires)}"
            )
            problems.append(FileProblem(generic.file, generic.line, "requires", reason))
    return problems


def _parse_template(raw: Any, where: _Where, report: FileReport) -> Template | None:
    """The template of one entry, or None after reporting each of its problems."""
    if not isinstance(raw, dict):
        report.add(where, "a template is a mapping with an id, a step, a language, a subject and a text")
        return None
    try:
        spec = _TemplateSpec.model_validate(raw)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            report.add((*where, *error["loc"]), pydantic_reason(error, what="a template"))
        return None
    before = len(report.problems)
    _check_step(spec.step, (*where, "step"), report)
    _check_language(spec.language, (*where, "language"), report)
    requires = _check_requires(spec, where, report)
    if len(report.problems) > before:
        return None
    template = Template(
        spec.id,
        spec.step,
        spec.rule,
        spec.language,
        tuple(spec.requires),
        spec.subject,
        spec.text,
        spec.html,
        report.file,
        report.lines.at(where),
    )
    for part in _PARTS:
        source = getattr(template, part)
        if source is not None:
            _check_part(template, part, source, requires, (*where, part), report)
    if len(report.problems) > before:
        return None
    _check_renders(template, requires, spec.samples, where, report)
    return None if len(report.problems) > before else template


def _check_step(step: str, where: _Where, report: FileReport) -> None:
    if step in STEPS:
        return
    if step == StepKind.TAKE_OWNERSHIP.value:
        report.add(where, f"step 'take_ownership' sends the customer nothing; the steps with messages are {_steps()}")
        return
    close = difflib.get_close_matches(step, STEPS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    report.add(where, f"unknown step {step!r}{hint}; the steps with messages are {_steps()}")


def _steps() -> str:
    return ", ".join(STEPS)


def _check_language(language: str, where: _Where, report: FileReport) -> None:
    if _LANGUAGE.fullmatch(language):
        return
    primary = primary_language(language)
    hint = f"; write {primary!r}" if _LANGUAGE.fullmatch(primary) else ""
    report.add(where, f"a language is a BCP 47 primary subtag of two or three lower-case letters, like 'en'{hint}")


def _split(path: str) -> tuple[str, ...]:
    return tuple(path.split("."))


def _check_requires(spec: _TemplateSpec, where: _Where, report: FileReport) -> list[tuple[str, ...]]:
    """The paths of `requires`, each checked against the context."""
    paths: list[tuple[str, ...]] = []
    for index, text in enumerate(spec.requires):
        at = (*where, "requires", index)
        if not _PATH.fullmatch(text):
            report.add(at, f"{text!r} is not a dotted path into the context, like incident.data.flight_no")
            continue
        path = _split(text)
        reason = _path_problem(path) or _step_problem(path, spec.step, text)
        if reason is None and path[0] == "remedy" and spec.step != _REMEDY_STEP:
            reason = (
                f"remedy is None for steps other than {_REMEDY_STEP} (the remedy confirmation), so a {spec.step} "
                "template requiring it would never be chosen"
            )
        if reason is not None:
            report.add(at, reason)
            continue
        paths.append(path)
    for name in spec.samples:
        if name not in spec.requires:
            report.add((*where, "samples", name), f"a sample for {name!r}, which is not under requires")
    return paths


def _step_problem(path: tuple[str, ...], step: str, text: str) -> str | None:
    """Why a template of `step` cannot read `path`: a feedback request's message has no case, and only it has
    a request; None when it can."""
    if step == ASK_FEEDBACK and path[0] in _CASE_NAMES:
        return (
            f"a feedback request is about an interaction, not a case: {path[0]} is None in an {ASK_FEEDBACK} "
            f"template, so it cannot read {text}"
        )
    if step != ASK_FEEDBACK and path[0] == "request":
        return f"request is None for steps other than {ASK_FEEDBACK}, so a {step} template cannot read {text}"
    return None


def _path_problem(path: tuple[str, ...]) -> str | None:
    """Why `path` cannot be in the context: an unknown name or field; None when it can be."""
    top = path[0]
    if top not in _CONTEXT:
        return f"unknown name {top!r}; the context has {', '.join(_CONTEXT)}"
    fields = _CONTEXT[top]
    if len(path) > 1 and fields is not None and path[1] not in fields:
        close = difflib.get_close_matches(path[1], fields, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{top} has no field {path[1]!r}{hint}; its fields are {', '.join(sorted(fields))}"
    return None


# --- checking a template's parts -----------------------------------------------------------------------


class _Use(NamedTuple):
    path: tuple[str, ...]
    line: int
    optional: bool  # under `| default(...)` or `is defined`: only its last name may be missing


def _chain(node: nodes.Node) -> tuple[str, ...] | None:
    """`incident.data.flight_no` or `incident["data"]` as a path, when `node` is such a chain on a name."""
    if isinstance(node, nodes.Name):
        return (node.name,) if node.ctx == "load" else None
    if isinstance(node, nodes.Getattr):
        inner = _chain(node.node)
        return None if inner is None else (*inner, node.attr)
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
        inner = _chain(node.node)
        return None if inner is None else (*inner, node.arg.value)
    return None


def _uses(node: nodes.Node, out: list[_Use], dynamic: list[tuple[tuple[str, ...], int]]) -> None:
    """Every path on a name `node` reads, outermost first; `dynamic` gets the paths read with a computed key."""
    is_default = isinstance(node, nodes.Filter) and node.name in ("default", "d")
    is_defined = isinstance(node, nodes.Test) and node.name in ("defined", "undefined")
    guarded: nodes.Node | None = getattr(node, "node", None) if is_default or is_defined else None
    if guarded is not None and (path := _chain(guarded)) is not None:
        out.append(_Use(path, guarded.lineno, optional=True))
        for child in node.iter_child_nodes():
            if child is not guarded:
                _uses(child, out, dynamic)
        return
    path = _chain(node)
    if path is not None:
        out.append(_Use(path, node.lineno, optional=False))
        return
    if isinstance(node, nodes.Getitem) and (inner := _chain(node.node)) is not None:
        dynamic.append((inner, node.lineno))
    for child in node.iter_child_nodes():
        _uses(child, out, dynamic)


def _covered(path: tuple[str, ...], requires: Sequence[tuple[str, ...]], depth: int) -> bool:
    """Whether a required path of at least `depth` names lies on `path` (is it, under it, or above it)."""
    return any(len(r) >= depth and (r[: len(path)] == path or path[: len(r)] == r) for r in requires)


def _use_problem(path: tuple[str, ...], template: Template, requires: Sequence[tuple[str, ...]]) -> str | None:
    """Why reading `path` could fail on a real case; None when the context or `requires` promise it."""
    text = ".".join(path)
    reason = _path_problem(path) or _step_problem(path, template.step, text)
    if reason is not None or len(path) == 1:
        return reason
    if path[0] == "remedy" and template.step != _REMEDY_STEP:
        return (
            f"remedy is None for steps other than {_REMEDY_STEP} (the remedy confirmation), so a {template.step} "
            f"template cannot read {text}"
        )
    if path[0] != "incident":
        return None
    if path[1] in _FACTS and len(path) > 2:
        if not _covered(path[:3], requires, depth=3):
            return (
                f"{text} is a fact of the incident, which may be missing; list {'.'.join(path[:3])} under requires "
                f"(or write `{text} | default(...)`)"
            )
    elif template.rule is None and not any(r[0] == "incident" for r in requires):
        return (
            f"incident is None for a case no incident opened (a complaint); a template without a rule must list "
            f"incident (or one of its fields) under requires to read {text}"
        )
    return None


def _check_part(
    template: Template, part: str, source: str, requires: Sequence[tuple[str, ...]], where: _Where, report: FileReport
) -> None:
    """Syntax, the names a part reads, and what it leaves to chance; each problem on the file's line."""
    first_line = _content_line(report.lines, where)

    def line_of(template_line: int | None) -> int | None:
        return None if first_line is None or template_line is None else first_line + template_line - 1

    environment = _environment(template.language, part == "html")
    try:
        tree = environment.parse(source)
        _compiled(template.language, part == "html", source)  # finds unknown filters and tests
    except jinja2.TemplateSyntaxError as exc:
        report.add(where, f"not a valid template: {exc.message} (line {exc.lineno} of the {part})", line_of(exc.lineno))
        return
    except RecursionError:  # Jinja parses and compiles by recursion: `{{ ((((…1)))) }}` a few hundred deep
        report.add(where, f"not a valid template: its expressions are nested too deeply (in the {part})")
        return
    for assigned in tree.find_all(nodes.Name):
        if assigned.ctx in ("store", "param") and assigned.name in _CONTEXT:
            reason = f"{assigned.name!r} is a name of the context; give the variable another name"
            report.add(where, reason, line_of(assigned.lineno))
    for read in tree.find_all((nodes.Getattr, nodes.Getitem)):
        attribute = read.attr if isinstance(read, nodes.Getattr) else getattr(getattr(read, "arg", None), "value", None)
        if isinstance(attribute, str) and attribute.startswith("_"):
            reason = f"cannot read {attribute!r}: names starting with '_' are closed to templates (the sandbox)"
            report.add(where, reason, line_of(read.lineno))
    for name in sorted(meta.find_undeclared_variables(tree) - set(_CONTEXT) - set(environment.globals)):
        line = next((n.lineno for n in tree.find_all(nodes.Name) if n.name == name), None)
        close = difflib.get_close_matches(name, list(_CONTEXT), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        report.add(where, f"unknown name {name!r}{hint}; the context has {', '.join(_CONTEXT)}", line_of(line))
    uses: list[_Use] = []
    dynamic: list[tuple[tuple[str, ...], int]] = []
    _uses(tree, uses, dynamic)
    reported: set[str] = set()
    for use in uses:
        if use.path[0] not in _CONTEXT:
            continue  # a variable of the template's own, a global such as range, or an unknown name (above)
        path = use.path[:-1] if use.optional and len(use.path) > 1 else use.path
        problem = _use_problem(path, template, requires)
        if problem is not None and problem not in reported:
            report.add(where, problem, line_of(use.line))
            reported.add(problem)
    for path, read_line in dynamic:
        if path[:1] == ("incident",) and len(path) == 2 and path[1] in _FACTS:
            text = ".".join(path)
            reason = f"read the incident's facts by name ({text}.flight_no), so the check can see which it needs"
            report.add(where, reason, line_of(read_line))


def _check_renders(
    template: Template,
    requires: Sequence[tuple[str, ...]],
    samples: Mapping[str, Any],
    where: _Where,
    report: FileReport,
) -> None:
    """Render the template with the example context and with a sparse one (fields that may be None set to
    None), each with its required facts filled from the example or its samples."""
    full = preview_context(template.language)
    for context in (full, _sparse_context(template.language)):
        if template.rule is not None:
            if context["incident"] is None:
                context["incident"] = preview_context(template.language)["incident"]
            context["incident"]["rule_id"] = template.rule
        if template.step != _REMEDY_STEP:
            context["remedy"] = None
        if template.step == ASK_FEEDBACK:
            context["case"] = context["incident"] = None
        else:
            context["request"] = None
        if context["incident"] is None and any(path[0] == "incident" for path in requires):
            context["incident"] = preview_context(template.language)["incident"]
        for path in requires:
            text = ".".join(path)
            if text in samples:
                _put(context, path, samples[text])
            elif not _present(context, path):
                found = _read(full, path)
                _put(context, path, found if found is not None else f"[{path[-1]}]")
        try:
            render(template, context)
        except TemplateRenderError as exc:
            part_where = (*where, exc.part)
            first_line = _content_line(report.lines, part_where)
            line = None if first_line is None or exc.line is None else first_line + exc.line - 1
            which = "the example context" if context is full else "the example with every optional field empty"
            hint = ""
            example = preview_context(template.language)
            if any(".".join(path) not in samples and _read(example, path) is None for path in requires):
                hint = "; give the facts the example lacks a value under samples:"
            report.add(part_where, f"does not render with {which}: {exc.reason}{hint}", line)
            return


def _read(context: Mapping[str, Any], path: Sequence[str]) -> Any:
    value: Any = context
    for name in path:
        value = value.get(name) if isinstance(value, Mapping) else getattr(value, name, None)
        if value is None:
            return None
    return value


def _present(context: Mapping[str, Any], path: Sequence[str]) -> bool:
    """Whether `path` leads to a value that is not None."""
    return _read(context, path) is not None


def _put(context: dict[str, Any], path: Sequence[str], value: Any) -> None:
    """Set `path` in a context of dicts, making the mappings on the way (copying any that is not a dict)."""
    target = context
    for name in path[:-1]:
        inner = target.get(name)
        inner = dict(inner) if isinstance(inner, Mapping) else {}
        target[name] = inner
        target = inner
    target[path[-1]] = value


def _content_line(lines: Lines, where: _Where) -> int | None:
    """The file line of the first line of a scalar's content: the line after `|` or `>`, else its own."""
    node = lines.root
    for part in where:
        node = _child(node, part)
        if node is None:
            return lines.at(where)
    if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
        return node.start_mark.line + 2
    return node.start_mark.line + 1 if node is not None else None


def _child(node: yaml.Node | None, part: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        child: yaml.Node = node.value[part]
        return child
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part) and isinstance(value, yaml.Node):
                return value
    return None
