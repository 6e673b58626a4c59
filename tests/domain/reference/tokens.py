"""Reference copy, for differential tests of asemantic.domain.tokens.

Token counts without a tokenizer.

Gemini's tokenizer is not available offline, so asemantic *estimates* token counts on
the safe side: :func:`estimate_tokens` is meant to be at least the real count for any
text (about 3 ASCII letters a token, every symbol a token, every non-ASCII character at
least one token), so a chunk the splitter accepts is never silently truncated by the
model. :func:`approximate_tokens` is a closer, smaller figure (about 4 letters a token)
used for cost accounting and by the emulator as its "true" count; it is never larger
than the estimate.
"""

from __future__ import annotations

import re

__all__ = ["approximate_tokens", "estimate_tokens"]

_PIECE = re.compile(r"[A-Za-z0-9]+|\s+|[\x21-\x7e]|[^\x00-\x7f]", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def estimate_tokens(text: str) -> int:
    """A conservative (high) token count for ``text``."""
    total = 0
    for match in _PIECE.finditer(text):
        piece = match.group()
        first = piece[0]
        if first.isascii() and first.isalnum():
            total += -(-len(piece) // 3)
        elif not first.isascii():
            # Non-ASCII white space (no-break spaces, ideographic spaces) included: the
            # ASCII-only ``\s`` leaves each such character a piece of its own.
            total += max(1, -(-len(piece.encode("utf-8", "surrogatepass")) // 2))
        elif first.isspace():
            if len(piece) > 1 or first == "\n":
                total += -(-len(piece) // 4)
        else:
            total += 1
    # Control characters the pattern leaves out still cost something.
    return total + len(_CONTROL.findall(text))


def approximate_tokens(text: str) -> int:
    """A closer token count (never above :func:`estimate_tokens`)."""
    total = 0
    for match in _PIECE.finditer(text):
        piece = match.group()
        first = piece[0]
        if first.isascii() and first.isalnum():
            total += -(-len(piece) // 4)
        elif first.isspace():
            continue
        else:
            total += 1
    return total
