"""Float32 vector blobs: the one codec every adapter and ``asemantic.testing`` share.

Vectors travel through asemantic as little-endian float32 blobs (what sqlite-vec stores
and what the ports carry). This module scales one to unit length and checks blobs
before any store writes or searches with them.

Decisions: it lives outside ``asemantic.domain`` because it needs NumPy, which the domain
may not import; it imports no engine, so every store refuses the same blobs with the same
:class:`~asemantic.errors.InvalidVectorError` before anything is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from asemantic.domain.space import EmbeddingSpace
from asemantic.errors import InvalidVectorError

__all__ = ["FloatArray", "check_blob", "check_blobs", "normalise"]

FloatArray = npt.NDArray[np.float32]


def normalise(values: Sequence[float] | FloatArray) -> FloatArray:
    """L2-normalise (Gemini returns unit vectors only at 3,072 dimensions)."""
    array = np.asarray(values, dtype=np.float32)
    norm = float(np.linalg.norm(array))
    if not np.isfinite(norm) or norm == 0.0:
        raise InvalidVectorError("cannot normalise a zero or non-finite vector")
    return (array / norm).astype("<f4")


def check_blob(blob: object, space: EmbeddingSpace | None, *, what: str = "vector") -> bytes:
    """``blob`` if it is a float32 vector of the space's dimensions, finite and non-zero.

    A zero vector has no direction: its cosine distance to anything is undefined (NULL
    in sqlite-vec), so it is refused like NaN and infinity. A store with no space yet
    refuses every vector.
    """
    if space is None:
        raise InvalidVectorError(
            "this store has no embedding space yet; open it with space=... to store vectors"
        )
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise InvalidVectorError(f"{what} must be a float32 blob (bytes)")
    data = bytes(blob)
    expected = space.dimensions * 4
    if len(data) != expected:
        raise InvalidVectorError(
            f"{what} has {len(data)} bytes; {space.describe()} vectors are {expected} bytes "
            f"({space.dimensions} float32 values)"
        )
    array = np.frombuffer(data, dtype="<f4")
    if not np.all(np.isfinite(array)):
        raise InvalidVectorError(f"{what} holds NaN or infinity")
    if not np.any(array):
        raise InvalidVectorError(f"{what} is the zero vector, which has no direction")
    return data


def check_blobs(blobs: Iterable[tuple[object, object]], space: EmbeddingSpace | None) -> None:
    """Check every ``(key, blob)`` pair; the error names the first bad key.

    The same checks as :func:`check_blob`, made on all the blobs at once when each is
    ``bytes`` of the right length (one NumPy pass over the slice instead of three calls
    per vector); otherwise, or when a blob fails, blob by blob, so the error is the one
    :func:`check_blob` gives for the first bad key.
    """
    pairs = blobs if isinstance(blobs, Sequence) else list(blobs)
    if not pairs:
        return
    if space is not None and _all_valid(pairs, space.dimensions):
        return
    for key, blob in pairs:
        check_blob(blob, space, what=f"vector for {key!r}")


def _all_valid(pairs: Sequence[tuple[object, object]], dimensions: int) -> bool:
    """Whether every blob is ``bytes`` of ``dimensions`` finite float32 values, not all 0."""
    size = dimensions * 4
    parts: list[bytes] = []
    for _, blob in pairs:
        if type(blob) is not bytes or len(blob) != size:
            return False
        parts.append(blob)
    matrix = np.frombuffer(b"".join(parts), dtype="<f4").reshape(len(parts), dimensions)
    return bool(np.isfinite(matrix).all()) and bool(matrix.any(axis=1).all())
