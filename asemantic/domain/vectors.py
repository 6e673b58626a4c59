"""Vectors travel through asemantic as little-endian float32 blobs (what sqlite-vec stores)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from asemantic.errors import InvalidVectorError

__all__ = ["FloatArray", "normalize", "pack", "unpack"]

FloatArray = npt.NDArray[np.float32]


def pack(values: Sequence[float] | FloatArray, *, dimensions: int | None = None) -> bytes:
    """Check a vector and return it as a float32 blob."""
    array = np.asarray(values, dtype="<f4")
    if array.ndim != 1:
        raise InvalidVectorError("a vector must be one-dimensional")
    if dimensions is not None and array.shape[0] != dimensions:
        raise InvalidVectorError(
            f"vector has {array.shape[0]} dimensions, the store expects {dimensions}"
        )
    if not np.all(np.isfinite(array)):
        raise InvalidVectorError("vector holds NaN or infinity")
    return array.tobytes()


def unpack(blob: bytes) -> FloatArray:
    """A read-only float32 view of a blob."""
    if len(blob) % 4:
        raise InvalidVectorError("a float32 blob's length must be a multiple of 4")
    return np.frombuffer(blob, dtype="<f4")


def normalize(values: Sequence[float] | FloatArray) -> FloatArray:
    """L2-normalise (Gemini returns unit vectors only at 3,072 dimensions)."""
    array = np.asarray(values, dtype=np.float32)
    norm = float(np.linalg.norm(array))
    if not np.isfinite(norm) or norm == 0.0:
        raise InvalidVectorError("cannot normalise a zero or non-finite vector")
    return (array / norm).astype("<f4")
