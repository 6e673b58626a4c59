"""Search SQL: the k nearest READY chunks by cosine distance, exact or through HNSW.

Two plans, chosen per query by how many READY chunks the search can match (a count
that stops at :data:`EXACT_LIMIT` + 1, cheap at any size):

* ``exact``: a materialised scan of every candidate, ordered by distance then chunk id
  (ties broken exactly as the other engines do). The distances are computed in a
  ``MATERIALIZED`` CTE, so the planner cannot swap in the approximate index.
* ``hnsw``: ``ORDER BY distance LIMIT k`` through the HNSW index, with
  ``hnsw.ef_search`` raised to at least ``2k`` and, when filtered, pgvector 0.8's
  ``hnsw.iterative_scan = relaxed_order``: the scan goes on past ``ef_search`` until
  ``k`` rows pass the filter. The candidates are then re-sorted (relaxed order) by
  their full-precision distance and id. Should a scan still come back short (it stops
  after ``hnsw.max_scan_tuples``), the exact plan answers instead: a filtered search
  returns k hits whenever k chunks match.

Filters (:mod:`asemantic.domain.filters`) compile to conditions on ``d``, values as
parameters. Metadata conditions read the ``jsonb`` column: equality compares ``jsonb``
values (``1`` matches ``1`` and ``1.0`` but not ``true`` nor ``"1"``; ``null`` matches
an explicit null only); arrays and objects must also have the same ``jsonb`` text, so
they match whole as canonical JSON does on the other engines (``[1]`` is not
``[1.0]``); ranges keep to ``jsonb_typeof`` (numbers with numbers, strings with
strings in ``COLLATE "C"``: code point order, whatever the database's collation).
Every metadata condition is two-valued (``COALESCE(..., false)``), so ``NOT`` matches
a missing key, as ``$ne`` and ``$nin`` must. Sources compare in ``COLLATE "C"`` too.
One difference remains: ``jsonb`` holds U+0000 as U+FFFF (see :mod:`.schema`), so a
string range over metadata strings holding U+0000 orders it as U+FFFF here.

Decisions: ``EXACT_LIMIT`` is 2,000 candidates: measured on this project's CI machine,
an exact scan of 768-dimensional vectors costs about 1.7 us a row, so below that it is
as fast as the index and it is always exact (``benchmarks/bench_postgres.py``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from asemantic.adapters.planning import dump_json
from asemantic.adapters.postgres.schema import filterable_json, filterable_key
from asemantic.adapters.postgres.vectors import distance_sql, index_kind
from asemantic.domain.documents import JSONValue, SearchHit
from asemantic.domain.filters import AllOf, AnyOf, FieldCondition, Filter, KeyCondition, Not
from asemantic.errors import InvalidInputError
from asemantic.ports import SearchFilters

__all__ = [
    "EXACT_LIMIT",
    "SearchPlan",
    "choose_plan",
    "exact_sql",
    "filter_conditions",
    "hit_from_row",
    "hnsw_settings",
    "hnsw_sql",
    "is_filtered",
    "run_search",
]

EXACT_LIMIT = 2000
"""At most this many candidates, a search is an exact scan."""
_EF_SEARCH_MIN = 100
_EF_SEARCH_MAX = 1000  # pgvector's bound

_COLUMNS = (
    "c.id, c.document_id, d.source, d.title, c.text, c.position, c.meta_json, "
    "s.distance, d.metadata_json"
)
_FROM = (
    "FROM chunk_vectors v JOIN chunks c ON c.id = v.chunk_id "
    "JOIN documents d ON d.id = c.document_id"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchPlan:
    """How one search runs: ``exact`` or ``hnsw``; ``candidates`` counted up to the
    limit plus one."""

    kind: str
    candidates: int


def is_filtered(filters: SearchFilters | None) -> bool:
    return filters is not None and filters.restricts


_SQL_OPS = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_COLUMNS_OF = {
    "document_id": ("d.id", "bigint"),
    "source": ("d.source", "text"),
    "created_at": ("d.created_at", "timestamptz"),
    "updated_at": ("d.updated_at", "timestamptz"),
}


class _Compiler:
    """Compiles a filter into SQL on ``d``, its values as numbered parameters."""

    def __init__(self, first: int) -> None:
        self.first = first
        self.params: list[object] = []

    def param(self, value: object, cast: str) -> str:
        self.params.append(value)
        return f"${self.first + len(self.params) - 1}::{cast}"

    def compile(self, expression: Filter) -> str:
        if isinstance(expression, AllOf | AnyOf):
            if not expression.parts:
                return "true" if isinstance(expression, AllOf) else "false"
            joiner = " AND " if isinstance(expression, AllOf) else " OR "
            return "(" + joiner.join(self.compile(part) for part in expression.parts) + ")"
        if isinstance(expression, Not):
            return f"NOT {self.compile(expression.part)}"
        if isinstance(expression, FieldCondition):
            return self.field(expression)
        return self.key(expression)

    def field(self, test: FieldCondition) -> str:
        column, cast = _COLUMNS_OF[test.field]
        if test.op == "$in":  # equality needs no collation (and keeps the source index)
            assert isinstance(test.value, tuple)
            return f"{column} = ANY({self.param(list(test.value), cast + '[]')})"
        if test.op == "$eq":
            return f"{column} = {self.param(test.value, cast)}"
        collate = ' COLLATE "C"' if cast == "text" else ""
        return f"{column}{collate} {_SQL_OPS[test.op]} {self.param(test.value, cast)}"

    def key(self, test: KeyCondition) -> str:
        """Two-valued (never NULL, so that NOT is "does not match" for a missing key)."""
        if not isinstance(test.key, str):
            raise InvalidInputError("metadata filter keys must be strings")
        if test.op == "$in" and not test.value:
            return "false"  # (before any parameter: each one must be used)
        name = self.param(filterable_key(test.key), "text")
        if test.op == "$exists":
            return f"(d.metadata ? {name})"
        value = f"(d.metadata -> {name})"
        if test.op == "$eq":
            return f"COALESCE({self.equal(value, test.value)}, false)"  # type: ignore[arg-type]
        if test.op == "$in":
            assert isinstance(test.value, tuple)
            return f"COALESCE({self.one_of(value, test.value)}, false)"  # type: ignore[arg-type]
        op = _SQL_OPS[test.op]
        if isinstance(test.value, str):
            bound = self.param(filterable_key(test.value), "text")
            return (
                f"COALESCE(jsonb_typeof({value}) = 'string' AND "
                f'(d.metadata ->> {name}) COLLATE "C" {op} {bound}, false)'
            )
        bound = self.param(dump_json(test.value), "jsonb")  # type: ignore[arg-type]
        return f"COALESCE(jsonb_typeof({value}) = 'number' AND {value} {op} {bound}, false)"

    def equal(self, value: str, wanted: JSONValue) -> str:
        encoded = self.param(filterable_json(dump_json(wanted)), "jsonb")
        if isinstance(wanted, list | dict):  # whole, as canonical JSON: 1 and 1.0 differ
            return f"({value} = {encoded} AND {value}::text = {encoded}::text)"
        return f"{value} = {encoded}"

    def one_of(self, value: str, wanted: tuple[JSONValue, ...]) -> str:
        scalars: list[JSONValue] = [v for v in wanted if not isinstance(v, list | dict)]
        containers: list[JSONValue] = [v for v in wanted if isinstance(v, list | dict)]
        terms: list[str] = []
        if scalars:
            listed = self.param(filterable_json(dump_json(scalars)), "jsonb")
            terms.append(f"{value} IN (SELECT jsonb_array_elements({listed}))")
        if containers:
            listed = self.param(filterable_json(dump_json(containers)), "jsonb")
            terms.append(f"{value}::text IN (SELECT jsonb_array_elements({listed})::text)")
        return "(" + " OR ".join(terms) + ")" if terms else "false"


def filter_conditions(filters: SearchFilters | None, first: int) -> tuple[list[str], list[object]]:
    """Conditions on ``c`` and ``d`` (parameters numbered from ``first``), ANDed."""
    conditions = ["c.embedding_status = 'READY'"]
    if filters is None:
        return conditions, []
    expression = filters.expression()
    compiler = _Compiler(first)
    for part in expression.parts if isinstance(expression, AllOf) else (expression,):
        conditions.append(compiler.compile(part))
    return conditions, compiler.params


async def choose_plan(
    conn: asyncpg.Connection, filters: SearchFilters | None, *, exact_limit: int = EXACT_LIMIT
) -> SearchPlan:
    """Count the candidates (up to ``exact_limit + 1``) and pick the plan."""
    if is_filtered(filters):
        conditions, params = filter_conditions(filters, 2)
        sql = (
            f"SELECT count(*) FROM (SELECT 1 FROM chunks c JOIN documents d ON "
            f"d.id = c.document_id WHERE {' AND '.join(conditions)} LIMIT $1) s"
        )
    else:
        sql, params = "SELECT count(*) FROM (SELECT 1 FROM chunk_vectors LIMIT $1) s", []
    candidates = int(await conn.fetchval(sql, exact_limit + 1, *params))
    return SearchPlan(kind="exact" if candidates <= exact_limit else "hnsw", candidates=candidates)


def exact_sql(filters: SearchFilters | None) -> tuple[str, list[object]]:
    """The exact plan: parameters ``$1`` query, ``$2`` k, then the filter's."""
    if is_filtered(filters):
        conditions, params = filter_conditions(filters, 3)
        scored = (
            f"SELECT v.chunk_id, v.embedding <=> $1 AS distance {_FROM} "
            f"WHERE {' AND '.join(conditions)}"
        )
    else:  # only READY chunks have vectors: the rows are read once, and only k joined
        params = []
        scored = "SELECT v.chunk_id, v.embedding <=> $1 AS distance FROM chunk_vectors v"
    sql = (
        f"WITH scored AS MATERIALIZED ({scored}), "
        "s AS (SELECT chunk_id, distance FROM scored ORDER BY distance, chunk_id LIMIT $2) "
        f"SELECT {_COLUMNS} FROM s JOIN chunks c ON c.id = s.chunk_id "
        "JOIN documents d ON d.id = c.document_id "
        "WHERE c.embedding_status = 'READY' ORDER BY s.distance, c.id"
    )
    return sql, params


