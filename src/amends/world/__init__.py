"""A sample world: seeded, realistic event streams of a shop, an airline and a car service.

Generates the CloudEvents amends ingests, for customers whose behaviour follows from what happened to
them (late parcels, long delays, jobs done wrong), with the ground truth beside them, so that detection,
recovery uplift and the risk model can be evaluated against what really happened. Knows nothing of the
rest of amends: it produces input, it reads none. See docs/world.md.
"""

from amends.world._business import BUSINESSES, Business, parse_business
from amends.world._errors import WorldError
from amends.world._stream import (
    DEFAULT_MAX_LATENESS,
    DEFAULT_START,
    DEFAULT_TIMELY,
    Reacted,
    WorldStream,
    generate_world,
)
from amends.world._truth import CustomerTruth
from amends.world._write import WorldSummary, truth_path_for, write_world

__all__ = [
    "BUSINESSES",
    "DEFAULT_MAX_LATENESS",
    "DEFAULT_START",
    "DEFAULT_TIMELY",
    "Business",
    "CustomerTruth",
    "Reacted",
    "WorldError",
    "WorldStream",
    "WorldSummary",
    "generate_world",
    "parse_business",
    "truth_path_for",
    "write_world",
]
