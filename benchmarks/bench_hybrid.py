"""Hybrid search cost, and what the keyword index costs asynchronous ingestion (SQLite).

Search: a database of ``N`` READY chunks (100 per document), each ~80 words drawn
from a Zipf-distributed vocabulary of 20,000 made-up words (common words are in most
chunks, as in real text, so keyword queries meet long posting lists) plus one
identifier (``ERR_<n>`` / ``module.func_<n>``), with random 768-dimensional vectors. It
is built by direct SQL through the store's schema, the FTS5 rows from the same
tokenizer the store uses. Then, in one process, through :meth:`SemanticCore.search`
with an embedder that hands back a ready vector (so the query embedding, the same for
both modes, is left out): ``mode="vector"`` and ``mode="hybrid"`` p50/p95 over the same
queries (three words each, one in four an identifier), interleaved query by query so
machine noise falls on both alike; ``mode="keyword"`` too. Target: hybrid p50 within
1.5x of vector p50.

Ingestion: the same documents (``mode="async"``: chunks stored PENDING, nothing
embedded) into fresh files with the keyword index written and with its writes switched
off (a benchmark-only switch, :data:`asemantic.adapters.sqlite.keywords._WRITES_ENABLED`,
the triggers of the in-memory index's change log dropped, and no keyword terms worked
out for the drafts), alternated three times each; medians of chunks per second.
Target: the index costs at most 20% of the throughput.

``python -m benchmarks.bench_hybrid`` runs it alone (``--quick`` for small sizes).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from asemantic import CoreConfig, GoogleKeyring, SemanticCore
from asemantic.adapters.sqlite import SqliteStore
from asemantic.adapters.sqlite import keywords as sqlite_keywords
from asemantic.domain import context as context_module
from asemantic.domain.keywords import index_tokens
from asemantic.domain.space import EmbeddingSpace
from asemantic.ports import EmbedRequest
from asemantic.testing import LexicalEmbedder
from benchmarks._common import Row, print_rows, quiet, row
from benchmarks._ready_db import build_ready_database

__all__ = ["run"]

_PER_DOC = 100
_K = 10
_DIMS = 768
_VOCABULARY = 20_000
_WORDS = 80
_SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "da", "pe", "gu"]


def _vocabulary(rng: np.random.Generator) -> list[str]:
    words: set[str] = set()
    while len(words) < _VOCABULARY:
        count = int(rng.integers(2, 5))
        words.add("".join(_SYLLABLES[int(i)] for i in rng.integers(0, len(_SYLLABLES), count)))
    return sorted(words)


def _identifier(i: int) -> str:
    return f"ERR_{i}" if i % 2 else f"module.func_{i}"


class _Corpus:
    """Chunk texts and query words, the same for a given seed."""

    def __init__(self, seed: int = 5) -> None:
        self.rng = np.random.default_rng(seed)
        self.words = _vocabulary(self.rng)

    def _draw(self, count: int) -> list[str]:
        ranks = np.minimum(self.rng.zipf(1.15, count), _VOCABULARY) - 1
        return [self.words[int(r)] for r in ranks]

    def text(self, i: int) -> str:
        words = self._draw(_WORDS)
        words.insert(int(self.rng.integers(0, _WORDS)), _identifier(i))
        return " ".join(words) + "."

    def query(self, j: int, n: int) -> str:
        if j % 4 == 0:
            return _identifier(int(self.rng.integers(1, n + 1)))
        return " ".join(self._draw(3))


class _ReadyEmbedder(LexicalEmbedder):
    """Queries come back as a random vector at once (the embedding is not measured)."""

    def __init__(self, space: EmbeddingSpace) -> None:
        super().__init__(space)
        self._rng = np.random.default_rng(99)

    async def embed_query(self, text: str) -> bytes:
        return self._rng.standard_normal(self.space.dimensions, dtype=np.float32).tobytes()

    async def embed_documents(self, requests: Sequence[EmbedRequest]) -> list[bytes]:
        return [await self.embed_query(r.text) for r in requests]


def build(path: Path, n: int, corpus: _Corpus) -> float:
    """A database of ``n`` READY chunks with texts, keyword rows and vectors."""
    return build_ready_database(
        path,
        n=n,
        dims=_DIMS,
        blocks=_random_blocks(n),
        per_doc=_PER_DOC,
        text=corpus.text,
        keywords=True,
    )


def _random_blocks(n: int, step: int = 10_000) -> Iterator[npt.NDArray[np.float32]]:
    rng = np.random.default_rng(11)
    for lo in range(0, n, step):
        yield rng.standard_normal((min(step, n - lo), _DIMS), dtype=np.float32)


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _search(path: Path, queries: Sequence[str]) -> dict[str, list[float]]:
    space = EmbeddingSpace(dimensions=_DIMS)
    times: dict[str, list[float]] = {"vector": [], "hybrid": [], "keyword": []}
    async with SemanticCore.open(
        path, embedder=_ReadyEmbedder(space), config=CoreConfig(space=space)
    ) as core:
        await core.search(queries[0], k=_K, mode="hybrid")  # loads the vector index
        store = core.store
        assert isinstance(store, SqliteStore)
        assert await store.load_keyword_index()
        for query in queries:
            for mode in ("vector", "hybrid", "keyword"):
                start = time.perf_counter()
                hits = await core.search(query, k=_K, mode=mode)
                times[mode].append(time.perf_counter() - start)
                assert hits or mode == "keyword"
    return times


async def _ingest(folder: Path, docs: Sequence[str], *, index: bool, label: str) -> float:
    """Chunks per second of async ingestion of ``docs`` into a fresh file."""
    space = EmbeddingSpace(dimensions=_DIMS)
    sqlite_keywords._WRITES_ENABLED = index
    if not index:  # drafts carry their keyword terms: none to work out either
        setattr(context_module, "index_tokens", _no_tokens)  # noqa: B010
    try:
        async with SemanticCore.open(
            folder / f"ingest-{label}.db",
            embedder=LexicalEmbedder(space),
            keys=GoogleKeyring("unused-online", batch_key="unused-batch"),
            config=CoreConfig(space=space),
        ) as core:
            if not index:
                _drop_keyword_log_triggers(folder / f"ingest-{label}.db")
            chunks = 0
            start = time.perf_counter()
            for i, text in enumerate(docs):
                result = await core.ingest(text, source=f"doc-{i}", mode="async")
                chunks += result.chunks_stored
            return chunks / (time.perf_counter() - start)
    finally:
        sqlite_keywords._WRITES_ENABLED = True
        setattr(context_module, "index_tokens", index_tokens)  # noqa: B010


def _no_tokens(text: str) -> list[str]:
    return []


def _drop_keyword_log_triggers(path: Path) -> None:
    """Without keyword writes the in-memory index has nothing to follow: its log's
    triggers go too, so the baseline carries none of the keyword work."""
    conn = sqlite3.connect(path)
    try:
        for name in ("insert", "update", "delete"):
            conn.execute(f"DROP TRIGGER IF EXISTS chunks_keyword_log_{name}")
        conn.commit()
    finally:
        conn.close()


def _documents(corpus: _Corpus, count: int) -> list[str]:
    """Markdown documents of about four chunks each."""
    out = []
    for d in range(count):
        sections = [
            f"## Part {s}\n\n" + "\n\n".join(corpus.text(d * 100 + s * 10 + p) for p in range(4))
            for s in range(4)
        ]
        out.append(f"# Document {d}\n\n" + "\n\n".join(sections))
    return out


def run(quick: bool) -> list[Row]:
    n = 2_000 if quick else 100_000
    n_queries = 20 if quick else 200
    n_docs = 10 if quick else 300
    corpus = _Corpus()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="asemantic-hybrid-") as tmp, quiet():
        folder = Path(tmp)
        path = folder / f"hybrid-{n}.db"
        build_s = build(path, n, corpus)
        queries = [corpus.query(j, n) for j in range(n_queries)]
        times = asyncio.run(_search(path, queries))
        docs = _documents(corpus, n_docs)
        with_index: list[float] = []
        without: list[float] = []
        for attempt in range(3):
            with_index.append(asyncio.run(_ingest(folder, docs, index=True, label=f"a{attempt}")))
            without.append(asyncio.run(_ingest(folder, docs, index=False, label=f"b{attempt}")))
    label = f"{n:,} chunks x {_DIMS}d"
    vector_p50 = statistics.median(times["vector"]) * 1000
    hybrid_p50 = statistics.median(times["hybrid"]) * 1000
    keyword_p50 = statistics.median(times["keyword"]) * 1000
    rows.append(
        row(
            f"hybrid search p50 k=10, {label}",
            hybrid_p50,
            "ms",
            baseline="vector search p50, same run",
            baseline_figure=vector_p50,
            target="<= 1.5x vector",
            met=hybrid_p50 <= 1.5 * vector_p50,
        )
    )
    rows.append(
        row(
            f"hybrid search p95 k=10, {label}",
            _pct(times["hybrid"], 0.95) * 1000,
            "ms",
            baseline="vector search p95, same run",
            baseline_figure=_pct(times["vector"], 0.95) * 1000,
        )
    )
    rows.append(
        row(
            f"keyword search p50 k=10, {label}",
            keyword_p50,
            "ms",
            baseline="vector search p50, same run",
            baseline_figure=vector_p50,
        )
    )
    indexed, bare = statistics.median(with_index), statistics.median(without)
    rows.append(
        row(
            f"async ingest with keyword index, {n_docs} docs",
            indexed,
            "chunks/s",
            baseline="async ingest, keyword writes off",
            baseline_figure=bare,
            target=">= 0.8x without",
            met=indexed >= 0.8 * bare,
        )
    )
    rows.append(
        row(
            f"build by direct SQL (hybrid), {label}",
            build_s,
            "s",
            baseline="(informational)",
            baseline_figure=math.nan,
        )
    )
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    print_rows(run(args.quick))


if __name__ == "__main__":
    main()
