"""Content hashes, canonical JSON and metadata validation.

Hashes decide what costs money: a chunk whose vector source hashes the same as a stored
one keeps its vector, and a document whose hash is unchanged is not re-chunked at all.

Decisions:

* :func:`content_hash` and :func:`document_hash` are full SHA-256 hex digests (64
  characters). 32 characters would do against accidents, but the full digest costs 32
  bytes a row, needs no argument about collision odds, and anyone can check it with
  ``sha256sum``.
* :func:`document_hash` covers the title, the text, the metadata (as canonical JSON)
  and a *pipeline* string naming the splitter and context configuration. The source is
  left out: it is the document's identity, not its content. Each field is length
  prefixed, so no two different documents can run together into the same bytes.
* :func:`canonical_json` refuses anything JSON cannot round-trip: non-string keys
  (``json.dumps`` would quietly turn ``1`` into ``"1"``), NaN and infinity, integers
  outside SQLite's 64-bit range, sets, bytes, lone surrogates and nesting deeper than
  :data:`MAX_JSON_DEPTH` (which also stops self-referencing containers).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

from asemantic.errors import InvalidInputError, UndecodableTextError

if TYPE_CHECKING:
    from asemantic.domain.documents import Document, JSONValue

__all__ = [
    "MAX_JSON_DEPTH",
    "MAX_METADATA_BYTES",
    "canonical_json",
    "content_hash",
    "document_hash",
    "short_hash",
    "validate_metadata",
]

MAX_JSON_DEPTH = 32
"""How deeply JSON values (metadata) may nest."""

MAX_METADATA_BYTES = 1_000_000
"""The largest metadata object accepted, measured as canonical UTF-8 JSON."""

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_HASH_SCHEME = b"asemantic-document/1"


def content_hash(text: str) -> str:
    """The SHA-256 hex digest of ``text`` encoded as UTF-8."""
    return hashlib.sha256(_utf8(text, what="text")).hexdigest()


def short_hash(text: str, n: int = 12) -> str:
    """The first ``n`` hex characters of :func:`content_hash` (for compact keys)."""
    if not 1 <= n <= 64:
        raise InvalidInputError(f"short_hash length must be within 1..64, got {n}")
    return content_hash(text)[:n]


def document_hash(document: Document, *, pipeline: str) -> str:
    """A digest that changes when the document's content or the pipeline changes.

    ``pipeline`` names everything that shapes the chunks and their vector sources (see
    :func:`asemantic.domain.context.pipeline_fingerprint`): the same document ingested
    with another splitter budget or context strategy must be chunked again.
    """
    digest = hashlib.sha256(_HASH_SCHEME)
    fields = (
        pipeline,
        canonical_json(document.title),
        canonical_json(dict(document.metadata)),
        document.text,
    )
    for field in fields:
        data = _utf8(field, what="document")
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


def canonical_json(value: object) -> str:
    """``value`` as compact JSON with sorted keys, or :class:`InvalidInputError`."""
    return _dump(_plain(value, path="$", depth=0))


def validate_metadata(
    metadata: Mapping[str, object] | None, *, max_bytes: int = MAX_METADATA_BYTES
) -> dict[str, JSONValue]:
    """Check document metadata; return a plain deep copy (lists, dicts, str keys).

    ``None`` means no metadata. Tuples become lists; every other non-JSON value, a
    non-string key, NaN, too deep nesting or a copy larger than ``max_bytes`` (as
    canonical JSON) raises :class:`InvalidInputError` naming the offending path.
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidInputError(f"metadata must be a mapping, not {type(metadata).__name__}")
    plain = _plain(metadata, path="$", depth=0)
    assert isinstance(plain, dict)
    size = len(_dump(plain).encode("utf-8"))
    if size > max_bytes:
        raise InvalidInputError(f"metadata is {size:,} bytes as JSON; the limit is {max_bytes:,}")
    return plain


def _dump(value: JSONValue) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def _plain(value: object, *, path: str, depth: int) -> JSONValue:
    """A checked copy of ``value`` made of plain JSON types only."""
    if depth > MAX_JSON_DEPTH:
        raise InvalidInputError(f"{path}: JSON nests deeper than {MAX_JSON_DEPTH} levels")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise InvalidInputError(f"{path}: integer outside the 64-bit range")
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInputError(f"{path}: NaN and infinity are not JSON")
        return float(value)
    if isinstance(value, str):
        _utf8(value, what=path)
        return str.__str__(value)  # a plain str, even for a (str, Enum) member
    if isinstance(value, list | tuple):
        return [_plain(item, path=f"{path}[{i}]", depth=depth + 1) for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        out: dict[str, JSONValue] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInputError(
                    f"{path}: JSON object keys must be str, got {type(key).__name__} {key!r}"
                )
            _utf8(key, what=f"{path} key")
            out[str(key)] = _plain(item, path=f"{path}[{key!r}]", depth=depth + 1)
        return out
    raise InvalidInputError(f"{path}: {type(value).__name__} is not a JSON value")


def _utf8(text: str, *, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UndecodableTextError(
            f"{what} holds a lone surrogate at character offset {exc.start}"
        ) from None
