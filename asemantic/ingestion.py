"""Ingestion: from a document to stored chunks (and vectors, in sync mode).

The order of work keeps the "bad input changes nothing" contract: everything that can
be refused (text, metadata, mode, chunk sizes, a missing batch key) is checked in pure
code first; embedding (sync mode) happens next; the store then writes the document, its
chunks and their vectors in one transaction. A failure anywhere before that transaction
commits leaves the database as it was.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncGenerator, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path

from asemantic.domain.chunking import splitter_for
from asemantic.domain.context import (
    ContextStrategy,
    TitleHeadingContext,
    drafts_of_clean,
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
from asemantic.domain.space import EmbeddingSpace
from asemantic.domain.text import check_name, clean_text
from asemantic.domain.tokens import approximate_tokens
from asemantic.errors import InputFileError
from asemantic.keys import GoogleKeyring
from asemantic.ports import DocumentWrite, Embedder, EmbedRequest, Store

__all__ = [
    "Ingestor",
    "MARKDOWN_SUFFIXES",
    "PARALLEL_MIN_CHARS",
    "PreparedDocument",
    "TEXT_SUFFIXES",
    "prepare_document",
    "read_document",
]

logger = logging.getLogger(__name__)

MARKDOWN_SUFFIXES = frozenset({".md", ".markdown", ".mdown", ".mkd"})
TEXT_SUFFIXES = frozenset({".txt", ".text"})


PARALLEL_MIN_CHARS = 2_000_000
"""How much text :meth:`Ingestor.ingest_many` needs before it starts a worker process
(starting one and importing asemantic there takes about a third of a second)."""


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
        """Check and split ``document`` (pure work: no I/O)."""
        return prepare_document(
            document,
            kind=kind,
            target_tokens=self.target_tokens,
            max_tokens=self.max_tokens,
            context=self.context,
            space=self.embedder.space,
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
        return await self._store_prepared(self.prepare(document, kind=kind), mode=mode)

    async def ingest_many(
        self,
        items: Sequence[tuple[Document, str]],
        *,
        mode: str | IngestMode,
        worker: bool = False,
        parallel_min_chars: int | None = None,
    ) -> AsyncGenerator[IngestResult, None]:
        """:meth:`ingest` of each ``(document, kind)`` in turn, yielding the results in
        order; a failure is raised when its document's turn comes (the documents before
        it are stored, none after it). The results are those of one :meth:`ingest`
        after another.

        With ``worker=True``, a spare CPU (more than one, and a load average below one
        less than their number) and at least ``parallel_min_chars`` characters of text
        (default :data:`PARALLEL_MIN_CHARS`), documents are split ahead of their writes
        in a worker process, so one core splits while the other writes; a document the
        worker has not started when its turn comes (or while the worker is busy with
        the one whose turn it is) is split here. The worker is started with
        multiprocessing's ``spawn``, which imports the program's main module again: a
        script must keep its work under ``if __name__ == "__main__":`` (the command
        line does).
        """
        ahead = _Ahead(self, items, worker=worker, parallel_min_chars=parallel_min_chars)
        try:
            for index in range(len(items)):
                yield await self._store_prepared(await ahead.get(index), mode=mode)
        finally:
            ahead.close()

    async def _store_prepared(
        self, prepared: PreparedDocument, *, mode: str | IngestMode
    ) -> IngestResult:
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


def prepare_document(
    document: Document,
    *,
    kind: str,
    target_tokens: int,
    max_tokens: int,
    context: ContextStrategy,
    space: EmbeddingSpace | None = None,
) -> PreparedDocument:
    """:meth:`Ingestor.prepare` as a function (a worker process runs it); ``space``
    decides the input limit and any task prefix the chunks are checked with."""
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
    splitter = splitter_for(kind, target_tokens=target_tokens, max_tokens=max_tokens)
    drafts = tuple(drafts_of_clean(clean, text, splitter=splitter, context=context, space=space))
    return PreparedDocument(
        document=clean,
        drafts=drafts,
        content_hash=document_hash(clean, pipeline=pipeline_fingerprint(splitter, context)),
        tokens=sum(draft.token_estimate for draft in drafts),
    )


def _spare_cpu() -> bool:
    """Whether another core is free for a worker: more than one CPU, and a load
    average below one less than their number (on a machine whose cores are all busy,
    a worker only adds its start-up and the pickling of documents, measured)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        cpus = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # not on every platform
        load = 0.0
    return cpus > 1 and load < cpus - 1


