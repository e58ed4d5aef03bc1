"""Message templates: the shipped set loads and covers every step; the most specific template whose facts
are present is chosen; rendering fills the customer's own terms, escapes HTML only in HTML, and stays in the
sandbox; every check reports its file, line and field, and a set with any problem loads nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import jinja2
import pytest

from amends.detect import load_rules
from amends.detect.packs import PACKS, pack_paths
from amends.outreach.packs import TEMPLATES_DIR
from amends.outreach.templates import (
    DEFAULT_LANGUAGE,
    STEPS,
    Template,
    TemplateRenderError,
    TemplateSet,
    TemplateSetError,
    format_amount,
    format_day,
    format_minutes,
    format_money,
    incident_context,
    load_templates,
    parse_templates,
    preview_context,
    render,
    shipped_templates,
    unknown_rules,
)
from amends.yamldoc import FileProblem

GENERIC_FILE = Path("templates/generic.yaml")
RULE_FILE = Path("templates/airline.yaml")

GENERIC = """\
templates:
  - {id: g-empathise, step: empathise, language: en, subject: Sorry, text: We are sorry.}
  - {id: g-remedy, step: lessen_inconvenience, language: en, subject: Amends, text: "We added {{ remedy.text }}."}
  - {id: g-follow-up, step: manage_memory, language: en, subject: "Right?", text: "Did we make it right?"}
  - {id: g-thanks, step: extend_experience, language: en, subject: Thanks, text: Thank you.}
"""


def parse(text: str) -> TemplateSet:
    """`text` read as airline.yaml beside a good generic.yaml."""
    return parse_templates([(GENERIC_FILE, GENERIC), (RULE_FILE, text)])


def problems(text: str) -> list[FileProblem]:
    """The problems of `text` read as airline.yaml beside a good generic.yaml."""
    with pytest.raises(TemplateSetError) as caught:
        parse(text)
    return caught.value.problems


def only(found: list[FileProblem]) -> FileProblem:
    assert len(found) == 1, [str(problem) for problem in found]
    return found[0]


def chosen_id(templates: TemplateSet, **choice: Any) -> str | None:
    template = templates.choose(**choice)
    return None if template is None else template.id


def context(**changes: Any) -> dict[str, Any]:
    """The example context in English, with some of its names replaced."""
    example = preview_context("en")
    example.update(changes)
    return example


def a_delayed_flight(*, flight_no: str = "AA123", delay_minutes: int = 420) -> dict[str, Any]:
    """The context of a case opened because a passenger's flight arrived late yesterday evening."""
    incident = incident_context(
        rule_id="air-long-delay",
        key="K7Q2XM",
        severity=3,
        failure_at=datetime(2025, 5, 3, 18, 40, tzinfo=UTC),
        facts={
            "event": {"id": "e1"},
            "data": {"booking_ref": "K7Q2XM", "flight_no": flight_no, "delay_minutes": delay_minutes},
        },
    )
    return context(incident=incident)


# --- the shipped set -------------------------------------------------------------------------------------


def test_the_shipped_templates_load_with_a_generic_template_for_every_step_in_english_german_and_spanish() -> None:
    templates = shipped_templates()

    generic = {(t.step, t.language) for t in templates if t.rule is None}
    assert generic == {(step, language) for step in STEPS for language in ("en", "de", "es")}
    assert all(t.file is not None and t.file.parent == TEMPLATES_DIR and t.line for t in templates)


def test_the_shipped_templates_apologise_for_the_sample_businesses_most_common_incidents() -> None:
    templates = shipped_templates()
    rules = load_rules(pack_paths(PACKS))

    apologies = {t.rule for t in templates if t.step == "empathise" and t.rule is not None and t.language == "en"}
    assert {
        "air-long-delay",
        "air-flight-cancelled",
        "air-delayed-bag",
        "air-lost-bag",
        "shop-late-delivery",
        "shop-damaged-item",
        "car-job-late",
        "car-rework",
    } <= apologies
    assert unknown_rules(templates, rules) == []


