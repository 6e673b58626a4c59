"""Shared by the contract tests and the crash child: documents, wiring, drain and checks.

The checks are the contracts of ``design.md`` section 6, as reads through the ports
(``Store.chunk_records``, ``vector_rows``, ``usage``, ``JobStore.jobs`` and
``transitions``), so they hold on every engine, and over the emulator's remote state.
A database is named by a *target*: a SQLite file's path or a PostgreSQL URL.

* :func:`check_consistent` holds at *any* moment (right after a crash and reopen, after
  every step of the state machine): the engine's integrity check, every vector on a READY chunk,
  no PENDING chunk inside a job that is finished or gone, FAILED chunks with a reason,
  content hashes that match the text, job histories that only move forward.
* :func:`check_vectors`: each READY chunk has exactly one vector, and it is the
  emulator's embedding of the chunk's *current* vector source (contract 2).
* :func:`check_settled` holds once :func:`drain` has run the pipeline to the end:
  nothing PENDING, every job finished and cleaned, no remote job or file left
  (contract 3), and, when asked, one remote create per job row.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import tempfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import sqlite_vec

from asemantic import (
    BatchSupervisor,
    CoreConfig,
    GeminiSettings,
    GoogleKeyring,
    JobStatus,
    RetryConfig,
    SemanticCore,
    SupervisorConfig,
)
from asemantic.adapters.sqlite import select_driver
from asemantic.domain.jobs import TERMINAL_STATUSES, JobTrigger, next_status
from asemantic.domain.space import EmbeddingSpace
from asemantic.errors import InvalidTransitionError
from asemantic.ports import ChunkRecord, Embedder
from asemantic.testing import LexicalEmbedder
from asemantic.testing.emulator import GeminiEmulator, RecordedRequest
from tests.legacy_schema import V0_DDL

Target = Path | str
"""A database: a SQLite file or a PostgreSQL URL."""

DEFAULT_KEY = "contracts-default-key-5d1c"
BATCH_KEY = "contracts-batch-key-9e07"
SPACE = EmbeddingSpace(dimensions=768)
FAST_RETRY = RetryConfig(attempts=3, initial_delay=0.001, max_delay=0.005, timeout=10.0)

JOB_SIZE = 8
"""Chunks per job in the crash workload (three or four jobs per run)."""
SLICE_SIZE = 3
"""Result lines per applied slice in the crash child (several transactions per job)."""
FIRST_DOCS = 8
"""Documents ingested before the first flush in the crash workload."""
ALL_DOCS = 12

VERSIONS = 4
"""Versions of each document the workloads ingest (see :func:`document`)."""
_TOPICS = ("invoice", "refund", "vacation", "certificate", "outage", "onboarding")


def keys() -> GoogleKeyring:
    return GoogleKeyring(DEFAULT_KEY, batch_key=BATCH_KEY)


RECOVERY_GRACE = 0.5
"""Seconds a reopened core waits before it re-sends a create whose outcome is unknown.

