"""The emulator's JSON on the wire, through its pure request handler."""

from __future__ import annotations

import pytest

from asemantic.testing.emulator import EmulatorRequest, GeminiEmulator

from .conftest import MODEL, create_inline_batch, raw

BATCH_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.EmbedContentBatch"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/files"),
        ("POST", f"/v1/models/{MODEL}:asyncBatchEmbedContent"),
        ("GET", "/v1alpha/batches/abc"),
        ("POST", "/upload/v1/files"),
        ("GET", "/v1beta/nothing"),
        ("PUT", "/v1beta/files/abc"),
    ],
)
def test_other_versions_and_unknown_paths_get_googles_html_404(
    emulator: GeminiEmulator, method: str, path: str
) -> None:
    response = raw(emulator, method, path, {})
    assert response.status == 404
    assert (response.header("content-type") or "").startswith("text/html")
    assert b"was not found on this server" in response.body
    assert emulator.requests[-1].endpoint == "unknown"


def test_a_pending_operation_omits_defaults(emulator: GeminiEmulator) -> None:
    operation = create_inline_batch(emulator, ["a", "b"], display_name="shape")
    assert operation["name"].startswith("batches/")
    assert "done" not in operation
    assert "response" not in operation
    metadata = operation["metadata"]
    assert metadata["@type"] == BATCH_TYPE
    assert metadata["model"] == f"models/{MODEL}"
    assert metadata["displayName"] == "shape"
    assert metadata["state"] == "BATCH_STATE_PENDING"
    assert metadata["name"] == operation["name"]
    assert metadata["batchStats"] == {"requestCount": "2", "pendingRequestCount": "2"}
    assert metadata["createTime"].endswith("Z")
    assert "output" not in metadata
    assert "endTime" not in metadata


def test_a_succeeded_operation_carries_output_and_response(emulator: GeminiEmulator) -> None:
    name = create_inline_batch(emulator, ["a", "b"])["name"]
    emulator.complete_all()
    operation = raw(emulator, "GET", f"/v1beta/{name}").json()
    assert operation["done"] is True
    metadata = operation["metadata"]
    assert metadata["state"] == "BATCH_STATE_SUCCEEDED"
    assert metadata["batchStats"] == {"requestCount": "2", "successfulRequestCount": "2"}
    inlined = metadata["output"]["inlinedResponses"]["inlinedResponses"]
    assert [len(item["response"]["embedding"]["values"]) for item in inlined] == [3072, 3072]
    assert operation["response"]["@type"].endswith("EmbedContentBatchOutput")
    assert operation["response"]["inlinedResponses"] == metadata["output"]["inlinedResponses"]
    listing = raw(emulator, "GET", "/v1beta/batches").json()
    assert listing["operations"][0]["metadata"]["state"] == "BATCH_STATE_SUCCEEDED"
    assert "output" not in listing["operations"][0]["metadata"]
    assert "response" not in listing["operations"][0]


def test_inline_metadata_is_echoed(emulator: GeminiEmulator) -> None:
    body = {
        "batch": {
            "displayName": "meta",
            "priority": "5",
            "inputConfig": {
                "requests": {
                    "requests": [
                        {
                            "request": {"content": {"parts": [{"text": "hi"}]}},
                            "metadata": {"key": "doc-1"},
                        }
                    ]
                }
            },
        }
    }
    created = raw(emulator, "POST", f"/v1beta/models/{MODEL}:asyncBatchEmbedContent", body)
    assert created.json()["metadata"]["priority"] == "5"
    emulator.complete_all()
    operation = raw(emulator, "GET", f"/v1beta/{created.json()['name']}").json()
    item = operation["metadata"]["output"]["inlinedResponses"]["inlinedResponses"][0]
    assert item["metadata"] == {"key": "doc-1"}


