"""Several embedding spaces in one knowledge base, and migrating between them.

A knowledge base may hold vectors of more than one :class:`~asemantic.domain.space.EmbeddingSpace`
(model, dimensions, task type). Exactly one space is *active*: searches use it, the core
embeds queries in it. Changing the model is then a *migration* inside the same database,
paid at the Batch API price, instead of a new database embedded online.

Design
======

Spaces are numbered. **Space 1 is the home space**: the space the database was created
with. Its per-chunk state is what it always was (``chunks.embedding_status``,
``batch_job_id``, ``attempts``, ``error_message``), its vectors are the engine's existing
vector table (SQLite ``vec_chunks``), its jobs the existing ``batch_jobs``. Nothing moves
when a version-1 database is upgraded: its space becomes space 1, active. Every existing
code path (ingest, the batch manager, the supervisor, search, copy) keeps working on
space 1 unchanged, which is why the per-chunk state of the *other* spaces lives in tables
of its own rather than moving every space's state into a new table: the risky paths stay
untouched, and a database that never migrates never reads the new tables.

Tables (SQLite, schema version 2; additive, created by the one-transaction upgrade;
the memory engine keeps the same rows in dicts, :mod:`asemantic.adapters.memory.spaces`;
the PostgreSQL engine keeps one space per database in this version)::

    embedding_spaces(id, model, dimensions, task_type,
                     state ('active' | 'standby' | 'retired'),
                     created_at, activated_at, previous_id)
    space_chunks(space_id, chunk_id, status READY|PENDING|FAILED, batch_job_id,
                 error_message, attempts, updated_at)       -- spaces other than 1
    space_batch_jobs(... the columns of batch_jobs ..., space_id)
    space_batch_job_transitions(... as batch_job_transitions ...)
    vec_space_<id>                                          -- one vec0 table per space

* **The active-space pointer** is the one row whose ``state`` is ``active``. A *switch*
  is one transaction that sets the old active row to ``standby`` (remembering it as the
  new one's ``previous_id``) and the target to ``active``: no reader ever sees zero or
  two active spaces. A standby space is reported as *building* while some chunk still
  lacks its vector and *ready* once it covers every chunk (:func:`space_state`).
* **Per-(chunk, space) state**: a row of ``space_chunks`` per chunk and space (its
  primary key forbids a second one); vectors in that space's own vec0 table (vec0
  tables have a fixed dimension), keyed by chunk id. Triggers on ``space_chunks``
  delete a vector when its row is deleted (a chunk deleted cascades to its rows) or
  leaves READY, as ``vec_chunks``' triggers do for space 1.
* **Jobs know their space**: a job embeds for exactly one space. Jobs of space 1 are
  ``batch_jobs``; jobs of space *n* are ``space_batch_jobs`` rows with ``space_id = n``.
  Each space is seen through its own :class:`~asemantic.ports.JobStore`
  (``store.spaces.jobs(n)``), so the unchanged :class:`~asemantic.batch.manager.BatchManager`
  drives it with a batch backend built for that space's model, dimensions and task type.
  The space's job store names its remote objects ``asemantic-s<n>-...`` (its
  ``database_id`` is ``s<n>-`` plus the database's), so the prefix listings of two
  spaces never overlap: one space's orphan clean-up never touches another's files.
* **The supervisor** runs its usual tick for space 1, then the same reconcile / flush /
  poll / apply / clean-up for every other space that is not retired or still has
  uncleaned jobs (``core.space_managers()``); it holds one lease for all of them, and
  is idle only when every space is. A backfill queue is flushed at once (no
  ``min_batch_size`` wait: it is large by nature).
* **Ingest during a migration** writes each chunk once and, in the same transaction,
  queues it PENDING for every space that is not retired. Sync mode embeds the *active*
  space online (the vectors the ingestor passes are the active space's) and queues the
  others for the Batch API.
* **Rollback** is a switch back to the active space's ``previous_id``, refused when that
  space was dropped. Non-retired spaces keep receiving new chunks, so it stays complete.
* **Drop** deletes a non-active space's vectors and per-chunk rows and marks it
  ``retired`` (the row stays, for history); its jobs still in flight are polled to the
  end by the supervisor (their results are stale and discarded) and cleaned up, so no
  remote object is orphaned. Dropping space 1 (whose state is the chunk table itself) is
  refused in this version: :class:`~asemantic.errors.SpaceError`.
* **Opening** a database still checks the space asked for against the *active* space:
  :class:`~asemantic.errors.EmbeddingSpaceMismatchError` keeps protecting against an
  unintended space; after a switch, open it with the new space's settings.

Cost preview (:func:`plan_migration`): tokens are the chunks' own estimates (the same
ones the batch quota uses), priced with :class:`~asemantic.domain.pricing.Pricing` at the
batch and the online price; the time is a range (the Batch API's target turnaround is
24 hours, most jobs finish in minutes to hours) and the online time assumes a steady
request rate.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from datetime import datetime

from asemantic.domain.pricing import Pricing
from asemantic.domain.space import EmbeddingSpace
from asemantic.errors import SpaceError

__all__ = [
    "HOME_SPACE_ID",
    "MigrationPlan",
    "SpaceChunk",
    "SpaceProgress",
    "SpaceRecord",
    "SpaceState",
    "StoredSpaceState",
    "plan_migration",
    "space_state",
    "target_space",
]

HOME_SPACE_ID = 1
"""The space a database was created with; its state is the chunk table's own."""

