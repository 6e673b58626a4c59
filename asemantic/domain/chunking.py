"""Splitting documents into sections small enough to embed.

Two splitters share one engine: :class:`MarkdownSplitter` follows headings and keeps
code fences whole; :class:`PlainTextSplitter` only knows paragraphs. Both promise:

* every section's :func:`~asemantic.domain.tokens.estimate_tokens` is at most
  ``max_tokens`` (the estimate is conservative, so the model never truncates);
* nothing is dropped or reordered: each section's text is a verbatim slice of the
  input (without surrounding white space), the slices come in order, and what lies
  between them is white space or (for Markdown) heading lines, whose titles live on in
  ``heading_path``.

Decisions:

* Paragraphs (blank-line separated blocks) are packed greedily into one section while
  the estimate stays within ``target_tokens``; a block between ``target_tokens`` and
  ``max_tokens`` stays whole. A block larger than ``max_tokens`` is cut into pieces of
  at most ``target_tokens``: prose at sentence ends (and line ends), code at line ends;
  then both at white space, then every few characters (never inside a combining
  sequence when that can be avoided).
* Heading lines are not part of any section's text: the heading path carries them (and
  the context strategy puts it into the text that is embedded). A heading with no body
  yields no section; its title still appears in its subsections' paths.
* Which lines are headings, fenced code or YAML front matter is decided by
  :mod:`asemantic.domain.markdown`. A heading of level *n* closes every open heading
  of level *n* or deeper; levels may be skipped; an empty heading closes headings but
  adds no title. Fenced code is one code block; front matter is kept, verbatim, as a
  code-like block of the first section.
* The splitters expect text from :func:`asemantic.domain.text.clean_text` (LF only).
"""

from __future__ import annotations

import enum
import itertools
import os
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from types import MappingProxyType
from typing import Protocol

from asemantic.domain.markdown import (
    Block,
    BlockKind,
    Heading,
    paragraphs,
    scan_markdown,
    skip_white,
)
from asemantic.domain.tokens import TokenCounter
from asemantic.errors import InvalidInputError

__all__ = [
    "MIN_BUDGET_TOKENS",
    "MarkdownSplitter",
    "PlainTextSplitter",
    "Section",
    "Splitter",
    "TextKind",
    "splitter_for",
]

MIN_BUDGET_TOKENS = 8
"""The smallest budget a splitter accepts (one character may cost two tokens)."""

_Unit = tuple[int, int, int]  # start, end, token estimate (a safe upper bound)
_Bounds = Callable[[str, int, int, int], list[int]]

_JOINERS = frozenset("\u200d\u034f")


@dataclass(frozen=True, slots=True, kw_only=True)
class Section:
    """A piece of a document to embed, with the headings it sits under."""

    text: str
    heading_path: tuple[str, ...] = ()
    tokens: int | None = field(default=None, compare=False, repr=False)
    """``estimate_tokens(text)`` when the splitter knew it (the built-in ones do)."""


class Splitter(Protocol):
    """What :func:`asemantic.domain.context.build_drafts` needs from a splitter."""

    def split(self, text: str) -> list[Section]: ...

    def fingerprint(self) -> str: ...


class TextKind(enum.StrEnum):
    """Which splitter suits a text."""

    MARKDOWN = "markdown"
    PLAIN = "plain"


