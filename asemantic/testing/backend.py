"""An in-memory :class:`~asemantic.ports.BatchBackend` that behaves like Gemini's Batch API.

``MemoryBatchBackend`` keeps batch jobs and files in dictionaries and answers the port's
calls the way :class:`~asemantic.adapters.gemini.batch.GeminiBatchClient` answers them
over Google (or the emulator), without HTTP, threads or temp files. A test creates a
job through the port, then ``backend.advance()`` (PENDING -> RUNNING -> SUCCEEDED) or
``backend.complete_all()``, and polls it through the port again.

Decisions:

* **Gemini's semantics, not its wire.** Jobs are ``batches/...`` and files ``files/...``;
  states are the SDK's ``JOB_STATE_*`` names; the input file carries the job's display
  name and the result file none; an unknown job or file is
  ``ProviderRequestError(status=404)`` (Google answers 403 "may not exist" for a file,
  which the adapter turns into 404); cancelling a finished job and downloading an
  uploaded file are 400; deleting a job keeps its result file; :meth:`cleanup` counts
  "already gone" as done. Listings are newest first, as Google's are.
* **Time stands still.** Jobs start PENDING and move only when a test says so:
  :meth:`advance`, :meth:`complete_all`, :meth:`fail_job`. Results are computed when a
  job succeeds, one line per input line, joined by key when read (a key sent twice
  comes back twice and is counted in ``duplicates``).
* **Deterministic vectors**: the lexical features of :mod:`asemantic.testing.lexical`
  for the backend's space (the title is prepended for ``RETRIEVAL_DOCUMENT``, as the
  emulator does; for a model that takes the task as a text prefix, gemini-embedding-2,
  the features of the text as the adapter sends it, prefix included, title not
  prepended), as float32 blobs of unit length. Google (and the emulator) return
  unit vectors only at 3,072 dimensions; the stores normalise on write either way. A
  line with no text or over ``max_tokens`` gets a 400 INVALID_ARGUMENT error line.
* **Faults are scripted per method.** :meth:`script` makes the next call(s) raise an
  error, before acting (a refusal) or, with ``lands=True``, after acting (a create
  that lands but whose answer is lost). :meth:`fail_lines` turns the results of some
  keys into error lines. Every port call is counted in :attr:`calls`, failed ones too.
* After :meth:`aclose` (idempotent) every call raises ``StoreClosedError``, as the
  Gemini adapter's client does; the remote state stays readable (:attr:`jobs`,
  :attr:`files`). Each call yields to the event loop once, as a network call would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from collections import Counter, deque
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import anyio.lowlevel

from asemantic.adapters.vectors import normalise
from asemantic.domain.jobs import RemoteState
from asemantic.domain.space import EmbeddingSpace
from asemantic.domain.tokens import approximate_tokens
from asemantic.errors import ProviderRequestError, StoreClosedError
from asemantic.ports import (
    BatchLine,
    LineResult,
    RemoteFile,
    RemoteJob,
    RemoteJobStatus,
    ResultCounts,
)
from asemantic.testing.lexical import lexical_features

__all__ = ["BACKEND_METHODS", "JobEnd", "MemoryBatchBackend", "MemoryFile", "MemoryJob"]

JobEnd = Literal["JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"]
"""The states :meth:`MemoryBatchBackend.fail_job` can end a job in."""

BACKEND_METHODS: tuple[str, ...] = (
    "create_embedding_job",
    "upload_input",
    "get_job_status",
    "retrieve_results",
    "cleanup",
    "cancel",
    "find_jobs_by_display_name",
    "find_files_by_prefix",
)
"""The port methods :meth:`MemoryBatchBackend.script` can make fail (and ``calls`` counts)."""

_ENDS = frozenset({RemoteState.FAILED, RemoteState.CANCELLED, RemoteState.EXPIRED})
_DONE = _ENDS | {RemoteState.SUCCEEDED}
_NOT_FOUND = "Requested entity was not found."


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryJob:
    """A remote batch job as the backend holds it (replaced, never changed, on a move)."""

    name: str
    display_name: str
    state: str
    input_file: str
    lines: tuple[BatchLine, ...]
    output_file: str | None = None

    @property
    def done(self) -> bool:
        return self.state in _DONE

    def status(self) -> RemoteJobStatus:
        return RemoteJobStatus(
            name=self.name,
            display_name=self.display_name,
            state=self.state,
            done=self.done,
            output_file=self.output_file,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryFile:
    """A remote file: an uploaded input (``lines``) or a generated result (``results``)."""

    name: str
    display_name: str | None
    source: Literal["UPLOADED", "GENERATED"]
    lines: tuple[BatchLine, ...] = ()
    results: tuple[LineResult, ...] = ()


@dataclass(slots=True)
class _Script:
    error: Exception
    times: int
    lands: bool


@dataclass(slots=True)
class _LineFailure:
    code: int
    status: str
    message: str
    times: int


class MemoryBatchBackend:
    """A :class:`~asemantic.ports.BatchBackend` in memory, steered by tests (see module doc).

    ``slice_size`` is how many results :meth:`retrieve_results` yields at a time;
    ``max_tokens`` is the model's input limit per line (by default the limit of the
    space's model: 2,048 for gemini-embedding-001, 8,192 for gemini-embedding-2).
    """

    def __init__(
        self,
        space: EmbeddingSpace | None = None,
        *,
        slice_size: int = 512,
        max_tokens: int | None = None,
    ) -> None:
        if slice_size < 1:
            raise ValueError("slice_size must be at least 1")
        self._space = space or EmbeddingSpace()
        self._slice_size = slice_size
        self._max_tokens = (
            max_tokens if max_tokens is not None else self._space.embedding_model.max_input_tokens
        )
        self._jobs: dict[str, MemoryJob] = {}
        self._files: dict[str, MemoryFile] = {}
        self._scripts: dict[str, deque[_Script]] = {name: deque() for name in BACKEND_METHODS}
        self._line_failures: dict[str, _LineFailure] = {}
        self._ids = itertools.count(1)
        self._closed = False
        self.calls: Counter[str] = Counter()
        """How many times each port method was called (those that raised included)."""

    def __repr__(self) -> str:
        return (
            f"MemoryBatchBackend(space={self._space.describe()!r}, jobs={len(self._jobs)}, "
            f"files={len(self._files)})"
        )

    @property
    def space(self) -> EmbeddingSpace:
        return self._space

    @property
    def jobs(self) -> Mapping[str, MemoryJob]:
        """The remote jobs by name, oldest first (a live, read-only view)."""
        return MappingProxyType(self._jobs)

    @property
    def files(self) -> Mapping[str, MemoryFile]:
        """The remote files by name, oldest first (a live, read-only view)."""
        return MappingProxyType(self._files)

    # --- controls for tests -------------------------------------------------------------

    def script(self, method: str, error: Exception, *, times: int = 1, lands: bool = False) -> None:
        """Make the next ``times`` calls of ``method`` raise ``error``.

        By default the call raises before acting (the provider refused it). With
        ``lands=True`` it acts first and then raises: a create whose job exists remotely
        but whose answer was lost (use ``ProviderUnavailableError(status=503)``).
        """
        if method not in self._scripts:
            raise ValueError(f"unknown method {method!r}; known: {', '.join(BACKEND_METHODS)}")
        if times < 1:
            raise ValueError("times must be at least 1")
        self._scripts[method].append(_Script(error=error, times=times, lands=lands))

    def fail_lines(
        self,
        keys: Iterable[str],
        *,
        code: int = 400,
        status: str = "INVALID_ARGUMENT",
        message: str = "The request was refused.",
        times: int = 1,
    ) -> None:
        """The next ``times`` results of each key, in jobs that succeed later, are errors."""
        if times < 1:
            raise ValueError("times must be at least 1")
        for key in keys:
            self._line_failures[key] = _LineFailure(code, status, message, times)

    def advance(self, name: str | None = None) -> None:
        """Move job ``name`` (or every unfinished job) one step: PENDING -> RUNNING ->
        SUCCEEDED (results are written then). Finished jobs do not move."""
        for job in self._targets(name):
            if job.state == RemoteState.PENDING:
                self._jobs[job.name] = dataclasses.replace(job, state=RemoteState.RUNNING.value)
            elif job.state == RemoteState.RUNNING:
                self._succeed(job)

    def complete_all(self) -> None:
        """Every unfinished job SUCCEEDS now, with its results written."""
        for job in self._targets(None):
            self._succeed(job)

    def fail_job(self, name: str, state: JobEnd = "JOB_STATE_FAILED") -> None:
        """End unfinished job ``name`` in ``state``, with no results."""
        if state not in _ENDS:
            raise ValueError(f"a job can end in {', '.join(sorted(_ENDS))}, not {state!r}")
        job = self._jobs.get(name)
        if job is None:
            raise KeyError(name)
        if job.done:
            raise ValueError(f"job {name} is already finished ({job.state})")
        self._jobs[name] = dataclasses.replace(job, state=state)

    def _targets(self, name: str | None) -> list[MemoryJob]:
        if name is not None and name not in self._jobs:
            raise KeyError(name)
        chosen = [self._jobs[name]] if name is not None else list(self._jobs.values())
        return [job for job in chosen if not job.done]

    def _succeed(self, job: MemoryJob) -> None:
        output = MemoryFile(
            name=f"files/batch-{job.name.removeprefix('batches/')}",
            display_name=None,
            source="GENERATED",
            results=tuple(self._result(line) for line in job.lines),
        )
        self._files[output.name] = output
        self._jobs[job.name] = dataclasses.replace(
            job, state=RemoteState.SUCCEEDED.value, output_file=output.name
        )

    def _result(self, line: BatchLine) -> LineResult:
        tokens = approximate_tokens(line.text) + approximate_tokens(line.title or "")
        failure = self._line_failures.get(line.key)
        if failure is not None:
            failure.times -= 1
            if failure.times == 0:
                del self._line_failures[line.key]
        elif (problem := _refusal(line.text, tokens, self._max_tokens)) is not None:
            failure = _LineFailure(400, "INVALID_ARGUMENT", problem, 1)
        else:
            return LineResult(key=line.key, vector=self.vector(line), token_count=tokens)
        return LineResult(
            key=line.key,
            error_code=failure.code,
            error_status=failure.status,
            error_message=failure.message,
        )

    def vector(self, line: BatchLine) -> bytes:
        """The blob a successful result carries for ``line`` (for expectations in tests)."""
        model = self._space.embedding_model
        text = line.text
        if model.task_prefixes:
            shaped = model.document_input(text, title=line.title, task_type=self._space.task_type)
            text = shaped.text
        elif line.title and self._space.task_type == "RETRIEVAL_DOCUMENT":
            text = f"{line.title}\n{text}"
        return normalise(lexical_features(text, self._space.dimensions)).tobytes()

    # --- the port -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _call(self, method: str) -> AsyncIterator[None]:
        """One port call: counted, refused when closed or scripted, or failed after it
        acted when the script says it lands."""
        landing = await self._enter(method)
        yield
        if landing is not None:
            raise landing.error

    async def _enter(self, method: str) -> _Script | None:
        self.calls[method] += 1
        await anyio.lowlevel.checkpoint()
        if self._closed:
            raise StoreClosedError("the batch client is closed")
        queue = self._scripts[method]
        if not queue:
            return None
        script = queue[0]
        script.times -= 1
        if script.times == 0:
            queue.popleft()
        if not script.lands:
            raise script.error
        return script

    async def create_embedding_job(
        self, lines: Sequence[BatchLine], *, display_name: str
    ) -> RemoteJob:
        """Upload the lines as a file named ``display_name``, then create the job (PENDING)."""
        input_file = await self.upload_input(lines, display_name=display_name)
        return await self.create_from_file(input_file, display_name=display_name)

    async def upload_input(self, lines: Sequence[BatchLine], *, display_name: str) -> str:
        """Store the lines as an uploaded file named ``display_name``."""
        if not lines:
            raise ValueError("a batch job needs at least one line")
        async with self._call("upload_input"):
            upload = MemoryFile(
                name=f"files/input-{next(self._ids):06d}",
                display_name=display_name,
                source="UPLOADED",
                lines=tuple(lines),
            )
            self._files[upload.name] = upload
        return upload.name

    async def create_from_file(self, input_file: str, *, display_name: str) -> RemoteJob:
        """Create a PENDING job from an uploaded file. Scripted and counted as
        ``create_embedding_job``: it is the create."""
        async with self._call("create_embedding_job"):
            upload = self._file(input_file, "batches.create")
            number = upload.name.rsplit("-", 1)[-1]  # the first job of a file shares its number
            if f"batches/memjob{number}" in self._jobs:
                number = f"{next(self._ids):06d}"
            job = MemoryJob(
                name=f"batches/memjob{number}",
                display_name=display_name,
                state=RemoteState.PENDING.value,
                input_file=upload.name,
                lines=upload.lines,
            )
            self._jobs[job.name] = job
        return RemoteJob(name=job.name, display_name=display_name, input_file=upload.name)

    async def get_job_status(self, name: str) -> RemoteJobStatus:
        async with self._call("get_job_status"):
            return self._job(name, "batches.get").status()

    async def retrieve_results(
        self, output_file: str, *, expected_keys: Collection[str], counts: ResultCounts
    ) -> AsyncIterator[list[LineResult]]:
        """Yield the result file's lines in slices, joined by key (counted as the adapter
        counts them). Like the adapter's download, nothing happens before iteration."""
        async with self._call("retrieve_results"):
            file = self._file(output_file, "files.download")
        if file.source != "GENERATED":
            raise ProviderRequestError(
                "files.download failed: 400 FAILED_PRECONDITION: Only generated files can be "
                "downloaded; uploaded files can't be downloaded.",
                status=400,
            )
        seen: set[str] = set()
        batch: list[LineResult] = []
        for result in file.results:
            counts.lines += 1
            if result.key not in expected_keys:
                counts.unknown_keys += 1
            elif result.key in seen:
                counts.duplicates += 1
            else:
                seen.add(result.key)
                if result.vector is not None:
                    counts.succeeded += 1
                else:
                    counts.failed += 1
                batch.append(result)
            if len(batch) >= self._slice_size:
                yield batch
                batch = []
        if batch:
            yield batch

    async def cleanup(self, name: str | None, *, files: Sequence[str]) -> None:
        """Delete the files and the job; what is already gone counts as done."""
        async with self._call("cleanup"):
            for file_name in files:
                self._files.pop(file_name, None)
            if name is not None:
                self._jobs.pop(name, None)

    async def cancel(self, name: str) -> None:
        """Cancel an unfinished job at once (Gemini has no CANCELLING state)."""
        async with self._call("cancel"):
            job = self._job(name, "batches.cancel")
            if job.done:
                raise ProviderRequestError(
                    f"batches.cancel failed: 400 FAILED_PRECONDITION: Batch {name} is already "
                    f"in a terminal state ({job.state}) and cannot be cancelled.",
                    status=400,
                )
            self._jobs[name] = dataclasses.replace(job, state=RemoteState.CANCELLED.value)

    async def find_jobs_by_display_name(
        self, display_names: Collection[str]
    ) -> list[RemoteJobStatus]:
        """Jobs whose display name is one of ``display_names``, newest first."""
        wanted = set(display_names)
        async with self._call("find_jobs_by_display_name"):
            jobs = reversed(self._jobs.values())
            return [job.status() for job in jobs if job.display_name in wanted]

    async def find_files_by_prefix(self, prefix: str) -> list[RemoteFile]:
        """Files whose display name starts with ``prefix``, newest first."""
        async with self._call("find_files_by_prefix"):
            return [
                RemoteFile(name=f.name, display_name=f.display_name)
                for f in reversed(self._files.values())
                if (f.display_name or "").startswith(prefix)
            ]

    async def aclose(self) -> None:
        """Refuse every later call (idempotent); the remote state stays as it is."""
        self._closed = True

    def _job(self, name: str, what: str) -> MemoryJob:
        job = self._jobs.get(name)
        if job is None:
            raise ProviderRequestError(f"{what} failed: 404 NOT_FOUND: {_NOT_FOUND}", status=404)
        return job

    def _file(self, name: str, what: str) -> MemoryFile:
        file = self._files.get(name)
        if file is None:
            raise ProviderRequestError(
                f"{what} failed: 404 NOT_FOUND: {name} does not exist or was deleted.",
                status=404,
            )
        return file


def _refusal(text: str, tokens: int, max_tokens: int) -> str | None:
    """Why the model refuses a line (as Google words it), or None."""
    if not text.strip():
        return "* EmbedContentRequest.content.parts: the text must not be empty\n"
    if tokens > max_tokens:
        return (
            f"The input token count ({tokens}) exceeds the maximum number of tokens "
            f"allowed ({max_tokens})."
        )
    return None
