"""Staff passwords for the console: Argon2id hashes (argon2-cffi, with its default, RFC 9106 parameters).

A password is 12 to 256 characters and not easy to guess, and nothing else is required of it (no composition
rules: NIST SP 800-63B, OWASP ASVS 2.1). "Easy to guess" is zxcvbn's estimate, made here, offline: its lists of
common and breached passwords, words and names ship in the package, and the person's own id, name and email count
as words too. A hash made with weaker parameters than today's is upgraded at the next successful login.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from zxcvbn import zxcvbn

from amends.errors import InvalidInput

__all__ = [
    "MAX_PASSWORD", "MIN_PASSWORD", "Strength", "check_new_password", "estimate_strength", "hash_password",
    "needs_rehash", "rehash", "verify_password",
]  # fmt: skip

MIN_PASSWORD = 12
MAX_PASSWORD = 256
# zxcvbn's scores: 0 too guessable, 1 very guessable, 2 somewhat guessable, 3 safely unguessable (about 10^10
# guesses: an offline attack on a slow hash gives up), 4 very unguessable. Below 3 is refused.
LEAST_SCORE = 3
_ESTIMATED = 100  # zxcvbn's time grows with the length; past this many characters the rest cannot make it weaker
_WORDS = ("very weak", "weak", "fair", "strong", "very strong")
_hasher = PasswordHasher()
# Verified when nobody has the login name asked for, so that a wrong name takes as long as a wrong password.
_DUMMY = _hasher.hash("not anyone's password, only to spend the same time")


@dataclass(frozen=True, slots=True)
class Strength:
    """How hard a password is to guess: zxcvbn's score (0-4) in words, and its advice."""

    score: int
    warning: str
    suggestions: tuple[str, ...]

    @property
    def words(self) -> str:
        return _WORDS[self.score]

    @property
    def is_enough(self) -> bool:
        return self.score >= LEAST_SCORE


def estimate_strength(password: str, about: Sequence[str] = ()) -> Strength:
    """zxcvbn's estimate of `password`, with `about` (the person's id, name, email) counted as words an attacker
    would try first."""
    words = [part for value in about if value for part in (value, *value.replace("@", " ").replace(".", " ").split())]
    result = zxcvbn(password[:_ESTIMATED], user_inputs=words) if password else None
    if result is None:
        return Strength(0, "", ())
    feedback = result["feedback"]
    return Strength(int(result["score"]), str(feedback["warning"] or ""), tuple(map(str, feedback["suggestions"])))


def _only_about(password: str, about: Sequence[str]) -> bool:
    """Whether the password is nothing but the person's words (id, name, email and their parts), digits and
    punctuation: zxcvbn scores "Ana Agent ana@example.com" well, an attacker who knows Ana would not."""
    left = password.lower()
    words = {w for value in about for w in (value.lower(), *re.split(r"[\W_]+", value.lower())) if len(w) >= 3}
    for word in sorted(words, key=len, reverse=True):
        left = left.replace(word, " ")
    return len(re.sub(r"[\W\d_]", "", left)) < 4  # letters of any script that are not theirs


def check_new_password(password: str, about: Sequence[str] = ()) -> str:
    """The password, if it may be set; InvalidInput naming the field otherwise. `about`: words about its person
    (id, name, email), which make a password easier to guess."""
    if len(password) < MIN_PASSWORD:
        raise InvalidInput("password", f"at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise InvalidInput("password", f"at most {MAX_PASSWORD} characters")
    if len(set(password)) < 4:
        raise InvalidInput("password", "uses fewer than four different characters")
    if about and _only_about(password, about):
        raise InvalidInput("password", "is made of your name, id or email; add words of your own")
    strength = estimate_strength(password, about)
    if not strength.is_enough:
        advice = " ".join(filter(None, (strength.warning, *strength.suggestions)))
        raise InvalidInput("password", f"too easy to guess ({strength.words}). {advice}".strip())
    return password


def hash_password(password: str, about: Sequence[str] = ()) -> str:
    return _hasher.hash(check_new_password(password, about))


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