def test_every_shipped_template_renders_for_a_customer_we_know_little_about() -> None:
    for template in shipped_templates():
        sparse = preview_context(template.language)
        sparse["customer"].update(name=None, timezone=None)
        sparse["case"]["owner_name"] = None
        sparse["links"] = {"feedback": None, "unsubscribe": None}
        if template.step != "lessen_inconvenience":
            sparse["remedy"] = None
        if template.rule is None:
            sparse["incident"] = None

        rendered = render(template, sparse)

        assert rendered.subject
        assert "None" not in rendered.text
        assert "\n\n\n" not in rendered.text


def test_the_brief_s_apology_comes_out_in_the_customer_s_own_terms() -> None:
    templates = shipped_templates()
    case = a_delayed_flight()
    template = templates.choose(step="lessen_inconvenience", rule_id="air-long-delay", language="en", facts=case)
    assert template is not None

    rendered = render(template, case)

    assert rendered.subject == "Your flight AA123"
    assert (
        "Your flight AA123 arrived 7 hours late yesterday. We are sorry; we have added 6,000 miles to your account."
        in rendered.text
    )
    assert rendered.html is not None
    assert "<p>Your flight AA123 arrived 7 hours late yesterday." in rendered.html


# --- choosing ----------------------------------------------------------------------------------------------


def test_choose_prefers_the_rule_s_template_to_the_generic_one() -> None:
    templates = shipped_templates()

    chosen = templates.choose(step="empathise", rule_id="air-long-delay", language="en", facts=a_delayed_flight())

    assert chosen is not None
    assert chosen.id == "air-long-delay-apology"


def test_choose_falls_back_to_the_generic_template_when_a_required_fact_is_missing() -> None:
    templates = shipped_templates()
    case = a_delayed_flight()
    case["incident"]["data"] = {"booking_ref": "K7Q2XM", "delay_minutes": 420}  # no flight number

    chosen = templates.choose(step="empathise", rule_id="air-long-delay", language="en", facts=case)

    assert chosen is not None
    assert chosen.id == "generic-empathise-en"


def test_choose_counts_a_fact_that_is_none_as_missing() -> None:
    text = """\
templates:
  - id: named-thanks
    step: extend_experience
    language: de
    requires: [customer.name]
    subject: Thanks
    text: Thank you, {{ customer.name }}.
"""
    templates = parse(text)
    named = context()
    anonymous = context()
    anonymous["customer"]["name"] = None

    assert chosen_id(templates, step="extend_experience", rule_id=None, language="de", facts=named) == "named-thanks"
    assert chosen_id(templates, step="extend_experience", rule_id=None, language="de", facts=anonymous) == "g-thanks"


def test_choose_falls_back_to_english_in_the_order_rule_then_generic() -> None:
    templates = shipped_templates()
    case = a_delayed_flight()

    def chosen(step: str, rule_id: str | None, language: str) -> str | None:
        template = templates.choose(step=step, rule_id=rule_id, language=language, facts=case)
        return None if template is None else template.id

    assert chosen("empathise", "air-long-delay", "de") == "air-long-delay-apology"  # the rule's, in English
    assert chosen("empathise", "shop-return-soon-after-delivery", "de-AT") == "generic-empathise-de"
    assert chosen("empathise", None, "ES") == "generic-empathise-es"
    assert chosen("empathise", None, "fr") == "generic-empathise-en"
    assert chosen("take_ownership", None, "en") is None  # that step writes to nobody


def test_a_generic_template_that_reads_the_incident_is_not_chosen_for_a_complaint() -> None:
    templates = parse(
        """\
templates:
  - id: when-de
    step: empathise
    language: de
    requires: [incident.failure_at]
    subject: Entschuldigung
    text: Es tut uns leid, was {{ incident.failure_at | day }} passiert ist.
"""
    )
    complaint = context(incident=None)

    assert chosen_id(templates, step="empathise", rule_id=None, language="de", facts=complaint) == "g-empathise"
    assert chosen_id(templates, step="empathise", rule_id=None, language="de", facts=context()) == "when-de"


