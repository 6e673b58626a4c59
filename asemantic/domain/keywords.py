"""Keyword search, engine-neutral: the tokenizer and the BM25 formula.

Every engine indexes and queries the tokens this module makes, so the three engines
find the same chunks with the same scores: SQLite feeds them to FTS5 (joined by single
spaces, with a tokenizer that splits on spaces only), PostgreSQL to a ``tsvector``
written literally (never parsed by a text-search configuration), the memory engine to
a Python inverted index. None of them ever sees the user's query as query syntax:
quotes, ``-``, ``*``, ``NEAR`` or ``:`` are plain characters here.

Decisions:

* **Normalisation**: NFKC, then ``casefold`` (Unicode-aware lower-casing: ``Straße``
  matches ``STRASSE``). Accents are kept (``café`` is not ``cafe``).
* **Words** are runs of Unicode letters and digits. Han, Hiragana and Katakana
  characters are one word each (those scripts do not separate words by spaces).
* **Compounds**: words joined by one of ``_ . - : /`` with no space (``os.path.join``,
  ``ERR_1234``, ``snake_case``, ``std::vector``, ``src/main.py``, ``state-of-the-art``)
  are indexed whole *and* by parts, and so are camelCase/PascalCase words (humps
  of ASCII letters: ``getUserName`` gives ``getusername``, ``get``, ``user``,
  ``name``). An exact identifier in
  the query then matches the chunk holding it through the rare whole token (high idf),
  while a chunk naming only its parts still matches those.
* A token is at most :data:`MAX_TOKEN_CHARS` characters (longer ones are cut: a base64
  blob is one useless token, and PostgreSQL refuses lexemes over 2 KB).
* A term counts at most :data:`MAX_TERM_FREQUENCY` times in a chunk (PostgreSQL's
  ``tsvector`` keeps at most 256 positions per lexeme); later occurrences are dropped
  from the chunk's tokens everywhere, so its length is the same on every engine.
* **Query terms** are the query's tokens, each once, in first-occurrence order; a chunk
  matches when it holds any of them (OR), and is scored by BM25.
* **BM25** is SQLite FTS5's ``bm25()``, exactly (sqlite.org/fts5.html, section 5.1.1):
  ``k1 = 1.2``, ``b = 0.75``, ``idf = ln((N - n + 0.5) / (n + 0.5))`` clamped to
  ``1e-6`` when not positive, ``N`` and the average length over every chunk of the
  database (whatever its embedding status), ``n`` the chunks holding the term. Scores
  are positive (FTS5's value negated), higher is better. Scores equal to
  :data:`SCORE_DIGITS` decimals are ties, broken by chunk id (engines may sum in a
  different order, which changes the last bits).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "BM25_B",
    "BM25_K1",
    "IDF_FLOOR",
    "JOINERS",
    "MAX_TERM_FREQUENCY",
    "MAX_TOKEN_CHARS",
    "SCORE_DIGITS",
    "bm25",
    "idf",
    "index_terms",
    "index_tokens",
    "query_terms",
    "terms_tokens",
    "tokenize",
]

BM25_K1 = 1.2
BM25_B = 0.75
IDF_FLOOR = 1e-6
"""FTS5's floor for a term in half the chunks or more."""
MAX_TOKEN_CHARS = 64
MAX_TERM_FREQUENCY = 256
SCORE_DIGITS = 9
JOINERS = "_.-:/"
"""Characters that join words into one compound (and may appear inside a token)."""

_WORD = r"[^\W_]+"
_COMPOUND = re.compile(rf"{_WORD}(?:[{re.escape(JOINERS)}]+{_WORD})*")
_PART = re.compile(_WORD)
_ASCII_COMPOUND = re.compile(rf"[a-z0-9]+(?:[{re.escape(JOINERS)}]+[a-z0-9]+)*")
# A camelCase hump: lower or digit then upper, or upper, upper, lower.
_HUMP = re.compile(r"[A-Z](?:(?<=[a-z\d][A-Z])|(?=[A-Z][a-z]))")
# Letters of scripts written without spaces: each one is a word.
_CJK = re.compile("([\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f])")


