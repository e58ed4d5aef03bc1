"""Discrete distributions with fixed weights, drawn from with one uniform number."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate
from typing import Generic, TypeVar

__all__ = ["Weights"]

T = TypeVar("T")


class Weights(Generic[T]):
    """Values with relative weights (they need not sum to 1; a zero weight is never drawn)."""

    __slots__ = ("_cumulative", "_total", "values")

    def __init__(self, values: Sequence[T], weights: Sequence[float]) -> None:
        if len(values) != len(weights):
            raise ValueError(f"{len(values)} values but {len(weights)} weights")
        self.values = tuple(values)
        self._cumulative = list(accumulate(weights))
        self._total = self._cumulative[-1]

    def index(self, u: float) -> int:
        """The index chosen by a uniform draw u in [0, 1)."""
        return bisect_right(self._cumulative, u * self._total)

    def pick(self, u: float) -> T:
        """The value chosen by a uniform draw u in [0, 1)."""
        return self.values[bisect_right(self._cumulative, u * self._total)]
