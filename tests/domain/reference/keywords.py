"""Reference copy, for differential tests of asemantic.domain.keywords: the tokenizer
as it was before its hot paths were batched (one regex call per compound and per
camelCase word)."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

JOINERS = "_.-:/"
MAX_TOKEN_CHARS = 64
MAX_TERM_FREQUENCY = 256
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
    for joined in [t for t in tokens if not t.isalnum()]:
        tokens.extend(_PART.findall(joined))
    if _HUMP.search(text):
        for word in _PART.findall(text):
            if _HUMP.search(word):
                parts = _camel_parts(word)
                tokens.extend(part for p in parts for part in _PART.findall(_fold(p)))
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
