"""The remedy policy: which remedies exist, how much each role may grant, the monthly budgets, how a customer's
value is reckoned, and the table that proposes a remedy for a case (DESIGN §1 A and B, §4 "Remedy").

A policy is one YAML file a CX operations lead writes (docs/remedies.md). It is read into Pydantic models (the
file's shape), checked whole, and compiled into the frozen values below; every problem is reported with its
file, line and field, and a file with any problem loads nothing. Amounts are Decimals, never floats.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

from amends.detect.conditions import FieldPath, parse_path
from amends.detect.rules import RuleSet
from amends.durations import parse_duration
from amends.errors import InvalidInput
from amends.recover.packs import REMEDY_POLICY_FILE
from amends.recover.roles import ROLES, Role
from amends.yamldoc import FileProblem, FileProblemsError, Lines, dotted, parse_yaml, pydantic_reason

__all__ = [
    "CustomerValue",
    "Limit",
    "PolicyError",
    "Proposal",
    "ProposalEntry",
    "RemedyKind",
    "RemedyPolicy",
    "ValueSpec",
    "load_policy",
    "parse_policy",
    "shipped_policy",
    "unknown_rules",
]

T = TypeVar("T")
CENT = Decimal("0.01")
SEVERITIES = range(1, 6)  # what rules give incidents: 1 (minor) to 5
MIN_SEVERITIES = range(1, 5)  # what a proposal may ask for at least (docs/remedies.md)


# --- the compiled policy --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RemedyKind:
    """A kind of remedy, counted in its own unit (EUR, miles, upgrades); an apology has no unit and no amount."""

    id: str
    label: str
    unit: str
    cash_per_unit: Decimal
    needs_amount: bool

    def cash_value(self, amount: Decimal) -> Decimal:
        """What `amount` of this kind costs, in the policy's currency, rounded half up to the cent."""
        return (amount * self.cash_per_unit).quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True, slots=True)
class Limit:
    """How much of one kind one role may grant on its own, in the kind's unit; None is no limit."""

    per_grant: Decimal | None
    per_day: Decimal | None

    def allows(self, amount: Decimal, granted_today: Decimal) -> bool:
        """Whether a grant of `amount`, after `granted_today` already granted by the same person, is within
        the limit. Reaching a limit exactly is within it."""
        if self.per_grant is not None and amount > self.per_grant:
            return False
        return self.per_day is None or granted_today + amount <= self.per_day


NO_AUTHORITY = Limit(Decimal(0), Decimal(0))


@dataclass(frozen=True, slots=True)
class CustomerValue:
    """What a customer spent over the policy's window, in its currency, and the tier that puts them in."""

    spend: Decimal
    tier: str
    window_start: datetime


@dataclass(frozen=True, slots=True)
class Proposal:
    """The remedy the policy proposes for a case, and the entry of the proposal table that chose it."""

    kind: str
    amount: Decimal
    policy: str
    reason: str


@dataclass(frozen=True, slots=True)
class ValueSpec:
    """How a customer's value is reckoned: the amounts of some event types summed over a window, then tiered."""

    window: timedelta
    spend: tuple[tuple[str, FieldPath], ...]
    tiers: tuple[tuple[Decimal, str], ...]  # ascending thresholds, the first at 0

    def tier_of(self, spend: Decimal) -> str:
        """The tier of the highest threshold `spend` reaches (the first tier for a spend below 0)."""
        chosen = self.tiers[0][1]
        for threshold, tier in self.tiers:
            if spend >= threshold:
                chosen = tier
        return chosen

    @property
    def tier_names(self) -> tuple[str, ...]:
        return tuple(tier for _, tier in self.tiers)


@dataclass(frozen=True, slots=True)
class ProposalEntry:
    """One row of the proposal table: when it applies (every condition given must hold) and what it proposes."""

    id: str
    kind: str
    amount: Decimal
    rules: tuple[str, ...] | None = None  # None: any rule, and cases no rule opened
    min_severity: int = 1
    tiers: frozenset[str] | None = None  # None: any tier
    label: str | None = None  # the situation in a few words, for the reason: "long delay"
    line: int | None = None
    rule_lines: tuple[int | None, ...] = field(default=(), compare=False)

    def matches(self, rule_id: str | None, severity: int, tier: str) -> bool:
        if self.rules is not None and rule_id not in self.rules:
            return False
        if severity < self.min_severity:
            return False
        return self.tiers is None or tier in self.tiers


