"""Vector sources and chunk drafts."""

from __future__ import annotations

from dataclasses import replace

import pytest

from asemantic.domain.chunking import MarkdownSplitter, PlainTextSplitter
from asemantic.domain.context import (
    TitleHeadingContext,
    build_drafts,
    pipeline_fingerprint,
)
from asemantic.domain.documents import Document
from asemantic.domain.hashing import content_hash
from asemantic.domain.keywords import index_tokens
from asemantic.domain.tokens import estimate_tokens
from asemantic.errors import ChunkTooLargeError, EmptyDocumentError, UndecodableTextError


@pytest.mark.parametrize(
    ("title", "path", "expected"),
    [
        ("Guide", ("Install", "Source"), "Title: Guide\nSection: Install > Source\n\nbody"),
        (None, ("Install",), "Section: Install\n\nbody"),
        ("Guide", (), "Title: Guide\n\nbody"),
        (None, (), "body"),
        ("  ", ("", " "), "body"),
        ("Two\nlines", ("a\tb", "", "c"), "Title: Two lines\nSection: a b > c\n\nbody"),
    ],
)
def test_title_heading_context(title: str | None, path: tuple[str, ...], expected: str) -> None:
    assert (
        TitleHeadingContext().vector_source(title=title, heading_path=path, text="body") == expected
    )


def test_separator_is_configurable_and_fingerprinted() -> None:
    context = TitleHeadingContext(separator=" / ")
    assert context.vector_source(title=None, heading_path=("a", "b"), text="t") == (
        "Section: a / b\n\nt"
    )
    assert context.fingerprint() != TitleHeadingContext().fingerprint()


class BareContext:
    def vector_source(self, *, title: str | None, heading_path: tuple[str, ...], text: str) -> str:
        return text


def test_pipeline_fingerprint() -> None:
    first = pipeline_fingerprint(MarkdownSplitter(), TitleHeadingContext())
    assert first == pipeline_fingerprint(MarkdownSplitter(), TitleHeadingContext())
    assert first != pipeline_fingerprint(PlainTextSplitter(), TitleHeadingContext())
    assert first != pipeline_fingerprint(MarkdownSplitter(target_tokens=300), TitleHeadingContext())
    assert pipeline_fingerprint(MarkdownSplitter(), BareContext()).endswith(
        "test_context.BareContext"
    )


def test_build_drafts() -> None:
    document = Document(
        source="guide.md", title="Guide", text="intro\r\n\r\n# Install\r\npip install it\n"
    )
    drafts = build_drafts(document, splitter=MarkdownSplitter(), context=TitleHeadingContext())
    assert [(d.position, d.text, d.heading_path) for d in drafts] == [
        (0, "intro", ()),
        (1, "pip install it", ("Install",)),
    ]
    second = drafts[1]
    assert second.vector_source == "Title: Guide\nSection: Install\n\npip install it"
    assert second.content_hash == content_hash(second.vector_source)
    assert second.token_estimate == estimate_tokens(second.vector_source)
    # The keyword terms are worked out with the draft (a worker process does it too).
    assert second.keyword_terms == "pip install it" == second.index_terms()
    titled = Document(source="c.md", text="# Use\n\nCall getUserName() or os.path.join.")
    (only,) = build_drafts(titled, splitter=MarkdownSplitter(), context=TitleHeadingContext())
    assert only.keyword_terms == " ".join(index_tokens(only.text))
    assert replace(only, keyword_terms=None).index_terms() == only.keyword_terms


def test_drafts_are_deterministic_and_hash_the_vector_source() -> None:
    document = Document(source="a", text="same text")
    plain = PlainTextSplitter()
    first = build_drafts(document, splitter=plain, context=TitleHeadingContext())
    again = build_drafts(document, splitter=plain, context=TitleHeadingContext())
    titled = build_drafts(
        Document(source="a", text="same text", title="New title"),
        splitter=plain,
        context=TitleHeadingContext(),
    )
    assert first == again
    assert first[0].content_hash != titled[0].content_hash


def test_a_giant_title_raises_naming_the_chunk() -> None:
    document = Document(source="big.md", title="word " * 3000, text="one\n\n# H\ntwo")
    with pytest.raises(ChunkTooLargeError, match=r"chunk 0 of document 'big.md' is about"):
        build_drafts(document, splitter=MarkdownSplitter(), context=TitleHeadingContext())


def test_a_giant_heading_raises_naming_its_chunk() -> None:
    text = "fine\n\n# " + "heading " * 3000 + "\nbody"
    with pytest.raises(ChunkTooLargeError, match=r"chunk 1 .* at most 2,048"):
        build_drafts(
            Document(source="x", text=text),
            splitter=MarkdownSplitter(),
            context=TitleHeadingContext(),
        )


def test_max_input_tokens_is_honoured() -> None:
    document = Document(source="x", text="a few words here")
    with pytest.raises(ChunkTooLargeError):
        build_drafts(
            document,
            splitter=PlainTextSplitter(),
            context=TitleHeadingContext(),
            max_input_tokens=2,
        )


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("   ", EmptyDocumentError),
        ("# Only\n## Headings\n", EmptyDocumentError),
        ("bad \x00 byte", UndecodableTextError),
    ],
)
def test_bad_documents(text: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        build_drafts(
            Document(source="x", text=text),
            splitter=MarkdownSplitter(),
            context=TitleHeadingContext(),
        )
