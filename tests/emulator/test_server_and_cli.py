"""The loopback server, the sync SDK and transports, and the command-line entry point."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest
from google import genai
from google.genai import errors, types

from asemantic.testing.emulator import Fault, GeminiEmulator

from .conftest import API_KEY, MODEL, embed_line, parse_jsonl, sdk_client, write_jsonl


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_the_sync_sdk_in_process(emulator: GeminiEmulator, tmp_path: Path) -> None:
    client = genai.Client(api_key=API_KEY, vertexai=False, http_options=emulator.http_options())
    path = write_jsonl(tmp_path / "in.jsonl", [embed_line("a", "sync path")])
    uploaded = client.files.upload(file=path, config={"mime_type": "application/jsonl"})
    assert uploaded.name is not None
    job = client.batches.create_embeddings(
        model=MODEL, src={"file_name": uploaded.name}, config={"display_name": "sync"}
    )
    emulator.complete_all()
    assert job.name is not None
    done = client.batches.get(name=job.name)
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED
    assert done.dest is not None
    assert done.dest.file_name is not None
    assert parse_jsonl(client.files.download(file=done.dest.file_name))[0]["key"] == "a"
    client.close()


def test_the_sync_sdk_over_loopback_and_a_clean_stop(emulator: GeminiEmulator) -> None:
    emulator.faults.add(Fault(endpoint="models.batchEmbedContents", latency=0.01))
    with emulator.serve() as base_url:
        assert base_url.startswith("http://127.0.0.1:")
        client = sdk_client(base_url)
        response = client.models.embed_content(model=MODEL, contents=["over the wire"])
        assert response.embeddings is not None
        with pytest.raises(errors.ClientError):
            client.models.embed_content(model="unknown-model", contents=["x"])
    with pytest.raises(httpx2.TransportError):
        client.models.embed_content(model=MODEL, contents=["after stop"])
    client.close()


def test_a_server_starts_once_and_stops_idempotently(emulator: GeminiEmulator) -> None:
    server = emulator.serve()
    with pytest.raises(RuntimeError):
        _ = server.base_url
    url = server.start()
    with pytest.raises(RuntimeError):
        server.start()
    assert server.base_url == url
    server.stop()
    server.stop()


def _exercise(base_url: str) -> None:
    """A wrong key is refused; a batch job runs to SUCCEEDED on the server's real clock."""
    wrong = sdk_client(base_url, api_key="wrong")  # keep a reference: the SDK closes on GC
    with pytest.raises(errors.ClientError) as caught:
        wrong.models.embed_content(model=MODEL, contents=["x"])
    assert caught.value.code == 400
    wrong.close()
    client = sdk_client(base_url)
    job = client.batches.create_embeddings(
        model=MODEL,
        src={"inlined_requests": {"contents": ["cli"]}},
        config={"display_name": "cli"},
    )
    assert job.name is not None
    deadline = time.monotonic() + 30
    while not client.batches.get(name=job.name).done:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert client.batches.get(name=job.name).state == types.JobState.JOB_STATE_SUCCEEDED
    client.close()


def test_the_command_line_server() -> None:
    port = _free_port()
    command = [sys.executable, "-m", "asemantic.testing.emulator", "--port", str(port)]
    command += ["--api-key", API_KEY, "--job-seconds", "0.2"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        assert base_url == f"http://127.0.0.1:{port}"
        _exercise(base_url)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert API_KEY not in stderr


def test_a_client_that_goes_away_mid_request_prints_no_traceback(
    emulator: GeminiEmulator, capfd: pytest.CaptureFixture[str]
) -> None:
    """Killed and timed-out clients are routine in the crash and fault suites: the
    server notes them at debug level instead of printing a traceback each time."""
    emulator.faults.add(Fault(endpoint="batches.list", latency=0.3, times=5))
    with emulator.serve() as base_url:
        port = int(base_url.rsplit(":", 1)[1])
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", port)) as sock:
                reset_on_close = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close sends RST
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, reset_on_close)
                sock.sendall(
                    f"GET /v1beta/batches HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                    f"x-goog-api-key: {API_KEY}\r\n\r\n".encode()
                )
            # closed with RST while the server still sleeps: its answer hits a dead socket
        deadline = time.monotonic() + 10
        while len(emulator.requests_to("batches.list")) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # let the handler threads finish writing into the closed sockets
    assert len(emulator.requests_to("batches.list")) == 5
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err, captured.err
