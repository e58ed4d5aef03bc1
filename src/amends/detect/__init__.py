"""Detection: turns events into incidents.

Owns the rule language, the streaming and batch evaluators, durable timers and incidents. Reads events;
knows nothing of cases.
"""

from amends.detect.errors import DetectError, RuleError, RuleProblem, RuleSetError
from amends.detect.incidents import Candidate, Finding, Incident, IncidentKey, LateResolution, fold
from amends.detect.rules import Rule, RuleSet, load_rules, parse_rules
from amends.detect.streaming import Evaluator

__all__ = [
    "Candidate",
    "DetectError",
    "Evaluator",
    "Finding",
    "Incident",
    "IncidentKey",
    "LateResolution",
    "Rule",
    "RuleError",
    "RuleProblem",
    "RuleSet",
    "RuleSetError",
    "fold",
    "load_rules",
    "parse_rules",
]
