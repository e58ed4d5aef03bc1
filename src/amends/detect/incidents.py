"""Incidents: what the evaluators find, as values, and how a stream of findings folds into incidents.

An incident is one detected failure for one customer, unique on (rule, key). Both evaluators produce the same
ordered findings: a `Candidate` when a rule fires, a `LateResolution` when an absence rule's expected event
comes after its incident fired. `fold` turns findings into incidents the way the store does (the first
candidate of a (rule, key) wins; a late resolution marks an open incident `resolved_late`), so the two
evaluators can be compared on what a user would see.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

__all__ = ["Candidate", "Finding", "Incident", "IncidentKey", "IncidentStatus", "LateResolution", "fold"]

IncidentStatus = Literal["open", "resolved_late"]


@dataclass(frozen=True, slots=True, order=True)
class IncidentKey:
    """What an incident is unique on: the rule and the correlation key (e.g. an order id)."""

    rule_id: str
    key: str


@dataclass(frozen=True, slots=True)
class Candidate:
    """A rule fired: the incident it makes, unless one with the same key exists already."""

    rule_id: str
    key: str
    customer: str
    severity: int
    failure_at: datetime  # when it went wrong: the event's time, the deadline, the window's last event
    facts: Mapping[str, Any] = field(default_factory=dict)
    playbook: str | None = None

    @property
    def incident_key(self) -> IncidentKey:
        return IncidentKey(self.rule_id, self.key)


@dataclass(frozen=True, slots=True)
class LateResolution:
    """The expected event of an absence rule came after its incident fired."""

    rule_id: str
    key: str
    resolved_at: datetime
    event: Mapping[str, Any] = field(default_factory=dict)

    @property
    def incident_key(self) -> IncidentKey:
        return IncidentKey(self.rule_id, self.key)


Finding = Candidate | LateResolution


@dataclass(frozen=True, slots=True)
class Incident:
    """One detected failure for one customer."""

    rule_id: str
    key: str
    customer: str
    severity: int
    failure_at: datetime
    facts: Mapping[str, Any]
    playbook: str | None = None
    status: IncidentStatus = "open"
    resolved_at: datetime | None = None

    @property
    def incident_key(self) -> IncidentKey:
        return IncidentKey(self.rule_id, self.key)


def fold(
    findings: Iterable[Finding], into: Mapping[IncidentKey, Incident] | None = None
) -> dict[IncidentKey, Incident]:
    """Apply findings in order: the first candidate per key makes the incident; late resolutions close open ones."""
    incidents = dict(into or {})
    for finding in findings:
        key = finding.incident_key
        if isinstance(finding, Candidate):
            if key not in incidents:
                incidents[key] = Incident(
                    finding.rule_id,
                    finding.key,
                    finding.customer,
                    finding.severity,
                    finding.failure_at,
                    finding.facts,
                    finding.playbook,
                )
        else:
            incident = incidents.get(key)
            if incident is not None and incident.status == "open":
                incidents[key] = replace(incident, status="resolved_late", resolved_at=finding.resolved_at)
    return incidents
