"""Text to features: the normal form of a text, its pieces (words as whitespace splits them), and hashed word and
character n-grams counted over a whole batch at once.

The hashes are this module's own (CRC-32 for words, a polynomial hash over code points for character n-grams),
so the same text gives the same feature indices on every machine and in every process. Changing them changes
what every shipped model means: rebuild the models (`amends triage build-models`) after any change here.
"""

from __future__ import annotations

import html
import itertools
import re
import unicodedata
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

__all__ = [
    "CHAR_BLOCK", "HASH_BITS", "TRUNCATION_MARKER", "Batch", "featurise", "normalise", "strip_word",
    "truncate",
]  # fmt: skip

HASH_BITS = 21  # the feature space: word n-grams hashed into its lower half, character n-grams into its upper half
_BLOCK_BITS = HASH_BITS - 1  # 2**20 per kind: collisions between the few hundred thousand n-grams seen stay rare
CHAR_BLOCK = 1 << _BLOCK_BITS  # a feature index at or above this is a character n-gram
_MASK = CHAR_BLOCK - 1
_CHAR_NS = (2, 3, 4, 5)
_UNIGRAM = zlib.crc32(b"w\x01")  # the prefixes that keep word unigrams and bigrams apart
_BIGRAM = zlib.crc32(b"b\x01")
TRUNCATION_MARKER = " … [truncated]"

_INVISIBLE = re.compile("[\u0000\u00ad\u200b-\u200f\u2028\u2029\u2060\ufeff]")
_SPACE = re.compile(r"\s+")
_KNOWN_WORDS = 1 << 16  # words whose hashes are kept between batches: customers' vocabulary repeats
_CACHED_WORD_CHARS = 40  # longer "words" (links, blobs) are hashed each time, so the cache stays small
_TOKEN = re.compile(r"[^\W_]+")  # a run of letters and digits
_PUNCTUATION = "".join(
    chr(c) for c in range(0x2070) if unicodedata.category(chr(c)).startswith(("P", "S")) and chr(c) not in "$€£%"
)
# Polynomial hash of a character n-gram over code points, then a 64-bit finaliser (from MurmurHash3) so that the
# top bits are well mixed. All arithmetic is on uint64 arrays, which wrap modulo 2**64 without a warning.
_P = np.uint64(1_000_003)
_SEED_TERMS = {n: np.uint64(0x9E3779B97F4A7C15 * n * int(_P) ** n % (1 << 64)) for n in _CHAR_NS}  # seed_n * P**n
_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)
_TOP = np.uint64(64 - _BLOCK_BITS)


def truncate(text: str, max_chars: int) -> tuple[str, bool]:
    """The text cut to `max_chars` characters with a marker at the end, and whether it was cut."""
    if len(text) <= max_chars:
        return text, False
    return text[: max(0, max_chars - len(TRUNCATION_MARKER))].rstrip() + TRUNCATION_MARKER, True


def normalise(text: str) -> str:
    """The form every model reads: HTML entities decoded, NFKC, invisible characters dropped, lower case, single
    spaces."""
    text = html.unescape(text) if "&" in text else text
    text = _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))
    return _SPACE.sub(" ", text).strip().lower()


def strip_word(piece: str) -> str:
    """A piece without the punctuation around it ("broken!!!" -> "broken")."""
    return piece.strip(_PUNCTUATION)


@dataclass(frozen=True, slots=True)
class Batch:
    """The n-grams of a batch of texts as occurrences: for each, the text (row), the piece it lies in, and its
    hashed feature index. Pieces are numbered across the batch; `piece_start[r]` is the first piece of text r."""

    texts: tuple[str, ...]  # normalised
    pieces: tuple[str, ...]
    words: tuple[str, ...]  # each piece without the punctuation around it ("" when nothing is left)
    piece_start: npt.NDArray[np.int64]  # len(texts) + 1 entries
    word_ids: npt.NDArray[np.int64]  # per piece: the same number for the same word ("" aside: each its own number)
    rows: npt.NDArray[np.int64]
    piece_of: npt.NDArray[np.int64]
    features: npt.NDArray[np.int64]

    def select(self, rows: npt.NDArray[np.int64]) -> Batch:
        """The texts `rows` (ascending) as a batch of their own, the same as featurising them alone."""
        lengths = np.diff(self.piece_start)[rows]
        new_start = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        old_pieces = np.repeat(self.piece_start[rows] - new_start[:-1], lengths) + np.arange(new_start[-1])
        piece_map = np.full(len(self.pieces), -1, dtype=np.int64)
        piece_map[old_pieces] = np.arange(len(old_pieces))
        row_map = np.full(len(self.texts), -1, dtype=np.int64)
        row_map[rows] = np.arange(len(rows))
        kept = row_map[self.rows] >= 0
        return Batch(
            texts=tuple(self.texts[r] for r in rows.tolist()),
            pieces=tuple(self.pieces[p] for p in old_pieces.tolist()),
            words=tuple(self.words[p] for p in old_pieces.tolist()),
            piece_start=new_start,
            word_ids=self.word_ids[old_pieces],
            rows=row_map[self.rows[kept]],
            piece_of=piece_map[self.piece_of[kept]],
            features=self.features[kept],
        )