After a kill, a create the child sent may still be in the loopback server's hands for
a moment; the library's ``create_grace_seconds`` (120 s by default) covers that. The
tests use a short one so that recovery does not wait two minutes."""


NEW_SPACE = EmbeddingSpace(dimensions=1536)
"""The space the ``spaces`` workload migrates to."""


def config(*, create_grace: float = 120.0, space: EmbeddingSpace = SPACE) -> CoreConfig:
    return CoreConfig(space=space, create_grace_seconds=create_grace)


def document(index: int, version: int = 0) -> tuple[str, str]:
    """Document ``index`` at ``version``: (source, Markdown text).

    Even documents have three sections (three chunks); a new version changes only the
    last section, so an edit keeps two chunks (and their place in a job) and replaces
    one. Version 3 also changes the title, which changes every chunk's vector source.
    """
    topic = _TOPICS[index % len(_TOPICS)]
    title = f"{topic.title()} note {index}" + (" revised" if version >= 3 else "")
    words = " ".join(f"{topic} w{index}x{j}" for j in range(6))
    if index % 2:
        return f"doc-{index}", f"# {title}\n\n{words} version {version}\n"
    sections = [
        f"## Scope\n\n{words} scope",
        f"## Rules\n\n{topic} rules for {index} apply",
        f"## Changes\n\n{topic} change number {version} of {index}",
    ]
    return f"doc-{index}", f"# {title}\n\n" + "\n\n".join(sections) + "\n"


def fast_supervisor_config(*, lease_wait: float = 0.0) -> SupervisorConfig:
    """A supervisor that ticks every 10 ms; its lease outlives a killed process by 3 s."""
    return SupervisorConfig(
        poll_interval=0.01,
        jitter=0.2,
        min_batch_size=1,
        max_batch_size=JOB_SIZE,
        max_wait=0.0,
        lease_ttl=3.0,
        lease_wait=lease_wait,
        pause_initial=0.02,
        pause_max=0.1,
        stop_timeout=2.0,
    )


async def open_in_process(
    path: Target,
    emulator: GeminiEmulator,
    *,
    create_grace: float = RECOVERY_GRACE,
    embedder: Embedder | None = None,
    space: EmbeddingSpace = SPACE,
) -> SemanticCore:
    """A core on ``path`` that reaches ``emulator`` through its in-process transport
    (for batch work; for queries too unless an ``embedder`` is given)."""
    return await SemanticCore.open(
        path,
        keys=keys(),
        embedder=embedder,
        config=config(create_grace=create_grace, space=space),
        gemini=GeminiSettings(
            base_url=emulator.base_url, transport=emulator.async_transport(), retry=FAST_RETRY
        ),
    )


async def open_over_http(
    path: Target, base_url: str, *, create_grace: float = 120.0
) -> SemanticCore:
    """A core on ``path`` that reaches an emulator over loopback HTTP."""
    gemini = GeminiSettings(base_url=base_url, retry=FAST_RETRY)
    return await SemanticCore.open(
        path, keys=keys(), config=config(create_grace=create_grace), gemini=gemini
    )


# --- running the pipeline ---------------------------------------------------------------


async def is_settled(core: SemanticCore) -> bool:
    """No chunk PENDING and no job active or waiting for its remote cleanup."""
    counts = await core.store.count_chunks_by_status()
    if counts["PENDING"]:
        return False
    return not await core.batch_jobs.jobs(uncleaned=True) and not await core.batch_jobs.jobs(
        (JobStatus.CREATED, JobStatus.SUBMITTED, JobStatus.PROCESSING)
    )


async def spaces_settled(core: SemanticCore) -> bool:
    """:func:`is_settled` for space 1, and every other space's pipeline idle."""
    if not await is_settled(core):
        return False
    for manager in await core.space_managers():
        if not (await manager.jobs.snapshot()).idle:
            return False
    return True


async def drain(core: SemanticCore, emulator: GeminiEmulator, *, rounds: int = 60) -> int:
    """Reconcile, flush, finish remote jobs and sync until settled; the rounds it took.

    While a job waits out the create grace (a create of unknown outcome was sent), a
    round is followed by a short pause."""
    manager = core.batch_manager
    for used in range(1, rounds + 1):
        await manager.reconcile()
        await manager.flush_queue(min_size=1)
        emulator.complete_all()
        await manager.sync_status()
        if await is_settled(core):
            return used
        if await core.batch_jobs.jobs((JobStatus.CREATED,)):
            await asyncio.sleep(0.05)
    raise AssertionError(f"the pipeline did not settle in {rounds} rounds: {await describe(core)}")


async def drain_with_supervisor(core: SemanticCore, *, within: float = 30.0) -> None:
    """Run a supervisor until idle (it waits for a dead supervisor's lease to expire)."""
    config = fast_supervisor_config(lease_wait=within)
    with anyio.fail_after(within):
        async with BatchSupervisor(core, config) as supervisor:
            await supervisor.wait_until_idle()


# --- inspection -------------------------------------------------------------------------


async def describe(core: SemanticCore) -> str:
    """Chunks by status and jobs by status, for failure messages."""
    chunks = await core.store.count_chunks_by_status()
    jobs = Counter(str(job.status) for job in await core.batch_jobs.jobs())
    uncleaned = len(await core.batch_jobs.jobs(uncleaned=True))
    return f"chunks={dict(chunks)} jobs={dict(jobs)} uncleaned={uncleaned}"


