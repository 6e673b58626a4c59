"""An exact pruning bound for the in-memory scan: a low-dimensional projection plus
Cauchy-Schwarz on what it leaves out.

With ``W`` (``d x m``, orthonormal columns, the top principal directions of a sample of
the rows) every unit row ``x`` and query ``q`` split into a part in ``W``'s span and a
residual, and

    q . x = (W^T q) . (W^T x) + q_r . x_r <= (W^T q) . p + |q_r| |x_r|

with ``p = W^T x`` and ``|x_r| = sqrt(|x|^2 - |p|^2)``. So ``m`` floats and one norm
per row (``m = 64``: a twelfth of a 768d row) give an *upper bound* on each row's score.
A search scores exactly a few rows with the best projected scores, takes the k-th best
exact score ``s_k`` among them, then scores exactly every row whose bound reaches
``s_k - margin``; every other row scores below ``s_k``, which is at most the true k-th
best score, so the top k of the rows scored is the exact top k, ties included. The
``margin`` covers float32 rounding of the exact scores and of the bound (both computed
in float32; ``p`` and the residual norms are computed in float64, rounded up).

How much it saves depends on the data: clustered rows (embeddings of real text have
structure) leave small residuals and most rows are pruned; rows without structure
(i.i.d. Gaussian) leave residuals near 1, nothing is pruned, and when more than
:data:`FALLBACK_SHARE` of the rows would need exact scores the search does the full scan
instead. Either way the answer is exact.

The basis does not need to fit rows added later: any orthonormal ``W`` gives a true
bound, a stale one only a looser one.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "FALLBACK_SHARE",
    "MARGIN",
    "PROJECTED",
    "fit_basis",
    "locality_order",
    "margin",
    "project",
    "projection_error",
    "query_parts",
]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

PROJECTED = 64
"""Dimensions kept per row (capped at the row's own dimensions)."""

FALLBACK_SHARE = 0.2
"""When more than this share of the candidate rows needs an exact score, the search
scans them all instead (gathering rows costs about twice streaming them)."""

MARGIN = 2e-4
"""The least slack between a bound and an exact score (see :func:`margin`)."""

_SAMPLE = 4096
_BLOCK = 8192
_UNIT_ROUNDING = 2.0**-24


def _gamma(terms: int) -> float:
    """The worst relative error of a float32 sum of ``terms`` products, ``n u / (1 - n
    u)``, doubled for good measure (BLAS may add in any order)."""
    nu = terms * _UNIT_ROUNDING
    return 2.0 * nu / (1.0 - nu)


def projection_error(dimensions: int, width: int) -> float:
    """An upper bound on ``|p_stored - W^T x|`` for a unit row: each of the ``width``
    float32 dot products over ``dimensions`` terms errs by at most ``gamma(d)``."""
    return float(np.sqrt(width)) * _gamma(dimensions + 1) + 1e-7


def margin(dimensions: int, width: int = PROJECTED) -> float:
    """Slack added to every bound before it is compared with an exact score: the
    float32 error of the exact score (``gamma(d)``), of the bound's own product
    (``gamma(m)``) and of the stored projection (:func:`projection_error`)."""
    slack = _gamma(dimensions) + _gamma(width + 2) + projection_error(dimensions, width)
    return max(MARGIN, 1.5 * slack)


def fit_basis(rows: F32, m: int = PROJECTED, *, seed: int = 0) -> F64:
    """Orthonormal columns (``d x m'``, ``m' = min(m, d)``) spanning the top principal
    directions (uncentred: the ones keeping most of the rows' length) of a sample of
    ``rows``, by a randomised range finder (cheap at any ``d``). Any orthonormal basis
    gives a true bound; a good one only a tighter one."""
    n, d = rows.shape
    width = min(m, d)
    rng = np.random.default_rng(seed)
    if n < 2 or width == d:
        return np.eye(d, width, dtype=np.float64)
    pick = np.sort(rng.choice(n, size=min(n, _SAMPLE), replace=False))
    sample = np.asarray(rows[pick], dtype=np.float32)
    y = sample @ rng.standard_normal((d, min(d, width + 16))).astype(np.float32)
    for _ in range(2):
        y = np.linalg.qr(y)[0].astype(np.float32)
        y = sample @ (sample.T @ y)
    q = np.linalg.qr(y.astype(np.float64))[0]
    _, _, vt = np.linalg.svd(q.T @ sample.astype(np.float64), full_matrices=False)
    top = vt[: min(width, len(vt))].T
    if top.shape[1] < width:  # fewer sample rows than m: complete the basis
        filler = rng.standard_normal((d, width - top.shape[1]))
        filler -= top @ (top.T @ filler)
        top = np.concatenate([top, filler], axis=1)
    basis: F64 = np.ascontiguousarray(np.linalg.qr(top)[0])  # orthonormal in float64
    return basis


def project(rows: F32, basis: F64, out_p: F32, out_r: F32) -> None:
    """``out_p[i] ~ W^T rows[i]`` (float32, off by at most :func:`projection_error`) and
    ``out_r[i]`` at least the norm of the residual ``rows[i] - W W^T rows[i]``, a block
    of rows at a time: with ``e`` that error, ``|p| >= |p_stored| - e``, so
    ``|x_r|^2 = |x|^2 - |p|^2 <= |x|^2 - (|p_stored| - e)^2``, and ``|x|^2`` is taken
    rounded up by its own float32 error."""
    d, width = basis.shape
    w32 = basis.astype(np.float32)
    error = projection_error(d, width)
    grow = 1.0 + _gamma(d)
    for lo in range(0, len(rows), _BLOCK):
        block = rows[lo : lo + _BLOCK]
        p = block @ w32
        x2 = np.einsum("ij,ij->i", block, block).astype(np.float64) * grow + 1e-12
        pnorm = np.sqrt(np.einsum("ij,ij->i", p.astype(np.float64), p.astype(np.float64)))
        kept = np.maximum(pnorm - error, 0.0)
        r = np.sqrt(np.maximum(x2 - kept * kept, 0.0))
        out_p[lo : lo + len(block)] = p
        out_r[lo : lo + len(block)] = np.nextafter(r.astype(np.float32), np.float32(np.inf))


def query_parts(query: F32, basis: F64) -> tuple[F32, float]:
    """``(W^T q, |q_r|)`` of a unit query (float64, the norm rounded up)."""
    q = query.astype(np.float64)
    qp = q @ basis
    residual = float(np.sqrt(max(float(q @ q) - float(qp @ qp), 0.0) + 1e-12))
    return qp.astype(np.float32), residual


def locality_order(projected: F32, bits: int = 10) -> npt.NDArray[np.int64]:
    """A row order that keeps rows with similar projections together: by the signs of
    their first ``bits`` projected coordinates (the top principal directions), then
    by their first coordinate. A search scores exactly the rows near the query, so in
    this order those rows are close together in memory (fewer pages, sequential reads).
    Only speed depends on it."""
    if not len(projected):
        return np.empty(0, dtype=np.int64)
    width = min(bits, projected.shape[1])
    weights = (1 << np.arange(width, dtype=np.int64))[::-1]
    cells = (projected[:, :width] > 0).astype(np.int64) @ weights
    order: npt.NDArray[np.int64] = np.lexsort((projected[:, 0], cells)).astype(np.int64)
    return order