def hnsw_sql(filters: SearchFilters | None, dimensions: int) -> tuple[str, list[object]]:
    """The HNSW plan: parameters ``$1`` query, ``$2`` k, then the filter's."""
    order = distance_sql(dimensions, "$1")
    if is_filtered(filters):
        conditions, params = filter_conditions(filters, 3)
        inner = (
            f"SELECT v.chunk_id, v.embedding <=> $1 AS distance {_FROM} "
            f"WHERE {' AND '.join(conditions)} ORDER BY {order} LIMIT $2"
        )
    else:
        params = []
        inner = (
            f"SELECT v.chunk_id, v.embedding <=> $1 AS distance FROM chunk_vectors v "
            f"ORDER BY {order} LIMIT $2"
        )
    sql = (
        f"WITH s AS MATERIALIZED ({inner}) SELECT {_COLUMNS} FROM s "
        "JOIN chunks c ON c.id = s.chunk_id JOIN documents d ON d.id = c.document_id "
        "WHERE c.embedding_status = 'READY' ORDER BY s.distance, c.id"
    )
    return sql, params


def ef_search(k: int, floor: int = _EF_SEARCH_MIN) -> int:
    return max(1, min(_EF_SEARCH_MAX, max(floor, 2 * k)))


def hnsw_settings(k: int, *, filtered: bool, ef_floor: int = _EF_SEARCH_MIN) -> list[str]:
    """The ``SET LOCAL`` statements of the HNSW plan.

    ``enable_seqscan`` is off: the count already said the set is large, and below some
    ten thousand rows the planner's estimate prefers sorting every row (exact, but
    slower than the index) to the index scan.
    """
    statements = [
        f"SET LOCAL hnsw.ef_search = {ef_search(k, ef_floor)}",
        "SET LOCAL enable_seqscan = off",
    ]
    if filtered:
        statements.append("SET LOCAL hnsw.iterative_scan = relaxed_order")
    return statements


