"""File transfers (resumable upload, streamed download) bounded by progress, not a clock.

A 10,000-line result at 768 dimensions is 110-170 MB; under a fixed total timeout a slow
but healthy link fails every time and the job is downloaded again every tick. So:

Decisions:

* **Idle timeout**: a transfer fails when no byte moved (either way) for
  ``idle_timeout`` seconds. Each byte sent or received pushes the deadline back
  (``asyncio.timeout(...).reschedule``), so it works on any transport, including
  in-process ones that ignore httpx's own timeouts.
* **Total bound from the size**: ``slack + size / min_rate`` seconds (at the defaults,
  170 MB may take about 24 minutes), never a fixed total. The size is the file's for an
  upload and ``Content-Length`` (else ``size_hint``) for a download; an unknown size
  has no total bound, only the idle one.
* Both failures raise :class:`TransferTimeout` (a ``TimeoutError``): the retry loop
  retries it and translates it into :class:`~asemantic.errors.ProviderUnavailableError`
  (transient). HTTP errors are raised as the SDK's ``APIError`` so they translate as
  every other call does.
* Our own code, not the SDK's, moves the bytes: the SDK's upload posts 8 MiB chunks and
  its download buffers 1 MiB before writing, so neither shows byte-level progress. The
  wire is Google's (``X-Goog-Upload-*`` resumable protocol, ``:download?alt=media``) on
  the same HTTP client and key header as the SDK's calls; the upload sends all bytes in
  one ``upload, finalize`` request. The session URL's scheme and host are rewritten to
  the configured base URL, as the SDK does.
* Downloads stream to disk: pieces are gathered to 1 MiB and written in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from google.genai import errors as genai_errors

__all__ = ["TransferLimits", "TransferTimeout", "download_file", "upload_file"]

_PIECE = 64 * 1024
_FLUSH = 1024 * 1024


class TransferTimeout(TimeoutError):
    """A transfer stalled (no byte for the idle timeout) or outran its size-derived bound."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferLimits:
    """How long a transfer may take: ``idle_timeout`` seconds without a byte, and at most
    ``slack + size / min_rate`` seconds in all (``min_rate`` in bytes per second)."""

    idle_timeout: float = 60.0
    min_rate: float = 128 * 1024
    slack: float = 120.0

    def __post_init__(self) -> None:
        if self.idle_timeout <= 0 or self.min_rate <= 0 or self.slack < 0:
            raise ValueError("idle_timeout and min_rate must be > 0, slack >= 0")

    def bound(self, size: int | None) -> float | None:
        """Seconds a transfer of ``size`` bytes may take in all (None: unknown size)."""
        return None if size is None else self.slack + max(0, size) / self.min_rate


class _Watch:
    """The idle and total deadlines of one transfer."""

    def __init__(self, limits: TransferLimits, idle: asyncio.Timeout, total: asyncio.Timeout):
        self._limits = limits
        self._idle = idle
        self._total = total
        self._loop = asyncio.get_running_loop()
        self._start = self._loop.time()
        self.moved = 0

    def progress(self, count: int) -> None:
        self.moved += count
        self._idle.reschedule(self._loop.time() + self._limits.idle_timeout)

    def sized(self, size: int | None) -> None:
        bound = self._limits.bound(size)
        if bound is not None:
            self._total.reschedule(self._start + bound)


@dataclass(slots=True)
class _Deadlines:
    idle: asyncio.Timeout | None = None
    total: asyncio.Timeout | None = None


async def _guarded(limits: TransferLimits, what: str, size: int | None, body: Any) -> Any:
    """Run ``body(watch)`` under the idle and total deadlines; a timeout becomes
    :class:`TransferTimeout` saying which one."""
    deadlines = _Deadlines()
    try:
        async with asyncio.timeout(None) as total:
            deadlines.total = total
            async with asyncio.timeout(limits.idle_timeout) as idle:
                deadlines.idle = idle
                watch = _Watch(limits, idle, total)
                watch.sized(size)
                return await body(watch)
    except TimeoutError as exc:
        if isinstance(exc, TransferTimeout):
            raise
        if deadlines.idle is not None and deadlines.idle.expired():
            raise TransferTimeout(
                f"stalled: no bytes moved for {limits.idle_timeout:g} s"
            ) from None
        raise TransferTimeout(
            f"took longer than its size allows (at least {limits.min_rate / 1024:g} KiB/s "
            f"plus {limits.slack:g} s)"
        ) from None


