"""The ports the core talks to. Adapters implement them; tests can fake them.

Each is a small ``Protocol``: the core never imports an adapter's vendor SDK.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TypeVar, runtime_checkable

from asemantic.domain.documents import (
    ChunkDraft,
    Document,
    EmbeddingStatus,
    JSONValue,
    SearchHit,
)
from asemantic.domain.filters import (
    MATCH_ALL,
    FieldCondition,
    Filter,
    KeyCondition,
    all_of,
    parse_filter,
)
from asemantic.domain.jobs import JobStatus
from asemantic.domain.policy import RetryPolicy
from asemantic.domain.space import EmbeddingSpace
from asemantic.domain.spaces import SpaceChunk, SpaceRecord
from asemantic.errors import InvalidInputError

_T = TypeVar("_T")

__all__ = [
    "ApplyCounts",
    "BatchBackend",
    "BatchLine",
    "BatchSnapshot",
    "ChunkRecord",
    "DocumentSnapshot",
    "DocumentWrite",
    "EmbedRequest",
    "Embedder",
    "JobChange",
    "JobChunk",
    "JobNote",
    "JobRecord",
    "JobStore",
    "JobTransition",
    "KnowledgeBaseTransfer",
    "Lease",
    "LineResult",
    "QueuedChunk",
    "RemoteFile",
    "RemoteJob",
    "RemoteJobStatus",
    "ResultCounts",
    "SearchFilters",
    "SpaceCatalog",
    "Store",
    "StoreStats",
    "StoredChunk",
    "SupportsSpaces",
    "SupportsTransfer",
    "TransferChunk",
    "TransferDocument",
    "TransferInventory",
    "TransferJob",
    "TransferKey",
    "TransferRow",
    "TransferTable",
    "TransferTransition",
    "TransferUsage",
    "USAGE_ROUTES",
    "UsageTotal",
    "WriteOutcome",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbedRequest:
    """One text to embed as a document chunk (``title`` is the document's title)."""

    text: str
    title: str | None = None


@runtime_checkable
class Embedder(Protocol):
    """Online embedding: vectors now, at the online price.

    Vectors come back as float32 blobs of ``space.dimensions`` values, L2-normalised.
    """

    @property
    def space(self) -> EmbeddingSpace: ...

    async def embed_documents(self, requests: Sequence[EmbedRequest]) -> list[bytes]: ...

    async def embed_query(self, text: str) -> bytes: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredChunk:
    """A chunk as the store holds it (enough to decide what an ingestion must do)."""

    chunk_id: int
    position: int
    content_hash: str
    status: EmbeddingStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class DocumentSnapshot:
    """A stored document and its chunks."""

    document_id: int
    source: str
    content_hash: str
    chunks: tuple[StoredChunk, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class DocumentWrite:
    """Everything one ingestion writes, applied by the store in one transaction.

    Chunks whose ``content_hash`` matches a stored READY or PENDING chunk of the same
    document are kept (with their vector or their place in a batch job); the other stored
    chunks are deleted with their vectors. New chunks whose hash is in ``vectors`` are
    stored READY with that vector; the rest are stored PENDING.
    """

    document: Document
    content_hash: str
    drafts: Sequence[ChunkDraft]
    vectors: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteOutcome:
    document_id: int
    stored: int
    unchanged: int
    removed: int
    pending: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchFilters:
    """Restrict a search. Every field given must match (AND).

    ``document_ids`` and ``sources`` keep the documents listed; ``metadata`` matches
    document metadata keys by JSON equality; ``where`` is a parsed filter expression
    (:mod:`asemantic.domain.filters`, made by :meth:`from_mapping`). Engines compile
    :meth:`expression`, the AND of them all.
    """

    document_ids: Sequence[int] | None = None
    sources: Sequence[str] | None = None
    metadata: Mapping[str, JSONValue] | None = None
    where: Filter | None = None

    @classmethod
    def from_mapping(cls, filters: Mapping[str, object]) -> SearchFilters:
        """Parse a plain filter mapping (the operator language of
        :mod:`asemantic.domain.filters`: implicit equality, ``$eq $ne $in $nin $gt $gte
        $lt $lte $exists``, ``$or``/``$and``, built-in fields ``document_id``,
        ``source``, ``created_at`` and ``updated_at``).

        Raises :class:`InvalidInputError` naming the operator at fault.
        """
        return cls(where=parse_filter(filters))

    def expression(self) -> Filter:
        """Every restriction of these filters as one expression tree."""
        parts: list[Filter] = []
        if self.document_ids is not None:
            ids = tuple(_as_list("document_id", list(self.document_ids), int))
            parts.append(FieldCondition("document_id", "$in", ids))
        if self.sources is not None:
            sources = tuple(_as_list("source", list(self.sources), str))
            parts.append(FieldCondition("source", "$in", sources))
        for key, value in (self.metadata or {}).items():
            if not isinstance(key, str):
                raise InvalidInputError("metadata filter keys must be strings")
            parts.append(KeyCondition(key, "$eq", value))
        if self.where is not None:
            parts.append(self.where)
        return all_of(parts)

    @property
    def restricts(self) -> bool:
        """Whether these filters restrict anything (an empty filter does not)."""
        return self.expression() != MATCH_ALL


def _as_list(key: str, value: JSONValue, kind: type[_T]) -> list[_T]:
    items = value if isinstance(value, list) else [value]
    out: list[_T] = []
    for item in items:
        if not isinstance(item, kind) or isinstance(item, bool):
            raise InvalidInputError(f"filter {key!r} takes {kind.__name__} values")
        out.append(item)
    return out


USAGE_ROUTES = ("online", "batch", "query")
"""The routes the usage ledger counts tokens for (``Store.record_usage``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreStats:
    """Counts of one database, read in one snapshot.

    ``chunks`` has every :class:`EmbeddingStatus` and ``jobs`` every ``JobStatus`` as a
    key (0 when absent); ``tokens`` is the usage ledger's total per route, over the life
    of the database, with ``online``, ``batch`` and ``query`` always present (0 when none).
    """

    documents: int
    chunks: Mapping[str, int]
    jobs: Mapping[str, int]
    tokens: Mapping[str, int]

    @property
    def empty(self) -> bool:
        """No document and no batch job (a database nothing was written to)."""
        return self.documents == 0 and not any(self.jobs.values())


@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkRecord:
    """One stored chunk, with its document's source and title (``Store.chunk_records``).

    For audits and tests: everything a check of the stored state needs, read through
    the port instead of an engine's own tables.
    """

    chunk_id: int
    document_id: int
    source: str
    title: str | None
    position: int
    content_hash: str
    vector_source: str
    status: EmbeddingStatus
    job_id: str | None
    error_message: str | None
    attempts: int


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageTotal:
    """Texts and tokens the usage ledger counts for one route, over the database's life."""

    texts: int = 0
    tokens: int = 0


class Store(Protocol):
    """Durable documents, chunks and vectors of one database (one engine).

    ``jobs`` is the :class:`JobStore` of the same database: both share one set of
    tables, and a batch job's results and its chunks' statuses change together.
    ``space`` is the embedding space recorded in the database (None until one is).
    """

    @property
    def space(self) -> EmbeddingSpace | None: ...

    @property
    def jobs(self) -> JobStore: ...

    async def get_document(self, source: str) -> DocumentSnapshot | None: ...

    async def write_document(self, write: DocumentWrite) -> WriteOutcome: ...

    async def delete_document(self, source: str) -> bool: ...

    async def bulk_update_vectors(self, mapping: Mapping[int, bytes]) -> int: ...

    async def search(
        self, query: bytes, *, k: int, filters: SearchFilters | None = None
    ) -> list[SearchHit]: ...

    async def keyword_search(
        self, terms: Sequence[str], *, k: int, filters: SearchFilters | None = None
    ) -> list[SearchHit]:
        """The ``k`` chunks best matching ``terms`` by BM25, best first, whatever their
        embedding status (a PENDING chunk is found before its vector exists).

        ``terms`` are :func:`asemantic.domain.keywords.query_terms` tokens (anything
        else raises :class:`~asemantic.errors.InvalidInputError`); a chunk matches when
        it holds any of them. Hits have ``distance`` None, ``score`` and
        ``keyword_score`` the BM25 score, ``keyword_rank`` from 1 and the chunk's
        ``embedding_status``; ties are broken by chunk id. ``filters`` apply as in
        :meth:`search`.
        """
        ...

    async def record_usage(self, route: str, *, texts: int, tokens: int) -> None: ...

    async def count_chunks_by_status(self) -> dict[str, int]: ...

    async def stats(self) -> StoreStats: ...

    # Read-only inspection (audits and engine-neutral tests), each one snapshot:

    async def chunk_records(self) -> list[ChunkRecord]:
        """Every chunk of the database, by chunk id."""
        ...

    async def vector_rows(self) -> list[tuple[int, bytes]]:
        """Every stored vector row as (chunk id, float32 blob), by chunk id; a chunk
        with two rows would appear twice (the integrity check forbids it)."""
        ...

    async def usage(self) -> dict[str, UsageTotal]:
        """The usage ledger's totals per route, every one of :data:`USAGE_ROUTES` present."""
        ...

    async def integrity_check(self) -> str: ...

    async def aclose(self) -> None: ...


# --- the batch backend ---------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchLine:
    """One text in a batch job; ``key`` comes back with its result."""

    key: str
    text: str
    title: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteJob:
    """A batch job the provider accepted."""

    name: str
    display_name: str
    input_file: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteJobStatus:
    """What the provider says of a job. ``state`` is the SDK's ``JOB_STATE_*`` name.

    An adapter maps every answer to a defined ``state``: a known one as is; a job that is
    ``done`` but names no known state becomes ``JOB_STATE_FAILED`` (or
    ``JOB_STATE_SUCCEEDED`` when it names a result file and no error); an unfinished job
    in a state this version does not know keeps that state's name (``JOB_STATE_<X>``) or
    ``JOB_STATE_UNSPECIFIED``, which the domain reads as "unknown, keep polling".
    ``raw_state`` is the state exactly as sent (None when absent); ``error_code`` and
    ``error_message`` come from the job's error (a ``google.rpc.Status``), when it has one.
    """

    name: str
    display_name: str | None
    state: str
    done: bool
    output_file: str | None = None
    raw_state: str | None = None
    error_code: int | None = None
    error_message: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteFile:
    """A file the provider holds."""

    name: str
    display_name: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class LineResult:
    """The result for one key: a float32 blob, or an error with code and message."""

    key: str
    vector: bytes | None = None
    error_code: int | None = None
    error_status: str | None = None
    error_message: str | None = None
    token_count: int | None = None


@dataclass(slots=True, kw_only=True)
class ResultCounts:
    """What reading a result file met, line by line (filled while it is read).

    ``keyless`` counts lines with no usable ``key``; ``by_position`` those of them matched
    to a key by line order (see ``BatchBackend.retrieve_results``). The others yield no
    result: their chunks get no line, and the caller requeues them.
    """

    lines: int = 0
    succeeded: int = 0
    failed: int = 0
    blank: int = 0
    malformed: int = 0
    unknown_keys: int = 0
    duplicates: int = 0
    keyless: int = 0
    by_position: int = 0


class BatchBackend(Protocol):
    """The provider's Batch API, as the batch manager needs it.

    ``retrieve_results`` joins result lines to ``expected_keys`` by their ``key``. When
    ``expected_keys`` is a sequence in the order the lines were sent, a line without a key
    is matched by its position, but only if the file has exactly one line per expected key
    and every keyed line sits at its own position (the provider documents output order =
    input order; users report exceptions). Otherwise keyless lines are counted and skipped.
    """

    async def create_embedding_job(
        self, lines: Sequence[BatchLine], *, display_name: str
    ) -> RemoteJob: ...

    async def upload_input(self, lines: Sequence[BatchLine], *, display_name: str) -> str:
        """Upload the lines as one input file named ``display_name``; its remote name."""
        ...

    async def create_from_file(self, input_file: str, *, display_name: str) -> RemoteJob:
        """Create a job from an uploaded input file (never retried: not idempotent).
        ``create_embedding_job`` is :meth:`upload_input` then this."""
        ...

    async def get_job_status(self, name: str) -> RemoteJobStatus: ...

    def retrieve_results(
        self, output_file: str, *, expected_keys: Collection[str], counts: ResultCounts
    ) -> AsyncIterator[list[LineResult]]: ...

    async def cleanup(self, name: str | None, *, files: Sequence[str]) -> None: ...

    async def cancel(self, name: str) -> None: ...

    async def find_jobs_by_display_name(
        self, display_names: Collection[str]
    ) -> list[RemoteJobStatus]: ...

    async def find_files_by_prefix(self, prefix: str) -> list[RemoteFile]: ...

    async def aclose(self) -> None: ...


# --- the job store ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class QueuedChunk:
    """A PENDING chunk in no job; ``size`` is its vector source in UTF-8 bytes."""

    chunk_id: int
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class JobChunk:
    """A chunk of a job, with the text to send."""

    chunk_id: int
    content_hash: str
    text: str
    title: str | None
    attempts: int


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRecord:
    """A batch job as the database holds it."""

    job_id: str
    display_name: str
    status: JobStatus
    remote_name: str | None
    input_file: str | None
    output_file: str | None
    stats: Mapping[str, int]
    error_message: str | None
    created_at: datetime
    updated_at: datetime
    cleaned: bool
    create_attempted_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplyCounts:
    """What applying one slice of results did."""

    ready: int = 0
    failed: int = 0
    retried: int = 0
    stale: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Lease:
    """Who holds the supervisor lease of a database, and until when (epoch seconds)."""

    owner: str
    expires_at: float
    acquired: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchSnapshot:
    """What a batch pass needs to know, read in one consistent snapshot.

    ``jobs``: every job not yet cleaned up (the active ones and the finished ones whose
    remote files are still to delete), oldest first. ``queued``: the PENDING chunks in
    no job, by id. ``pending``: every PENDING chunk, queued or in a job.
    """

    jobs: tuple[JobRecord, ...] = ()
    queued: tuple[QueuedChunk, ...] = ()
    pending: int = 0

    def in_status(self, *statuses: JobStatus) -> list[JobRecord]:
        """The snapshot's jobs in any of ``statuses``, oldest first."""
        wanted = frozenset(statuses)
        return [job for job in self.jobs if job.status in wanted]

    @property
    def idle(self) -> bool:
        """Nothing left to do: no chunk PENDING, no job active or uncleaned."""
        return self.pending == 0 and not self.jobs


@dataclass(frozen=True, slots=True, kw_only=True)
class JobTransition:
    """One recorded move of a job (``from_status`` None for its creation)."""

    job_id: str
    from_status: JobStatus | None
    to_status: JobStatus
    at: datetime


class JobStore(Protocol):
    """Durable batch jobs: every change here is one transaction."""

    async def database_id(self) -> str: ...

    async def snapshot(self) -> BatchSnapshot: ...

    async def queued_chunks(self) -> list[QueuedChunk]: ...

    async def create_job(
        self, *, job_id: str, display_name: str, chunk_ids: Sequence[int]
    ) -> JobRecord | None: ...

    async def get_job(self, job_id: str) -> JobRecord | None: ...

    async def job_chunks(self, job_id: str) -> list[JobChunk]: ...

    async def job_hashes(self, job_id: str) -> list[tuple[int, str]]:
        """``(chunk id, content hash)`` of the job's PENDING chunks, by id: what the
        keys of its result lines are made of (:meth:`job_chunks` without the texts)."""
        ...

    async def transition_job(self, change: JobChange) -> JobRecord | None: ...

    async def apply_results(
        self, job_id: str, results: Sequence[LineResult], *, retry: RetryPolicy
    ) -> ApplyCounts: ...

    async def jobs(
        self, statuses: Collection[JobStatus] | None = None, *, uncleaned: bool = False
    ) -> list[JobRecord]: ...

    async def mark_cleaned(self, job_id: str) -> None: ...

    async def mark_create_attempt(self, job_id: str, at: datetime | None) -> None: ...

    async def note_job(self, note: JobNote) -> JobRecord | None:
        """Change a job's stats or input file without a transition (compare-and-set on
        ``note.expected``); None when the job is not in that status any more."""
        ...

    async def shrink_job(self, job_id: str, *, keep: int) -> int:
        """A CREATED job keeps its first ``keep`` PENDING chunks (by id); the others go
        back to the queue with their attempts unchanged. Returns how many went back."""
        ...

    async def pending_chunks(self, *, limit: int) -> list[JobChunk]:
        """Up to ``limit`` PENDING chunks, queued or in a job, by id, with their text."""
        ...

    async def job_token_limit(self) -> int | None:
        """The tokens per job this database learned the provider accepts (None: none)."""
        ...

    async def set_job_token_limit(self, tokens: int | None) -> None:
        """Remember (or, with None, forget) the tokens per job the provider accepts."""
        ...

    async def acquire_lease(self, owner: str, *, ttl: float, now: float) -> Lease: ...

    async def release_lease(self, owner: str) -> None: ...

    # Read-only inspection (audits and engine-neutral tests):

    async def transitions(self, job_id: str) -> list[JobTransition]:
        """The job's recorded transitions, oldest first (empty for an unknown job)."""
        ...

    async def current_lease(self) -> Lease | None:
        """Who holds the supervisor lease (``acquired`` False: nothing was taken), or
        None when nobody does (an expired lease not yet taken over is still returned)."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class JobChange:
    """One persisted transition of a job, with what changes along with it.

    The store applies it only if the job is still in ``expected`` (compare-and-set).
    With ``release`` set, the job's chunks that are still PENDING leave the job: back to
    the queue with one more attempt, or FAILED with ``release_reason`` once the policy's
    attempts are spent.
    """

    job_id: str
    expected: JobStatus
    to: JobStatus
    at: datetime
    stats: Mapping[str, int] | None = None
    remote_name: str | None = None
    input_file: str | None = None
    output_file: str | None = None
    error_message: str | None = None
    release: RetryPolicy | None = None
    release_reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class JobNote:
    """A change of a job that is no transition: its stats (replaced whole when given)
    and its input file (set when given, forgotten with ``clear_input_file``). Applied
    only while the job is in ``expected``."""

    job_id: str
    expected: JobStatus
    stats: Mapping[str, int] | None = None
    input_file: str | None = None
    clear_input_file: bool = False


# --- moving a knowledge base between engines --------------------------------------------


class TransferTable(enum.StrEnum):
    """The tables a knowledge base is copied by, in the order they are copied.

    A table refers only to tables before it (chunks to documents and jobs, transitions
    to jobs), so a partial copy never holds a dangling reference. Vectors travel with
    their chunks (:attr:`TransferChunk.vector`): a READY chunk and its vector arrive in
    the same destination transaction.
    """

    DOCUMENTS = "documents"
    JOBS = "batch_jobs"
    CHUNKS = "chunks"
    TRANSITIONS = "batch_job_transitions"
    USAGE = "usage_ledger"


TransferKey = int | str
"""A row's key in its table: an int id, or a job's id (compared as code points)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferDocument:
    """A document row. ``metadata_json`` is a JSON object as text."""

    document_id: int
    source: str
    title: str | None
    content_hash: str
    metadata_json: str
    created_at: datetime | None
    updated_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferChunk:
    """A chunk row with its vector (a float32 blob; None unless READY)."""

    chunk_id: int
    document_id: int
    position: int
    text: str
    meta_json: str
    content_hash: str
    status: EmbeddingStatus
    job_id: str | None
    error_message: str | None
    attempts: int
    created_at: datetime | None
    updated_at: datetime | None
    vector: bytes | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferJob:
    """A batch job row: the job, and when its remote objects were cleaned up."""

    job: JobRecord
    cleaned_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferTransition:
    """One line of a job's transition history (statuses as the row holds them)."""

    transition_id: int
    job_id: str
    from_status: str | None
    to_status: str
    at: datetime | None
    stats: Mapping[str, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferUsage:
    """One line of the usage ledger."""

    entry_id: int
    at: datetime | None
    route: str
    texts: int
    tokens: int


TransferRow = TransferDocument | TransferJob | TransferChunk | TransferTransition | TransferUsage
"""A row of a :class:`TransferTable`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferInventory:
    """What a knowledge base is, read in one snapshot: its identity and size.

    ``database_id`` is None when none was made yet; ``rows`` has every
    :class:`TransferTable` (vectors count as their chunks' rows).
    """

    database_id: str | None
    space: EmbeddingSpace | None
    rows: Mapping[TransferTable, int]

    @property
    def empty(self) -> bool:
        return not any(self.rows.values())


class KnowledgeBaseTransfer(Protocol):
    """Rows of a knowledge base in and out, engine-neutral (see :mod:`asemantic.transfer`).

    Keys are preserved everywhere: chunk ids are the vectors' keys and the batch lines'
    keys, job ids and ``database_id`` name remote objects.

    * ``inventory``: identity and row counts, in one snapshot.
    * ``adopt_identity``: record ``database_id`` (replacing one an empty database made
      for itself) and ``space`` (recording it when none is; another one raises
      :class:`~asemantic.errors.EmbeddingSpaceMismatchError`), in one transaction.
    * ``last_key``: the largest key of a table (None when it is empty): where an
      interrupted copy resumes.
    * ``export_rows``: up to ``limit`` rows with keys above ``after`` (None: from the
      start), in key order (ints by value, job ids by code point).
    * ``import_rows``: an upsert of those rows, keys kept, in one transaction: importing
      the same page again changes nothing. Returns how many rows it wrote.
    * ``complete_import``: called once every table is copied, before verifying: the
      engine rebuilds what it set aside to import faster (PostgreSQL: its HNSW index).
    """

    async def inventory(self) -> TransferInventory: ...

    async def adopt_identity(self, *, database_id: str, space: EmbeddingSpace | None) -> None: ...

    async def last_key(self, table: TransferTable) -> TransferKey | None: ...

    async def export_rows(
        self, table: TransferTable, *, after: TransferKey | None, limit: int
    ) -> list[TransferRow]: ...

    async def import_rows(self, table: TransferTable, rows: Sequence[TransferRow]) -> int: ...

    async def complete_import(self) -> None: ...


@runtime_checkable
class SupportsTransfer(Protocol):
    """A :class:`Store` whose rows can be exported and imported (``store.transfer``)."""

    @property
    def transfer(self) -> KnowledgeBaseTransfer: ...


# --- several embedding spaces -----------------------------------------------------------


class SpaceCatalog(Protocol):
    """The embedding spaces of one database (see :mod:`asemantic.domain.spaces`).

    Every change is one transaction; a refused one (:class:`~asemantic.errors.SpaceError`)
    changes nothing.

    * ``list_spaces``: every registered space with its progress, in one snapshot.
    * ``get``: one space (:class:`~asemantic.errors.UnknownSpaceError` when none).
    * ``migration_inputs``: (chunks, estimated tokens) a new space would embed.
    * ``register``: a new standby space with every chunk queued PENDING for it.
    * ``switch``: move the active-space pointer (refused for a retired space, and,
      without ``force``, for one that lacks vectors).
    * ``drop``: delete a standby space's vectors and retire it; how many vectors went.
    * ``jobs``: the :class:`JobStore` of one space (space 1: the store's own).
    * ``vector_rows``: a space's vectors as (chunk id, blob), by chunk id.
    * ``uncleaned_jobs``: per space other than 1, how many of its jobs are not cleaned.
    * ``space_chunks``: every chunk's state in a space other than 1, by chunk id.
    """

    async def list_spaces(self) -> list[SpaceRecord]: ...

    async def get(self, space_id: int) -> SpaceRecord: ...

    async def migration_inputs(self) -> tuple[int, int]: ...

    async def register(self, space: EmbeddingSpace) -> SpaceRecord: ...

    async def switch(self, space_id: int, *, force: bool = False) -> SpaceRecord: ...

    async def drop(self, space_id: int) -> int: ...

    def jobs(self, space_id: int, space: EmbeddingSpace) -> JobStore: ...

    async def vector_rows(self, space_id: int) -> list[tuple[int, bytes]]: ...

    async def uncleaned_jobs(self) -> dict[int, int]: ...

    async def space_chunks(self, space_id: int) -> list[SpaceChunk]: ...


@runtime_checkable
class SupportsSpaces(Protocol):
    """A :class:`Store` that holds several embedding spaces (``store.spaces``).

    ``space`` is then the *active* space; ``reload_active_space`` reads the pointer
    again after a switch (this process's or another's) and returns the active space.
    """

    @property
    def spaces(self) -> SpaceCatalog: ...

    @property
    def active_space_id(self) -> int: ...

    async def reload_active_space(self) -> EmbeddingSpace | None: ...
