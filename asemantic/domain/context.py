"""The text each chunk is embedded as, and the drafts an ingestion stores.

A chunk alone often lacks the words a query uses: "it supports retries" says nothing
about *which* library or section. A :class:`ContextStrategy` builds the *vector source*
(the exact text sent to the embedder) from the document title, the heading path and the
chunk text. The default, :class:`TitleHeadingContext`, produces::

    Title: asemantic guide
    Section: Install > From source

    <chunk text>

Decisions:

* The vector source is hashed to identify the vector (``ChunkDraft.content_hash``), so a
  changed title or heading re-embeds exactly the chunks whose source text changed.
* A vector source over the model's input limit raises :class:`ChunkTooLargeError`
  naming the chunk and its estimate. The splitter keeps chunk text under its own
  budget, so this only happens when the title or headings are huge; shortening them
  silently would change what gets searched without anyone noticing.
* Line breaks inside a title or heading become spaces so that the ``Title:`` and
  ``Section:`` lines stay one line each.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from asemantic.domain.chunking import MarkdownSplitter, PlainTextSplitter, Section
from asemantic.domain.documents import ChunkDraft
from asemantic.domain.hashing import content_hash
from asemantic.domain.space import MAX_INPUT_TOKENS
from asemantic.domain.text import clean_text
from asemantic.domain.tokens import estimate_tokens
from asemantic.errors import ChunkTooLargeError, EmptyDocumentError

if TYPE_CHECKING:
    from asemantic.domain.chunking import Splitter
    from asemantic.domain.documents import Document

__all__ = [
    "ContextStrategy",
    "TitleHeadingContext",
    "build_drafts",
    "drafts_of_clean",
    "pipeline_fingerprint",
]


class ContextStrategy(Protocol):
    """Builds the text a chunk is embedded as.

    A strategy may also define ``fingerprint() -> str`` naming its configuration; it
    goes into the document hash (see :func:`pipeline_fingerprint`) so that changing the
    strategy re-chunks documents. Without one the class's qualified name stands in.
    """

    def vector_source(self, *, title: str | None, heading_path: tuple[str, ...], text: str) -> str:
        """The exact text to embed for one chunk."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class TitleHeadingContext:
    """``Title:`` and ``Section:`` lines (each left out when empty), a blank line, the text."""

    separator: str = " > "

    def vector_source(self, *, title: str | None, heading_path: tuple[str, ...], text: str) -> str:
        head = _title_heading_lines(title, heading_path, self.separator)
        return head + text if head else text

    def fingerprint(self) -> str:
        return f"title-heading/1 separator={self.separator!r}"


def pipeline_fingerprint(splitter: Splitter, context: ContextStrategy) -> str:
    """Names a splitter and context configuration, for :func:`document_hash`."""
    return f"{_fingerprint(splitter)} | {_fingerprint(context)}"


def build_drafts(
    document: Document,
    *,
    splitter: Splitter,
    context: ContextStrategy,
    max_input_tokens: int = MAX_INPUT_TOKENS,
) -> list[ChunkDraft]:
    """Cut ``document`` into chunk drafts, ready to store and embed.

    The text goes through :func:`~asemantic.domain.text.clean_text` first (so drafts
    never see CR line ends or NUL), then the splitter, then the context strategy.

    Raises :class:`EmptyDocumentError` when nothing is left to embed (for instance a
    Markdown file made only of headings) and :class:`ChunkTooLargeError` when a vector
    source exceeds ``max_input_tokens``.
    """
    text = clean_text(document.text, what=f"document {document.source!r}")
    return drafts_of_clean(
        document, text, splitter=splitter, context=context, max_input_tokens=max_input_tokens
    )


def drafts_of_clean(
    document: Document,
    text: str,
    *,
    splitter: Splitter,
    context: ContextStrategy,
    max_input_tokens: int = MAX_INPUT_TOKENS,
) -> list[ChunkDraft]:
    """:func:`build_drafts` of ``text``, the already cleaned text of ``document``
    (what :func:`~asemantic.domain.text.clean_text` returned for it)."""
    drafts: list[ChunkDraft] = []
    trusted = isinstance(splitter, MarkdownSplitter | PlainTextSplitter)
    heads: dict[str, int] = {}  # the estimate of each title + headings prefix
    for position, section in enumerate(splitter.split(text)):
        source = context.vector_source(
            title=document.title, heading_path=section.heading_path, text=section.text
        )
        tokens = _source_tokens(source, section, trusted=trusted, heads=heads)
        if tokens > max_input_tokens:
            raise ChunkTooLargeError(
                f"chunk {position} of document {document.source!r} is about {tokens:,} "
                f"tokens with its title and headings; the model reads at most "
                f"{max_input_tokens:,} (shorten the title or headings, or the splitter's "
                "max_tokens)"
            )
        drafts.append(
            ChunkDraft(
                position=position,
                text=section.text,
                heading_path=section.heading_path,
                vector_source=source,
                content_hash=content_hash(source),
                token_estimate=tokens,
            )
        )
    if not drafts:
        raise EmptyDocumentError(
            f"document {document.source!r} has no text to embed outside its headings"
        )
    return drafts


def _source_tokens(source: str, section: Section, *, trusted: bool, heads: dict[str, int]) -> int:
    """``estimate_tokens(source)``, from the section's own count when a built-in
    splitter made it and ``source`` ends with its text: where the two parts cannot join
    into one run (a letter/digit on both sides of the seam), the estimate of the whole
    is the sum of the parts', so the chunk text is not estimated twice."""
    text = section.text
    if not trusted or section.tokens is None or not source.endswith(text):
        return estimate_tokens(source)
    head = source[: len(source) - len(text)]
    if head and text and _joins(head[-1], text[0]):
        return estimate_tokens(source)
    head_tokens = heads.get(head)
    if head_tokens is None:
        head_tokens = heads[head] = estimate_tokens(head)
    return head_tokens + section.tokens


def _joins(left: str, right: str) -> bool:
    """Whether two characters side by side belong to one piece of the estimate."""
    word = left.isascii() and left.isalnum() and right.isascii() and right.isalnum()
    return word or (left in _ASCII_SPACE and right in _ASCII_SPACE)


_ASCII_SPACE = frozenset(" \t\n\r\x0b\x0c")


@functools.lru_cache(maxsize=256)
def _title_heading_lines(title: str | None, heading_path: tuple[str, ...], separator: str) -> str:
    """The ``Title:``/``Section:`` lines and the blank line after them ('' if none);
    cached: a document's chunks share a few heading paths."""
    lines = []
    if title is not None and (clean_title := _one_line(title)):
        lines.append(f"Title: {clean_title}")
    headings = [heading for part in heading_path if (heading := _one_line(part))]
    if headings:
        lines.append(f"Section: {separator.join(headings)}")
    return "\n".join(lines) + "\n\n" if lines else ""


def _one_line(value: str) -> str:
    return " ".join(value.split())


def _fingerprint(component: object) -> str:
    method = getattr(component, "fingerprint", None)
    if callable(method):
        return str(method())
    kind = type(component)
    return f"{kind.__module__}.{kind.__qualname__}"
