"""Document and chunk rows: snapshot reads, write planning and the write transaction.

What a document write does to the stored chunks is decided in pure code: the store reads
the document's stored chunks, asks :func:`plan_write` what to do, and then does it in
the same transaction. The rules are those of :class:`asemantic.ports.DocumentWrite`:

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

Decisions: :func:`dump_json` is the one canonical JSON dumper of the adapter (sorted
keys, no spaces, no NaN), used for metadata and filter values alike;
:func:`chunk_meta_json` builds the same text by hand for the per-chunk meta, because it
runs for every chunk written (a test checks both agree).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Any

import aiosqlite

from asemantic.domain.documents import ChunkDraft, EmbeddingStatus, JSONValue
from asemantic.errors import InvalidInputError
from asemantic.ports import DocumentSnapshot, DocumentWrite, StoredChunk, WriteOutcome

__all__ = [
    "ExistingChunk",
    "KeptChunk",
    "NewChunk",
    "SELECT_SNAPSHOT",
    "WritePlan",
    "chunk_meta_json",
    "delete",
    "plan_write",
    "snapshot_from_rows",
    "write",
]


SELECT_SNAPSHOT = (
    "SELECT d.id, d.source, d.content_hash, c.id, c.position, c.content_hash, "
    "c.embedding_status FROM documents d LEFT JOIN chunks c ON c.document_id = d.id "
    "WHERE d.source = ? ORDER BY c.position, c.id"
)

_UPSERT_DOCUMENT = (
    "INSERT INTO documents (source, title, content_hash, metadata_json, created_at, "
    "updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (source) DO UPDATE SET "
    "title = excluded.title, content_hash = excluded.content_hash, "
    "metadata_json = excluded.metadata_json, updated_at = excluded.updated_at"
)
_SELECT_EXISTING = (
    "SELECT d.id, (SELECT COALESCE(MAX(id), 0) FROM chunks), c.id, c.position, "
    "c.content_hash, c.embedding_status, c.text, c.meta_json "
    "FROM documents d LEFT JOIN chunks c ON c.document_id = d.id WHERE d.source = ?"
)
_INSERT_CHUNK = (
    "INSERT INTO chunks (id, document_id, position, text, meta_json, content_hash, "
    "embedding_status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPDATE_CHUNK = (
    "UPDATE chunks SET position = ?, text = ?, meta_json = ?, updated_at = ? WHERE id = ?"
)


def snapshot_from_rows(rows: Sequence[Sequence[Any]]) -> DocumentSnapshot | None:
    if not rows:
        return None
    document_id, source, content_hash = rows[0][:3]
    chunks = tuple(
        StoredChunk(
            chunk_id=int(row[3]),
            position=int(row[4]),
            content_hash=str(row[5]),
            status=EmbeddingStatus(row[6]),
        )
        for row in rows
        if row[3] is not None
    )
    return DocumentSnapshot(
        document_id=int(document_id),
        source=str(source),
        content_hash=str(content_hash),
        chunks=chunks,
    )


async def _upsert(
    conn: aiosqlite.Connection, write: DocumentWrite, *, metadata_json: str, now: str
) -> tuple[int, int, list[ExistingChunk]]:
    """Upsert the document row; return its id, the largest chunk id and its chunks."""
    document = write.document
    await conn.execute(
        _UPSERT_DOCUMENT,
        (document.source, document.title, write.content_hash, metadata_json, now, now),
    )
    rows = list(await conn.execute_fetchall(_SELECT_EXISTING, (document.source,)))
    document_id, max_id = int(rows[0][0]), int(rows[0][1])
    existing = [
        ExistingChunk(
            chunk_id=int(row[2]),
            position=int(row[3]),
            content_hash=str(row[4]),
            status=str(row[5]),
            text=str(row[6]),
            meta_json=str(row[7]),
        )
        for row in rows
        if row[2] is not None
    ]
    return document_id, max_id, existing


async def write(
    conn: aiosqlite.Connection, write: DocumentWrite, *, metadata_json: str, now: str
) -> WriteOutcome:
    """The body of a document write (inside ``BEGIN IMMEDIATE``)."""
    document_id, max_id, existing = await _upsert(conn, write, metadata_json=metadata_json, now=now)
    plan = plan_write(existing, write.drafts, write.vectors)
    await _apply(conn, plan, document_id=document_id, first_id=max_id + 1, now=now)
    return WriteOutcome(
        document_id=document_id,
        stored=len(plan.new),
        unchanged=len(plan.kept),
        removed=len(plan.delete_ids),
        pending=plan.pending,
    )


async def _apply(
    conn: aiosqlite.Connection, plan: WritePlan, *, document_id: int, first_id: int, now: str
) -> None:
    if plan.delete_ids:
        # The chunks_vec_delete trigger deletes their vectors.
        await conn.executemany("DELETE FROM chunks WHERE id = ?", [(i,) for i in plan.delete_ids])
    updates = plan.updates
    if updates:
        await conn.executemany(
            _UPDATE_CHUNK,
            [(c.draft.position, c.draft.text, c.meta_json, now, c.chunk_id) for c in updates],
        )
    if not plan.new:
        return
    # Ids are given explicitly (we hold the write lock) so vectors can follow at once.
    ids = range(first_id, first_id + len(plan.new))
    await conn.executemany(
        _INSERT_CHUNK,
        [
            (
                i,
                document_id,
                c.draft.position,
                c.draft.text,
                c.meta_json,
                c.draft.content_hash,
                c.status,
                now,
                now,
            )
            for i, c in zip(ids, plan.new, strict=True)
        ],
    )
    vectors = [(i, c.vector) for i, c in zip(ids, plan.new, strict=True) if c.vector is not None]
    if vectors:
        await conn.executemany("INSERT INTO vec_chunks (rowid, embedding) VALUES (?, ?)", vectors)
    copies = [
        (i, c.copy_vector_of)
        for i, c in zip(ids, plan.new, strict=True)
        if c.copy_vector_of is not None
    ]
    if copies:
        await conn.executemany(
            "INSERT INTO vec_chunks (rowid, embedding) "
            "SELECT ?, embedding FROM vec_chunks WHERE rowid = ?",
            copies,
        )


async def delete(conn: aiosqlite.Connection, source: str) -> bool:
    """Delete a document; chunks follow by cascade and vectors by trigger."""
    cursor = await conn.execute("DELETE FROM documents WHERE source = ?", (source,))
    return bool(cursor.rowcount and cursor.rowcount > 0)


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


def chunk_meta_json(draft: ChunkDraft) -> str:
    """The ``meta_json`` of a chunk: vector source, heading path and token estimate.

    Built by hand because it is made for every chunk written (json.dumps costs three
    times as much); it equals :func:`dump_json` of the same mapping (a test checks).
    """
    heading = ",".join(_string(part) for part in draft.heading_path)
    return (
        f'{{"_vector_source":{_string(draft.vector_source)},"heading_path":[{heading}],'
        f'"token_estimate":{int(draft.token_estimate)}}}'
    )


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
    vector = vectors.get(draft.content_hash)
    if vector is not None:
        return NewChunk(draft=draft, meta_json=meta_json, status=_READY, vector=vector)
    source = ready.get(draft.content_hash)
    if source is not None:
        return NewChunk(draft=draft, meta_json=meta_json, status=_READY, copy_vector_of=source)
    return NewChunk(draft=draft, meta_json=meta_json, status=_PENDING)