@dataclass(frozen=True)
class RemedyPolicy:
    """A checked remedy policy. Build it with `load_policy` or `parse_policy`, which guarantee that every kind
    named exists and that the last proposal entry matches every case."""

    currency: str
    kinds: Mapping[str, RemedyKind]
    value: ValueSpec
    file: Path | None
    authority: Mapping[Role, Mapping[str, Limit]]
    budgets: Mapping[str, Decimal]
    proposals: tuple[ProposalEntry, ...]

    def kind(self, kind_id: str) -> RemedyKind:
        """The kind called `kind_id`; raises InvalidInput naming `kind` when there is none."""
        found = self.kinds.get(kind_id)
        if found is None:
            known = ", ".join(self.kinds)
            raise InvalidInput("kind", f"unknown remedy kind {kind_id!r}; the kinds are {known}")
        return found

    def limit(self, role: Role, kind_id: str) -> Limit:
        """What `role` may grant of a kind on its own; a role the policy gives nothing of it may grant nothing
        without approval (an apology, of amount 0, is always within)."""
        self.kind(kind_id)
        return self.authority.get(role, {}).get(kind_id, NO_AUTHORITY)

    def monthly_budget(self, kind_id: str) -> Decimal | None:
        """The budget of a kind per calendar month, in its unit; None when the policy sets none."""
        self.kind(kind_id)
        return self.budgets.get(kind_id)

    def propose(self, *, rule_id: str | None, severity: int, value: CustomerValue) -> Proposal:
        """The remedy of the first proposal entry that matches the rule that fired (None for a case no rule
        opened), the severity and the customer's tier. Raises InvalidInput for a severity outside 1 to 5 or a
        tier this policy does not have."""
        if severity not in SEVERITIES:
            raise InvalidInput("severity", f"must be 1 to 5, got {severity}")
        if value.tier not in self.value.tier_names:
            known = ", ".join(self.value.tier_names)
            raise InvalidInput("tier", f"unknown tier {value.tier!r}; the tiers are {known}")
        for entry in self.proposals:
            if entry.matches(rule_id, severity, value.tier):
                return Proposal(entry.kind, entry.amount, entry.id, self._reason(entry, rule_id, severity, value.tier))
        raise AssertionError("a checked policy ends with an entry that matches every case")

    def _reason(self, entry: ProposalEntry, rule_id: str | None, severity: int, tier: str) -> str:
        situation = entry.label or (f"'{rule_id}' incident" if rule_id is not None else "case")
        article = "an" if tier[:1] in "aeiou" else "a"
        offer = _offer(self.kinds[entry.kind], entry.amount)
        return f"severity {severity} {situation} for {article} {tier} customer: {offer}"


def _offer(kind: RemedyKind, amount: Decimal) -> str:
    """`6000 miles`, `account credit of 25 EUR`, `apology only`."""
    label = kind.label if kind.label[:2].isupper() else kind.label[:1].lower() + kind.label[1:]
    if not kind.needs_amount:
        return label
    quantity = f"{amount:f} {kind.unit}"
    return quantity if kind.label.lower() == kind.unit.lower() else f"{label} of {quantity}"


# --- errors ----------------------------------------------------------------------------------------------


class PolicyError(FileProblemsError):
    """A remedy policy file with one or more problems; nothing of it is loaded."""


# --- the file's shape ------------------------------------------------------------------------------------


def _number(value: Any, *, unlimited: bool = False) -> Decimal | None:
    """A finite number of 0 or more, as a Decimal (`unlimited` gives None where it is allowed). A float goes
    through its shortest text, so that 0.01 stays 0.01 and is not the binary fraction nearest it."""
    if unlimited and value == "unlimited":
        return None
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = Decimal(value)
    elif isinstance(value, float) and math.isfinite(value):
        number = Decimal(repr(value))
    if number is None or number < 0:
        wanted = "a number of 0 or more" + (", or 'unlimited'" if unlimited else "")
        raise PydanticCustomError("amount", "expected {wanted}, got {value}", {"wanted": wanted, "value": repr(value)})
    return number


def _limit_entry(value: Any) -> Any:
    # `credit: unlimited` is short for `credit: {per_grant: unlimited, per_day: unlimited}`.
    return {"per_grant": "unlimited", "per_day": "unlimited"} if value == "unlimited" else value


