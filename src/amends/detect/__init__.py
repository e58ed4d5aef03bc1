"""Detection: turns events into incidents.

Owns the rule language, the streaming and batch evaluators, durable timers and incidents. Reads events;
knows nothing of cases.
"""

from amends.detect.errors import DetectError, RuleError, RuleProblem, RuleSetError
from amends.detect.incidents import Candidate, Finding, Incident, IncidentKey, IncidentStatus, LateResolution, fold
from amends.detect.queries import IncidentFilter, IncidentPage, StoredIncident, get_incident, list_incidents
from amends.detect.rules import Rule, RuleSet, load_rules, parse_rules
from amends.detect.runner import DetectClock, Detected, Detector, renew_detectors, store_findings
from amends.detect.streaming import Evaluator

__all__ = [
    "Candidate",
    "DetectClock",
    "DetectError",
    "Detected",
    "Detector",
    "Evaluator",
    "Finding",
    "Incident",
    "IncidentFilter",
    "IncidentKey",
    "IncidentPage",
    "IncidentStatus",
    "LateResolution",
    "Rule",
    "RuleError",
    "RuleProblem",
    "RuleSet",
    "RuleSetError",
    "StoredIncident",
    "fold",
    "get_incident",
    "list_incidents",
    "load_rules",
    "parse_rules",
    "renew_detectors",
    "store_findings",
]
