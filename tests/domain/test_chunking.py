"""Splitters: budgets, no lost text, Markdown structure, hard cases."""

from __future__ import annotations

import itertools
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asemantic.domain.chunking import (
    MarkdownSplitter,
    PlainTextSplitter,
    Section,
    Splitter,
    TextKind,
    splitter_for,
)
from asemantic.domain.tokens import estimate_tokens
from asemantic.errors import InvalidInputError


def nonws(text: str) -> str:
    return "".join(text.split())


def check_invariants(splitter: MarkdownSplitter | PlainTextSplitter, text: str) -> list[Section]:
    """Budget, order, no blank chunks, verbatim slices; returns the sections."""
    sections = splitter.split(text)
    position = 0
    for section in sections:
        assert estimate_tokens(section.text) <= splitter.max_tokens
        assert section.text.strip() == section.text != ""
        found = text.find(section.text, position)
        assert found >= 0, "every section is a slice of the input, in order"
        position = found + len(section.text)
    return sections


# -- property tests ---------------------------------------------------------------------

INTERESTING = st.sampled_from(
    [
        *"#`~-=*>.!? \n\n\t",
        *["\u3002", "\u00e9", "e\u0301", "\u65e5\u672c", "\U0001f600", "\u200d", "\u05e9", "\x7f"],
        *["```", "~~~", "# ", "## ", "---", "===", "\n\n", "1. ", "word", "Sentence. "],
    ]
)
ANY_CHAR = st.characters(codec="utf-8", exclude_characters="\x00\r")
TEXTS = st.lists(st.one_of(INTERESTING, ANY_CHAR), max_size=400).map("".join)
BUDGETS = st.integers(min_value=8, max_value=60).flatmap(
    lambda target: st.tuples(st.just(target), st.integers(min_value=target, max_value=150))
)


@settings(max_examples=300, deadline=None)
@given(text=TEXTS, budget=BUDGETS)
def test_plain_splitter_keeps_budget_and_all_content(text: str, budget: tuple[int, int]) -> None:
    splitter = PlainTextSplitter(target_tokens=budget[0], max_tokens=budget[1])
    sections = check_invariants(splitter, text)
    assert nonws("".join(s.text for s in sections)) == nonws(text)
    assert all(s.heading_path == () for s in sections)


@settings(max_examples=300, deadline=None)
@given(text=TEXTS, budget=BUDGETS)
def test_markdown_splitter_keeps_budget_and_order(text: str, budget: tuple[int, int]) -> None:
    splitter = MarkdownSplitter(target_tokens=budget[0], max_tokens=budget[1])
    sections = check_invariants(splitter, text)
    joined, source = nonws("".join(s.text for s in sections)), iter(nonws(text))
    assert all(char in source for char in joined), "chunk content is a subsequence"


TITLES = st.from_regex(r"[A-Za-z0-9\u00e9\u65e5][A-Za-z0-9 .,!?\u00e9\u65e5]{0,20}", fullmatch=True)
PARA_LINES = st.from_regex(
    r"[a-z\u00e9\u05d0\u65e5][a-z0-9 .,!?\u00e9\u05d0\u65e5\U0001f600]{0,60}", fullmatch=True
)
CODE_LINES = st.from_regex(r"[#a-z =.(){}:]{0,30}", fullmatch=True)
PARAGRAPHS = st.lists(PARA_LINES, min_size=1, max_size=6).map("\n".join)
BLOCKS = st.one_of(
    st.tuples(st.just("h"), st.integers(1, 6), TITLES),
    st.tuples(
        st.just("p"), st.just(0), st.lists(PARA_LINES, min_size=1, max_size=6).map("\n".join)
    ),
    st.tuples(
        st.sampled_from(["```", "~~~"]), st.just(0), st.lists(CODE_LINES, max_size=8).map("\n".join)
    ),
)


Block = tuple[str, int, str]  # kind ("h", "p" or a fence), heading level, text


def render(blocks: list[Block]) -> tuple[str, list[tuple[tuple[str, ...], str]]]:
    """Markdown text, and the expected (heading path, body) of each block with a body."""
    parts: list[str] = []
    expected: list[tuple[tuple[str, ...], str]] = []
    stack: list[tuple[int, str]] = []
    for kind, level, content in blocks:
        if kind == "h":
            parts.append("#" * level + " " + content)
            stack = [entry for entry in stack if entry[0] < level]
            if content.strip():
                stack.append((level, " ".join(content.split())))
            continue
        body = content if kind == "p" else f"{kind}info\n{content}\n{kind}"
        parts.append(body)
        expected.append((tuple(title for _, title in stack), body))
    return "\n\n".join(parts), expected


