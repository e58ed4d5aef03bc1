"""Keyword lists (a topic's, an urgency rule's) matched on word boundaries in normalised text, and a quick way to
tell, from a batch's words alone, which lists each text could match, so that only those are searched.

A keyword is a word or a phrase; a trailing * matches any ending ("refund*"). It is split into runs of letters
and digits ("hasn't arrived": hasn, t, arrived). Where a keyword matches, the text's own runs there are the
keyword's runs: the same, except that the last one only begins with the keyword's for a keyword ending in *.
So a text none of whose runs is a keyword's chosen run (its longest whole run, else the start of its last) cannot
match that keyword. Most texts are ruled out by a few set lookups per distinct word of the batch; a regular
expression searches only the rest, and finds exactly what it would in every text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from amends.feedback.triage._features import normalise

__all__ = ["KeywordGroups", "keyword_pattern"]

_RUN = re.compile(r"[^\W_]+")  # a run of letters and digits: \w without the underscore


def keyword_pattern(keywords: Iterable[str]) -> re.Pattern[str]:
    """One pattern for the keywords, matched on word boundaries, the longest first."""
    normal = sorted({normalise(k) for k in keywords}, key=lambda k: (-len(k), k))
    parts = [re.escape(k.rstrip("*")) + (r"\w*" if k.endswith("*") else "") for k in normal]
    return re.compile(r"(?<!\w)(?:" + "|".join(parts) + r")(?!\w)")


@dataclass(frozen=True, eq=False)
class KeywordGroups:
    """Named groups of keywords: a pattern per group, and which groups each text of a batch could match."""

    names: tuple[str, ...]
    patterns: Mapping[str, re.Pattern[str]]
    _runs: Mapping[str, frozenset[str]]  # a keyword's chosen whole run -> the groups with such a keyword
    _starts: Mapping[str, frozenset[str]]  # the start of a keyword's last run (keyword*) -> its groups
    _start_tuple: tuple[str, ...]
    _always: frozenset[str]  # groups with a keyword that has no letters or digits: always searched

    @classmethod
    def of(cls, groups: Mapping[str, Iterable[str]]) -> KeywordGroups:
        runs: dict[str, set[str]] = {}
        starts: dict[str, set[str]] = {}
        always: set[str] = set()
        patterns = {}
        for name, keywords in groups.items():
            listed = [normalise(k) for k in keywords]
            patterns[name] = keyword_pattern(listed)
            for keyword in listed:
                found = _RUN.findall(keyword.rstrip("*"))
                ends_open = keyword.endswith("*") and bool(re.search(r"[^\W_]$", keyword.rstrip("*")))
                whole = found[:-1] if ends_open else found
                if whole:
                    runs.setdefault(max(whole, key=len), set()).add(name)
                elif found:
                    starts.setdefault(found[-1], set()).add(name)
                else:
                    always.add(name)
        return cls(
            names=tuple(groups),
            patterns=patterns,
            _runs={run: frozenset(names) for run, names in runs.items()},
            _starts={start: frozenset(names) for start, names in starts.items()},
            _start_tuple=tuple(starts),
            _always=frozenset(always),
        )

    def groups_to_search(self, words: Sequence[Sequence[str]]) -> list[frozenset[str]]:
        """Per text (given as its words, punctuation stripped): the groups it could match; empty for most."""
        runs, starts, start_tuple = self._runs, self._starts, self._start_tuple
        per_word: dict[str, frozenset[str]] = {}
        for word in set().union(*words):
            found: set[str] = set()
            for run in (word,) if word.isalnum() else _RUN.findall(word):
                if (names := runs.get(run)) is not None:
                    found |= names
                if run.startswith(start_tuple):
                    for start, names in starts.items():
                        if run.startswith(start):
                            found |= names
            if found:
                per_word[word] = frozenset(found)
        always = self._always
        if not per_word:
            return [always] * len(words)
        result = []
        for text_words in words:
            hits = [per_word[word] for word in text_words if word in per_word]
            result.append(always.union(*hits) if hits else always)
        return result
