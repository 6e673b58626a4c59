"""The search bounds every store applies: ``k``, and keyword terms.

Decisions: it imports no engine, so every store refuses the same ``k`` with the same
:class:`~asemantic.errors.InvalidInputError`. Vector blobs are checked by
:mod:`asemantic.adapters.vectors`.
"""

from __future__ import annotations

from collections.abc import Sequence

from asemantic.domain.keywords import tokenize
from asemantic.errors import InvalidInputError

__all__ = ["MAX_K", "check_k", "check_terms"]

MAX_K = 1000
"""The most hits one search may ask for."""


def check_k(k: object) -> int:
    """``k`` if it is an integer within ``1..MAX_K`` (a bool is not)."""
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise InvalidInputError(f"k must be an integer within 1..{MAX_K}, got {k!r}")
    return k


def check_terms(terms: Sequence[str]) -> list[str]:
    """Keyword terms as a list, each once, if every one is a token the tokenizer makes
    (:func:`asemantic.domain.keywords.query_terms`): no engine then needs to quote or
    escape anything, nor can a term carry query syntax."""
    if isinstance(terms, str) or not isinstance(terms, Sequence):
        raise InvalidInputError("keyword terms must be a sequence of str")
    out: list[str] = []
    for term in terms:
        if not isinstance(term, str) or tokenize(term)[:1] != [term]:
            raise InvalidInputError(f"{term!r} is not a keyword term (see query_terms)")
        out.append(term)
    return list(dict.fromkeys(out))
