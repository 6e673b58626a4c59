"""Ingestion: from a document to stored chunks (and vectors, in sync mode).

The order of work keeps the "bad input changes nothing" contract: everything that can
be refused (text, metadata, mode, chunk sizes, a missing batch key) is checked in pure
code first; embedding (sync mode) happens next; the store then writes the document, its
chunks and their vectors in one transaction. A failure anywhere before that transaction
commits leaves the database as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from asemantic.domain.chunking import splitter_for
from asemantic.domain.context import (
    ContextStrategy,
    TitleHeadingContext,
    build_drafts,
    pipeline_fingerprint,
)
from asemantic.domain.documents import (
    ChunkDraft,
    Document,
    EmbeddingStatus,
    IngestMode,
    IngestResult,
    JSONValue,
)
from asemantic.domain.hashing import document_hash, validate_metadata
from asemantic.domain.policy import choose_mode, parse_mode, require_batch_key
from asemantic.domain.text import check_name, clean_text
from asemantic.domain.tokens import approximate_tokens
from asemantic.errors import InputFileError
from asemantic.keys import GoogleKeyring
from asemantic.ports import DocumentWrite, Embedder, EmbedRequest, Store

__all__ = [
    "Ingestor",
    "MARKDOWN_SUFFIXES",
    "PreparedDocument",
    "TEXT_SUFFIXES",
    "read_document",
]

logger = logging.getLogger(__name__)

MARKDOWN_SUFFIXES = frozenset({".md", ".markdown", ".mdown", ".mkd"})
TEXT_SUFFIXES = frozenset({".txt", ".text"})


@dataclass(frozen=True, slots=True, kw_only=True)
class PreparedDocument:
    """A checked document cut into chunk drafts, with its hash (no I/O yet)."""

    document: Document
    drafts: tuple[ChunkDraft, ...]
    content_hash: str
    tokens: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Ingestor:
    """Turns documents into stored chunks for one store and one embedder."""

    store: Store
    embedder: Embedder
    keys: GoogleKeyring | None
    target_tokens: int
    max_tokens: int
    auto_batch_min_tokens: int
    context: ContextStrategy = field(default_factory=TitleHeadingContext)

    def prepare(self, document: Document, *, kind: str) -> PreparedDocument:
        check_name(document.source, what="a document's source")
        if document.title is not None:
            check_name(document.title, what="a document's title")
        text = clean_text(document.text, what=f"document {document.source!r}")
        clean = Document(
            text=text,
            source=document.source,
            title=document.title if document.title is not None else _title_of(text, kind),
            metadata=validate_metadata(document.metadata),
        )
        splitter = splitter_for(kind, target_tokens=self.target_tokens, max_tokens=self.max_tokens)
        drafts = tuple(
            build_drafts(clean, splitter=splitter, context=self.context, space=self.embedder.space)
        )
        return PreparedDocument(
            document=clean,
            drafts=drafts,
            content_hash=document_hash(
                clean, pipeline=pipeline_fingerprint(splitter, self.context)
            ),
            tokens=sum(draft.token_estimate for draft in drafts),
        )

    def decide_mode(
        self, requested: str | IngestMode, prepared: PreparedDocument
    ) -> tuple[IngestMode, str]:
        mode = parse_mode(requested)
        has_batch_key = self.keys is not None and self.keys.has_batch_key
        if mode is IngestMode.ASYNC:
            require_batch_key(self.keys)
        return choose_mode(
            mode,
            has_batch_key=has_batch_key,
            tokens=prepared.tokens,
            chunks=len(prepared.drafts),
            auto_batch_min_tokens=self.auto_batch_min_tokens,
        )

    async def ingest(
        self, document: Document, *, mode: str | IngestMode, kind: str = "markdown"
    ) -> IngestResult:
        prepared = self.prepare(document, kind=kind)
        chosen, reason = self.decide_mode(mode, prepared)
        snapshot = await self.store.get_document(prepared.document.source)
        if snapshot is not None and snapshot.content_hash == prepared.content_hash:
            return IngestResult(
                document_id=snapshot.document_id,
                chunks_stored=0,
                chunks_unchanged=len(snapshot.chunks),
                chunks_removed=0,
                mode=chosen,
                mode_reason="unchanged: nothing to embed",
            )
        kept = {
            chunk.content_hash
            for chunk in (snapshot.chunks if snapshot is not None else ())
            if chunk.status is not EmbeddingStatus.FAILED
        }
        vectors: dict[str, bytes] = {}
        tokens_embedded = 0
        if chosen is IngestMode.SYNC:
            todo: dict[str, ChunkDraft] = {}
            for draft in prepared.drafts:
                if draft.content_hash not in kept:
                    todo.setdefault(draft.content_hash, draft)
            if todo:
                requests = [
                    EmbedRequest(text=d.vector_source, title=prepared.document.title)
                    for d in todo.values()
                ]
                blobs = await self.embedder.embed_documents(requests)
                vectors = dict(zip(todo, blobs, strict=True))
                # Counted as sent: with a task prefix for a model that takes one.
                space = self.embedder.space
                model = space.embedding_model
                tokens_embedded = sum(
                    approximate_tokens(
                        model.document_input(r.text, title=r.title, task_type=space.task_type).text
                    )
                    for r in requests
                )
                await self.store.record_usage("online", texts=len(requests), tokens=tokens_embedded)
        outcome = await self.store.write_document(
            DocumentWrite(
                document=prepared.document,
                content_hash=prepared.content_hash,
                drafts=prepared.drafts,
                vectors=vectors,
            )
        )
        logger.debug("document ingested")
        return IngestResult(
            document_id=outcome.document_id,
            chunks_stored=outcome.stored,
            chunks_unchanged=outcome.unchanged,
            chunks_removed=outcome.removed,
            chunks_pending=outcome.pending,
            mode=chosen,
            mode_reason=reason,
            tokens_embedded=tokens_embedded,
        )


def read_document(
    path: Path, *, title: str | None, metadata: Mapping[str, JSONValue] | None
) -> tuple[Document, str]:
    """Read a Markdown or text file (blocking: run it in a thread). Returns (doc, kind)."""
    suffix = path.suffix.lower()
    if suffix in MARKDOWN_SUFFIXES:
        kind = "markdown"
    elif suffix in TEXT_SUFFIXES:
        kind = "plain"
    else:
        raise InputFileError(
            f"{path.name}: unsupported file type {suffix or '(none)'!r}; "
            "asemantic reads Markdown (.md, .markdown) and plain text (.txt)"
        )
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputFileError(f"{path}: is a directory, not a file") from None
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read ({exc.strerror})") from None
    text = clean_text(data, what=f"file {path.name}")
    return (
        Document(
            text=text,
            source=str(path.resolve()),
            title=title or _title_of(text, kind) or path.stem,
            metadata=dict(metadata or {}),
        ),
        kind,
    )


def _title_of(text: str, kind: str) -> str | None:
    if kind != "markdown":
        return None
    for line in _first_lines(text, 50):
        stripped = line.strip()
        if stripped.startswith("# "):
            return stripped[2:].strip() or None
    return None


def _first_lines(text: str, count: int) -> list[str]:
    """``text.splitlines()[:count]`` without splitting the whole text: a prefix is
    split, and grown until it holds ``count`` complete lines (or is the whole text)."""
    size = 4096
    while True:
        lines = text[:size].splitlines()
        if len(lines) > count or size >= len(text):
            return lines[:count]
        size *= 4
