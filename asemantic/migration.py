"""Embedding-space commands of a knowledge base: plan, migrate, status, switch,
rollback, drop (the design is :mod:`asemantic.domain.spaces`').

:class:`SpaceCommands` is what :class:`~asemantic.core.SemanticCore`'s ``space_*``
methods delegate to. It reaches the engine only through the ports
(:class:`~asemantic.ports.SupportsSpaces`); an engine without several spaces raises
:class:`~asemantic.errors.SpacesUnsupportedError`. Batch work of a space other than 1
runs through an unchanged :class:`~asemantic.batch.manager.BatchManager` on that space's
job store, with a batch backend built for that space (:meth:`SpaceCommands.managers`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from asemantic.batch.hooks import HookRegistry
from asemantic.batch.manager import BatchManager
from asemantic.domain.jobs import JobStatus
from asemantic.domain.pricing import Pricing
from asemantic.domain.space import EmbeddingSpace
from asemantic.domain.spaces import (
    HOME_SPACE_ID,
    MigrationPlan,
    SpaceRecord,
    SpaceState,
    StoredSpaceState,
    plan_migration,
)
from asemantic.errors import SpaceError, SpacesUnsupportedError
from asemantic.keys import GoogleKeyring
from asemantic.ports import BatchBackend, SpaceCatalog, Store, SupportsSpaces

__all__ = ["SpaceCommands", "SpaceStatus", "SwitchOutcome"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class SpaceStatus:
    """One space as ``space status`` reports it: progress, jobs by status, cost so far.

    ``cost_so_far_usd`` prices the tokens of the chunks this space holds vectors for
    (the chunks' own estimates) at the batch price, the route a migration takes; None
    for space 1, which may have been paid online or in batch (``core.stats()`` has its
    ledger).
    """

    record: SpaceRecord
    jobs: Mapping[str, int]
    cost_so_far_usd: float | None

    @property
    def space_id(self) -> int:
        return self.record.space_id

    @property
    def state(self) -> SpaceState:
        return self.record.state


@dataclass(frozen=True, slots=True, kw_only=True)
class SwitchOutcome:
    """What a switch or rollback did: the space now active, the one before, and how
    many chunks the new active space lacks a vector for (0 unless forced)."""

    active: SpaceRecord
    previous_id: int | None
    missing: int

    @property
    def forced(self) -> bool:
        return self.missing > 0


class SpaceCommands:
    """The spaces of one store, and the batch managers of its spaces other than 1."""

    def __init__(
        self,
        *,
        store: Store,
        keys: GoogleKeyring | None,
        backend_factory: Callable[[EmbeddingSpace], BatchBackend],
        pricing: Pricing | None,
        create_grace: float,
        hooks: Callable[[], HookRegistry] | None = None,
    ) -> None:
        self._store = store
        self._hooks = hooks
        self._keys = keys
        self._backend_factory = backend_factory
        self._pricing = pricing
        self._create_grace = create_grace
        self._managers: dict[int, BatchManager] = {}

    def _supports(self) -> SupportsSpaces:
        store = self._store
        if not isinstance(store, SupportsSpaces):
            raise SpacesUnsupportedError(
                "this engine keeps one embedding space per database; migrate on SQLite, "
                "or copy the knowledge base to a new database"
            )
        return store

    def _prices(self, space: EmbeddingSpace) -> Pricing:
        """The configured prices, else the list prices of ``space``'s model."""
        return self._pricing if self._pricing is not None else Pricing.for_model(space.model)

    @property
    def catalog(self) -> SpaceCatalog:
        return self._supports().spaces

    async def plan(self, target: EmbeddingSpace) -> MigrationPlan:
        """What migrating to ``target`` would embed and cost; nothing is written."""
        await self._refuse_live(target)
        chunks, tokens = await self.catalog.migration_inputs()
        return plan_migration(target, chunks=chunks, tokens=tokens, pricing=self._prices(target))

    async def _refuse_live(self, target: EmbeddingSpace) -> None:
        for record in await self.catalog.list_spaces():
            if record.stored is not StoredSpaceState.RETIRED and record.space == target:
                raise SpaceError(
                    f"space {record.space_id} already is {target.describe()}: nothing to migrate"
                )

    async def migrate(self, target: EmbeddingSpace) -> SpaceRecord:
        """Register ``target`` and queue every chunk for it (one transaction)."""
        await self._refuse_live(target)
        record = await self.catalog.register(target)
        logger.info("embedding space registered for migration")
        return record

    async def status(self) -> list[SpaceStatus]:
        """Every space with its progress, its jobs by status and its cost so far."""
        catalog = self.catalog
        out: list[SpaceStatus] = []
        for record in await catalog.list_spaces():
            jobs = dict.fromkeys((s.value for s in JobStatus), 0)
            for job in await catalog.jobs(record.space_id, record.space).jobs():
                jobs[job.status.value] += 1
            out.append(
                SpaceStatus(
                    record=record,
                    jobs=jobs,
                    cost_so_far_usd=(
                        None
                        if record.space_id == HOME_SPACE_ID
                        else self._prices(record.space).batch(record.progress.tokens_ready)
                    ),
                )
            )
        return out

    async def switch(self, space_id: int, *, force: bool = False) -> SwitchOutcome:
        """Move the active-space pointer to ``space_id`` (see ``SpaceCatalog.switch``)."""
        store = self._supports()
        before = store.active_space_id
        record = await store.spaces.switch(space_id, force=force)
        await store.reload_active_space()
        if record.progress.missing:
            logger.warning("switched to a space that lacks vectors for some chunks")
        return SwitchOutcome(active=record, previous_id=before, missing=record.progress.missing)

    async def rollback(self, *, force: bool = False) -> SwitchOutcome:
        """Switch back to the space that was active before the current one."""
        store = self._supports()
        current = await store.spaces.get(store.active_space_id)
        if current.previous_id is None:
            raise SpaceError("no earlier active space to roll back to")
        return await self.switch(current.previous_id, force=force)

    async def drop(self, space_id: int) -> int:
        """Delete a standby space's vectors and retire it; how many vectors went. Its
        jobs still in flight are finished (results discarded) and cleaned up by the
        supervisor."""
        return await self.catalog.drop(space_id)

    async def managers(self) -> list[BatchManager]:
        """A batch manager per space other than 1 with work: live, or with jobs not
        cleaned up yet (a dropped space's jobs in flight). Empty on an engine with one
        space."""
        store = self._store
        if not isinstance(store, SupportsSpaces):
            return []
        catalog = store.spaces
        uncleaned = await catalog.uncleaned_jobs()
        out: list[BatchManager] = []
        for record in await catalog.list_spaces():
            if record.space_id == HOME_SPACE_ID:
                continue
            live = record.stored is not StoredSpaceState.RETIRED
            if not live and not uncleaned.get(record.space_id):
                continue
            out.append(self._manager(catalog, record))
        return out

    def _manager(self, catalog: SpaceCatalog, record: SpaceRecord) -> BatchManager:
        manager = self._managers.get(record.space_id)
        if manager is None:
            space = record.space
            manager = BatchManager(
                jobs=catalog.jobs(record.space_id, space),
                backend_factory=lambda: self._backend_factory(space),
                keys=self._keys,
                create_grace=self._create_grace,
                space_id=record.space_id,
                # One registry: a hook sees the jobs of every space (events say which).
                hooks=self._hooks() if self._hooks is not None else None,
            )
            self._managers[record.space_id] = manager
        return manager

    async def aclose(self) -> None:
        """Close the managers' batch backends (idempotent)."""
        managers, self._managers = list(self._managers.values()), {}
        for manager in managers:
            await manager.aclose()
