"""``asemantic search QUERY``: the closest chunks, best first."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from asemantic.cli.context import AppContext, Need, json_option, pass_app
from asemantic.cli.errors import KeyHint
from asemantic.cli.output import Output, relative, snippet
from asemantic.domain.documents import EmbeddingStatus, JSONValue, SearchHit
from asemantic.domain.fusion import SearchMode
from asemantic.domain.keywords import query_terms
from asemantic.errors import InvalidInputError
from asemantic.ports import SearchFilters

__all__ = ["hit_record", "parse_filters", "render_hits", "search"]

MAX_K = 1000
_LIST_KEYS = frozenset({"document_id", "source"})


def parse_filters(pairs: Sequence[str]) -> dict[str, JSONValue]:
    """``key=value`` pairs as a filter mapping; values are JSON when they parse.

    ``document_id`` and ``source`` may repeat (any of them matches); a ``source`` that
    names an existing file is made absolute, as ``ingest`` stores it.
    """
    filters: dict[str, JSONValue] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="'--filter'")
        value = _value(key, raw)
        if key in filters:
            if key not in _LIST_KEYS:
                raise click.BadParameter(f"{key!r} given twice", param_hint="'--filter'")
            previous = filters[key]
            filters[key] = [*(previous if isinstance(previous, list) else [previous]), value]
        else:
            filters[key] = value
    try:
        SearchFilters.from_mapping(filters)
    except InvalidInputError as exc:
        raise click.BadParameter(str(exc), param_hint="'--filter'") from None
    return filters


def _value(key: str, raw: str) -> JSONValue:
    try:
        value: JSONValue = json.loads(raw)
    except ValueError:
        value = raw
    if key == "source" and isinstance(value, str) and Path(value).is_file():
        value = str(Path(value).resolve())
    return value


def _filters_callback(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> dict[str, JSONValue]:
    return parse_filters(value)


@click.command()
@click.argument("query")
@click.option(
    "-k",
    "k",
    type=click.IntRange(1, MAX_K),
    default=5,
    show_default=True,
    help="How many results.",
)
@click.option(
    "--filter",
    "filters",
    multiple=True,
    metavar="KEY=VALUE",
    callback=_filters_callback,
    help="Restrict the search (repeatable): document_id=3, source=PATH, or any "
    "metadata key; values are JSON when they parse, else strings.",
)
@click.option(
    "--mode",
    type=click.Choice([m.value for m in SearchMode]),
    default=SearchMode.HYBRID.value,
    show_default=True,
    help="hybrid: meaning and words fused (RRF); vector: meaning only; keyword: words "
    "only (BM25, finds PENDING chunks too, needs no key).",
)
@json_option
@pass_app
def search(app: AppContext, query: str, k: int, filters: dict[str, JSONValue], mode: str) -> None:
    """Search the chunks for QUERY (hybrid and vector use the online key)."""
    if not query.strip():
        raise click.BadParameter("the query is empty", param_hint="'QUERY'")
    chosen = SearchMode(mode)
    if chosen is SearchMode.KEYWORD and not query_terms(query):
        raise click.BadParameter("the query has no words to search for", param_hint="'QUERY'")
    if chosen is not SearchMode.KEYWORD:
        app.key_hint = KeyHint.ONLINE
    hits, pending = app.run(_search(app, query, k, filters, chosen))
    out = app.output
    if out.json_mode:
        out.json(
            {
                "query": query,
                "k": k,
                "mode": chosen.value,
                "filters": filters,
                "hits": [hit_record(rank, hit) for rank, hit in enumerate(hits, 1)],
                "pending_chunks": pending,
            }
        )
        return
    render_hits(out, hits)
    if not hits:
        out.line("no results")
    if pending:
        found = "by keyword only" if chosen is not SearchMode.VECTOR else "not searchable yet"
        out.note(
            f"{pending:,} chunk(s) are still PENDING ({found}): "
            "run 'asemantic supervise' or 'asemantic batch sync'"
        )


async def _search(
    app: AppContext, query: str, k: int, filters: dict[str, JSONValue], mode: SearchMode
) -> tuple[list[SearchHit], int]:
    need = Need.NONE if mode is SearchMode.KEYWORD else Need.ONLINE
    async with app.core(need=need) as core:
        hits = await core.search(query, k=k, filters=filters or None, mode=mode)
        counts = await core.store.count_chunks_by_status()
    return hits, int(counts.get("PENDING", 0))


def hit_record(rank: int, hit: SearchHit) -> dict[str, Any]:
    """A hit as the JSON output shows it (``distance`` null when the vector list did
    not rank it; ``vector_rank``/``keyword_rank`` null when that list did not find it)."""
    return {
        "rank": rank,
        "distance": None if hit.distance is None else round(hit.distance, 6),
        "score": round(hit.score, 9),
        "found_by": list(hit.found_by),
        "vector_rank": hit.vector_rank,
        "keyword_rank": hit.keyword_rank,
        "keyword_score": None if hit.keyword_score is None else round(hit.keyword_score, 9),
        "embedding_status": hit.embedding_status.value,
        "document_id": hit.document_id,
        "chunk_id": hit.chunk_id,
        "source": hit.source,
        "title": hit.title,
        "position": hit.position,
        "heading_path": list(hit.heading_path),
        "text": hit.text,
        "metadata": dict(hit.document_metadata),
    }


def _how(hit: SearchHit) -> str:
    """``distance 0.123, bm25 4.21, vector #1, keyword #3`` (what is known of the hit)."""
    parts = []
    if hit.distance is not None:
        parts.append(f"distance {hit.distance:.3f}")
    if hit.keyword_score is not None:
        parts.append(f"bm25 {hit.keyword_score:.2f}")
    if hit.vector_rank is not None:
        parts.append(f"vector #{hit.vector_rank}")
    if hit.keyword_rank is not None:
        parts.append(f"keyword #{hit.keyword_rank}")
    if hit.embedding_status is not EmbeddingStatus.READY:
        parts.append(hit.embedding_status.value)
    return ", ".join(parts)


def render_hits(out: Output, hits: Sequence[SearchHit], *, short_source: bool = False) -> None:
    """Ranked hits: rank, how they were found, title, where, and a snippet."""
    for rank, hit in enumerate(hits, 1):
        source = Path(hit.source).name if short_source else relative(hit.source)
        where = " > ".join([source, *hit.heading_path])
        out.line(f"{rank:>2}. {hit.title or source}  ({_how(hit)})", style="bold")
        out.line(f"    {where}  [document {hit.document_id}, chunk {hit.chunk_id}]", style="dim")
        out.line(f"    {snippet(hit.text)}")
