"""Uploads and downloads are bounded by progress (an idle timeout) and by a total derived
from their size, never by a fixed total: a slow steady link succeeds, a stall fails fast
with the typed transient error.

Against the emulator through the real SDK client's HTTP stack (in-process and over
loopback), and, for the transport level, ``respx`` through an injected ``httpx`` client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import respx

from asemantic import (
    EmbeddingSpace,
    GeminiBatchClient,
    GoogleKeyring,
    ProviderUnavailableError,
    RetryConfig,
)
from asemantic.adapters.gemini.transfer import (
    TransferLimits,
    TransferTimeout,
    download_file,
    upload_file,
)
from asemantic.ports import BatchLine, ResultCounts
from asemantic.testing.emulator import Fault, GeminiEmulator

BATCH_KEY = "transfer-batch-key"
IDLE = 0.4


def _client(
    emulator: GeminiEmulator, tmp_path: Path, *, base_url: str | None = None, **limits: float
) -> GeminiBatchClient:
    return GeminiBatchClient(
        GoogleKeyring("transfer-default-key", batch_key=BATCH_KEY),
        space=EmbeddingSpace(dimensions=768),
        base_url=base_url or emulator.base_url,
        transport=None if base_url else emulator.async_transport(),
        # The per-call timeout is far below the transfers' duration: they must not use it.
        retry=RetryConfig(attempts=2, initial_delay=0.0, max_delay=0.01, timeout=0.3),
        temp_dir=tmp_path,
        transfer=TransferLimits(
            idle_timeout=limits.get("idle", IDLE),
            min_rate=limits.get("min_rate", 1024.0),
            slack=limits.get("slack", 30.0),
        ),
    )


def _lines(n: int) -> list[BatchLine]:
    return [BatchLine(key=f"{i}-{i:012x}", text=f"slow link line {i} " * 20) for i in range(n)]


async def _download_all(client: GeminiBatchClient, output: str, keys: list[str]) -> int:
    counts = ResultCounts()
    async for _ in client.retrieve_results(output, expected_keys=keys, counts=counts):
        pass
    return counts.succeeded


@pytest.mark.parametrize("wiring", ["in-process", "loopback"])
async def test_a_slow_steady_download_succeeds(tmp_path: Path, wiring: str) -> None:
    # About 300 KB at 400 KB/s: longer than the per-call timeout, never idle for long.
    emulator = GeminiEmulator(dense_vectors=True)
    lines = _lines(30)
    async with emulator.serve() as url:
        client = _client(emulator, tmp_path, base_url=url if wiring == "loopback" else None)
        job = await client.create_embedding_job(lines, display_name="asemantic-slow-1")
        emulator.complete_all()
        status = await client.get_job_status(job.name)
        assert status.output_file is not None
        size = len(emulator.file_content(status.output_file))
        assert size > 250_000
        emulator.faults.add(Fault(endpoint="files.download", rate=400_000.0))
        keys = [line.key for line in lines]
        assert await _download_all(client, status.output_file, keys) == 30
        await client.aclose()


@pytest.mark.parametrize("wiring", ["in-process", "loopback"])
async def test_a_stalled_download_fails_with_a_transient_error(tmp_path: Path, wiring: str) -> None:
    emulator = GeminiEmulator()
    async with emulator.serve() as url:
        client = _client(emulator, tmp_path, base_url=url if wiring == "loopback" else None)
        job = await client.create_embedding_job(_lines(20), display_name="asemantic-stall-1")
        emulator.complete_all()
        status = await client.get_job_status(job.name)
        assert status.output_file is not None
        emulator.faults.add(Fault(endpoint="files.download", stall_after=2000, times=2))
        with pytest.raises(ProviderUnavailableError, match="stalled: no bytes moved"):
            await _download_all(client, status.output_file, ["x"])
        assert len(emulator.requests_to("files.download")) == 2  # retried once, then gave up
        assert not any(tmp_path.iterdir())  # noqa: ASYNC240 - the partial download is gone
        await client.aclose()


async def test_a_download_slower_than_its_size_allows_fails(tmp_path: Path) -> None:
    emulator = GeminiEmulator(dense_vectors=True)
    client = _client(emulator, tmp_path, min_rate=10_000_000.0, slack=0.2)
    job = await client.create_embedding_job(_lines(30), display_name="asemantic-slow-2")
    emulator.complete_all()
    status = await client.get_job_status(job.name)
    assert status.output_file is not None
    emulator.faults.add(Fault(endpoint="files.download", rate=200_000.0, times=2))
    with pytest.raises(ProviderUnavailableError, match="longer than its size allows"):
        await _download_all(client, status.output_file, ["x"])
    await client.aclose()


async def test_a_slow_steady_upload_succeeds(tmp_path: Path) -> None:
    # About 260 KB of JSONL read by the emulator at 300 KB/s.
    emulator = GeminiEmulator(transfer_rate=300_000.0)
    client = _client(emulator, tmp_path)
    lines = _lines(500)
    job = await client.create_embedding_job(lines, display_name="asemantic-up-1")
    assert job.input_file is not None
    assert len(emulator.file_content(job.input_file)) > 250_000
    await client.aclose()


async def test_a_stalled_upload_fails_with_a_transient_error(tmp_path: Path) -> None:
    emulator = GeminiEmulator()
    emulator.faults.add(Fault(endpoint="files.upload_chunk", latency=60.0, times=2))
    client = _client(emulator, tmp_path)
    with pytest.raises(ProviderUnavailableError, match=r"files\.upload stalled"):
        await client.create_embedding_job(_lines(3), display_name="asemantic-up-2")
    assert emulator.requests_to("batches.create") == ()
    await client.aclose()


# --- transport level (respx, an injected httpx client) ---------------------------------


class _Trickle(httpx.AsyncByteStream):
    def __init__(self, pieces: int, pause: float, stall: float = 0.0) -> None:
        self._pieces, self._pause, self._stall = pieces, pause, stall

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self._pieces):
            yield b"x" * 1000
            await asyncio.sleep(self._pause)
        if self._stall:
            await asyncio.sleep(self._stall)


LIMITS = TransferLimits(idle_timeout=0.2, min_rate=1.0, slack=60.0)


async def test_download_survives_pauses_shorter_than_the_idle_timeout(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with respx.mock:
        respx.get("https://g.test/f").mock(
            return_value=httpx.Response(200, stream=_Trickle(pieces=8, pause=0.1))
        )
        async with httpx.AsyncClient() as http:
            moved = await download_file(
                http, "https://g.test/f", headers={}, destination=str(target), limits=LIMITS
            )
    assert moved == 8000 and target.stat().st_size == 8000


async def test_download_stall_raises_transfer_timeout(tmp_path: Path) -> None:
    with respx.mock:
        respx.get("https://g.test/f").mock(
            return_value=httpx.Response(200, stream=_Trickle(pieces=2, pause=0.0, stall=5.0))
        )
        async with httpx.AsyncClient() as http:
            with pytest.raises(TransferTimeout, match="stalled"):
                await download_file(
                    http,
                    "https://g.test/f",
                    headers={},
                    destination=str(tmp_path / "out"),
                    limits=LIMITS,
                )


async def test_download_bound_follows_content_length(tmp_path: Path) -> None:
    limits = TransferLimits(idle_timeout=1.0, min_rate=100_000.0, slack=0.1)
    with respx.mock:
        respx.get("https://g.test/f").mock(
            return_value=httpx.Response(
                200,
                headers={"content-length": "10000"},
                stream=_Trickle(pieces=10, pause=0.05),
            )
        )
        async with httpx.AsyncClient() as http:
            with pytest.raises(TransferTimeout, match="longer than its size allows"):
                await download_file(
                    http,
                    "https://g.test/f",
                    headers={},
                    destination=str(tmp_path / "out"),
                    limits=limits,
                )


async def test_upload_sends_one_finalizing_request_on_the_session_url(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(b'{"key": "a"}\n' * 100)
    seen: dict[str, str] = {}

    def finish(request: httpx.Request) -> httpx.Response:
        seen.update(request.headers)
        seen["body"] = str(len(request.read()))
        return httpx.Response(
            200,
            headers={"x-goog-upload-status": "final"},
            json={"file": {"name": "files/abc", "state": "PROCESSING"}},
        )

    with respx.mock:
        respx.post("https://base.test/upload/v1beta/files").mock(
            return_value=httpx.Response(
                200, headers={"x-goog-upload-url": "https://elsewhere.test/session?id=1"}
            )
        )
        respx.post("https://base.test/session").mock(side_effect=finish)
        async with httpx.AsyncClient() as http:
            file = await upload_file(
                http,
                "https://base.test/upload/v1beta/files",
                headers={"x-goog-api-key": "k"},
                path=str(source),
                mime_type="application/jsonl",
                display_name="d",
                base_url="https://base.test",
                limits=LIMITS,
            )
    assert file == {"name": "files/abc", "state": "PROCESSING"}
    assert seen["x-goog-upload-command"] == "upload, finalize"
    assert seen["body"] == str(source.stat().st_size) == seen["content-length"]


def test_limits_bound_grows_with_size() -> None:
    limits = TransferLimits(idle_timeout=30.0, min_rate=100_000.0, slack=60.0)
    assert limits.bound(None) is None
    assert limits.bound(0) == 60.0
    assert limits.bound(170_000_000) == pytest.approx(60.0 + 1700.0)
    with pytest.raises(ValueError, match="idle_timeout"):
        TransferLimits(idle_timeout=0)
