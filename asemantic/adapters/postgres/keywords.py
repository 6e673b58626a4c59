"""The keyword index of a PostgreSQL database: a ``tsvector`` per chunk, in step.

Decisions:

* ``chunk_keywords(chunk_id, terms tsvector, length)``: one row per chunk, whatever its
  embedding status, deleted with its chunk (``ON DELETE CASCADE``), with a GIN index on
  ``terms``. The ``tsvector`` is written as a literal of the domain's tokens
  (:func:`asemantic.domain.keywords.index_tokens`) with positions ``1..tf``: it is never
  parsed by a text-search configuration (``to_tsvector('simple', ...)`` would split
  ``os.path.join`` by PostgreSQL's own rules), so it holds exactly the tokens SQLite
  and the memory engine index. ``length`` is the chunk's token count (BM25's ``|D|``).
* Written in the transaction that writes the chunks (:func:`index_chunks`: the document
  write and the transfer import); the schema upgrade to version 2 indexes every chunk
  already there, in its one transaction (:func:`ensure_keyword_index`).
* Every token is made of letters, digits and the joiners ``_ . - : /``: no quote, no
  backslash and no space can occur, so quoting a token in single quotes makes a
  ``tsvector`` or ``tsquery`` lexeme as it is.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import asyncpg

from asemantic.domain.keywords import index_terms, terms_tokens

__all__ = [
    "KEYWORD_INDEXES",
    "KEYWORD_TABLE",
    "KEYWORD_TABLES",
    "ensure_keyword_index",
    "index_chunks",
    "keyword_problems",
    "tsquery_literal",
    "tsvector_literal",
]

KEYWORD_TABLE = "chunk_keywords"
_BATCH = 1000

KEYWORD_TABLES: tuple[str, ...] = (
    f"""CREATE TABLE IF NOT EXISTS {KEYWORD_TABLE} (
    chunk_id bigint PRIMARY KEY REFERENCES chunks(id) ON DELETE CASCADE,
    terms tsvector NOT NULL,
    length integer NOT NULL
)""",
)
KEYWORD_INDEXES: tuple[str, ...] = (
    f"CREATE INDEX IF NOT EXISTS chunk_keywords_terms ON {KEYWORD_TABLE} USING gin (terms)",
)

_UPSERT = (
    f"INSERT INTO {KEYWORD_TABLE} (chunk_id, terms, length) "
    "SELECT i, t::tsvector, n FROM unnest($1::bigint[], $2::text[], $3::integer[]) "
    "AS u(i, t, n) ON CONFLICT (chunk_id) DO UPDATE SET terms = excluded.terms, "
    "length = excluded.length"
)

# Benchmarks measure ingestion without the keyword index by switching this off; the
# store never does (a database written so would miss chunks in keyword search).
_WRITES_ENABLED = True


def tsvector_literal(tokens: Sequence[str]) -> str:
    """A ``tsvector`` literal of ``tokens``: each term once, at positions ``1..tf``."""
    counts = Counter(tokens)
    return " ".join(
        f"'{term}':" + ",".join(str(p) for p in range(1, tf + 1)) for term, tf in counts.items()
    )


def tsquery_literal(terms: Sequence[str]) -> str:
    """A ``tsquery`` literal matching any of ``terms`` (checked tokens)."""
    return " | ".join(f"'{term}'" for term in terms)


async def index_chunks(conn: asyncpg.Connection, rows: Iterable[tuple[int, str]]) -> None:
    """(Re)index chunks by (chunk id, :func:`~asemantic.domain.keywords.index_terms`),
    inside the caller's transaction."""
    if not _WRITES_ENABLED:
        return
    ids: list[int] = []
    vectors: list[str] = []
    lengths: list[int] = []
    for chunk_id, terms in rows:
        tokens = terms_tokens(terms)
        ids.append(int(chunk_id))
        vectors.append(tsvector_literal(tokens))
        lengths.append(len(tokens))
    if ids:
        await conn.execute(_UPSERT, ids, vectors, lengths)


async def ensure_keyword_index(conn: asyncpg.Connection) -> None:
    """Create the table and its index, and index every chunk not in it yet
    (idempotent; part of the schema's one transaction)."""
    for statement in (*KEYWORD_TABLES, *KEYWORD_INDEXES):
        await conn.execute(statement)
    last_id = 0
    while True:
        rows = await conn.fetch(
            f"SELECT c.id, c.text FROM chunks c WHERE c.id > $1 AND NOT EXISTS "
            f"(SELECT 1 FROM {KEYWORD_TABLE} k WHERE k.chunk_id = c.id) ORDER BY c.id LIMIT $2",
            last_id,
            _BATCH,
        )
        if not rows:
            return
        await index_chunks(conn, [(int(r[0]), index_terms(str(r[1]))) for r in rows])
        last_id = int(rows[-1][0])


async def keyword_problems(conn: asyncpg.Connection) -> list[str]:
    """What is wrong with the keyword index: chunks without their row (rows without a
    chunk cannot exist: the foreign key deletes them)."""
    missing = await conn.fetchval(
        f"SELECT count(*) FROM chunks c WHERE NOT EXISTS "
        f"(SELECT 1 FROM {KEYWORD_TABLE} k WHERE k.chunk_id = c.id)"
    )
    return [f"{missing} chunk(s) missing from the keyword index"] if missing else []
