"""Writing vectors by chunk id, and checking that vectors and chunks agree."""

from __future__ import annotations

import json
from collections.abc import Mapping

import aiosqlite

from asemantic.domain.space import EmbeddingSpace

__all__ = ["apply", "integrity_problems"]

_SELECT_TARGETS = "SELECT id FROM chunks WHERE id IN (SELECT value FROM json_each(?))"


async def apply(conn: aiosqlite.Connection, mapping: Mapping[int, bytes], *, now: str) -> int:
    """Store ``mapping``'s vectors and mark their chunks READY (inside a transaction).

    sqlite-vec 0.1.9 refuses ``INSERT OR REPLACE`` on vec0, so a vector is replaced by a
    DELETE and an INSERT (a DELETE of a missing rowid costs about 2 us, so it is done
    for every chunk rather than trusting that only READY chunks have vectors). Chunks
    that no longer exist are skipped. ``error_message`` is cleared; ``batch_job_id`` is
    left as it is.
    """
    ids = [int(chunk_id) for chunk_id in mapping]
    rows = await conn.execute_fetchall(_SELECT_TARGETS, (json.dumps(ids),))
    existing = {int(row[0]) for row in rows}
    present = [chunk_id for chunk_id in ids if chunk_id in existing]
    if not present:
        return 0
    await conn.executemany(
        "DELETE FROM vec_chunks WHERE rowid = ?", [(chunk_id,) for chunk_id in present]
    )
    await conn.executemany(
        "INSERT INTO vec_chunks (rowid, embedding) VALUES (?, ?)",
        [(chunk_id, bytes(mapping[chunk_id])) for chunk_id in present],
    )
    await conn.executemany(
        "UPDATE chunks SET embedding_status = 'READY', error_message = NULL, updated_at = ? "
        "WHERE id = ?",
        [(now, chunk_id) for chunk_id in present],
    )
    return len(present)


async def _scalar(conn: aiosqlite.Connection, sql: str) -> int:
    rows = list(await conn.execute_fetchall(sql))
    return int(rows[0][0])


async def integrity_problems(conn: aiosqlite.Connection, space: EmbeddingSpace | None) -> list[str]:
    """What is wrong with the file, or an empty list."""
    problems = [
        str(row[0])
        for row in await conn.execute_fetchall("PRAGMA integrity_check")
        if str(row[0]) != "ok"
    ]
    fk = list(await conn.execute_fetchall("PRAGMA foreign_key_check"))
    if fk:
        problems.append(f"{len(fk)} rows break foreign keys")
    ready = await _scalar(conn, "SELECT COUNT(*) FROM chunks WHERE embedding_status = 'READY'")
    if space is None:
        if ready:
            problems.append(f"{ready} READY chunks but no vector table")
        return problems
    stray = await _scalar(
        conn,
        "SELECT COUNT(*) FROM vec_chunks WHERE rowid NOT IN "
        "(SELECT id FROM chunks WHERE embedding_status = 'READY')",
    )
    if stray:
        problems.append(f"{stray} vectors belong to no READY chunk")
    vectors = await _scalar(conn, "SELECT COUNT(*) FROM vec_chunks")
    if vectors - stray != ready:
        problems.append(f"{ready - (vectors - stray)} READY chunks have no vector")
    return problems
