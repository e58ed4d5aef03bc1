"""The remedy policy: what loads, what is refused (with file, line, field and a sentence), what it proposes, and
the authority limits and cash values the granting builds on."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from amends.detect.packs import PACKS, pack_paths
from amends.detect.rules import load_rules, parse_rules
from amends.errors import InvalidInput
from amends.events import Event
from amends.recover.policy import (
    CustomerValue,
    Limit,
    PolicyError,
    RemedyKind,
    RemedyPolicy,
    load_policy,
    parse_policy,
    shipped_policy,
    unknown_rules,
)
from amends.recover.roles import ROLES, Role

FILE = Path("policies/remedies.yaml")
AT = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)

# Line numbers matter: the checks below name them.
POLICY = """\
currency: EUR
kinds:
  apology: {label: Apology only}
  credit: {label: Account credit, unit: EUR, cash_per_unit: 1}
  miles: {label: Miles, unit: miles, cash_per_unit: 0.01}
authority:
  agent:
    credit: {per_grant: 25, per_day: 150}
    miles: {per_grant: 6000, per_day: 30000}
  manager:
    credit: unlimited
budgets:
  credit: 20000
customer_value:
  window: 365d
  spend:
    - {on: order.placed, amount: data.total}
    - {on: booking.confirmed, amount: data.fare}
  tiers:
    - {from: 0, tier: standard}
    - {from: 500, tier: silver}
    - {from: 2000, tier: gold}
proposals:
  - id: frequent-flyer-long-delay
    label: long delay
    when: {rules: [air-long-delay], min_severity: 3, tiers: [gold]}
    propose: {kind: miles, amount: 6000}
  - id: long-delay
    when: {rules: [air-long-delay]}
    propose: {kind: miles, amount: 2000}
  - id: fallback
    propose: {kind: apology}