class _BaseSplitter:
    __slots__ = ("_max", "_target")
    _name = "base"

    def __init__(self, *, target_tokens: int = 400, max_tokens: int = 1500) -> None:
        if target_tokens < MIN_BUDGET_TOKENS:
            raise InvalidInputError(f"target_tokens must be at least {MIN_BUDGET_TOKENS}")
        if max_tokens < target_tokens:
            raise InvalidInputError("max_tokens must be at least target_tokens")
        self._target = target_tokens
        self._max = max_tokens

    @property
    def target_tokens(self) -> int:
        return self._target

    @property
    def max_tokens(self) -> int:
        return self._max

    def fingerprint(self) -> str:
        """Names the splitter and its budgets; part of the document hash."""
        return f"{self._name}/1 target={self._target} max={self._max}"

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(target_tokens={self._target}, max_tokens={self._max})"

    def split(self, text: str) -> list[Section]:
        """Cut ``text`` into sections (empty sections are skipped)."""
        sections: list[Section] = []
        counter = TokenCounter(text)
        open_headings: tuple[Heading, ...] = ()
        blocks: list[Block] = []
        for item in self._items(text):
            if isinstance(item, Block):
                blocks.append(item)
                continue
            path = tuple(heading.title for heading in open_headings)
            sections.extend(self._pack(counter, text, blocks, path))
            blocks = []
            # A heading closes every open heading of its level or deeper.
            open_headings = tuple(h for h in open_headings if h.level < item.level)
            if item.title:
                open_headings += (item,)
        path = tuple(heading.title for heading in open_headings)
        sections.extend(self._pack(counter, text, blocks, path))
        return sections

    def _items(self, text: str) -> Iterator[Block | Heading]:
        raise NotImplementedError

    def _pack(
        self, counter: TokenCounter, text: str, blocks: list[Block], path: tuple[str, ...]
    ) -> list[Section]:
        """Greedy packing of the section's units up to the target budget.

        Units start and end with a character that is not white space, and the gaps
        between them are white space, so a joined text's estimate is at most the sum of
        its parts': the sums are safe bounds and no text is estimated twice.
        """
        out: list[Section] = []
        start = end = tokens = -1
        for unit_start, unit_end, unit_tokens in self._units(counter, text, blocks):
            if start >= 0:
                joined = tokens + counter.span(end, unit_start) + unit_tokens
                if joined <= self._target:
                    end, tokens = unit_end, joined
                    continue
                out.append(_section(counter, text, start, end, path))
            start, end, tokens = unit_start, unit_end, unit_tokens
        if start >= 0:
            out.append(_section(counter, text, start, end, path))
        return out

    def _units(self, counter: TokenCounter, text: str, blocks: list[Block]) -> Iterator[_Unit]:
        for block in blocks:
            unit = (block.start, block.end, counter.span(block.start, block.end))
            if unit[2] <= self._max:
                yield unit
            else:
                levels = _CODE_LEVELS if block.kind is BlockKind.CODE else _PROSE_LEVELS
                yield from _split_block(counter, text, unit, self._target, levels)


class PlainTextSplitter(_BaseSplitter):
    """Paragraph-aware splitting of plain text; every section has an empty heading path."""

    __slots__ = ()
    _name = "plain"

    def _items(self, text: str) -> Iterator[Block | Heading]:
        for start, end in paragraphs(text):
            yield Block(start, end, BlockKind.PROSE)


class MarkdownSplitter(_BaseSplitter):
    """Heading-aware splitting of Markdown (see :mod:`asemantic.domain.markdown`)."""

    __slots__ = ()
    _name = "markdown"

    def _items(self, text: str) -> Iterator[Block | Heading]:
        return scan_markdown(text)


def splitter_for(
    kind_or_path: str | os.PathLike[str], *, target_tokens: int = 400, max_tokens: int = 1500
) -> MarkdownSplitter | PlainTextSplitter:
    """A splitter for a kind (``"markdown"``/``"md"``, ``"plain"``/``"text"``) or a path.

    Paths ending in ``.md``, ``.markdown``, ``.mdown``, ``.mkd``, ``.mkdn`` or ``.mdx``
    get the Markdown splitter; every other path gets the plain-text one.
    """
    kind = _kind_of(kind_or_path)
    cls = MarkdownSplitter if kind is TextKind.MARKDOWN else PlainTextSplitter
    return cls(target_tokens=target_tokens, max_tokens=max_tokens)


_KIND_ALIASES: Mapping[str, TextKind] = MappingProxyType(
    {"markdown": TextKind.MARKDOWN, "md": TextKind.MARKDOWN}
    | {"plain": TextKind.PLAIN, "text": TextKind.PLAIN, "txt": TextKind.PLAIN}
)
_MARKDOWN_SUFFIXES = frozenset({".md", ".markdown", ".mdown", ".mkd", ".mkdn", ".mdx"})


