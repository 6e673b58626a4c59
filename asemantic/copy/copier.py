"""Copy a knowledge base to another engine without embedding anything again.

``await copy_knowledge_base("kb.db", "postgresql://...")`` copies documents, chunks with
their vectors (exact bytes), batch jobs with their transition history and cleaned /
create-attempt marks, the usage ledger, the embedding space and the ``database_id``
from one store to another, through each store's
:class:`~asemantic.ports.KnowledgeBaseTransfer` port, and then verifies the copy.

Decisions:

* **Identity travels.** Remote batch objects are named after ``database_id``; the copy
  keeps it, so a supervisor on the destination adopts and finishes the source's remote
  jobs. Two supervisors of one id would then race for the same remote jobs, so the
  copy takes the supervisor lease of both sides for its duration (refusing while a
  supervisor holds either; an engine built without a job store runs no supervisor,
  so none is held there), and the source must not be supervised after the move
  (README, "Moving a knowledge base").
* **What is accepted.** An empty destination, or one whose ``database_id`` is the
  source's (a partial copy: the copy resumes). A destination holding another knowledge
  base, one of another embedding space, a missing source and the same target twice are
  refused with a typed error before anything is written.
* **Resumable.** Tables go in :class:`~asemantic.ports.TransferTable` order (nothing
  refers forward), each in pages of ``batch_size`` rows in key order, each page one
  destination transaction, upserted. The destination therefore always holds a prefix
  of every table, and a re-run starts each table after the destination's last key: an
  interrupted copy (even ``kill -9``) completes without duplicates.
* **Verified.** Counts and SHA-256 checksums of every table (and of the vectors) are
  computed on both sides through the port (:mod:`.checksums`) and compared; a
  difference raises :class:`~asemantic.errors.TransferVerificationError` carrying the
  report. Write nothing to the source during a copy: a change there shows up here.
* **Opened as always.** Both sides are opened as ``SemanticCore.open`` opens them (an
  older schema is upgraded first), with the space each records; an engine may set
  work aside while importing and finish it in ``complete_import`` before verifying.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from asemantic.adapters.factory import MEMORY_TARGETS, StoreOptions, describe_target, open_store
from asemantic.copy.checksums import VECTORS, TableFigures, measure, row_key, table_names
from asemantic.domain.space import EmbeddingSpace
from asemantic.domain.spaces import HOME_SPACE_ID, StoredSpaceState
from asemantic.errors import (
    EmbeddingSpaceMismatchError,
    InvalidInputError,
    KnowledgeBaseMismatchError,
    StoreClosedError,
    StoreError,
    SupervisorLeaseError,
    TransferError,
    TransferVerificationError,
)
from asemantic.ports import (
    JobStore,
    KnowledgeBaseTransfer,
    Store,
    SupportsSpaces,
    SupportsTransfer,
    TransferChunk,
    TransferKey,
    TransferTable,
)

__all__ = [
    "COPY_LEASE_OWNER",
    "CopyProgress",
    "CopyReport",
    "TableReport",
    "Target",
    "copy_knowledge_base",
    "transfer_of",
]

logger = logging.getLogger(__name__)

Target = str | os.PathLike[str] | Store
"""A knowledge base: a SQLite path, a database URL, or an open store."""

COPY_LEASE_OWNER = "asemantic-copy"
"""The owner of the supervisor lease a copy holds on both sides while it runs."""
COPY_LEASE_TTL = 300.0
"""Seconds the copy's lease lasts unless renewed (it is renewed after every page)."""
DEFAULT_BATCH_SIZE = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class CopyProgress:
    """One page copied: ``copied`` rows of ``table`` so far (this run), of ``total``."""

    table: str
    batch: int
    rows: int
    copied: int
    total: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TableReport:
    """One table on both sides after a copy; ``copied``: rows written by this run
    (for ``vectors``: the vectors carried by the chunk rows written)."""

    table: str
    copied: int
    source: TableFigures
    destination: TableFigures

    @property
    def matches(self) -> bool:
        return self.source == self.destination


@dataclass(frozen=True, slots=True, kw_only=True)
class CopyReport:
    """What a copy did and what the verification found (``verified``: all match)."""

    source_engine: str
    destination_engine: str
    database_id: str
    space: EmbeddingSpace | None
    resumed: bool
    tables: tuple[TableReport, ...]

    @property
    def verified(self) -> bool:
        return all(table.matches for table in self.tables)

    @property
    def copied(self) -> int:
        return sum(table.copied for table in self.tables)


def transfer_of(store: Store) -> KnowledgeBaseTransfer:
    """The store's transfer port, or :class:`TransferError` if its engine has none."""
    if not isinstance(store, SupportsTransfer):
        raise TransferError(f"the {type(store).__name__} engine cannot export or import rows")
    return store.transfer