"""


def variant(*changes: tuple[str, str]) -> str:
    text = POLICY
    for old, new in changes:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, FILE)
    return [str(problem) for problem in caught.value.problems]


def a_customer(tier: str = "standard") -> CustomerValue:
    return CustomerValue(spend=Decimal(0), tier=tier, window_start=AT - timedelta(days=365))


def test_the_example_policy_loads_with_its_kinds_limits_budgets_and_value() -> None:
    policy = parse_policy(POLICY, FILE)

    assert policy.currency == "EUR"
    assert policy.file == FILE
    assert list(policy.kinds) == ["apology", "credit", "miles"]
    assert policy.kind("apology") == RemedyKind("apology", "Apology only", "", Decimal(0), needs_amount=False)
    assert policy.kind("miles") == RemedyKind("miles", "Miles", "miles", Decimal("0.01"), needs_amount=True)
    assert policy.limit(Role.AGENT, "credit") == Limit(Decimal(25), Decimal(150))
    assert policy.limit(Role.MANAGER, "credit") == Limit(None, None)
    assert policy.monthly_budget("credit") == Decimal(20000)
    assert policy.monthly_budget("miles") is None
    assert policy.value.window == timedelta(days=365)
    assert [(event_type, path.text) for event_type, path in policy.value.spend] == [
        ("order.placed", "data.total"),
        ("booking.confirmed", "data.fare"),
    ]
    assert policy.value.tiers == ((Decimal(0), "standard"), (Decimal(500), "silver"), (Decimal(2000), "gold"))


def test_a_role_without_an_entry_for_a_kind_needs_approval_for_any_amount_but_an_apology() -> None:
    policy = parse_policy(POLICY, FILE)

    assert policy.limit(Role.LEAD, "credit") == Limit(Decimal(0), Decimal(0))
    assert policy.limit(Role.MANAGER, "miles") == Limit(Decimal(0), Decimal(0))
    assert not policy.limit(Role.LEAD, "credit").allows(Decimal("0.01"), Decimal(0))
    assert policy.limit(Role.AGENT, "apology").allows(Decimal(0), Decimal(0))


def test_an_unknown_kind_is_refused_naming_the_kinds() -> None:
    policy = parse_policy(POLICY, FILE)

    for ask in (lambda: policy.kind("points"), lambda: policy.limit(Role.AGENT, "points")):
        with pytest.raises(InvalidInput) as caught:
            ask()
        assert caught.value.field == "kind"
        assert caught.value.reason == "unknown remedy kind 'points'; the kinds are apology, credit, miles"
    with pytest.raises(InvalidInput):
        policy.monthly_budget("points")


@pytest.mark.parametrize(
    ("changes", "line", "expected"),
    [
        # the file as a whole
        (
            [("    propose: {kind: apology}\n", "    propose: {kind: apology}\nbonus: 3\n")],
            33,
            "bonus: unknown top-level key",
        ),
        ([("currency: EUR", "currency: euro")], 1, "currency: expected a currency code of three capital letters"),
        (
            [
                (
                    "    credit: {per_grant: 25, per_day: 150}",
                    "    credit: {per_grant: 25, per_day: 150}\n    credit: {per_grant: 25, per_day: 150}",
                )
            ],
            9,
            "authority.agent.credit: duplicate key",
        ),
        (
            [
                (
                    "  credit: {label: Account credit, unit: EUR, cash_per_unit: 1}",
                    "  credit: {unit: EUR, cash_per_unit: 1}",
                )
            ],
            4,
            "kinds.credit.label: missing; this entry needs it",
        ),
        (
            [("{kind: miles, amount: 6000}", "{kind: miles, amount: 6000, currency: EUR}")],
            27,
            "proposals[0].propose.currency: unknown field for this entry",
        ),
        ([("proposals:\n", "proposals: [\n")], None, "not valid YAML"),
        # kinds
        (
            [
                ("  apology: {label: Apology only}", "  Apology: {label: Apology only}"),
                ("{kind: apology}", "{kind: Apology}"),
            ],
            3,
            "kinds.Apology: a kind id is lower-case letters, digits, '_' or '-'",
        ),
        (
            [("{label: Apology only}", "{label: Apology only, cash_per_unit: 2}")],
            3,
            "kinds.apology.cash_per_unit: a kind without a unit is an apology only and costs nothing",
        ),
        (
            [("{label: Account credit, unit: EUR, cash_per_unit: 1}", "{label: Account credit, unit: EUR}")],
            4,
            "kinds.credit.cash_per_unit: missing; a kind counted in EUR needs the cash value of one EUR",
        ),
        (
            [("cash_per_unit: 0.01", "cash_per_unit: -0.01")],
            5,
            "kinds.miles.cash_per_unit: expected a number of 0 or more, got -0.01",
        ),
        (
            [("cash_per_unit: 0.01", "cash_per_unit: a cent")],
            5,
            "kinds.miles.cash_per_unit: expected a number of 0 or more, got 'a cent'",
        ),
        # authority
        (
            [("{per_grant: 25, per_day: 150}", "{per_grant: lots, per_day: 150}")],
            8,
            "authority.agent.credit.per_grant: expected a number of 0 or more, or 'unlimited', got 'lots'",
        ),
        (
            [("{per_grant: 25, per_day: 150}", "{per_grant: -25, per_day: 150}")],
            8,
            "authority.agent.credit.per_grant: expected a number of 0 or more, or 'unlimited', got -25",
        ),
        ([("{per_grant: 25, per_day: 150}", "{per_grant: 25}")], 8, "authority.agent.credit.per_day: missing"),
        (
            [("  manager:\n", "  boss:\n")],
            10,
            "authority.boss: unknown role; the roles are agent, lead, manager, admin",
        ),
        (
            [("    miles: {per_grant: 6000", "    points: {per_grant: 6000")],
            9,
            "authority.agent.points: unknown remedy kind; the kinds are apology, credit, miles",
        ),
        (
            [("    miles: {per_grant: 6000, per_day: 30000}", "    apology: {per_grant: 1, per_day: 1}")],
            9,
            "authority.agent.apology: 'apology' is an apology only, with no amount to limit",
        ),
        (
            [("{per_grant: 25, per_day: 150}", "{per_grant: 25, per_day: 20}")],
            8,
            "authority.agent.credit.per_day: below per_grant (25)",
        ),
        (
            [("{per_grant: 25, per_day: 150}", "{per_grant: unlimited, per_day: 150}")],
            8,
            "authority.agent.credit.per_day: below per_grant (unlimited)",
        ),
        # budgets
        ([("  credit: 20000", "  credit: -5")], 13, "budgets.credit: expected a number of 0 or more, got -5"),
        ([("  credit: 20000", "  credit: true")], 13, "budgets.credit: expected a number of 0 or more, got True"),
        ([("  credit: 20000", "  voucher: 200")], 13, "budgets.voucher: unknown remedy kind"),
        # customer value
        ([("window: 365d", "window: a year")], 15, "customer_value.window: expected a duration like '30m'"),
        (
            [("{on: order.placed, amount: data.total}", "{on: order placed, amount: data.total}")],
            17,
            "customer_value.spend[0].on: expected an event type such as order.placed, got 'order placed'",
        ),
        (
            [("amount: data.total}", "amount: total}")],
            17,
            "customer_value.spend[0].amount: a path starts at data or at an envelope field",
        ),
        (
            [("amount: data.total}", "amount: subject}")],
            17,
            "customer_value.spend[0].amount: an amount is a number inside data, like data.total, not 'subject'",
        ),
        (
            [("{on: booking.confirmed, amount: data.fare}", "{on: order.placed, amount: data.total}")],
            18,
            "customer_value.spend[1]: order.placed with data.total is already counted",
        ),
        (
            [("{from: 0, tier: standard}", "{from: 10, tier: standard}")],
            20,
            "customer_value.tiers[0].from: the first tier starts from 0",
        ),
        (
            [("{from: 2000, tier: gold}", "{from: 500, tier: gold}")],
            22,
            "customer_value.tiers[2].from: tiers go up: 500 is not above 500",
        ),
        (
            [("{from: 500, tier: silver}", "{from: 500, tier: standard}")],
            21,
            "customer_value.tiers[1].tier: duplicate tier 'standard'",
        ),
        (
            [("{from: 500, tier: silver}", "{from: 500, tier: Silver}")],
            21,
            "customer_value.tiers[1].tier: a tier name is lower-case letters",
        ),
        (
            [("{from: 500, tier: silver}", "{from: many, tier: silver}")],
            21,
            "customer_value.tiers[1].from: expected a number of 0 or more, got 'many'",
        ),
        # proposals
        (
            [("{kind: miles, amount: 6000}", "{kind: points, amount: 6000}")],
            27,
            "proposals[0].propose.kind: unknown remedy kind 'points'; the kinds are apology, credit, miles",
        ),
        (
            [("{kind: apology}", "{kind: apology, amount: 5}")],
            32,
            "proposals[2].propose.amount: 'apology' is an apology only and has no amount",
        ),
        (
            [("{kind: miles, amount: 2000}", "{kind: miles}")],
            30,
            "proposals[1].propose.amount: missing; 'miles' is counted in miles and needs an amount",
        ),
        (
            [("{kind: miles, amount: 2000}", "{kind: miles, amount: 0}")],
            30,
            "proposals[1].propose.amount: 0 miles gives nothing",
        ),
        (
            [("{kind: miles, amount: 2000}", "{kind: miles, amount: -2000}")],
            30,
            "proposals[1].propose.amount: expected a number of 0 or more, got -2000",
        ),
        (
            [("{kind: miles, amount: 2000}", "{kind: miles, amount: 2k}")],
            30,
            "proposals[1].propose.amount: expected a number of 0 or more, got '2k'",
        ),
        (
            [("tiers: [gold]}", "tiers: [platinum]}")],
            26,
            "proposals[0].when.tiers[0]: unknown tier 'platinum'; the tiers are standard, silver, gold",
        ),
        (
            [("  - id: long-delay", "  - id: frequent-flyer-long-delay")],
            28,
            "proposals[1].id: duplicate proposal id 'frequent-flyer-long-delay' (first at proposals[0])",
        ),
        ([("  - id: long-delay", "  - id: Long delay")], 28, "proposals[1].id: a proposal id is lower-case letters"),
        ([("min_severity: 3,", "min_severity: 5,")], 26, "proposals[0].when.min_severity: must be 1 to 4, got 5"),
        ([("min_severity: 3,", "min_severity: 0,")], 26, "proposals[0].when.min_severity: must be 1 to 4, got 0"),
        (
            [("when: {rules: [air-long-delay]}", "when: {rules: []}")],
            29,
            "proposals[1].when.rules: an empty list matches no rule",
        ),
        (
            [("  - id: fallback\n", "  - id: fallback\n    when: {min_severity: 2}\n")],
            32,
            "proposals[2].when: no proposal matches a case this last entry's `when` leaves out; add a final entry "
            "without `when`",
        ),
        (
            [
                (
                    "    propose: {kind: apology}\n",
                    "    propose: {kind: apology}\n  - id: late\n    propose: {kind: apology}\n",
                )
            ],
            33,
            "proposals[3]: never used: proposals[2] (fallback) matches every case and the first match wins",
        ),
    ],
)
def test_every_problem_names_file_line_and_field(
    changes: list[tuple[str, str]], line: int | None, expected: str
) -> None:
    found = problems(variant(*changes))

    assert len(found) == 1, found
    where = f"{FILE}:{line}: " if line is not None else f"{FILE}:"
    assert found[0].startswith(where), found
    assert expected in found[0], found


def test_a_missing_or_empty_section_and_a_misshapen_limit_are_named() -> None:
    assert problems(POLICY[: POLICY.index("proposals:")]) == [f"{FILE}:1: proposals: missing; a remedy policy needs it"]
    assert problems(variant(("  tiers:\n", "  tiers: []\n  old_tiers:\n"))) == [
        f"{FILE}:19: customer_value.tiers: needs at least one entry",
        f"{FILE}:20: customer_value.old_tiers: unknown field for this entry",
    ]
    assert problems(variant(("{per_grant: 6000, per_day: 30000}", "6000"))) == [
        f"{FILE}:9: authority.agent.miles: expected {{per_grant: N, per_day: N}} or 'unlimited'"
    ]
    assert problems("- a list\n") == [f"{FILE}:1: a remedy policy is a mapping; see docs/remedies.md"]


def test_a_last_entry_listing_every_tier_matches_every_case() -> None:
    text = variant(("  - id: fallback\n", "  - id: fallback\n    when: {tiers: [gold, silver, standard]}\n"))

    assert parse_policy(text).propose(rule_id=None, severity=1, value=a_customer()).policy == "fallback"


def test_a_policy_with_several_problems_loads_nothing_and_lists_them_all_in_file_order() -> None:
    text = variant(
        ("  manager:\n", "  boss:\n"),
        ("  credit: 20000", "  credit: -5"),
        ("window: 365d", "window: a year"),
        ("tiers: [gold]}", "tiers: [x]}"),
    )

    with pytest.raises(PolicyError) as caught:
        parse_policy(text, FILE)

    lines = str(caught.value).splitlines()
    assert [line.split(":")[1] for line in lines] == ["10", "13", "15", "26"]
    assert all(line.startswith(f"{FILE}:") for line in lines)
    assert caught.value.field == "authority.boss"
    assert caught.value.reason.endswith("(and 3 more)")
    assert isinstance(caught.value, InvalidInput)


def test_references_to_a_misshapen_kind_are_not_reported_as_unknown() -> None:
    found = problems(variant(("cash_per_unit: 0.01", "cash_per_unit: -1")))

    assert found == [f"{FILE}:5: kinds.miles.cash_per_unit: expected a number of 0 or more, got -1"]


def test_a_file_is_read_from_disk_and_a_missing_one_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "remedies.yaml"
    path.write_text(POLICY, encoding="utf-8")
    assert load_policy(path).file == path

    with pytest.raises(PolicyError) as caught:
        load_policy(tmp_path / "missing.yaml")
    assert "cannot be read" in str(caught.value)


@pytest.mark.parametrize(
    ("rule_id", "severity", "tier", "chosen", "amount", "reason"),
    [
        (
            "air-long-delay",
            3,
            "gold",
            "frequent-flyer-long-delay",
            6000,
            "severity 3 long delay for a gold customer: 6000 miles",
        ),
        (
            "air-long-delay",
            4,
            "gold",
            "frequent-flyer-long-delay",
            6000,
            "severity 4 long delay for a gold customer: 6000 miles",
        ),
        # below the severity, or another tier: the next entry
        (
            "air-long-delay",
            2,
            "gold",
            "long-delay",
            2000,
            "severity 2 'air-long-delay' incident for a gold customer: 2000 miles",
        ),
        (
            "air-long-delay",
            4,
            "silver",
            "long-delay",
            2000,
            "severity 4 'air-long-delay' incident for a silver customer: 2000 miles",
        ),
        # another rule, or a case no rule opened: the last entry
        (
            "shop-late-delivery",
            4,
            "gold",
            "fallback",
            0,
            "severity 4 'shop-late-delivery' incident for a gold customer: apology only",
        ),
        (None, 3, "standard", "fallback", 0, "severity 3 case for a standard customer: apology only"),
    ],
)
def test_the_first_matching_entry_proposes_and_says_which_and_why(
    rule_id: str | None, severity: int, tier: str, chosen: str, amount: int, reason: str
) -> None:
    policy = parse_policy(POLICY, FILE)

    proposal = policy.propose(rule_id=rule_id, severity=severity, value=a_customer(tier))

    assert (proposal.policy, proposal.amount, proposal.reason) == (chosen, Decimal(amount), reason)
    assert proposal.kind == ("apology" if amount == 0 else "miles")


def test_a_proposal_in_cash_names_the_kind() -> None:
    text = variant(("{kind: miles, amount: 2000}", "{kind: credit, amount: 12.50}"))

    proposal = parse_policy(text).propose(rule_id="air-long-delay", severity=2, value=a_customer("silver"))

    assert proposal.amount == Decimal("12.5")
    assert proposal.reason == "severity 2 'air-long-delay' incident for a silver customer: account credit of 12.5 EUR"


def test_a_proposal_for_an_unknown_tier_or_impossible_severity_is_refused() -> None:
    policy = parse_policy(POLICY, FILE)

    with pytest.raises(InvalidInput) as caught:
        policy.propose(rule_id=None, severity=2, value=a_customer("platinum"))
    assert (caught.value.field, caught.value.reason) == (
        "tier",
        "unknown tier 'platinum'; the tiers are standard, silver, gold",
    )
    for severity in (0, 6):
        with pytest.raises(InvalidInput) as caught:
            policy.propose(rule_id=None, severity=severity, value=a_customer())
        assert caught.value.field == "severity"


@pytest.mark.parametrize(
    ("limit", "amount", "granted_today", "allowed"),
    [
        (Limit(Decimal(25), Decimal(150)), "25", "0", True),  # equal to the limit is within it
        (Limit(Decimal(25), Decimal(150)), "25.01", "0", False),
        (Limit(Decimal(25), Decimal(150)), "25", "125", True),  # reaches the day's limit exactly
        (Limit(Decimal(25), Decimal(150)), "25", "125.01", False),
        (Limit(Decimal(25), Decimal(150)), "0.01", "150", False),
        (Limit(None, Decimal(100)), "100", "0", True),
        (Limit(None, Decimal(100)), "1", "100", False),
        (Limit(Decimal(10), None), "10", "1000000", True),
        (Limit(Decimal(10), None), "10.5", "0", False),
        (Limit(None, None), "1000000", "1000000", True),
        (Limit(Decimal(0), Decimal(0)), "0", "0", True),
        (Limit(Decimal(0), Decimal(0)), "0.01", "0", False),
    ],
)
def test_a_limit_allows_up_to_and_including_its_bounds(
    limit: Limit, amount: str, granted_today: str, allowed: bool
) -> None:
    assert limit.allows(Decimal(amount), Decimal(granted_today)) is allowed


@pytest.mark.parametrize(
    ("cash_per_unit", "amount", "cash"),
    [
        ("0.01", "6000", "60.00"),
        ("0.01", "3333", "33.33"),
        ("0.01", "0.5", "0.01"),  # half a cent rounds up, not to even
        ("0.5", "12.17", "6.09"),  # 6.085: half up
        ("0.5", "12.15", "6.08"),  # 6.075
        ("1", "19.994", "19.99"),
        ("120", "2", "240.00"),
        ("0", "5", "0.00"),
    ],
)
def test_cash_value_is_rounded_half_up_to_the_cent(cash_per_unit: str, amount: str, cash: str) -> None:
    kind = RemedyKind("k", "K", "units", Decimal(cash_per_unit), needs_amount=True)

    value = kind.cash_value(Decimal(amount))

    assert value == Decimal(cash)
    assert value.as_tuple().exponent == -2


def test_a_cash_value_written_as_a_decimal_is_read_exactly() -> None:
    miles = parse_policy(POLICY).kind("miles")

    assert miles.cash_per_unit == Decimal("0.01")  # not the binary float nearest 0.01
    assert miles.cash_value(Decimal(1)) == Decimal("0.01")


@pytest.mark.parametrize(
    ("spend", "tier"),
    [
        ("-5", "standard"),
        ("0", "standard"),
        ("499.99", "standard"),
        ("500", "silver"),
        ("1999.99", "silver"),
        ("2000", "gold"),
        ("1e6", "gold"),
    ],
)
def test_a_tier_starts_at_its_threshold(spend: str, tier: str) -> None:
    assert parse_policy(POLICY).value.tier_of(Decimal(spend)) == tier


def test_unknown_rules_names_the_entries_that_can_never_fire() -> None:
    policy = parse_policy(POLICY, FILE)
    others = parse_rules([(None, "rules:\n  - {id: shop-late, kind: match, on: order.late}\n")])
    disabled = parse_rules(
        [(None, "rules:\n  - {id: air-long-delay, kind: match, on: flight.arrived, enabled: false}\n")]
    )

    found = [str(problem) for problem in unknown_rules(policy, others)]

    assert found == [
        f"{FILE}:26: proposals[0].when.rules[0]: no rule 'air-long-delay' in the rule set; this never matches",
        f"{FILE}:29: proposals[1].when.rules[0]: no rule 'air-long-delay' in the rule set; this never matches",
    ]
    assert unknown_rules(policy, disabled) == []


# --- the shipped policy ------------------------------------------------------------------------------------


def test_the_shipped_policy_loads_and_names_only_rules_of_the_shipped_packs() -> None:
    policy = shipped_policy()

    assert policy.currency == "EUR"
    assert policy.file is not None
    assert policy.file.name == "remedies.yaml"
    assert {"apology", "credit", "voucher", "miles", "refund", "replacement", "paid_cost", "upgrade"} <= set(
        policy.kinds
    )
    assert unknown_rules(policy, load_rules(pack_paths(PACKS))) == []


def test_a_seven_hour_delay_of_a_frequent_flyer_gets_6000_miles_an_agent_grants_on_the_spot() -> None:
    policy = shipped_policy()
    rule = load_rules(pack_paths(["airline"])).get("air-long-delay")
    assert rule is not None
    arrived = Event("e-1", "https://airline.example.com", "flight.arrived", AT, "P-1", {"delay_minutes": 420})
    severity = rule.common.severity.of(arrived)
    gold = CustomerValue(Decimal("2400.00"), policy.value.tier_of(Decimal("2400.00")), AT - policy.value.window)

    proposal = policy.propose(rule_id="air-long-delay", severity=severity, value=gold)

    assert (proposal.kind, proposal.amount) == ("miles", Decimal(6000))
    assert proposal.reason == "severity 3 long delay for a gold customer: 6000 miles"
    assert policy.limit(Role.AGENT, "miles").allows(proposal.amount, Decimal(0))
    assert policy.kind("miles").cash_value(proposal.amount) == Decimal("60.00")


def test_a_lost_bag_is_above_an_agents_limit_and_within_a_managers() -> None:
    policy = shipped_policy()

    proposal = policy.propose(rule_id="air-lost-bag", severity=4, value=a_customer())

    assert proposal.kind == "paid_cost"
    assert not policy.limit(Role.AGENT, proposal.kind).allows(proposal.amount, Decimal(0))
    assert policy.limit(Role.MANAGER, proposal.kind).allows(proposal.amount, Decimal(0))


def _every_proposal(policy: RemedyPolicy) -> list[tuple[str, Decimal]]:
    return [(entry.kind, entry.amount) for entry in policy.proposals]


def test_in_the_shipped_policy_every_proposal_is_within_a_managers_limit() -> None:
    policy = shipped_policy()

    for kind, amount in _every_proposal(policy):
        assert policy.limit(Role.MANAGER, kind).allows(amount, Decimal(0)), (kind, amount)


def test_in_the_shipped_policy_more_trusted_roles_may_grant_at_least_as_much() -> None:
    policy = shipped_policy()

    def bound(value: Decimal | None) -> Decimal:
        return Decimal("Infinity") if value is None else value

    for kind in policy.kinds:
        limits = [policy.limit(role, kind) for role in ROLES]
        for lower, higher in itertools.pairwise(limits):
            assert bound(lower.per_grant) <= bound(higher.per_grant), kind
            assert bound(lower.per_day) <= bound(higher.per_day), kind


def test_in_the_shipped_policy_an_agent_grants_every_proposal_but_the_big_ones() -> None:
    policy = shipped_policy()

    above = [
        entry.id
        for entry in policy.proposals
        if not policy.limit(Role.AGENT, entry.kind).allows(entry.amount, Decimal(0))
    ]

    assert above == ["air-stranded-frequent-flyer", "air-lost-bag", "car-kept-for-days"]