def _legal(from_status: JobStatus, to_status: JobStatus) -> bool:
    for trigger in JobTrigger:
        try:
            if next_status(from_status, trigger) is to_status:
                return True
        except InvalidTransitionError:
            continue
    return False


async def check_consistent(core: SemanticCore) -> None:
    """What must hold at any moment, even right after a crash (contracts 1, 2 and 4)."""
    problems = await core.store.integrity_check()
    assert problems == "ok", problems
    chunks = await core.store.chunk_records()
    jobs = {job.job_id: job.status for job in await core.batch_jobs.jobs()}
    orphaned = [
        (c.chunk_id, c.job_id, jobs.get(c.job_id))
        for c in chunks
        if c.status == "PENDING"
        and c.job_id is not None
        and jobs.get(c.job_id) in (None, JobStatus.COMPLETED, JobStatus.FAILED)
    ]
    assert not orphaned, f"PENDING chunks inside finished or missing jobs: {orphaned}"
    unexplained = [c.chunk_id for c in chunks if c.status == "FAILED" and not c.error_message]
    assert not unexplained, f"FAILED chunks without a reason: {unexplained}"
    for c in chunks:
        expected = hashlib.sha256(c.vector_source.encode("utf-8", "surrogatepass")).hexdigest()
        assert c.content_hash == expected, f"chunk {c.chunk_id}: hash does not match its text"
    rows = await core.store.vector_rows()
    assert len(rows) == len({chunk_id for chunk_id, _ in rows}), "a chunk has two vectors"
    await check_documents(core, chunks)
    await check_histories(core)


_VERSION_CHUNKS: dict[str, tuple[str, ...]] = {}


async def _version_chunks() -> dict[str, tuple[str, ...]]:
    """Document hash -> its chunks' hashes, for every version of every document.

    Made once, by ingesting each version into a scratch database."""
    if not _VERSION_CHUNKS:
        emulator = GeminiEmulator()
        with tempfile.TemporaryDirectory() as folder:
            core = await open_in_process(Path(folder) / "versions.db", emulator)
            try:
                for index in range(ALL_DOCS):
                    for version in range(VERSIONS):
                        source, text = document(index, version)
                        await core.ingest(text, source=source, mode="async")
                        snapshot = await core.store.get_document(source)
                        assert snapshot is not None
                        hashes = tuple(sorted(c.content_hash for c in snapshot.chunks))
                        _VERSION_CHUNKS[snapshot.content_hash] = hashes
            finally:
                await core.aclose()
    return _VERSION_CHUNKS


async def check_documents(core: SemanticCore, chunks: list[ChunkRecord]) -> None:
    """Each document holds the chunks of exactly the version its row names, at
    positions 0..n-1: an ingestion is all or nothing."""
    versions = await _version_chunks()
    found: dict[str, tuple[list[str], list[int]]] = {}
    for c in chunks:
        entry = found.setdefault(c.source, ([], []))
        entry[0].append(c.content_hash)
        entry[1].append(c.position)
    for source, (hashes, positions) in found.items():
        assert sorted(positions) == list(range(len(positions))), f"{source}: {positions}"
        if source.startswith("old-"):  # from a version-0 file: no known versions
            continue
        snapshot = await core.store.get_document(source)
        assert snapshot is not None, f"{source}: chunks without their document"
        doc_hash = snapshot.content_hash
        assert doc_hash in versions, f"{source}: a document hash no version has"
        assert tuple(sorted(hashes)) == versions[doc_hash], f"{source}: chunks of another version"


async def check_histories(core: SemanticCore) -> None:
    """Each job's recorded transitions form one legal path that ends at its status."""
    for job in await core.batch_jobs.jobs():
        moves = await core.batch_jobs.transitions(job.job_id)
        steps = [(t.from_status, t.to_status) for t in moves]
        assert steps and steps[0] == (None, "CREATED"), f"job {job.job_id} history: {steps}"
        current = JobStatus.CREATED
        for from_status, to_status in steps[1:]:
            assert from_status == current, f"job {job.job_id} history: {steps}"
            target = JobStatus(to_status)
            assert _legal(current, target), f"job {job.job_id}: {current} -> {target}"
            current = target
        assert current is job.status, f"job {job.job_id} is {job.status}, history {steps}"


