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
  naming the chunk and its estimate. With a ``space`` whose model takes the task as a
  text prefix (gemini-embedding-2), the limit is checked on the text as sent, prefix
  included (:meth:`~asemantic.domain.models.EmbeddingModel.document_input`); the
  prefix itself is never stored, so the vector source and its hash stay the same.
  The splitter keeps chunk text under its own budget, so this only happens when the
  title or headings are huge; shortening them silently would change what gets
  searched without anyone noticing.
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
from asemantic.domain.keywords import index_terms
from asemantic.domain.space import MAX_INPUT_TOKENS, EmbeddingSpace
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
    max_input_tokens: int | None = None,
    space: EmbeddingSpace | None = None,
) -> list[ChunkDraft]:
    """Cut ``document`` into chunk drafts, ready to store and embed.

    The text goes through :func:`~asemantic.domain.text.clean_text` first (so drafts
    never see CR line ends or NUL), then the splitter, then the context strategy.

    Raises :class:`EmptyDocumentError` when nothing is left to embed (for instance a
    Markdown file made only of headings) and :class:`ChunkTooLargeError` when a vector
    source (with the model's task prefix, if ``space``'s model takes one) exceeds
    ``max_input_tokens`` (by default the limit of ``space``'s model, or
    gemini-embedding-001's 2,048 without a space).
    """
    text = clean_text(document.text, what=f"document {document.source!r}")
    return drafts_of_clean(
        document,
        text,
        splitter=splitter,
        context=context,
        max_input_tokens=max_input_tokens,
        space=space,
    )


def drafts_of_clean(
    document: Document,
    text: str,
    *,
    splitter: Splitter,
    context: ContextStrategy,
    max_input_tokens: int | None = None,
    space: EmbeddingSpace | None = None,
) -> list[ChunkDraft]:
    """:func:`build_drafts` of ``text``, the already cleaned text of ``document``
    (what :func:`~asemantic.domain.text.clean_text` returned for it)."""
    model = space.embedding_model if space is not None else None
    if max_input_tokens is None:
        max_input_tokens = model.max_input_tokens if model is not None else MAX_INPUT_TOKENS
    prefixed = model if model is not None and model.task_prefixes else None
    task_type = space.task_type if space is not None else ""
    with_prefix = ", headings and task prefix" if prefixed is not None else " and headings"
    drafts: list[ChunkDraft] = []
    trusted = isinstance(splitter, MarkdownSplitter | PlainTextSplitter)
    heads: dict[str, int] = {}  # the estimate of each title + headings prefix
    for position, section in enumerate(splitter.split(text)):
        source = context.vector_source(
            title=document.title, heading_path=section.heading_path, text=section.text
        )
        tokens = _source_tokens(source, section, trusted=trusted, heads=heads)
        sent = tokens
        if prefixed is not None:
            shaped = prefixed.document_input(source, title=document.title, task_type=task_type)
            sent = estimate_tokens(shaped.text)
        if sent > max_input_tokens:
            raise ChunkTooLargeError(
                f"chunk {position} of document {document.source!r} is about {sent:,} "
                f"tokens with its title{with_prefix}; the model reads at most "
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
                keyword_terms=index_terms(section.text),
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
