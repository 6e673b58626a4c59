"""The crash harness's child: runs ingestion and the batch pipeline, then dies by SIGKILL.

``python -m tests.contracts.crashee zygote`` (from the repository root) imports
everything once and then, for each JSON line it reads on standard input, forks a child
that runs :func:`run` with that spec, and answers one JSON line on standard output
when the child is gone. Forking from a warm process makes a child start in
milliseconds instead of the seconds the imports take, so many crashes fit in a test
run. The zygote runs the workload once in-process first (lazy set-up in the SDK), and
forks only once no thread but its main one is left, so forking it is safe.

A child kills itself (``os.kill(os.getpid(), SIGKILL)``) at a *named point*: library
methods are wrapped here, in the child only, and the library code is not changed. The
points at port calls (:data:`PORT_POINTS`) are wrapped on the classes of the store the
child opened, so they exist on every engine; the others (:data:`SQLITE_POINTS`) are
inside the SQLite adapter's transactions and schema upgrade, and exist on SQLite only.
The spec's ``db`` is the database: a SQLite file's path or a PostgreSQL URL.
With ``kill_after`` in the spec the zygote kills the child after that many seconds
instead (a random moment); the child is the zygote's own and not yet reaped, so its
pid cannot have been reused.

Every point a child passes is written unbuffered to its log (``hit <point> <n>
<seconds>``), so after a random kill the log says where the child was.

``python -m tests.contracts.crashee run '<json spec>'`` runs one spec in the
foreground (for debugging).
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import json
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypedDict

import anyio

from asemantic import BatchSupervisor, SemanticCore
from asemantic.adapters.gemini import batch as batch_module
from asemantic.adapters.gemini import client as client_module
from asemantic.adapters.gemini import results as results_module
from asemantic.adapters.gemini.batch import GeminiBatchClient
from asemantic.adapters.gemini.embedder import GeminiEmbedder
from asemantic.adapters.sqlite import documents as documents_module
from asemantic.adapters.sqlite import jobs as jobs_module
from asemantic.adapters.sqlite import schema as schema_module
from asemantic.adapters.sqlite import space_jobs as space_jobs_module
from asemantic.adapters.sqlite import spaces as spaces_module
from asemantic.adapters.sqlite.space_jobs import SqliteSpaceJobStore
from asemantic.adapters.sqlite.spaces import SqliteSpaces
from asemantic.adapters.sqlite.store import SqliteStore
from asemantic.domain.jobs import JobStatus
from asemantic.ports import JobRecord, Store
from asemantic.testing.emulator import GeminiEmulator, RealClock
from tests.contracts import harness
from tests.support import postgres_on_branch

POINTS = (
    "after_online_embed",
    "after_usage",
    "after_document_write",
    "inside_document_write",
    "after_job_row",
    "after_create_mark",
    "after_upload",
    "after_remote_create",
    "after_submit",
    "inside_apply",
    "after_slice",
    "inside_release",
    "after_complete",
    "after_fail",
    "mid_cleanup",
    "after_cleanup",
    "inside_migration",
    "inside_vec_rebuild",
    "after_migration",
    "after_space_register",
    "inside_space_switch",
    "after_space_switch",
    "after_space_job_row",
    "after_space_upload",
    "after_space_submit",
    "inside_space_apply",
    "after_space_slice",
    "after_space_complete",
    "after_space_cleanup",
)
"""Every named point a child can die at (see :func:`install_points`)."""

SPACE_POINTS = frozenset(
    {
        "after_space_register",
        "inside_space_switch",
        "after_space_switch",
        "after_space_job_row",
        "after_space_upload",
        "after_space_submit",
        "inside_space_apply",
        "after_space_slice",
        "after_space_complete",
        "after_space_cleanup",
    }
)
"""Points of a migration to a second embedding space (the ``spaces`` workload; the
engines holding several spaces: SQLite)."""

SQLITE_POINTS = frozenset(
    {
        "inside_document_write",
        "inside_apply",
        "inside_release",
        "inside_migration",
        "inside_vec_rebuild",
        "after_migration",
        *SPACE_POINTS,
    }
)
"""Points inside the SQLite adapter (its transactions and its schema upgrade)."""
PORT_POINTS = frozenset(POINTS) - SQLITE_POINTS
"""Points at port calls and SDK calls: on every engine."""


class Spec(TypedDict, total=False):
    db: str  # a SQLite file's path or a PostgreSQL URL
    base_url: str
    log: str
    workload: str  # "pipeline", "sync" (fresh file), "migration" (a version-0 file), "spaces"
    driver: str  # "manager" or "supervisor"
    point: str | None
    nth: int
    kill_after: float | None
    create_grace: float  # seconds before resending a create of unknown outcome (120)


class Outcome(TypedDict):
    pid: int
    exit: int | None
    signal: int | None
    killed_by_timer: bool
    elapsed: float


# --- named points -------------------------------------------------------------------------


class Points:
    """Counts the points a child passes and kills it at the chosen one."""

    def __init__(self, target: str | None, nth: int, log_fd: int) -> None:
        if target is not None and target not in POINTS:
            raise ValueError(f"unknown crash point {target!r}")
        self._target = target
        self._nth = nth
        self._log_fd = log_fd
        self._counts: Counter[str] = Counter()
        self._started = time.monotonic()

    def hit(self, name: str) -> None:
        self._counts[name] += 1
        at = time.monotonic() - self._started
        os.write(self._log_fd, f"hit {name} {self._counts[name]} {at:.3f}\n".encode())
        if name == self._target and self._counts[name] == self._nth:
            os.kill(os.getpid(), signal.SIGKILL)


def _space_transition_point(record: JobRecord | None) -> str | None:
    if record is None:
        return None
    return {
        JobStatus.SUBMITTED: "after_space_submit",
        JobStatus.COMPLETED: "after_space_complete",
    }.get(record.status)


def _replace(owner: object, attr: str, value: object) -> None:
    setattr(owner, attr, value)


def _after(owner: Any, attr: str, points: Points, name: Callable[[Any], str | None] | str) -> None:
    """Wrap the coroutine function ``owner.attr``: call ``points.hit`` once it returns."""
    real = getattr(owner, attr)

    @functools.wraps(real)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = await real(*args, **kwargs)
        chosen = name(result) if callable(name) else name
        if chosen is not None:
            points.hit(chosen)
        return result

    _replace(owner, attr, wrapper)


def _transition_point(record: JobRecord | None) -> str | None:
    if record is None:
        return None
    return {
        JobStatus.SUBMITTED: "after_submit",
        JobStatus.COMPLETED: "after_complete",
        JobStatus.FAILED: "after_fail",
    }.get(record.status)


def install_points(points: Points) -> None:
    """Wrap the points that do not depend on the store (in this process only): the SDK
    calls, and the SQLite adapter's internals (a no-op on another engine)."""
    # Sync ingestion: vectors came back from the online API.
    _after(GeminiEmbedder, "embed_documents", points, "after_online_embed")
    # Ingestion: the document write transaction, inside (before COMMIT).
    _after(documents_module, "write", points, "inside_document_write")

    # The input file is uploaded, the job not created.
    async def call_with_retries(operation: Any, *, what: str, **kwargs: Any) -> Any:
        result = await client_module.call_with_retries(operation, what=what, **kwargs)
        if what == "files.upload":
            points.hit("after_upload")
            if SPACE_UPLOADS[0]:
                points.hit("after_space_upload")
        elif what.endswith(".delete"):
            points.hit("mid_cleanup")
        return result

    _replace(batch_module, "call_with_retries", call_with_retries)
    # (b) the remote job exists, its name is not stored yet.
    _after(GeminiBatchClient, "create_from_file", points, "after_remote_create")
    # (c) inside a slice's transaction (vectors written, not committed).
    _after(SqliteStore, "apply_vectors", points, "inside_apply")
    # The chunks a finished job hands back, inside the transition's transaction.
    _after(jobs_module, "_release", points, "inside_release")
    # (e) the schema upgrade: inside its transaction, while vec_chunks is rebuilt (the
    # old table dropped, the new one empty), and just after its commit.
    _after(schema_module, "_upgrade_vec_table", points, "inside_migration")
    _after(schema_module, "create_vec_table", points, "inside_vec_rebuild")
    _after(schema_module, "ensure_schema_compatibility", points, "after_migration")
    # A migration to a second space: its registration, its switch (inside the switch's
    # transaction, and after its commit), its jobs (row, submit, slices, complete,
    # clean-up) and a slice's vectors written in its space, uncommitted.
    _after(SqliteSpaces, "register", points, "after_space_register")
    _after(spaces_module, "_missing", points, "inside_space_switch")
    _after(SqliteSpaces, "switch", points, "after_space_switch")
    _after(
        SqliteSpaceJobStore, "create_job", points, lambda n: "after_space_job_row" if n else None
    )
    _after(SqliteSpaceJobStore, "transition_job", points, _space_transition_point)
    _after(SqliteSpaceJobStore, "apply_results", points, "after_space_slice")
    _after(SqliteSpaceJobStore, "mark_cleaned", points, "after_space_cleanup")
    _after(space_jobs_module, "apply_space_vectors", points, "inside_space_apply")
    # Small slices, so a job's results are applied in several transactions.
    _replace(
        batch_module,
        "iter_result_slices",
        functools.partial(results_module.iter_result_slices, slice_size=harness.SLICE_SIZE),
    )


