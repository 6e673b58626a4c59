"""The title lookup reads the first lines of a document without splitting all of it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from asemantic.ingestion import _first_lines, _title_of

PARTS = st.sampled_from(["a", "b" * 3000, "\n", "\r\n", "\u2028", "\x1c", "# Title", " "])


@given(st.lists(PARTS, max_size=80).map("".join), st.sampled_from([0, 1, 5, 50]))
@settings(max_examples=300, deadline=None)
def test_first_lines_are_the_first_of_splitlines(text: str, count: int) -> None:
    assert _first_lines(text, count) == text.splitlines()[:count]


def test_the_title_is_the_first_level_one_heading_within_fifty_lines() -> None:
    assert _title_of("x\n" * 10_000 + "# Late", "markdown") is None
    assert _title_of("intro\n\n# Guide \nbody\n" + "y" * 100_000, "markdown") == "Guide"