async def copy_knowledge_base(
    source: Target,
    destination: Target,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: Callable[[CopyProgress], None] | None = None,
    options: StoreOptions | None = None,
) -> CopyReport:
    """Copy ``source`` into ``destination`` (see the module doc), verify, report.

    Targets given as paths or URLs are opened here and closed before this returns;
    stores given as objects stay open (the caller owns them). A destination given as a
    target is opened again once it has taken the source's identity, so that an engine
    which keys its lease on the database id sees the new one. Raises
    :class:`~asemantic.errors.TransferVerificationError` when the copy does not match.
    """
    if batch_size < 1:
        raise InvalidInputError("batch_size must be at least 1")
    _check_targets(source, destination)
    engines = (_engine(source), _engine(destination))
    src = await open_store(source, space=None, options=options)
    try:
        dst = await open_store(destination, space=None, options=options)
        try:
            plan = await _check(src, dst)
            async with _CopyLeases(src, dst) as leases:
                await transfer_of(dst).adopt_identity(
                    database_id=plan.database_id, space=plan.space
                )
                if plan.renamed and dst is not destination:
                    await leases.release_destination()
                    await dst.aclose()
                    dst = await open_store(destination, space=None, options=options)
                    await leases.take_destination(dst)
                return await _copy(
                    src,
                    dst,
                    plan,
                    renew=leases.renew,
                    engines=engines,
                    batch_size=batch_size,
                    on_batch=on_batch,
                )
        finally:
            if dst is not destination:
                await dst.aclose()
    finally:
        if src is not source:
            await src.aclose()


@dataclass(frozen=True, slots=True, kw_only=True)
class _Plan:
    database_id: str
    space: EmbeddingSpace | None
    totals: Mapping[TransferTable, int]
    renamed: bool
    """The destination takes the source's id in place of its own."""


async def _refuse_several_spaces(src: Store) -> None:
    """A copy carries space 1 only: a source with other live spaces is refused."""
    if not isinstance(src, SupportsSpaces):
        return
    others = [
        record.space_id
        for record in await src.spaces.list_spaces()
        if record.space_id != HOME_SPACE_ID and record.stored is not StoredSpaceState.RETIRED
    ]
    if others:
        raise TransferError(
            "the source holds more than one embedding space and a copy carries only the "
            "first; finish the migration and drop the spaces not needed "
            "(asemantic space drop), or copy before migrating"
        )


async def _check(src: Store, dst: Store) -> _Plan:
    """Whether ``dst`` may receive ``src`` (reads only: a refusal writes nothing)."""
    src_t, dst_t = transfer_of(src), transfer_of(dst)
    await _refuse_several_spaces(src)
    inventory = await src_t.inventory()
    database_id = inventory.database_id or await src.jobs.database_id()  # made if none yet
    target = await dst_t.inventory()
    if not target.empty and target.database_id != database_id:
        raise KnowledgeBaseMismatchError(
            "the destination holds another knowledge base (another database id); "
            "copy into an empty database, or into a partial copy of this source"
        )
    space = inventory.space
    if space is not None and target.space is not None and space != target.space:
        raise EmbeddingSpaceMismatchError(
            f"the destination holds vectors of {target.space.describe()}, the source of "
            f"{space.describe()}; vectors of two spaces never mix"
        )
    return _Plan(
        database_id=database_id,
        space=space,
        totals=inventory.rows,
        renamed=target.database_id != database_id,
    )


def _engine(target: Target) -> str:
    if isinstance(target, str | os.PathLike):
        return describe_target(target)
    return type(target).__name__


def _check_targets(source: Target, destination: Target) -> None:
    """Refuse, before anything is opened, what cannot be a copy."""
    if _same(source, destination):
        raise InvalidInputError("the source and the destination are the same knowledge base")
    for role, target in (("source", source), ("destination", destination)):
        if isinstance(target, str | os.PathLike) and os.fspath(target) in MEMORY_TARGETS:
            raise InvalidInputError(
                f"a {os.fspath(target)!r} {role} would be a new, empty store; pass the "
                "MemoryStore object itself"
            )
    if isinstance(source, str | os.PathLike) and describe_target(source) == "sqlite":
        path = Path(os.fspath(source))
        if not path.is_file():
            raise TransferError(f"no knowledge base at {path} (the source must exist)")


def _same(source: Target, destination: Target) -> bool:
    if not isinstance(source, str | os.PathLike) or not isinstance(destination, str | os.PathLike):
        return source is destination
    a, b = os.fspath(source), os.fspath(destination)
    if describe_target(a) == describe_target(b) == "sqlite":
        return Path(a).resolve() == Path(b).resolve()
    return a == b