def install_port_points(points: Points, store: Store) -> None:
    """Wrap the port methods of the classes of ``store`` and its job store (whatever
    the engine), each point hit once the call returned (its transaction committed)."""
    store_class, jobs_class = type(store), type(store.jobs)
    # Sync ingestion: the usage was recorded (before the document is written, in a
    # transaction of its own).
    _after(store_class, "record_usage", points, "after_usage")
    _after(store_class, "write_document", points, "after_document_write")
    # (a) the job row is committed, the remote create not made yet.
    _after(jobs_class, "create_job", points, lambda n: "after_job_row" if n else None)
    # A create of unknown outcome is recorded (reconcile waits its grace, then resends).
    _after(jobs_class, "mark_create_attempt", points, "after_create_mark")
    # Transitions, after their commit: SUBMITTED, COMPLETED (d: before cleanup), FAILED.
    _after(jobs_class, "transition_job", points, _transition_point)
    # (c) results: after a slice's commit, with more slices to come.
    _after(jobs_class, "apply_results", points, "after_slice")
    _after(jobs_class, "mark_cleaned", points, "after_cleanup")


# --- the workload -------------------------------------------------------------------------


async def ingest(core: SemanticCore, index: int, version: int = 0, *, mode: str = "async") -> None:
    source, text = harness.document(index, version)
    await core.ingest(text, source=source, mode=mode)