def expected_vector(
    emulator: GeminiEmulator, source: str, title: str | None
) -> np.ndarray[Any, Any]:
    """The direction the emulator gives a batch line with this text and title."""
    values = emulator.embed(
        source, dimensions=SPACE.dimensions, task_type=SPACE.task_type, title=title or None
    )
    return np.asarray(values, dtype=np.float64)


async def check_vectors(
    core: SemanticCore,
    emulator: GeminiEmulator,
    *,
    preexisting: Mapping[int, bytes] | None = None,
) -> int:
    """Every READY chunk's one vector is the embedding of its current text; returns the
    number of READY chunks. ``preexisting`` vectors (from a migrated file) must be kept
    byte for byte."""
    vectors = dict(await core.store.vector_rows())
    ready = 0
    for chunk in await core.store.chunk_records():
        chunk_id, source, title, status = (
            chunk.chunk_id,
            chunk.vector_source,
            chunk.title,
            chunk.status,
        )
        if status != "READY":
            assert chunk_id not in vectors, f"{status} chunk {chunk_id} has a vector"
            continue
        ready += 1
        assert chunk_id in vectors, f"READY chunk {chunk_id} has no vector"
        stored = vectors[chunk_id]
        if preexisting is not None and chunk_id in preexisting:
            assert stored == preexisting[chunk_id], f"migrated vector of {chunk_id} changed"
            continue
        got = np.frombuffer(stored, dtype="<f4").astype(np.float64)
        want = expected_vector(emulator, str(source), title)
        cosine = float(got @ want / (np.linalg.norm(got) * np.linalg.norm(want)))
        assert cosine > 1 - 1e-5, f"chunk {chunk_id}: vector is not for its current text"
    assert len(vectors) == ready, f"{len(vectors)} vectors for {ready} READY chunks"
    return ready


_QUERY = "refund rules for invoice changes"


async def check_search(core: SemanticCore) -> None:
    """Search sees exactly the READY chunks (asked for more hits than there are), at
    the cosine distance of their stored vectors: what users see is what is stored."""
    ready = {c.chunk_id for c in await core.store.chunk_records() if c.status == "READY"}
    k = min(len(ready) + 3, core.config.max_search_k)
    hits = await core.search(_QUERY, k=k, mode="vector")
    assert {hit.chunk_id for hit in hits} == ready, "search does not see the READY chunks"
    if not hits:
        return
    query = np.frombuffer(await core.embedder.embed_query(_QUERY), dtype="<f4").astype(np.float64)
    vectors = {
        chunk_id: np.frombuffer(blob, dtype="<f4").astype(np.float64)
        for chunk_id, blob in await core.store.vector_rows()
    }
    for hit in hits:
        stored = vectors[hit.chunk_id]
        cosine = float(query @ stored / (np.linalg.norm(query) * np.linalg.norm(stored)))
        assert hit.distance is not None, f"chunk {hit.chunk_id}: no distance"
        assert abs(hit.distance - (1.0 - cosine)) < 1e-4, f"chunk {hit.chunk_id}: distance"


def actual_creates(requests: tuple[RecordedRequest, ...]) -> int:
    """Remote jobs the emulator really made: answered 200, or made with the answer lost
    (a lost answer to a create the emulator refused, such as one from an expired input
    file, made nothing)."""
    return sum(
        1
        for r in requests
        if r.endpoint == "batches.create" and (r.status == 200 or _lost_after_success(r.fault))
    )


def _lost_after_success(fault: str | None) -> bool:
    return fault is not None and "response lost" in fault and "executed 200" in fault


