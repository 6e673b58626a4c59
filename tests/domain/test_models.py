"""The model registry: limits, request shape per model, task prefixes, prices."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from asemantic.domain.chunking import PlainTextSplitter
from asemantic.domain.context import TitleHeadingContext, build_drafts
from asemantic.domain.documents import Document
from asemantic.domain.hashing import content_hash
from asemantic.domain.models import (
    DOCUMENT_TASKS,
    GEMINI_EMBEDDING_001,
    GEMINI_EMBEDDING_2,
    KNOWN_MODELS,
    EmbeddingInput,
    embedding_model,
    task_text,
)
from asemantic.domain.pricing import Pricing, cost_report
from asemantic.domain.space import MAX_INPUT_TOKENS, EmbeddingSpace
from asemantic.domain.text import validate_query
from asemantic.domain.tokens import estimate_tokens
from asemantic.errors import ChunkTooLargeError

SPACE_2 = EmbeddingSpace(model="gemini-embedding-2", dimensions=768)


def test_the_registry_holds_both_models_with_their_limits_and_prices() -> None:
    assert set(KNOWN_MODELS) == {"gemini-embedding-001", "gemini-embedding-2"}
    one, two = KNOWN_MODELS["gemini-embedding-001"], KNOWN_MODELS["gemini-embedding-2"]
    assert (one.max_input_tokens, two.max_input_tokens) == (2048, 8192)
    assert (one.min_dimensions, one.max_dimensions) == (128, 3072)
    assert (two.min_dimensions, two.max_dimensions) == (128, 3072)
    assert not one.task_prefixes and two.task_prefixes
    assert not one.normalises_reduced and two.normalises_reduced
    assert (one.online_per_million, one.batch_per_million) == (0.15, 0.075)
    assert (two.online_per_million, two.batch_per_million) == (0.20, 0.10)
    assert one.max_input_tokens == MAX_INPUT_TOKENS


def test_a_models_prefix_is_accepted_and_an_unknown_name_keeps_the_old_behaviour() -> None:
    assert embedding_model("models/gemini-embedding-2") is GEMINI_EMBEDDING_2
    unknown = embedding_model("lexical-hash-v1")
    assert not unknown.known and unknown.name == "lexical-hash-v1"
    assert unknown.max_input_tokens == 2048 and not unknown.task_prefixes
    assert Pricing.for_model("lexical-hash-v1") == Pricing()
    assert unknown.document_input("t", title="T", task_type="RETRIEVAL_DOCUMENT") == (
        EmbeddingInput(text="t", task_type="RETRIEVAL_DOCUMENT", title="T")
    )


@pytest.mark.parametrize(
    ("task_type", "expected"),
    [
        ("RETRIEVAL_QUERY", "task: search result | query: why refunds"),
        ("QUESTION_ANSWERING", "task: question answering | query: why refunds"),
        ("FACT_VERIFICATION", "task: fact checking | query: why refunds"),
        ("CODE_RETRIEVAL_QUERY", "task: code retrieval | query: why refunds"),
        ("CLASSIFICATION", "task: classification | query: why refunds"),
        ("CLUSTERING", "task: clustering | query: why refunds"),
        ("SEMANTIC_SIMILARITY", "task: sentence similarity | query: why refunds"),
        ("RETRIEVAL_DOCUMENT", "title: none | text: why refunds"),
    ],
)
def test_task_text_for_every_task_type(task_type: str, expected: str) -> None:
    assert task_text(task_type, "why refunds") == expected
    assert task_type in DOCUMENT_TASKS


def test_a_document_title_goes_into_the_prefix_on_one_line() -> None:
    assert task_text("RETRIEVAL_DOCUMENT", "body", title="Refunds") == (
        "title: Refunds | text: body"
    )
    assert task_text("RETRIEVAL_DOCUMENT", "body", title="A\n  b | c") == (
        "title: A b c | text: body"
    )
    assert task_text("RETRIEVAL_DOCUMENT", "body", title=" \n ") == "title: none | text: body"
    # The title belongs to the document form only.
    assert task_text("CLUSTERING", "body", title="T") == "task: clustering | query: body"
    with pytest.raises(ValueError, match="no text prefix"):
        task_text("NOT_A_TASK", "body")


def test_request_shape_per_model() -> None:
    document = dict(title="Guide", task_type="RETRIEVAL_DOCUMENT")
    assert GEMINI_EMBEDDING_001.document_input("body", **document) == EmbeddingInput(
        text="body", task_type="RETRIEVAL_DOCUMENT", title="Guide"
    )
    assert GEMINI_EMBEDDING_001.query_input("q") == EmbeddingInput(
        text="q", task_type="RETRIEVAL_QUERY", title=None
    )
    # A title is a field of RETRIEVAL_DOCUMENT requests only.
    assert GEMINI_EMBEDDING_001.document_input("b", title="G", task_type="CLUSTERING").title is None
    assert GEMINI_EMBEDDING_2.document_input("body", **document) == EmbeddingInput(
        text="title: Guide | text: body", task_type=None, title=None
    )
    assert GEMINI_EMBEDDING_2.query_input("q") == EmbeddingInput(
        text="task: search result | query: q", task_type=None, title=None
    )


def test_a_space_for_gemini_embedding_2_needs_a_task_a_prefix_can_express() -> None:
    assert SPACE_2.embedding_model is GEMINI_EMBEDDING_2
    assert EmbeddingSpace(model="gemini-embedding-2", task_type="CLUSTERING").task_type
    with pytest.raises(ValueError, match="text prefix"):
        EmbeddingSpace(model="gemini-embedding-2", task_type="MY_TASK")
    # Other models keep accepting any task type string, as before.
    assert EmbeddingSpace(model="lexical-hash-v1", task_type="MY_TASK").task_type == "MY_TASK"


def test_pricing_per_model_and_its_report() -> None:
    two = Pricing.for_model("gemini-embedding-2")
    assert (two.online_per_million, two.batch_per_million) == (0.20, 0.10)
    assert Pricing.for_model("gemini-embedding-001") == Pricing()
    report = cost_report({"online": 1_000_000, "batch": 2_000_000, "query": 500_000}, two)
    assert report.cost_online_usd == pytest.approx(0.20)
    assert report.cost_batch_usd == pytest.approx(0.20)
    assert report.cost_query_usd == pytest.approx(0.10)
    assert report.savings_percent == pytest.approx(50.0)


def _document(words: int, title: str = "Guide") -> Document:
    return Document(text=" ".join(f"w{i}" for i in range(words)), source="a.txt", title=title)


def _max_tokens(space: EmbeddingSpace) -> int:
    return space.embedding_model.max_input_tokens


def _most_words(fits: Callable[[int], bool]) -> int:
    """The largest word count for which ``fits`` holds (it holds for 1, not for 10,000)."""
    low, high = 1, 10_000
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def test_the_token_bound_counts_the_prefix() -> None:
    splitter = PlainTextSplitter(target_tokens=9000, max_tokens=9000)
    context = TitleHeadingContext()
    # The longest document whose vector source (no prefix) is within the limit.
    words = _most_words(
        lambda n: (
            estimate_tokens(
                context.vector_source(title="Guide", heading_path=(), text=_document(n).text)
            )
            <= _max_tokens(SPACE_2)
        )
    )
    document = _document(words)
    # Without the prefix it fits; with it, it does not: refused, naming the prefix.
    (draft,) = build_drafts(
        document, splitter=splitter, context=context, max_input_tokens=_max_tokens(SPACE_2)
    )
    assert draft.token_estimate <= _max_tokens(SPACE_2)
    with pytest.raises(ChunkTooLargeError, match="task prefix; the model reads at most 8,192"):
        build_drafts(document, splitter=splitter, context=context, space=SPACE_2)
    # A chunk and its prefix within the limit pass; what is sent fits.
    shorter = _document(words - 40)
    (ok,) = build_drafts(shorter, splitter=splitter, context=context, space=SPACE_2)
    sent = SPACE_2.embedding_model.document_input(
        ok.vector_source, title=shorter.title, task_type=SPACE_2.task_type
    )
    assert estimate_tokens(sent.text) <= _max_tokens(SPACE_2)


def test_the_limit_follows_the_spaces_model() -> None:
    splitter = PlainTextSplitter(target_tokens=9000, max_tokens=9000)
    document = _document(3000)  # about 3,000+ tokens: over 2,048, under 8,192
    with pytest.raises(ChunkTooLargeError, match="2,048"):
        build_drafts(document, splitter=splitter, context=TitleHeadingContext())
    with pytest.raises(ChunkTooLargeError, match="2,048"):
        build_drafts(
            document, splitter=splitter, context=TitleHeadingContext(), space=EmbeddingSpace()
        )
    (draft,) = build_drafts(
        document, splitter=splitter, context=TitleHeadingContext(), space=SPACE_2
    )
    assert draft.token_estimate > 2048


def test_the_prefix_is_not_stored_and_the_hash_is_the_same_for_both_models() -> None:
    splitter = PlainTextSplitter(target_tokens=200, max_tokens=400)
    document = _document(500)
    one = build_drafts(
        document, splitter=splitter, context=TitleHeadingContext(), space=EmbeddingSpace()
    )
    two = build_drafts(document, splitter=splitter, context=TitleHeadingContext(), space=SPACE_2)
    assert one == two
    for draft in two:
        assert "| text:" not in draft.vector_source
        assert draft.content_hash == content_hash(draft.vector_source)


def test_a_query_is_checked_with_its_prefix() -> None:
    model = GEMINI_EMBEDDING_2
    words = _most_words(
        lambda n: estimate_tokens(" ".join(f"q{i}" for i in range(n))) <= model.max_input_tokens
    )
    query = " ".join(f"q{i}" for i in range(words))
    assert validate_query(query, max_tokens=model.max_input_tokens) == query
    with pytest.raises(ChunkTooLargeError, match="8,192"):
        validate_query(
            query,
            max_tokens=model.max_input_tokens,
            as_sent=lambda text: model.query_input(text).text,
        )
