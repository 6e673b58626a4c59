"""Search SQL: k nearest READY chunks by cosine distance, optionally filtered.

Unfiltered searches are a vec0 KNN query (``embedding MATCH ? AND k = ?``). A filtered
search must return k hits whenever k chunks match, so the filter is never applied to a
global top-k afterwards. Two plans do that:

* ``knn``: the vec0 KNN query with a ``rowid IN (SELECT ...)`` constraint holding the
  matching chunk ids. sqlite-vec (verified with 0.1.9 on SQLite 3.50) consumes the whole
  IN list through ``sqlite3_vtab_in`` and ranks only those rows, which is exact and
  3-4x faster than the scan below on broad filters (50,000 x 768d: 95 ms against 330
  ms with half the rows matching). Where that does not hold (SQLite before 3.38, or
  an older sqlite-vec) SQLite would apply the IN to the k rows vec0 returns, so the
  store probes for it when it opens (:func:`.vectors.knn_prefilter_works`) and
  otherwise uses
* ``scan``: an exact scan over the matching chunks with ``vec_distance_cosine``.

Filters (:mod:`asemantic.domain.filters`) compile to one condition on ``d`` per
top-level part, values always as parameters. Metadata conditions read the document's
``json_each`` rows: equality compares JSON values with their JSON types (``1`` matches
``1`` and ``1.0``, but not ``true`` nor ``"1"``; ``null`` matches an explicit null
only; arrays and objects as canonical JSON); ranges keep to ``m.type`` (numbers with
numbers, text with text, in BINARY collation: code point order); ``NOT EXISTS`` of a
key is how ``$ne``, ``$nin`` and ``$exists: false`` match a missing key. The stamps
are UTC ISO 8601 text to the microsecond, so a time filter compares them as text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import aiosqlite
import numpy as np
import numpy.typing as npt

from asemantic.adapters.planning import dump_json
from asemantic.adapters.sqlite.memory_index import DocumentsByFilter, MemoryIndex, parse_ids
from asemantic.domain.documents import JSONValue, SearchHit
from asemantic.domain.filters import (
    AllOf,
    AnyOf,
    FieldCondition,
    Filter,
    KeyCondition,
    Not,
    json_kind,
)
from asemantic.errors import InvalidInputError
from asemantic.ports import SearchFilters

__all__ = [
    "HYDRATE",
    "build_search",
    "compile_filter",
    "filter_conditions",
    "hit_from_row",
    "index_search",
    "is_filtered",
    "matching_documents",
    "matching_documents_sql",
]

_COLUMNS = (
    "c.id, c.document_id, d.source, d.title, c.text, c.position, c.meta_json, "
    "knn.distance, d.metadata_json"
)
_JOIN = "JOIN chunks c ON c.id = knn.chunk_id JOIN documents d ON d.id = c.document_id"
# Documents first (CROSS JOIN keeps that order), then their READY chunks through the
# partial index chunks_ready_document, never reading the wide chunk rows.
_MATCHING = "FROM documents d CROSS JOIN chunks c ON c.document_id = d.id"


_EACH = "EXISTS (SELECT 1 FROM json_each(d.metadata_json) m WHERE m.key = ?"
_SQL_OPS = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_COLUMNS_OF = {
    "document_id": "d.id",
    "source": "d.source",
    "created_at": "d.created_at",
    "updated_at": "d.updated_at",
}


def _equal_value(value: JSONValue) -> tuple[str, list[object]]:
    """A condition on ``m`` (a ``json_each`` row) that its value equals ``value``."""
    if value is None:
        return "m.type = 'null'", []
    if isinstance(value, bool):
        return "m.type = ?", ["true" if value else "false"]
    if isinstance(value, int | float):
        return "m.type IN ('integer', 'real') AND m.value = ?", [value]
    if isinstance(value, str):
        return "m.type = 'text' AND m.value = ?", [value]
    if isinstance(value, list | dict):
        kind = "array" if isinstance(value, list) else "object"
        return "m.type = ? AND m.value = ?", [kind, dump_json(value)]
    raise InvalidInputError("metadata filter values must be JSON values")


def _in_values(values: Sequence[JSONValue]) -> tuple[str, list[object]]:
    """A condition on ``m`` that its value is one of ``values`` (a few parameters
    whatever the list's length: numbers, strings and whole containers each one list)."""
    numbers: list[JSONValue] = [
        v for v in values if isinstance(v, int | float) and not isinstance(v, bool)
    ]
    texts: list[JSONValue] = [v for v in values if isinstance(v, str)]
    types: list[JSONValue] = [
        *sorted({json_kind(v) for v in values if v is None or isinstance(v, bool)})
    ]
    containers: list[JSONValue] = [
        *sorted({dump_json(v) for v in values if isinstance(v, list | dict)})
    ]
    terms: list[str] = []
    params: list[object] = []
    if numbers:
        terms.append(
            "(m.type IN ('integer', 'real') AND m.value IN (SELECT value FROM json_each(?)))"
        )
        params.append(dump_json(numbers))
    if texts:
        terms.append("(m.type = 'text' AND m.value IN (SELECT value FROM json_each(?)))")
        params.append(dump_json(texts))
    if types:
        terms.append("m.type IN (SELECT value FROM json_each(?))")
        params.append(dump_json(types))
    if containers:
        terms.append(
            "(m.type IN ('array', 'object') AND m.value IN (SELECT value FROM json_each(?)))"
        )
        params.append(dump_json(containers))
    return ("(" + " OR ".join(terms) + ")" if terms else "0"), params


def _key_condition(test: KeyCondition) -> tuple[str, list[object]]:
    if not isinstance(test.key, str):
        raise InvalidInputError("metadata filter keys must be strings")
    if test.op == "$exists":
        return _EACH + ")", [test.key]
    if test.op == "$eq":
        sql, params = _equal_value(test.value)  # type: ignore[arg-type]
    elif test.op == "$in":
        assert isinstance(test.value, tuple)
        sql, params = _in_values(test.value)  # type: ignore[arg-type]
    else:
        bound = test.value
        if isinstance(bound, str):
            sql = f"m.type = 'text' AND m.value {_SQL_OPS[test.op]} ?"
        else:  # a number (the parser refused every other bound)
            sql = f"m.type IN ('integer', 'real') AND m.value {_SQL_OPS[test.op]} ?"
        params = [bound]
    return f"{_EACH} AND {sql})", [test.key, *params]


def _stamp(value: object) -> object:
    """A time as the stamp columns hold it (UTC ISO 8601 to the microsecond: their text
    order is their time order)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    return value


def _field_condition(test: FieldCondition) -> tuple[str, list[object]]:
    column = _COLUMNS_OF[test.field]
    if test.op == "$in":
        assert isinstance(test.value, tuple)
        values = [_stamp(v) for v in test.value]
        return f"{column} IN (SELECT value FROM json_each(?))", [json.dumps(values)]
    op = "=" if test.op == "$eq" else _SQL_OPS[test.op]
    return f"{column} {op} ?", [_stamp(test.value)]


def compile_filter(expression: Filter) -> tuple[str, list[object]]:
    """One SQL condition on ``d`` (documents) with its parameters (values are always
    parameters, never part of the SQL text)."""
    if isinstance(expression, AllOf | AnyOf):
        if not expression.parts:
            return ("1" if isinstance(expression, AllOf) else "0"), []
        joiner = " AND " if isinstance(expression, AllOf) else " OR "
        texts: list[str] = []
        params: list[object] = []
        for part in expression.parts:
            sql, extra = compile_filter(part)
            texts.append(sql)
            params.extend(extra)
        return "(" + joiner.join(texts) + ")", params
    if isinstance(expression, Not):
        sql, params = compile_filter(expression.part)
        return f"NOT {sql}", params
    if isinstance(expression, FieldCondition):
        return _field_condition(expression)
    return _key_condition(expression)


def filter_conditions(filters: SearchFilters) -> tuple[list[str], list[object]]:
    """SQL conditions on ``c`` (chunks) and ``d`` (documents), ANDed, with parameters."""
    expression = filters.expression()
    parts = expression.parts if isinstance(expression, AllOf) else (expression,)
    conditions: list[str] = []
    params: list[object] = []
    for part in parts:
        sql, extra = compile_filter(part)
        conditions.append(sql)
        params.extend(extra)
    return conditions, params


# The rows of chosen chunks, for hits the in-memory index found (distance filled in
# afterwards; a chunk no longer READY is left out). Driven from the id list (CROSS JOIN
# keeps that order): with ``c.id IN (...)`` the planner prefers the status index and
# walks every READY chunk, 15 ms at 100,000 chunks instead of a few lookups.
HYDRATE = (
    "SELECT c.id, c.document_id, d.source, d.title, c.text, c.position, c.meta_json, "
    "0.0, d.metadata_json FROM json_each(?) j CROSS JOIN chunks c ON c.id = j.value "
    "JOIN documents d ON d.id = c.document_id WHERE c.embedding_status = 'READY'"
)


def matching_documents_sql(filters: SearchFilters) -> tuple[str, list[object]]:
    """One row: the ids of the documents ``filters`` matches, comma-separated (one
    string is far cheaper to fetch than a row per id). Every filter is on documents,
    so the in-memory index turns this list into a mask over its rows."""
    conditions, params = filter_conditions(filters)
    where = " AND ".join(conditions) or "1"
    return f"SELECT group_concat(d.id) FROM documents d WHERE {where}", params


def is_filtered(filters: SearchFilters | None) -> bool:
    """Whether ``filters`` restricts anything."""
    return _is_filtered(filters)


def _is_filtered(filters: SearchFilters | None) -> bool:
    return filters is not None and filters.restricts


def build_search(
    query: bytes, *, k: int, filters: SearchFilters | None, prefilter: bool
) -> tuple[str, list[object]]:
    """The SQL and parameters of a search (rows as :func:`hit_from_row` reads them)."""
    if filters is None or not _is_filtered(filters):
        sql = (
            "WITH knn AS (SELECT rowid AS chunk_id, distance FROM vec_chunks "
            "WHERE embedding MATCH ? AND k = ?) "
            f"SELECT {_COLUMNS} FROM knn {_JOIN} "
            "WHERE c.embedding_status = 'READY' ORDER BY knn.distance, c.id"
        )
        return sql, [query, k]
    conditions, params = filter_conditions(filters)
    where = " AND ".join(["c.embedding_status = 'READY'", *conditions])
    if prefilter:
        sql = (
            "WITH knn AS (SELECT rowid AS chunk_id, distance FROM vec_chunks "
            f"WHERE embedding MATCH ? AND k = ? AND rowid IN (SELECT c.id {_MATCHING} "
            f"WHERE {where})) "
            f"SELECT {_COLUMNS} FROM knn {_JOIN} ORDER BY knn.distance, c.id"
        )
        return sql, [query, k, *params]
    sql = (
        "WITH knn AS (SELECT c.id AS chunk_id, vec_distance_cosine(v.embedding, ?) AS distance "
        f"{_MATCHING} JOIN vec_chunks v ON v.rowid = c.id WHERE {where} "
        "ORDER BY distance, c.id LIMIT ?) "
        f"SELECT {_COLUMNS} FROM knn {_JOIN} ORDER BY knn.distance, c.id"
    )
    return sql, [query, *params, k]


def _loads_object(text: str) -> dict[str, JSONValue]:
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


async def matching_documents(
    reader: aiosqlite.Connection, cache: DocumentsByFilter, filters: SearchFilters
) -> npt.NDArray[np.int64]:
    """The ids of the documents ``filters`` matches: remembered while nothing was
    committed to the file since (``PRAGMA data_version``), else read."""
    sql, params = matching_documents_sql(filters)
    key = (sql, repr(params))
    version = int(next(iter(await reader.execute_fetchall("PRAGMA data_version")))[0])
    known = cache.get(key, version)
    if known is not None:
        return known
    rows = list(await reader.execute_fetchall(sql, params))
    documents = parse_ids(rows[0][0] if rows else None)
    cache.put(key, version, documents)
    return documents


async def index_search(
    reader: aiosqlite.Connection,
    index: MemoryIndex,
    blob: bytes,
    k: int,
    filters: SearchFilters | None,
) -> list[SearchHit] | None:
    """Hits from the memory index, or None when a chosen chunk vanished before its
    row was read (a write raced the search: the caller tries again)."""
    documents = None
    if filters is not None and is_filtered(filters):
        documents = await matching_documents(reader, index.filter_documents, filters)
        if not len(documents):
            return []
    query = np.frombuffer(blob, dtype="<f4")
    ids, distances = await index.nearest(query, k, documents=documents)
    if not len(ids):
        return []
    chosen = [int(i) for i in ids]
    found = await reader.execute_fetchall(HYDRATE, (json.dumps(chosen),))
    by_id = {int(row[0]): tuple(row) for row in found}
    if len(by_id) != len(chosen):
        return None
    return [
        hit_from_row((*by_id[i][:7], float(d), by_id[i][8]))
        for i, d in zip(chosen, distances, strict=True)
    ]
