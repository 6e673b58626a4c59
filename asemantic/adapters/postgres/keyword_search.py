"""Keyword search SQL on PostgreSQL: BM25 computed in SQL, FTS5's formula exactly.

PostgreSQL has no BM25 (``ts_rank`` is another formula), so it is computed from what
:mod:`.keywords` stores: ``tf`` is the number of positions of the term's lexeme in the
chunk's ``tsvector``, ``|D|`` the stored ``length``, ``N`` and the average length over
every indexed chunk, and each term's document frequency a GIN-indexed ``@@`` count.
The candidates are the chunks whose ``tsvector`` matches any term (``@@`` on the GIN
index), joined to the filter's conditions (every embedding status). Order: the score
rounded to :data:`~asemantic.domain.keywords.SCORE_DIGITS` decimals, then chunk id, as
the SQLite and memory engines order.

Decisions: ``N``, the total length and the document frequencies are read in the same
statement (one snapshot), at query time: no statistics row for concurrent writers to
queue on. The price is a scan of ``chunk_keywords`` for ``N`` and the average length,
one GIN count per term, and unnesting the ``tsvector`` of every matching chunk; a
statistics row kept by the writers would save the scan, at the cost of serialising
them (not measured at scale on this engine yet: ``benchmarks/bench_hybrid.py`` measures
SQLite).
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from asemantic.adapters.hits import keyword_hits
from asemantic.adapters.postgres.keywords import KEYWORD_TABLE, tsquery_literal
from asemantic.adapters.postgres.search import filter_conditions, hit_from_row, is_filtered
from asemantic.domain.documents import SearchHit
from asemantic.domain.keywords import BM25_B, BM25_K1, IDF_FLOOR, SCORE_DIGITS
from asemantic.ports import SearchFilters

__all__ = ["keyword_sql", "run_keyword_search"]

_READY = "c.embedding_status = 'READY'"


def keyword_sql(filters: SearchFilters | None) -> tuple[str, list[object]]:
    """The SQL: ``$1`` terms (text[]), ``$2`` the any-term tsquery, ``$3`` k, then the
    filter's parameters."""
    conditions: list[str] = []
    params: list[object] = []
    if filters is not None and is_filtered(filters):
        found, params = filter_conditions(filters, 4)
        conditions = [c for c in found if c != _READY]
    where = " AND ".join(["k.terms @@ $2::tsquery", *conditions])
    join = (
        "JOIN chunks c ON c.id = k.chunk_id JOIN documents d ON d.id = c.document_id "
        if conditions
        else ""
    )
    score = (
        f"sum(i.idf * ((cardinality(u.positions) * ({BM25_K1}::float8 + 1.0)) / "
        f"(cardinality(u.positions) + {BM25_K1}::float8 * (1 - {BM25_B}::float8 + "
        f"{BM25_B}::float8 * m.length / st.average))))"
    )
    sql = f"""
WITH q AS (SELECT t.term FROM unnest($1::text[]) AS t(term)),
st AS (SELECT count(*)::float8 AS n, sum(length)::float8 / greatest(count(*), 1) AS average
       FROM {KEYWORD_TABLE}),
df AS (SELECT q.term, (SELECT count(*) FROM {KEYWORD_TABLE} k
                       WHERE k.terms @@ ('''' || q.term || '''')::tsquery)::float8 AS holding
       FROM q),
i AS (SELECT df.term, CASE WHEN v > 0 THEN v ELSE {IDF_FLOOR}::float8 END AS idf
      FROM df, st, LATERAL (SELECT ln((st.n - df.holding + 0.5) / (df.holding + 0.5)) AS v) l),
m AS MATERIALIZED (SELECT k.chunk_id, k.terms, k.length FROM {KEYWORD_TABLE} k {join}
                   WHERE {where}),
scored AS (SELECT m.chunk_id, {score} AS score
           FROM m CROSS JOIN st CROSS JOIN LATERAL unnest(m.terms) AS u
           JOIN i ON i.term = u.lexeme GROUP BY m.chunk_id),
top AS (SELECT chunk_id, score FROM scored
        ORDER BY round(score::numeric, {SCORE_DIGITS}) DESC, chunk_id LIMIT $3)
SELECT c.id, c.document_id, d.source, d.title, c.text, c.position, c.meta_json, top.score,
       d.metadata_json, c.embedding_status
FROM top JOIN chunks c ON c.id = top.chunk_id JOIN documents d ON d.id = c.document_id
ORDER BY round(top.score::numeric, {SCORE_DIGITS}) DESC, c.id"""
    return sql, params


async def run_keyword_search(
    conn: asyncpg.Connection, terms: Sequence[str], *, k: int, filters: SearchFilters | None
) -> list[SearchHit]:
    """Run one keyword search inside the caller's (read-only) transaction."""
    sql, params = keyword_sql(filters)
    rows = await conn.fetch(sql, list(terms), tsquery_literal(terms), k, *params)
    return keyword_hits(rows, hit_from_row)
