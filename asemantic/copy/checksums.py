"""Counts and checksums of a knowledge base's tables, the same on every engine.

A table's checksum is the SHA-256 of its rows in key order, each row in a canonical
encoding that does not depend on how an engine stores it:

* a row is a compact JSON array of its fields, in the record's field order, followed by
  a newline (JSON escapes every newline inside a string, so rows cannot run together);
* JSON held as text (document metadata, chunk meta) is parsed and dumped again with
  sorted keys and no spaces, so ``jsonb`` and a text column agree;
* a timestamp is ISO 8601 with microseconds, in UTC when it has a zone; a missing one
  (``''`` in an old SQLite row) is ``null``;
* ``vectors`` is a table of its own: for each chunk with a vector, its id (8 bytes, big
  endian), the blob's length (4 bytes) and the blob's exact bytes.

Decisions: checksums are computed here, over what the port exports, and not by each
engine in SQL: one implementation, so two engines can only disagree about the data.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from asemantic.ports import (
    KnowledgeBaseTransfer,
    TransferChunk,
    TransferDocument,
    TransferJob,
    TransferKey,
    TransferRow,
    TransferTable,
    TransferTransition,
    TransferUsage,
)

__all__ = [
    "TableFigures",
    "TableHasher",
    "VECTORS",
    "encode_row",
    "encode_vector",
    "measure",
    "row_key",
    "table_names",
]

VECTORS = "vectors"
"""The name the vectors go by in counts and checksums (they travel with their chunks)."""


def table_names() -> tuple[str, ...]:
    """Every table a copy reports on, in copy order (``vectors`` after ``chunks``)."""
    names: list[str] = []
    for table in TransferTable:
        names.append(table.value)
        if table is TransferTable.CHUNKS:
            names.append(VECTORS)
    return tuple(names)


def row_key(row: TransferRow) -> TransferKey:
    """A row's key in its table."""
    if isinstance(row, TransferDocument):
        return row.document_id
    if isinstance(row, TransferJob):
        return row.job.job_id
    if isinstance(row, TransferChunk):
        return row.chunk_id
    if isinstance(row, TransferTransition):
        return row.transition_id
    return row.entry_id


def _stamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")


def _json_text(text: str) -> Any:
    """JSON text as a canonical value (text that is not JSON stays a string)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _stats(stats: Mapping[str, int]) -> dict[str, int]:
    return {str(key): int(value) for key, value in sorted(stats.items())}


def _fields(row: TransferRow) -> list[Any]:
    if isinstance(row, TransferDocument):
        return [
            row.document_id,
            row.source,
            row.title,
            row.content_hash,
            _json_text(row.metadata_json),
            _stamp(row.created_at),
            _stamp(row.updated_at),
        ]
    if isinstance(row, TransferJob):
        job = row.job
        return [
            job.job_id,
            job.display_name,
            job.status.value,
            job.remote_name,
            job.input_file,
            job.output_file,
            _stats(job.stats),
            job.error_message,
            _stamp(job.created_at),
            _stamp(job.updated_at),
            _stamp(row.cleaned_at),
            _stamp(job.create_attempted_at),
        ]
    if isinstance(row, TransferChunk):
        return [
            row.chunk_id,
            row.document_id,
            row.position,
            row.text,
            _json_text(row.meta_json),
            row.content_hash,
            row.status.value,
            row.job_id,
            row.error_message,
            row.attempts,
            _stamp(row.created_at),
            _stamp(row.updated_at),
        ]
    if isinstance(row, TransferTransition):
        return [
            row.transition_id,
            row.job_id,
            row.from_status,
            row.to_status,
            _stamp(row.at),
            _stats(row.stats),
        ]
    assert isinstance(row, TransferUsage)
    return [row.entry_id, _stamp(row.at), row.route, row.texts, row.tokens]


def encode_row(row: TransferRow) -> bytes:
    """The canonical bytes of one row (its vector aside), newline included."""
    text = json.dumps(_fields(row), ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return text.encode("utf-8", "surrogatepass") + b"\n"


def encode_vector(chunk_id: int, vector: bytes) -> bytes:
    return chunk_id.to_bytes(8, "big", signed=True) + len(vector).to_bytes(4, "big") + vector


@dataclass(frozen=True, slots=True, kw_only=True)
class TableFigures:
    """How many rows a table holds, and their checksum (SHA-256 hex)."""

    rows: int
    checksum: str


@dataclass(slots=True)
class TableHasher:
    """Counts and hashes rows fed in key order."""

    rows: int = 0
    _hash: Any = field(default_factory=hashlib.sha256)

    def add(self, data: bytes) -> None:
        self.rows += 1
        self._hash.update(data)

    def figures(self) -> TableFigures:
        return TableFigures(rows=self.rows, checksum=self._hash.hexdigest())


def _feed(
    hashers: Mapping[str, TableHasher], table: TransferTable, rows: Sequence[TransferRow]
) -> None:
    hasher = hashers[table.value]
    for row in rows:
        hasher.add(encode_row(row))
        if isinstance(row, TransferChunk) and row.vector is not None:
            hashers[VECTORS].add(encode_vector(row.chunk_id, row.vector))


async def measure(transfer: KnowledgeBaseTransfer, *, batch_size: int) -> dict[str, TableFigures]:
    """Counts and checksums of every table (see :func:`table_names`), read through the
    port page by page."""
    hashers = {name: TableHasher() for name in table_names()}
    for table in TransferTable:
        after: TransferKey | None = None
        while True:
            rows = await transfer.export_rows(table, after=after, limit=batch_size)
            if not rows:
                break
            _feed(hashers, table, rows)
            after = row_key(rows[-1])
    return {name: hasher.figures() for name, hasher in hashers.items()}
