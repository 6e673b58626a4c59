"""API keys: required, optionally restricted, recorded only as fingerprints."""

from __future__ import annotations

from pathlib import Path

import pytest
from google import genai
from google.genai import errors

from asemantic.testing.emulator import GeminiEmulator

from .conftest import MODEL, embed_line, raw, write_jsonl

KEY_A = "key-A-0123456789"
KEY_B = "key-B-9876543210"


def test_a_request_without_a_key_is_403(emulator: GeminiEmulator) -> None:
    response = raw(emulator, "GET", "/v1beta/files", key=None)
    assert response.status == 403
    error = response.json()["error"]
    assert error["status"] == "PERMISSION_DENIED"
    assert error["message"].startswith("Method doesn't allow unregistered callers")
    assert emulator.requests[-1].key_fingerprint is None


def test_the_key_may_come_as_a_query_parameter(emulator: GeminiEmulator) -> None:
    response = raw(emulator, "GET", "/v1beta/files", key=None, query=(("key", KEY_A),))
    assert response.status == 200
    assert emulator.requests[-1].path == "/v1beta/files"
    assert emulator.requests_with_key(KEY_A) == emulator.requests


async def test_restricted_keys_reject_others_like_google(tmp_path: Path) -> None:
    emulator = GeminiEmulator(api_keys=[KEY_A])
    good = genai.Client(api_key=KEY_A, vertexai=False, http_options=emulator.http_options())
    bad = genai.Client(api_key=KEY_B, vertexai=False, http_options=emulator.http_options())
    with pytest.raises(errors.ClientError) as caught:
        await bad.aio.models.embed_content(model=MODEL, contents=["x"])
    assert caught.value.code == 400
    assert caught.value.status == "INVALID_ARGUMENT"
    assert caught.value.message == "API key not valid. Please pass a valid API key."
    detail = caught.value.details["error"]["details"][0]
    assert detail["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert detail["reason"] == "API_KEY_INVALID"

    # The upload's data chunk carries no key: the upload session authorises it.
    path = write_jsonl(tmp_path / "in.jsonl", [embed_line("a", "x")])
    uploaded = await good.aio.files.upload(file=path, config={"mime_type": "application/jsonl"})
    assert uploaded.name is not None
    await good.aio.aclose()
    await bad.aio.aclose()


async def test_the_log_tells_which_key_each_call_used(tmp_path: Path) -> None:
    emulator = GeminiEmulator(api_keys=[KEY_A, KEY_B])
    files_client = genai.Client(api_key=KEY_A, vertexai=False, http_options=emulator.http_options())
    batch_client = genai.Client(api_key=KEY_B, vertexai=False, http_options=emulator.http_options())
    path = write_jsonl(tmp_path / "in.jsonl", [embed_line("a", "x")])
    uploaded = await files_client.aio.files.upload(
        file=path, config={"mime_type": "application/jsonl"}
    )
    assert uploaded.name is not None
    job = await batch_client.aio.batches.create_embeddings(
        model=MODEL, src={"file_name": uploaded.name}, config={"display_name": "keys"}
    )
    assert job.name is not None
    await batch_client.aio.batches.get(name=job.name)

    batch_calls = {r.endpoint for r in emulator.requests_with_key(KEY_B)}
    assert batch_calls == {"batches.create", "batches.get"}
    assert {r.endpoint for r in emulator.requests_with_key(KEY_A)} == {"files.upload_start"}
    batches_requests = [r for r in emulator.requests if r.endpoint.startswith("batches.")]
    assert {r.key_fingerprint for r in batches_requests} == {emulator.key_fingerprint(KEY_B)}
    await files_client.aio.aclose()
    await batch_client.aio.aclose()


def test_keys_never_show_in_reprs() -> None:
    emulator = GeminiEmulator(api_keys=[KEY_A])
    raw(emulator, "GET", "/v1beta/files", key=KEY_A)
    raw(emulator, "GET", "/v1beta/files", key=KEY_B)
    shown = repr(emulator) + repr(emulator.requests) + repr(emulator.faults)
    assert KEY_A not in shown
    assert KEY_B not in shown
    other = GeminiEmulator()
    assert other.key_fingerprint(KEY_A) != emulator.key_fingerprint(KEY_A)
    assert emulator.key_fingerprint(KEY_A) == emulator.key_fingerprint(KEY_A)
