"""The search bound every store applies: ``k``.

Decisions: it imports no engine, so every store refuses the same ``k`` with the same
:class:`~asemantic.errors.InvalidInputError`. Vector blobs are checked by
:mod:`asemantic.adapters.vectors`.
"""

from __future__ import annotations

from asemantic.errors import InvalidInputError

__all__ = ["MAX_K", "check_k"]

MAX_K = 1000
"""The most hits one search may ask for."""


def check_k(k: object) -> int:
    """``k`` if it is an integer within ``1..MAX_K`` (a bool is not)."""
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise InvalidInputError(f"k must be an integer within 1..{MAX_K}, got {k!r}")
    return k