# --- rendering ---------------------------------------------------------------------------------------------


def test_html_is_escaped_in_the_html_part_but_not_in_the_text_or_subject() -> None:
    template = shipped_templates().get("generic-empathise-en")
    assert template is not None
    case = context()
    case["customer"]["name"] = "<script>alert(1)</script> & Co"

    rendered = render(template, case)

    assert rendered.text.startswith("Dear <script>alert(1)</script> & Co,")
    assert rendered.html is not None
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in rendered.html
    assert "<script>" not in rendered.html


def test_render_raises_naming_the_template_and_part_when_a_fact_is_missing() -> None:
    template = shipped_templates().get("air-long-delay-apology")
    assert template is not None
    case = a_delayed_flight()
    case["incident"]["data"] = {}

    with pytest.raises(TemplateRenderError) as caught:
        render(template, case)

    assert caught.value.template_id == "air-long-delay-apology"
    assert caught.value.part == "subject"
    assert "flight_no" in caught.value.reason
    assert isinstance(caught.value.__cause__, jinja2.UndefinedError)


def test_the_sandbox_refuses_python_internals_at_render_time() -> None:
    unchecked = Template(
        id="escape", step="empathise", rule=None, language="en", requires=(), subject="Hi",
        text="{{ ''.__class__.__mro__[1].__subclasses__() }}", html=None,
    )  # fmt: skip

    with pytest.raises(TemplateRenderError) as caught:
        render(unchecked, context())

    assert caught.value.part == "text"
    assert isinstance(caught.value.__cause__, jinja2.exceptions.SecurityError)


def test_the_sandbox_refuses_huge_values() -> None:
    unchecked = Template("big", "empathise", None, "en", (), "Hi", "{{ 'x' * 100000000 }}", None)

    with pytest.raises(TemplateRenderError) as caught:
        render(unchecked, context())

    assert isinstance(caught.value.__cause__, jinja2.exceptions.SecurityError)


def test_a_fact_named_like_a_method_reads_the_fact() -> None:
    template = Template(
        "items", "empathise", "shop-late-delivery", "en", (), "Hi", "{{ incident.data.items }} items", None
    )
    case = context()
    case["incident"]["data"] = {"items": 3}

    assert render(template, case).text == "3 items"


def test_the_text_keeps_no_gaps_where_a_condition_wrote_nothing() -> None:
    template = Template(
        "gaps", "empathise", None, "en", (), "  Two\n  lines ", "A\n\n{% if false %}\nB\n{% endif %}\n\nC   \n", None
    )

    rendered = render(template, context())

    assert rendered.subject == "Two lines"
    assert rendered.text == "A\n\nC"


# --- filters -----------------------------------------------------------------------------------------------


def test_amounts_and_money_are_written_as_the_language_writes_them() -> None:
    assert format_amount(6000, "en") == "6,000"
    assert format_amount(Decimal("6000.00"), "de") == "6.000"
    assert format_amount(6000, "es") == "6000"  # Spanish groups from five digits
    assert format_amount(16000, "es") == "16.000"
    assert format_amount(1.5, "de") == "1,5"
    assert format_money(26.6, "EUR", "en") == "€26.60"
    assert format_money(Decimal("1234.5"), "EUR", "de") == "1.234,50\u00a0€"
    assert format_money(240, "USD", "es") == "240,00\u00a0$"
    assert format_money(12, "CHF", "en") == "CHF\u00a012.00"


def test_minutes_are_written_as_hours_and_minutes() -> None:
    assert format_minutes(420, "en") == "7 hours"
    assert format_minutes(200, "en") == "3 hours and 20 minutes"
    assert format_minutes(61, "de") == "1 Stunde und 1 Minute"
    assert format_minutes(45, "es") == "45 minutos"


