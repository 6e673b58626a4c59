"""Decoding vec0 rows into one float32 matrix, a fetched batch at a time.

Pure and synchronous (NumPy only): :mod:`.memindex` fetches batches of rows on the
connection's thread and hands each one to :class:`RowFiller` on a worker thread, so a
load of hundreds of megabytes never holds the event loop (the copying is mostly the
cost of touching fresh memory, which on some machines runs at a few hundred MB/s).

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

from asemantic.adapters.sqlite.vecmatrix import F32, I64, normalise

__all__ = ["RowFiller"]


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
