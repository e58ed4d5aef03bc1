"""Errors of the sample world."""

from __future__ import annotations

from amends.errors import InvalidInput

__all__ = ["WorldError"]


class WorldError(InvalidInput):
    """A world that cannot be generated as asked: names the parameter and the reason."""
