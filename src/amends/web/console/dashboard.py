"""The dashboard: recovery and feedback week by week, as charts drawn by plotly.js (the copy the `plotly` package
ships, served from here: nothing comes from a CDN) with every chart's numbers also in a table, so the page says
everything without JavaScript and to a screen reader. For managers and admins: the totals span every team.

The figures are plain plotly JSON written here; the page carries them in `application/json` blocks, and the
console's own script draws them, so the strict content security policy (no inline script) holds.
"""

from __future__ import annotations

import logging
import threading
import time as clock
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import metadata, resources
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, Response

from amends.errors import InvalidInput
from amends.insights.dashboard import Dashboard, dashboard, weeks_since
from amends.insights.experiment import Estimate, Experiment, Round, analyse
from amends.insights.outcomes import Outcome, check_event_types
from amends.insights.render import FORMATS
from amends.insights.render import render as render_report
from amends.insights.report import Report, build_report
from amends.recover.roles import Role
from amends.store import Database
from amends.web.api.metrics import experiment_outcomes
from amends.web.console._base import Signed, render

__all__ = ["PLOTLY_JS", "router"]

router = APIRouter(prefix="/console", include_in_schema=False)
log = logging.getLogger(__name__)
_PLOTLY_VERSION = metadata.version("plotly")
PLOTLY_JS = f"/console/vendor/plotly-{_PLOTLY_VERSION}.min.js"
_PLOTLY_FILE = Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))
SPANS = (4, 12, 26, 52)
_FRESH_FOR = 60.0  # seconds a computed dashboard is shown before a fresher one is read
_INK, _MUTED, _BRAND, _WARN, _OK, _GRID = "#1b1f24", "#4a5360", "#1d4e89", "#8a1c1c", "#1e5631", "#dfe3e8"


@dataclass(frozen=True, slots=True)
class Chart:
    """One chart: its heading, a sentence saying what it shows (its text alternative), the plotly figure, and
    the same numbers as a table."""

    id: str
    title: str
    summary: str
    figure: dict[str, Any]
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    @property
    def figure_json(self) -> str:
        # Safe inside <script type="application/json">: orjson escapes nothing HTML-special, so "<" is escaped here.
        return orjson.dumps(self.figure).decode().replace("<", "\\u003c")


@router.get(f"/vendor/plotly-{_PLOTLY_VERSION}.min.js", include_in_schema=False)
async def plotly_js() -> FileResponse:
    """plotly.js from the installed package; its name carries the version, so browsers may keep it a year."""
    return FileResponse(
        _PLOTLY_FILE,
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=31536000, immutable"},
    )


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard_page(
    request: Request, user: Signed, weeks: Annotated[int, Query(ge=4, le=52)] = 12
) -> HTMLResponse:
    user.actor.at_least(Role.MANAGER, "reading the dashboard")
    if weeks not in SPANS:  # a few spans, each computed once: not one cached board per number a URL can hold
        raise InvalidInput("weeks", f"one of {', '.join(map(str, SPANS))}")
    board, experiment = await _cached(request, weeks)
    shown = _shown_round(experiment)
    return render(
        request, "dashboard.html", user, board=board, weeks=weeks, charts=_charts(board), plotly_js=PLOTLY_JS,
        tiles=_tiles(board), spans=SPANS, uplift=None if shown is None else _uplift(shown), round=shown,
    )  # fmt: skip