@pytest.mark.parametrize("field", ["fileName", "file_name"])
def test_file_name_is_accepted_in_either_casing(emulator: GeminiEmulator, field: str) -> None:
    start = raw(
        emulator,
        "POST",
        "/upload/v1beta/files",
        {"file": {"mime_type": "application/jsonl"}},
        headers={"x-goog-upload-protocol": "resumable", "x-goog-upload-command": "start"},
    )
    upload_url = start.header("x-goog-upload-url") or ""
    assert upload_url.startswith("http://emulator.invalid/upload/v1beta/files?upload_id=")
    upload_id = upload_url.split("upload_id=")[1].split("&")[0]
    data = b'{"key": "a", "request": {"content": {"parts": [{"text": "x"}]}}}\n'
    final = raw(
        emulator,
        "POST",
        "/upload/v1beta/files",
        data,
        key=None,
        query=(("upload_id", upload_id), ("upload_protocol", "resumable")),
        headers={"x-goog-upload-command": "upload, finalize", "x-goog-upload-offset": "0"},
    )
    assert final.status == 200
    assert final.header("x-goog-upload-status") == "final"
    file_json = final.json()["file"]
    assert file_json["sizeBytes"] == str(len(data))
    assert file_json["source"] == "UPLOADED"
    body = {"batch": {"displayName": "d", "inputConfig": {field: file_json["name"]}}}
    created = raw(emulator, "POST", f"/v1beta/models/{MODEL}:asyncBatchEmbedContent", body)
    assert created.status == 200
    assert created.json()["metadata"]["inputConfig"] == {"fileName": file_json["name"]}


def test_both_sources_at_once_is_a_oneof_error(emulator: GeminiEmulator) -> None:
    body = {
        "batch": {
            "displayName": "d",
            "inputConfig": {"fileName": "files/x", "requests": {"requests": []}},
        }
    }
    response = raw(emulator, "POST", f"/v1beta/models/{MODEL}:asyncBatchEmbedContent", body)
    assert response.status == 400
    assert "Oneof field 'source' is already set" in response.json()["error"]["message"]


def test_unknown_and_mistyped_fields_in_a_create_body(emulator: GeminiEmulator) -> None:
    body = {
        "batch": {
            "displayName": "d",
            "inputConfig": {
                "requests": {
                    "requests": [{"request": {"contents": [], "outputDimensionality": "many"}}]
                }
            },
        }
    }
    response = raw(emulator, "POST", f"/v1beta/models/{MODEL}:asyncBatchEmbedContent", body)
    assert response.status == 400
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["message"].splitlines() == [
        'Invalid JSON payload received. Unknown name "contents" at '
        "'batch.input_config.requests.requests[0].request': Cannot find field.",
        "Invalid value at 'batch.input_config.requests.requests[0].request."
        'output_dimensionality\' (TYPE_INT32), "many"',
    ]
    assert len(error["details"][0]["fieldViolations"]) == 2


def test_invalid_json_and_object_on_scalar(emulator: GeminiEmulator) -> None:
    path = f"/v1beta/models/{MODEL}:batchEmbedContents"
    response = raw(emulator, "POST", path, b"{not json")
    assert response.status == 400
    assert response.json()["error"]["message"].startswith("Invalid JSON payload received.")
    body = {"requests": [{"content": {"parts": [{"text": {"nested": 1}}]}}]}
    message = raw(emulator, "POST", path, body).json()["error"]["message"]
    assert message == (
        "Invalid value at 'requests[0].content.parts[0].text' (TYPE_STRING), "
        "Starting an object on a scalar field"
    )


def test_embed_content_single(emulator: GeminiEmulator) -> None:
    body = {"content": {"parts": [{"text": "hello"}]}, "output_dimensionality": 128}
    response = raw(emulator, "POST", f"/v1beta/models/{MODEL}:embedContent", body)
    assert response.status == 200
    assert response.json() == {"embedding": {"values": emulator.embed("hello", dimensions=128)}}


def test_the_media_download_path_also_serves(emulator: GeminiEmulator) -> None:
    create_inline_batch(emulator, ["a"])
    response = raw(emulator, "GET", "/v1beta/files/nothere:download", query=(("alt", "media"),))
    assert response.status == 403
    assert raw(emulator, "GET", "/download/v1beta/files/nothere:download").status == 403
    last = emulator.requests_to("files.download")[-1]
    assert last.path == "/download/v1beta/files/nothere:download"


def test_bad_page_tokens_and_sizes(emulator: GeminiEmulator) -> None:
    assert raw(emulator, "GET", "/v1beta/batches", query=(("pageToken", "zzz"),)).status == 400
    assert raw(emulator, "GET", "/v1beta/files", query=(("pageSize", "ten"),)).status == 400
    assert raw(emulator, "GET", "/v1beta/files").json() == {}


def test_request_repr_hides_headers() -> None:
    request = EmulatorRequest(
        method="get", path="/v1beta/files", headers={"X-Goog-Api-Key": "secret-key"}
    )
    assert request.method == "GET"
    assert request.header("x-goog-api-key") == "secret-key"
    assert "secret" not in repr(request)
