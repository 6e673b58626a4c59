"""Builders for the contract suite: drafts, document writes and hand-made vectors."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from asemantic.domain.documents import Document, JSONValue
from asemantic.domain.linekeys import line_key
from asemantic.ports import DocumentWrite, LineResult, Store
from tests.store.helpers import draft as draft  # the chunk drafts every suite builds
from tests.store.helpers import sha as sha

from .conftest import SPACE

DIMENSIONS = SPACE.dimensions


def make_write(
    source: str,
    texts: Sequence[str],
    *,
    vectors: Mapping[int, bytes] | None = None,
    title: str | None = None,
    metadata: Mapping[str, JSONValue] | None = None,
    heading: tuple[str, ...] = (),
) -> DocumentWrite:
    """A write of ``texts`` as chunks at positions 0, 1, ...; ``vectors`` maps a
    position to its vector (those chunks are stored READY, the others PENDING)."""
    drafts = [draft(i, text, heading=heading) for i, text in enumerate(texts)]
    by_hash = {drafts[i].content_hash: blob for i, blob in (vectors or {}).items()}
    document = Document(
        text="\n\n".join(texts), source=source, title=title, metadata=dict(metadata or {})
    )
    return DocumentWrite(
        document=document,
        content_hash=sha(source + "\x00" + "\x00".join(texts)),
        drafts=drafts,
        vectors=by_hash,
    )


def vec(*values: float) -> bytes:
    """A float32 blob of :data:`DIMENSIONS` values: ``values`` first, zeros after."""
    array = np.zeros(DIMENSIONS, dtype="<f4")
    array[: len(values)] = values
    return array.tobytes()


def angle(degrees: float, *, scale: float = 1.0) -> bytes:
    """A vector in the plane of the first two axes, ``degrees`` away from axis 0; its
    cosine distance to axis 0 is ``1 - cos(degrees)`` whatever its length."""
    radians = math.radians(degrees)
    return vec(scale * math.cos(radians), scale * math.sin(radians))


def cosine_distance(degrees: float) -> float:
    return 1.0 - math.cos(math.radians(degrees))


AXIS = vec(1.0)
"""The query of most searches: axis 0."""


async def chunk_ids(store: Store, source: str) -> list[int]:
    """The chunk ids of a document, by position."""
    snapshot = await store.get_document(source)
    assert snapshot is not None
    return [chunk.chunk_id for chunk in snapshot.chunks]


def ok_line(chunk_id: int, text: str, vector: bytes, *, tokens: int | None = None) -> LineResult:
    return LineResult(key=line_key(chunk_id, sha(text)), vector=vector, token_count=tokens)


def error_line(chunk_id: int, text: str, *, code: int, status: str) -> LineResult:
    return LineResult(
        key=line_key(chunk_id, sha(text)),
        error_code=code,
        error_status=status,
        error_message="went wrong",
    )
