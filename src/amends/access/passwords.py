"""Staff passwords for the console: Argon2id hashes (argon2-cffi, with its default, RFC 9106 parameters).

A password is 12 to 256 characters, and nothing else is required of it (no composition rules: NIST SP 800-63B,
OWASP ASVS 2.1). A hash made with weaker parameters than today's is upgraded at the next successful login.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from amends.errors import InvalidInput

__all__ = [
    "MAX_PASSWORD", "MIN_PASSWORD", "check_new_password", "hash_password", "needs_rehash", "rehash", "verify_password"
]  # fmt: skip

MIN_PASSWORD = 12
MAX_PASSWORD = 256
_hasher = PasswordHasher()
# Verified when nobody has the login name asked for, so that a wrong name takes as long as a wrong password.
_DUMMY = _hasher.hash("not anyone's password, only to spend the same time")


def check_new_password(password: str) -> str:
    """The password, if it may be set; InvalidInput naming the field otherwise."""
    if len(password) < MIN_PASSWORD:
        raise InvalidInput("password", f"at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise InvalidInput("password", f"at most {MAX_PASSWORD} characters")
    if len(set(password)) < 4:
        raise InvalidInput("password", "uses fewer than four different characters")
    return password


def hash_password(password: str) -> str:
    return _hasher.hash(check_new_password(password))


def verify_password(stored: str | None, password: str) -> bool:
    """Whether `password` matches the hash `stored`; with no hash (no such person, or no password set) a dummy
    is verified all the same, and the answer is no."""
    too_long = len(password) > MAX_PASSWORD  # never set so; hashing a huge one would only cost time
    try:
        matched = _hasher.verify(stored or _DUMMY, "" if too_long else password)
        return matched and stored is not None and not too_long
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def rehash(password: str) -> str:
    """A new hash of a password that was just verified, with today's parameters (not checked again: it was set
    under the rules of its day)."""
    return _hasher.hash(password)


def needs_rehash(stored: str) -> bool:
    return _hasher.check_needs_rehash(stored)