_REPORT_CSP = (  # the report is one self-contained page: its own styles and inline SVG charts, no script at all
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
_REPORT_TYPES = {"html": "text/html; charset=utf-8", "pdf": "application/pdf", "md": "text/markdown; charset=utf-8"}


@router.get("/report")
async def report_file(
    request: Request,
    user: Signed,
    weeks: Annotated[int, Query(ge=4, le=52)] = 12,
    format: Annotated[str, Query(description="html, pdf or md")] = "html",
) -> Response:
    """The report of the dashboard's span (docs/insights.md#the-report): HTML shown in the browser, PDF and Markdown
    as files to forward. The same figures as `amends report` and GET /v1/metrics/report."""
    user.actor.at_least(Role.MANAGER, "reading the report")
    if weeks not in SPANS:
        raise InvalidInput("weeks", f"one of {', '.join(map(str, SPANS))}")
    if format not in FORMATS:
        raise InvalidInput("format", f"one of {', '.join(FORMATS)}")
    state = request.app.state
    outcomes, known = experiment_outcomes(request)
    currency, horizon = state.recovery.policy.currency, state.settings.holdout_horizon

    def write() -> tuple[Report, bytes]:
        now = datetime.now(UTC)
        with state.db.unit_of_work() as uow:
            check_event_types(uow, outcomes, known=known)
            built = build_report(uow, since=weeks_since(weeks, now), until=now, now=now, outcomes=outcomes,
                                 horizon=horizon, currency=currency)  # fmt: skip
        return built, render_report(built, format)

    built, body = await run_in_threadpool(write)
    headers = {"Content-Security-Policy": _REPORT_CSP}
    if format != "html":
        name = f"amends-report-{built.since:%Y-%m-%d}-to-{built.until:%Y-%m-%d}.{format}"
        headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return Response(body, media_type=_REPORT_TYPES[format], headers=headers)


class _Boards:
    """The dashboards of this process, one per span: computed once, then shown while a fresher one is read in the
    background once a minute (stale while revalidating), so that no request but the very first waits for the sums."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._boards: dict[int, tuple[float, _Board]] = {}
        self._refreshing: set[int] = set()

    def get(self, weeks: int) -> tuple[float, _Board] | None:
        with self._lock:
            return self._boards.get(weeks)

    def put(self, weeks: int, board: _Board) -> None:
        with self._lock:
            self._boards[weeks] = (clock.monotonic(), board)
            self._refreshing.discard(weeks)

    def claim_refresh(self, weeks: int) -> bool:
        with self._lock:
            if weeks in self._refreshing:
                return False
            self._refreshing.add(weeks)
            return True

    def release(self, weeks: int) -> None:
        with self._lock:
            self._refreshing.discard(weeks)


_Board = tuple[Dashboard, Experiment]


def _compute(db: Database, weeks: int, currency: str, outcomes: tuple[Outcome, ...], horizon: timedelta) -> _Board:
    """The span's measures, and the holdout experiment as a whole (its rounds do not follow the span)."""
    now = datetime.now(UTC)
    with db.unit_of_work() as uow:
        board = dashboard(uow, weeks=weeks, now=now, currency=currency)
        # Kept until the next refresh: the results only, without the per-unit frames.
        return board, analyse(uow, outcomes, as_of=now, horizon=horizon, by_rule=False).summary()


async def _cached(request: Request, weeks: int) -> _Board:
    state = request.app.state
    if not hasattr(state, "dashboards"):
        state.dashboards = _Boards()
    boards: _Boards = state.dashboards
    db: Database = state.db
    currency = state.recovery.policy.currency
    outcomes, _known = experiment_outcomes(request)
    horizon = state.settings.holdout_horizon
    found = boards.get(weeks)
    if found is None:
        board = await run_in_threadpool(_compute, db, weeks, currency, outcomes, horizon)
        boards.put(weeks, board)
        return board
    made, board = found
    if clock.monotonic() - made >= _FRESH_FOR and boards.claim_refresh(weeks):

        def refresh() -> None:
            try:
                boards.put(weeks, _compute(db, weeks, currency, outcomes, horizon))
            except Exception:
                log.exception("the dashboard could not be refreshed")
                boards.release(weeks)

        threading.Thread(target=refresh, name="dashboard-refresh", daemon=True).start()
    return board


_MISSING = "\u2013"  # an en dash: no value that week


def _hours(value: timedelta | None) -> float | None:
    return None if value is None else round(value.total_seconds() / 3600, 1)


def _pct(value: float | None) -> str:
    return _MISSING if value is None else f"{value:.0%}"


def _num(value: float | None, digits: int = 1) -> str:
    return _MISSING if value is None else f"{value:,.{digits}f}"


def _percent(value: float | None) -> int | None:
    return None if value is None else round(100 * value)


def _tiles(board: Dashboard) -> list[tuple[str, str, str]]:
    overall = board.overall
    answered = sum(r.answered for r in board.responses)
    received = sum(r.received for r in board.responses)
    spend = sum((amount for _kind, amount in board.spend_by_kind), start=0)
    share = overall.proactive / overall.cases if overall.cases else None
    return [
        ("Cases", f"{overall.cases:,}", f"{overall.proactive:,} proactive, {overall.reactive:,} reactive"),
        ("Proactive share", _pct(share), "opened before the customer complained"),
        ("Time to first contact", f"{_num(_hours(overall.median_time_to_first_contact))} h", "median"),
        ("First-contact resolution", _pct(overall.first_contact_resolution_rate), "of resolved cases"),
        ("Feedback answered", _pct(answered / received if received else None), f"{answered:,} of {received:,}"),
        ("Remedy spend", f"{spend:,.0f} {board.currency}", "granted, net of reversals"),
    ]


def _layout(**extra: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "margin": {"l": 48, "r": 16, "t": 8, "b": 40},
        "height": 260,
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        "font": {"family": "system-ui, sans-serif", "size": 13, "color": _INK},
        "xaxis": {"gridcolor": _GRID, "linecolor": _MUTED},
        "yaxis": {"gridcolor": _GRID, "linecolor": _MUTED, "rangemode": "tozero"},
        "legend": {"orientation": "h", "y": -0.2},
        "hovermode": "x unified",
    }
    layout.update(extra)
    return layout


_WEEK_AXIS = {"gridcolor": _GRID, "linecolor": _MUTED, "type": "category", "tickangle": 0}


def _short(weeks: list[str]) -> list[str]:
    """Week labels for an axis: "W47" (the tables and the hover keep the year)."""
    return [week.split("-", 1)[-1] for week in weeks]


_PERCENT_AXIS = {"range": [0, 100], "ticksuffix": "%", "gridcolor": _GRID}
_TWO_AXES_MARGIN = {"l": 48, "r": 48, "t": 8, "b": 40}


def _line(name: str, x: list[str], y: list[Any], color: str, **extra: Any) -> dict[str, Any]:
    return {"type": "scatter", "mode": "lines+markers", "name": name, "x": x, "y": y,
            "line": {"color": color, "width": 3}, **extra}  # fmt: skip


def _bars(name: str, x: list[Any], y: list[Any], color: str, **extra: Any) -> dict[str, Any]:
    return {"type": "bar", "name": name, "x": x, "y": y, "marker": {"color": color}, **extra}


def _cell(value: int | None, suffix: str = "") -> str:
    return _MISSING if value is None else f"{value}{suffix}"


def _charts(board: Dashboard) -> list[Chart]:
    return [_proactive(board), _contact(board), _fcr(board), _responses(board), _ratings(board), _spend(board),
            _rules(board)]  # fmt: skip


def _proactive(board: Dashboard) -> Chart:
    weeks = [w.label for w in board.weeks]
    proactive = [w.cases.proactive for w in board.weeks]
    reactive = [w.cases.reactive for w in board.weeks]
    overall = board.overall
    share = _pct(overall.proactive / overall.cases if overall.cases else None)
    figure = {
        "data": [
            _bars("proactive", _short(weeks), proactive, _OK),
            _bars("reactive", _short(weeks), reactive, "#b3541e"),
        ],
        "layout": _layout(xaxis=_WEEK_AXIS, barmode="stack"),
    }
    rows = tuple((w, str(p), str(r)) for w, p, r in zip(weeks, proactive, reactive, strict=True))
    summary = f"{share} of {overall.cases:,} cases were opened before the customer complained."
    return Chart("proactive", "Proactive share of cases", summary, figure, ("week", "proactive", "reactive"), rows)


def _contact(board: Dashboard) -> Chart:
    weeks = [w.label for w in board.weeks]
    hours = [_hours(w.cases.median_time_to_first_contact) for w in board.weeks]
    overall = _num(_hours(board.overall.median_time_to_first_contact))
    figure = {
        "data": [_line("median hours", _short(weeks), hours, _BRAND)],
        "layout": _layout(xaxis=_WEEK_AXIS, yaxis={"ticksuffix": " h", "gridcolor": _GRID, "rangemode": "tozero"}),
    }
    summary = f"Median hours from a case opening to our first contact; {overall} h over the whole span."
    rows = tuple((w, _num(h)) for w, h in zip(weeks, hours, strict=True))
    return Chart("contact", "Time to first contact", summary, figure, ("week", "median hours"), rows)


def _fcr(board: Dashboard) -> Chart:
    weeks = [w.label for w in board.weeks]
    rates = [_percent(w.cases.first_contact_resolution_rate) for w in board.weeks]
    figure = {
        "data": [_line("% of resolved", _short(weeks), rates, _OK)],
        "layout": _layout(xaxis=_WEEK_AXIS, yaxis=_PERCENT_AXIS),
    }
    summary = (
        "Share of resolved cases the first owner resolved with no handoff, approval or reopening: "
        f"{_pct(board.overall.first_contact_resolution_rate)} overall."
    )
    rows = tuple((w, _cell(v, "%")) for w, v in zip(weeks, rates, strict=True))
    return Chart("fcr", "First-contact resolution", summary, figure, ("week", "first-contact resolution"), rows)


def _responses(board: Dashboard) -> Chart:
    weeks = [w.label for w in board.weeks]
    by_week = {r.week: r for r in board.responses}
    rates = [_percent(r.response_rate) if (r := by_week.get(w)) else None for w in weeks]
    hours = [r.median_hours if (r := by_week.get(w)) else None for w in weeks]
    figure = {
        "data": [
            _bars("answered %", _short(weeks), rates, _BRAND),
            _line("median hours to answer", _short(weeks), hours, _WARN, yaxis="y2"),
        ],
        "layout": _layout(
            xaxis=_WEEK_AXIS,
            yaxis=_PERCENT_AXIS,
            yaxis2={"overlaying": "y", "side": "right", "rangemode": "tozero", "ticksuffix": " h"},
            margin=_TWO_AXES_MARGIN,
        ),
    }
    summary = "Share of the feedback received each week that has an answer, and the median hours to answer it."
    rows = tuple((w, _cell(r, "%"), _num(h)) for w, r, h in zip(weeks, rates, hours, strict=True))
    return Chart("responses", "Feedback answered", summary, figure, ("week", "answered", "median hours"), rows)


def _ratings(board: Dashboard) -> Chart:
    weeks = [w.label for w in board.weeks]
    by_week = {r.week: r for r in board.ratings}
    csat = [_percent(r.csat) if (r := by_week.get(w)) else None for w in weeks]
    nps = [None if (r := by_week.get(w)) is None or r.nps is None else round(r.nps) for w in weeks]
    figure = {
        "data": [
            _line("CSAT %", _short(weeks), csat, _OK),
            _line("NPS", _short(weeks), nps, _BRAND, yaxis="y2"),
        ],
        "layout": _layout(xaxis=_WEEK_AXIS,
            yaxis=_PERCENT_AXIS, yaxis2={"overlaying": "y", "side": "right", "range": [-100, 100]},
            margin=_TWO_AXES_MARGIN,
        ),
    }  # fmt: skip
    summary = "CSAT: share of 4 and 5 out of 5. NPS: promoters less detractors, in points."
    rows = tuple((w, _cell(c, "%"), _cell(n)) for w, c, n in zip(weeks, csat, nps, strict=True))
    return Chart("ratings", "CSAT and NPS by week", summary, figure, ("week", "CSAT", "NPS"), rows)


def _spend(board: Dashboard) -> Chart:
    kinds = [kind for kind, _ in board.spend_by_kind]
    amounts = [float(amount) for _, amount in board.spend_by_kind]
    figure = {
        "data": [_bars(board.currency, amounts, kinds, _BRAND, orientation="h")],
        "layout": _layout(yaxis={"autorange": "reversed"}, margin={"l": 110, "r": 16, "t": 8, "b": 40},
                          hovermode="closest"),
    }  # fmt: skip
    summary = f"What the remedies granted in the span are worth, in {board.currency}, net of reversals."
    rows = tuple((kind, f"{amount:,.2f}") for kind, amount in board.spend_by_kind)
    return Chart("spend", "Remedy spend by kind", summary, figure, ("kind", board.currency), rows)


def _rules(board: Dashboard) -> Chart:
    top = board.incidents_by_rule[:12]
    rules, found = [rule for rule, _ in top], [n for _, n in top]
    figure = {
        "data": [_bars("incidents", found, rules, "#5b3f8c", orientation="h")],
        "layout": _layout(yaxis={"autorange": "reversed", "automargin": True}, hovermode="closest",
                          margin={"l": 16, "r": 16, "t": 8, "b": 40}, height=max(260, 28 * len(rules) + 60)),
    }  # fmt: skip
    rows = tuple((rule, f"{n:,}") for rule, n in board.incidents_by_rule)
    summary = "How many incidents each rule found in the span, the most first."
    return Chart("rules", "Incidents by rule", summary, figure, ("rule", "incidents"), rows)


def _shown_round(experiment: Experiment) -> Round | None:
    """The round to show: the latest final one, else the latest with anything measured."""
    measured = [r for r in experiment.rounds if any(e.low is not None for e in r.estimates)]
    final = [r for r in measured if r.final]
    chosen = final or measured
    return chosen[-1] if chosen else None


def _uplift(round_: Round) -> Chart:
    """Each share outcome's difference, treated minus held out, in points with its 95 % interval."""
    shown = [e for e in round_.estimates if e.group == "all" and e.outcome.kind.is_share and e.low is not None]
    titles = [e.outcome.title for e in shown]
    points = [_points(e.difference) for e in shown]
    figure = {
        "data": [
            {
                "type": "scatter",
                "mode": "markers",
                "x": points,
                "y": titles,
                "marker": {"color": _BRAND, "size": 10},
                "error_x": {
                    "type": "data",
                    "symmetric": False,
                    "array": [_points((e.high or 0) - (e.difference or 0)) for e in shown],
                    "arrayminus": [_points((e.difference or 0) - (e.low or 0)) for e in shown],
                    "color": _BRAND,
                    "thickness": 3,
                },
                "name": "treated minus held out",
            }
        ],
        "layout": _layout(
            height=90 + 44 * max(1, len(shown)),
            margin={"l": 260, "r": 16, "t": 8, "b": 40},
            xaxis={"ticksuffix": " pts", "gridcolor": _GRID, "zeroline": True, "zerolinecolor": _INK},
            yaxis={"type": "category", "autorange": "reversed"},
            hovermode="closest",
            showlegend=False,
        ),
    }
    look = "final" if round_.final else "interim, no verdict yet"
    summary = (
        f"Round {round_.number} of the holdout experiment ({look}): {round_.treated:,} customers treated, "
        f"{round_.held_out:,} held out. Treated minus held out, in percentage points, with 95% intervals."
    )
    rows = tuple(_uplift_row(e) for e in round_.estimates if e.group == "all")
    columns = ("outcome", "treated", "held out", "difference (95% CI)", "detectable", "verdict")
    return Chart("uplift", "What recovery does", summary, figure, columns, rows)


def _points(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 2)


def _uplift_row(e: Estimate) -> tuple[str, ...]:
    share = e.outcome.kind.is_share

    def shown(value: float | None) -> str:
        return _MISSING if value is None else f"{value:.1%}" if share else f"{value:,.2f}"

    def signed(value: float) -> str:
        return f"{value * 100:+.1f}" if share else f"{value:+,.2f}"

    if e.difference is None:
        difference = _MISSING
    elif e.low is None or e.high is None:
        difference = signed(e.difference)
    else:
        difference = f"{signed(e.difference)} [{signed(e.low)}, {signed(e.high)}]" + (" pts" if share else "")
    detectable = _MISSING if e.mde is None else f"±{e.mde * 100:.1f} pts" if share else f"±{e.mde:,.2f}"
    return (e.outcome.title, shown(e.treated.mean), shown(e.held_out.mean), difference, detectable, e.verdict)
