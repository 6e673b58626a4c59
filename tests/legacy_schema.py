"""The version-0 schema: the tables the project's original design wrote (no version).

Migration tests (``tests/store/test_migrations.py``) and the crash harness
(``tests/contracts``) build such files to upgrade them.
"""

from __future__ import annotations

__all__ = ["V0_DDL", "V0_TABLES_DDL", "V0_VECTORS_DDL"]

V0_TABLES_DDL = """
CREATE TABLE documents (
    id INTEGER PRIMARY KEY,
    source TEXT UNIQUE NOT NULL,
    title TEXT,
    content_hash TEXT NOT NULL,
    metadata_json TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL
);
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY,
    document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    text TEXT NOT NULL,
    meta_json TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX chunks_document ON chunks (document_id);
"""
"""Documents and chunks, without the vector table."""

V0_VECTORS_DDL = """
CREATE VIRTUAL TABLE vec_chunks USING vec0(embedding float[768]);
"""
"""The sqlite-vec table: 768 floats, L2 distance (sqlite-vec's default)."""

V0_DDL = V0_TABLES_DDL + V0_VECTORS_DDL
