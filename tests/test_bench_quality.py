"""The quality benchmark's ground truth is built as its docstring says."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.bench_quality import (
    Document,
    _score,
    corpus,
    identifier_queries,
    paraphrase_queries,
    reword,
)

SOURCE = '''"""A module about parsing things for the benchmark."""


def parse_header(line):
    """Split one header line into its name and value; see split_pairs."""


def split_pairs(text):
    """Return the pairs of a text, as parse_header reads them, in order."""


class Reader:
    """Read the records of an open file, one by one, until it ends."""

    def next_record(self):
        """Return the next record of the file, or None at its end."""

    def _hidden(self):
        """A private method is never a document of the corpus at all."""
'''


@pytest.fixture
def docs(tmp_path: Path) -> list[Document]:
    (tmp_path / "sample.py").write_text(SOURCE)
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "skipped.py").write_text(SOURCE)
    return corpus(100, root=tmp_path)


def test_the_corpus_holds_public_docstrings_named_by_qualified_name(docs: list[Document]) -> None:
    assert [d.source for d in docs] == [
        "stdlib/sample",
        "stdlib/sample.parse_header",
        "stdlib/sample.split_pairs",
        "stdlib/sample.Reader",
        "stdlib/sample.Reader.next_record",
    ]
    assert docs[1].text.startswith("sample.parse_header\n\nSplit one header line")


def test_identifier_queries_are_mentioned_tokens_with_their_holders(
    docs: list[Document],
) -> None:
    queries = {q.text: q.relevant for q in identifier_queries(docs, 10)}
    assert queries == {
        "split_pairs": {"stdlib/sample.parse_header", "stdlib/sample.split_pairs"},
        "parse_header": {"stdlib/sample.parse_header", "stdlib/sample.split_pairs"},
    }


def test_paraphrases_reword_a_unique_summary_line(docs: list[Document]) -> None:
    assert reword("Return the next record of the file, or None at its end.") == (
        "document none end give back next record"
    )
    by_source = {next(iter(q.relevant)): q.text for q in paraphrase_queries(docs, 10)}
    assert by_source["stdlib/sample.Reader"] == "one one until ends load records launch document"
    assert "stdlib/sample" in by_source


def test_recall_and_mrr_count_distinct_documents() -> None:
    assert _score(["a", "a", "b", "c"], frozenset({"b", "z"})) == (0.5, 0.5)
    assert _score(["x"], frozenset({"b"})) == (0.0, 0.0)
