"""The three businesses a world can be generated for, and their names on the command line."""

from __future__ import annotations

from typing import Literal

from amends.world._errors import WorldError

__all__ = ["BUSINESSES", "Business", "parse_business"]

Business = Literal["shop", "airline", "car_service"]
BUSINESSES: tuple[Business, ...] = ("shop", "airline", "car_service")


def parse_business(name: str) -> Business:
    """The business named `name`; `car-service` is accepted for `car_service`. Raises WorldError."""
    normalised = name.strip().lower().replace("-", "_")
    for business in BUSINESSES:
        if normalised == business:
            return business
    raise WorldError("business", f"expected one of shop, airline, car-service; got {name!r}")