_Amount = Annotated[Decimal, BeforeValidator(_number)]
_LimitValue = Annotated[Decimal | None, BeforeValidator(lambda value: _number(value, unlimited=True))]


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _KindSpec(_Shape):
    label: Annotated[str, Field(min_length=1, max_length=100)]
    unit: Annotated[str, Field(max_length=50)] = ""
    cash_per_unit: _Amount | None = None


class _LimitSpec(_Shape):
    per_grant: _LimitValue
    per_day: _LimitValue


class _SpendSpec(_Shape):
    on: str
    amount: str


class _TierSpec(_Shape):
    start: _Amount = Field(alias="from")
    tier: str


class _ValueSpec(_Shape):
    window: str
    spend: list[_SpendSpec] = Field(min_length=1)
    tiers: list[_TierSpec] = Field(min_length=1)


class _WhenSpec(_Shape):
    rules: list[str] | None = None
    min_severity: StrictInt | None = None
    tiers: list[str] | None = None


class _OfferSpec(_Shape):
    kind: str
    amount: _Amount | None = None


class _ProposalSpec(_Shape):
    id: str
    label: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    when: _WhenSpec | None = None
    propose: _OfferSpec


# Each top-level section is checked on its own, so that a mistake in one does not hide those in the others.
_LimitEntry = Annotated[_LimitSpec, BeforeValidator(_limit_entry)]
_CURRENCY_SHAPE: TypeAdapter[str] = TypeAdapter(str)
_KINDS_SHAPE: TypeAdapter[dict[str, _KindSpec]] = TypeAdapter(Annotated[dict[str, _KindSpec], Field(min_length=1)])
_AUTHORITY_SHAPE: TypeAdapter[dict[str, dict[str, _LimitSpec]]] = TypeAdapter(dict[str, dict[str, _LimitEntry]])
_BUDGETS_SHAPE: TypeAdapter[dict[str, Decimal]] = TypeAdapter(dict[str, _Amount])
_VALUE_SHAPE: TypeAdapter[_ValueSpec] = TypeAdapter(_ValueSpec)
_PROPOSALS_SHAPE: TypeAdapter[list[_ProposalSpec]] = TypeAdapter(Annotated[list[_ProposalSpec], Field(min_length=1)])
_TOP_LEVEL = ("currency", "kinds", "authority", "budgets", "customer_value", "proposals")


_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
_ID_RULE = "lower-case letters, digits, '_' or '-', starting with a letter or digit"
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_EVENT_TYPE = re.compile(r"^\S{1,200}$")


# --- loading ---------------------------------------------------------------------------------------------


def load_policy(path: Path) -> RemedyPolicy:
    """Read and check a remedy policy file. Raises PolicyError listing every problem; on any problem nothing
    is returned, so a caller keeps the policy it had."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError([FileProblem(path, None, "", f"cannot be read: {exc}")]) from exc
    return parse_policy(text, path)


def parse_policy(text: str, file: Path | None = None) -> RemedyPolicy:
    """Check a remedy policy given as text; the same contract as `load_policy`."""
    problems: list[FileProblem] = []
    parsed = parse_yaml(file, text, problems)
    if parsed is None:
        raise PolicyError(problems)
    document, lines = parsed
    if not isinstance(document, dict):
        raise PolicyError([*problems, FileProblem(file, 1, "", "a remedy policy is a mapping; see docs/remedies.md")])
    checker = _Checker(file, lines, problems, document)
    for key in document:
        if key not in _TOP_LEVEL:
            checker.key_problem((str(key),), f"unknown top-level key; the keys are {', '.join(_TOP_LEVEL)}")
    policy = checker.compile()
    if problems or policy is None:
        raise PolicyError(sorted(problems, key=lambda problem: problem.line or 0))  # stable: in file order
    return policy


def shipped_policy() -> RemedyPolicy:
    """The remedy policy amends ships for the three sample businesses."""
    return load_policy(REMEDY_POLICY_FILE)


def unknown_rules(policy: RemedyPolicy, rules: RuleSet) -> list[FileProblem]:
    """The proposal entries' rule ids that are not in `rules` (enabled or disabled): such an entry never fires."""
    known = {rule.common.id for rule in rules.every}
    problems: list[FileProblem] = []
    for index, entry in enumerate(policy.proposals):
        for position, rule_id in enumerate(entry.rules or ()):
            if rule_id not in known:
                line = entry.rule_lines[position] if position < len(entry.rule_lines) else entry.line
                where = dotted(("proposals", index, "when", "rules", position))
                problems.append(
                    FileProblem(policy.file, line, where, f"no rule {rule_id!r} in the rule set; this never matches")
                )
    return problems