async def check_settled(
    core: SemanticCore, emulator: GeminiEmulator, *, one_create_per_job: bool = True
) -> None:
    """After :func:`drain`: nothing left anywhere, nothing made twice (contracts 1 and 3)."""
    assert await is_settled(core), await describe(core)
    rows = [
        (c.chunk_id, c.status)
        for c in await core.store.chunk_records()
        if c.status not in ("READY", "FAILED")
    ]
    assert not rows, f"chunks neither READY nor FAILED: {rows}"
    leftovers = emulator.remote_leftovers()
    assert not leftovers, f"remote leftovers: {leftovers}"
    if one_create_per_job:
        with_remote = sum(1 for job in await core.batch_jobs.jobs() if job.remote_name)
        assert actual_creates(emulator.requests) == with_remote, (
            f"{actual_creates(emulator.requests)} remote creates for {with_remote} job rows"
        )


async def batch_texts_applied(core: SemanticCore) -> int:
    """Texts the usage ledger says the batch route embedded (one per applied vector)."""
    return (await core.store.usage())["batch"].texts


def terminal(status: JobStatus) -> bool:
    return status in TERMINAL_STATUSES


# --- a version-0 database (the schema the project started from; SQLite only) ------------

V0_DOCS = 6
V0_CHUNKS_PER_DOC = 3
V0_MISSING_VECTOR = 5
"""The chunk id whose vector the old file lost: it becomes PENDING on upgrade."""


@dataclass(frozen=True, kw_only=True)
class V0File:
    """What a version-0 file held: vectors by chunk id (the upgrade must keep them)."""

    vectors: Mapping[int, bytes]
    chunks: int


def raw_connection(path: Path) -> Any:
    """A plain synchronous connection with sqlite-vec (for building and inspecting files)."""
    conn = select_driver().module.connect(str(path), isolation_level=None)
    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    conn.enable_load_extension(False)
    return conn


def build_v0(path: Path) -> V0File:
    """A file as the original design wrote it: L2 vec0 table, no status columns, one
    chunk without its vector and one vector without its chunk."""
    embedder = LexicalEmbedder(SPACE)
    vectors: dict[int, bytes] = {}
    conn = raw_connection(path)
    try:
        conn.executescript(V0_DDL)
        chunk_id = 0
        for doc_id in range(1, V0_DOCS + 1):
            source = f"old-{doc_id}.md"
            conn.execute(
                "INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?)",
                (doc_id, source, f"Old {doc_id}", f"hash-{doc_id}", "{}", "2024-05-01T10:00:00"),
            )
            for position in range(V0_CHUNKS_PER_DOC):
                chunk_id += 1
                text = f"archived minutes {doc_id} item {position} budget travel"
                vector_source = f"{source}\n{text}"
                meta = json.dumps({"_vector_source": vector_source})
                conn.execute(
                    "INSERT INTO chunks VALUES (?, ?, ?, ?, ?)",
                    (chunk_id, doc_id, position, text, meta),
                )
                if chunk_id != V0_MISSING_VECTOR:
                    blob = embedder.vector(vector_source)
                    vectors[chunk_id] = blob
                    conn.execute(
                        "INSERT INTO vec_chunks (rowid, embedding) VALUES (?, ?)", (chunk_id, blob)
                    )
        conn.execute(
            "INSERT INTO vec_chunks (rowid, embedding) VALUES (999, ?)", (embedder.vector("x"),)
        )
    finally:
        conn.close()
    return V0File(vectors=vectors, chunks=chunk_id)


def file_state(path: Path) -> dict[str, object]:
    """Version, schema and rows of a file, to compare before and after a crash."""
    conn = raw_connection(path)
    try:
        return {
            "version": conn.execute("PRAGMA user_version").fetchone()[0],
            "integrity": conn.execute("PRAGMA integrity_check").fetchone()[0],
            "schema": sorted(conn.execute("SELECT type, name, sql FROM sqlite_master")),
            "documents": conn.execute("SELECT * FROM documents ORDER BY id").fetchall(),
            "chunks": conn.execute("SELECT * FROM chunks ORDER BY id").fetchall(),
            "vectors": conn.execute(
                "SELECT rowid, embedding FROM vec_chunks ORDER BY rowid"
            ).fetchall(),
        }
    finally:
        conn.close()
