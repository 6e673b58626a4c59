"""Builders and raw inspection helpers for the SQLite store tests."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlite_vec

from asemantic.adapters.sqlite import select_driver
from asemantic.domain.documents import ChunkDraft, Document, JSONValue
from asemantic.ports import DocumentWrite
from asemantic.testing import LexicalEmbedder


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def draft(position: int, text: str, *, heading: tuple[str, ...] = ()) -> ChunkDraft:
    source = "\n".join([*heading, text])
    return ChunkDraft(
        position=position,
        text=text,
        heading_path=heading,
        vector_source=source,
        content_hash=sha(source),
        token_estimate=max(1, len(text) // 4),
    )


def make_write(
    source: str,
    texts: Sequence[str],
    *,
    embedder: LexicalEmbedder | None = None,
    ready: Sequence[int] | None = None,
    title: str | None = None,
    metadata: Mapping[str, JSONValue] | None = None,
) -> DocumentWrite:
    """A write of ``texts`` as chunks; with ``embedder``, the chunks at ``ready``
    (all by default) get vectors, the others are left PENDING."""
    drafts = [draft(i, text) for i, text in enumerate(texts)]
    vectors: dict[str, bytes] = {}
    if embedder is not None:
        chosen = range(len(drafts)) if ready is None else ready
        vectors = {drafts[i].content_hash: embedder.vector(drafts[i].vector_source) for i in chosen}
    document = Document(
        text="\n\n".join(texts), source=source, title=title, metadata=dict(metadata or {})
    )
    return DocumentWrite(
        document=document,
        content_hash=sha(source + "\x00" + "\x00".join(texts)),
        drafts=drafts,
        vectors=vectors,
    )


def unit(values: Sequence[float] | npt.NDArray[Any]) -> bytes:
    array = np.asarray(values, dtype="<f4")
    return bytes((array / np.linalg.norm(array)).astype("<f4").tobytes())


@contextmanager
def raw(path: Path) -> Iterator[Any]:
    """A plain synchronous connection with sqlite-vec, for looking inside the file."""
    driver = select_driver()
    conn = driver.module.connect(str(path), isolation_level=None)
    try:
        conn.enable_load_extension(True)
        sqlite_vec.load(conn)
        conn.enable_load_extension(False)
        conn.execute("PRAGMA foreign_keys = ON")
        yield conn
    finally:
        conn.close()


def scalar(path: Path, sql: str, params: Sequence[object] = ()) -> Any:
    with raw(path) as conn:
        return conn.execute(sql, tuple(params)).fetchone()[0]


def vector_ids(path: Path) -> list[int]:
    with raw(path) as conn:
        return sorted(int(r[0]) for r in conn.execute("SELECT rowid FROM vec_chunks"))


def statuses(path: Path) -> dict[int, str]:
    with raw(path) as conn:
        rows = conn.execute("SELECT id, embedding_status FROM chunks").fetchall()
    return {int(i): str(s) for i, s in rows}
