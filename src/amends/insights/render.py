"""The report as Markdown, HTML or PDF. One list of sections (titles, sentences, tables and charts, every figure
formatted once) is written three ways: Markdown for pasting, HTML (one self-contained file, charts inline as SVG)
and PDF (A4, charts as PNG). Text from people (suggestion titles, rule ids) is escaped in HTML and drawn as text in
the PDF; the charts draw their labels as paths."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from importlib import resources
from typing import Literal

import jinja2
from fpdf import FPDF
from fpdf.fonts import FontFace, TTFFont
from matplotlib.figure import Figure

from amends.insights import charts
from amends.insights.experiment import Estimate, Round
from amends.insights.outcomes import Outcome
from amends.insights.report import Report

__all__ = ["FORMATS", "Format", "render"]

Format = Literal["html", "pdf", "md"]
FORMATS: tuple[Format, ...] = ("html", "pdf", "md")
_DOCS = "docs/insights.md"
_FONT = ("fontpkg_noto_sans", "files/NotoSans[wdth,wght].ttf")


@dataclass(frozen=True, slots=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Section:
    title: str
    sentences: tuple[str, ...] = ()
    tables: tuple[Table, ...] = ()
    charts: tuple[tuple[str, Callable[[], Figure]], ...] = field(default_factory=tuple)  # (caption, figure)


def render(report: Report, format: Format) -> bytes:
    """The report in a format: UTF-8 text for html and md, PDF bytes for pdf."""
    sections = _sections(report)
    title = f"Recovery and feedback, {_day(report.since)} to {_day(report.until - timedelta(microseconds=1))}"
    if format == "md":
        return _markdown(title, report, sections).encode()
    if format == "html":
        return _html(title, report, sections).encode()
    return _pdf(title, report, sections)


# --- what the report says ----------------------------------------------------------------------------------


def _sections(report: Report) -> list[Section]:
    if report.empty:
        return [
            Section(
                "No data in this period",
                (
                    "Nothing was recorded between these dates: no incident, no case, no feedback, no remedy and no "
                    "suggestion done. The measures are left out rather than shown as zeros.",
                ),
            )
        ]
    m = report.measures
    o = m.overall
    kpis = Table(
        ("measure", "value", "definition"),
        (
            ("cases opened", f"{o.cases:,}", f"{_DOCS}#cases"),
            (
                "proactive share of cases",
                _share(o.proactive / o.cases if o.cases else None),
                f"{_DOCS}#proactive-share",
            ),
            ("median time to first contact", _hours(o.median_time_to_first_contact), f"{_DOCS}#time-to-first-contact"),
            ("first-contact resolution", _share(o.first_contact_resolution_rate), f"{_DOCS}#first-contact-resolution"),
            ("contacts per case", _number(o.mean_contacts), f"{_DOCS}#contacts-and-handoffs"),
            ("handoffs per case", _number(o.mean_handoffs), f"{_DOCS}#contacts-and-handoffs"),
            ("remedy spend", _money(o.remedy_cost_total, m.currency), f"{_DOCS}#remedy-spend"),
            ("incidents found", f"{report.incidents:,}", f"{_DOCS}#incidents"),
            ("feedback received (not spam)", f"{report.feedback:,}", f"{_DOCS}#feedback-response"),
        ),
    )
    weeks = Table(
        ("week", "cases", "proactive", "reactive", "to first contact", "first-contact resolution"),
        tuple(
            (w.label, f"{w.cases.cases:,}", f"{w.cases.proactive:,}", f"{w.cases.reactive:,}",
             _hours(w.cases.median_time_to_first_contact), _share(w.cases.first_contact_resolution_rate))
            for w in m.weeks
        ),
    )  # fmt: skip
    if o.cases:
        recovery = Section(
            "Recovery",
            ("Cases opened in the period, by the week they opened.",),
            (kpis, weeks),
            (("Cases opened each week", lambda: charts.cases_by_week(m)),),
        )
    else:
        recovery = Section("Recovery", ("No case was opened in the period.",), (kpis,))
    sections = [recovery]
    responses = Table(
        ("week", "received", "answered", "response rate", "median time to answer", "within SLA", "overdue"),
        tuple(
            (r.week, f"{r.received:,}", f"{r.answered:,}", _share(r.response_rate),
             "n/a" if r.median_hours is None else f"{r.median_hours:.1f} h", _share(r.within_sla), f"{r.overdue:,}")
            for r in m.responses
        ),
    )  # fmt: skip
    ratings = Table(
        ("week", "CSAT (rating 4-5)", "answers", "NPS", "answers"),
        tuple(
            (r.week, _share(r.csat), f"{r.csat_answers:,}", _number(r.nps, 0), f"{r.nps_answers:,}") for r in m.ratings
        ),
    )
    feedback_charts = (("CSAT by week", lambda: charts.csat_by_week(m)),) if any(r.csat for r in m.ratings) else ()
    sections.append(
        Section(
            "Feedback",
            ("Every customer who writes gets an answer: how many did, how soon, and what they rated.",)
            if m.responses or m.ratings
            else ("No feedback arrived in the period.",),
            tuple(t for t in (responses, ratings) if t.rows),
            feedback_charts,
        )
    )
    spend = Table(("remedy kind", "granted"), tuple((k, _money(v, m.currency)) for k, v in m.spend_by_kind))
    rules = Table(("rule", "incidents"), tuple((rule, f"{n:,}") for rule, n in m.incidents_by_rule))
    sections.append(
        Section(
            "Remedies and incidents",
            ("Cash value granted, net of reversals, and the failures amends found, by rule.",),
            tuple(t for t in (spend, rules) if t.rows),
            (("Remedy spend by kind", lambda: charts.spend_by_kind(m)),) if m.spend_by_kind else (),
        )
    )
    sections.extend(_uplift(report))
    done = Table(
        ("suggestion", "what we did", "done", "customers who asked", "told"),
        tuple((d.title, d.note or "", _day(d.done_at), f"{d.asked:,}", f"{d.told:,}") for d in report.done),
    )
    sections.append(
        Section(
            "You said, we did",
            ("Suggestions customers made that were done in the period, and how many of those who asked were told.",)
            if report.done
            else ("No suggestion was done in the period.",),
            (done,) if done.rows else (),
        )
    )
    return sections


def _uplift(report: Report) -> list[Section]:
    experiment = report.experiment
    intro = (
        "The holdout experiment: a share of the incidents that open proactive cases gets nothing proactive, so that "
        "what recovery does is measured against what happens without it. Treated minus held out, with 95% intervals; "
        f"a verdict only once an experiment's horizon ({experiment.horizon.days} days) is over and every window has "
        f"closed ({_DOCS}#estimates)."
    )
    if experiment.empty:
        return [Section("What recovery does", (intro, "No incident in the period was drawn into the experiment."))]
    sections = []
    for round_ in experiment.rounds:
        estimates = [e for e in round_.estimates if e.group == "all"]
        look = "final" if round_.final else "interim: some windows are still open"
        sentences = [
            f"Period {round_.period}, round {round_.number}: incidents from {_day(round_.starts)} to "
            f"{_day(round_.ends)}; {round_.treated:,} customers treated, {round_.held_out:,} held out, "
            f"{round_.waiting:,} still in their window ({look}).",
            _return_on_recovery(round_, report.measures.currency),
        ]
        measured = [e for e in estimates if e.treated.units or e.held_out.units]
        if not measured:
            sentences.append(_first_figures(round_, experiment.outcomes))
        table = Table(
            ("outcome", "treated", "held out", "difference (95% CI)", "relative (95% CI)", "detectable", "verdict"),
            tuple(_estimate_row(e) for e in estimates) if measured else (),
        )
        by_rule = Table(
            ("by rule or remedy", "outcome", "treated", "held out", "difference (95% CI)", "verdict"),
            tuple(
                (e.group, e.outcome.title, f"{e.treated.units:,}", f"{e.held_out.units:,}", _difference(e), e.verdict)
                for e in round_.estimates
                if e.group != "all" and e.difference is not None
            ),
        )
        shown = [e for e in estimates if e.outcome.kind.is_share and e.low is not None]
        sections.append(
            Section(
                "What recovery does"
                if round_ is experiment.rounds[0]
                else f"What recovery does, round {round_.number}",
                (intro, *sentences) if round_ is experiment.rounds[0] else tuple(sentences),
                tuple(t for t in (table, by_rule) if t.rows),
                (("Treated minus held out", lambda shown=shown: charts.uplift(shown)),) if shown else (),  # type: ignore[misc]
            )
        )
    return sections


def _first_figures(round_: Round, outcomes: Sequence[Outcome]) -> str:
    """Said instead of a table of empty rows: when the first outcome can be measured."""
    if not outcomes:
        return "No outcome can be measured yet."
    first = round_.earliest + min(o.within for o in outcomes)
    return (
        f"No outcome can be measured yet: every customer is still in their window. The first figures come from "
        f"{_day(first)}, when the first window closes."
    )


def _return_on_recovery(round_: Round, currency: str) -> str:
    retained = round_.retained
    spent = _money(Decimal(str(round(round_.remedy_spend, 2))), currency)
    cost = (
        f"what recovery added to the remedy bill (remedies per treated customer beyond those per held-out customer, "
        f"times the {round_.treated:,} treated): {spent}"
    )
    if retained is None or retained.difference is None or retained.low is None or retained.high is None:
        return f"Return on recovery: {cost}. No spend outcome is measured yet to set against it."
    n = round_.treated
    kept = f"{retained.difference * n:,.0f} [{retained.low * n:,.0f}, {retained.high * n:,.0f}] {currency}"
    return (
        f"Return on recovery: {cost}; against it, what the treated customers spent beyond what the held-out ones "
        f"did ({retained.outcome.title.lower()}), times the treated: {kept}."
    )


def _estimate_row(e: Estimate) -> tuple[str, ...]:
    share = e.outcome.kind.is_share
    return (
        e.outcome.title,
        _value(e.treated.mean, share),
        _value(e.held_out.mean, share),
        _difference(e),
        "n/a" if e.relative is None else _relative(e.relative, e.relative_low, e.relative_high),
        "n/a" if e.mde is None else (f"±{e.mde * 100:.1f} pts" if share else f"±{e.mde:,.2f}"),
        e.verdict,
    )


def _difference(e: Estimate) -> str:
    if e.difference is None:
        return "n/a"
    if e.outcome.kind.is_share:
        text = f"{e.difference * 100:+.1f} pts"
        return text if e.low is None or e.high is None else f"{text} [{e.low * 100:+.1f}, {e.high * 100:+.1f}]"
    text = f"{e.difference:+,.2f}"
    return text if e.low is None or e.high is None else f"{text} [{e.low:+,.2f}, {e.high:+,.2f}]"


def _relative(value: float, low: float | None, high: float | None) -> str:
    return f"{value:+.0%}" if low is None or high is None else f"{value:+.0%} [{low:+.0%}, {high:+.0%}]"


def _value(value: float | None, share: bool) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1%}" if share else f"{value:,.2f}"


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _number(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _hours(value: timedelta | None) -> str:
    return "n/a" if value is None else f"{value / timedelta(hours=1):,.1f} h"


def _money(value: Decimal, currency: str) -> str:
    return f"{value:,.2f} {currency}"


def _day(at: datetime) -> str:
    return f"{at:%Y-%m-%d}"


# --- Markdown ------------------------------------------------------------------------------------------------


def _markdown(title: str, report: Report, sections: Sequence[Section]) -> str:
    lines = [f"# {title}", "", f"Generated {report.generated_at:%Y-%m-%d %H:%M} UTC by amends.", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for sentence in section.sentences:
            lines += [sentence, ""]
        for table in section.tables:
            lines.append("| " + " | ".join(_md(h) for h in table.headers) + " |")
            lines.append("|" + "---|" * len(table.headers))
            lines += ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in table.rows]
            lines.append("")
        for caption, _ in section.charts:
            lines += [f"*Chart: {caption} (in the HTML and PDF reports).*", ""]
    return "\n".join(lines)


def _md(text: str) -> str:
    """A table cell: its pipes escaped, and markup shown as text (a Markdown viewer would render raw HTML)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|").replace("\n", " ")