_ONLINE_TEXTS_PER_REQUEST = 100
_ONLINE_SECONDS_PER_REQUEST = 0.5
_BATCH_TYPICAL_SECONDS = 30 * 60
_BATCH_TARGET_SECONDS = 24 * 3600


class StoredSpaceState(enum.StrEnum):
    """What a space's row records."""

    ACTIVE = "active"
    STANDBY = "standby"
    RETIRED = "retired"


class SpaceState(enum.StrEnum):
    """What a space is, as reported: standby spaces are building or ready."""

    ACTIVE = "active"
    BUILDING = "building"
    READY = "ready"
    RETIRED = "retired"


@dataclass(frozen=True, slots=True, kw_only=True)
class SpaceProgress:
    """Chunks of a space by status; ``total`` is every chunk of the database."""

    ready: int = 0
    pending: int = 0
    failed: int = 0
    total: int = 0
    tokens_ready: int = 0

    @property
    def missing(self) -> int:
        """Chunks without a vector in this space."""
        return max(0, self.total - self.ready)

    @property
    def complete(self) -> bool:
        """Every chunk has its vector in this space."""
        return self.ready >= self.total


@dataclass(frozen=True, slots=True, kw_only=True)
class SpaceChunk:
    """One chunk's state in a space (for audits and tests)."""

    chunk_id: int
    status: str
    job_id: str | None
    error_message: str | None
    attempts: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SpaceRecord:
    """A registered space with its stored state and progress."""

    space_id: int
    space: EmbeddingSpace
    stored: StoredSpaceState
    created_at: datetime
    activated_at: datetime | None
    previous_id: int | None
    progress: SpaceProgress

    @property
    def state(self) -> SpaceState:
        return space_state(self.stored, self.progress)

    @property
    def active(self) -> bool:
        return self.stored is StoredSpaceState.ACTIVE


def space_state(stored: StoredSpaceState, progress: SpaceProgress) -> SpaceState:
    """The reported state: a standby space is ready once it covers every chunk."""
    if stored is StoredSpaceState.ACTIVE:
        return SpaceState.ACTIVE
    if stored is StoredSpaceState.RETIRED:
        return SpaceState.RETIRED
    return SpaceState.READY if progress.complete else SpaceState.BUILDING


@dataclass(frozen=True, slots=True, kw_only=True)
class MigrationPlan:
    """What migrating to ``target`` would embed and cost (a dry run: nothing written)."""

    target: EmbeddingSpace
    chunks: int
    tokens: int
    cost_batch_usd: float
    cost_online_usd: float
    batch_seconds_typical: float
    batch_seconds_max: float
    online_seconds: float

    @property
    def savings_usd(self) -> float:
        return self.cost_online_usd - self.cost_batch_usd


def plan_migration(
    target: EmbeddingSpace,
    *,
    chunks: int,
    tokens: int,
    pricing: Pricing,
    online_concurrency: int = 8,
) -> MigrationPlan:
    """The cost and time preview of embedding ``chunks`` chunks (``tokens`` tokens)."""
    requests = math.ceil(chunks / _ONLINE_TEXTS_PER_REQUEST)
    online = requests * _ONLINE_SECONDS_PER_REQUEST / max(1, online_concurrency)
    return MigrationPlan(
        target=target,
        chunks=chunks,
        tokens=tokens,
        cost_batch_usd=pricing.batch(tokens),
        cost_online_usd=pricing.online(tokens),
        batch_seconds_typical=float(_BATCH_TYPICAL_SECONDS if chunks else 0),
        batch_seconds_max=float(_BATCH_TARGET_SECONDS if chunks else 0),
        online_seconds=online,
    )


def target_space(
    *, model: str, dimensions: int, task_type: str = "RETRIEVAL_DOCUMENT"
) -> EmbeddingSpace:
    """The space to migrate to; :class:`SpaceError` for a model or dimensions it
    cannot be (dimensions within 1..8192, a non-empty model name)."""
    if isinstance(dimensions, bool) or not isinstance(dimensions, int):
        raise SpaceError("dimensions must be an integer")
    if not isinstance(model, str) or not model.strip():
        raise SpaceError("the target model must be a non-empty name")
    if not isinstance(task_type, str) or not task_type.strip():
        raise SpaceError("the task type must be a non-empty name")
    try:
        return EmbeddingSpace(model=model.strip(), dimensions=dimensions, task_type=task_type)
    except ValueError as exc:
        raise SpaceError(str(exc)) from None
