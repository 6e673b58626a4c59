"""Keyword search of the memory engine: an inverted index over every chunk's tokens.

Decisions:

* Tokens and BM25 are :mod:`asemantic.domain.keywords`' (FTS5's formula), as on SQLite
  and PostgreSQL, so the three engines rank alike.
* The index is derived from the tables and synchronised before each search whenever
  ``Tables.text_generation`` moved (only chunks whose text changed, or that came or
  went, are tokenised again). A search reads it inside the database's one-state read,
  so it always agrees with the committed chunks: the memory counterpart of SQLite's
  index written in the chunks' transaction.
* Every chunk is indexed, whatever its embedding status: a PENDING chunk is found by
  its words before its vector exists.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from asemantic.adapters.memory.database import Tables
from asemantic.domain.keywords import bm25, idf, index_tokens, rounded

__all__ = ["KeywordIndex"]


@dataclass(frozen=True, slots=True)
class _Entry:
    text: str
    counts: Counter[str]
    length: int


class KeywordIndex:
    """Postings, term frequencies and lengths of every chunk's tokens."""

    def __init__(self) -> None:
        self._entries: dict[int, _Entry] = {}
        self._postings: dict[str, set[int]] = {}
        self._total = 0
        self._generation = -1

    def _remove(self, chunk_id: int) -> None:
        entry = self._entries.pop(chunk_id)
        self._total -= entry.length
        for term in entry.counts:
            holders = self._postings[term]
            holders.discard(chunk_id)
            if not holders:
                del self._postings[term]

    def _add(self, chunk_id: int, text: str) -> None:
        tokens = index_tokens(text)
        entry = _Entry(text, Counter(tokens), len(tokens))
        self._entries[chunk_id] = entry
        self._total += entry.length
        for term in entry.counts:
            self._postings.setdefault(term, set()).add(chunk_id)

    def sync(self, tables: Tables) -> None:
        """Bring the index in line with ``tables`` (nothing to do when unchanged)."""
        if self._generation == tables.text_generation:
            return
        for chunk_id in [i for i in self._entries if i not in tables.chunks]:
            self._remove(chunk_id)
        for chunk_id, chunk in tables.chunks.items():
            entry = self._entries.get(chunk_id)
            if entry is not None and entry.text == chunk.text:
                continue
            if entry is not None:
                self._remove(chunk_id)
            self._add(chunk_id, chunk.text)
        self._generation = tables.text_generation

    def search(
        self, tables: Tables, terms: Sequence[str], k: int, documents: set[int] | None
    ) -> list[tuple[int, float]]:
        """The ``k`` best (chunk id, BM25 score) of the chunks holding any of ``terms``
        (of ``documents`` when given): score, then chunk id."""
        self.sync(tables)
        chunks = len(self._entries)
        if not chunks or not terms:
            return []
        average = self._total / chunks
        idfs = {t: idf(chunks, len(self._postings.get(t, ()))) for t in terms}
        matched: set[int] = set()
        for term in terms:
            matched |= self._postings.get(term, set())
        scored: list[tuple[float, int, float]] = []
        for chunk_id in matched:
            if documents is not None and tables.chunks[chunk_id].document_id not in documents:
                continue
            entry = self._entries[chunk_id]
            score = bm25(entry.counts, entry.length, terms=terms, idfs=idfs, average_length=average)
            scored.append((-rounded(score), chunk_id, score))
        scored.sort()
        return [(chunk_id, score) for _, chunk_id, score in scored[:k]]
