"""The Batch API backend: JSONL upload, ``create_embeddings``, polling, results, cleanup.

Everything here uses the keyring's *batch* key, never the default one. Creating a job is
not idempotent, so :meth:`GeminiBatchClient.create_embedding_job` never retries the
create call: when it fails in a way that leaves the outcome unknown (a 5xx, a timeout, a
lost response), the caller finds the job later by its deterministic display name. All
other calls are idempotent and retried with backoff.

Decisions:

* Uploads and downloads are bounded by progress (:mod:`.transfer`): an idle timeout and
  a total derived from the size, never the per-call timeout.
* An uploaded file still ``PROCESSING`` is polled (backoff from ``file_poll`` doubling
  to 10 s) for up to ``file_wait`` seconds before the create call; a ``FAILED`` file is
  :class:`~asemantic.errors.ProviderRequestError` (status 422: refused, no job
  created); still processing after ``file_wait`` is
  :class:`~asemantic.errors.ProviderUnavailableError` with no status (no create was
  sent either way).
* Job status is read from the raw Operation JSON (:mod:`.operations`): the SDK's
  ``BatchJob`` drops ``done`` and ``error``, so an odd answer (``done`` with an error
  and no state, an unknown state) would otherwise look like a job still running.
* :meth:`GeminiBatchClient.cleanup` logs a file delete the provider refuses (a 4xx other
  than 404) and goes on to delete the batch: the file expires within 48 hours anyway,
  and raising would make the caller retry the refused delete on every pass.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx2
import orjson
from google.genai.pagers import AsyncPager

from asemantic.adapters.gemini.client import (
    ClientHandle,
    LazyClient,
    call_with_retries,
    raw_json,
    translate_error,
)
from asemantic.adapters.gemini.operations import status_from_operation
from asemantic.adapters.gemini.results import iter_result_slices
from asemantic.adapters.gemini.transfer import TransferLimits, download_file, upload_file
from asemantic.domain.policy import RetryConfig
from asemantic.domain.space import EmbeddingSpace
from asemantic.errors import (
    AuthenticationError,
    ProviderError,
    ProviderRequestError,
    ProviderUnavailableError,
)
from asemantic.keys import GoogleKeyring, Secret
from asemantic.ports import (
    BatchLine,
    LineResult,
    RemoteFile,
    RemoteJob,
    RemoteJobStatus,
    ResultCounts,
)

__all__ = ["GeminiBatchClient", "jsonl_line"]

logger = logging.getLogger(__name__)

_Item = TypeVar("_Item")

JSONL_MIME_TYPE = "application/jsonl"


def jsonl_line(line: BatchLine, space: EmbeddingSpace) -> bytes:
    """One input line: ``{"key", "request": EmbedContentRequest}`` (``content``, singular,
    one text part: one request and one vector per line).

    The task is a ``taskType`` (and ``title``) field for gemini-embedding-001 and a text
    prefix, with neither field, for gemini-embedding-2 (:mod:`asemantic.domain.models`).
    """
    shaped = space.embedding_model.document_input(
        line.text, title=line.title, task_type=space.task_type
    )
    request: dict[str, object] = {
        "model": f"models/{space.model}",
        "content": {"parts": [{"text": shaped.text}]},
    }
    if shaped.task_type is not None:
        request["taskType"] = shaped.task_type
    request["outputDimensionality"] = space.dimensions
    if shaped.title:
        request["title"] = shaped.title
    return orjson.dumps({"key": line.key, "request": request}) + b"\n"


class GeminiBatchClient:
    """A :class:`~asemantic.ports.BatchBackend` over google-genai's Batch API.

    ``slice_size`` is how many results :meth:`retrieve_results` yields at a time (each
    slice is one transaction for the caller); ``temp_dir`` holds the private JSONL and
    result files while they exist; ``transfer`` bounds uploads and downloads;
    ``file_wait`` is how long an upload may stay ``PROCESSING`` (polled from
    ``file_poll`` seconds apart, doubling up to 10 s).

    Raises ``ValueError("Batch operations require a dedicated API key")`` at once when
    the keyring has no batch key.
    """

    def __init__(
        self,
        keys: GoogleKeyring,
        *,
        space: EmbeddingSpace | None = None,
        base_url: str | None = None,
        retry: RetryConfig | None = None,
        transport: httpx2.AsyncBaseTransport | None = None,
        http_client: Any = None,
        temp_dir: str | os.PathLike[str] | None = None,
        slice_size: int = 512,
        transfer: TransferLimits | None = None,
        file_wait: float = 300.0,
        file_poll: float = 1.0,
    ) -> None:
        if file_wait < 0 or file_poll <= 0:
            raise ValueError("file_wait must be >= 0 and file_poll > 0")
        self._key: Secret = keys.batch  # no batch key: the documented ValueError (policy)
        self._space = space or EmbeddingSpace()
        self._retry = retry or RetryConfig()
        self._lazy = LazyClient(
            self._key,
            base_url=base_url,
            timeout=self._retry.timeout,
            transport=transport,
            http_client=http_client,
            what="batch client",
        )
        self._temp_dir = temp_dir
        self._slice_size = slice_size
        self._transfer = transfer or TransferLimits()
        self._file_wait = file_wait
        self._file_poll = file_poll

    def __repr__(self) -> str:
        return f"GeminiBatchClient(space={self._space.describe()!r})"

    @property
    def space(self) -> EmbeddingSpace:
        return self._space

    def _client(self) -> ClientHandle:
        return self._lazy.get()

    async def create_embedding_job(
        self, lines: Sequence[BatchLine], *, display_name: str
    ) -> RemoteJob:
        """Upload the lines (:meth:`upload_input`), then create the job from that file."""
        input_file = await self.upload_input(lines, display_name=display_name)
        return await self.create_from_file(input_file, display_name=display_name)

    async def upload_input(self, lines: Sequence[BatchLine], *, display_name: str) -> str:
        """Write the JSONL to a private temp file and upload it; the file's name, once the
        provider has processed it (ACTIVE: see the module doc)."""
        if not lines:
            raise ValueError("a batch job needs at least one line")
        handle = self._client()
        # The name is taken here, before anything can be cancelled, and removed in a
        # ``finally`` without an await: a cancellation while the worker thread writes
        # (or a second one during the clean-up) cannot leave the file behind.
        fd, path = tempfile.mkstemp(prefix="asemantic-batch-", suffix=".jsonl", dir=self._temp_dir)
        try:
            await asyncio.to_thread(self._write_jsonl, fd, lines)
            uploaded = await call_with_retries(
                lambda: upload_file(
                    handle.http,
                    f"{handle.base_url}/upload/v1beta/files",
                    headers={"x-goog-api-key": self._key.reveal()},
                    path=path,
                    mime_type=JSONL_MIME_TYPE,
                    display_name=display_name,
                    base_url=handle.base_url,
                    limits=self._transfer,
                ),
                what="files.upload",
                retry=self._retry,
                secrets=[self._key],
                bounded=False,
            )
        finally:
            _unlink_quietly(path)
        file_name = uploaded.get("name")
        if not isinstance(file_name, str) or not file_name:
            raise ProviderError("files.upload returned no file name")
        await self._wait_until_active(handle, file_name, str(uploaded.get("state") or ""))
        return file_name

    async def create_from_file(self, input_file: str, *, display_name: str) -> RemoteJob:
        """Create the job from an uploaded input file (no retry: see the module doc)."""
        handle = self._client()
        failure: Exception | None = None
        try:
            async with asyncio.timeout(self._retry.timeout):
                job = await handle.client.aio.batches.create_embeddings(
                    model=self._space.model,
                    src={"file_name": input_file},
                    config={"display_name": display_name},
                )
        except Exception as exc:  # noqa: BLE001 - translated below; the outcome may be unknown
            failure = exc
        if failure is not None:  # raised outside ``except``, the SDK error dropped (see client)
            error = translate_error(failure, what="batches.create_embeddings", secrets=[self._key])
            del failure
            raise error
        if not job.name:
            raise ProviderError("batches.create_embeddings returned no job name")
        return RemoteJob(name=job.name, display_name=display_name, input_file=input_file)

    async def _wait_until_active(self, handle: ClientHandle, file_name: str, state: str) -> None:
        """Poll a file still PROCESSING until it is ACTIVE (bounded, with backoff)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._file_wait
        delay = self._file_poll
        while True:
            state = state.upper().removeprefix("STATE_")
            if state == "FAILED":
                raise ProviderRequestError(
                    "files.upload failed: the provider could not process the uploaded "
                    "input file (state FAILED)",
                    status=422,
                )
            if state != "PROCESSING":
                return  # ACTIVE (or a state Google does not use for uploads)
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ProviderUnavailableError(
                    f"files.upload: the input file was still PROCESSING after "
                    f"{self._file_wait:g} s; no job was created"
                )
            logger.info("uploaded input file still processing; waiting")
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2.0, 10.0)
            current = await call_with_retries(
                lambda: handle.client.aio.files.get(name=file_name),
                what="files.get",
                retry=self._retry,
                secrets=[self._key],
            )
            state = current.state.name if current.state is not None else ""

    def _write_jsonl(self, fd: int, lines: Sequence[BatchLine]) -> None:
        """Write the lines to the open temp file ``fd`` and close it (the caller removes it)."""
        with os.fdopen(fd, "wb") as out:
            for line in lines:
                out.write(jsonl_line(line, self._space))

    async def get_job_status(self, name: str) -> RemoteJobStatus:
        """The job's status, read from the raw Operation (see :mod:`.operations`)."""
        handle = self._client()
        path = name if name.startswith("batches/") else f"batches/{name}"
        operation = await call_with_retries(
            lambda: raw_json(handle, "get", path),
            what="batches.get",
            retry=self._retry,
            secrets=[self._key],
        )
        return status_from_operation(operation, name=name)

    async def retrieve_results(
        self, output_file: str, *, expected_keys: Collection[str], counts: ResultCounts
    ) -> AsyncIterator[list[LineResult]]:
        """Stream the result file to a private temp file, then yield parsed slices.

        Parsing runs in a worker thread, a slice at a time, so a large file neither
        blocks the event loop nor sits in memory.
        """
        handle = self._client()
        fd, path = tempfile.mkstemp(
            prefix="asemantic-results-", suffix=".jsonl", dir=self._temp_dir
        )
        os.close(fd)
        try:
            file_id = output_file.removeprefix("files/")
            await call_with_retries(
                lambda: download_file(
                    handle.http,
                    f"{handle.base_url}/v1beta/files/{file_id}:download?alt=media",
                    headers={"x-goog-api-key": self._key.reveal()},
                    destination=path,
                    limits=self._transfer,
                ),
                what="files.download",
                retry=self._retry,
                secrets=[self._key],
                bounded=False,
            )
            with open(path, "rb") as stream:  # noqa: ASYNC230 - read in a thread below
                slices = iter_result_slices(
                    stream,
                    expected_keys=expected_keys,
                    counts=counts,
                    dimensions=self._space.dimensions,
                    slice_size=self._slice_size,
                )
                # One slice is parsed ahead while the caller writes the previous one:
                # parsing holds the GIL, SQLite releases it, so the two overlap.
                ahead = asyncio.ensure_future(asyncio.to_thread(next, slices, None))
                try:
                    while (batch := await ahead) is not None:
                        ahead = asyncio.ensure_future(asyncio.to_thread(next, slices, None))
                        yield batch
                finally:
                    # The worker thread cannot be stopped: let it finish with the file
                    # before the file is closed.
                    if not ahead.done():
                        await asyncio.wait({ahead})
                    if not ahead.cancelled():
                        ahead.exception()  # retrieved: no "never retrieved" warning
        finally:
            _unlink_quietly(path)  # no await: see upload_input

    async def cleanup(self, name: str | None, *, files: Sequence[str]) -> None:
        """Delete the job's files and the job itself; "not found" counts as done."""
        handle = self._client()
        for file_name in files:
            try:
                await self._delete_quietly(_deleter(handle, file_name), "files.delete")
            except ProviderRequestError as exc:
                if isinstance(exc, AuthenticationError):
                    raise
                logger.warning(
                    "the provider refused to delete a batch file; it expires within 48 h",
                    extra={"status": exc.status},
                )
        if name is not None:
            await self._delete_quietly(
                lambda: handle.client.aio.batches.delete(name=name), "batches.delete"
            )

    async def cancel(self, name: str) -> None:
        handle = self._client()
        await call_with_retries(
            lambda: handle.client.aio.batches.cancel(name=name),
            what="batches.cancel",
            retry=self._retry,
            secrets=[self._key],
        )

    async def _delete_quietly(self, operation: Callable[[], Awaitable[object]], what: str) -> None:
        try:
            await call_with_retries(operation, what=what, retry=self._retry, secrets=[self._key])
        except ProviderError as exc:
            if exc.status != 404:
                raise

    async def find_jobs_by_display_name(
        self, display_names: Collection[str]
    ) -> list[RemoteJobStatus]:
        """Page through every job (the API has no server-side filter) and match names.

        Read as raw Operations, like :meth:`get_job_status`, so states map the same way.
        """
        handle = self._client()
        wanted = set(display_names)
        found: list[RemoteJobStatus] = []
        token = ""
        while True:
            path = "batches?pageSize=100" + (f"&pageToken={quote(token)}" if token else "")
            page = await call_with_retries(
                lambda path=path: raw_json(handle, "get", path),  # type: ignore[misc]
                what="batches.list",
                retry=self._retry,
                secrets=[self._key],
            )
            for operation in page.get("operations") or []:
                if not isinstance(operation, dict):
                    continue
                status = status_from_operation(operation)
                if status.name and status.display_name in wanted:
                    found.append(status)
            token = str(page.get("nextPageToken") or "")
            if not token:
                return found

    async def find_files_by_prefix(self, prefix: str) -> list[RemoteFile]:
        """Files whose display name starts with ``prefix`` (pages through them all)."""
        handle = self._client()
        files = await self._all_pages(
            lambda: handle.client.aio.files.list(config={"page_size": 100}), "files.list"
        )
        return [
            RemoteFile(name=f.name, display_name=f.display_name)
            for f in files
            if f.name and (f.display_name or "").startswith(prefix)
        ]

    async def _all_pages(
        self, first: Callable[[], Awaitable[AsyncPager[_Item]]], what: str
    ) -> list[_Item]:
        pager = await call_with_retries(first, what=what, retry=self._retry, secrets=[self._key])
        items = list(pager.page)
        while pager.config.get("page_token"):
            items.extend(
                await call_with_retries(
                    pager.next_page, what=what, retry=self._retry, secrets=[self._key]
                )
            )
        return items

    async def aclose(self) -> None:
        await self._lazy.aclose()


def _deleter(handle: ClientHandle, file_name: str) -> Callable[[], Awaitable[object]]:
    return lambda: handle.client.aio.files.delete(name=file_name)


def _unlink_quietly(path: str) -> None:
    """Remove a private temp file; one already gone, or one the system will not remove
    yet (a worker thread still holding it open on Windows), is logged, never raised."""
    try:
        Path(path).unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.warning("could not remove the temp file %s: %s", path, exc.strerror or exc)
