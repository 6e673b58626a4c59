"""The request messages the emulator parses, as the v1beta REST reference defines them."""

from __future__ import annotations

from asemantic.testing.emulator.proto import Field, Message

__all__ = [
    "ASYNC_BATCH_EMBED_REQUEST",
    "BATCH_EMBED_REQUEST",
    "BATCH_INPUT_LINE",
    "CREATE_FILE_REQUEST",
    "EMBED_CONTENT_REQUEST",
    "TASK_TYPES",
]

TASK_TYPES = (
    "TASK_TYPE_UNSPECIFIED",
    "RETRIEVAL_QUERY",
    "RETRIEVAL_DOCUMENT",
    "SEMANTIC_SIMILARITY",
    "CLASSIFICATION",
    "CLUSTERING",
    "QUESTION_ANSWERING",
    "FACT_VERIFICATION",
    "CODE_RETRIEVAL_QUERY",
)

_STRING = Field(kind="string")
_ANY = Field(kind="any")

_BLOB = Message("Blob", {"mimeType": _STRING, "data": Field(kind="bytes")})
_FILE_DATA = Message("FileData", {"mimeType": _STRING, "fileUri": _STRING})

_PART = Message(
    "Part",
    {
        "text": _STRING,
        "inlineData": Field(kind="message", message=_BLOB),
        "fileData": Field(kind="message", message=_FILE_DATA),
        "thought": Field(kind="bool"),
        "thoughtSignature": Field(kind="bytes"),
        "partMetadata": _ANY,
        "videoMetadata": _ANY,
        "functionCall": _ANY,
        "functionResponse": _ANY,
        "executableCode": _ANY,
        "codeExecutionResult": _ANY,
    },
)

_CONTENT = Message(
    "Content",
    {"parts": Field(kind="message", message=_PART, repeated=True), "role": _STRING},
)

EMBED_CONTENT_REQUEST = Message(
    "EmbedContentRequest",
    {
        "model": _STRING,
        "content": Field(kind="message", message=_CONTENT),
        "taskType": Field(kind="enum", enum_name="TaskType", enum_values=TASK_TYPES),
        "title": _STRING,
        "outputDimensionality": Field(kind="int32"),
    },
)

BATCH_EMBED_REQUEST = Message(
    "BatchEmbedContentsRequest",
    {"requests": Field(kind="message", message=EMBED_CONTENT_REQUEST, repeated=True)},
)

_INLINED_REQUEST = Message(
    "InlinedEmbedContentRequest",
    {"request": Field(kind="message", message=EMBED_CONTENT_REQUEST), "metadata": _ANY},
)

_INLINED_REQUESTS = Message(
    "InlinedEmbedContentRequests",
    {"requests": Field(kind="message", message=_INLINED_REQUEST, repeated=True)},
)

_INPUT_CONFIG = Message(
    "InputEmbedContentConfig",
    {"fileName": _STRING, "requests": Field(kind="message", message=_INLINED_REQUESTS)},
)

_EMBED_CONTENT_BATCH = Message(
    "EmbedContentBatch",
    {
        "model": _STRING,
        "name": _STRING,
        "displayName": _STRING,
        "inputConfig": Field(kind="message", message=_INPUT_CONFIG),
        "output": _ANY,
        "createTime": _STRING,
        "endTime": _STRING,
        "updateTime": _STRING,
        "batchStats": _ANY,
        "state": _ANY,
        "priority": Field(kind="int64"),
    },
)

ASYNC_BATCH_EMBED_REQUEST = Message(
    "AsyncBatchEmbedContentRequest",
    {"batch": Field(kind="message", message=_EMBED_CONTENT_BATCH)},
)

#: One line of a JSONL input file for ``asyncBatchEmbedContent``.
BATCH_INPUT_LINE = Message(
    "EmbedContentBatchLine",
    {
        "key": _STRING,
        "request": Field(kind="message", message=EMBED_CONTENT_REQUEST),
        "metadata": _ANY,
    },
)

_FILE = Message(
    "File",
    {
        "name": _STRING,
        "displayName": _STRING,
        "mimeType": _STRING,
        "sizeBytes": Field(kind="int64"),
        "createTime": _STRING,
        "updateTime": _STRING,
        "expirationTime": _STRING,
        "sha256Hash": Field(kind="bytes"),
        "uri": _STRING,
        "downloadUri": _STRING,
        "state": _ANY,
        "source": _ANY,
        "videoMetadata": _ANY,
        "error": _ANY,
    },
)

CREATE_FILE_REQUEST = Message("CreateFileRequest", {"file": Field(kind="message", message=_FILE)})