class _Checker:
    """Compiles a policy of the right shape, collecting every problem rather than stopping at the first."""

    def __init__(self, file: Path | None, lines: Lines, problems: list[FileProblem], document: dict[Any, Any]) -> None:
        self.file = file
        self.document = document
        self.lines = lines
        self.problems = problems

    def problem(self, where: Sequence[str | int], reason: str) -> None:
        self.problems.append(FileProblem(self.file, self.lines.at(where), dotted(where), reason))

    def key_problem(self, where: Sequence[str | int], reason: str) -> None:
        """A problem with a mapping's key: reported on the key's line (`Lines.at` gives its value's)."""
        self.problems.append(FileProblem(self.file, _key_line(self.lines, where), dotted(where), reason))

    def section(self, name: str, shape: TypeAdapter[T], empty: T | None = None) -> T | None:
        """One top-level section in its shape; None (and its problems) when it is missing or misshapen."""
        if name not in self.document:
            if empty is None:
                self.problem((name,), "missing; a remedy policy needs it")
            return empty
        try:
            return shape.validate_python(self.document[name])
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                where, reason = _shape_problem((name, *error["loc"]), error)
                if error["type"] == "extra_forbidden":
                    self.key_problem(where, reason)
                else:
                    self.problem(where, reason)
            return None

    def compile(self) -> RemedyPolicy | None:
        """The policy, or None when a section could not be read; checks what it can either way."""
        currency = self.section("currency", _CURRENCY_SHAPE)
        if currency is not None and not _CURRENCY.fullmatch(currency):
            self.problem(("currency",), f"expected a currency code of three capital letters like EUR, got {currency!r}")
        kind_specs = self.section("kinds", _KINDS_SHAPE)
        kinds = None if kind_specs is None else self.kinds(kind_specs)
        value_spec = self.section("customer_value", _VALUE_SHAPE)
        value = None if value_spec is None else self.value(value_spec)
        authority_specs = self.section("authority", _AUTHORITY_SHAPE, {})
        budget_specs = self.section("budgets", _BUDGETS_SHAPE, {})
        proposal_specs = self.section("proposals", _PROPOSALS_SHAPE)
        # What refers to kinds and tiers is checked only when they could be read, so as not to report a
        # reference to a kind as unknown when the kind is there but misshapen.
        authority = None if kinds is None or authority_specs is None else self.authority(authority_specs, kinds)
        budgets = None if kinds is None or budget_specs is None else self.budgets(budget_specs, kinds)
        proposals = None
        if kinds is not None and value is not None and proposal_specs is not None:
            proposals = self.proposals(proposal_specs, kinds, value)
        if currency is None or kinds is None or value is None or authority is None or budgets is None or not proposals:
            return None
        return RemedyPolicy(
            currency=currency,
            kinds=MappingProxyType(kinds),
            value=value,
            file=self.file,
            authority=MappingProxyType(authority),
            budgets=MappingProxyType(budgets),
            proposals=proposals,
        )

    def kinds(self, specs: dict[str, _KindSpec]) -> dict[str, RemedyKind]:
        kinds: dict[str, RemedyKind] = {}
        for kind_id, spec in specs.items():
            where = ("kinds", kind_id)
            if not _ID.fullmatch(kind_id):
                self.key_problem(where, f"a kind id is {_ID_RULE}")
            unit = spec.unit.strip()
            if not unit and spec.cash_per_unit:
                self.problem(
                    (*where, "cash_per_unit"),
                    "a kind without a unit is an apology only and costs nothing; give it a unit or drop cash_per_unit",
                )
            if unit and spec.cash_per_unit is None:
                self.problem(
                    (*where, "cash_per_unit"),
                    f"missing; a kind counted in {unit} needs the cash value of one {unit} (0 if it costs nothing)",
                )
            cash = spec.cash_per_unit if unit and spec.cash_per_unit is not None else Decimal(0)
            kinds[kind_id] = RemedyKind(kind_id, spec.label, unit, cash, needs_amount=bool(unit))
        return kinds

    def authority(
        self, specs: dict[str, dict[str, _LimitSpec]], kinds: Mapping[str, RemedyKind]
    ) -> dict[Role, Mapping[str, Limit]]:
        roles = {role.value: role for role in ROLES}
        authority: dict[Role, Mapping[str, Limit]] = {}
        for role_name, limits in specs.items():
            role = roles.get(role_name)
            if role is None:
                self.key_problem(("authority", role_name), f"unknown role; the roles are {', '.join(roles)}")
                continue
            compiled: dict[str, Limit] = {}
            for kind_id, spec in limits.items():
                where = ("authority", role_name, kind_id)
                if not self.amounted_kind(where, kind_id, kinds, "limit"):
                    continue
                if spec.per_day is not None and (spec.per_grant is None or spec.per_day < spec.per_grant):
                    per_grant = "unlimited" if spec.per_grant is None else f"{spec.per_grant:f}"
                    self.problem(
                        (*where, "per_day"),
                        f"below per_grant ({per_grant}); a day's limit must allow at least one grant in full",
                    )
                compiled[kind_id] = Limit(spec.per_grant, spec.per_day)
            authority[role] = MappingProxyType(compiled)
        return authority

    def budgets(self, specs: dict[str, Decimal], kinds: Mapping[str, RemedyKind]) -> dict[str, Decimal]:
        return {
            kind_id: amount
            for kind_id, amount in specs.items()
            if self.amounted_kind(("budgets", kind_id), kind_id, kinds, "budget")
        }

    def amounted_kind(
        self, where: Sequence[str | int], kind_id: str, kinds: Mapping[str, RemedyKind], what: str
    ) -> bool:
        """Whether `kind_id` is a kind with an amount to `what`; a problem on its key if not."""
        kind = kinds.get(kind_id)
        if kind is None:
            self.key_problem(where, f"unknown remedy kind; the kinds are {', '.join(kinds)}")
            return False
        if not kind.needs_amount:
            self.key_problem(where, f"{kind_id!r} is an apology only, with no amount to {what}; remove this entry")
            return False
        return True

    def value(self, spec: _ValueSpec) -> ValueSpec:
        where: tuple[str | int, ...] = ("customer_value",)
        try:
            window = parse_duration(spec.window)
        except ValueError as exc:
            self.problem((*where, "window"), str(exc))
            window = timedelta(days=365)
        spend: list[tuple[str, FieldPath]] = []
        for index, entry in enumerate(spec.spend):
            at = (*where, "spend", index)
            if not _EVENT_TYPE.fullmatch(entry.on):
                self.problem((*at, "on"), f"expected an event type such as order.placed, got {entry.on!r}")
            try:
                path = parse_path(entry.amount)
            except ValueError as exc:
                self.problem((*at, "amount"), str(exc))
                continue
            if path.root != "data":
                self.problem((*at, "amount"), f"an amount is a number inside data, like data.total, not {path.text!r}")
                continue
            if any(seen == (entry.on, path) for seen in spend):
                self.problem(at, f"{entry.on} with {path.text} is already counted; it would count twice")
                continue
            spend.append((entry.on, path))
        tiers: list[tuple[Decimal, str]] = []
        for index, tier in enumerate(spec.tiers):
            at = (*where, "tiers", index)
            if not _ID.fullmatch(tier.tier):
                self.problem((*at, "tier"), f"a tier name is {_ID_RULE}")
            if any(name == tier.tier for _, name in tiers):
                self.problem((*at, "tier"), f"duplicate tier {tier.tier!r}")
            if index == 0 and tier.start != 0:
                self.problem((*at, "from"), "the first tier starts from 0, so that every customer has a tier")
            if tiers and tier.start <= tiers[-1][0]:
                self.problem((*at, "from"), f"tiers go up: {tier.start:f} is not above {tiers[-1][0]:f}")
            tiers.append((tier.start, tier.tier))
        return ValueSpec(window, tuple(spend), tuple(tiers))

    def proposals(
        self, specs: list[_ProposalSpec], kinds: Mapping[str, RemedyKind], value: ValueSpec
    ) -> tuple[ProposalEntry, ...]:
        entries: list[ProposalEntry] = []
        seen: dict[str, int] = {}
        catch_all: int | None = None
        for index, spec in enumerate(specs):
            where: tuple[str | int, ...] = ("proposals", index)
            if not _ID.fullmatch(spec.id):
                self.problem((*where, "id"), f"a proposal id is {_ID_RULE}")
            if spec.id in seen:
                self.problem((*where, "id"), f"duplicate proposal id {spec.id!r} (first at proposals[{seen[spec.id]}])")
            seen.setdefault(spec.id, index)
            if catch_all is not None:
                self.problem(
                    where,
                    f"never used: proposals[{catch_all}] ({specs[catch_all].id}) matches every case and the first "
                    "match wins; move this entry above it",
                )
            entry = self.entry(spec, where, kinds, value)
            if catch_all is None and _matches_everything(entry, value):
                catch_all = index
            entries.append(entry)
        if catch_all is None:
            last: tuple[str | int, ...] = ("proposals", len(specs) - 1)
            self.problem(
                (*last, "when") if specs[-1].when is not None else last,
                "no proposal matches a case this last entry's `when` leaves out; add a final entry without `when`",
            )
        return tuple(entries)

    def entry(
        self, spec: _ProposalSpec, where: tuple[str | int, ...], kinds: Mapping[str, RemedyKind], value: ValueSpec
    ) -> ProposalEntry:
        when = spec.when or _WhenSpec()
        if when.rules is not None and not when.rules:
            self.problem((*where, "when", "rules"), "an empty list matches no rule; leave `rules` out to match any")
        if when.min_severity is not None and when.min_severity not in MIN_SEVERITIES:
            self.problem((*where, "when", "min_severity"), f"must be 1 to 4, got {when.min_severity}")
        if when.tiers is not None:
            if not when.tiers:
                self.problem((*where, "when", "tiers"), "an empty list matches no tier; leave `tiers` out to match any")
            for position, tier in enumerate(when.tiers):
                if tier not in value.tier_names:
                    self.problem(
                        (*where, "when", "tiers", position),
                        f"unknown tier {tier!r}; the tiers are {', '.join(value.tier_names)}",
                    )
        amount = self.offer(spec.propose, (*where, "propose"), kinds)
        return ProposalEntry(
            id=spec.id,
            kind=spec.propose.kind,
            amount=amount,
            rules=None if when.rules is None else tuple(when.rules),
            min_severity=when.min_severity or 1,
            tiers=None if when.tiers is None else frozenset(when.tiers),
            label=spec.label,
            line=self.lines.at(where),
            rule_lines=tuple(self.lines.at((*where, "when", "rules", i)) for i in range(len(when.rules or ()))),
        )

    def offer(self, spec: _OfferSpec, where: tuple[str | int, ...], kinds: Mapping[str, RemedyKind]) -> Decimal:
        kind = kinds.get(spec.kind)
        if kind is None:
            self.problem((*where, "kind"), f"unknown remedy kind {spec.kind!r}; the kinds are {', '.join(kinds)}")
            return Decimal(0)
        if not kind.needs_amount:
            if spec.amount is not None:
                self.problem((*where, "amount"), f"{kind.id!r} is an apology only and has no amount; remove it")
            return Decimal(0)
        if spec.amount is None:
            self.problem((*where, "amount"), f"missing; {kind.id!r} is counted in {kind.unit} and needs an amount")
            return Decimal(0)
        if spec.amount == 0:
            self.problem((*where, "amount"), f"0 {kind.unit} gives nothing; propose an apology instead")
        return spec.amount


