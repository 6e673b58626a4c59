"""Fixtures: an emulator, and google-genai clients talking to it in-process or over loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from google import genai
from google.genai import types

from asemantic.testing.emulator import EmulatorRequest, EmulatorResponse, GeminiEmulator

API_KEY = "test-key-A"
MODEL = "gemini-embedding-001"


def sdk_client(base_url: str, *, api_key: str = API_KEY, **extra: Any) -> genai.Client:
    """A Developer-API client for a loopback emulator."""
    options = types.HttpOptions(base_url=base_url, api_version="v1beta", **extra)
    return genai.Client(api_key=api_key, vertexai=False, http_options=options)


def embed_line(key: str, text: str, **request: Any) -> dict[str, Any]:
    """One JSONL input line in the documented shape."""
    return {"key": key, "request": {"content": {"parts": [{"text": text}]}, **request}}


def model_line(key: str, text: str, model: str) -> dict[str, Any]:
    """One JSONL input line that names its model."""
    return embed_line(key, text, model=model)


def write_jsonl(path: Path, lines: Sequence[Mapping[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def parse_jsonl(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.decode().splitlines() if line.strip()]


@pytest.fixture
def emulator() -> GeminiEmulator:
    return GeminiEmulator()


@pytest.fixture(params=["in-process", "loopback"])
async def client(
    request: pytest.FixtureRequest, emulator: GeminiEmulator
) -> AsyncIterator[genai.Client]:
    """The real SDK, wired to ``emulator`` through its transport or a loopback port."""
    if request.param == "in-process":
        sdk = genai.Client(api_key=API_KEY, vertexai=False, http_options=emulator.http_options())
        yield sdk
        await sdk.aio.aclose()
        sdk.close()
        return
    async with emulator.serve() as base_url:
        sdk = sdk_client(base_url)
        yield sdk
        await sdk.aio.aclose()
        sdk.close()


@pytest.fixture
async def local_client(emulator: GeminiEmulator) -> AsyncIterator[genai.Client]:
    """The real SDK wired in-process only (for tests about the emulator, not the wire)."""
    sdk = genai.Client(api_key=API_KEY, vertexai=False, http_options=emulator.http_options())
    yield sdk
    await sdk.aio.aclose()
    sdk.close()


@pytest.fixture
async def uploaded_input(local_client: genai.Client, tmp_path: Path) -> types.File:
    """A three-line JSONL input file, uploaded in-process."""
    path = write_jsonl(
        tmp_path / "input.jsonl",
        [
            embed_line("k1", "the quick brown fox", output_dimensionality=768),
            embed_line("k2", "lazy dogs sleep all day", output_dimensionality=768),
            embed_line("k3", "foxes and dogs", output_dimensionality=768),
        ],
    )
    return await local_client.aio.files.upload(
        file=path, config={"mime_type": "application/jsonl", "display_name": "input"}
    )


def raw(
    emulator: GeminiEmulator,
    method: str,
    path: str,
    body: Any = None,
    *,
    key: str | None = API_KEY,
    query: tuple[tuple[str, str], ...] = (),
    headers: Mapping[str, str] | None = None,
) -> EmulatorResponse:
    """Call the emulator's pure handler directly (``body`` is sent as JSON unless bytes)."""
    all_headers = dict(headers or {})
    if key is not None:
        all_headers["x-goog-api-key"] = key
    if body is None:
        payload = b""
    elif isinstance(body, bytes):
        payload = body
    else:
        payload = json.dumps(body).encode()
        all_headers.setdefault("content-type", "application/json")
    request = EmulatorRequest(
        method=method, path=path, query=query, headers=all_headers, body=payload
    )
    return emulator.handle(request)


def create_inline_batch(
    emulator: GeminiEmulator, texts: list[str], display_name: str = "job", **request: Any
) -> dict[str, Any]:
    """Create an inline batch through the raw handler; returns the Operation JSON."""
    requests = [{"request": {"content": {"parts": [{"text": text}]}, **request}} for text in texts]
    body = {
        "batch": {
            "displayName": display_name,
            "inputConfig": {"requests": {"requests": requests}},
        }
    }
    response = raw(emulator, "POST", f"/v1beta/models/{MODEL}:asyncBatchEmbedContent", body)
    assert response.status == 200, response.body
    operation: dict[str, Any] = response.json()
    return operation
