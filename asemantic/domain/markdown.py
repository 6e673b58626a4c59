"""Recognising the blocks and headings of Markdown (and the paragraphs of plain text).

The splitters in :mod:`asemantic.domain.chunking` consume the stream this module
produces: :func:`scan_markdown` turns Markdown into blocks (prose paragraphs, code) and
headings, one line at a time; :func:`paragraphs` finds the blank-line separated blocks
of plain text. A block's offsets always start and end on a character that is not white
space, and every offset indexes the scanned text.

Decisions:

* Headings: ATX (``#`` to ``######``, up to three spaces of indentation) and setext
  (a single-line paragraph underlined with three or more ``=`` or ``-``; a list item
  or quote line above ``---`` is not a title). Titles are trimmed, optional closing
  ``#`` sequences are dropped and inner white space is collapsed; a title may be empty.
* Fenced code (``` and ~~~, closed by a fence of the same character at least as long,
  or by the end of the text) is a single block; ``#`` lines inside are code.
* YAML front matter (``---`` on the very first line, closed by ``---`` or ``...``) is
  kept, verbatim, as a code-like block: silently dropping text is worse than embedding
  a few metadata lines, and callers who want it gone can strip it (or lift it into
  ``Document.metadata``) before ingesting.
* The scanner expects text from :func:`asemantic.domain.text.clean_text` (LF only).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Block", "BlockKind", "Heading", "paragraphs", "scan_markdown", "skip_white"]

_Span = tuple[int, int]

_ATX = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*))?\Z")
_ATX_CLOSING = re.compile(r"(?:^|[ \t]+)#+[ \t]*\Z")
_SETEXT = re.compile(r" {0,3}(={3,}|-{3,})[ \t]*\Z")
_NOT_SETEXT_TITLE = re.compile(r" {0,3}(?:[-*+>]|\d{1,9}[.)])(?:[ \t]|\Z)")
_FENCE_OPEN = re.compile(r" {0,3}(?:(`{3,})[^`]*|(~{3,}).*)\Z")
_NON_WHITE = re.compile(r"\S")


class BlockKind(enum.Enum):
    """How a block is cut when it is too large: prose at sentences, code at lines."""

    PROSE = "prose"
    CODE = "code"


@dataclass(frozen=True, slots=True)
class Block:
    """A paragraph or a code block: ``text[start:end]``, trimmed of white space."""

    start: int
    end: int
    kind: BlockKind


@dataclass(frozen=True, slots=True)
class Heading:
    """A heading line: its level (1 to 6) and its title (empty for an empty heading)."""

    level: int
    title: str


def scan_markdown(text: str) -> Iterator[Block | Heading]:
    """The blocks and headings of Markdown ``text``, in document order."""
    return _MarkdownScanner(text).items()


# A line that may be a blank line, a fence, an ATX heading or a setext underline, found
# by its newline (a literal the regex engine finds at memchr speed); every other line
# is paragraph text, never looked at one by one.
_CANDIDATE = r"(?:[^\S\n]*(?=\n|\Z)| {0,3}(?:```|~~~|#{1,6}(?=[ \t\n]|\Z)|===|---))"
_NEXT_CANDIDATE = re.compile(r"\n" + _CANDIDATE)
_FIRST_CANDIDATE = re.compile(_CANDIDATE)
_FRONT_MATTER_END = re.compile(r"^(?:---|\.\.\.)[^\S\n]*$", re.MULTILINE)


class _MarkdownScanner:
    """Turns Markdown into a stream of blocks and headings.

    Only candidate lines (see ``_CANDIDATE``) are examined, with the same rules as a
    line-by-line walk: the lines between two candidates are paragraph text.
    """

    def __init__(self, text: str) -> None:
        self._text = text

    def _candidate(self, pos: int) -> int:
        """The start of the first candidate line at or after line start ``pos``."""
        text = self._text
        if _FIRST_CANDIDATE.match(text, pos):
            return pos
        found = _NEXT_CANDIDATE.search(text, pos)
        return found.start() + 1 if found else -1

    def _block(self, start: int, end: int, kind: BlockKind) -> Block:
        end = _rstrip(self._text, start, end)
        return Block(skip_white(self._text, start, end), end, kind)

    def items(self) -> Iterator[Block | Heading]:
        text, size = self._text, len(self._text)
        pos = 0
        front_matter = self._front_matter_end()
        if front_matter > 0:
            yield self._block(0, front_matter, BlockKind.CODE)
            pos = front_matter + 1
        para = -1  # where the open paragraph's first line starts
        while pos <= size:
            line = self._candidate(pos)
            if line != pos and para < 0:
                para = pos  # paragraph lines before the candidate (or the end)
            if line < 0:
                break
            end = text.find("\n", line)
            end = size if end < 0 else end
            pos = end + 1
            content = text[line:end]
            fence = _FENCE_OPEN.match(content)
            atx = None if fence else _ATX.match(content)
            blank = not content.strip()
            if (blank or fence or atx) and para >= 0:
                yield self._block(para, line - 1, BlockKind.PROSE)
                para = -1
            if fence:
                last = self._fence_end(pos, fence.group(1) or fence.group(2))
                yield self._block(line, last, BlockKind.CODE)
                pos = last + 1
            elif atx:
                yield Heading(len(atx.group(1)), _atx_title(atx.group(2) or ""))
            elif para >= 0 and self._single_line_title(para, line, content):
                level = 1 if content.strip().startswith("=") else 2
                yield Heading(level, " ".join(text[para : line - 1].split()))
                para = -1
            elif para < 0 and not blank:
                para = line
        if para >= 0:
            yield self._block(para, size, BlockKind.PROSE)

    def _single_line_title(self, para: int, line: int, content: str) -> bool:
        """Whether ``content`` (the line at ``line``) underlines a one-line paragraph
        starting at ``para``, making it a setext heading."""
        if line == 0 or self._text.rfind("\n", 0, line - 1) + 1 != para:
            return False
        title = self._text[para : line - 1]
        return bool(_SETEXT.match(content)) and not _NOT_SETEXT_TITLE.match(title)

    def _front_matter_end(self) -> int:
        """The end of the YAML front matter's closing line (0 when there is none)."""
        text = self._text
        first = text.find("\n")
        if first < 0 or text[:first].rstrip() != "---":
            return 0
        closing = _FRONT_MATTER_END.search(text, first + 1)
        if closing is None:
            return 0
        end = text.find("\n", closing.start())
        return len(text) if end < 0 else end

    def _fence_end(self, pos: int, marker: str) -> int:
        """The end of the closing fence's line, or of the text when it never closes."""
        closing = re.compile(
            rf"^ {{0,3}}{re.escape(marker[0])}{{{len(marker)},}}[ \t]*$", re.MULTILINE
        )
        found = closing.search(self._text, pos) if pos <= len(self._text) else None
        if found is None:
            return len(self._text)
        end = self._text.find("\n", found.start())
        return len(self._text) if end < 0 else end


def _atx_title(raw: str) -> str:
    return " ".join(_ATX_CLOSING.sub("", raw.strip()).split())


def _lines(text: str) -> Iterator[_Span]:
    """The (start, end) offsets of every line, newline excluded."""
    start = 0
    while True:
        newline = text.find("\n", start)
        if newline < 0:
            yield start, len(text)
            return
        yield start, newline
        start = newline + 1


def paragraphs(text: str) -> Iterator[_Span]:
    """Runs of non-blank lines, as (start, end) with trailing white space excluded."""
    first = last = -1
    for start, end in _lines(text):
        if text[start:end].strip():
            first = start if first < 0 else first
            last = end
        elif first >= 0:
            yield skip_white(text, first, last), _rstrip(text, first, last)
            first = -1
    if first >= 0:
        yield skip_white(text, first, last), _rstrip(text, first, last)


def _rstrip(text: str, start: int, end: int) -> int:
    while end > start and text[end - 1].isspace():
        end -= 1
    return end


def skip_white(text: str, pos: int, end: int) -> int:
    """The offset of the first non-space character in ``text[pos:end]`` (else ``end``)."""
    match = _NON_WHITE.search(text, pos, end)
    return match.start() if match else end
