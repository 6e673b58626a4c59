"""The canonical row encoding: what two engines must agree on, and only that."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

from asemantic.copy.checksums import (
    VECTORS,
    TableHasher,
    encode_row,
    encode_vector,
    row_key,
    table_names,
)
from asemantic.domain.documents import EmbeddingStatus
from asemantic.ports import TransferChunk, TransferDocument, TransferUsage

AT = datetime(2026, 12, 3, 17, 0, 0, tzinfo=UTC)


def _document(**changes: object) -> TransferDocument:
    values: dict[str, object] = {
        "document_id": 7,
        "source": "notes/ü.md",
        "title": None,
        "content_hash": "ab" * 32,
        "metadata_json": '{"team":"ops","n":1}',
        "created_at": AT,
        "updated_at": AT,
    }
    values.update(changes)
    return TransferDocument(**values)  # type: ignore[arg-type]


def test_json_text_and_time_zones_do_not_change_a_row() -> None:
    plain = encode_row(_document())
    assert encode_row(_document(metadata_json='{ "n": 1, "team": "ops" }')) == plain
    paris = AT.astimezone(timezone(timedelta(hours=1)))
    assert encode_row(_document(created_at=paris, updated_at=paris)) == plain
    assert plain.endswith(b"\n") and plain.count(b"\n") == 1
    assert "notes/ü.md".encode() in plain  # UTF-8, not escaped


def test_every_field_changes_a_row() -> None:
    plain = encode_row(_document())
    for changes in (
        {"document_id": 8},
        {"source": "other"},
        {"title": ""},
        {"content_hash": "cd" * 32},
        {"metadata_json": '{"team":"ops","n":2}'},
        {"created_at": AT + timedelta(microseconds=1)},
        {"updated_at": None},
    ):
        assert encode_row(_document(**changes)) != plain, changes


def test_vectors_are_hashed_by_their_exact_bytes() -> None:
    blob = bytes(range(16))
    assert encode_vector(3, blob) == (3).to_bytes(8, "big") + (16).to_bytes(4, "big") + blob
    assert encode_vector(3, blob) != encode_vector(3, blob[:-1] + b"\x00")
    chunk = TransferChunk(
        chunk_id=3,
        document_id=7,
        position=0,
        text="t",
        meta_json="{}",
        content_hash="h",
        status=EmbeddingStatus.READY,
        job_id=None,
        error_message=None,
        attempts=0,
        created_at=None,
        updated_at=None,
        vector=blob,
    )
    other = replace(chunk, vector=None)
    assert encode_row(chunk) == encode_row(other)  # the vector is the vectors table's
    assert row_key(chunk) == 3


def test_tables_hash_rows_in_order() -> None:
    first = TransferUsage(entry_id=1, at=AT, route="online", texts=1, tokens=10)
    second = TransferUsage(entry_id=2, at=None, route="batch", texts=2, tokens=20)
    forward, backward = TableHasher(), TableHasher()
    for row in (first, second):
        forward.add(encode_row(row))
    for row in (second, first):
        backward.add(encode_row(row))
    assert forward.figures().rows == backward.figures().rows == 2
    assert forward.figures().checksum != backward.figures().checksum
    expected = hashlib.sha256(encode_row(first) + encode_row(second)).hexdigest()
    assert forward.figures().checksum == expected
    assert TableHasher().figures().checksum == hashlib.sha256().hexdigest()


def test_the_report_names_every_table_in_copy_order() -> None:
    assert table_names() == (
        "documents",
        "batch_jobs",
        "chunks",
        VECTORS,
        "batch_job_transitions",
        "usage_ledger",
    )