async def run_search(
    conn: asyncpg.Connection,
    query: bytes,
    *,
    k: int,
    filters: SearchFilters | None,
    dimensions: int,
    exact_limit: int = EXACT_LIMIT,
    ef_floor: int = _EF_SEARCH_MIN,
) -> list[SearchHit]:
    """Run one search inside the caller's (read-only) transaction."""
    plan = await choose_plan(conn, filters, exact_limit=exact_limit)
    if plan.candidates == 0:
        return []
    if plan.kind == "hnsw" and index_kind(dimensions) is not None:
        for statement in hnsw_settings(k, filtered=is_filtered(filters), ef_floor=ef_floor):
            await conn.execute(statement)
        sql, params = hnsw_sql(filters, dimensions)
        rows = await conn.fetch(sql, query, k, *params)
        if len(rows) >= min(k, plan.candidates):
            return [hit_from_row(row) for row in rows]
    sql, params = exact_sql(filters)
    rows = await conn.fetch(sql, query, k, *params)
    return [hit_from_row(row) for row in rows]


def _loads_object(text: str | None) -> dict[str, JSONValue]:
    value = json.loads(text or "{}")
    return value if isinstance(value, dict) else {}


def hit_from_row(row: Sequence[Any]) -> SearchHit:
    chunk_id, document_id, source, title, text, position, meta_json, distance, metadata = row
    meta: Mapping[str, JSONValue] = _loads_object(meta_json)
    path = meta.get("heading_path")
    heading_path = tuple(str(p) for p in path) if isinstance(path, list) else ()
    return SearchHit(
        chunk_id=int(chunk_id),
        document_id=int(document_id),
        source=str(source),
        title=None if title is None else str(title),
        text=str(text),
        position=int(position),
        heading_path=heading_path,
        distance=float(distance),
        document_metadata=_loads_object(metadata),
    )
