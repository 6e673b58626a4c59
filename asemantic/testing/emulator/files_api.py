"""Files API routes: resumable upload, get, list, delete and download."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

from asemantic.testing.emulator.clock import format_timestamp
from asemantic.testing.emulator.context import Call, paginate
from asemantic.testing.emulator.proto import get
from asemantic.testing.emulator.rpc import ApiError
from asemantic.testing.emulator.schemas import CREATE_FILE_REQUEST
from asemantic.testing.emulator.state import FileRecord, UploadSession
from asemantic.testing.emulator.wire import EmulatorResponse

__all__ = [
    "delete_file",
    "download_file",
    "get_file",
    "list_files",
    "render_file",
    "upload_chunk",
    "upload_start",
]

_FILE_ID = re.compile(r"[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?")
_FINAL = {"x-goog-upload-status": "final"}


def render_file(record: FileRecord, base_url: str, now: float = 0.0) -> dict[str, Any]:
    """A file as Google's JSON shows it (int64 ``sizeBytes`` as a string) at ``now``."""
    digest = hashlib.sha256(record.data).hexdigest().encode()
    updated = format_timestamp(record.create_time)
    body: dict[str, Any] = {"name": record.name}
    if record.display_name:
        body["displayName"] = record.display_name
    body.update(
        {
            "mimeType": record.mime_type,
            "sizeBytes": str(len(record.data)),
            "createTime": updated,
            "updateTime": updated,
        }
    )
    if record.expire_time is not None:
        body["expirationTime"] = format_timestamp(record.expire_time)
    body["sha256Hash"] = base64.b64encode(digest).decode()
    body["uri"] = f"{base_url}/v1beta/{record.name}"
    if record.source == "GENERATED":
        body["downloadUri"] = f"{base_url}/download/v1beta/{record.name}:download?alt=media"
    state = record.state(now)
    body.update({"state": state, "source": record.source})
    if state == "FAILED":
        body["error"] = {"code": 3, "message": "The file could not be processed."}
    return body


def upload_start(call: Call) -> EmulatorResponse:
    """``POST /upload/v1beta/files`` with ``X-Goog-Upload-Command: start``."""
    request = call.request
    if (request.header("x-goog-upload-protocol") or "").lower() != "resumable" or (
        request.header("x-goog-upload-command") or ""
    ).lower() != "start":
        raise ApiError(
            400,
            "This emulator only supports resumable uploads "
            "(X-Goog-Upload-Protocol: resumable, X-Goog-Upload-Command: start).",
        )
    file = get(call.json_body(CREATE_FILE_REQUEST), "file") or {}
    session = UploadSession(
        upload_id=_upload_id(call),
        file_id=_new_file_id(call, get(file, "name")),
        display_name=_display_name(get(file, "displayName")),
        mime_type=_mime_type(call, file),
        declared_size=_declared_size(call, file),
    )
    call.store.uploads[session.upload_id] = session
    url = (
        f"{call.base_url}/upload/v1beta/files?upload_id={session.upload_id}"
        "&upload_protocol=resumable"
    )
    headers = {
        "x-goog-upload-url": url,
        "x-goog-upload-status": "active",
        "x-goog-upload-chunk-granularity": "262144",
        "x-guploader-uploadid": session.upload_id,
        "content-type": "text/plain; charset=utf-8",
    }
    return EmulatorResponse(status=200, headers=headers)


def upload_chunk(call: Call) -> EmulatorResponse:
    """A data chunk (``upload``, ``upload, finalize``, ``finalize`` or ``query``)."""
    upload_id = call.request.param("upload_id") or ""
    session = call.store.uploads.get(upload_id)
    if session is None:
        raise ApiError(404, "No upload session with this upload_id.", headers=_FINAL)
    command = call.request.header("x-goog-upload-command") or ""
    commands = {part.strip().lower() for part in command.split(",")}
    active = {
        "x-goog-upload-status": "active",
        "x-goog-upload-size-received": str(len(session.data)),
    }
    if "query" in commands:
        return EmulatorResponse(status=200, headers=active)
    offset = call.request.header("x-goog-upload-offset")
    if offset is not None and offset.strip() != str(len(session.data)):
        raise ApiError(
            400,
            f"Invalid X-Goog-Upload-Offset {offset}: {len(session.data)} bytes were received.",
            headers=active,
        )
    if "upload" in commands:
        session.data.extend(call.request.body)
    if "finalize" not in commands:
        active["x-goog-upload-size-received"] = str(len(session.data))
        return EmulatorResponse(status=200, headers=active)
    return _finalize(call, session)


