"""The facade users hold: :class:`SemanticCore`.

It is thin on purpose: it wires a store, an embedder and (for async mode) a batch
backend together, then delegates: ingestion to :mod:`asemantic.ingestion`, search to the
store, deferred embedding to :attr:`SemanticCore.batch_manager`. It knows the engines
only through the ports (:mod:`asemantic.ports`): which engine holds the database is
decided by :func:`asemantic.adapters.factory.open_store` from the target's form.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncGenerator, Generator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from asemantic.adapters.checks import MAX_K
from asemantic.adapters.factory import StoreOptions, open_store
from asemantic.batch.manager import BatchManager
from asemantic.config import CoreConfig, GeminiSettings
from asemantic.domain.documents import (
    Document,
    EmbeddingStatus,
    IngestMode,
    IngestResult,
    JSONValue,
    SearchHit,
)
from asemantic.domain.fusion import Fusion, SearchMode, fuse, is_identifier_query, parse_mode
from asemantic.domain.hashing import validate_metadata
from asemantic.domain.keywords import query_terms
from asemantic.domain.policy import parse_mode as parse_ingest_mode
from asemantic.domain.policy import require_batch_key
from asemantic.domain.pricing import CostReport, Pricing, cost_report
from asemantic.domain.space import EmbeddingSpace
from asemantic.domain.spaces import MigrationPlan, SpaceRecord
from asemantic.domain.text import check_name, validate_query
from asemantic.domain.tokens import approximate_tokens
from asemantic.errors import InvalidInputError, SpaceSwitchedError, StoreClosedError
from asemantic.ingestion import Ingestor, read_document
from asemantic.keys import GoogleKeyring
from asemantic.migration import SpaceCommands, SpaceStatus, SwitchOutcome
from asemantic.ports import (
    BatchBackend,
    Embedder,
    EmbedRequest,
    JobStore,
    SearchFilters,
    Store,
    SupportsSpaces,
)

__all__ = ["CoreStats", "SemanticCore", "merge_hits"]

logger = logging.getLogger(__name__)

_KINDS = ("markdown", "plain")


@dataclass(frozen=True, slots=True, kw_only=True)
class CoreStats:
    """What :meth:`SemanticCore.stats` reports."""

    documents: int
    chunks: Mapping[str, int]
    jobs: Mapping[str, int]
    cost: CostReport


class SemanticCore:
    """Documents in, semantic search out, all in one database.

    Open it with ``async with SemanticCore.open("kb.db", keys=keys) as core:`` (or
    ``core = await SemanticCore.open(...)`` and later ``await core.aclose()``).
    """

    def __init__(
        self,
        *,
        store: Store,
        embedder: Embedder,
        keys: GoogleKeyring | None,
        config: CoreConfig,
        gemini: GeminiSettings,
        owns_embedder: bool,
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._keys = keys
        self._config = config
        self._gemini = gemini
        self._owns_embedder = owns_embedder
        self._closed = False
        self._query_tokens = 0
        self._following = asyncio.Lock()
        self._retired: list[Embedder] = []
        self._manager: BatchManager | None = None
        self._spaces = SpaceCommands(
            store=store,
            keys=keys,
            backend_factory=self._batch_backend_for,
            pricing=config.pricing,
            create_grace=config.create_grace_seconds,
            hooks=lambda: self.batch_manager.hooks,
        )
        self._ingestor = Ingestor(
            store=store,
            embedder=embedder,
            keys=keys,
            target_tokens=config.target_tokens,
            max_tokens=config.max_tokens,
            auto_batch_min_tokens=config.auto_batch_min_tokens,
        )

    @classmethod
    def open(
        cls,
        target: str | os.PathLike[str] | Store,
        *,
        keys: GoogleKeyring | None = None,
        embedder: Embedder | None = None,
        config: CoreConfig | None = None,
        gemini: GeminiSettings | None = None,
    ) -> _Opening:
        """Open (creating if needed) the database at ``target``.

        ``target`` is a SQLite file path (the embedded default), ``":memory:"`` (an
        in-memory database, gone when closed) or a :class:`~asemantic.ports.Store` you
        built (the core then closes it); the engine is chosen from its form.
        Without ``embedder``, a :class:`GeminiEmbedder` on ``keys.default`` is used, in
        the space of ``config.space``. With one, the embedder's space rules.
        """
        return _Opening(
            cls,
            target,
            keys=keys,
            embedder=embedder,
            config=config or CoreConfig(),
            gemini=gemini or GeminiSettings(),
        )

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"SemanticCore({state}, space={self.space.describe()!r})"

    @property
    def space(self) -> EmbeddingSpace:
        return self._embedder.space

    @property
    def store(self) -> Store:
        """The database's documents, chunks and vectors (the engine behind the port)."""
        return self._store

    @property
    def embedder(self) -> Embedder:
        embedder = self._embedder
        if isinstance(embedder, _DeferredGeminiEmbedder):
            return embedder.built()
        return embedder

    @property
    def keys(self) -> GoogleKeyring | None:
        return self._keys

    @property
    def config(self) -> CoreConfig:
        return self._config

    @property
    def pricing(self) -> Pricing:
        """The prices costs are reported at: ``config.pricing``, or when that is None
        the list prices of the space's model (:meth:`Pricing.for_model`)."""
        if self._config.pricing is not None:
            return self._config.pricing
        return Pricing.for_model(self.space.model)

    @property
    def gemini(self) -> GeminiSettings:
        return self._gemini

    @property
    def batch_jobs(self) -> JobStore:
        """The batch job records of this database."""
        return self._store.jobs

    @property
    def batch_manager(self) -> BatchManager:
        """The :class:`~asemantic.batch.manager.BatchManager` of this database.

        Its operations need a batch key: without one they raise
        ``ValueError("Batch operations require a dedicated API key")``.
        """
        self._check_open()
        if self._manager is None:
            self._manager = BatchManager(
                jobs=self._store.jobs,
                backend_factory=self._make_batch_backend,
                keys=self._keys,
                create_grace=self._config.create_grace_seconds,
            )
        return self._manager

    def _make_batch_backend(self) -> BatchBackend:
        # The manager drives space 1's jobs: space 1's model, whichever space is active.
        home = getattr(self._store, "home_space", None)
        return self._batch_backend_for(home if isinstance(home, EmbeddingSpace) else self.space)

    def _batch_backend_for(self, space: EmbeddingSpace) -> BatchBackend:
        keys = self._keys
        require_batch_key(keys)
        assert keys is not None
        from asemantic.adapters.gemini.batch import GeminiBatchClient  # see _open

        return GeminiBatchClient(
            keys,
            space=space,
            base_url=self._gemini.base_url,
            retry=self._gemini.retry,
            transport=self._gemini.transport,
            http_client=self._gemini.http_client,
        )

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("this SemanticCore is closed")

    async def ingest(
        self,
        document: Document | str,
        *,
        mode: str | IngestMode = IngestMode.SYNC,
        source: str | None = None,
        title: str | None = None,
        metadata: Mapping[str, JSONValue] | None = None,
        kind: str = "markdown",
    ) -> IngestResult:
        """Store a document's chunks; embed them now (``sync``), later (``async``) or per
        the ``auto`` rule. A plain string needs ``source=`` (its identity)."""
        self._check_open()
        if kind not in _KINDS:
            raise InvalidInputError(f"unknown kind {kind!r}; use one of {', '.join(_KINDS)}")
        if isinstance(document, str):
            if source is None:
                raise InvalidInputError("ingesting a plain string needs source= (its identity)")
            document = Document(text=document, source=source, title=title, metadata=metadata or {})
        elif not isinstance(document, Document):
            raise InvalidInputError(
                f"ingest takes a Document or a str, not {type(document).__name__}"
            )
        await self._follow_switch(embeds=parse_ingest_mode(mode) is not IngestMode.ASYNC)
        return await self._ingestor.ingest(document, mode=mode, kind=kind)

    async def _both_lists(
        self,
        vector: bytes,
        terms: Sequence[str],
        depth: int,
        filters: SearchFilters | None,
    ) -> tuple[list[SearchHit], list[SearchHit]]:
        """The vector and keyword lists of a hybrid search, searched at the same time
        (the vector scan runs on a worker thread or in the database while the keyword
        search runs), each error raised as it is; the other search is cancelled."""
        if not terms:
            return await self._store.search(vector, k=depth, filters=filters), []
        by_vector = asyncio.ensure_future(self._store.search(vector, k=depth, filters=filters))
        try:
            by_keyword = await self._store.keyword_search(terms, k=depth, filters=filters)
            return await by_vector, by_keyword
        except BaseException:
            if not by_vector.done():
                by_vector.cancel()
            with contextlib.suppress(BaseException):
                await by_vector  # nothing left running, no error left unretrieved
            raise

    async def ingest_many(
        self,
        items: Sequence[tuple[Document, str]],
        *,
        mode: str | IngestMode = IngestMode.SYNC,
        worker: bool = False,
    ) -> AsyncGenerator[IngestResult, None]:
        """:meth:`ingest` of each ``(document, kind)`` in turn, yielding the results in
        order. With ``worker=True`` large inputs are split ahead, in a worker process,
        while this one writes (see :meth:`asemantic.ingestion.Ingestor.ingest_many`: the
        program's main module must be safe to import again). A failure is
        raised in its document's turn: the documents before it are stored, none after
        it. Items that are not a (Document, kind) pair are refused before any work.
        Use it with :func:`contextlib.aclosing` when you may stop early."""
        self._check_open()
        for item in items:
            if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], Document)):
                raise InvalidInputError("ingest_many takes (Document, kind) pairs")
            if item[1] not in _KINDS:
                kinds = ", ".join(_KINDS)
                raise InvalidInputError(f"unknown kind {item[1]!r}; use one of {kinds}")
        await self._follow_switch(embeds=parse_ingest_mode(mode) is not IngestMode.ASYNC)
        stream = self._ingestor.ingest_many(items, mode=mode, worker=worker)
        async with contextlib.aclosing(stream) as results:
            async for result in results:
                yield result

    async def ingest_file(
        self,
        path: str | os.PathLike[str],
        *,
        mode: str | IngestMode = IngestMode.SYNC,
        title: str | None = None,
        metadata: Mapping[str, JSONValue] | None = None,
    ) -> IngestResult:
        """Ingest a Markdown (``.md``) or plain-text (``.txt``) file; its source is its
        absolute path, its title the first ``# heading`` or the file name."""
        self._check_open()
        document, kind = await asyncio.to_thread(
            read_document, Path(path), title=title, metadata=metadata
        )
        await self._follow_switch(embeds=parse_ingest_mode(mode) is not IngestMode.ASYNC)
        return await self._ingestor.ingest(document, mode=mode, kind=kind)

    async def search(
        self,
        query: str,
        *,
        k: int = 10,
        filters: SearchFilters | Mapping[str, object] | None = None,
        mode: str | SearchMode = SearchMode.HYBRID,
        fusion: Fusion | None = None,
    ) -> list[SearchHit]:
        """The ``k`` chunks that best match ``query``, best first.

        ``mode``: ``"hybrid"`` (the default) fuses a vector search and a keyword
        (BM25) search by weighted reciprocal rank fusion (``fusion``, else
        ``config.fusion``: see :mod:`asemantic.domain.fusion`); ``"vector"`` ranks the
        READY chunks by cosine distance alone; ``"keyword"`` ranks every chunk, even
        one whose vector is still PENDING, by BM25 alone, and never embeds the query.
        Each hit says which list(s) found it and its rank there (``vector_rank``,
        ``keyword_rank``, ``found_by``) and its ``embedding_status``.

        ``filters`` restricts by document (``{"document_id": 3}``, ``{"source": "a.md"}``),
        by its stamps (``{"created_at": {"$gte": "2025-01-01T00:00:00Z"}}``) or by its
        metadata (any other key: ``{"lang": "en"}``, ``{"year": {"$gte": 2020}}``), in
        every mode; see :mod:`asemantic.domain.filters` for the operators. Bad input (a
        malformed filter too) raises :class:`InvalidInputError` before anything is sent.
        """
        self._check_open()
        chosen = parse_mode(mode)
        await self._follow_switch(embeds=chosen is not SearchMode.KEYWORD)
        model = self.space.embedding_model
        if fusion is not None and not isinstance(fusion, Fusion):
            raise InvalidInputError("fusion must be a Fusion")
        weights = fusion or self._config.fusion
        text = validate_query(
            query,
            max_tokens=model.max_input_tokens,
            as_sent=lambda q: model.query_input(q).text,
        )
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self._config.max_search_k:
            raise InvalidInputError(f"k must be an integer within 1..{self._config.max_search_k}")
        if filters is not None:
            filters = _checked_filters(filters)
        terms = query_terms(text)
        if chosen is SearchMode.KEYWORD:
            if not terms:
                raise InvalidInputError("the query has no words to search for by keyword")
            return await self._store.keyword_search(terms, k=k, filters=filters)
        vector = await self._embedder.embed_query(text)
        self._query_tokens += approximate_tokens(model.query_input(text).text)
        if chosen is SearchMode.VECTOR:
            hits = await self._store.search(vector, k=k, filters=filters)
            return [_ranked_vector_hit(rank, hit) for rank, hit in enumerate(hits, 1)]
        depth = max(k, min(weights.depth(k), MAX_K))
        by_vector, by_keyword = await self._both_lists(vector, terms, depth, filters)
        led = weights.identifiers == "keyword" and is_identifier_query(text)
        return merge_hits(by_vector, by_keyword, k=k, fusion=weights, keyword_led=led)

    async def stats(self) -> CoreStats:
        """Documents, chunks by status, jobs by state, tokens and cost per route.

        Online and batch tokens are counted over the life of the database; query
        tokens since this core was opened (search never writes to the database).
        """
        self._check_open()
        stats = await self._store.stats()
        tokens = dict(stats.tokens)
        tokens["query"] = tokens.get("query", 0) + self._query_tokens
        return CoreStats(
            documents=stats.documents,
            chunks=dict(stats.chunks),
            jobs=dict(stats.jobs),
            cost=cost_report(tokens, self.pricing),
        )

    async def delete_document(self, source: str) -> bool:
        """Delete a document, its chunks and their vectors. True if it existed."""
        self._check_open()
        return await self._store.delete_document(check_name(source, what="source"))

    # --- embedding spaces (asemantic.domain.spaces) ------------------------------------

    async def space_plan(self, target: EmbeddingSpace) -> MigrationPlan:
        """A dry run of migrating to ``target``: chunks and tokens to embed, the cost at
        the batch and the online price, a time estimate. Nothing is written."""
        self._check_open()
        return await self._spaces.plan(_checked_space(target))

    async def space_migrate(self, target: EmbeddingSpace) -> SpaceRecord:
        """Register ``target`` and queue every chunk for it; a supervisor embeds them
        through the Batch API. Searches keep using the active space meanwhile, and
        documents ingested meanwhile are queued for ``target`` too."""
        self._check_open()
        return await self._spaces.migrate(_checked_space(target))

    async def space_status(self) -> list[SpaceStatus]:
        """Every space: state, progress, jobs by status, cost so far."""
        self._check_open()
        return await self._spaces.status()

    async def space_switch(
        self, space_id: int, *, force: bool = False, embedder: Embedder | None = None
    ) -> SwitchOutcome:
        """Make ``space_id`` the active space (one atomic write). Refused
        (:class:`~asemantic.errors.SpaceIncompleteError`) while it lacks vectors for
        some chunk, unless ``force``: then searches see only the chunks it has.

        Queries are embedded in the new space from then on: by a new Gemini embedder
        when this core made its own, else by ``embedder`` (required then, of that space).
        """
        self._check_open()
        self._check_can_switch(embedder)
        outcome = await self._spaces.switch(_checked_id(space_id), force=force)
        return await self._switched(outcome, embedder)

    async def space_rollback(
        self, *, force: bool = False, embedder: Embedder | None = None
    ) -> SwitchOutcome:
        """Switch back to the space active before the current one (while its vectors
        remain: a dropped space cannot come back)."""
        self._check_open()
        self._check_can_switch(embedder)
        return await self._switched(await self._spaces.rollback(force=force), embedder)

    async def space_drop(self, space_id: int) -> int:
        """Delete a standby space's vectors and retire it; how many vectors went. The
        active space cannot be dropped."""
        self._check_open()
        return await self._spaces.drop(_checked_id(space_id))

    async def space_managers(self) -> list[BatchManager]:
        """The batch managers of the spaces other than 1 with work to do (the
        supervisor runs each after space 1's own pass)."""
        self._check_open()
        return await self._spaces.managers()

    async def _follow_switch(self, *, embeds: bool) -> None:
        """Follow a switch of the active space made elsewhere (another core, another
        process): read the pointer (one indexed read) and, when it moved, embed in the
        new space from now on. A core given its embedder cannot build one: it refuses
        what would embed (:class:`SpaceSwitchedError`) and serves the rest."""
        store = self._store
        if not isinstance(store, SupportsSpaces):
            return
        active = await store.reload_active_space()
        if active is None or active == self._embedder.space:
            return
        if not self._owns_embedder:
            if embeds:
                raise SpaceSwitchedError(
                    f"the knowledge base now searches space {store.active_space_id} "
                    f"({active.describe()}), switched elsewhere; this core's embedder is of "
                    f"{self._embedder.space.describe()}: reopen it with an embedder of the "
                    "active space",
                    space_id=store.active_space_id,
                    space=active,
                )
            return
        async with self._following:
            if self._embedder.space == active:
                return  # another task of this core followed first
            logger.info(
                "following a switch made elsewhere to space %d (%s)",
                store.active_space_id,
                active.describe(),
            )
            new = _gemini_embedder(self._keys, active, self._gemini)
            # Searches in flight may still hold the old embedder: it is closed with the core.
            self._retired.append(self._embedder)
            self._embedder = new
            self._ingestor = replace(self._ingestor, embedder=new)

    def _check_can_switch(self, embedder: Embedder | None) -> None:
        if embedder is None and not self._owns_embedder:
            raise InvalidInputError(
                "this core was opened with its own embedder: pass embedder= of the new space"
            )

    async def _switched(self, outcome: SwitchOutcome, embedder: Embedder | None) -> SwitchOutcome:
        target = outcome.active.space
        if embedder is not None:
            new, owns = embedder, False
        elif self._embedder.space == target:
            return outcome
        else:
            new, owns = _gemini_embedder(self._keys, target, self._gemini), True
        old, old_owned = self._embedder, self._owns_embedder
        self._embedder, self._owns_embedder = new, owns
        self._ingestor = replace(self._ingestor, embedder=new)
        if old_owned:
            await old.aclose()
        return outcome

    async def aclose(self) -> None:
        """Close everything this core opened (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._spaces.aclose()
            if self._manager is not None:
                await self._manager.aclose()
            if self._owns_embedder:
                for retired in self._retired:
                    await retired.aclose()
                await self._embedder.aclose()
        finally:
            await self._store.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _ranked_vector_hit(rank: int, hit: SearchHit) -> SearchHit:
    distance = hit.distance if hit.distance is not None else 1.0
    return replace(hit, score=1.0 - distance, vector_rank=rank)


def merge_hits(
    by_vector: Sequence[SearchHit],
    by_keyword: Sequence[SearchHit],
    *,
    k: int,
    fusion: Fusion,
    keyword_led: bool = False,
) -> list[SearchHit]:
    """The best ``k`` of a vector list and a keyword list (each best first), fused by
    weighted RRF (a keyword hit not READY has no vector: see
    :func:`~asemantic.domain.fusion.fuse`): each hit carries its distance (when the
    vector list found it), its BM25 score (when the keyword list did), both ranks and
    the fused ``score``. ``keyword_led``: an identifier query's order (the keyword
    list first: see :class:`~asemantic.domain.fusion.Fusion`)."""
    vector = {hit.chunk_id: hit for hit in by_vector}
    keyword = {hit.chunk_id: hit for hit in by_keyword}
    fused = fuse(
        [hit.chunk_id for hit in by_vector],
        [hit.chunk_id for hit in by_keyword],
        k=k,
        fusion=fusion,
        no_vector=[
            h.chunk_id for h in by_keyword if h.embedding_status is not EmbeddingStatus.READY
        ],
        keyword_led=keyword_led,
    )
    out: list[SearchHit] = []
    for ranked in fused:
        found = keyword.get(ranked.chunk_id)
        base = vector.get(ranked.chunk_id) or found
        assert base is not None
        out.append(
            replace(
                base,
                score=ranked.score,
                vector_rank=ranked.vector_rank,
                keyword_rank=ranked.keyword_rank,
                keyword_score=None if found is None else found.keyword_score,
                embedding_status=(found or base).embedding_status,
            )
        )
    return out


def _checked_space(target: EmbeddingSpace) -> EmbeddingSpace:
    if not isinstance(target, EmbeddingSpace):
        raise InvalidInputError("the target must be an EmbeddingSpace (see target_space)")
    return target


def _checked_id(space_id: int) -> int:
    if isinstance(space_id, bool) or not isinstance(space_id, int) or space_id < 1:
        raise InvalidInputError("a space id is a positive integer")
    return space_id


def _gemini_embedder(
    keys: GoogleKeyring | None, space: EmbeddingSpace, gemini: GeminiSettings
) -> Embedder:
    """A Gemini embedder of ``space`` on ``keys.default``."""
    if keys is None:
        raise InvalidInputError("embedding with Gemini needs keys=")
    # Imported on first use: google-genai takes about a second to import, which
    # `import asemantic`, the CLI's --help and local-only use need not pay.
    from asemantic.adapters.gemini.embedder import GeminiEmbedder

    return GeminiEmbedder(
        keys,
        space=space,
        base_url=gemini.base_url,
        retry=gemini.retry,
        max_concurrency=gemini.max_concurrency,
        transport=gemini.transport,
        http_client=gemini.http_client,
    )


def _checked_filters(filters: SearchFilters | Mapping[str, object]) -> SearchFilters:
    """Filters as :class:`SearchFilters`, refused (typed) when malformed or when they
    could not match: all of it before the query is embedded."""
    if not isinstance(filters, SearchFilters):
        if not isinstance(filters, Mapping):
            raise InvalidInputError("filters must be a mapping or SearchFilters")
        return SearchFilters.from_mapping(filters)
    for source in filters.sources or ():
        check_name(source, what="a source filter")
    if filters.metadata is not None:
        validate_metadata(filters.metadata)
    filters.expression()  # the listed ids and sources have the right types
    return filters


class _Opening:
    """``SemanticCore.open(...)``: await it, or use it with ``async with``."""

    def __init__(
        self,
        cls: type[SemanticCore],
        target: str | os.PathLike[str] | Store,
        *,
        keys: GoogleKeyring | None,
        embedder: Embedder | None,
        config: CoreConfig,
        gemini: GeminiSettings,
    ) -> None:
        self._cls = cls
        self._target = target
        self._keys = keys
        self._embedder = embedder
        self._config = config
        self._gemini = gemini
        self._core: SemanticCore | None = None

    async def _open(self) -> SemanticCore:
        if self._embedder is None and self._keys is None:
            raise InvalidInputError("SemanticCore.open needs keys= (for Gemini) or embedder=")
        owns = self._embedder is None
        embedder: Embedder
        if self._embedder is not None:
            embedder = self._embedder
        else:
            assert self._keys is not None
            embedder = _DeferredGeminiEmbedder(self._keys, self._config, self._gemini)
        try:
            store = await open_store(
                self._target,
                space=embedder.space,
                options=StoreOptions(
                    busy_timeout_ms=self._config.busy_timeout_ms,
                    memory_index=self._config.memory_index,
                ),
            )
        except BaseException:
            if owns:
                await embedder.aclose()
            raise
        return self._cls(
            store=store,
            embedder=embedder,
            keys=self._keys,
            config=self._config,
            gemini=self._gemini,
            owns_embedder=owns,
        )

    def __await__(self) -> Generator[Any, None, SemanticCore]:
        return self._open().__await__()

    async def __aenter__(self) -> SemanticCore:
        self._core = await self._open()
        return self._core

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._core is not None:
            await self._core.aclose()


class _DeferredGeminiEmbedder:
    """The core's own :class:`GeminiEmbedder`, built on its first call.

    google-genai takes a second or more to import, which ``import asemantic``, the
    CLI's ``--help``, async ingestion (no provider call) and local-only use need not
    pay. The settings are checked when the core opens, as the embedder would check them.
    """

    __slots__ = ("_built", "_config", "_gemini", "_keys")

    def __init__(self, keys: GoogleKeyring, config: CoreConfig, gemini: GeminiSettings) -> None:
        if gemini.max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self._keys = keys
        self._config = config
        self._gemini = gemini
        self._built: Embedder | None = None

    def __repr__(self) -> str:
        return f"GeminiEmbedder(space={self.space.describe()!r})"

    @property
    def space(self) -> EmbeddingSpace:
        return self._config.space

    def built(self) -> Embedder:
        """The embedder itself (built, and google-genai imported, on the first use)."""
        if self._built is None:
            from asemantic.adapters.gemini.embedder import GeminiEmbedder

            gemini = self._gemini
            self._built = GeminiEmbedder(
                self._keys,
                space=self._config.space,
                base_url=gemini.base_url,
                retry=gemini.retry,
                max_concurrency=gemini.max_concurrency,
                transport=gemini.transport,
                http_client=gemini.http_client,
            )
        return self._built

    async def embed_documents(self, requests: Sequence[EmbedRequest]) -> list[bytes]:
        """:meth:`GeminiEmbedder.embed_documents`."""
        return await self.built().embed_documents(requests)

    async def embed_query(self, text: str) -> bytes:
        """:meth:`GeminiEmbedder.embed_query`."""
        return await self.built().embed_query(text)

    async def aclose(self) -> None:
        """Close the embedder if it was built."""
        if self._built is not None:
            await self._built.aclose()