def merge_by_path(pairs: list[tuple[tuple[str, ...], str]]) -> list[tuple[tuple[str, ...], str]]:
    merged: list[tuple[tuple[str, ...], str]] = []
    for path, body in pairs:
        if merged and merged[-1][0] == path:
            merged[-1] = (path, merged[-1][1] + nonws(body))
        else:
            merged.append((path, nonws(body)))
    return [pair for pair in merged if pair[1]]


@settings(max_examples=300, deadline=None)
@given(blocks=st.lists(BLOCKS, max_size=14), budget=BUDGETS)
def test_markdown_structure_is_followed(blocks: list[Block], budget: tuple[int, int]) -> None:
    text, expected = render(blocks)
    splitter = MarkdownSplitter(target_tokens=budget[0], max_tokens=budget[1])
    sections = check_invariants(splitter, text)
    got = merge_by_path([(s.heading_path, s.text) for s in sections])
    assert got == merge_by_path(expected)
    for path, body in expected:
        if body.startswith(("```", "~~~")) and estimate_tokens(body) <= splitter.max_tokens:
            assert any(body in s.text for s in sections if s.heading_path == path)


# -- Markdown structure, table-driven ------------------------------------------------------

MARKDOWN_CASES = [
    (
        "# A\nalpha\n## B\nbeta\n### C\ngamma\n## D\ndelta\n# E\neps",
        [
            (("A",), "alpha"),
            (("A", "B"), "beta"),
            (("A", "B", "C"), "gamma"),
            (("A", "D"), "delta"),
            (("E",), "eps"),
        ],
    ),
    ("# A\n### Deep\nx\n## Mid\ny", [(("A", "Deep"), "x"), (("A", "Mid"), "y")]),
    (
        "intro\n\n# A #\nbody\n  ## B ##  \nmore",
        [((), "intro"), (("A",), "body"), (("A", "B"), "more")],
    ),
    ("# A\n\n## Empty\n\n## Full\ntext", [(("A", "Full"), "text")]),
    ("#hashtag is text\n####### seven is text", [((), "#hashtag is text\n####### seven is text")]),
    ("    # indented code, not a heading", [((), "# indented code, not a heading")]),
    ("# A\n```\n# not a heading\n```\nafter", [(("A",), "```\n# not a heading\n```\nafter")]),
    (
        "~~~~md\n# no\n~~~\nstill code\n~~~~\n# Real\nx",
        [((), "~~~~md\n# no\n~~~\nstill code\n~~~~"), (("Real",), "x")],
    ),
    ("```\n# unclosed\nruns to the end", [((), "```\n# unclosed\nruns to the end")]),
    ("Title\n=====\nbody\n\nSub\n---\nmore", [(("Title",), "body"), (("Title", "Sub"), "more")]),
    ("- item\n---\ntext", [((), "- item\n---\ntext")]),
    ("two lines\nof para\n---", [((), "two lines\nof para\n---")]),
    (
        "---\ntitle: x\n# comment\n---\n# Head\nbody",
        [((), "---\ntitle: x\n# comment\n---"), (("Head",), "body")],
    ),
    ("---\nnot closed\n# Head\nbody", [((), "---\nnot closed"), (("Head",), "body")]),
    ("# A\ntext\n#\nafter empty heading", [(("A",), "text"), ((), "after empty heading")]),
    ("# Only\n## Headings", []),
]


@pytest.mark.parametrize(("text", "expected"), MARKDOWN_CASES)
def test_markdown_sections(text: str, expected: list[tuple[tuple[str, ...], str]]) -> None:
    sections = MarkdownSplitter().split(text)
    assert [(s.heading_path, s.text) for s in sections] == expected


def test_paragraphs_are_packed_up_to_the_target() -> None:
    paragraphs = [f"Paragraph number {i} says a few words." for i in range(40)]
    splitter = PlainTextSplitter(target_tokens=60, max_tokens=200)
    sections = check_invariants(splitter, "\n\n".join(paragraphs))
    assert 1 < len(sections) < len(paragraphs)
    assert all(estimate_tokens(s.text) <= 60 for s in sections)
    # Greedy: no section could have taken the next paragraph.
    for section, following in itertools.pairwise(sections):
        first_next = following.text.split("\n\n")[0]
        assert estimate_tokens(section.text + "\n\n" + first_next) > 60


def test_a_block_between_target_and_max_stays_whole() -> None:
    code = "```\n" + "\n".join(f"line_{i} = {i}" for i in range(30)) + "\n```"
    assert 50 < estimate_tokens(code) <= 400
    sections = MarkdownSplitter(target_tokens=50, max_tokens=400).split(
        f"before\n\n{code}\n\nafter"
    )
    assert [s.text for s in sections] == ["before", code, "after"]