def _shape_problem(where: tuple[str | int, ...], error: Any) -> tuple[tuple[str | int, ...], str]:
    """Where a Pydantic error is, and a sentence for it in the words of a policy's author."""
    if where[-1] == "[key]":  # a key of a mapping that is not text: name the key itself
        return (*where[:-2], str(where[-2])), "a key here must be text"
    if error["type"] == "too_short":
        return where, "needs at least one entry"
    if error["type"] in ("model_type", "dict_type"):
        if where[0] == "authority" and len(where) == 3:
            return where, "expected {per_grant: N, per_day: N} or 'unlimited'"
        return where, "expected a mapping"
    return where, pydantic_reason(error, what="this entry")


def _matches_everything(entry: ProposalEntry, value: ValueSpec) -> bool:
    return (
        entry.rules is None
        and entry.min_severity <= 1
        and (entry.tiers is None or entry.tiers >= set(value.tier_names))
    )


def _key_line(lines: Lines, where: Sequence[str | int]) -> int | None:
    node = lines.root
    for part in where[:-1]:
        node = _value_of(node, part)
    if isinstance(node, yaml.MappingNode):
        for key, _value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(where[-1]):
                return int(key.start_mark.line) + 1
    return lines.at(where)


def _value_of(node: yaml.Node | None, part: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                child: yaml.Node = value
                return child
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        item: yaml.Node = node.value[part]
        return item
    return None