async def drive_manager(core: SemanticCore, *, rounds: int = 1000) -> None:
    """The pipeline by hand, as a cron job would run it, until settled."""
    manager = core.batch_manager
    for _ in range(rounds):
        await manager.reconcile()
        await manager.flush_queue(min_size=1, max_size=harness.JOB_SIZE)
        await manager.sync_status()
        if await harness.is_settled(core):
            return
        await asyncio.sleep(0.01)
    raise RuntimeError("the pipeline did not settle")


async def workload(core: SemanticCore, driver: str) -> None:
    """Ingest, flush, edit and delete while jobs run, ingest more, run to the end."""
    if driver == "supervisor":
        async with BatchSupervisor(core, harness.fast_supervisor_config()) as supervisor:
            await _documents(core, flush=None)
            with anyio.fail_after(60):
                await supervisor.wait_until_idle()
        return
    await _documents(core, flush=core.batch_manager.flush_queue)
    await drive_manager(core)


async def sync_workload(core: SemanticCore) -> None:
    """The same documents, edits and deletes, all ingested in sync mode (no batch)."""
    await _documents(core, flush=None, mode="sync")


async def _documents(
    core: SemanticCore,
    *,
    flush: Callable[..., Awaitable[list[str]]] | None,
    mode: str = "async",
) -> None:
    for index in range(harness.FIRST_DOCS):
        await ingest(core, index, mode=mode)
    if flush is not None:
        await flush(min_size=1, max_size=harness.JOB_SIZE)
    # The newest chunk leaves its running job, and the edit below reuses its id: the
    # job's result for that id is for another text and must be discarded.
    await core.delete_document(f"doc-{harness.FIRST_DOCS - 1}")
    await ingest(core, 0, version=1, mode=mode)  # one of three chunks changes
    await core.delete_document("doc-1")  # its chunk leaves a running job
    for index in range(harness.FIRST_DOCS, harness.ALL_DOCS):
        await ingest(core, index, mode=mode)
    await ingest(core, 2, version=3, mode=mode)  # a new title: every chunk of doc-2 changes


SPACE_UPLOADS = [False]
"""Set while the ``spaces`` workload drives the second space (its uploads are points)."""


async def drive_spaces(core: SemanticCore, *, rounds: int = 1000) -> None:
    """Every space's pipeline by hand (space 1's, then the others'), until settled."""
    for _ in range(rounds):
        managers = [core.batch_manager, *await core.space_managers()]
        for index, manager in enumerate(managers):
            SPACE_UPLOADS[0] = index > 0
            await manager.reconcile()
            await manager.flush_queue(min_size=1, max_size=harness.JOB_SIZE)
            await manager.sync_status()
        SPACE_UPLOADS[0] = False
        if await harness.spaces_settled(core):
            return
        await asyncio.sleep(0.01)
    raise RuntimeError("the pipelines did not settle")


