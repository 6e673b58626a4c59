"""A batch supervisor in its own process, for the two-process lease tests.

``python -m tests.robustness.supervisor_worker --db kb.db --base-url URL --owner NAME``
runs a :class:`BatchSupervisor` on ``kb.db`` against an emulator served over loopback,
until SIGTERM or until the supervisor stops by itself (its lease was taken over). It
reads its keys from the environment (``ROBUST_DEFAULT_KEY``/``ROBUST_BATCH_KEY``) and
prints one JSON object per line: ``waiting``, ``active``, ``transition``, ``freezing``,
``thawed``, ``refused``, ``exited``.

With ``--freeze-after-submit`` it stops itself with SIGSTOP from inside the transition
hook of its first SUBMITTED job, so the jobs it planned in the same pass are not yet
submitted. The hook runs after the transition's commit, but the lease keeper may be
inside a renewal at that moment: the hook first takes the store's write lock, so the
frozen process holds the lease but no SQLite lock (a writer frozen inside a transaction
would lock every other process out of the file).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys

from asemantic import (
    BatchSupervisor,
    CoreConfig,
    GeminiSettings,
    GoogleKeyring,
    JobStatus,
    RetryConfig,
    SemanticCore,
    SupervisorConfig,
    SupervisorLeaseError,
    TransitionEvent,
)
from asemantic.adapters.sqlite import SqliteStore
from asemantic.domain.space import EmbeddingSpace
from tests.support import sqlite_of


def _quiet(core: SemanticCore) -> contextlib.AbstractAsyncContextManager[object]:
    """No transaction of the store runs inside (SQLite's write lock; nothing elsewhere)."""
    if isinstance(core.store, SqliteStore):
        return sqlite_of(core)._lock
    return contextlib.nullcontext()


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, "pid": os.getpid(), **fields}), flush=True)


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--owner", required=True)
    parser.add_argument("--lease-ttl", type=float, default=2.0)
    parser.add_argument("--lease-wait", type=float, default=0.0)
    parser.add_argument("--max-batch-size", type=int, default=10)
    parser.add_argument("--freeze-after-submit", action="store_true")
    # A create cut short by a lost lease may leave a job CREATED with a create of unknown
    # outcome; the default grace (120 s) would outlast the test's bounds.
    parser.add_argument("--create-grace", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=10.0, help="per remote call")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> int:
    keys = GoogleKeyring(os.environ["ROBUST_DEFAULT_KEY"], batch_key=os.environ["ROBUST_BATCH_KEY"])
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    config = SupervisorConfig(
        poll_interval=0.05,
        jitter=0.2,
        min_batch_size=1,
        max_batch_size=args.max_batch_size,
        max_wait=0.0,
        lease_ttl=args.lease_ttl,
        lease_wait=args.lease_wait,
        pause_initial=0.05,
        pause_max=0.2,
        stop_timeout=2.0,
    )
    gemini = GeminiSettings(
        base_url=args.base_url,
        retry=RetryConfig(attempts=3, initial_delay=0.01, max_delay=0.05, timeout=args.timeout),
    )
    frozen = False

    async with SemanticCore.open(
        args.db,
        keys=keys,
        config=CoreConfig(
            space=EmbeddingSpace(dimensions=768), create_grace_seconds=args.create_grace
        ),
        gemini=gemini,
    ) as core:

        async def hook(event: TransitionEvent) -> None:
            nonlocal frozen
            emit("transition", job=event.job_id, to=event.to_status.value)
            if args.freeze_after_submit and not frozen and event.to_status is JobStatus.SUBMITTED:
                frozen = True
                # On SQLite, wait for a transaction in progress (the lease keeper's) to
                # end, and let none begin while frozen: the lock is the store's, private,
                # test-only use. Elsewhere the process freezes as it is.
                async with _quiet(core):
                    emit("freezing")
                    os.kill(os.getpid(), signal.SIGSTOP)
                    emit("thawed")

        supervisor = BatchSupervisor(core, config, owner=args.owner)
        supervisor.on_transition(hook)
        emit("waiting")
        try:
            async with supervisor:
                emit("active")
                while supervisor.health.running and not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 0.05)
        except SupervisorLeaseError as exc:
            emit("refused", error=str(exc))
            return 3
        emit("exited", last_error=supervisor.health.last_error, ticks=supervisor.health.ticks)
    return 0


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(run(_arguments(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    sys.exit(main())
