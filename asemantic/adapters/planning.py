"""What a document write does to the stored chunks, decided in pure code (any engine).

A store reads the document's stored chunks, asks :func:`plan_write` what to do, and
then does it in the same transaction. The rules are those of
:class:`asemantic.ports.DocumentWrite`:

* a draft whose ``content_hash`` matches a stored READY or PENDING chunk of the same
  document keeps that chunk (its vector, or its place in a batch job); READY chunks are
  matched before PENDING ones, then by position. Its position, text and meta are
  updated when they differ;
* every stored chunk left unmatched (FAILED ones, changed ones, surplus duplicates) is
  deleted, and its vector with it;
* a new chunk whose hash is in ``vectors`` is stored READY with that vector. A new chunk
  with the hash of a kept READY chunk (the same text twice in one document) is stored
  READY with a copy of that chunk's vector, since it would be the same vector; the
  rest are stored PENDING.

Decisions: this module imports no engine, so every store (SQLite, memory, a later
PostgreSQL) plans a write the same way. Statuses are kept
as their string values (what a row holds), so an engine compares them without
converting.
"""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring

from asemantic.domain.documents import ChunkDraft, EmbeddingStatus, JSONValue
from asemantic.errors import InvalidInputError

__all__ = [
    "ExistingChunk",
    "KeptChunk",
    "NewChunk",
    "WritePlan",
    "check_drafts",
    "chunk_meta_json",
    "dump_json",
    "load_stats",
    "plan_write",
]

_string = encode_basestring  # a JSON string literal, non-ASCII kept (ensure_ascii=False)
_READY = EmbeddingStatus.READY.value
_PENDING = EmbeddingStatus.PENDING.value


@dataclass(frozen=True, slots=True, kw_only=True)
class ExistingChunk:
    chunk_id: int
    position: int
    content_hash: str
    status: str
    text: str
    meta_json: str


@dataclass(frozen=True, slots=True, kw_only=True)
class KeptChunk:
    chunk_id: int
    draft: ChunkDraft
    meta_json: str
    needs_update: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class NewChunk:
    draft: ChunkDraft
    meta_json: str
    status: str
    vector: bytes | None = None
    copy_vector_of: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class WritePlan:
    kept: tuple[KeptChunk, ...]
    delete_ids: tuple[int, ...]
    new: tuple[NewChunk, ...]

    @property
    def pending(self) -> int:
        return sum(1 for chunk in self.new if chunk.status == _PENDING)

    @property
    def updates(self) -> tuple[KeptChunk, ...]:
        return tuple(chunk for chunk in self.kept if chunk.needs_update)


def dump_json(value: JSONValue | Mapping[str, JSONValue]) -> str:
    """Canonical JSON (sorted keys, compact), or :class:`InvalidInputError`."""
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"not JSON-serialisable: {exc}") from None


def load_stats(encoded: str | bytes | None) -> dict[str, int]:
    """A job's stats as stored (a JSON object): its integer counters, others dropped."""
    stats = json.loads(encoded or "{}")
    return {str(k): int(v) for k, v in stats.items() if isinstance(v, int)}


def chunk_meta_json(draft: ChunkDraft) -> str:
    """The ``meta_json`` of a chunk: vector source, heading path and token estimate.

    Built by hand because it is made for every chunk written (json.dumps costs three
    times as much); it equals :func:`dump_json` of the same mapping (a test checks).
    """
    heading = _heading_json(draft.heading_path)
    return (
        f'{{"_vector_source":{_string(draft.vector_source)},"heading_path":[{heading}],'
        f'"token_estimate":{int(draft.token_estimate)}}}'
    )


@functools.lru_cache(maxsize=1024)
def _heading_json(heading_path: tuple[str, ...]) -> str:
    """The JSON items of a heading path (cached: a document's chunks share a few)."""
    return ",".join(_string(part) for part in heading_path)


def check_drafts(drafts: Sequence[ChunkDraft]) -> None:
    positions = [draft.position for draft in drafts]
    if len(set(positions)) != len(positions):
        raise InvalidInputError("two chunks of one document share a position")


def _pools(existing: Sequence[ExistingChunk]) -> dict[str, list[ExistingChunk]]:
    pools: dict[str, list[ExistingChunk]] = defaultdict(list)
    reusable = (c for c in existing if c.status in (_READY, _PENDING))
    for chunk in sorted(reusable, key=lambda c: (c.status != _READY, c.position, c.chunk_id)):
        pools[chunk.content_hash].append(chunk)
    return pools


def plan_write(
    existing: Sequence[ExistingChunk],
    drafts: Sequence[ChunkDraft],
    vectors: Mapping[str, bytes],
) -> WritePlan:
    """Match ``drafts`` against the ``existing`` chunks of the same document."""
    pools = _pools(existing)
    kept: list[KeptChunk] = []
    ready_by_hash: dict[str, int] = {}
    unmatched: list[tuple[ChunkDraft, str]] = []
    for draft in drafts:
        meta_json = chunk_meta_json(draft)
        pool = pools.get(draft.content_hash)
        if not pool:
            unmatched.append((draft, meta_json))
            continue
        match = pool.pop(0)
        changed = (match.position, match.text, match.meta_json) != (
            draft.position,
            draft.text,
            meta_json,
        )
        kept.append(
            KeptChunk(
                chunk_id=match.chunk_id, draft=draft, meta_json=meta_json, needs_update=changed
            )
        )
        if match.status == _READY:
            ready_by_hash.setdefault(draft.content_hash, match.chunk_id)
    kept_ids = {chunk.chunk_id for chunk in kept}
    delete_ids = tuple(c.chunk_id for c in existing if c.chunk_id not in kept_ids)
    new = tuple(_new_chunk(d, m, vectors, ready_by_hash) for d, m in unmatched)
    return WritePlan(kept=tuple(kept), delete_ids=delete_ids, new=new)


def _new_chunk(
    draft: ChunkDraft, meta_json: str, vectors: Mapping[str, bytes], ready: Mapping[str, int]
) -> NewChunk:
    if not vectors and not ready:  # a new document in async mode: the common case
        return NewChunk(draft=draft, meta_json=meta_json, status=_PENDING)
    vector = vectors.get(draft.content_hash)
    if vector is not None:
        return NewChunk(draft=draft, meta_json=meta_json, status=_READY, vector=vector)
    source = ready.get(draft.content_hash)
    if source is not None:
        return NewChunk(draft=draft, meta_json=meta_json, status=_READY, copy_vector_of=source)
    return NewChunk(draft=draft, meta_json=meta_json, status=_PENDING)