def test_day_says_yesterday_or_the_date_in_the_customer_s_time_zone() -> None:
    now = datetime(2025, 5, 4, 9, 30, tzinfo=UTC)

    assert format_day(datetime(2025, 5, 3, 18, 40, tzinfo=UTC), now=now, timezone=None, language="en") == "yesterday"
    assert format_day("2025-05-02T20:00:00+02:00", now=now, timezone="Europe/Berlin", language="en") == "on 2 May"
    assert format_day("2025-05-02T20:00:00+02:00", now=now, timezone=None, language="de") == "am 2. Mai"
    assert format_day("2024-12-24T10:00:00Z", now=now, timezone=None, language="es") == "el 24 de diciembre de 2024"
    # 23:30 UTC on 3 May is already 4 May in Berlin: today there, yesterday in UTC.
    late = datetime(2025, 5, 3, 23, 30, tzinfo=UTC)
    assert format_day(late, now=now, timezone="Europe/Berlin", language="de") == "heute"
    assert format_day(late, now=now, timezone="UTC", language="es") == "ayer"


def test_the_day_filter_counts_from_the_context_s_now() -> None:
    template = Template("day", "empathise", None, "de", (), "Hi", "{{ now | day }} / {{ case.opened_at | day }}", None)
    case = preview_context("de")
    case["now"] = datetime(2025, 5, 5, 12, 0, tzinfo=UTC)

    assert render(template, case).text == "heute / gestern"


# --- incidents -----------------------------------------------------------------------------------------


def test_incident_context_reads_the_facts_of_each_kind_of_rule() -> None:
    at = datetime(2025, 5, 3, tzinfo=UTC)

    def of(facts: dict[str, Any]) -> tuple[Any, Any]:
        incident = incident_context(rule_id="r", key="k", severity=2, failure_at=at, facts=facts)
        return incident["data"], incident["first_data"]

    assert of({"event": {}, "data": {"order_id": "O-1"}}) == ({"order_id": "O-1"}, {})
    assert of({"start": {}, "data": {"job_id": "J-1"}, "deadline": "x"}) == ({"job_id": "J-1"}, {})
    sequence = {"first": {}, "first_data": {"job_id": "J-1"}, "then": {}, "then_data": {"job_id": "J-2"}}
    assert of(sequence) == ({"job_id": "J-2"}, {"job_id": "J-1"})
    assert of({"count": 3, "within": "7d", "first_at": "x", "last": {}}) == ({"count": 3, "within": "7d"}, {})


# --- the checks --------------------------------------------------------------------------------------------


def test_a_template_reading_an_incident_fact_it_does_not_require_fails_its_check() -> None:
    problem = only(
        problems(
            """\
templates:
  - id: delay
    step: empathise
    rule: air-long-delay
    language: en
    requires: [incident.data.flight_no]
    subject: About {{ incident.data.flight_no }}
    text: |
      Dear customer,
      your flight was {{ incident.data.delay_minutes }} minutes late.
"""
        )
    )

    assert (problem.file, problem.line, problem.field) == (RULE_FILE, 10, "templates[0].text")
    assert "incident.data.delay_minutes is a fact of the incident, which may be missing" in problem.reason


def test_an_optional_fact_under_default_needs_no_requires() -> None:
    templates = parse(
        """\
templates:
  - id: damaged
    step: empathise
    rule: shop-damaged-item
    language: en
    subject: Your order
    text: >-
      It came with {{ incident.data.carrier | default('the carrier') }}
      {%- if incident.data.note is defined %}!{% endif %}.
"""
    )
    case = context()
    case["incident"]["data"] = {}

    template = templates.get("damaged")
    assert template is not None
    assert render(template, case).text == "It came with the carrier."


