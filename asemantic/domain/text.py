"""Checking and normalising the text that comes in: documents and queries.

Everything asemantic embeds passes through here first, so the rest of the library may
assume clean text: a ``str`` with no lone surrogates, no NUL characters, ``\\n`` line
ends only, and at least one character that is not white space.

Decisions:

* Bytes must be **strict UTF-8**. Guessing an encoding (Latin-1, cp1252...) would turn
  a mistake into silently wrong vectors, so undecodable input is refused with the byte
  offset of the first bad byte. One leading UTF-8 BOM is dropped (editors on Windows
  add it); a leading U+FEFF in a ``str`` is dropped too, for the same reason.
* Line ends are normalised (CRLF and lone CR become LF) so that the same file saved on
  two systems hashes the same. Nothing else is changed: no Unicode normalisation, no
  trimming, so the stored chunk text is the text the user gave us.
* NUL characters are refused rather than removed: they usually mean a binary file was
  passed by mistake, and SQLite text handling truncates at NUL in places.
* A size guard (50 million characters by default) stops a wrong file from being
  chunked into tens of thousands of chunks. It is checked before decoding when the
  byte count alone proves the text too long (UTF-8 needs at most 4 bytes a character).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable

from asemantic.domain.space import MAX_INPUT_TOKENS
from asemantic.domain.tokens import estimate_tokens
from asemantic.errors import (
    ChunkTooLargeError,
    EmptyDocumentError,
    InvalidInputError,
    UndecodableTextError,
)

__all__ = ["DEFAULT_MAX_CHARS", "check_name", "clean_text", "validate_query"]

DEFAULT_MAX_CHARS = 50_000_000
"""The default ceiling on a document's length, in characters (about 50 MB of text)."""

_BAD_CHAR = re.compile("[\x00\ud800-\udfff]")
_NON_WHITE = re.compile(r"\S")
_BOM = "\ufeff"


def clean_text(
    value: str | bytes, *, what: str = "document", max_chars: int = DEFAULT_MAX_CHARS
) -> str:
    """Decode and check ``value``; return it with LF line ends.

    ``what`` names the input in error messages ("document", "file notes.md"...).

    Raises :class:`UndecodableTextError` (bad UTF-8, NUL, lone surrogate; the message
    says where), :class:`EmptyDocumentError` (empty or white space only) and
    :class:`InvalidInputError` (not text, or longer than ``max_chars``).
    """
    if max_chars < 1:
        raise InvalidInputError("max_chars must be at least 1")
    if isinstance(value, bytes | bytearray | memoryview):
        text = _decode(bytes(value), what=what, max_chars=max_chars)
    elif isinstance(value, str):
        text = value.removeprefix(_BOM)
    else:
        raise InvalidInputError(f"{what} must be str or bytes, not {type(value).__name__}")
    if len(text) > max_chars:
        raise InvalidInputError(
            f"{what} is {len(text):,} characters long; the limit is {max_chars:,}"
        )
    _refuse_bad_characters(text, what=what)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if _NON_WHITE.search(text) is None:
        raise EmptyDocumentError(f"{what} is empty or holds only white space")
    return text


def validate_query(
    text: str,
    *,
    max_tokens: int = MAX_INPUT_TOKENS,
    as_sent: Callable[[str], str] | None = None,
) -> str:
    """Check a search query; return it with LF line ends and outer white space trimmed.

    Trimming is safe here (unlike for documents) because a query is never stored or
    shown back. A query the model would truncate raises :class:`ChunkTooLargeError`
    rather than being cut: the tail of a query may be the part that matters.
    ``as_sent`` turns the query into the text the model reads (a task prefix added):
    the limit is checked on that.
    """
    if not isinstance(text, str):
        raise InvalidInputError(f"query must be str, not {type(text).__name__}")
    _refuse_bad_characters(text, what="query")
    query = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    if not query:
        raise EmptyDocumentError("query is empty or holds only white space")
    estimate = estimate_tokens(as_sent(query) if as_sent is not None else query)
    if estimate > max_tokens:
        raise ChunkTooLargeError(
            f"query is about {estimate:,} tokens (a safe-side estimate); "
            f"the model reads at most {max_tokens:,}"
        )
    return query


def check_name(value: object, *, what: str) -> str:
    """Check a short identifying string (a source, a title, a filter value).

    It must be a ``str`` with something besides white space, and no NUL character or
    lone surrogate (SQLite could not store it faithfully).
    """
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a string, not {type(value).__name__}")
    _refuse_bad_characters(value, what=what)
    if not value.strip():
        raise InvalidInputError(f"{what} must not be empty")
    return value


def _decode(data: bytes, *, what: str, max_chars: int) -> str:
    if len(data) > 4 * max_chars + len(codecs.BOM_UTF8):
        raise InvalidInputError(
            f"{what} is {len(data):,} bytes long; the limit is {max_chars:,} characters"
        )
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = exc.start + skip  # counted in the bytes the caller gave us
        bad = data[offset : offset + 1].hex()
        raise UndecodableTextError(
            f"{what} is not valid UTF-8: byte 0x{bad} at byte offset {offset} "
            f"({exc.reason}); convert it to UTF-8 first"
        ) from None


def _refuse_bad_characters(text: str, *, what: str) -> None:
    if "\x00" not in text:
        if text.isascii():
            return  # the common case, at memchr speed (an ASCII str has no surrogate)
        try:
            text.encode("utf-8")  # a C loop; only a lone surrogate makes it fail
        except UnicodeEncodeError:
            pass
        else:
            return
    match = _BAD_CHAR.search(text)
    if match is None:
        return
    offset = match.start()
    char = match.group()
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    kind = "a NUL character" if char == "\x00" else f"a lone surrogate U+{ord(char):04X}"
    raise UndecodableTextError(
        f"{what} holds {kind} at character offset {offset} (line {line}, column {column})"
    )
