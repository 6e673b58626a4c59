"""SQLite store benchmarks, each next to a floor measured in the same run.

Run ``python -m benchmarks.bench_store`` (``--quick`` for a short run). It prints and
asserts nothing about speed; :func:`run` returns the rows for a ``python -m benchmarks``
runner: ``name``, ``figure``, ``unit``, ``baseline``, ``ratio`` (figure / baseline).
Store and floor runs are interleaved and medians reported.

1. Ingestion (async mode): ``write_document`` of documents whose chunks (~1 KB of text
   each) are all PENDING, one transaction per document, against the floor: stdlib
   ``sqlite3`` ``executemany`` of the same rows into a table of the same columns and
   indexes, in one transaction. Target: at least half the floor.
2. ``bulk_update_vectors`` in slices of 1,000 at 768 and 3,072 dimensions, against a
   plain ``(id INTEGER PRIMARY KEY, v BLOB)`` table filled by ``executemany``, and
   against the naive full job: the same blob inserts plus the ``UPDATE`` that marks
   the chunk rows READY (rows of ~2.3 KB, since ``meta_json`` repeats the vector source).
3. vec0 ``chunk_size`` x page cache: raw vec0 inserts, to check the store's choice
   (:func:`asemantic.adapters.sqlite.vec_chunk_size`, 16 MiB cache per connection).

Search has its own module, :mod:`benchmarks.bench_search` (sizes up to 1,000,000).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import sqlite3
import statistics
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_vec

from asemantic.adapters.planning import chunk_meta_json
from asemantic.adapters.sqlite import SqliteStore, select_driver, vec_chunk_size
from asemantic.adapters.sqlite.connection import DEFAULT_CACHE_KIB
from asemantic.adapters.sqlite.schema import TABLES
from asemantic.domain.documents import ChunkDraft, Document
from asemantic.domain.space import EmbeddingSpace
from asemantic.ports import DocumentWrite

__all__ = ["main", "run"]

Row = dict[str, Any]

_WORDS = [
    "vector",
    "search",
    "index",
    "cosine",
    "batch",
    "embedding",
    "document",
    "chunk",
    "store",
    "query",
    "latency",
    "sqlite",
    "journal",
    "page",
    "cache",
    "transaction",
    "commit",
    "rollback",
    "model",
    "dimension",
    "token",
    "text",
    "heading",
    "section",
    "paragraph",
    "result",
    "ranking",
    "filter",
    "metadata",
    "source",
    "title",
    "budget",
]


def _text(rng: random.Random, size: int = 1000) -> str:
    words: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(_WORDS)
        words.append(word)
        length += len(word) + 1
    return " ".join(words)[:size]


def make_documents(n_docs: int, per_doc: int, *, seed: int = 7) -> list[DocumentWrite]:
    rng = random.Random(seed)
    writes = []
    for d in range(n_docs):
        drafts = []
        for p in range(per_doc):
            text = _text(rng)
            source = f"Doc {d}\nSection {p // 10}\n\n{text}"
            drafts.append(
                ChunkDraft(
                    position=p,
                    text=text,
                    heading_path=(f"Section {p // 10}",),
                    vector_source=source,
                    content_hash=hashlib.sha256(source.encode()).hexdigest(),
                    token_estimate=len(text) // 4,
                )
            )
        document = Document(text="", source=f"doc-{d}", title=f"Doc {d}", metadata={"d": d})
        writes.append(DocumentWrite(document=document, content_hash=f"doc-hash-{d}", drafts=drafts))
    return writes


def _median_rate(count: int, runs: Sequence[float]) -> float:
    return count / statistics.median(runs)


def _stdlib(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(f"PRAGMA cache_size = -{DEFAULT_CACHE_KIB}")
    return conn


# --- 1. ingestion ---------------------------------------------------------------------


async def _store_ingest(path: Path, writes: Sequence[DocumentWrite]) -> float:
    store = await SqliteStore.open(path, space=EmbeddingSpace())
    try:
        start = time.perf_counter()
        for write in writes:
            await store.write_document(write)
        return time.perf_counter() - start
    finally:
        await store.aclose()


def _chunk_table(conn: sqlite3.Connection) -> None:
    """The store's chunks table (same columns and indexes), without the foreign keys."""
    chunks = next(t for t in TABLES if t.name == "chunks")
    sql = chunks.create_sql()
    for clause in (
        " REFERENCES documents(id) ON DELETE CASCADE",
        " REFERENCES batch_jobs(id) ON DELETE SET NULL",
    ):
        sql = sql.replace(clause, "")
    conn.execute(sql)
    conn.execute("CREATE INDEX a ON chunks (document_id, position)")
    conn.execute("CREATE INDEX b ON chunks (embedding_status, batch_job_id)")


def _chunk_rows(writes: Sequence[DocumentWrite]) -> list[tuple[object, ...]]:
    now = "2025-01-01T00:00:00.000000+00:00"
    return [
        (d + 1, c.position, c.text, chunk_meta_json(c), c.content_hash, "PENDING", now, now)
        for d, write in enumerate(writes)
        for c in write.drafts
    ]


