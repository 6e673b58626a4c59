"""Search hits from engine rows, shared by the SQL engines."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

from asemantic.domain.documents import EmbeddingStatus, SearchHit

__all__ = ["keyword_hits"]


def keyword_hits(
    rows: Iterable[Sequence[Any]], decode: Callable[[Sequence[Any]], SearchHit]
) -> list[SearchHit]:
    """Hits of keyword-search rows, ranked from 1.

    Each row holds the nine columns ``decode`` (the engine's vector-hit decoder) reads,
    with the BM25 score where the distance would be, then the embedding status.
    """
    hits: list[SearchHit] = []
    for rank, row in enumerate(rows, 1):
        score = float(row[7])
        hits.append(
            replace(
                decode(tuple(row)[:9]),
                distance=None,
                score=score,
                embedding_status=EmbeddingStatus(row[9]),
                keyword_rank=rank,
                keyword_score=score,
            )
        )
    return hits
