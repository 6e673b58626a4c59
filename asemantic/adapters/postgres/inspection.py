"""Read-only views of a PostgreSQL knowledge base: stats, chunk records, vector rows
and usage totals, each one statement (one snapshot).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from asemantic.domain.documents import EmbeddingStatus
from asemantic.domain.jobs import JobStatus
from asemantic.ports import USAGE_ROUTES, ChunkRecord, StoreStats, UsageTotal

__all__ = ["chunk_records", "stats", "usage", "vector_rows"]

_CHUNK_RECORDS = (
    "SELECT c.id, c.document_id, d.source, d.title, c.position, c.content_hash, "
    "COALESCE(c.meta_json::jsonb ->> '_vector_source', c.text), c.embedding_status, "
    "c.batch_job_id, c.error_message, c.attempts FROM chunks c "
    "JOIN documents d ON d.id = c.document_id ORDER BY c.id"
)
_STATS = (
    "SELECT (SELECT count(*) FROM documents), "
    "(SELECT jsonb_object_agg(embedding_status, n)::text FROM "
    "(SELECT embedding_status, count(*) AS n FROM chunks GROUP BY embedding_status) s), "
    "(SELECT jsonb_object_agg(status, n)::text FROM "
    "(SELECT status, count(*) AS n FROM batch_jobs GROUP BY status) s), "
    "(SELECT jsonb_object_agg(route, n)::text FROM "
    "(SELECT route, sum(tokens) AS n FROM usage_ledger GROUP BY route) s)"
)


async def stats(conn: Any) -> StoreStats:
    documents, chunks, jobs, tokens = await conn.fetchrow(_STATS)
    return StoreStats(
        documents=int(documents),
        chunks=_counts(chunks, [status.value for status in EmbeddingStatus]),
        jobs=_counts(jobs, [status.value for status in JobStatus]),
        tokens=_counts(tokens, USAGE_ROUTES),
    )


async def chunk_records(conn: Any) -> list[ChunkRecord]:
    return [
        ChunkRecord(
            chunk_id=int(r[0]),
            document_id=int(r[1]),
            source=str(r[2]),
            title=None if r[3] is None else str(r[3]),
            position=int(r[4]),
            content_hash=str(r[5]),
            vector_source=str(r[6]),
            status=EmbeddingStatus(r[7]),
            job_id=None if r[8] is None else str(r[8]),
            error_message=None if r[9] is None else str(r[9]),
            attempts=int(r[10]),
        )
        for r in await conn.fetch(_CHUNK_RECORDS)
    ]


async def vector_rows(conn: Any) -> list[tuple[int, bytes]]:
    rows = await conn.fetch("SELECT chunk_id, embedding FROM chunk_vectors ORDER BY chunk_id")
    return [(int(chunk_id), bytes(blob)) for chunk_id, blob in rows]


async def usage(conn: Any) -> dict[str, UsageTotal]:
    rows = await conn.fetch(
        "SELECT route, sum(texts), sum(tokens) FROM usage_ledger GROUP BY route"
    )
    out = {route: UsageTotal() for route in USAGE_ROUTES}
    out.update({str(r): UsageTotal(texts=int(t or 0), tokens=int(k or 0)) for r, t, k in rows})
    return out


def _counts(encoded: str | None, keys: Sequence[str]) -> dict[str, int]:
    """A JSON object of counts, with every one of ``keys`` present (0 when absent)."""
    counts = dict.fromkeys(keys, 0)
    counts.update({str(k): int(v or 0) for k, v in json.loads(encoded or "{}").items()})
    return counts