def get_file(call: Call) -> EmulatorResponse:
    """``GET /v1beta/files/{id}``."""
    return EmulatorResponse.of_json(200, render_file(_lookup(call), call.base_url, call.now))


def list_files(call: Call) -> EmulatorResponse:
    """``GET /v1beta/files?pageSize=&pageToken=`` (newest first; 10 a page, at most 100)."""
    records = sorted(call.store.files.values(), key=lambda record: -record.seq)
    page, token = paginate(records, lambda record: record.seq, call, default_size=10, max_size=100)
    body: dict[str, Any] = {}
    if page:
        body["files"] = [render_file(record, call.base_url, call.now) for record in page]
    if token:
        body["nextPageToken"] = token
    return EmulatorResponse.of_json(200, body)


def delete_file(call: Call) -> EmulatorResponse:
    """``DELETE /v1beta/files/{id}``."""
    record = _lookup(call)
    del call.store.files[record.file_id]
    return EmulatorResponse.of_json(200, {})


def download_file(call: Call) -> EmulatorResponse:
    """``GET .../files/{id}:download?alt=media``: only generated files can be downloaded."""
    record = _lookup(call)
    if record.source != "GENERATED":
        raise ApiError(
            400,
            "Only generated files can be downloaded; uploaded files can't be downloaded.",
            status="FAILED_PRECONDITION",
        )
    return EmulatorResponse(
        status=200, headers={"content-type": record.mime_type}, body=record.data
    )


def _finalize(call: Call, session: UploadSession) -> EmulatorResponse:
    size = len(session.data)
    if session.declared_size is not None and size != session.declared_size:
        raise ApiError(
            400,
            f"The upload has {size} bytes but X-Goog-Upload-Header-Content-Length "
            f"announced {session.declared_size}.",
            headers=_FINAL,
        )
    ttl = call.config.file_ttl_seconds
    fault = call.faults.take_file_fault(session.display_name)
    processing = call.config.file_processing_seconds if fault is None else fault.processing_seconds
    record = FileRecord(
        file_id=session.file_id,
        seq=call.store.next_seq(),
        display_name=session.display_name,
        mime_type=session.mime_type,
        data=bytes(session.data),
        source="UPLOADED",
        create_time=call.now,
        expire_time=None if ttl is None else call.now + ttl,
        active_at=call.now + processing,
        fails=fault is not None and fault.fails,
    )
    call.store.files[record.file_id] = record
    del call.store.uploads[session.upload_id]
    body = {"file": render_file(record, call.base_url, call.now)}
    return EmulatorResponse.of_json(200, body, {**_FINAL, "x-goog-upload-size-received": str(size)})


def _lookup(call: Call) -> FileRecord:
    file_id = call.params["file_id"]
    record = call.store.files.get(file_id)
    if record is None:
        raise ApiError(
            403, f"You do not have permission to access the File {file_id} or it may not exist."
        )
    return record


def _upload_id(call: Call) -> str:
    return "AB" + call.store.new_id(30).upper() + call.store.new_id(20)


def _new_file_id(call: Call, requested: Any) -> str:
    if not requested:
        file_id = call.store.new_id(12)
        while any(s.file_id == file_id for s in call.store.uploads.values()):
            file_id = call.store.new_id(12)
        return file_id
    file_id = str(requested).removeprefix("files/")
    if not _FILE_ID.fullmatch(file_id):
        raise ApiError(
            400,
            f"Invalid file name files/{file_id}: up to 40 lowercase letters, digits or "
            "dashes, not starting or ending with a dash.",
        )
    if file_id in call.store.files or any(
        s.file_id == file_id for s in call.store.uploads.values()
    ):
        raise ApiError(409, f"File files/{file_id} already exists.")
    return file_id


def _display_name(value: Any) -> str | None:
    if value is not None and len(str(value)) > 512:
        raise ApiError(400, "The display name must be at most 512 characters.")
    return None if value is None else str(value)


def _mime_type(call: Call, file: Any) -> str:
    mime = call.request.header("x-goog-upload-header-content-type") or get(file, "mimeType")
    if not mime:
        raise ApiError(400, "The file's MIME type is required.")
    return str(mime)


def _declared_size(call: Call, file: Any) -> int | None:
    raw = call.request.header("x-goog-upload-header-content-length") or get(file, "sizeBytes")
    if raw is None:
        return None
    try:
        size = int(raw)
    except ValueError:
        raise ApiError(400, f"Invalid file size {raw!r}.") from None
    if size > call.config.max_file_bytes:
        raise ApiError(400, "The file is larger than the 2 GB the Files API accepts.")
    return size
