"""The emulator's remote state: files, upload sessions and batch jobs.

The records here are internal and mutable (always used under the emulator's lock);
:class:`FileInfo`, :class:`BatchInfo` and :class:`Leftovers` are the frozen views
tests get.
"""

from __future__ import annotations

import random
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from asemantic.testing.emulator.faults import JobPlan

__all__ = [
    "BatchInfo",
    "BatchRecord",
    "EmulatorConfig",
    "FileInfo",
    "FileRecord",
    "InputItem",
    "Leftovers",
    "Store",
    "TERMINAL_STATES",
    "UploadSession",
]

TERMINAL_STATES = frozenset(
    {"BATCH_STATE_SUCCEEDED", "BATCH_STATE_FAILED", "BATCH_STATE_CANCELLED", "BATCH_STATE_EXPIRED"}
)
_ID_ALPHABET = string.ascii_lowercase + string.digits


@dataclass(frozen=True, kw_only=True)
class EmulatorConfig:
    """Fixed settings of one emulator (see :class:`GeminiEmulator` for their meaning)."""

    models: tuple[str, ...]
    pending_seconds: float
    running_seconds: float
    expire_after_seconds: float
    file_ttl_seconds: float | None
    max_inline_bytes: int = 20 * 1024 * 1024
    max_file_bytes: int = 2 * 1024 * 1024 * 1024
    file_processing_seconds: float = 0.0
    enqueued_token_limit: int | None = None
    quota_retry_delay: float = 60.0
    keyless_results: bool = False
    dense_vectors: bool = False
    transfer_rate: float | None = None
    unknown_state: str | None = None
    stateless_done: bool = False


@dataclass(kw_only=True)
class FileRecord:
    file_id: str
    seq: int
    display_name: str | None
    mime_type: str
    data: bytes
    source: str
    create_time: float
    expire_time: float | None
    active_at: float = 0.0
    fails: bool = False

    @property
    def name(self) -> str:
        return f"files/{self.file_id}"

    def state(self, now: float) -> str:
        """``PROCESSING`` until ``active_at``, then ``ACTIVE`` (or ``FAILED``)."""
        if now < self.active_at:
            return "PROCESSING"
        return "FAILED" if self.fails else "ACTIVE"

    def info(self) -> FileInfo:
        return FileInfo(
            name=self.name,
            display_name=self.display_name,
            mime_type=self.mime_type,
            size_bytes=len(self.data),
            source=self.source,
            create_time=_moment(self.create_time),
            expire_time=None if self.expire_time is None else _moment(self.expire_time),
        )


@dataclass(kw_only=True)
class UploadSession:
    upload_id: str
    file_id: str
    display_name: str | None
    mime_type: str
    declared_size: int | None
    data: bytearray = field(default_factory=bytearray)
    finished: bool = False


@dataclass(frozen=True, kw_only=True)
class InputItem:
    """One request of a batch: a JSONL line or an inlined request."""

    index: int
    key: str | None
    request: Mapping[str, Any]
    metadata: Any = None
    has_key: bool = False


@dataclass(kw_only=True)
class BatchRecord:
    batch_id: str
    seq: int
    model: str
    display_name: str
    priority: int
    source_file: str | None
    items: list[InputItem]
    unreadable: bool
    create_time: float
    start_at: float
    done_at: float
    expire_at: float
    plan: JobPlan
    state: str = "BATCH_STATE_PENDING"
    update_time: float = 0.0
    end_time: float | None = None
    output_file: str | None = None
    inline_output: list[dict[str, Any]] | None = None
    succeeded_count: int = 0
    failed_count: int = 0
    error: dict[str, Any] | None = None
    tokens: int = 0
    odd: bool = False
    odd_done: bool = False

    @property
    def name(self) -> str:
        return f"batches/{self.batch_id}"

    @property
    def done(self) -> bool:
        return self.odd_done or self.state in TERMINAL_STATES

    def info(self) -> BatchInfo:
        return BatchInfo(
            name=self.name,
            display_name=self.display_name,
            model=self.model,
            state=self.state,
            done=self.done,
            create_time=_moment(self.create_time),
            end_time=None if self.end_time is None else _moment(self.end_time),
            request_count=len(self.items),
            succeeded_count=self.succeeded_count,
            failed_count=self.failed_count,
            source_file=self.source_file,
            output_file=self.output_file,
        )


@dataclass(frozen=True, kw_only=True)
class FileInfo:
    """A file as the emulator holds it."""

    name: str
    display_name: str | None
    mime_type: str
    size_bytes: int
    source: str
    create_time: datetime
    expire_time: datetime | None


@dataclass(frozen=True, kw_only=True)
class BatchInfo:
    """A batch job as the emulator holds it (``state`` is ``BATCH_STATE_*``)."""

    name: str
    display_name: str
    model: str
    state: str
    done: bool
    create_time: datetime
    end_time: datetime | None
    request_count: int
    succeeded_count: int
    failed_count: int
    source_file: str | None
    output_file: str | None


@dataclass(frozen=True, kw_only=True)
class Leftovers:
    """Remote objects nobody deleted: files and batch jobs. False when there are none."""

    files: tuple[FileInfo, ...] = ()
    batches: tuple[BatchInfo, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.files or self.batches)


class Store:
    """Files, upload sessions and batches, with deterministic ids."""

    def __init__(self, seed: int) -> None:
        self.files: dict[str, FileRecord] = {}
        self.uploads: dict[str, UploadSession] = {}
        self.batches: dict[str, BatchRecord] = {}
        self._random = random.Random(seed)
        self._seq = 0

    def __repr__(self) -> str:
        return f"Store(files={len(self.files)}, batches={len(self.batches)})"

    def new_id(self, length: int) -> str:
        """A fresh lowercase alphanumeric id (deterministic for a given seed)."""
        while True:
            candidate = "".join(self._random.choice(_ID_ALPHABET) for _ in range(length))
            if candidate not in self.files and candidate not in self.batches:
                return candidate

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def purge_expired_files(self, now: float) -> None:
        """Drop files whose expiration time has passed, as Google does after 48 hours."""
        expired = [
            file_id
            for file_id, record in self.files.items()
            if record.expire_time is not None and record.expire_time <= now
        ]
        for file_id in expired:
            del self.files[file_id]


def _moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)
