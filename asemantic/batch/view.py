"""What one batch pass knows of the database: one snapshot, kept current by its own writes.

A supervisor tick (reconcile, flush, poll and apply, clean up) used to read the same
state several times: the CREATED jobs, the queue, the active jobs, the finished ones,
the remote file list twice, and a job right after writing it. A :class:`PassView` is
read once (:meth:`asemantic.ports.JobStore.snapshot`) and every step of the pass works
from it; each transition the pass makes replaces the job's record in the view with the
record the store returned, so later steps see what earlier ones did without reading it
back.

Decisions:

* **Stale is safe.** Other writers may change the database during a pass (an
  application ingesting, a person running ``asemantic batch sync``): every job change
  is still a compare-and-set in the store, so a view that is behind only makes a move
  lose its race (and be skipped), never apply twice. New chunks queued meanwhile wait
  for the next pass.
* **The remote file list is fetched at most once per pass**, when a step first needs it,
  and forgotten when the pass uploads something (a new job's input file, and any copy a
  retried upload left, must be seen by the clean-up of the same pass).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from asemantic.domain.jobs import JobStatus
from asemantic.ports import BatchSnapshot, JobRecord, QueuedChunk, RemoteFile

__all__ = ["PassView"]


class PassView:
    """The jobs and queue one pass works on (see the module doc)."""

    __slots__ = ("_files", "_jobs", "queued")

    def __init__(self, snapshot: BatchSnapshot) -> None:
        self._jobs: dict[str, JobRecord] = {job.job_id: job for job in snapshot.jobs}
        self.queued: tuple[QueuedChunk, ...] = snapshot.queued
        self._files: list[RemoteFile] | None = None

    def __repr__(self) -> str:
        return f"PassView(jobs={len(self._jobs)}, queued={len(self.queued)})"

    def jobs(self, *statuses: JobStatus) -> list[JobRecord]:
        """The uncleaned jobs in any of ``statuses`` (all without any), oldest first."""
        if not statuses:
            return list(self._jobs.values())
        wanted = frozenset(statuses)
        return [job for job in self._jobs.values() if job.status in wanted]

    def record(self, job: JobRecord) -> None:
        """A job as the store returned it after this pass wrote it."""
        if job.cleaned:
            self._jobs.pop(job.job_id, None)
        else:
            self._jobs[job.job_id] = job

    def cleaned(self, job_id: str) -> None:
        """The job's remote objects are gone: it needs this pass no more."""
        self._jobs.pop(job_id, None)

    def take_queue(self) -> tuple[QueuedChunk, ...]:
        """The queued chunks, handed to one flush (later steps see an empty queue)."""
        queued, self.queued = self.queued, ()
        return queued

    async def remote_files(
        self, fetch: Callable[[], Awaitable[list[RemoteFile]]]
    ) -> list[RemoteFile]:
        """The remote files of this database, fetched on first need (see the module doc)."""
        if self._files is None:
            self._files = await fetch()
        return self._files

    def uploaded(self) -> None:
        """The pass sent a create: the remote file list must be fetched again."""
        self._files = None
