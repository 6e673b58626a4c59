"""The SQLite store: aiosqlite + sqlite-vec, one file per knowledge base."""

from asemantic.adapters.sqlite.connection import Driver, enable_wal, open_connection, select_driver
from asemantic.adapters.sqlite.jobs import SqliteJobStore
from asemantic.adapters.sqlite.schema import (
    CURRENT_VERSION,
    check_schema_version,
    ensure_schema_compatibility,
)
from asemantic.adapters.sqlite.store import SqliteStore, utc_now
from asemantic.adapters.sqlite.vectors import vec_chunk_size

__all__ = [
    "CURRENT_VERSION",
    "Driver",
    "SqliteJobStore",
    "SqliteStore",
    "check_schema_version",
    "enable_wal",
    "ensure_schema_compatibility",
    "open_connection",
    "select_driver",
    "utc_now",
    "vec_chunk_size",
]