async def download_file(
    http: Any,
    url: str,
    *,
    headers: Mapping[str, str],
    destination: str,
    limits: TransferLimits,
    size_hint: int | None = None,
) -> int:
    """Stream ``url`` into the file ``destination``; returns the bytes written."""

    async def body(watch: _Watch) -> int:
        request_timeout = limits.idle_timeout + 5.0
        async with http.stream(
            "GET", url, headers=dict(headers), timeout=request_timeout
        ) as response:
            watch.progress(0)
            if response.status_code != 200:
                await genai_errors.APIError.raise_for_async_response(response)
            length = response.headers.get("content-length")
            watch.sized(int(length) if length and length.isdigit() else size_hint)
            out = await asyncio.to_thread(open, destination, "wb")
            try:
                # Pieces are written as they came (no copy into a buffer and out of it
                # again), a thread call per megabyte or so.
                pending: list[bytes] = []
                size = 0
                async for piece in response.aiter_bytes():
                    watch.progress(len(piece))
                    pending.append(piece)
                    size += len(piece)
                    if size >= _FLUSH:
                        await asyncio.to_thread(out.writelines, pending)
                        pending, size = [], 0
                if pending:
                    await asyncio.to_thread(out.writelines, pending)
            finally:
                await asyncio.to_thread(out.close)
        return watch.moved

    result: int = await _guarded(limits, "download", size_hint, body)
    return result


async def upload_file(
    http: Any,
    start_url: str,
    *,
    headers: Mapping[str, str],
    path: str,
    mime_type: str,
    display_name: str,
    base_url: str | None,
    limits: TransferLimits,
) -> dict[str, Any]:
    """Upload ``path`` by Google's resumable protocol; returns the ``file`` JSON."""
    size = os.stat(path).st_size

    async def body(watch: _Watch) -> dict[str, Any]:
        start_headers = {
            **headers,
            "Content-Type": "application/json",
            "X-Goog-Upload-Protocol": "resumable",
            "X-Goog-Upload-Command": "start",
            "X-Goog-Upload-Header-Content-Length": str(size),
            "X-Goog-Upload-Header-Content-Type": mime_type,
        }
        payload = {"file": {"display_name": display_name, "mime_type": mime_type}}
        request_timeout = limits.idle_timeout + 5.0
        started = await http.post(
            start_url,
            headers=start_headers,
            content=json.dumps(payload).encode(),
            timeout=request_timeout,
        )
        watch.progress(0)
        await genai_errors.APIError.raise_for_async_response(started)
        session = started.headers.get("x-goog-upload-url")
        if not session:
            raise genai_errors.APIError(
                500, {"error": {"message": "the upload start returned no upload URL"}}
            )
        chunk_headers = {
            **headers,
            "X-Goog-Upload-Command": "upload, finalize",
            "X-Goog-Upload-Offset": "0",
            "Content-Length": str(size),
        }
        finished = await http.post(
            _rebase(session, base_url),
            headers=chunk_headers,
            content=_pieces(path, watch),
            timeout=request_timeout,
        )
        watch.progress(0)
        await genai_errors.APIError.raise_for_async_response(finished)
        if (finished.headers.get("x-goog-upload-status") or "").lower() != "final":
            raise genai_errors.APIError(500, {"error": {"message": "the upload was not finalized"}})
        file: dict[str, Any] = finished.json().get("file") or {}
        return file

    result: dict[str, Any] = await _guarded(limits, "upload", size, body)
    return result


async def _pieces(path: str, watch: _Watch) -> AsyncIterator[bytes]:
    source = await asyncio.to_thread(open, path, "rb")
    try:
        while piece := await asyncio.to_thread(source.read, _PIECE):
            yield piece
            watch.progress(len(piece))
    finally:
        await asyncio.to_thread(source.close)


def _rebase(url: str, base_url: str | None) -> str:
    if not base_url:
        return url
    base = urlsplit(base_url)
    return urlunsplit(urlsplit(url)._replace(scheme=base.scheme, netloc=base.netloc))
