"""Arrival order: how the world's events reach amends, late and twice as real producers send them.

Events leave the simulation in time order. A configured share is held back and released up to
`max_lateness` after its own time; another share is sent again (an exact copy) within the same bound.
Whatever is released is released before the first event whose time is past its release time, so no
event ever arrives after one more than `max_lateness` younger than it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from heapq import heappop, heappush

from amends.world._engine import Engine, Envelope

__all__ = ["Arrivals"]


class Arrivals:
    """Reorders and repeats an engine's events; counts what it held back and what it sent twice."""

    __slots__ = (
        "_duplicate_share",
        "_engine",
        "_held",
        "_late_share",
        "_max_lateness",
        "_rng",
        "_seq",
        "duplicates",
        "late",
    )

    def __init__(
        self, engine: Engine, rng: random.Random, *, late_share: float, max_lateness: int, duplicate_share: float
    ) -> None:
        self._engine = engine
        self._rng = rng  # its own generator: the same seed gives the same events whatever the shares
        self._late_share = late_share
        self._max_lateness = max_lateness
        self._duplicate_share = duplicate_share
        self._held: list[tuple[int, int, int, Envelope, bool]] = []  # (release, seq, time, envelope, copy)
        self._seq = 0
        self.late = 0
        self.duplicates = 0

    @property
    def held(self) -> int:
        """How many events are waiting to be released."""
        return len(self._held)

    def run(self) -> Iterator[Envelope]:
        """Yield the engine's events in arrival order."""
        events = self._engine.run()
        if not self._late_share and not self._duplicate_share:
            yield from events
            return
        engine = self._engine
        held = self._held
        rng = self._rng
        late_share = self._late_share
        for envelope in events:
            now = engine.now
            while held and held[0][0] <= now:
                yield from self._release()
            if late_share and rng.random() < late_share:
                self._hold(now + 1 + int(rng.random() * (self._max_lateness - 1)), now, envelope, copy=False)
                self.late += 1
                continue
            yield envelope
            self._maybe_resend(now, envelope)
        while held:
            yield from self._release()

    def _hold(self, release: int, time: int, envelope: Envelope, *, copy: bool) -> None:
        heappush(self._held, (release, self._seq, time, envelope, copy))
        self._seq += 1

    def _release(self) -> Iterator[Envelope]:
        _, _, time, envelope, copy = heappop(self._held)
        yield envelope
        if not copy:
            self._maybe_resend(time, envelope)

    def _maybe_resend(self, time: int, envelope: Envelope) -> None:
        if self._duplicate_share and self._rng.random() < self._duplicate_share:
            again = {**envelope, "data": dict(envelope["data"])}  # data holds only scalars
            self._hold(time + int(self._rng.random() * self._max_lateness), time, again, copy=True)
            self.duplicates += 1