_INSERT_ROWS = (
    "INSERT INTO chunks (document_id, position, text, meta_json, content_hash, "
    "embedding_status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def _floor_ingest(path: Path, writes: Sequence[DocumentWrite]) -> float:
    conn = _stdlib(path)
    _chunk_table(conn)
    rows = _chunk_rows(writes)
    start = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany(_INSERT_ROWS, rows)
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def bench_ingest(workdir: Path, *, quick: bool) -> Row:
    n_docs, per_doc, repeats = (20, 50, 3) if quick else (100, 100, 5)
    writes = make_documents(n_docs, per_doc)
    total = n_docs * per_doc
    store_runs, floor_runs = [], []
    for r in range(repeats):  # interleaved, so both see the same machine load
        store_runs.append(asyncio.run(_store_ingest(workdir / f"ingest-{r}.db", writes)))
        floor_runs.append(_floor_ingest(workdir / f"floor-{r}.db", writes))
    figure, baseline = _median_rate(total, store_runs), _median_rate(total, floor_runs)
    return _row(f"ingest {total} PENDING chunks: write_document vs executemany", figure, baseline)


# --- 2. bulk_update_vectors -----------------------------------------------------------

_SLICE = 1000


def _slices(n: int) -> list[range]:
    return [range(lo, min(n, lo + _SLICE)) for lo in range(0, n, _SLICE)]


async def _store_vectors(path: Path, dims: int, vectors: np.ndarray[Any, Any]) -> float:
    n = len(vectors)
    writes = make_documents(max(1, n // 100), 100, seed=dims)
    store = await SqliteStore.open(path, space=EmbeddingSpace(dimensions=dims))
    try:
        for write in writes:
            await store.write_document(write)
        start = time.perf_counter()
        for part in _slices(n):
            await store.bulk_update_vectors({i + 1: vectors[i].tobytes() for i in part})
        return time.perf_counter() - start
    finally:
        await store.aclose()


def _floor_vectors(path: Path, vectors: np.ndarray[Any, Any], *, mark_ready: bool) -> float:
    """Blob rows by executemany; with ``mark_ready`` also the naive chunk UPDATE."""
    conn = _stdlib(path)
    conn.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, v BLOB NOT NULL)")
    n = len(vectors)
    if mark_ready:
        _chunk_table(conn)
        conn.execute("BEGIN")
        conn.executemany(_INSERT_ROWS, _chunk_rows(make_documents(max(1, n // 100), 100)))
        conn.execute("COMMIT")
    start = time.perf_counter()
    for part in _slices(n):
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO blobs (id, v) VALUES (?, ?)", [(i + 1, vectors[i].tobytes()) for i in part]
        )
        if mark_ready:
            conn.executemany(
                "UPDATE chunks SET embedding_status = 'READY', error_message = NULL, "
                "updated_at = 'now' WHERE id = ?",
                [(i + 1,) for i in part],
            )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def bench_vectors(workdir: Path, dims: int, *, quick: bool) -> list[Row]:
    n, repeats = (2000, 3) if quick else (10_000, 5)
    vectors = np.random.default_rng(dims).standard_normal((n, dims)).astype("<f4")
    runs: dict[str, list[float]] = {"store": [], "blob": [], "blob+update": []}
    for r in range(repeats):
        runs["store"].append(
            asyncio.run(_store_vectors(workdir / f"v{dims}-{r}.db", dims, vectors))
        )
        runs["blob"].append(_floor_vectors(workdir / f"b{dims}-{r}.db", vectors, mark_ready=False))
        runs["blob+update"].append(
            _floor_vectors(workdir / f"u{dims}-{r}.db", vectors, mark_ready=True)
        )
    store, blob, naive = (_median_rate(n, runs[k]) for k in ("store", "blob", "blob+update"))
    return [
        _row(f"bulk_update_vectors {n} x {dims}d vs blob-table executemany", store, blob),
        _row(f"bulk_update_vectors {n} x {dims}d vs blob + chunk UPDATE", store, naive),
    ]


# --- 3. vec0 chunk_size x page cache --------------------------------------------------

DEFAULT_VEC0_CHUNK_SIZE = 1024
DEFAULT_SQLITE_CACHE_KIB = 2000


def _raw_vec0(path: Path, dims: int, chunk_size: int, cache_kib: int, vectors: Any) -> float:
    driver = select_driver()
    conn = driver.module.connect(str(path), isolation_level=None)
    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    conn.enable_load_extension(False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(f"PRAGMA cache_size = -{cache_kib}")
    conn.execute(
        f"CREATE VIRTUAL TABLE v USING vec0(embedding float[{dims}] "
        f"distance_metric=cosine, chunk_size={chunk_size})"
    )
    start = time.perf_counter()
    for part in _slices(len(vectors)):
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO v (rowid, embedding) VALUES (?, ?)",
            [(i + 1, vectors[i].tobytes()) for i in part],
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return float(elapsed)


def chunk_size_name(dims: int, chunk_size: int, cache_kib: int) -> str:
    return f"vec0 insert {dims}d chunk_size={chunk_size} cache={cache_kib}KiB vs blob table"


def bench_chunk_sizes(workdir: Path, dims: int, *, quick: bool) -> list[Row]:
    n, repeats = (2000, 1) if quick else (6000, 3)
    vectors = np.random.default_rng(dims).standard_normal((n, dims)).astype("<f4")
    chosen = vec_chunk_size(dims)
    configs = [
        (size, cache)
        for size in sorted({DEFAULT_VEC0_CHUNK_SIZE, 256, 64, chosen})
        for cache in (DEFAULT_SQLITE_CACHE_KIB, DEFAULT_CACHE_KIB)
    ]
    runs: dict[tuple[int, int], list[float]] = {config: [] for config in configs}
    blob_runs = []
    for r in range(repeats):
        blob_runs.append(_floor_vectors(workdir / f"cs-b{dims}-{r}.db", vectors, mark_ready=False))
        for size, cache in configs:
            path = workdir / f"cs-{dims}-{size}-{cache}-{r}.db"
            runs[size, cache].append(_raw_vec0(path, dims, size, cache, vectors))
    baseline = _median_rate(n, blob_runs)
    return [
        _row(chunk_size_name(dims, size, cache), _median_rate(n, runs[size, cache]), baseline)
        for size, cache in configs
    ]


def explain_choice(rows: Sequence[Row], dims: int) -> str:
    """What the store uses at ``dims``, measured against vec0's defaults."""
    figures = {row["name"]: float(row["figure"]) for row in rows}
    chosen = vec_chunk_size(dims)
    ours = figures.get(chunk_size_name(dims, chosen, DEFAULT_CACHE_KIB))
    default = figures.get(chunk_size_name(dims, DEFAULT_VEC0_CHUNK_SIZE, DEFAULT_SQLITE_CACHE_KIB))
    candidates = {k: v for k, v in figures.items() if k.startswith(f"vec0 insert {dims}d ")}
    if ours is None or default is None or not candidates:
        return ""
    best = max(candidates, key=lambda k: candidates[k])
    return (
        f"{dims}d: the store uses chunk_size={chosen} (a {chosen * dims * 4 // 1024} KiB "
        f"vector blob) with a {DEFAULT_CACHE_KIB // 1024} MiB page cache: {ours:,.0f}/s, "
        f"against {default:,.0f}/s with vec0's default chunk_size="
        f"{DEFAULT_VEC0_CHUNK_SIZE} and SQLite's default 2 MB cache "
        f"({ours / default:.1f}x). Fastest here: {best.split(' vs ')[0]} "
        f"({candidates[best]:,.0f}/s). Why: each insert rewrites part of a "
        "chunk_size x dims x 4-byte blob; once that blob outgrows the page cache, every "
        "insert reads and writes it from disk. Blobs of at most 1 MiB stay cached; "
        "smaller ones gain little more, and KNN speed hardly depends on chunk_size."
    )


# --- running --------------------------------------------------------------------------


def _row(name: str, figure: float, baseline: float, unit: str = "rows/s") -> Row:
    return {
        "name": name,
        "figure": round(figure, 1),
        "unit": unit,
        "baseline": round(baseline, 1),
        "ratio": round(figure / baseline, 3) if baseline else float("nan"),
    }


def run(quick: bool) -> list[Row]:
    """Every benchmark of this module; rows as the module docstring says."""
    with tempfile.TemporaryDirectory(prefix="asemantic-bench-") as tmp:
        workdir = Path(tmp)
        steps: list[Callable[[], list[Row]]] = [
            lambda: [bench_ingest(workdir, quick=quick)],
            lambda: bench_vectors(workdir, 768, quick=quick),
            lambda: bench_vectors(workdir, 3072, quick=quick),
            lambda: bench_chunk_sizes(workdir, 768, quick=quick),
            lambda: bench_chunk_sizes(workdir, 3072, quick=quick),
        ]
        rows: list[Row] = []
        for step in steps:
            rows.extend(step())
        return rows


def print_rows(rows: Sequence[Row]) -> None:
    width = max(len(row["name"]) for row in rows)
    print(f"{'benchmark':<{width}}  {'figure':>10}  {'baseline':>10}  {'ratio':>6}  unit")
    for row in rows:
        print(
            f"{row['name']:<{width}}  {row['figure']:>10,.0f}  {row['baseline']:>10,.0f}  "
            f"{row['ratio']:>6.2f}  {row['unit']}"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="smaller, faster run")
    args = parser.parse_args(argv)
    rows = run(args.quick)
    print_rows(rows)
    print("\nmedians of interleaved repeats; figures move with the machine's load")
    for dims in (768, 3072):
        text = explain_choice(rows, dims)
        if text:
            print("\n" + textwrap.fill(text, width=100))


if __name__ == "__main__":
    main()
