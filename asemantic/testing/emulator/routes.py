"""URL routing: which endpoint a request is, with its path parameters.

Only ``v1beta`` is served; other versions (``/v1/...``) and unknown paths get the HTML
404 page Google's front end answers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from asemantic.testing.emulator import batches_api, files_api, models_api
from asemantic.testing.emulator.context import Call
from asemantic.testing.emulator.wire import EmulatorRequest, EmulatorResponse

__all__ = ["Route", "match"]

Handler = Callable[[Call], EmulatorResponse]

_ID = r"[^/:]+"


@dataclass(frozen=True, kw_only=True)
class Route:
    """A matched request: its endpoint name, handler and path parameters."""

    endpoint: str
    handler: Handler
    params: Mapping[str, str]


_TABLE: tuple[tuple[str, re.Pattern[str], str, Handler], ...] = tuple(
    (method, re.compile(pattern), endpoint, handler)
    for method, pattern, endpoint, handler in (
        ("GET", r"/v1beta/files", "files.list", files_api.list_files),
        ("GET", rf"/v1beta/files/(?P<file_id>{_ID})", "files.get", files_api.get_file),
        ("DELETE", rf"/v1beta/files/(?P<file_id>{_ID})", "files.delete", files_api.delete_file),
        (
            "GET",
            rf"/(?:download/)?v1beta/files/(?P<file_id>{_ID}):download",
            "files.download",
            files_api.download_file,
        ),
        (
            "POST",
            rf"/v1beta/models/(?P<model>{_ID}):asyncBatchEmbedContent",
            "batches.create",
            batches_api.create_batch,
        ),
        (
            "POST",
            rf"/v1beta/models/(?P<model>{_ID}):batchEmbedContents",
            "models.batchEmbedContents",
            models_api.batch_embed_contents,
        ),
        (
            "POST",
            rf"/v1beta/models/(?P<model>{_ID}):embedContent",
            "models.embedContent",
            models_api.embed_content,
        ),
        ("GET", r"/v1beta/batches", "batches.list", batches_api.list_batches),
        ("GET", rf"/v1beta/batches/(?P<batch_id>{_ID})", "batches.get", batches_api.get_batch),
        (
            "DELETE",
            rf"/v1beta/batches/(?P<batch_id>{_ID})",
            "batches.delete",
            batches_api.delete_batch,
        ),
        (
            "POST",
            rf"/v1beta/batches/(?P<batch_id>{_ID}):cancel",
            "batches.cancel",
            batches_api.cancel_batch,
        ),
    )
)


def match(request: EmulatorRequest) -> Route | None:
    """The route for ``request``, or ``None`` (answer 404)."""
    path = request.path.rstrip("/") or "/"
    if request.method == "POST" and path == "/upload/v1beta/files":
        if request.param("upload_id") is not None:
            return Route(endpoint="files.upload_chunk", handler=files_api.upload_chunk, params={})
        return Route(endpoint="files.upload_start", handler=files_api.upload_start, params={})
    for method, pattern, endpoint, handler in _TABLE:
        if method != request.method:
            continue
        found = pattern.fullmatch(path)
        if found:
            return Route(endpoint=endpoint, handler=handler, params=found.groupdict())
    return None
