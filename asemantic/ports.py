"""The ports the core talks to. Adapters implement them; tests can fake them.

Each is a small ``Protocol``: the core never imports an adapter's vendor SDK.
"""

from __future__ import annotations

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
from asemantic.domain.jobs import JobStatus
from asemantic.domain.policy import RetryPolicy
from asemantic.domain.space import EmbeddingSpace
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
    "JobRecord",
    "JobStore",
    "JobTransition",
    "Lease",
    "LineResult",
    "QueuedChunk",
    "RemoteFile",
    "RemoteJob",
    "RemoteJobStatus",
    "ResultCounts",
    "SearchFilters",
    "Store",
    "StoreStats",
    "StoredChunk",
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

    ``metadata`` matches document metadata keys by JSON equality.
    """

    document_ids: Sequence[int] | None = None
    sources: Sequence[str] | None = None
    metadata: Mapping[str, JSONValue] | None = None

    @classmethod
    def from_mapping(cls, filters: Mapping[str, JSONValue]) -> SearchFilters:
        """Build filters from a plain mapping.

        ``document_id`` (an int or a list of ints) and ``source`` (a string or a list of
        strings) are special; every other key matches document metadata.
        """
        document_ids: list[int] | None = None
        sources: list[str] | None = None
        metadata: dict[str, JSONValue] = {}
        for key, value in filters.items():
            if key == "document_id":
                document_ids = _as_list(key, value, int)
            elif key == "source":
                sources = _as_list(key, value, str)
            else:
                metadata[key] = value
        return cls(document_ids=document_ids, sources=sources, metadata=metadata or None)


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
    """What the provider says of a job. ``state`` is the SDK's ``JOB_STATE_*`` name."""

    name: str
    display_name: str | None
    state: str
    done: bool
    output_file: str | None = None


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
    """What reading a result file met, line by line (filled while it is read)."""

    lines: int = 0
    succeeded: int = 0
    failed: int = 0
    blank: int = 0
    malformed: int = 0
    unknown_keys: int = 0
    duplicates: int = 0


class BatchBackend(Protocol):
    """The provider's Batch API, as the batch manager needs it."""

    async def create_embedding_job(
        self, lines: Sequence[BatchLine], *, display_name: str
    ) -> RemoteJob: ...

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

    async def transition_job(self, change: JobChange) -> JobRecord | None: ...

    async def apply_results(
        self, job_id: str, results: Sequence[LineResult], *, retry: RetryPolicy
    ) -> ApplyCounts: ...

    async def jobs(
        self, statuses: Collection[JobStatus] | None = None, *, uncleaned: bool = False
    ) -> list[JobRecord]: ...

    async def mark_cleaned(self, job_id: str) -> None: ...

    async def mark_create_attempt(self, job_id: str, at: datetime | None) -> None: ...

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
