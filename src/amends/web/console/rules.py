"""Rules, playbooks and the remedy policy as this server runs them, and a check of a changed file before it is
deployed: paste it, and every problem is listed with its line and field (nothing is saved or loaded). Every
staff role may look; changing what runs is done in the files, under review, not here."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from amends.detect.rules import event_types, parse_rules
from amends.recover.playbooks import parse_playbooks
from amends.recover.policy import parse_policy
from amends.web.console._base import ConsoleUser, Signed, form_of, render
from amends.yamldoc import FileProblem, FileProblemsError

__all__ = ["router"]

router = APIRouter(prefix="/console/rules", include_in_schema=False)
Document = Literal["rules", "playbooks", "remedies"]
_MAX_TEXT = 200_000


def _running(request: Request) -> dict[str, Any]:
    state = request.app.state
    detection = state.detection
    rules = () if detection is None else detection.detector.rules.enabled
    return {
        "rules": [
            {
                "id": rule.common.id,
                "kind": rule.kind,
                "description": rule.common.description or "",
                "on": ", ".join(event_types(rule)) or "the risk model's moments",
                "severity": rule.common.severity.fixed or f"by {rule.common.severity.by}",
                "playbook": rule.common.playbook or "(by severity)",
                "tags": ", ".join(rule.common.tags),
            }
            for rule in rules
        ],
        "playbooks": list(state.recovery.playbooks.playbooks.values()),
        "policy": state.recovery.policy,
    }


def _page(
    request: Request, user: ConsoleUser, *, document: Document = "rules", text: str = "",
    problems: list[FileProblem] | None = None, verdict: str | None = None, status: int = 200,
) -> HTMLResponse:  # fmt: skip
    return render(
        request, "rules.html", user, status=status, document=document, text=text, problems=problems or [],
        verdict=verdict, **_running(request),
    )  # fmt: skip


@router.get("", response_class=HTMLResponse)
async def rules_page(request: Request, user: Signed) -> HTMLResponse:
    return _page(request, user)


@router.post("/check", response_class=HTMLResponse)
async def check(request: Request, user: Signed) -> HTMLResponse:
    """Check a pasted rules, playbooks or remedy policy file; 422 with its problems, 200 when it is sound."""
    fields = await form_of(request, user)
    document: Document = fields.get("document") if fields.get("document") in ("playbooks", "remedies") else "rules"  # type: ignore[assignment]
    text = fields.get("text", "")[:_MAX_TEXT]

    def check_text() -> str:
        if document == "rules":
            return f"No problems: {len(parse_rules([(None, text)]))} rules."
        if document == "playbooks":
            return f"No problems: {len(parse_playbooks([(None, text)]).playbooks)} playbooks."
        return f"No problems: {len(parse_policy(text).kinds)} remedy kinds."

    try:
        verdict = await run_in_threadpool(check_text)  # parsing is CPU work: not on the event loop
    except FileProblemsError as exc:
        return _page(request, user, document=document, text=text, problems=exc.problems, status=422)
    return _page(request, user, document=document, text=text, verdict=verdict)