async def _copy(
    src: Store,
    dst: Store,
    plan: _Plan,
    *,
    renew: Callable[[], Awaitable[None]],
    engines: tuple[str, str],
    batch_size: int,
    on_batch: Callable[[CopyProgress], None] | None,
) -> CopyReport:
    src_t, dst_t = transfer_of(src), transfer_of(dst)
    copied, resumed = await _copy_tables(
        src_t, dst_t, totals=plan.totals, batch_size=batch_size, on_batch=on_batch, renew=renew
    )
    await dst_t.complete_import()
    before = await measure(src_t, batch_size=batch_size)
    after = await measure(dst_t, batch_size=batch_size)
    report = CopyReport(
        source_engine=engines[0],
        destination_engine=engines[1],
        database_id=plan.database_id,
        space=plan.space,
        resumed=resumed,
        tables=tuple(
            TableReport(
                table=name,
                copied=copied.get(name, 0),
                source=before[name],
                destination=after[name],
            )
            for name in table_names()
        ),
    )
    if not report.verified:
        wrong = ", ".join(t.table for t in report.tables if not t.matches)
        raise TransferVerificationError(
            f"the copy does not match its source in {wrong} (was the source written to "
            "during the copy?)",
            report=report,
        )
    logger.info("knowledge base copied and verified")
    return report


async def _copy_tables(
    src: KnowledgeBaseTransfer,
    dst: KnowledgeBaseTransfer,
    *,
    totals: Mapping[TransferTable, int],
    batch_size: int,
    on_batch: Callable[[CopyProgress], None] | None,
    renew: Callable[[], Awaitable[None]],
) -> tuple[dict[str, int], bool]:
    copied: dict[str, int] = {}
    resumed = False
    for table in TransferTable:
        after: TransferKey | None = await dst.last_key(table)
        resumed = resumed or after is not None
        done = 0
        batch = 0
        while True:
            rows = await src.export_rows(table, after=after, limit=batch_size)
            if not rows:
                break
            written = await dst.import_rows(table, rows)
            done += written
            carried = sum(1 for row in rows if isinstance(row, TransferChunk) and row.vector)
            copied[VECTORS] = copied.get(VECTORS, 0) + carried
            batch += 1
            after = row_key(rows[-1])
            await renew()
            if on_batch is not None:
                on_batch(
                    CopyProgress(
                        table=table.value,
                        batch=batch,
                        rows=written,
                        copied=done,
                        total=totals.get(table, 0),
                    )
                )
        copied[table.value] = done
    return copied, resumed


class _CopyLeases:
    """The supervisor lease of both sides, held from before the identity is adopted to
    the end of the verification (renewed between pages once a tenth of its time has
    passed), so that no supervisor starts on either side mid-copy."""

    def __init__(self, source: Store, destination: Store) -> None:
        self._sides: dict[str, Store] = {"source": source, "destination": destination}
        self._taken: dict[str, Store] = {}
        self._renewed_at = -COPY_LEASE_TTL

    async def __aenter__(self) -> _CopyLeases:
        try:
            await self.renew()
        except BaseException:
            await self._release(*self._taken)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._release(*self._taken)

    async def renew(self, *, force: bool = False) -> None:
        """Take or renew both leases (unless renewed moments ago);
        :class:`SupervisorLeaseError` if a supervisor holds one."""
        if not force and time.monotonic() - self._renewed_at < COPY_LEASE_TTL / 10:
            return
        self._renewed_at = time.monotonic()
        for role, store in self._sides.items():
            await self._take(role, store)

    async def release_destination(self) -> None:
        await self._release("destination")

    async def take_destination(self, store: Store) -> None:
        """Hold the lease of ``store``, the destination opened again."""
        self._sides["destination"] = store
        await self._take("destination", store)

    async def _take(self, role: str, store: Store) -> None:
        jobs = _jobs_of(store)
        if jobs is None:
            return
        now = time.time()
        lease = await jobs.acquire_lease(COPY_LEASE_OWNER, ttl=COPY_LEASE_TTL, now=now)
        if not lease.acquired:
            raise SupervisorLeaseError(
                f"a supervisor holds the {role}'s lease for "
                f"{max(0.0, lease.expires_at - now):.0f} s more; stop it before copying "
                "(two supervisors of one knowledge base would race for its remote jobs)"
            )
        self._taken[role] = store

    async def _release(self, *roles: str) -> None:
        for role in list(roles):
            store = self._taken.pop(role, None)
            jobs = _jobs_of(store) if store is not None else None
            if jobs is None:
                continue
            try:
                await jobs.release_lease(COPY_LEASE_OWNER)
            except StoreError:
                logger.warning("could not release the copy's lease", exc_info=True)


def _jobs_of(store: Store) -> JobStore | None:
    """The store's job store; None for an engine built without one (no supervisor can
    run on it, so there is no lease to hold)."""
    try:
        return store.jobs
    except StoreClosedError:
        raise
    except StoreError:
        logger.info("this engine has no job store; no supervisor lease to hold")
        return None
