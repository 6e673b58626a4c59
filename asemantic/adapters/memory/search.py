"""Exact k-nearest search over the in-memory vectors, with the SQLite store's semantics.

Decisions:

* Distance is the cosine distance sqlite-vec reports (``1 - a.b / (|a| |b|)``),
  computed as the SQLite store's memory index does: rows normalised in float32, one
  float32 matrix-vector product with the unit query, ``1 - score`` in float64.
* Order: distance, then chunk id. The candidates at the k-th distance are all kept
  before sorting, so ties are broken by id exactly.
* Filters restrict the candidates *before* ranking (never a global top-k filtered
  afterwards), so ``k`` hits come back whenever ``k`` chunks match.
* Filters are evaluated by :func:`asemantic.domain.filters.evaluate` itself, the
  reference the SQL engines' compiled filters agree with: JSON-typed equality (``1``
  matches ``1`` and ``1.0`` but not ``true`` nor ``"1"``; ``null`` an explicit null
  only; arrays and objects as canonical JSON), type-bracketed ranges.
* The matrix is rebuilt lazily when the vectors changed (``Tables.generation``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from asemantic.adapters.memory.database import DocumentRow, Tables
from asemantic.adapters.planning import dump_json
from asemantic.domain.documents import JSONValue, SearchHit
from asemantic.domain.filters import FilterRecord, evaluate, reads_metadata
from asemantic.errors import InvalidInputError
from asemantic.ports import SearchFilters

__all__ = ["VectorIndex", "check_filters", "is_filtered", "matching_documents"]

_F32 = npt.NDArray[np.float32]
_I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class _Matrix:
    generation: int
    ids: _I64
    documents: _I64
    rows: _F32


class VectorIndex:
    """Unit rows of every stored vector, rebuilt when the tables' vectors changed."""

    def __init__(self, dimensions: int) -> None:
        self._dimensions = dimensions
        self._matrix: _Matrix | None = None

    def _current(self, tables: Tables) -> _Matrix:
        matrix = self._matrix
        if matrix is not None and matrix.generation == tables.generation:
            return matrix
        ids = np.fromiter(sorted(tables.vectors), dtype=np.int64, count=len(tables.vectors))
        documents = np.fromiter(
            (tables.chunks[int(i)].document_id for i in ids), dtype=np.int64, count=len(ids)
        )
        blob = b"".join(tables.vectors[int(i)] for i in ids)
        rows = np.frombuffer(blob, dtype="<f4").reshape(-1, self._dimensions).astype(np.float32)
        norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))[:, None]
        np.divide(rows, norms, out=rows, where=norms > 0)
        matrix = _Matrix(tables.generation, ids, documents, rows)
        self._matrix = matrix
        return matrix

    def search(
        self, tables: Tables, query: bytes, k: int, documents: set[int] | None
    ) -> list[SearchHit]:
        """The ``k`` nearest READY chunks (of ``documents`` when given), best first."""
        matrix = self._current(tables)
        vector = np.frombuffer(query, dtype="<f4")
        norm = float(np.linalg.norm(vector))
        unit = (vector / norm if norm > 0 else vector).astype(np.float32)
        ids, rows = matrix.ids, matrix.rows
        if documents is not None:
            allowed = np.fromiter(documents, dtype=np.int64, count=len(documents))
            mask = np.isin(matrix.documents, allowed)
            ids, rows = ids[mask], rows[mask]
        if not len(ids):
            return []
        distances = 1.0 - (rows @ unit).astype(np.float64)
        if k < len(ids):
            kth = np.partition(distances, k - 1)[k - 1]
            keep = distances <= kth
            ids, distances = ids[keep], distances[keep]
        order = np.lexsort((ids, distances))[:k]
        return [_hit(tables, int(ids[i]), float(distances[i])) for i in order]


def check_filters(filters: SearchFilters | None) -> None:
    """Refuse a metadata filter that is not a JSON value (before anything is read)."""
    if filters is None:
        return
    for key, value in (filters.metadata or {}).items():
        if not isinstance(key, str):
            raise InvalidInputError("metadata filter keys must be strings")
        if value is not None and not isinstance(value, str | int | float | bool | list | dict):
            raise InvalidInputError(f"metadata filter {key!r} is not a JSON value")
        if isinstance(value, list | dict):
            dump_json(value)
    filters.expression()


def is_filtered(filters: SearchFilters | None) -> bool:
    """Whether ``filters`` restricts anything."""
    return filters is not None and filters.restricts


def matching_documents(tables: Tables, filters: SearchFilters) -> set[int]:
    """The ids of the documents ``filters`` matches (the reference evaluator of
    :mod:`asemantic.domain.filters`, run over every document row)."""
    expression = filters.expression()
    parse = reads_metadata(expression)  # else no document's JSON is decoded
    return {
        row.document_id
        for row in tables.documents.values()
        if evaluate(expression, _record(row, parse=parse))
    }


def _record(row: DocumentRow, *, parse: bool) -> FilterRecord:
    return FilterRecord(
        document_id=row.document_id,
        source=row.source,
        created_at=row.created_at,
        updated_at=row.updated_at,
        metadata=_loads_object(row.metadata_json) if parse else {},
    )


def _loads_object(text: str) -> dict[str, JSONValue]:
    value = json.loads(text or "{}")
    return value if isinstance(value, dict) else {}


def _hit(tables: Tables, chunk_id: int, distance: float) -> SearchHit:
    chunk = tables.chunks[chunk_id]
    document = tables.documents[chunk.document_id]
    return SearchHit(
        chunk_id=chunk_id,
        document_id=document.document_id,
        source=document.source,
        title=document.title,
        text=chunk.text,
        position=chunk.position,
        heading_path=chunk.heading_path,
        distance=distance,
        document_metadata=_loads_object(document.metadata_json),
    )
