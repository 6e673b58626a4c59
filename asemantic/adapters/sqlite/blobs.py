"""Checks on float32 vector blobs before they reach vec0."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from asemantic.domain.space import EmbeddingSpace
from asemantic.errors import InvalidVectorError

__all__ = ["check_blob", "check_blobs"]


def check_blob(blob: object, space: EmbeddingSpace | None, *, what: str = "vector") -> bytes:
    """``blob`` if it is a float32 vector of the space's dimensions, finite and non-zero.

    A zero vector has no direction: its cosine distance to anything is undefined (NULL
    in sqlite-vec), so it is refused like NaN and infinity.
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
    """Check every ``(key, blob)`` pair; the error names the first bad key."""
    for key, blob in blobs:
        check_blob(blob, space, what=f"vector for {key!r}")
