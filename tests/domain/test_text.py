"""Text intake: decoding, character checks, line ends, emptiness, size, queries."""

from __future__ import annotations

import pytest

from asemantic.domain.text import clean_text, validate_query
from asemantic.errors import (
    ChunkTooLargeError,
    EmptyDocumentError,
    InvalidInputError,
    UndecodableTextError,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("hello", "hello"),
        (b"hello", "hello"),
        (b"\xef\xbb\xbfhello", "hello"),
        ("\ufeffhello", "hello"),
        ("a\r\nb\rc\nd", "a\nb\nc\nd"),
        (b"a\r\nb", "a\nb"),
        ("  keep  outer  space \n", "  keep  outer  space \n"),
        ("caf\u00e9 \u65e5\u672c \U0001f600 \u05e9\u05dc\u05d5\u05dd e\u0301", None),
        (bytearray(b"bytes-like"), "bytes-like"),
    ],
)
def test_clean_text_accepts_and_normalises(value: str | bytes, expected: str | None) -> None:
    result = clean_text(value)
    assert result == (value if expected is None else expected)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (b"abc\xffdef", "byte 0xff at byte offset 3"),
        (b"\xef\xbb\xbfab\xc3", "byte offset 5"),  # the offset counts the BOM
        (b"ok \xed\xa0\x80", "byte offset 3"),  # an encoded surrogate is not UTF-8
        (b"\xc0\xaf", "byte offset 0"),  # overlong encoding
    ],
)
def test_bad_utf8_names_the_byte_offset(value: bytes, fragment: str) -> None:
    with pytest.raises(UndecodableTextError, match="not valid UTF-8") as info:
        clean_text(value, what="file notes.md")
    assert fragment in str(info.value)
    assert "file notes.md" in str(info.value)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("ab\x00c", "NUL character at character offset 2 (line 1, column 3)"),
        (b"line1\nx\x00", "NUL character at character offset 7 (line 2, column 2)"),
        ("one\ntwo \ud800", "lone surrogate U+D800 at character offset 8 (line 2, column 5)"),
        ("\udfff", "lone surrogate U+DFFF at character offset 0"),
    ],
)
def test_nul_and_lone_surrogates_are_refused_with_a_location(
    value: str | bytes, fragment: str
) -> None:
    with pytest.raises(UndecodableTextError) as info:
        clean_text(value)
    assert fragment in str(info.value)


@pytest.mark.parametrize("value", ["", " ", "\n\r\n\t ", b"", b"\xef\xbb\xbf", b"  \r\n", "\ufeff"])
def test_empty_or_blank_text_is_refused(value: str | bytes) -> None:
    with pytest.raises(EmptyDocumentError):
        clean_text(value)


def test_size_guard_counts_characters() -> None:
    assert clean_text("x" * 10, max_chars=10) == "x" * 10
    with pytest.raises(InvalidInputError, match="11 characters long; the limit is 10"):
        clean_text("x" * 11, max_chars=10)
    # Four-byte characters: 10 characters fit though they take 40 bytes.
    emoji = "\U0001f600" * 10
    assert clean_text(emoji.encode(), max_chars=10) == emoji
    with pytest.raises(InvalidInputError, match="bytes long"):
        clean_text(b"x" * 44, max_chars=10)  # refused before decoding
    with pytest.raises(InvalidInputError, match="characters long"):
        clean_text(b"x" * 12, max_chars=10)


def test_non_text_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="must be str or bytes, not int"):
        clean_text(12)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        clean_text("x", max_chars=0)


def test_validate_query() -> None:
    assert validate_query("  what did we decide?\r\n") == "what did we decide?"
    with pytest.raises(EmptyDocumentError):
        validate_query(" \n ")
    with pytest.raises(UndecodableTextError, match="NUL"):
        validate_query("a\x00b")
    with pytest.raises(UndecodableTextError, match="surrogate"):
        validate_query("a\ud83d")
    with pytest.raises(InvalidInputError):
        validate_query(b"bytes")  # type: ignore[arg-type]


def test_validate_query_refuses_what_the_model_would_truncate() -> None:
    assert validate_query("word " * 10, max_tokens=20)
    with pytest.raises(ChunkTooLargeError, match="the model reads at most 20"):
        validate_query("word " * 30, max_tokens=20)
    with pytest.raises(ChunkTooLargeError, match="2,048"):
        validate_query("\u65e5" * 5000)
