"""Keys of batch lines: which chunk, and which text of it, a result belongs to.

A key is ``"<chunk id>-<first 12 hex digits of the vector source's hash>"``. Results are
joined by key, never by position, and a result whose hash part no longer matches the
chunk's current text is discarded (the text changed while the job ran).
"""

from __future__ import annotations

import re

__all__ = ["HASH_PREFIX", "line_key", "parse_line_key"]

HASH_PREFIX = 12
_KEY = re.compile(r"(\d{1,19})-([0-9a-f]{12})")


def line_key(chunk_id: int, content_hash: str) -> str:
    return f"{chunk_id}-{content_hash[:HASH_PREFIX]}"


def parse_line_key(key: str) -> tuple[int, str] | None:
    """``(chunk id, hash prefix)``, or None for a key asemantic did not write."""
    match = _KEY.fullmatch(key)
    if match is None:
        return None
    return int(match.group(1)), match.group(2)