class _Ahead:
    """The prepared documents of :meth:`Ingestor.ingest_many`, made ahead of their turn.

    Each slot holds a worker's future, or the outcome (a prepared document, or the
    exception preparing it raised) once known. The worker is fed in order; a slot
    whose future has not started is taken back (cancelled) and prepared here, so the
    two processes share the work without ever reordering the writes.
    """

    def __init__(
        self,
        ingestor: Ingestor,
        items: Sequence[tuple[Document, str]],
        *,
        worker: bool,
        parallel_min_chars: int | None,
    ) -> None:
        if parallel_min_chars is None:
            parallel_min_chars = PARALLEL_MIN_CHARS
        self._ingestor = ingestor
        self._items = items
        self._slots: list[Future[PreparedDocument] | PreparedDocument | Exception | None]
        self._slots = [None] * len(items)
        self._pool: Executor | None = None
        parallel = (
            worker
            and len(items) > 1
            and _spare_cpu()
            and type(ingestor.context) is TitleHeadingContext
            and sum(len(document.text) for document, _ in items) >= parallel_min_chars
        )
        if parallel:
            # Imported here: multiprocessing costs a few tens of milliseconds to import.
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            try:
                self._pool = ProcessPoolExecutor(
                    max_workers=1,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_follow_parent,
                    initargs=(os.getpid(),),
                )
                for index, (document, kind) in enumerate(items):
                    self._slots[index] = self._pool.submit(
                        prepare_document,
                        document,
                        kind=kind,
                        target_tokens=ingestor.target_tokens,
                        max_tokens=ingestor.max_tokens,
                        context=ingestor.context,
                        space=ingestor.embedder.space,
                    )
            except (OSError, RuntimeError):  # no process to be had: all of it here
                self.close()
                self._slots = [None] * len(items)

    def _here(self, index: int) -> None:
        document, kind = self._items[index]
        try:
            self._slots[index] = self._ingestor.prepare(document, kind=kind)
        except Exception as exc:  # noqa: BLE001 - raised when the document's turn comes
            self._slots[index] = exc

    def _take_back(self, index: int) -> bool:
        """Prepare slot ``index`` here if the worker has not started it."""
        slot = self._slots[index]
        if slot is None or (isinstance(slot, Future) and slot.cancel()):
            self._here(index)
            return True
        return False

    async def get(self, index: int) -> PreparedDocument:
        """The prepared document ``index`` (or the exception preparing it raised)."""
        while True:
            slot = self._slots[index]
            if isinstance(slot, Future):
                if slot.done():
                    self._slots[index] = _outcome(slot)
                    continue
                if self._take_back(index):
                    continue
                # The worker is on it: prepare a later one meanwhile, else wait.
                if any(self._take_back(later) for later in self._later(index)):
                    continue
                await asyncio.wait([asyncio.wrap_future(slot)])
                continue
            if slot is None:
                self._here(index)
                continue
            if isinstance(slot, Exception):
                raise slot
            return slot

    def _later(self, index: int) -> Iterator[int]:
        for later in range(index + 1, len(self._slots)):
            slot = self._slots[later]
            if isinstance(slot, Future) and not slot.done() and not slot.running():
                yield later
                return

    def close(self) -> None:
        """Stop the worker (work not started is dropped)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _follow_parent(parent: int) -> None:
    """In the worker: exit when the process that started it is gone (killed, say): a
    pool's worker waits for work forever otherwise, as it holds its queue's both ends."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="asemantic-parent-watch", daemon=True).start()


def _outcome(future: Future[PreparedDocument]) -> PreparedDocument | Exception | None:
    """A finished future's outcome; None when the worker died (prepare it here)."""
    from concurrent.futures.process import BrokenProcessPool

    try:
        return future.result()
    except BrokenProcessPool:
        return None
    except Exception as exc:  # noqa: BLE001 - raised, without the worker's traceback, in its turn
        exc.__cause__ = None
        exc.__suppress_context__ = True
        return exc


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
