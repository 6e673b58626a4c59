"""An in-memory float32 matrix of unit vectors keyed by chunk id, searched exactly.

Pure and synchronous (NumPy only, no I/O): :mod:`.memindex` keeps it in step with the
database. Rows are normalised when stored, so the cosine distance sqlite-vec reports
(``1 - a.b / (|a| |b|)``) is ``1 - row . unit(query)``; one search is one float32
matrix-vector product plus a partial sort, the same work as a plain NumPy scan.

Layout: rows ``0..n-1`` of ``matrix`` are live; ``ids[slot]`` is the chunk id of a row
and ``slot_of[chunk_id]`` its row (``-1``: none). Chunk ids are small dense integers
(the store hands them out as ``max + 1``), so ``slot_of`` is a plain array. Removing a
row moves the last row into its place; capacity grows by half when full.

Mutations must not overlap a search running in another thread: :mod:`.memindex` only
mutates while no search is in flight.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["VectorMatrix", "unit_rows"]

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
# Below this share of matching rows a filtered search scores only those rows; above
# it, scoring every row and picking the matching ones reads less memory.
_GATHER_SHARE = 0.3


def unit_rows(blob: bytes, dimensions: int) -> F32:
    """Float32 rows from concatenated little-endian vectors, normalised (zero rows stay)."""
    rows = np.frombuffer(blob, dtype="<f4").reshape(-1, dimensions).astype(np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    np.divide(rows, norms, out=rows, where=norms > 0)
    return rows


class VectorMatrix:
    """Unit vectors by chunk id; exact top-k by cosine distance."""

    def __init__(self, dimensions: int) -> None:
        self.dimensions = dimensions
        self._matrix: F32 = np.empty((0, dimensions), dtype=np.float32)
        self._ids: I64 = np.empty(0, dtype=np.int64)
        self._slot_of: I64 = np.empty(0, dtype=np.int64)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    @property
    def nbytes(self) -> int:
        return int(self._matrix.nbytes + self._ids.nbytes + self._slot_of.nbytes)

    def ids(self) -> I64:
        """The chunk ids held, in row order (a copy)."""
        return self._ids[: self._n].copy()

    # --- mutation -------------------------------------------------------------------

    def reset(self, ids: I64, rows: F32, *, spare: float = 0.125) -> None:
        """Hold exactly ``rows`` (already unit) for ``ids``; keeps ``spare`` room to grow."""
        n = len(ids)
        capacity = max(16, int(n * (1 + spare)))
        matrix = np.empty((capacity, self.dimensions), dtype=np.float32)
        matrix[:n] = rows
        self._matrix = matrix
        self._ids = np.zeros(capacity, dtype=np.int64)
        self._ids[:n] = ids
        top = int(ids.max()) + 1 if n else 0
        self._slot_of = np.full(max(16, int(top * (1 + spare))), -1, dtype=np.int64)
        self._slot_of[ids] = np.arange(n, dtype=np.int64)
        self._n = n

    def adopt(self, ids: I64, rows: F32) -> None:
        """Hold ``rows`` (already unit, C-contiguous) for ``ids`` without copying them."""
        n = len(ids)
        self._matrix = np.ascontiguousarray(rows, dtype=np.float32)
        self._ids = np.array(ids, dtype=np.int64)
        top = int(ids.max()) + 1 if n else 0
        self._slot_of = np.full(max(16, top + top // 8), -1, dtype=np.int64)
        self._slot_of[ids] = np.arange(n, dtype=np.int64)
        self._n = n

    def remove(self, chunk_ids: Sequence[int]) -> int:
        """Drop the rows of ``chunk_ids`` (absent ones are skipped); how many went."""
        removed = 0
        for chunk_id in chunk_ids:
            slot = self._slot(chunk_id)
            if slot < 0:
                continue
            last = self._n - 1
            if slot != last:
                moved = int(self._ids[last])
                self._matrix[slot] = self._matrix[last]
                self._ids[slot] = moved
                self._slot_of[moved] = slot
            self._slot_of[chunk_id] = -1
            self._n = last
            removed += 1
        return removed

    def upsert(self, chunk_ids: Sequence[int], rows: F32) -> None:
        """Set the (unit) row of each chunk id, replacing the one it had."""
        for chunk_id, row in zip(chunk_ids, rows, strict=True):
            slot = self._slot(chunk_id)
            if slot < 0:
                slot = self._append_slot(chunk_id)
            self._matrix[slot] = row

    def _slot(self, chunk_id: int) -> int:
        return int(self._slot_of[chunk_id]) if 0 <= chunk_id < len(self._slot_of) else -1

    def _append_slot(self, chunk_id: int) -> int:
        if self._n == len(self._matrix):
            grown = np.empty((max(16, self._n + self._n // 2), self.dimensions), np.float32)
            grown[: self._n] = self._matrix[: self._n]
            self._matrix = grown
        if self._n >= len(self._ids):
            extra = len(self._matrix) - len(self._ids)
            self._ids = np.concatenate([self._ids, np.zeros(max(extra, 16), np.int64)])
        if chunk_id >= len(self._slot_of):
            extra = max(chunk_id + 1, len(self._slot_of) * 3 // 2) - len(self._slot_of)
            self._slot_of = np.concatenate([self._slot_of, np.full(extra, -1, np.int64)])
        slot = self._n
        self._ids[slot] = chunk_id
        self._slot_of[chunk_id] = slot
        self._n += 1
        return slot

    # --- search ---------------------------------------------------------------------

    def search(
        self, query: F32, k: int, *, allowed: I64 | None = None
    ) -> tuple[I64, npt.NDArray[np.float64]]:
        """Chunk ids and cosine distances of the ``k`` nearest rows, nearest first
        (ties by chunk id). With ``allowed``, only those chunk ids are candidates, so
        ``min(k, matching rows)`` come back."""
        norm = float(np.linalg.norm(query))
        q = (query / norm if norm > 0 else query).astype(np.float32)
        n = self._n
        if allowed is None:
            slots: I64 | None = None
            scores = self._matrix[:n] @ q
        else:
            slots = self._allowed_slots(allowed)
            if len(slots) < _GATHER_SHARE * n:
                scores = self._matrix[slots] @ q
            else:
                scores = (self._matrix[:n] @ q)[slots]
        count = min(k, len(scores))
        if count == 0:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        top = np.argpartition(-scores, count - 1)[:count] if count < len(scores) else None
        picked = np.arange(len(scores)) if top is None else top
        rows = picked if slots is None else slots[picked]
        distances = 1.0 - scores[picked].astype(np.float64)
        ids = self._ids[rows]
        order = np.lexsort((ids, distances))
        return ids[order], distances[order]

    def _allowed_slots(self, allowed: I64) -> I64:
        inside = allowed[(allowed >= 0) & (allowed < len(self._slot_of))]
        slots = self._slot_of[inside]
        return np.sort(slots[slots >= 0])


def as_ids(values: Any) -> I64:
    """Chunk ids as an int64 array."""
    return np.asarray(values, dtype=np.int64)
