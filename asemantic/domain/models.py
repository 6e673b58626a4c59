"""The embedding models asemantic knows, and the request shape each one wants.

Two Gemini text-embedding models behave differently enough that the request must be
built per model (:class:`EmbeddingModel`, looked up with :func:`embedding_model`):

* ``gemini-embedding-001`` takes the task as a request field (``taskType``, and
  ``title`` for ``RETRIEVAL_DOCUMENT``), reads at most 2,048 tokens per text, returns
  unit-length vectors only at 3,072 dimensions, and costs $0.15 (online) / $0.075
  (Batch API) per million input tokens.
* ``gemini-embedding-2`` ignores ``taskType`` and ``title``: the task goes into the
  text as a prefix (:func:`task_text`). Several parts in one content come back as
  *one* combined vector, so every text is its own request (its own content). It reads
  at most 8,192 tokens per text, and costs $0.20 / $0.10 per million input tokens.
  Reduced sizes (128..3,072) are documented to come back normalised [medium
  confidence]; asemantic normalises every vector itself either way.

The prefixes follow Google's embeddings guide, section "gemini-embedding-2"
(https://ai.google.dev/gemini-api/docs/embeddings#gemini-embedding-2): format the task
into the text, ``task: search result | query: {content}`` for search queries,
``title: {title} | text: {content}`` for documents (``title: none`` without one), and
``task: {name} | query: {content}`` for the other tasks (question answering, fact
checking, code retrieval, classification, clustering, sentence similarity). What this
relies on: embeddings-benchmark/mteb pull request #4851 (merged; it switched
gemini-embedding-2 from ``taskType`` to these prefixes after checking that different
``taskType`` values give identical embeddings, and measured e.g. ArguAna 41.9 -> 78.7,
STS12 72.9 -> 81.1), and maragudk/gai pull request #248 (the same formats, exercised
against the live endpoint). The task names are those of EmbeddingGemma's model card
(https://huggingface.co/google/embeddinggemma-300m), which uses the same template.

Decisions:

* A model name asemantic does not know keeps the behaviour every model had before the
  registry: request fields (``taskType``/``title``), the 2,048-token limit of
  gemini-embedding-001 (the smaller, so the safe side) and its prices.
  :func:`embedding_model` never raises for a name; ``known`` tells the two apart.
* A document title goes into the prefix on one line: white space runs (line breaks
  included) become one space and ``|`` (the prefix's separator) a space too, so the
  prefix always has exactly its documented fields. An empty title is ``none``.
* The prefix is added where the request is built (the Gemini adapters), never stored:
  a chunk's vector source and content hash stay the model-independent text, and the
  same chunk always gives the same request (the prefix is a pure function of the
  chunk, its title and the model). The token bound is checked on the text as sent
  (:meth:`EmbeddingModel.document_input`, used by ingestion and by query checks).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "DOCUMENT_TASKS",
    "EmbeddingInput",
    "EmbeddingModel",
    "GEMINI_EMBEDDING_001",
    "GEMINI_EMBEDDING_2",
    "KNOWN_MODELS",
    "QUERY_TASK",
    "TASK_PREFIXES",
    "embedding_model",
    "task_text",
]

QUERY_TASK = "RETRIEVAL_QUERY"
"""The task type search queries are embedded as."""

DOCUMENT_TASK = "RETRIEVAL_DOCUMENT"

TASK_PREFIXES: Mapping[str, str] = {
    "RETRIEVAL_QUERY": "search result",
    "QUESTION_ANSWERING": "question answering",
    "FACT_VERIFICATION": "fact checking",
    "CODE_RETRIEVAL_QUERY": "code retrieval",
    "CLASSIFICATION": "classification",
    "CLUSTERING": "clustering",
    "SEMANTIC_SIMILARITY": "sentence similarity",
}
"""The ``task: ...`` name of each query-side task type (``RETRIEVAL_DOCUMENT`` has the
``title: ... | text: ...`` form instead)."""

DOCUMENT_TASKS = frozenset({DOCUMENT_TASK, *TASK_PREFIXES})
"""Every task type a prefix can express (what ``EmbeddingSpace.task_type`` may be for a
model that takes the task in the text)."""


def task_text(task_type: str, text: str, *, title: str | None = None) -> str:
    """``text`` with the instruction prefix for ``task_type`` (for models that ignore
    ``taskType``, such as gemini-embedding-2).

    ``RETRIEVAL_DOCUMENT`` gives ``title: {title or none} | text: {text}``; every other
    known task ``task: {name} | query: {text}`` (the title is not part of those forms).
    An unknown task type raises ``ValueError``.
    """
    if task_type == DOCUMENT_TASK:
        return f"title: {_prefix_title(title)} | text: {text}"
    name = TASK_PREFIXES.get(task_type)
    if name is None:
        raise ValueError(
            f"task type {task_type!r} has no text prefix; use one of {sorted(DOCUMENT_TASKS)}"
        )
    return f"task: {name} | query: {text}"


def _prefix_title(title: str | None) -> str:
    if title is None:
        return "none"
    return " ".join(title.replace("|", " ").split()) or "none"


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbeddingInput:
    """What one embedding request carries for one text: the text as sent, and the
    ``taskType``/``title`` fields (``None``: left out of the request)."""

    text: str
    task_type: str | None
    title: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbeddingModel:
    """What asemantic knows about one embedding model.

    ``task_prefixes``: the model ignores ``taskType``/``title`` and takes the task as a
    text prefix (:func:`task_text`); otherwise they are request fields.
    ``normalises_reduced``: vectors below ``max_dimensions`` come back unit-length
    (asemantic normalises every vector anyway). Prices are USD per million input
    tokens. ``known`` is false for the stand-in :func:`embedding_model` returns for a
    name it does not know.
    """

    name: str
    max_input_tokens: int
    min_dimensions: int = 128
    max_dimensions: int = 3072
    task_prefixes: bool
    normalises_reduced: bool
    online_per_million: float
    batch_per_million: float
    known: bool = True

    def document_input(self, text: str, *, title: str | None, task_type: str) -> EmbeddingInput:
        """The request content of one document chunk (``task_type`` is the space's)."""
        if self.task_prefixes:
            return EmbeddingInput(
                text=task_text(task_type, text, title=title), task_type=None, title=None
            )
        # A title is only meaningful (and only accepted) with RETRIEVAL_DOCUMENT.
        return EmbeddingInput(
            text=text, task_type=task_type, title=title if task_type == DOCUMENT_TASK else None
        )

    def query_input(self, text: str) -> EmbeddingInput:
        """The request content of one search query."""
        if self.task_prefixes:
            return EmbeddingInput(text=task_text(QUERY_TASK, text), task_type=None, title=None)
        return EmbeddingInput(text=text, task_type=QUERY_TASK, title=None)


GEMINI_EMBEDDING_001 = EmbeddingModel(
    name="gemini-embedding-001",
    max_input_tokens=2048,
    task_prefixes=False,
    normalises_reduced=False,
    online_per_million=0.15,
    batch_per_million=0.075,
)
GEMINI_EMBEDDING_2 = EmbeddingModel(
    name="gemini-embedding-2",
    max_input_tokens=8192,
    task_prefixes=True,
    normalises_reduced=True,
    online_per_million=0.20,
    batch_per_million=0.10,
)

KNOWN_MODELS: Mapping[str, EmbeddingModel] = {
    model.name: model for model in (GEMINI_EMBEDDING_001, GEMINI_EMBEDDING_2)
}


def embedding_model(name: str) -> EmbeddingModel:
    """The registry entry for ``name`` (``models/`` prefix allowed), or for a name not
    in it a conservative stand-in with gemini-embedding-001's behaviour (see the module
    doc) and ``known=False``."""
    bare = name.removeprefix("models/")
    model = KNOWN_MODELS.get(bare)
    if model is not None:
        return model
    return EmbeddingModel(
        name=bare,
        max_input_tokens=GEMINI_EMBEDDING_001.max_input_tokens,
        task_prefixes=False,
        normalises_reduced=False,
        online_per_million=GEMINI_EMBEDDING_001.online_per_million,
        batch_per_million=GEMINI_EMBEDDING_001.batch_per_million,
        known=False,
    )
