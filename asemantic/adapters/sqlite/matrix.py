"""The in-memory float32 matrix of unit vectors, and decoding vec0 rows into it.

An in-memory float32 matrix of unit vectors keyed by chunk id, searched exactly.

Pure and synchronous (NumPy only, no I/O): :mod:`.memory_index` keeps it in step with the
database. Rows are normalised when stored, so the cosine distance sqlite-vec reports
(``1 - a.b / (|a| |b|)``) is ``1 - row . unit(query)``; one search is one float32
matrix-vector product plus a partial sort, the same work as a plain NumPy scan.

Layout: rows ``0..n-1`` of ``matrix`` are live; ``ids[slot]`` is the chunk id of a row
and ``slot_of[chunk_id]`` its row (``-1``: none). Chunk ids are small dense integers
(the store hands them out as ``max + 1``), so ``slot_of`` is a plain array. Removing a
row moves the last row into its place; capacity grows by half when full.

``docs[slot]`` is the document of a row, so a filter (every filter is on documents)
becomes a mask over rows instead of a list of chunk ids read from SQLite. A chunk never
changes document (nothing updates ``chunks.document_id``), so the document read with a
vector stays true for as long as the row is held.

Mutations must not overlap a search running in another thread: :mod:`.memory_index` only
mutates while no search is in flight.

Loading decodes vec0 rows into one float32 matrix, a fetched batch at a time:
:mod:`.memory_index` fetches batches of rows on the connection's thread and hands each
one to :class:`RowFiller` on a worker thread, so a load of hundreds of megabytes never
holds the event loop (the copying is mostly the cost of touching fresh memory, which on
some machines runs at a few hundred MB/s).

Two sources of rows:

* vec0's own storage (sqlite-vec 0.1.x), one row per chunk of ``size`` slots: a
  validity bitmap (bit i of byte i // 8, least significant first), the slots' rowids
  (int64) and their vectors (float32, one blob). :meth:`RowFiller.add_shadow` checks
  each row's shape and reports one it cannot read, so the caller can fall back to
* plain ``(rowid, embedding)`` rows from vec0 itself (:meth:`RowFiller.add_rows`).

Rows are normalised as they are copied in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["RowFiller", "VectorMatrix", "members", "normalise", "unit_rows"]


F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
# Below this share of matching rows a filtered search scores only those rows; above
# it, scoring every row and picking the matching ones reads less memory.
_GATHER_SHARE = 0.3


def normalise(rows: F32) -> None:
    """Scale each row of ``rows`` to unit length, in place (zero rows stay zero)."""
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))[:, None]
    np.divide(rows, norms, out=rows, where=norms > 0)


def unit_rows(blob: bytes, dimensions: int) -> F32:
    """Float32 rows from concatenated little-endian vectors, normalised (zero rows stay)."""
    rows = np.frombuffer(blob, dtype="<f4").reshape(-1, dimensions).astype(np.float32)
    normalise(rows)
    return rows


class VectorMatrix:
    """Unit vectors by chunk id; exact top-k by cosine distance."""

    def __init__(self, dimensions: int) -> None:
        self.dimensions = dimensions
        self._matrix: F32 = np.empty((0, dimensions), dtype=np.float32)
        self._ids: I64 = np.empty(0, dtype=np.int64)
        self._docs: I64 = np.empty(0, dtype=np.int64)
        self._slot_of: I64 = np.empty(0, dtype=np.int64)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    @property
    def nbytes(self) -> int:
        return int(
            self._matrix.nbytes + self._ids.nbytes + self._docs.nbytes + self._slot_of.nbytes
        )

    def ids(self) -> I64:
        """The chunk ids held, in row order (a copy)."""
        return self._ids[: self._n].copy()

    # --- mutation -------------------------------------------------------------------

    def adopt(self, ids: I64, rows: F32, documents: I64) -> None:
        """Hold ``rows`` (already unit, C-contiguous) for ``ids`` (of ``documents``)
        without copying them."""
        n = len(ids)
        self._matrix = np.ascontiguousarray(rows, dtype=np.float32)
        self._ids = np.array(ids, dtype=np.int64)
        self._docs = np.array(documents, dtype=np.int64)
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
                self._docs[slot] = self._docs[last]
                self._slot_of[moved] = slot
            self._slot_of[chunk_id] = -1
            self._n = last
            removed += 1
        return removed

    def upsert(self, chunk_ids: Sequence[int], rows: F32, documents: Sequence[int]) -> None:
        """Set the (unit) row and document of each chunk id, replacing what it had."""
        for chunk_id, row, document in zip(chunk_ids, rows, documents, strict=True):
            slot = self._slot(chunk_id)
            if slot < 0:
                slot = self._append_slot(chunk_id)
            self._matrix[slot] = row
            self._docs[slot] = document

    def _slot(self, chunk_id: int) -> int:
        return int(self._slot_of[chunk_id]) if 0 <= chunk_id < len(self._slot_of) else -1

    def _append_slot(self, chunk_id: int) -> int:
        if self._n == len(self._matrix):
            grown = np.empty((max(16, self._n + self._n // 2), self.dimensions), np.float32)
            grown[: self._n] = self._matrix[: self._n]
            self._matrix = grown
        if self._n >= len(self._ids):
            extra = max(len(self._matrix) - len(self._ids), 16)
            self._ids = np.concatenate([self._ids, np.zeros(extra, np.int64)])
            self._docs = np.concatenate([self._docs, np.zeros(extra, np.int64)])
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
        self, query: F32, k: int, *, documents: I64 | None = None
    ) -> tuple[I64, npt.NDArray[np.float64]]:
        """Chunk ids and cosine distances of the ``k`` nearest rows, nearest first
        (ties by chunk id). With ``documents``, only chunks of those documents are
        candidates, so ``min(k, matching rows)`` come back."""
        norm = float(np.linalg.norm(query))
        q = (query / norm if norm > 0 else query).astype(np.float32)
        n = self._n
        if documents is None:
            slots: I64 | None = None
            scores = self._matrix[:n] @ q
        else:
            slots = np.flatnonzero(members(self._docs[:n], documents))
            if len(slots) < _GATHER_SHARE * n:
                scores = self._matrix[slots] @ q
            else:
                scores = (self._matrix[:n] @ q)[slots]
        count = min(k, len(scores))
        if count == 0:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        top = np.argpartition(-scores, count - 1)[:count] if count < len(scores) else None
        if top is not None:
            top = self._lowest_ids_at_the_boundary(scores, top, slots)
        picked = np.arange(len(scores)) if top is None else top
        rows = picked if slots is None else slots[picked]
        distances = 1.0 - scores[picked].astype(np.float64)
        ids = self._ids[rows]
        order = np.lexsort((ids, distances))
        return ids[order], distances[order]

    def _lowest_ids_at_the_boundary(self, scores: F32, top: I64, slots: I64 | None) -> I64:
        """``top`` (the ``argpartition`` pick) with the rows tied at the k-th score
        chosen by lowest chunk id, as every engine does, instead of arbitrarily."""
        threshold = scores[top].min()
        above = top[scores[top] > threshold]
        tied = np.flatnonzero(scores == threshold)
        if len(above) + len(tied) == len(top):
            return top  # no tie crosses the boundary
        tied_rows = tied if slots is None else slots[tied]
        keep = tied[np.argsort(self._ids[tied_rows], kind="stable")[: len(top) - len(above)]]
        return np.concatenate([above, keep])


def members(values: I64, of: I64) -> npt.NDArray[np.bool_]:
    """``np.isin(values, of)`` for small non-negative ids, in linear time (negative
    ``of`` entries match nothing)."""
    of = of[of >= 0]
    top = int(max(values.max(initial=0), of.max(initial=0))) + 1
    mask = np.zeros(top, dtype=bool)
    mask[of] = True
    return mask[values]


class RowFiller:
    """Unit float32 rows and their ids, appended batch by batch (grows by half when
    full). Not thread-safe: one batch at a time."""

    def __init__(self, dimensions: int, capacity: int) -> None:
        self.dimensions = dimensions
        self._ids: I64 = np.empty(max(16, capacity), dtype=np.int64)
        self._rows: F32 = np.empty((max(16, capacity), dimensions), dtype=np.float32)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def result(self) -> tuple[I64, F32]:
        """The ids and rows added so far (views, no copy)."""
        return self._ids[: self._n], self._rows[: self._n]

    def add_shadow(self, batch: Sequence[Sequence[Any]]) -> bool:
        """Add ``(size, validity, rowids, vectors)`` rows of vec0's chunk tables;
        False (nothing more added) at the first row not laid out as expected."""
        width = self.dimensions * 4
        for size, validity, rowids, vectors in batch:
            size = int(size)
            if len(validity) * 8 < size or len(rowids) != size * 8 or len(vectors) != size * width:
                return False
            valid = np.unpackbits(np.frombuffer(validity, np.uint8), bitorder="little")[:size]
            mask = valid.astype(bool)
            block = np.frombuffer(vectors, "<f4").reshape(size, self.dimensions)
            self._append(np.frombuffer(rowids, "<i8")[mask], block[mask])
        return True

    def add_rows(self, batch: Sequence[Sequence[Any]]) -> None:
        """Add ``(rowid, embedding)`` rows."""
        if not batch:
            return
        ids = np.fromiter((int(row[0]) for row in batch), dtype=np.int64, count=len(batch))
        blob = b"".join(bytes(row[1]) for row in batch)
        self._append(ids, np.frombuffer(blob, "<f4").reshape(-1, self.dimensions))

    def _append(self, ids: I64, rows: Any) -> None:
        count = len(ids)
        if not count:
            return
        lo, hi = self._n, self._n + count
        if hi > len(self._ids):
            grow = max(count, len(self._ids) // 2)
            self._ids = np.concatenate([self._ids, np.empty(grow, np.int64)])
            self._rows = np.concatenate([self._rows, np.empty((grow, self.dimensions), np.float32)])
        self._ids[lo:hi] = ids
        target = self._rows[lo:hi]
        target[:] = rows
        normalise(target)
        self._n = hi