def test_a_generic_template_must_require_the_incident_to_read_it() -> None:
    problem = only(
        problems(
            """\
templates:
  - id: when
    step: empathise
    language: de
    subject: Entschuldigung
    text: Es tut uns leid, was {{ incident.failure_at | day }} passiert ist.
"""
        )
    )

    assert (problem.line, problem.field) == (6, "templates[0].text")
    assert "incident is None for a case no incident opened" in problem.reason


def test_the_remedy_is_only_for_the_remedy_confirmation() -> None:
    found = problems(
        """\
templates:
  - id: early
    step: empathise
    language: de
    requires: [remedy.text]
    subject: Entschuldigung
    text: Wir schenken Ihnen {{ remedy.text }}.
"""
    )

    problem = only(found)
    assert (problem.line, problem.field) == (5, "templates[0].requires[0]")
    assert "remedy is None for steps other than lessen_inconvenience" in problem.reason
    problem = only(problems("templates:\n" + entry(step="manage_memory", text="'{{ remedy.text }}'")))
    assert "remedy is None for steps other than lessen_inconvenience" in problem.reason


def test_python_internals_fail_the_check() -> None:
    found = problems(
        """\
templates:
  - id: escape
    step: empathise
    language: de
    subject: Hallo
    text: |
      Guten Tag,

      {{ ''.__class__.__mro__ }}
"""
    )

    assert [(p.line, p.field) for p in found] == [(9, "templates[0].text")] * 2
    assert {p.reason for p in found} == {
        f"cannot read {name!r}: names starting with '_' are closed to templates (the sandbox)"
        for name in ("__class__", "__mro__")
    }


def entry(*, step: str = "empathise", language: str = "de", subject: str = "Hi", text: str = "Hi", **more: str) -> str:
    """One template in block style: its id on line 2, step 3, language 4, then `more` a line each, then the
    subject and the text."""
    fields = {"step": step, "language": language, **more, "subject": subject, "text": text}
    return "  - id: x\n" + "".join(f"    {name}: {value}\n" for name, value in fields.items())


BLOCK = "|\n      Hallo\n      "  # a text whose second line (line 8 when nothing comes between) follows


@pytest.mark.parametrize(
    ("entry_text", "line", "field", "reason"),
    [
        ("  - {id: x, step: empathise, language: de, subject: Hallo}", 2, "templates[0].text", "missing"),
        (entry(colour="red"), 5, "templates[0].colour", "unknown field"),
        (entry(step="empathize"), 3, "templates[0].step", "did you mean 'empathise'?"),
        (entry(step="take_ownership"), 3, "templates[0].step", "sends the customer nothing"),
        (entry(language="de-AT"), 4, "templates[0].language", "write 'de'"),
        (entry(text=BLOCK + "{{ customer.name }"), 8, "templates[0].text", "not a valid template"),
        (entry(text=BLOCK + "{{ now | shout }}"), 8, "templates[0].text", "No filter named 'shout'"),
        (entry(subject="'{{ custmer.name }}'"), 5, "templates[0].subject", "unknown name 'custmer' (did you mean"),
        (entry(text="'{{ customer.email }}'"), 6, "templates[0].text", "customer has no field 'email'"),
        (entry(text="'{% set customer = 1 %}'"), 6, "templates[0].text", "'customer' is a name of the context"),
        (
            entry(rule="air-long-delay", text="'{{ incident.data[now] }}'"),
            7,
            "templates[0].text",
            "read the incident's facts by name",
        ),
        (
            entry(requires="[incident.data.x]", samples="{incident.data.y: 1}"),
            6,
            "templates[0].samples.incident.data.y",
            "not under requires",
        ),
        (entry(requires="[incident.dat.x]"), 5, "templates[0].requires[0]", "incident has no field 'dat'"),
    ],
)
def test_each_check_reports_its_line_and_field(entry_text: str, line: int, field: str, reason: str) -> None:
    problem = only(problems(f"templates:\n{entry_text}"))

    assert (problem.file, problem.line, problem.field) == (RULE_FILE, line, field)
    assert reason in problem.reason


