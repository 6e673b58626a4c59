"""Realistic result files, and the Gemini emulator wired for benchmarks.

The emulator's vectors are lexical features: a 3,072-value line is mostly ``0.0`` and
about 15 KB of JSON, where Gemini sends dense float32 values (``-0.012795186``), about
12 bytes each and 37 KB a line. Parsing costs grow with the bytes, so figures measured
on the emulator's own files would flatter asemantic. :class:`DenseResults` is the
emulator's in-process transport with one change: downloading a registered result file
returns dense lines for the same keys (:func:`dense_result_file`). Every other call
(batches, uploads, listings, deletes, faults) is the emulator's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import httpx2
import numpy as np
import orjson

from asemantic import GeminiSettings, GoogleKeyring
from asemantic.domain.policy import RetryConfig
from asemantic.testing.emulator import GeminiEmulator

__all__ = [
    "DenseResults",
    "dense_result_file",
    "dense_result_lines",
    "keyring",
    "result_key",
    "settings",
]

DEFAULT_KEY = "bench-default-key-0001"
BATCH_KEY = "bench-batch-key-0002"
FAST_RETRY = RetryConfig(attempts=4, initial_delay=0.001, max_delay=0.01, timeout=300.0)


def keyring() -> GoogleKeyring:
    return GoogleKeyring(DEFAULT_KEY, batch_key=BATCH_KEY)


def settings(base_url: str, transport: httpx2.AsyncBaseTransport | None = None) -> GeminiSettings:
    """Settings for an emulator: fast retries, a long timeout for big downloads."""
    return GeminiSettings(base_url=base_url, transport=transport, retry=FAST_RETRY)


def result_key(index: int) -> str:
    """A well-formed line key (``<chunk id>-<12 hex digits>``) for line ``index``."""
    return f"{index + 1}-{index:012x}"


def dense_result_lines(
    keys: Sequence[str], dims: int, *, seed: int = 0, block: int = 500
) -> Iterable[bytes]:
    """Result lines with unit-length float32 vectors, in Gemini's JSON shape."""
    rng = np.random.default_rng(seed)
    for lo in range(0, len(keys), block):
        chunk = keys[lo : lo + block]
        vectors = rng.standard_normal((len(chunk), dims)).astype("<f4")
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        for key, vector in zip(chunk, vectors, strict=True):
            line = {
                "key": key,
                "response": {
                    "embedding": {"values": vector},
                    "usageMetadata": {"promptTokenCount": 250},
                },
            }
            yield orjson.dumps(line, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"


def dense_result_file(keys: Sequence[str], dims: int, *, seed: int = 0) -> bytes:
    """:func:`dense_result_lines` joined into one file's bytes."""
    return b"".join(dense_result_lines(keys, dims, seed=seed))


class DenseResults(httpx2.AsyncBaseTransport):
    """The emulator's async transport; a registered result file downloads dense.

    The emulator still answers the download (so its faults, checks and request log
    apply); only a successful answer's body is replaced.
    """

    def __init__(self, emulator: GeminiEmulator) -> None:
        self._inner = emulator.async_transport()
        self._bodies: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return f"DenseResults(files={sorted(self._bodies)!r})"

    def register(self, file_name: str, body: bytes) -> None:
        """Serve ``body`` for ``files/<id>`` (replacing what was registered before)."""
        self._bodies[file_name.removeprefix("files/")] = body

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        path = request.url.path
        if response.status_code != 200 or not path.endswith(":download"):
            return response
        file_id = path.rsplit("/", 1)[-1].removesuffix(":download")
        body = self._bodies.get(file_id)
        if body is None:
            return response
        return httpx2.Response(
            200,
            headers={"content-type": "application/jsonl"},
            content=body,
            request=request,
        )
