"""The risk model: a customer's chance to be let down, learned from the company's own history (docs/anticipation.md).

`spec` reads the feature spec (features, label, moments), `features` computes point-in-time features and labels
for (customer, moment) pairs over the stored history.
"""

from amends.detect.risk.features import PAIR_SCHEMA, Records, feature_frame, label_frame
from amends.detect.risk.spec import (
    Aggregate,
    Feature,
    FeatureKind,
    FeatureSpec,
    FeatureSpecError,
    Label,
    check_spec,
    load_spec,
    parse_spec,
    shipped_spec,
)

__all__ = [
    "PAIR_SCHEMA",
    "Aggregate",
    "Feature",
    "FeatureKind",
    "FeatureSpec",
    "FeatureSpecError",
    "Label",
    "Records",
    "check_spec",
    "feature_frame",
    "label_frame",
    "load_spec",
    "parse_spec",
    "shipped_spec",
]