def test_a_template_that_does_not_render_with_the_example_fails_with_its_line() -> None:
    text = """\
templates:
  - id: hours
    step: empathise
    rule: car-long-wait
    language: en
    requires: [incident.data.wait_hours]
    subject: Sorry
    text: |
      Dear customer,

      you waited {{ incident.data.wait_hours / 2 }} hours.
"""
    problem = only(problems(text))

    assert (problem.line, problem.field) == (11, "templates[0].text")
    assert "does not render with the example context" in problem.reason
    assert "give the facts the example lacks a value under samples" in problem.reason
    fixed = parse(text.replace("    subject: Sorry", "    samples: {incident.data.wait_hours: 2}\n    subject: Sorry"))
    assert fixed.get("hours") is not None


def test_a_template_must_survive_fields_that_may_be_none() -> None:
    problem = only(
        problems(
            "templates:\n  - {id: x, step: empathise, language: de, subject: Hi, text: '{{ customer.name.upper() }}'}\n"
        )
    )

    assert (problem.line, problem.field) == (2, "templates[0].text")
    assert "every optional field empty" in problem.reason


def test_two_templates_for_the_same_step_rule_and_language_and_two_ids_are_refused() -> None:
    found = problems(
        """\
templates:
  - {id: a, step: empathise, rule: air-long-delay, language: en, subject: Hi, text: Hi}
  - {id: b, step: empathise, rule: air-long-delay, language: en, subject: Hi, text: Hi}
  - {id: g-thanks, step: extend_experience, language: de, subject: Hi, text: Hi}
"""
    )

    assert [(p.line, p.field) for p in found] == [(3, "templates[1]"), (4, "templates[2].id")]
    assert f"first defined at {RULE_FILE}:2" in found[0].reason
    assert f"first defined at {GENERIC_FILE}:5" in found[1].reason


def test_every_step_needs_a_generic_english_template_that_requires_nothing() -> None:
    text = GENERIC.replace(
        "  - {id: g-thanks, step: extend_experience, language: en, subject: Thanks, text: Thank you.}\n", ""
    )
    text = text.replace(
        "step: manage_memory, language: en,", "step: manage_memory, language: en, requires: [links.feedback],"
    )

    with pytest.raises(TemplateSetError) as caught:
        parse_templates([(GENERIC_FILE, text)])

    found = caught.value.problems
    assert [(p.file, p.line, p.field) for p in found] == [(GENERIC_FILE, 4, "requires"), (None, None, "templates")]
    assert "it requires links.feedback" in found[0].reason
    assert (
        f"no generic template (without a rule) for step 'extend_experience' in {DEFAULT_LANGUAGE!r}" in found[1].reason
    )


def test_a_set_with_one_bad_file_loads_nothing(tmp_path: Path) -> None:
    (tmp_path / "generic.yaml").write_text(GENERIC, encoding="utf-8")
    (tmp_path / "shop.yaml").write_text(
        "templates:\n  - {id: x, step: empathise, language: EN, subject: Hi, text: Hi}\n"
    )

    with pytest.raises(TemplateSetError) as caught:
        load_templates([tmp_path])

    problem = only(caught.value.problems)
    assert (problem.file, problem.line, problem.field) == (tmp_path / "shop.yaml", 2, "templates[0].language")
    assert str(problem).startswith(f"{tmp_path / 'shop.yaml'}:2: templates[0].language: ")
    assert len(load_templates([tmp_path / "generic.yaml"])) == 4


def test_unknown_rules_names_templates_that_are_never_chosen() -> None:
    templates = parse(
        "templates:\n  - {id: x, step: empathise, rule: air-no-such-rule, language: en, subject: Hi, text: Hi}\n"
    )

    problem = only(unknown_rules(templates, load_rules(pack_paths(PACKS))))

    assert (problem.file, problem.line, problem.field) == (RULE_FILE, 2, "rule")
    assert "no rule 'air-no-such-rule'" in problem.reason
