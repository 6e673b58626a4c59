"""The in-memory float32 matrix of unit vectors, and decoding vec0 rows into it.

An in-memory float32 matrix of unit vectors keyed by chunk id, searched exactly (with a
pruning basis, :meth:`VectorMatrix.prune_with`, through an exact bound that skips most
rows; see :mod:`.pruning`).

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

from asemantic.adapters.sqlite import pruning

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
        # The pruning bound (:mod:`.pruning`): basis W, projected rows, residual norms.
        self._basis: npt.NDArray[np.float64] | None = None
        self._proj: F32 = np.empty((0, 0), dtype=np.float32)
        self._resid: F32 = np.empty(0, dtype=np.float32)
        self.pruned_searches = 0
        """Searches answered through the bound (the others scanned every row)."""
        self._misses = 0
        self._tries = 0

    def __len__(self) -> int:
        return self._n

    @property
    def nbytes(self) -> int:
        return int(
            self._matrix.nbytes
            + self._ids.nbytes
            + self._docs.nbytes
            + self._slot_of.nbytes
            + self._proj.nbytes
            + self._resid.nbytes
        )

    @property
    def basis(self) -> npt.NDArray[np.float64] | None:
        """The pruning basis (``d x m``), or None when every search scans all rows."""
        return self._basis

    def arrays(self) -> tuple[I64, I64, F32, F32, F32]:
        """Views of the live ``ids, documents, rows, projected rows, residual norms``
        (the last two empty without a basis); valid until the next mutation."""
        n = self._n
        proj = self._proj[:n] if self._basis is not None else self._proj[:0]
        resid = self._resid[:n] if self._basis is not None else self._resid[:0]
        return self._ids[:n], self._docs[:n], self._matrix[:n], proj, resid

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
        self._basis = None
        self._proj = np.empty((0, 0), dtype=np.float32)
        self._resid = np.empty(0, dtype=np.float32)

    def prune_with(
        self,
        basis: npt.NDArray[np.float64],
        projected: F32 | None = None,
        residuals: F32 | None = None,
    ) -> None:
        """Search through the pruning bound of ``basis`` (see :mod:`.pruning`). The
        rows' projections and residual norms are computed unless given (as
        :func:`.pruning.project` computes them, for the rows in order)."""
        n = self._n
        width = basis.shape[1]
        if projected is None or residuals is None:
            projected = np.empty((len(self._matrix), width), dtype=np.float32)
            residuals = np.zeros(len(self._matrix), dtype=np.float32)
            pruning.project(self._matrix[:n], basis, projected[:n], residuals[:n])
        if projected.shape[0] < n or residuals.shape[0] < n or projected.shape[1] != width:
            raise ValueError("projections do not cover the rows")
        self._basis = basis
        self._proj = projected
        self._resid = residuals

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
                if self._basis is not None:
                    self._proj[slot] = self._proj[last]
                    self._resid[slot] = self._resid[last]
                self._slot_of[moved] = slot
            self._slot_of[chunk_id] = -1
            self._n = last
            removed += 1
        return removed

    def upsert(self, chunk_ids: Sequence[int], rows: F32, documents: Sequence[int]) -> None:
        """Set the (unit) row and document of each chunk id, replacing what it had."""
        slots = []
        for chunk_id, row, document in zip(chunk_ids, rows, documents, strict=True):
            slot = self._slot(chunk_id)
            if slot < 0:
                slot = self._append_slot(chunk_id)
            self._matrix[slot] = row
            self._docs[slot] = document
            slots.append(slot)
        if self._basis is not None and slots:
            where = np.array(slots, dtype=np.int64)
            projected = np.empty((len(where), self._basis.shape[1]), np.float32)
            residuals = np.empty(len(where), np.float32)
            pruning.project(self._matrix[where], self._basis, projected, residuals)
            self._proj[where] = projected
            self._resid[where] = residuals

    def _slot(self, chunk_id: int) -> int:
        return int(self._slot_of[chunk_id]) if 0 <= chunk_id < len(self._slot_of) else -1

    def _append_slot(self, chunk_id: int) -> int:
        if self._n == len(self._matrix):
            grown = np.empty((max(16, self._n + self._n // 2), self.dimensions), np.float32)
            grown[: self._n] = self._matrix[: self._n]
            self._matrix = grown
        if self._basis is not None and self._n >= len(self._proj):
            size = len(self._matrix)
            proj = np.empty((size, self._proj.shape[1]), np.float32)
            proj[: self._n] = self._proj[: self._n]
            resid = np.zeros(size, np.float32)
            resid[: self._n] = self._resid[: self._n]
            self._proj, self._resid = proj, resid
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
        candidates, so ``min(k, matching rows)`` come back.

        With a pruning basis (:meth:`prune_with`) the rows the bound rules out are never
        scored; the answer is the same exact top k (see :mod:`.pruning`)."""
        norm = float(np.linalg.norm(query))
        q = (query / norm if norm > 0 else query).astype(np.float32)
        n = self._n
        slots: I64 | None = None
        member: npt.NDArray[np.bool_] | None = None
        if documents is not None:
            member = members(self._docs[:n], documents)
            slots = np.flatnonzero(member)
        scores: F32 | None = None
        if self._basis is not None and k > 0 and self._worth_trying():
            pruned = self._pruned(q, k, slots, member)
            if pruned is None:
                self._misses += 1
            else:
                slots, scores = pruned
                self._misses = 0
                self.pruned_searches += 1
        if scores is None:
            if slots is None:
                scores = self._matrix[:n] @ q
            elif len(slots) < _GATHER_SHARE * n:
                scores = self._matrix[slots] @ q
            else:
                scores = (self._matrix[:n] @ q)[slots]
        return self._top(scores, k, slots)

    def _worth_trying(self) -> bool:
        """Whether to try the bound: always, unless it could not prune the last few
        searches (rows without structure), then on one search in 16, so a change in
        the data is noticed while the wasted work stays small."""
        self._tries += 1
        return self._misses < 4 or self._tries % 16 == 0

    def _pruned(
        self, q: F32, k: int, slots: I64 | None, member: npt.NDArray[np.bool_] | None
    ) -> tuple[I64, F32] | None:
        """``(rows, exact scores)`` of every row (of ``slots``) the bound cannot rule
        out of the top ``k``, or None when that is too many rows to be worth it.

        A filter keeping a small share of the rows gathers their projections; one
        keeping more bounds every row, in place, and masks out the others
        (``member``), which costs what an unfiltered search does instead of a gather
        of most of the rows."""
        assert self._basis is not None
        n = self._n
        count = n if slots is None else len(slots)
        if count <= 4 * k:
            return None
        qp, q_rest = pruning.query_parts(q, self._basis)
        gathered = slots is not None and count < _GATHER_SHARE * n
        if slots is not None and gathered:
            approx = self._proj[slots] @ qp
            resid = self._resid[slots]
        else:
            approx = self._proj[:n] @ qp
            resid = self._resid[:n]
        # Seeds: the 4k best projected scores (any k rows give a true lower bound on
        # the k-th best score; these give a tight one), among the rows the filter keeps.
        masked = member is not None and not gathered
        if masked:
            assert member is not None
            seeds = _largest(np.where(member, approx, np.float32(-np.inf)), 4 * k)
            seed_rows = seeds
        else:
            seeds = _largest(approx, 4 * k)
            seed_rows = seeds if slots is None else slots[seeds]
        seed_scores = _scores(self._matrix[seed_rows], q)
        kth = float(np.partition(seed_scores, len(seed_scores) - k)[len(seed_scores) - k])
        bound = approx
        bound += np.float32(q_rest) * resid
        reach = bound >= np.float32(kth - pruning.margin(self.dimensions, len(qp)))
        if member is not None and masked:
            reach &= member
        need = np.flatnonzero(reach)
        if len(need) > pruning.FALLBACK_SHARE * count:
            return None
        rows = need if slots is None or masked else slots[need]
        return rows, _scores_at(self._matrix, rows, q)

    def _top(self, scores: F32, k: int, slots: I64 | None) -> tuple[I64, npt.NDArray[np.float64]]:
        """The ``k`` best of ``scores`` (of rows ``slots``, or of every row), nearest
        first, ties by chunk id."""
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


