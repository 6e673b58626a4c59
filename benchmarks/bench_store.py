"""SQLite store benchmarks, each next to a floor measured in the same run.

Run ``python -m benchmarks.bench_store`` (``--quick`` for a short run). It prints and
asserts nothing about speed; :func:`run` returns the rows for a ``python -m benchmarks``
runner: ``name``, ``figure``, ``unit``, ``baseline``, ``ratio`` (figure / baseline).

1. Ingestion (async mode): ``write_document`` of documents whose chunks (~1 KB of text
   each) are all PENDING, one transaction per document, against the floor: stdlib
   ``sqlite3`` ``executemany`` of the same rows into a table of the same columns and
   indexes, in one transaction. Target: at least half the floor.
2. ``bulk_update_vectors`` in slices of 1,000 at 768 and 3,072 dimensions, against a
   plain ``(id INTEGER PRIMARY KEY, v BLOB)`` table filled by ``executemany``.
3. vec0 ``chunk_size`` x page cache: raw vec0 inserts, to check the store's choice
   (:func:`asemantic.adapters.sqlite.vec_chunk_size`, 16 MiB cache per connection).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_vec

from asemantic.adapters.sqlite import SqliteStore, select_driver, vec_chunk_size
from asemantic.adapters.sqlite.driver import DEFAULT_CACHE_KIB
from asemantic.adapters.sqlite.schema import TABLES
from asemantic.adapters.sqlite.writeplan import chunk_meta_json
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


def _floor_ingest(path: Path, writes: Sequence[DocumentWrite]) -> float:
    chunks = next(t for t in TABLES if t.name == "chunks")
    conn = _stdlib(path)
    conn.execute(chunks.create_sql().replace("REFERENCES documents(id) ON DELETE CASCADE", ""))
    conn.execute("CREATE INDEX a ON chunks (document_id, position)")
    conn.execute("CREATE INDEX b ON chunks (embedding_status, batch_job_id)")
    now = "2025-01-01T00:00:00.000000+00:00"
    rows = [
        (d + 1, c.position, c.text, chunk_meta_json(c), c.content_hash, "PENDING", now, now)
        for d, write in enumerate(writes)
        for c in write.drafts
    ]
    start = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO chunks (document_id, position, text, meta_json, content_hash, "
        "embedding_status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def bench_ingest(workdir: Path, *, quick: bool) -> Row:
    n_docs, per_doc, repeats = (20, 50, 2) if quick else (100, 100, 3)
    writes = make_documents(n_docs, per_doc)
    total = n_docs * per_doc
    store_runs, floor_runs = [], []
    for r in range(repeats):
        store_runs.append(asyncio.run(_store_ingest(workdir / f"ingest-{r}.db", writes)))
        floor_runs.append(_floor_ingest(workdir / f"floor-{r}.db", writes))
    figure, baseline = _median_rate(total, store_runs), _median_rate(total, floor_runs)
    return _row(f"ingest {total} PENDING chunks (write_document)", figure, baseline)


# --- 2. bulk_update_vectors -----------------------------------------------------------


async def _store_vectors(path: Path, dims: int, vectors: np.ndarray[Any, Any]) -> float:
    n = len(vectors)
    writes = make_documents(max(1, n // 100), 100, seed=dims)
    store = await SqliteStore.open(path, space=EmbeddingSpace(dimensions=dims))
    try:
        for write in writes:
            await store.write_document(write)
        start = time.perf_counter()
        for lo in range(0, n, 1000):
            await store.bulk_update_vectors(
                {i + 1: vectors[i].tobytes() for i in range(lo, min(n, lo + 1000))}
            )
        return time.perf_counter() - start
    finally:
        await store.aclose()


def _floor_vectors(path: Path, vectors: np.ndarray[Any, Any]) -> float:
    conn = _stdlib(path)
    conn.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, v BLOB NOT NULL)")
    n = len(vectors)
    start = time.perf_counter()
    for lo in range(0, n, 1000):
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO blobs (id, v) VALUES (?, ?)",
            [(i + 1, vectors[i].tobytes()) for i in range(lo, min(n, lo + 1000))],
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def bench_vectors(workdir: Path, dims: int, *, quick: bool) -> Row:
    n, repeats = (2000, 2) if quick else (10_000, 3)
    vectors = np.random.default_rng(dims).standard_normal((n, dims)).astype("<f4")
    store_runs, floor_runs = [], []
    for r in range(repeats):
        path = workdir / f"vec-{dims}-{r}.db"
        store_runs.append(asyncio.run(_store_vectors(path, dims, vectors)))
        floor_runs.append(_floor_vectors(workdir / f"blob-{dims}-{r}.db", vectors))
    figure, baseline = _median_rate(n, store_runs), _median_rate(n, floor_runs)
    return _row(f"bulk_update_vectors {n} x {dims}d", figure, baseline)


# --- 3. vec0 chunk_size x page cache --------------------------------------------------


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
    n = len(vectors)
    start = time.perf_counter()
    for lo in range(0, n, 1000):
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO v (rowid, embedding) VALUES (?, ?)",
            [(i + 1, vectors[i].tobytes()) for i in range(lo, min(n, lo + 1000))],
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return float(elapsed)


def bench_chunk_sizes(workdir: Path, dims: int, *, quick: bool) -> list[Row]:
    n = 2000 if quick else 6000
    vectors = np.random.default_rng(dims).standard_normal((n, dims)).astype("<f4")
    baseline = _median_rate(n, [_floor_vectors(workdir / f"cs-blob-{dims}.db", vectors)])
    chosen = vec_chunk_size(dims)
    sizes = sorted({1024, 256, 64, chosen})
    rows = []
    for chunk_size in sizes:
        for cache_kib in (2000, DEFAULT_CACHE_KIB):
            path = workdir / f"cs-{dims}-{chunk_size}-{cache_kib}.db"
            elapsed = _raw_vec0(path, dims, chunk_size, cache_kib, vectors)
            mark = " (store)" if chunk_size == chosen and cache_kib == DEFAULT_CACHE_KIB else ""
            name = f"vec0 insert {dims}d chunk_size={chunk_size} cache={cache_kib}KiB{mark}"
            rows.append(_row(name, n / elapsed, baseline))
    return rows


# --- running --------------------------------------------------------------------------


def _row(name: str, figure: float, baseline: float) -> Row:
    return {
        "name": name,
        "figure": round(figure, 1),
        "unit": "rows/s",
        "baseline": round(baseline, 1),
        "ratio": round(figure / baseline, 3) if baseline else float("nan"),
    }


def run(quick: bool) -> list[Row]:
    """Every benchmark of this module; rows as the module docstring says."""
    with tempfile.TemporaryDirectory(prefix="asemantic-bench-") as tmp:
        workdir = Path(tmp)
        steps: list[Callable[[], list[Row]]] = [
            lambda: [bench_ingest(workdir, quick=quick)],
            lambda: [bench_vectors(workdir, 768, quick=quick)],
            lambda: [bench_vectors(workdir, 3072, quick=quick)],
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
    print_rows(run(args.quick))


if __name__ == "__main__":
    main()