def featurise(texts: Sequence[str]) -> Batch:
    """Hash the word unigrams and bigrams and the character 2- to 5-grams (within each piece, padded by a space
    on either side, as scikit-learn's char_wb does) of already normalised texts."""
    pieces: list[str] = []
    words: list[str] = []
    piece_start = [0]
    for text in texts:
        split = text.split(" ") if text else []
        pieces += split
        words += [piece.strip(_PUNCTUATION) for piece in split]
        piece_start.append(len(pieces))
    starts = np.asarray(piece_start, dtype=np.int64)
    piece_rows = np.repeat(np.arange(len(texts), dtype=np.int64), np.diff(starts))
    word_ids, word_pieces, word_features = _word_ngrams(words, piece_rows)
    char_rows, char_pieces, char_features = _char_ngrams(pieces, piece_start)
    return Batch(
        texts=tuple(texts),
        pieces=tuple(pieces),
        words=tuple(words),
        piece_start=starts,
        word_ids=word_ids,
        rows=np.concatenate([piece_rows[word_pieces], char_rows]),
        piece_of=np.concatenate([word_pieces, char_pieces]),
        features=np.concatenate([word_features, char_features]),
    )


def _word_ngrams(
    words: list[str], piece_rows: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    # Per distinct word, once (kept across batches, up to _KNOWN_WORDS words): its tokens (the word itself, or its
    # runs of letters and digits when it holds other characters: "www.example.com/offer" -> www, example, com,
    # offer), their unigram features and the bigrams between them, the first token's bytes, and the running CRC of
    # "b\x01token\x01" of the last token, which a bigram with the next word continues (zlib.crc32(data, crc)
    # carries on from crc). Each occurrence then takes its word's features by index.
    distinct: dict[str, int] = {}
    codes = np.fromiter((distinct.setdefault(w, len(distinct)) for w in words), dtype=np.int64, count=len(words))
    known = [_word_features(w) if len(w) <= _CACHED_WORD_CHARS else _hash_word(w) for w in distinct]
    lengths = np.fromiter((len(own) for own, _, _ in known), dtype=np.int64, count=len(known))
    flat = np.fromiter(itertools.chain.from_iterable(own for own, _, _ in known), dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    counts = lengths[codes]  # per piece: how many unigram features its word has
    unigram_pieces = np.repeat(np.arange(len(words), dtype=np.int64), counts)
    within = np.arange(len(unigram_pieces)) - np.repeat(np.cumsum(counts) - counts, counts)
    unigrams = flat[offsets[codes[unigram_pieces]] + within]
    # A bigram joins each word that has tokens to the one before it in the same text that has tokens (a piece of
    # punctuation alone is skipped over). It belongs to the second word's piece; reasons show that piece.
    with_tokens = np.flatnonzero(counts > 0)
    joined = with_tokens[1:][piece_rows[with_tokens[1:]] == piece_rows[with_tokens[:-1]]]
    before = with_tokens[:-1][piece_rows[with_tokens[1:]] == piece_rows[with_tokens[:-1]]]
    crc32 = zlib.crc32
    bigrams = np.fromiter(
        (
            crc32(known[second][1], known[first][2]) & _MASK
            for first, second in zip(codes[before].tolist(), codes[joined].tolist(), strict=True)
        ),
        dtype=np.int64,
        count=len(joined),
    )
    # Word ids: the distinct word's number, but a piece with no word ("!!!") has its own past them all.
    ids = codes if "" not in distinct else np.where(codes == distinct[""], len(distinct) + np.arange(len(codes)), codes)
    return ids, np.concatenate([unigram_pieces, joined]), np.concatenate([unigrams, bigrams])


def _hash_word(word: str) -> tuple[tuple[int, ...], bytes, int]:
    tokens = [word] if word.isalnum() else _TOKEN.findall(word)
    if not tokens:
        return (), b"", -1
    encoded = [token.encode() for token in tokens]
    features = [zlib.crc32(token, _UNIGRAM) & _MASK for token in encoded]
    prefixes = [zlib.crc32(b"\x01", zlib.crc32(token, _BIGRAM)) for token in encoded]
    features += [zlib.crc32(token, prefix) & _MASK for token, prefix in zip(encoded[1:], prefixes, strict=False)]
    return tuple(features), encoded[0], prefixes[-1]


_word_features = lru_cache(maxsize=_KNOWN_WORDS)(_hash_word)


def _char_ngrams(
    pieces: list[str], piece_start: list[int]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    if not pieces:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    # Every piece as " piece " followed by a NUL (never in a normalised text), all in one array of code points.
    joined = " " + " \x00 ".join(pieces) + " \x00"
    points = np.frombuffer(joined.encode("utf-32-le"), dtype="<u4").astype(np.uint64)
    separators_before = np.concatenate([[0], np.cumsum(points == 0)])
    piece_rows = np.repeat(np.arange(len(piece_start) - 1), np.diff(piece_start))
    rows, piece_of, features = [], [], []
    # The n-gram at i hashes to seed_n * P**n + sum over j < n of points[i + j] * P**(n - 1 - j): the sum for n
    # follows from the one for n - 1 with one multiply-add, and the seed's part is a constant.
    poly = points
    for n in range(1, max(_CHAR_NS) + 1):
        count = len(points) - n + 1
        if count <= 0:
            break
        if n > 1:
            poly = poly[:count] * _P + points[n - 1 :]
        if n not in _CHAR_NS:
            continue
        starts = np.flatnonzero(separators_before[n:] == separators_before[:count])  # n-grams within one piece
        h = poly[starts] + _SEED_TERMS[n]
        h ^= h >> _S33
        h *= _M1
        h ^= h >> _S33
        h *= _M2
        h ^= h >> _S33
        piece = separators_before[starts]
        rows.append(piece_rows[piece])
        piece_of.append(piece)
        features.append((h >> _TOP).astype(np.int64) | CHAR_BLOCK)
    return (np.concatenate(rows), np.concatenate(piece_of), np.concatenate(features))