def _kind_of(kind_or_path: str | os.PathLike[str]) -> TextKind:
    if isinstance(kind_or_path, str) and kind_or_path.strip().lower() in _KIND_ALIASES:
        return _KIND_ALIASES[kind_or_path.strip().lower()]
    suffix = PurePath(os.fspath(kind_or_path)).suffix.lower()
    return TextKind.MARKDOWN if suffix in _MARKDOWN_SUFFIXES else TextKind.PLAIN


def _section(
    counter: TokenCounter, text: str, start: int, end: int, path: tuple[str, ...]
) -> Section:
    return Section(text=text[start:end], heading_path=path, tokens=counter.span(start, end))


def _split_block(
    counter: TokenCounter, text: str, unit: _Unit, budget: int, levels: Sequence[_Bounds]
) -> list[_Unit]:
    """Cut an oversized unit into units of at most ``budget`` tokens, coarsest cuts first.

    At each level an oversized unit is cut into segments, each segment is estimated
    once, and neighbours are grouped while their summed estimate fits. Every cut has a
    non-space character on its left, where the estimate of two texts joined is at most
    the sum of their estimates: the sums are safe, and each character is estimated
    about once per level (the estimator is too slow to re-run over growing prefixes).
    """
    units = [unit]
    for bounds_of in (*levels, _char_bounds):
        refined: list[_Unit] = []
        for start, end, tokens in units:
            bounds = bounds_of(text, start, end, budget) if tokens > budget else ()
            if len(bounds) > 2:
                # Runs of about budget/8 tokens, judged by the unit's own density.
                run_chars = max(1, (end - start) * budget // (8 * tokens))
                refined.extend(_group(counter, text, bounds, budget, run_chars))
            else:  # fits, or this level finds no cut in it: leave it to the next
                refined.append((start, end, tokens))
        units = refined
    return units


def _group(
    counter: TokenCounter, text: str, bounds: Sequence[int], budget: int, run_chars: int
) -> list[_Unit]:
    """Greedily group the segments between ``bounds`` while their estimates fit.

    Estimating tiny segments one by one costs more in calls than in characters, so
    neighbours are estimated in runs of at most ``run_chars`` characters; a run that
    would overflow the current group is halved until its parts fit, which fills groups
    without estimating every segment on its own.
    """
    grouper = _Grouper(text, bounds[0], budget)
    for run in _runs(bounds, run_chars):
        _add_run(grouper, counter, run, budget)
    return grouper.close()


def _add_run(grouper: _Grouper, counter: TokenCounter, run: Sequence[int], budget: int) -> None:
    """Add a run whole if it fits, else its halves (down to single segments)."""
    cost = counter.span(run[0], run[-1])
    if len(run) == 2 or (cost <= budget and grouper.fits(cost)):
        grouper.add(run[0], run[-1], cost)
        return
    middle = len(run) // 2
    _add_run(grouper, counter, run[: middle + 1], budget)
    _add_run(grouper, counter, run[middle:], budget)


def _runs(bounds: Sequence[int], limit: int) -> Iterator[Sequence[int]]:
    """Consecutive bounds spanning at most ``limit`` characters (or one segment)."""
    first = 0
    while first < len(bounds) - 1:
        last = first + 1
        while last + 1 < len(bounds) and bounds[last + 1] - bounds[first] <= limit:
            last += 1
        yield bounds[first : last + 1]
        first = last


class _Grouper:
    __slots__ = ("_budget", "_first", "_last", "_text", "_tokens", "_units")

    def __init__(self, text: str, start: int, budget: int) -> None:
        self._text, self._budget = text, budget
        self._first = self._last = start
        self._tokens = 0
        self._units: list[_Unit] = []

    def fits(self, cost: int) -> bool:
        return not self._tokens or self._tokens + cost <= self._budget

    def add(self, left: int, right: int, cost: int) -> None:
        if not self.fits(cost):
            self._flush()
            self._first = left
        self._tokens += cost
        self._last = right

    def _flush(self) -> None:
        start = skip_white(self._text, self._first, self._last)
        self._units.append((start, self._last, self._tokens))
        self._tokens = 0

    def close(self) -> list[_Unit]:
        self._flush()
        return self._units


def _regex_bounds(pattern: re.Pattern[str]) -> _Bounds:
    """Cuts at the ends of ``pattern``'s matches (strictly inside the span).

    ``re.split`` with the whole pattern captured hands back the pieces and the matches
    in turn, so the running sum of their lengths gives every match's end: a C loop
    making two strings per match, about 3x faster than a match object per cut.
    """
    splitter = re.compile(f"({pattern.pattern})", pattern.flags)

    def bounds(text: str, start: int, end: int, budget: int) -> list[int]:
        del budget
        parts = splitter.split(text[start:end])
        ends = list(itertools.accumulate(map(len, parts), initial=start))[2::2]
        if ends and ends[-1] >= end:
            ends.pop()
        return [start, *ends, end]

    return bounds


def _char_bounds(text: str, start: int, end: int, budget: int) -> list[int]:
    """Hard cuts every few characters of a span with no white space in it.

    No character costs more than two tokens, so ``budget // 2`` characters always fit.
    """
    step = max(1, min(64, budget // 2))
    bounds = [start]
    pos = start + step
    while pos < end:
        bounds.append(_grapheme_safe(text, bounds[-1], pos))
        pos = bounds[-1] + step
    bounds.append(end)
    return bounds


def _grapheme_safe(text: str, floor: int, cut: int) -> int:
    """Move a hard cut back (above ``floor``) so it does not split a combining sequence."""
    safe = cut
    while safe > floor + 1 and _inside_cluster(text, safe):
        safe -= 1
    return cut if _inside_cluster(text, safe) else safe


def _inside_cluster(text: str, index: int) -> bool:
    char, code = text[index], ord(text[index])
    return (
        unicodedata.category(char) in ("Mn", "Mc", "Me")
        or char in _JOINERS
        or text[index - 1] in _JOINERS
        or 0xFE00 <= code <= 0xFE0F  # variation selectors
        or 0x1F3FB <= code <= 0x1F3FF  # skin tones
        or 0xE0020 <= code <= 0xE007F  # tag characters (flag sequences)
    )


# Sentence ends: closing punctuation followed by white space, a CJK full stop, or a
# line end (the ends of ``_PUNCTUATION`` and of ``_line_ends`` together; each pattern
# starts with a character class, which the regex engine scans for at C speed, where a
# leading ``\S`` alternative made it try every character).
_PUNCTUATION = re.compile(
    r"[.!?\u2026\u3002\uff01\uff1f\uff61]"
    r"(?:(?<=[\u3002\uff01\uff1f\uff61])|[)\"'\]\u2019\u201d\u00bb]*(?=\s))"
)
_WORD_END = re.compile(r"\S(?=\s)")
_punctuation_bounds = _regex_bounds(_PUNCTUATION)


def _line_ends(text: str, start: int, end: int, budget: int) -> list[int]:
    """Cuts after the last non-space character of each line (``\\S(?=[ \\t]*\\n)``)."""
    del budget
    cuts = [start]
    pos = start
    for line in text[start:end].split("\n")[:-1]:
        kept = len(line.rstrip(" \t"))
        if kept and not line[kept - 1].isspace():
            cuts.append(pos + kept)
        pos += len(line) + 1
    cuts.append(end)
    return cuts


def _sentence_bounds(text: str, start: int, end: int, budget: int) -> list[int]:
    punctuation = _punctuation_bounds(text, start, end, budget)
    lines = _line_ends(text, start, end, budget)
    if len(lines) == 2:
        return punctuation
    return sorted(set(punctuation) | set(lines))


_PROSE_LEVELS = (_sentence_bounds, _regex_bounds(_WORD_END))
_CODE_LEVELS = (_line_ends, _regex_bounds(_WORD_END))
