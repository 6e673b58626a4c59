"""google-genai's Files API against the emulator, in-process and over loopback."""

from __future__ import annotations

import hashlib
import io
from base64 import b64decode
from pathlib import Path

import pytest
from google import genai
from google.genai import errors, types

from asemantic.testing.emulator import GeminiEmulator

from .conftest import MODEL, embed_line, parse_jsonl, write_jsonl


async def test_upload_returns_an_active_uploaded_file(
    client: genai.Client, emulator: GeminiEmulator, tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [embed_line("a", "hello world")])
    uploaded = await client.aio.files.upload(
        file=path, config={"mime_type": "application/jsonl", "display_name": "my input"}
    )
    assert uploaded.name is not None
    assert uploaded.name.startswith("files/")
    assert uploaded.display_name == "my input"
    assert uploaded.mime_type == "application/jsonl"
    assert uploaded.size_bytes == path.stat().st_size
    assert uploaded.state == types.FileState.ACTIVE
    assert uploaded.source == types.FileSource.UPLOADED
    assert uploaded.download_uri is None
    assert uploaded.create_time is not None
    assert uploaded.expiration_time is not None
    assert (uploaded.expiration_time - uploaded.create_time).total_seconds() == 48 * 3600
    digest = hashlib.sha256(path.read_bytes()).hexdigest().encode()
    assert b64decode(uploaded.sha256_hash or "") == digest
    assert emulator.file_content(uploaded.name) == path.read_bytes()
    chunk = emulator.requests_to("files.upload_chunk")
    assert len(chunk) == 1
    assert chunk[0].key_fingerprint is None


async def test_upload_from_a_stream_with_a_chosen_name(
    client: genai.Client, emulator: GeminiEmulator
) -> None:
    stream = io.BytesIO(b'{"key": "a"}\n')
    uploaded = await client.aio.files.upload(
        file=stream, config={"mime_type": "application/jsonl", "name": "my-file-1"}
    )
    assert uploaded.name == "files/my-file-1"
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.files.upload(
            file=io.BytesIO(b"x"), config={"mime_type": "text/plain", "name": "my-file-1"}
        )
    assert caught.value.code == 409
    assert caught.value.status == "ALREADY_EXISTS"


async def test_a_jsonl_path_without_mime_type_is_refused_by_the_sdk(
    client: genai.Client, emulator: GeminiEmulator, tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [embed_line("a", "hello")])
    with pytest.raises(ValueError, match="mime"):
        await client.aio.files.upload(file=path)
    assert emulator.requests == ()


async def test_get_list_and_delete(
    client: genai.Client, emulator: GeminiEmulator, tmp_path: Path
) -> None:
    names = []
    for index in range(5):
        path = write_jsonl(tmp_path / f"f{index}.jsonl", [embed_line("a", f"text {index}")])
        uploaded = await client.aio.files.upload(
            file=path, config={"mime_type": "application/jsonl"}
        )
        assert uploaded.name is not None
        names.append(uploaded.name)
    fetched = await client.aio.files.get(name=names[0])
    assert fetched.name == names[0]
    assert fetched.size_bytes == uploaded.size_bytes

    pager = await client.aio.files.list(config={"page_size": 2})
    listed = [item.name async for item in pager]
    assert listed == list(reversed(names))  # newest first, across three pages
    assert len(emulator.requests_to("files.list")) == 3

    await client.aio.files.delete(name=names[0])
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.files.get(name=names[0])
    assert caught.value.code == 403
    assert caught.value.status == "PERMISSION_DENIED"
    assert "may not exist" in (caught.value.message or "")
    assert [info.name for info in emulator.files] == names[1:]


async def test_generated_files_download_but_uploaded_ones_do_not(
    client: genai.Client, emulator: GeminiEmulator, tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [embed_line("a", "alpha"), embed_line("b", "beta")])
    uploaded = await client.aio.files.upload(file=path, config={"mime_type": "application/jsonl"})
    assert uploaded.name is not None
    job = await client.aio.batches.create_embeddings(
        model=MODEL, src={"file_name": uploaded.name}, config={"display_name": "dl"}
    )
    emulator.complete_all()
    assert job.name is not None
    done = await client.aio.batches.get(name=job.name)
    assert done.dest is not None
    assert done.dest.file_name is not None
    result_name = done.dest.file_name

    data = await client.aio.files.download(file=result_name)
    assert [line["key"] for line in parse_jsonl(data)] == ["a", "b"]
    target = tmp_path / "out.jsonl"
    await client.aio.files.download(file=result_name, destination=target)
    assert target.read_bytes() == data

    generated = await client.aio.files.get(name=result_name)
    assert generated.source == types.FileSource.GENERATED
    assert generated.download_uri is not None
    assert await client.aio.files.download(file=generated) == data

    with pytest.raises(errors.ClientError) as caught:
        await client.aio.files.download(file=uploaded.name)
    assert caught.value.code == 400
    with pytest.raises(ValueError, match="Only generated files"):
        await client.aio.files.download(file=uploaded)


async def test_empty_listings(client: genai.Client) -> None:
    assert [item async for item in await client.aio.files.list()] == []
    assert [item async for item in await client.aio.batches.list()] == []


async def test_a_multi_chunk_upload(client: genai.Client, emulator: GeminiEmulator) -> None:
    data = b"0123456789" * (900 * 1024)  # 9 MiB: the SDK sends two chunks
    uploaded = await client.aio.files.upload(
        file=io.BytesIO(data), config={"mime_type": "text/plain"}
    )
    assert uploaded.name is not None
    assert uploaded.size_bytes == len(data)
    assert emulator.file_content(uploaded.name) == data
    assert len(emulator.requests_to("files.upload_chunk")) == 2
