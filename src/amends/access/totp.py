"""The console's second step: time-based one-time codes (RFC 6238, 30-second steps, six digits, SHA-1: what every
authenticator app reads from the QR code) and one-time recovery codes.

Rules a reader must not break: a code is accepted for its own step and the one on either side (a phone's clock a
little off), and never for a step at or before the last one accepted, so a code seen once cannot be used again;
recovery codes hold 79 random bits each, stored only as SHA-256 hashes, and each opens once.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

import pyotp

__all__ = [
    "RECOVERY_CODES", "accepted_step", "hash_recovery_code", "new_recovery_codes", "new_secret", "provisioning_uri",
]  # fmt: skip

RECOVERY_CODES = 10
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read off paper and typed again
_DRIFT = 1  # steps accepted either side of now


def new_secret() -> str:
    """A new shared secret: 160 random bits, base32 (what authenticator apps take)."""
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    """The otpauth:// URI an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=issuer)


def accepted_step(secret: str, code: str, *, now: datetime, last_step: int | None) -> int | None:
    """The time step `code` is valid for (now, or one step either side), if it is later than `last_step`; None
    for a wrong, malformed or used code."""
    code = "".join(code.split())
    if len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now)
    for step in range(current - _DRIFT, current + _DRIFT + 1):
        if (last_step is None or step > last_step) and secrets.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def new_recovery_codes() -> list[str]:
    """Fresh recovery codes, shown once: 16 characters each (79 bits), as four groups of four."""
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(_ALPHABET) for _ in range(16))
        codes.append("-".join(raw[i : i + 4] for i in range(0, 16, 4)))
    return codes


def hash_recovery_code(code: str) -> str:
    """The stored form of a recovery code: SHA-256 of it without spaces, dashes or case."""
    normal = "".join(c for c in code.lower() if c.isalnum())
    return hashlib.sha256(normal.encode()).hexdigest()