def test_an_oversized_code_block_is_cut_at_line_ends() -> None:
    lines = [f"value_{i} = compute({i})" for i in range(200)]
    code = "```py\n" + "\n".join(lines) + "\n```"
    sections = check_invariants(MarkdownSplitter(target_tokens=40, max_tokens=100), code)
    assert len(sections) > 1
    for section in sections:
        for line in section.text.split("\n"):
            assert line in lines or line in ("```py", "```")


def test_an_oversized_paragraph_is_cut_at_sentence_ends() -> None:
    sentences = [f"Sentence {i} has exactly these words." for i in range(100)]
    sections = check_invariants(
        PlainTextSplitter(target_tokens=40, max_tokens=80), " ".join(sentences)
    )
    assert len(sections) > 1
    assert all(s.text.endswith(".") for s in sections)
    assert nonws(" ".join(s.text for s in sections)) == nonws(" ".join(sentences))


def test_cjk_sentences_are_cut_at_full_stops() -> None:
    text = "\u65e5\u672c\u8a9e\u306e\u6587\u7ae0\u3067\u3059\u3002" * 200
    sections = check_invariants(PlainTextSplitter(target_tokens=40, max_tokens=80), text)
    assert len(sections) > 1
    assert all(s.text.endswith("\u3002") for s in sections)
    assert "".join(s.text for s in sections) == text


@pytest.mark.parametrize(
    "word", ["x" * 20_000, "\u00e9" * 5_000, "\U0001f600" * 3_000, "ab-cd/" * 3000]
)
def test_a_huge_single_word_is_hard_split_without_loss(word: str) -> None:
    splitter = PlainTextSplitter(target_tokens=100, max_tokens=300)
    sections = check_invariants(splitter, f"start {word} end")
    assert nonws("".join(s.text for s in sections)) == nonws(f"start {word} end")
    assert all(estimate_tokens(s.text) <= 100 for s in sections)


@pytest.mark.parametrize(
    "cluster",
    [
        "e\u0301",  # combining acute
        "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # ZWJ family
        "\U0001f44d\U0001f3fd",  # skin tone
        "\u05e9\u05c1\u05b8",  # Hebrew with points (RTL)
        "\u0915\u094d\u0937",  # Devanagari conjunct
    ],
)
def test_hard_cuts_avoid_splitting_clusters(cluster: str) -> None:
    text = cluster * 400
    sections = check_invariants(PlainTextSplitter(target_tokens=16, max_tokens=16), text)
    assert "".join(s.text for s in sections) == text
    for section in sections:
        first = section.text[0]
        assert unicodedata.category(first) not in ("Mn", "Mc", "Me")
        assert first not in "\u200d\U0001f3fd" and section.text[-1] != "\u200d"


def test_rtl_and_mixed_scripts_survive() -> None:
    text = "\n\n".join(
        [
            "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd.",
            "\u0645\u0631\u062d\u0628\u0627",
            "mixed \u65e5\u672c abc",
        ]
        * 50
    )
    sections = check_invariants(PlainTextSplitter(target_tokens=30, max_tokens=60), text)
    assert nonws("".join(s.text for s in sections)) == nonws(text)


def test_blank_input_gives_no_sections() -> None:
    assert PlainTextSplitter().split("") == []
    assert MarkdownSplitter().split(" \n\n\t") == []


# -- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("markdown", MarkdownSplitter),
        ("MD", MarkdownSplitter),
        (TextKind.PLAIN, PlainTextSplitter),
        ("text", PlainTextSplitter),
        ("notes.md", MarkdownSplitter),
        ("docs/README.Markdown", MarkdownSplitter),
        (Path("a/b.mdx"), MarkdownSplitter),
        ("book.txt", PlainTextSplitter),
        (Path("no_suffix"), PlainTextSplitter),
        ("data.rst", PlainTextSplitter),
    ],
)
def test_splitter_for(kind: str | Path, expected: type[Splitter]) -> None:
    splitter = splitter_for(kind, target_tokens=100, max_tokens=200)
    assert type(splitter) is expected
    assert (splitter.target_tokens, splitter.max_tokens) == (100, 200)


def test_budgets_are_checked_and_fingerprinted() -> None:
    with pytest.raises(InvalidInputError):
        PlainTextSplitter(target_tokens=4)
    with pytest.raises(InvalidInputError):
        MarkdownSplitter(target_tokens=500, max_tokens=400)
    assert MarkdownSplitter().fingerprint() == "markdown/1 target=400 max=1500"
    assert PlainTextSplitter(target_tokens=10, max_tokens=20).fingerprint() != (
        PlainTextSplitter(target_tokens=10, max_tokens=21).fingerprint()
    )
    assert "MarkdownSplitter(target_tokens=400" in repr(MarkdownSplitter())
