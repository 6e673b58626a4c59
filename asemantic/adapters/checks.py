"""Checks every store applies before it writes or searches: vector blobs and ``k``.

Decisions: these checks import no engine, so every store refuses the same inputs with
the same typed errors (:class:`~asemantic.errors.InvalidVectorError` for a bad blob,
:class:`~asemantic.errors.InvalidInputError` for a bad ``k``), before anything is
written. They are the engine-neutral copies of ``asemantic.adapters.sqlite.blobs`` and
of ``check_k``/``MAX_K`` in ``asemantic.adapters.sqlite.search``, which can import them
instead.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from asemantic.domain.space import EmbeddingSpace
from asemantic.errors import InvalidInputError, InvalidVectorError

__all__ = ["MAX_K", "check_blob", "check_blobs", "check_k"]

MAX_K = 1000
"""The most hits one search may ask for."""


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
    """Check every ``(key, blob)`` pair; the error names the first bad key."""
    for key, blob in blobs:
        check_blob(blob, space, what=f"vector for {key!r}")


def check_k(k: object) -> int:
    """``k`` if it is an integer within ``1..MAX_K`` (a bool is not)."""
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise InvalidInputError(f"k must be an integer within 1..{MAX_K}, got {k!r}")
    return k