def _camel_parts(word: str) -> list[str]:
    """``word`` cut at camelCase boundaries: lower or digit then upper (``getUser``),
    and an upper-case run before an upper then lower (``HTTPServer``)."""
    parts: list[str] = []
    start = 0
    for i in range(1, len(word)):
        prev, cur = word[i - 1], word[i]
        nxt = word[i + 1] if i + 1 < len(word) else ""
        if cur.isupper() and (
            prev.islower() or prev.isdigit() or (prev.isupper() and nxt.islower())
        ):
            parts.append(word[start:i])
            start = i
    parts.append(word[start:])
    return parts


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text.casefold())


def tokenize(text: str) -> list[str]:
    """The tokens of ``text``: every word or compound whole, then the parts of the
    compounds, then the parts of camelCase words (BM25 counts tokens, so their order
    does not matter; it is fixed so query terms come in a stable order).

    Every token ``t`` is its own first token (``tokenize(t)[0] == t``): the text is
    folded before it is cut, so a token never changes when it is tokenised again.
    """
    if text.isascii():  # the same tokens, sooner: NFKC and casefold are lower() here
        tokens = _ASCII_COMPOUND.findall(text.lower())
    else:
        text = unicodedata.normalize("NFKC", text)
        if _CJK.search(text):
            text = _CJK.sub(r" \1 ", text)
        tokens = _COMPOUND.findall(_fold(text))
    # The parts of every compound, then of every camelCase word, each in one regex
    # call over the pieces joined by spaces (no piece holds one, folding adds none).
    joined = [t for t in tokens if not t.isalnum()]
    if joined:
        tokens.extend(_PART.findall(" ".join(joined)))
    if _HUMP.search(text):
        parts = [
            part
            for word in _PART.findall(text)
            if not word[1:].islower() and _HUMP.search(word)  # a hump: upper after the first
            for part in _camel_parts(word)
        ]
        tokens.extend(_PART.findall(_fold(" ".join(parts))))
    if tokens and max(map(len, tokens)) > MAX_TOKEN_CHARS:
        tokens = [_cut(t) for t in tokens]
    return tokens


def _cut(token: str) -> str:
    return token[:MAX_TOKEN_CHARS]


def index_tokens(text: str) -> list[str]:
    """The tokens a chunk is indexed by: :func:`tokenize`, each term at most
    :data:`MAX_TERM_FREQUENCY` times."""
    tokens = tokenize(text)
    if len(tokens) <= MAX_TERM_FREQUENCY:
        return tokens
    counts: Counter[str] = Counter(tokens)
    if max(counts.values()) <= MAX_TERM_FREQUENCY:
        return tokens
    seen: Counter[str] = Counter()
    out: list[str] = []
    for token in tokens:
        seen[token] += 1
        if seen[token] <= MAX_TERM_FREQUENCY:
            out.append(token)
    return out


def index_terms(text: str) -> str:
    """What a chunk of ``text`` is stored with for keyword search: its
    :func:`index_tokens` joined by single spaces (no token holds one)."""
    return " ".join(index_tokens(text))


def terms_tokens(terms: str) -> list[str]:
    """The tokens back from :func:`index_terms`'s string."""
    return terms.split(" ") if terms else []


def query_terms(text: str) -> list[str]:
    """A query's terms: its tokens, each once, in first-occurrence order."""
    return list(dict.fromkeys(tokenize(text)))


def idf(chunks: int, holding: int) -> float:
    """FTS5's idf of a term ``holding`` of ``chunks`` chunks hold."""
    value = math.log((chunks - holding + 0.5) / (holding + 0.5))
    return value if value > 0.0 else IDF_FLOOR


def bm25(
    frequencies: Mapping[str, int],
    length: int,
    *,
    terms: Sequence[str],
    idfs: Mapping[str, float],
    average_length: float,
) -> float:
    """A chunk's BM25 score for ``terms`` (FTS5's formula, summed in ``terms`` order).

    ``frequencies`` counts the chunk's tokens, ``length`` is how many it has.
    """
    score = 0.0
    for term in terms:
        tf = frequencies.get(term, 0)
        num = tf * (BM25_K1 + 1.0)
        denom = tf + BM25_K1 * (1 - BM25_B + BM25_B * length / average_length)
        score += idfs[term] * (num / denom)
    return score


def rounded(score: float) -> float:
    """``score`` as ranking compares it (ties below :data:`SCORE_DIGITS` decimals)."""
    return round(score, SCORE_DIGITS)


def term_counts(tokens: Iterable[str]) -> Counter[str]:
    """How many times each token occurs."""
    return Counter(tokens)
