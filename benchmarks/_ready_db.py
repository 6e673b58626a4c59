"""A SQLite knowledge base of READY chunks, written by direct SQL (for benchmarks).

Building a large database through ``ingest`` and the batch pipeline would take longer
than the benchmarks that read it, so :func:`build_ready_database` lets the store create
its schema, then fills the tables itself in one transaction: documents of
``per_doc`` chunks each (metadata ``{"group": 0 or 1}``), chunks READY with the
given vectors, and optionally their keyword rows.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import sqlite_vec

from asemantic.adapters.sqlite import SqliteStore, select_driver
from asemantic.adapters.sqlite import keywords as sqlite_keywords
from asemantic.domain.keywords import index_terms
from asemantic.domain.space import EmbeddingSpace

__all__ = ["build_ready_database"]


def build_ready_database(
    path: Path,
    *,
    n: int,
    dims: int,
    blocks: Iterable[npt.NDArray[np.float32]],
    per_doc: int = 100,
    text: Callable[[int], str] | None = None,
    keywords: bool = False,
) -> float:
    """Write ``n`` READY chunks to a new database at ``path``; seconds taken.

    ``blocks`` yields the vectors in chunk order (any block sizes, ``n`` rows in all);
    ``text(i)`` is chunk ``i``'s text (default ``"chunk i"``); ``keywords`` also
    writes each chunk's keyword-index row.
    """
    start = time.perf_counter()

    async def schema() -> None:
        store = await SqliteStore.open(path, space=EmbeddingSpace(dimensions=dims))
        await store.aclose()

    asyncio.run(schema())
    conn = select_driver().module.connect(str(path), isolation_level=None)
    try:
        conn.enable_load_extension(True)
        sqlite_vec.load(conn)
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO documents (id, source, title, content_hash, metadata_json, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, '', '')",
            [
                (d, f"doc-{d}.md", f"Doc {d}", f"h{d}", json.dumps({"group": d % 2}))
                for d in range(1, math.ceil(n / per_doc) + 1)
            ],
        )
        lo = 1
        for block in blocks:
            ids = range(lo, lo + len(block))
            texts = [text(i) if text is not None else f"chunk {i}" for i in ids]
            conn.executemany(
                "INSERT INTO chunks (id, document_id, position, text, content_hash, "
                "embedding_status) VALUES (?, ?, ?, ?, ?, 'READY')",
                [
                    (i, (i - 1) // per_doc + 1, (i - 1) % per_doc, t, f"c{i}")
                    for i, t in zip(ids, texts, strict=True)
                ],
            )
            if keywords:
                conn.executemany(
                    f"INSERT INTO {sqlite_keywords.KEYWORD_TABLE} (rowid, terms) VALUES (?, ?)",
                    [(i, index_terms(t)) for i, t in zip(ids, texts, strict=True)],
                )
            conn.executemany(
                "INSERT INTO vec_chunks (rowid, embedding) VALUES (?, ?)",
                [(i, block[j].tobytes()) for j, i in enumerate(ids)],
            )
            lo += len(block)
        if lo != n + 1:
            raise ValueError(f"blocks gave {lo - 1} vectors for {n} chunks")
        conn.execute("COMMIT")
    finally:
        conn.close()
    return time.perf_counter() - start
