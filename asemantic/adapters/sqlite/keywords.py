"""Keyword search on SQLite: an FTS5 table in the same file, in step with the chunks.

Decisions:

* ``chunk_keywords`` is an FTS5 table (rowid = chunk id) of one column, ``terms``: the
  chunk's tokens from :func:`asemantic.domain.keywords.index_tokens`, joined by single
  spaces. Its tokenizer is ``ascii`` with the joiners ``_ . - : /`` as token characters
  (every non-ASCII character already is one), so it splits on spaces only and FTS5
  indexes exactly the domain's tokens: the memory and PostgreSQL engines, fed the same
  tokens, find the same chunks with the same BM25 scores.
* It is written in the transaction that writes the chunks (:func:`index_chunks`, called
  by the document write and the transfer import), and a trigger deletes a chunk's row
  with the chunk (a document's delete cascades to its chunks, then here). Every chunk
  is indexed, whatever its embedding status.
* The query is built from the domain's query terms, each a double-quoted FTS5 string
  joined by ``OR``: a term never holds a quote or a space (the adapters' term check),
  so nothing the user typed is read as FTS5 syntax. Ranking is FTS5's ``bm25()``,
  negated (higher is better), ties to :data:`~asemantic.domain.keywords.SCORE_DIGITS`
  decimals broken by chunk id.
* A schema-version-2 upgrade creates the table and indexes every chunk already there,
  in the upgrade's one transaction (:func:`ensure_keyword_index`).
"""

from __future__ import annotations

from collections.abc import Sequence

import aiosqlite

from asemantic.adapters.sqlite.search import filter_conditions, is_filtered
from asemantic.domain.keywords import JOINERS, SCORE_DIGITS, index_terms
from asemantic.ports import SearchFilters

__all__ = [
    "KEYWORD_TABLE",
    "ensure_keyword_index",
    "index_chunks",
    "keyword_problems",
    "keyword_sql",
    "match_expression",
]

KEYWORD_TABLE = "chunk_keywords"
_BATCH = 1000

KEYWORD_DDL = (
    f"CREATE VIRTUAL TABLE IF NOT EXISTS {KEYWORD_TABLE} USING fts5("
    f"terms, tokenize = \"ascii tokenchars '{JOINERS}'\")"
)
KEYWORD_TRIGGER = (
    "CREATE TRIGGER IF NOT EXISTS chunks_keywords_delete AFTER DELETE ON chunks BEGIN "
    f"DELETE FROM {KEYWORD_TABLE} WHERE rowid = old.id; END"
)

# Benchmarks measure ingestion without the keyword index by switching this off; the
# store never does (a database written so would miss chunks in keyword search).
_WRITES_ENABLED = True


async def index_chunks(
    conn: aiosqlite.Connection, rows: Sequence[tuple[int, str]], *, new: bool = False
) -> None:
    """(Re)index chunks by (chunk id, :func:`~asemantic.domain.keywords.index_terms`),
    inside the caller's transaction; ``new`` chunks (ids just made) have no row to
    replace."""
    if not _WRITES_ENABLED or not rows:
        return
    if not new:
        await conn.executemany(
            f"DELETE FROM {KEYWORD_TABLE} WHERE rowid = ?", [(chunk_id,) for chunk_id, _ in rows]
        )
    await conn.executemany(f"INSERT INTO {KEYWORD_TABLE} (rowid, terms) VALUES (?, ?)", rows)


async def ensure_keyword_index(conn: aiosqlite.Connection) -> None:
    """Create the FTS5 table and its trigger, and index every chunk not in it yet
    (idempotent; part of the schema upgrade's transaction)."""
    await conn.execute(KEYWORD_DDL)
    await conn.execute(KEYWORD_TRIGGER)
    last_id = 0
    while True:
        rows = list(
            await conn.execute_fetchall(
                f"SELECT id, text FROM chunks WHERE id > ? AND id NOT IN "
                f"(SELECT rowid FROM {KEYWORD_TABLE}) ORDER BY id LIMIT ?",
                (last_id, _BATCH),
            )
        )
        if not rows:
            return
        await index_chunks(conn, [(int(i), index_terms(str(text))) for i, text in rows], new=True)
        last_id = int(rows[-1][0])


def match_expression(terms: Sequence[str]) -> str:
    """The FTS5 query of checked terms: any of them."""
    return " OR ".join(f'"{term}"' for term in terms)


_COLUMNS = (
    "c.id, c.document_id, d.source, d.title, c.text, c.position, c.meta_json, "
    "kw.score, d.metadata_json, c.embedding_status"
)
_SCORE = f"-bm25({KEYWORD_TABLE})"


def keyword_sql(
    terms: Sequence[str], *, k: int, filters: SearchFilters | None
) -> tuple[str, list[object]]:
    """The SQL and parameters of a keyword search (rows as
    :func:`asemantic.adapters.hits.keyword_hits` reads)."""
    match = match_expression(terms)
    order = f"round(kw.score, {SCORE_DIGITS}) DESC, c.id"
    if filters is None or not is_filtered(filters):
        sql = (
            f"WITH kw AS (SELECT rowid AS chunk_id, {_SCORE} AS score FROM {KEYWORD_TABLE} "
            f"WHERE {KEYWORD_TABLE} MATCH ? ORDER BY round(score, {SCORE_DIGITS}) DESC, "
            "rowid LIMIT ?) "
            f"SELECT {_COLUMNS} FROM kw JOIN chunks c ON c.id = kw.chunk_id "
            f"JOIN documents d ON d.id = c.document_id ORDER BY {order}"
        )
        return sql, [match, k]
    conditions, params = filter_conditions(filters)
    sql = (
        f"WITH kw AS MATERIALIZED (SELECT rowid AS chunk_id, {_SCORE} AS score "
        f"FROM {KEYWORD_TABLE} WHERE {KEYWORD_TABLE} MATCH ?) "
        f"SELECT {_COLUMNS} FROM kw JOIN chunks c ON c.id = kw.chunk_id "
        f"JOIN documents d ON d.id = c.document_id WHERE {' AND '.join(conditions)} "
        f"ORDER BY {order} LIMIT ?"
    )
    return sql, [match, *params, k]


async def keyword_problems(conn: aiosqlite.Connection) -> list[str]:
    """What is wrong with the keyword index: chunks without their row, rows without a
    chunk."""
    rows = list(
        await conn.execute_fetchall(
            f"SELECT (SELECT count(*) FROM chunks WHERE id NOT IN "
            f"(SELECT rowid FROM {KEYWORD_TABLE})), (SELECT count(*) FROM {KEYWORD_TABLE} "
            "WHERE rowid NOT IN (SELECT id FROM chunks))"
        )
    )
    missing, stray = int(rows[0][0]), int(rows[0][1])
    problems = []
    if missing:
        problems.append(f"{missing} chunk(s) missing from the keyword index")
    if stray:
        problems.append(f"{stray} keyword row(s) without a chunk")
    return problems