# --- HTML ----------------------------------------------------------------------------------------------------

_PAGE = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body { font: 15px/1.5 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #1d1d1d; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .8rem 0 1.2rem; font-size: .9rem; }
th, td { padding: .25rem .6rem; border-bottom: 1px solid #e4e4e4; text-align: left; vertical-align: top; }
th { color: #555; font-weight: 600; } figure { margin: 1rem 0; } figure svg { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: .85rem; } .generated { color: #666; }
</style></head>
<body><h1>{{ title }}</h1><p class="generated">Generated {{ generated }} UTC by amends.</p>
{% for section in sections %}<section><h2>{{ section.title }}</h2>
{% for sentence in section.sentences %}<p>{{ sentence }}</p>
{% endfor %}{% for table in section.tables %}<table><thead><tr>
{%- for h in table.headers %}<th scope="col">{{ h }}</th>{% endfor %}</tr></thead>
<tbody>{% for row in table.rows %}<tr>{% for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>
{%- endfor %}</tbody></table>
{% endfor %}{% for caption, svg in section.svgs %}<figure role="img" aria-label="{{ caption }}">{{ svg | safe }}
<figcaption>{{ caption }}</figcaption></figure>
{% endfor %}</section>
{% endfor %}</body></html>
"""
)


def _html(title: str, report: Report, sections: Sequence[Section]) -> str:
    drawn = [
        {
            "title": s.title,
            "sentences": s.sentences,
            "tables": s.tables,
            "svgs": [(caption, charts.svg(draw())) for caption, draw in s.charts],
        }
        for s in sections
    ]
    return _PAGE.render(title=title, generated=f"{report.generated_at:%Y-%m-%d %H:%M}", sections=drawn)


# --- PDF -----------------------------------------------------------------------------------------------------

_FAMILY = "noto-sans"
_HEADING = FontFace(emphasis="", size_pt=7.5, color=90)


def _pdf(title: str, report: Report, sections: Sequence[Section]) -> bytes:
    pdf = FPDF(orientation="P", unit="mm", format="A4")
    try:
        pdf.set_title(title)
        pdf.set_creator("amends")
        pdf.set_creation_date(report.generated_at)
        with resources.as_file(resources.files(_FONT[0]).joinpath(_FONT[1])) as path:
            pdf.add_font(_FAMILY, "", path)
            pdf.add_font(_FAMILY, "B", path)
        pdf.set_auto_page_break(True, margin=15)
        pdf.add_page()
        pdf.set_font(_FAMILY, "B", 15)
        pdf.multi_cell(0, 8, title, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(_FAMILY, "", 8)
        pdf.multi_cell(0, 5, f"Generated {report.generated_at:%Y-%m-%d %H:%M} UTC by amends.", new_x="LMARGIN",
                       new_y="NEXT")  # fmt: skip
        for section in sections:
            pdf.ln(3)
            pdf.set_font(_FAMILY, "B", 12)
            pdf.multi_cell(0, 7, section.title, new_x="LMARGIN", new_y="NEXT")
            pdf.set_font(_FAMILY, "", 9)
            for sentence in section.sentences:
                pdf.multi_cell(0, 4.6, sentence, new_x="LMARGIN", new_y="NEXT")
                pdf.ln(1)
            for table in section.tables:
                pdf.set_font(_FAMILY, "", 7.5)
                with pdf.table(headings_style=_HEADING, text_align="LEFT", line_height=3.8, padding=0.6,
                               borders_layout="HORIZONTAL_LINES") as drawn:  # fmt: skip
                    drawn.row(list(table.headers))
                    for row in table.rows:
                        drawn.row(list(row))
                pdf.ln(2)
            for caption, draw in section.charts:
                pdf.image(charts.png(draw()), w=pdf.epw)
                pdf.set_font(_FAMILY, "", 7.5)
                pdf.multi_cell(0, 4, caption, new_x="LMARGIN", new_y="NEXT")
        return bytes(pdf.output())
    finally:
        for font in pdf.fonts.values():
            if isinstance(font, TTFFont):
                font.close()