def _largest(values: F32, count: int) -> I64:
    """Positions of the ``count`` largest ``values`` (ties in any order), without a
    partial sort of all of them: the maxima of 1,024 stretches pick the ``count`` best
    stretches (every one of the ``count`` largest values lies in one of them, since a
    stretch without any has its maximum below all of them), then those stretches are
    partially sorted."""
    total = len(values)
    if total < 1 << 15 or count * 64 > total or count > 512:
        picked: I64 = np.argpartition(-values, count - 1)[:count]
        return picked
    width = total // 1024
    stretches = total // width
    maxima = values[: stretches * width].reshape(stretches, width).max(axis=1)
    best = np.argpartition(-maxima, count - 1)[:count]
    where = (best[:, None] * width + np.arange(width)).ravel()
    where = np.concatenate([where, np.arange(stretches * width, total)])
    top: I64 = where[np.argpartition(-values[where], count - 1)[:count]]
    return top


def _scores_at(matrix: F32, rows: I64, q: F32) -> F32:
    """``matrix[rows] @ q`` for sorted ``rows``: run by run when they form runs of
    consecutive rows 16 long on average or more (rows written in locality order do),
    so nothing is copied."""
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    if len(breaks) > len(rows) // 16 or len(rows) < 256:
        return _scores(matrix[rows], q)
    out = np.empty(len(rows), dtype=np.float32)
    starts = [0, *breaks.tolist()]
    ends = [*breaks.tolist(), len(rows)]
    for lo, hi in zip(starts, ends, strict=True):
        first = int(rows[lo])
        out[lo:hi] = _scores(matrix[first : first + hi - lo], q)
    return out


def _scores(rows: F32, q: F32) -> F32:
    """``rows @ q`` for a few gathered rows: einsum, because BLAS's threaded gemv costs
    several times more on a few thousand rows than on the whole matrix per row."""
    out: F32 = np.einsum("ij,j->i", rows, q)
    return out


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
