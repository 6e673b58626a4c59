"""The faster token counter, Markdown scanner and splitters give the same answers as
the straightforward versions they replaced (kept in ``tests/domain/reference``).

Chunk limits and chunk quality stay what they were: the same estimate for every text
(DEL aside, now two tokens instead of none: higher is safe), the same blocks and
headings, the same sections.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asemantic.domain import chunking, keywords, markdown
from asemantic.domain.context import TitleHeadingContext, build_drafts
from asemantic.domain.documents import Document
from asemantic.domain.tokens import TokenCounter, approximate_tokens, estimate_tokens
from asemantic.errors import ChunkTooLargeError, EmptyDocumentError, UndecodableTextError
from tests.domain.reference import chunking as ref_chunking
from tests.domain.reference import keywords as ref_keywords
from tests.domain.reference import markdown as ref_markdown
from tests.domain.reference import tokens as ref_tokens

PIECES = st.sampled_from(
    [
        *"ab1Z9 \n\t\x0b\x0c\x01\x1f.-#`~=>*!?)\"'",
        *["\u00e9", "\u00a0", "\u3000", "\u0101", "\u07ff", "\u0800", "\U0001f600", "\u2028"],
        *["\u3002", "\u2026", "\u201d", "e\u0301", "\x7f"],
        *["```", "~~~", "# ", "## ", "###### x", "####### y", "---", "===", "...", "- item"],
        *["> q", "1. ", "word", "Sentence. ", "\n\n", "   ", "    # code", "Title #", "\n---\n"],
    ]
)
TEXTS = st.lists(st.one_of(PIECES, st.characters(exclude_characters="\x00\r")), max_size=120).map(
    "".join
)


def _reference_estimate(text: str) -> int:
    # The reference priced DEL at nothing; the counter prices it at two tokens.
    return ref_tokens.estimate_tokens(text) + 2 * text.count("\x7f")


@given(TEXTS)
@settings(max_examples=1500, deadline=None)
def test_the_estimate_is_the_reference_estimate(text: str) -> None:
    assert estimate_tokens(text) == _reference_estimate(text)
    assert approximate_tokens(text) <= estimate_tokens(text)


@given(TEXTS, st.data())
@settings(max_examples=1500, deadline=None)
def test_every_span_is_priced_as_the_text_alone(text: str, data: st.DataObject) -> None:
    counter = TokenCounter(text)
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, len(text)))
    assert counter.span(start, end) == estimate_tokens(text[start:end])
    assert counter.span(0, len(text)) == estimate_tokens(text)


def _key(item: object) -> tuple[object, ...]:
    if isinstance(item, markdown.Heading | ref_markdown.Heading):
        return ("heading", item.level, item.title)
    assert isinstance(item, markdown.Block | ref_markdown.Block)
    return ("block", item.start, item.end, item.kind.value)


@given(TEXTS)
@settings(max_examples=1500, deadline=None)
def test_the_scanner_finds_what_the_line_walk_found(text: str) -> None:
    assert [_key(i) for i in markdown.scan_markdown(text)] == [
        _key(i) for i in ref_markdown.scan_markdown(text)
    ]
    assert list(markdown.paragraphs(text)) == list(ref_markdown.paragraphs(text))


BUDGETS = st.integers(min_value=8, max_value=60).flatmap(
    lambda target: st.tuples(st.just(target), st.integers(min_value=target, max_value=150))
)
LONG_TEXTS = st.lists(
    st.one_of(PIECES, st.characters(exclude_characters="\x00\r")), max_size=600
).map("".join)


@pytest.mark.parametrize("kind", ["markdown", "plain"])
@given(text=LONG_TEXTS, budget=BUDGETS)
@settings(max_examples=400, deadline=None)
def test_the_splitters_cut_where_they_cut(kind: str, text: str, budget: tuple[int, int]) -> None:
    if "\x7f" in text:
        text = text.replace("\x7f", "x")  # priced differently, so cut differently
    new = chunking.splitter_for(kind, target_tokens=budget[0], max_tokens=budget[1])
    old = ref_chunking.splitter_for(kind, target_tokens=budget[0], max_tokens=budget[1])
    sections = new.split(text)
    assert [(s.text, s.heading_path) for s in sections] == [
        (s.text, s.heading_path) for s in old.split(text)
    ]
    assert all(s.tokens == estimate_tokens(s.text) for s in sections)


@given(title=TEXTS, text=LONG_TEXTS)
@settings(max_examples=300, deadline=None)
def test_draft_estimates_are_the_estimates_of_their_vector_sources(title: str, text: str) -> None:
    if not text.strip() or not title.strip():
        return
    document = Document(text=text, source="s", title=title)
    splitter = chunking.MarkdownSplitter(target_tokens=20, max_tokens=40)
    try:
        drafts = build_drafts(document, splitter=splitter, context=TitleHeadingContext())
    except (EmptyDocumentError, ChunkTooLargeError, UndecodableTextError):
        return  # only headings, a huge title, or a lone surrogate (refused, typed)
    for draft in drafts:
        assert draft.token_estimate == estimate_tokens(draft.vector_source)


CORPUS = sorted(Path(__file__).resolve().parents[2].glob("*.md"))


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_real_documents_split_as_before(path: Path) -> None:
    text = path.read_text(encoding="utf-8").replace("\r\n", "\n")
    new = chunking.MarkdownSplitter(target_tokens=100, max_tokens=200).split(text)
    old = ref_chunking.MarkdownSplitter(target_tokens=100, max_tokens=200).split(text)
    assert [(s.text, s.heading_path) for s in new] == [(s.text, s.heading_path) for s in old]
    assert estimate_tokens(text) == _reference_estimate(text)


KEYWORD_PIECES = st.sampled_from(
    [
        *["getUserName", "HTTPServer", "os.path.join", "ERR_1234", "a-b", "x::y", "v2Api"],
        *["naïve", "Straße", "ǅemal", "ﬁle", "İstanbul", "日本語", "ABCdef", "aB", "A1b", "_", "."],
        *[" ", "\n", "-", "/", ":", "__init__", "e\u0301", "\u00a0", "Ⅻ", "x" * 70],
    ]
)
KEYWORD_TEXTS = st.lists(
    st.one_of(KEYWORD_PIECES, st.characters(exclude_characters="\x00")), max_size=60
).map("".join)


@given(KEYWORD_TEXTS)
@settings(max_examples=3000, deadline=None)
def test_the_keyword_tokens_are_the_reference_tokens(text: str) -> None:
    assert keywords.tokenize(text) == ref_keywords.tokenize(text)
    assert keywords.index_tokens(text) == ref_keywords.index_tokens(text)


def test_the_keyword_tokens_of_real_documents_are_the_reference_tokens() -> None:
    files = sorted(Path(chunking.__file__).parents[2].glob("*.md"))
    assert files
    for path in files:
        text = path.read_text(encoding="utf-8")
        for piece in text.split("\n\n"):
            assert keywords.tokenize(piece) == ref_keywords.tokenize(piece)
