"""Reference copy, for differential tests of asemantic.domain.markdown.

Recognising the blocks and headings of Markdown (and the paragraphs of plain text).

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


class _MarkdownScanner:
    """Turns Markdown into a stream of blocks and headings, one line at a time."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._lines = list(_lines(text))

    def _line(self, index: int) -> str:
        start, end = self._lines[index]
        return self._text[start:end]

    def _block(self, first: int, stop: int, kind: BlockKind) -> Block:
        end = _rstrip(self._text, self._lines[first][0], self._lines[stop - 1][1])
        return Block(skip_white(self._text, self._lines[first][0], end), end, kind)

    def items(self) -> Iterator[Block | Heading]:
        count = len(self._lines)
        index = self._front_matter_lines()
        if index:
            yield self._block(0, index, BlockKind.CODE)
        para: int | None = None  # the first line of the open paragraph
        while index < count:
            line = self._line(index)
            fence = _FENCE_OPEN.match(line)
            atx = None if fence else _ATX.match(line)
            if not line.strip() or fence or atx:
                if para is not None:
                    yield self._block(para, index, BlockKind.PROSE)
                para = None
            if fence:
                last = self._fence_end(index, fence.group(1) or fence.group(2))
                yield self._block(index, last + 1, BlockKind.CODE)
                index = last
            elif atx:
                yield Heading(len(atx.group(1)), _atx_title(atx.group(2) or ""))
            elif para is not None and para == index - 1 and self._underlines(index):
                level = 1 if line.strip().startswith("=") else 2
                yield Heading(level, " ".join(self._line(para).split()))
                para = None
            elif para is None and line.strip():
                para = index
            index += 1
        if para is not None:
            yield self._block(para, count, BlockKind.PROSE)

    def _underlines(self, index: int) -> bool:
        """Whether line ``index`` makes the single line above it a setext heading."""
        title = self._line(index - 1)
        return bool(_SETEXT.match(self._line(index))) and not _NOT_SETEXT_TITLE.match(title)

    def _front_matter_lines(self) -> int:
        """How many lines the YAML front matter takes (0 when there is none)."""
        if self._line(0).rstrip() != "---":
            return 0
        for index in range(1, len(self._lines)):
            if self._line(index).rstrip() in ("---", "..."):
                return index + 1
        return 0

    def _fence_end(self, first: int, marker: str) -> int:
        """The closing fence's line, or the last line when the fence never closes."""
        closing = re.compile(rf" {{0,3}}{re.escape(marker[0])}{{{len(marker)},}}[ \t]*\Z")
        for index in range(first + 1, len(self._lines)):
            if closing.match(self._line(index)):
                return index
        return len(self._lines) - 1


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