async def spaces_workload(core: SemanticCore) -> None:
    """Space 1 built, then a migration to :data:`harness.NEW_SPACE` with documents
    ingested, edited and deleted during the backfill, the switch, and a sync ingestion
    in the new space (space 1 gets it through the Batch API)."""
    for index in range(harness.FIRST_DOCS):
        await ingest(core, index)
    await drive_manager(core)
    await core.space_migrate(harness.NEW_SPACE)
    await ingest(core, 0, version=1)  # one of its chunks changes during the backfill
    await core.delete_document("doc-1")
    for index in range(harness.FIRST_DOCS, harness.FIRST_DOCS + 2):
        await ingest(core, index)
    await drive_spaces(core)
    await core.space_switch(2)
    await ingest(core, harness.FIRST_DOCS + 2, mode="sync")
    await drive_spaces(core)


def _target(db: str) -> harness.Target:
    return db if "://" in db else Path(db)


async def run(spec: Spec) -> int:
    warnings.simplefilter("ignore")
    points = Points(spec.get("point"), int(spec.get("nth", 1)), sys.stdout.fileno())
    install_points(points)
    core = await harness.open_over_http(
        _target(spec["db"]), spec["base_url"], create_grace=spec.get("create_grace", 120.0)
    )
    install_port_points(points, core.store)
    try:
        if spec.get("workload") == "migration":
            for index in range(harness.FIRST_DOCS, harness.FIRST_DOCS + 3):
                await ingest(core, index)
            await drive_manager(core)
        elif spec.get("workload") == "sync":
            await sync_workload(core)
        elif spec.get("workload") == "spaces":
            await spaces_workload(core)
        else:
            await workload(core, spec.get("driver", "manager"))
    finally:
        await core.aclose()
    os.write(sys.stdout.fileno(), b"finished\n")
    return 0


# --- the zygote ---------------------------------------------------------------------------


def _child(spec: Spec) -> None:
    """In the forked child: log to the spec's file, run, exit without cleanup."""
    code = 1
    try:
        log = os.open(spec["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(null)
        code = asyncio.run(run(spec))
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _wait(pid: int, kill_after: float | None) -> tuple[int, bool]:
    """Wait for ``pid``; kill it after ``kill_after`` seconds. (status, killed by us)."""
    if kill_after is None:
        return os.waitpid(pid, 0)[1], False
    deadline = time.monotonic() + kill_after
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status, False
        time.sleep(0.0005)
    os.kill(pid, signal.SIGKILL)  # our own unreaped child: the pid is still its
    return os.waitpid(pid, 0)[1], True


async def _warm_up() -> None:
    """Run the workload once in-process, so that children start with the SDK's lazy
    set-up done (a few tenths of a second of each child's run otherwise)."""
    emulator = GeminiEmulator(clock=RealClock(), pending_seconds=0.0, running_seconds=0.01)
    with tempfile.TemporaryDirectory() as folder:
        core = await harness.open_in_process(Path(folder) / "warm.db", emulator)
        try:
            await workload(core, "manager")
            await ingest(core, 0, version=2, mode="sync")  # the online embedding path too
        finally:
            await core.aclose()


def zygote() -> int:
    """Fork one child per spec read on stdin; answer an :class:`Outcome` per line."""
    warnings.simplefilter("ignore")
    asyncio.run(_warm_up())
    if postgres_on_branch():  # imported once here, not in every child
        importlib.import_module("asemantic.adapters.postgres")
    if threading.active_count() != 1:
        raise RuntimeError("the zygote must not fork with threads running")
    for line in sys.stdin:
        if not line.strip():
            continue
        spec: Spec = json.loads(line)
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            _child(spec)
        status, by_timer = _wait(pid, spec.get("kill_after"))
        outcome: Outcome = {
            "pid": pid,
            "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            "killed_by_timer": by_timer,
            "elapsed": time.monotonic() - started,
        }
        sys.stdout.write(json.dumps(outcome) + "\n")
        sys.stdout.flush()
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["zygote"]:
        return zygote()
    if argv[:1] == ["run"] and len(argv) == 2:
        return asyncio.run(run(json.loads(argv[1])))
    print("usage: python -m tests.contracts.crashee zygote | run '<json spec>'", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
