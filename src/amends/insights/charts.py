"""The report's charts, drawn by matplotlib: each a figure made from the report's figures, written as SVG (text as
paths, so an HTML report shows it the same everywhere and no label can carry markup) or PNG (for the PDF)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import matplotlib as mpl

mpl.use("Agg")  # no display: files only

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from amends.insights.dashboard import Dashboard
from amends.insights.experiment import Estimate

__all__ = ["cases_by_week", "csat_by_week", "png", "spend_by_kind", "svg", "uplift"]

_BLUE, _ORANGE, _GREY, _GREEN, _RED = "#1f5f99", "#c8691c", "#6b6b6b", "#2e7d32", "#b3261e"
_STYLE: Any = {
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.fonttype": "path",
    "svg.hashsalt": "amends",  # the same figures draw the same file
}


def _figure(height: float = 2.6) -> tuple[Figure, Axes]:
    with mpl.rc_context(_STYLE):
        figure = Figure(figsize=(7.0, height), layout="constrained")
        return figure, figure.add_subplot()


def cases_by_week(measures: Dashboard) -> Figure:
    """Cases opened each week, proactive (amends found the failure) and reactive (the customer raised it)."""
    figure, axes = _figure()
    labels = [week.label for week in measures.weeks]
    proactive = [week.cases.proactive for week in measures.weeks]
    reactive = [week.cases.reactive for week in measures.weeks]
    axes.bar(labels, proactive, color=_BLUE, label="proactive")
    axes.bar(labels, reactive, bottom=proactive, color=_ORANGE, label="reactive")
    axes.set_ylabel("cases opened")
    axes.legend(frameon=False, loc="upper left")
    _thin_labels(axes, labels)
    return figure


def csat_by_week(measures: Dashboard) -> Figure:
    """CSAT each week: the share of answers on the CSAT scale that rate 4 or 5."""
    figure, axes = _figure()
    points = [(r.week, r.csat * 100) for r in measures.ratings if r.csat is not None]
    axes.plot([w for w, _ in points], [c for _, c in points], marker="o", color=_BLUE)
    axes.set_ylim(0, 100)
    axes.set_ylabel("CSAT (% rating 4 or 5)")
    _thin_labels(axes, [w for w, _ in points])
    return figure


def spend_by_kind(measures: Dashboard) -> Figure:
    """Remedy spend (cash value, net of reversals) by kind."""
    figure, axes = _figure(0.6 + 0.35 * max(1, len(measures.spend_by_kind)))
    kinds = [kind for kind, _ in measures.spend_by_kind][::-1]
    values = [float(value) for _, value in measures.spend_by_kind][::-1]
    axes.barh(kinds, values, color=_BLUE)
    axes.set_xlabel(f"granted ({measures.currency})")
    return figure


def uplift(estimates: Sequence[Estimate]) -> Figure:
    """Each share outcome's difference, treated minus held out, in percentage points with its 95 % interval;
    green where it is better for customers, red where worse, grey where the interval spans 0."""
    shown = [e for e in estimates if e.outcome.kind.is_share and e.low is not None and e.high is not None]
    figure, axes = _figure(0.8 + 0.45 * max(1, len(shown)))
    for row, estimate in enumerate(reversed(shown)):
        low, high, difference = estimate.low or 0.0, estimate.high or 0.0, estimate.difference or 0.0
        good = (difference > 0) == estimate.outcome.higher_is_better
        colour = _GREY if low <= 0 <= high else _GREEN if good else _RED
        axes.plot([low * 100, high * 100], [row, row], color=colour, linewidth=2.5)
        axes.plot([difference * 100], [row], marker="o", color=colour)
    axes.axvline(0, color="black", linewidth=0.8)
    axes.set_yticks(range(len(shown)), [e.outcome.title for e in reversed(shown)])
    axes.set_xlabel("treated minus held out (percentage points, 95% interval)")
    return figure


def svg(figure: Figure) -> str:
    buffer = io.StringIO()
    with mpl.rc_context(_STYLE):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # the element only, to sit inside a page


def png(figure: Figure, dpi: int = 160) -> bytes:
    buffer = io.BytesIO()
    with mpl.rc_context(_STYLE):
        figure.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()


def _thin_labels(axes: Axes, labels: Sequence[str]) -> None:
    """At most about twelve week labels, turned to fit."""
    step = max(1, len(labels) // 12)
    axes.set_xticks(range(0, len(labels), step), [labels[i] for i in range(0, len(labels), step)], rotation=45,
                    ha="right")  # fmt: skip
