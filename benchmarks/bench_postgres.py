"""PostgreSQL store benchmarks, each next to a baseline measured in the same run.

Run ``python -m benchmarks.bench_postgres`` (``--rows N``, default 100,000 x 768;
``--quick`` for 3,000). It starts an embedded PostgreSQL 18 + pgvector 0.8 (or uses
``$ASEMANTIC_TEST_POSTGRES_URL``) and builds the same corpus in a :class:`PostgresStore`
and a :class:`SqliteStore`: documents of 10 chunks (~300 bytes of text each) whose
metadata ``group`` is the document number modulo 100, so ``group = 0`` keeps 1% of the
documents. Vectors are clustered (64 random centres plus noise, unit length), as
embeddings of real text are; queries are perturbed copies of stored vectors.

Figures, each with its baseline:

* ingest (async mode: every chunk PENDING), one ``write_document`` transaction per
  document: rows/s against the SQLite store;
* ``bulk_update_vectors`` (binary COPY into a temporary table, then one UPDATE + upsert)
  in slices of 10,000 without the index: vectors/s against the SQLite store, and against
  the same calls with the HNSW index in place (each insert then walks the graph);
* HNSW build over every vector (``maintenance_work_mem = 1GB``): seconds against the
  incremental inserts' time per vector times the row count;
* search k=10 p50/p95 (the store's plan: HNSW above 2,000 candidates) against pgvector's
  exact scan and the SQLite store; recall@10 against an exact NumPy scan, unfiltered and
  with the 1% filter (through the store's plan, an exact scan at this selectivity, and
  forced through the index with an iterative scan).

Nothing here asserts on speed.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from asemantic.adapters.postgres import search as search_sql
from asemantic.adapters.postgres.store import PostgresStore
from asemantic.adapters.sqlite import SqliteStore
from asemantic.domain.documents import ChunkDraft, Document
from asemantic.domain.space import EmbeddingSpace
from asemantic.ports import DocumentWrite, SearchFilters, Store
from asemantic.testing.postgres import LocalPostgres
from benchmarks._common import Row, print_rows, quiet, row

__all__ = ["main", "run"]

_PER_DOC = 10
_K = 10
_SLICE = 10_000
_FILTER = SearchFilters(metadata={"group": 0})
Vectors = npt.NDArray[np.float32]


def _corpus(rows: int, dims: int) -> tuple[list[DocumentWrite], Vectors]:
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((64, dims), dtype=np.float32)
    vectors = centres[rng.integers(0, 64, rows)] + 0.6 * rng.standard_normal(
        (rows, dims), dtype=np.float32
    )
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    writes = []
    for d in range(0, rows, _PER_DOC):
        drafts = []
        for i in range(d, min(rows, d + _PER_DOC)):
            text = f"chunk {i} of document {d // _PER_DOC}: " + "lorem ipsum dolor " * 16
            digest = hashlib.sha256(text.encode()).hexdigest()
            drafts.append(
                ChunkDraft(
                    position=i - d,
                    text=text,
                    heading_path=(),
                    vector_source=text,
                    content_hash=digest,
                    token_estimate=len(text) // 4,
                )
            )
        document = Document(
            text="\n".join(c.text for c in drafts),
            source=f"doc{d // _PER_DOC}.md",
            metadata={"group": (d // _PER_DOC) % 100},
        )
        digest = hashlib.sha256(document.text.encode()).hexdigest()
        writes.append(DocumentWrite(document=document, content_hash=digest, drafts=drafts))
    return writes, vectors.astype("<f4")


async def _ingest(store: Store, writes: Sequence[DocumentWrite]) -> tuple[float, list[int]]:
    start = time.perf_counter()
    for write in writes:
        await store.write_document(write)
    elapsed = time.perf_counter() - start
    ids: list[int] = []
    for write in writes:
        snapshot = await store.get_document(write.document.source)
        assert snapshot is not None
        ids.extend(c.chunk_id for c in snapshot.chunks)
    return elapsed, ids


async def _apply(store: Store, ids: Sequence[int], vectors: Vectors, lo: int, hi: int) -> float:
    start = time.perf_counter()
    for s in range(lo, hi, _SLICE):
        e = min(hi, s + _SLICE)
        await store.bulk_update_vectors({ids[i]: vectors[i].tobytes() for i in range(s, e)})
    return time.perf_counter() - start


def _truth(vectors: Vectors, query: Vectors, allowed: npt.NDArray[np.bool_] | None) -> set[int]:
    scores = vectors @ query
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
    return {int(i) for i in np.argsort(-scores)[:_K]}


async def _searches(
    search: Callable[[bytes], Awaitable[list[int]]],
    queries: Vectors,
    truths: Sequence[set[int]],
    positions: dict[int, int],
) -> tuple[float, float, float]:
    """p50 and p95 in ms, and recall@10 (chunk ids mapped to corpus rows)."""
    times, found = [], 0
    for query, truth in zip(queries, truths, strict=True):
        start = time.perf_counter()
        hits = await search(query.tobytes())
        times.append((time.perf_counter() - start) * 1000)
        found += len({positions[h] for h in hits} & truth)
    times.sort()
    p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
    return statistics.median(times), p95, found / (_K * len(queries))


def _store_search(
    store: Store, filters: SearchFilters | None
) -> Callable[[bytes], Awaitable[list[int]]]:
    async def search(query: bytes) -> list[int]:
        return [h.chunk_id for h in await store.search(query, k=_K, filters=filters)]

    return search


def _exact_search(store: PostgresStore) -> Callable[[bytes], Awaitable[list[int]]]:
    sql, _ = search_sql.exact_sql(None)

    async def search(query: bytes) -> list[int]:
        async with store.transaction(readonly=True) as conn:
            return [int(r[0]) for r in await conn.fetch(sql, query, _K)]

    return search


async def _measure(url: str, directory: Path, rows: int, dims: int, n_queries: int) -> list[Row]:
    space = EmbeddingSpace(dimensions=dims)
    writes, vectors = _corpus(rows, dims)
    rng = np.random.default_rng(11)
    picks = rng.integers(0, rows, n_queries)
    queries = vectors[picks] + 0.3 * rng.standard_normal((n_queries, dims), dtype=np.float32)
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype("<f4")
    allowed = np.array([(i // _PER_DOC) % 100 == 0 for i in range(rows)])
    plain = [_truth(vectors, q, None) for q in queries]
    narrow = [_truth(vectors, q, allowed) for q in queries]
    out: list[Row] = []
    pg = await PostgresStore.open(url, space=space)
    lite = await SqliteStore.open(directory / "kb.db", space=space)
    try:
        pg_ingest, pg_ids = await _ingest(pg, writes)
        lite_ingest, lite_ids = await _ingest(lite, writes)
        out.append(
            row(
                "postgres ingest (PENDING chunks)",
                rows / pg_ingest,
                "rows/s",
                baseline="sqlite store, same documents",
                baseline_figure=rows / lite_ingest,
            )
        )
        incremental = min(rows // 10, 2_000)
        t_inc = await _apply(pg, pg_ids, vectors, 0, incremental)
        await pg.drop_vector_index()
        t_copy = await _apply(pg, pg_ids, vectors, incremental, rows)
        t_lite = await _apply(lite, lite_ids, vectors, 0, rows)
        rest = rows - incremental
        out.append(
            row(
                "postgres bulk_update_vectors (COPY, no index)",
                rest / t_copy,
                "vec/s",
                baseline="sqlite store bulk_update_vectors",
                baseline_figure=rows / t_lite,
            )
        )
        out.append(
            row(
                "postgres bulk_update_vectors with HNSW in place",
                incremental / t_inc,
                "vec/s",
                baseline="COPY without the index",
                baseline_figure=rest / t_copy,
            )
        )
        start = time.perf_counter()
        await pg.create_vector_index(maintenance_work_mem="1GB")
        build = time.perf_counter() - start
        out.append(
            row(
                f"postgres HNSW build ({rows:,} x {dims})",
                build,
                "s",
                baseline="incremental inserts, extrapolated",
                baseline_figure=t_inc / incremental * rows,
            )
        )
        async with pg.transaction() as conn:
            await conn.execute("ANALYZE")
        positions = {chunk_id: i for i, chunk_id in enumerate(pg_ids)}
        lite_positions = {chunk_id: i for i, chunk_id in enumerate(lite_ids)}
        exact = await _searches(_exact_search(pg), queries, plain, positions)
        hnsw = await _searches(_store_search(pg, None), queries, plain, positions)
        sqlite = await _searches(_store_search(lite, None), queries, plain, lite_positions)
        out.append(
            row(
                "postgres search p50 (store plan: HNSW)",
                hnsw[0],
                "ms",
                baseline="pgvector exact scan p50",
                baseline_figure=exact[0],
            )
        )
        out.append(
            row(
                "postgres search p95 (store plan: HNSW)",
                hnsw[1],
                "ms",
                baseline="pgvector exact scan p95",
                baseline_figure=exact[1],
            )
        )
        out.append(
            row(
                "postgres search p50 vs sqlite",
                hnsw[0],
                "ms",
                baseline="sqlite store search p50 (exact, in memory)",
                baseline_figure=sqlite[0],
            )
        )
        out.append(
            row(
                "postgres recall@10 unfiltered",
                hnsw[2],
                "",
                baseline="exact NumPy scan",
                baseline_figure=1.0,
                target=">= 0.95",
                met=hnsw[2] >= 0.95,
            )
        )
        filtered = await _searches(_store_search(pg, _FILTER), queries, narrow, positions)
        forced_store = PostgresStore(
            url=url, pool=pg.pool, space=space, database_id=pg.database_id, exact_limit=0
        )
        forced = await _searches(_store_search(forced_store, _FILTER), queries, narrow, positions)
        lite_f = await _searches(_store_search(lite, _FILTER), queries, narrow, lite_positions)
        out.append(
            row(
                "postgres filtered 1% p50 (store plan)",
                filtered[0],
                "ms",
                baseline="sqlite store filtered p50",
                baseline_figure=lite_f[0],
            )
        )
        out.append(
            row(
                "postgres filtered 1% recall@10 (store plan)",
                filtered[2],
                "",
                baseline="exact NumPy scan",
                baseline_figure=1.0,
                target=">= 0.95",
                met=filtered[2] >= 0.95,
            )
        )
        out.append(
            row(
                "postgres filtered 1% p50 forced through HNSW",
                forced[0],
                "ms",
                baseline="store plan p50",
                baseline_figure=filtered[0],
            )
        )
        out.append(
            row(
                "postgres filtered 1% recall@10 forced through HNSW",
                forced[2],
                "",
                baseline="exact NumPy scan",
                baseline_figure=1.0,
                target=">= 0.95",
                met=forced[2] >= 0.95,
            )
        )
    finally:
        await pg.aclose()
        await lite.aclose()
    return out


async def _run(rows: int, dims: int, n_queries: int) -> list[Row]:
    server = await asyncio.to_thread(LocalPostgres.start)
    try:
        url = await server.create_database("asemantic_bench")
        try:
            with tempfile.TemporaryDirectory(prefix="asemantic-pgbench-") as tmp:
                return await _measure(url, Path(tmp), rows, dims, n_queries)
        finally:
            await server.drop_database(url)
    finally:
        server.stop()


def run(
    quick: bool, *, rows: int | None = None, dims: int = 768, queries: int | None = None
) -> list[Row]:
    """The rows (quick: 3,000 x 768 and 10 queries; else ``rows``, default 100,000)."""
    n = rows if rows is not None else (3_000 if quick else 100_000)
    q = queries if queries is not None else (10 if quick else 100)
    with quiet():
        return asyncio.run(_run(n, dims, q))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="PostgreSQL store benchmark")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--dims", type=int, default=768)
    parser.add_argument("--queries", type=int, default=None)
    args = parser.parse_args(argv)
    rows = run(args.quick, rows=args.rows, dims=args.dims, queries=args.queries)
    print_rows(rows)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
