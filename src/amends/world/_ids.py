"""Identifiers: event ids drawn from the world's seeded generator, and readable business keys.

Event ids are version-4 UUIDs made of seeded random bits (never uuid4(), which reads the OS's entropy),
so a seed always gives the same ids. Business keys are counters, so they never collide.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

__all__ = ["booking_ref", "uuid_texts"]

_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}
_BATCH = 512  # ids drawn per call to the generator: one call and one hex conversion serve them all


def uuid_texts(rng: random.Random) -> Iterator[str]:
    """Endless canonical texts of version-4 UUIDs made of the generator's random bits."""
    variant = _VARIANT
    while True:
        h = rng.randbytes(16 * _BATCH).hex()
        for o in range(0, 32 * _BATCH, 32):
            # Version nibble 4, variant bits 10: the rest of the 128 bits stay random.
            yield (
                f"{h[o : o + 8]}-{h[o + 8 : o + 12]}-4{h[o + 13 : o + 16]}"
                f"-{variant[h[o + 16]]}{h[o + 17 : o + 20]}-{h[o + 20 : o + 32]}"
            )


_PNR_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no I, O, 0 or 1: they are misread on the phone
_PNR_SPACE = len(_PNR_ALPHABET) ** 6
_PNR_STEP = 594_823_321  # odd, so coprime to 32**6: n -> n * step is a bijection


def booking_ref(n: int) -> str:
    """A six-letter booking reference, distinct for every n below 32**6 and not visibly sequential."""
    code = (n * _PNR_STEP + 0x2A5F1) % _PNR_SPACE
    letters = []
    for _ in range(6):
        code, digit = divmod(code, 32)
        letters.append(_PNR_ALPHABET[digit])
    return "".join(letters)
