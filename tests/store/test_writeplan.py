"""The pure planning of a document write, and the chunk meta JSON."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from asemantic.adapters.planning import (
    ExistingChunk,
    chunk_meta_json,
    dump_json,
    plan_write,
)
from asemantic.domain.documents import ChunkDraft, JSONValue

from .helpers import draft


def _stored(chunk_id: int, d: ChunkDraft, status: str = "READY") -> ExistingChunk:
    return ExistingChunk(
        chunk_id=chunk_id,
        position=d.position,
        content_hash=d.content_hash,
        status=status,
        text=d.text,
        meta_json=chunk_meta_json(d),
    )


def test_new_document() -> None:
    a, b = draft(0, "a"), draft(1, "b")
    plan = plan_write([], [a, b], {a.content_hash: b"v"})
    assert plan.kept == ()
    assert plan.delete_ids == ()
    assert [(n.draft, n.status, n.vector) for n in plan.new] == [
        (a, "READY", b"v"),
        (b, "PENDING", None),
    ]
    assert plan.pending == 1


def test_unchanged_document_needs_no_writes() -> None:
    a, b = draft(0, "a"), draft(1, "b")
    plan = plan_write([_stored(1, a), _stored(2, b, "PENDING")], [a, b], {})
    assert [k.chunk_id for k in plan.kept] == [1, 2]
    assert plan.updates == ()
    assert plan.new == ()
    assert plan.delete_ids == ()


def test_failed_and_changed_chunks_are_replaced() -> None:
    a, b, c = draft(0, "a"), draft(1, "b"), draft(2, "c")
    c2 = draft(2, "c changed")
    plan = plan_write([_stored(1, a), _stored(2, b, "FAILED"), _stored(3, c)], [a, b, c2], {})
    assert [k.chunk_id for k in plan.kept] == [1]
    assert sorted(plan.delete_ids) == [2, 3]
    assert [n.draft.text for n in plan.new] == ["b", "c changed"]


def test_moved_chunks_are_updated() -> None:
    a, b = draft(0, "a"), draft(1, "b")
    moved = [draft(0, "new"), draft(1, "a"), draft(2, "b")]
    plan = plan_write([_stored(1, a), _stored(2, b)], moved, {})
    assert [(u.chunk_id, u.draft.position) for u in plan.updates] == [(1, 1), (2, 2)]
    assert [n.draft.text for n in plan.new] == ["new"]


def test_duplicates_prefer_ready_and_copy_vectors() -> None:
    a0, a1, a2 = draft(0, "same"), draft(1, "same"), draft(2, "same")
    stored = [_stored(7, a0, "PENDING"), _stored(8, a1, "READY")]
    plan = plan_write(stored, [a0, a1, a2], {})
    assert [k.chunk_id for k in plan.kept] == [8, 7]  # READY matched first
    assert plan.new[0].status == "READY"
    assert plan.new[0].copy_vector_of == 8
    surplus = plan_write(stored, [a0], {})
    assert [k.chunk_id for k in surplus.kept] == [8]
    assert surplus.delete_ids == (7,)


json_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=200)


@given(
    source=json_text,
    heading=st.lists(json_text, max_size=4),
    tokens=st.integers(min_value=0, max_value=10**9),
)
def test_chunk_meta_json_is_canonical_json(source: str, heading: list[str], tokens: int) -> None:
    d = ChunkDraft(
        position=0,
        text="t",
        heading_path=tuple(heading),
        vector_source=source,
        content_hash="h",
        token_estimate=tokens,
    )
    path: list[JSONValue] = list(heading)
    expected = dump_json({"_vector_source": source, "heading_path": path, "token_estimate": tokens})
    assert chunk_meta_json(d) == expected
