"""What the emulated model does: check one embedding request and compute its vector.

Vectors are the deterministic lexical features of :func:`asemantic.testing.lexical_features`
(texts sharing words are close). Like Gemini, only 3,072-dimensional vectors come back
unit-length; smaller ones have a length between 0.3 and 0.9 that varies with the text,
so a caller that forgets to normalise ranks wrongly.

Decisions:

* **Fast and identical.** :func:`fast_tokens` and :func:`features` give exactly what
  :func:`asemantic.domain.tokens.approximate_tokens` and
  :func:`asemantic.testing.lexical_features` give (tests pin this), with the per-word
  work (stop words, suffixes, hashing) cached: a corpus repeats its words, so a job of
  tens of thousands of lines costs a fraction of a second per thousand.
* **Per model** (:data:`MODELS`, :func:`model_behaviour`): ``gemini-embedding-001``
  honours ``taskType`` and ``title`` (a ``RETRIEVAL_DOCUMENT`` title is embedded with
  the text), reads at most 2,048 tokens and scales vectors below 3,072 dimensions off
  unit length. ``gemini-embedding-2`` ignores both fields (the vector is the same with
  or without them, and the title counts no tokens: the task must be in the text),
  reads at most 8,192 tokens and returns unit-length vectors at every size (Google
  documents normalised reduced sizes, medium confidence). For every model, the text
  parts of one content are joined into one text: one request, *one* vector, however
  many parts it has (gemini-embedding-2's documented behaviour; what
  gemini-embedding-001 does with several parts is not documented, and the emulator
  treats it the same). A model the emulator serves but does not know behaves like
  gemini-embedding-001. Batch jobs work the same for both models (an assumption: batch
  support for gemini-embedding-2 on the Developer API is not verified).
* **Dense vectors** (``dense=True``): Google's values are dense full-precision floats,
  about 10 KB a line at 768 dimensions, where the lexical features are mostly zeros
  (about 4 KB a line). The dense variant adds deterministic noise (seeded by the text,
  about a tenth of the vector's length, so rankings by shared words hold) and keeps
  ten decimals.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
import operator
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from asemantic.testing.emulator.proto import get
from asemantic.testing.emulator.schemas import TASK_TYPES
from asemantic.testing.lexical import _BIAS_TOKEN, _STOPWORDS, _WORD, _slot

__all__ = [
    "DEFAULT_DIMENSIONS",
    "EmbedSpec",
    "MAX_DIMENSIONS",
    "MAX_TOKENS",
    "MIN_DIMENSIONS",
    "MODELS",
    "ModelBehaviour",
    "RequestProblem",
    "analyse",
    "analyse_many",
    "check_tokens",
    "embed_many",
    "embedding_array",
    "embedding_arrays",
    "embedding_values",
    "fast_tokens",
    "features",
    "item_tokens",
    "model_behaviour",
    "model_name",
    "read_request",
]

DEFAULT_DIMENSIONS = 3072
MIN_DIMENSIONS = 128
MAX_DIMENSIONS = 3072
MAX_TOKENS = 2048
"""gemini-embedding-001's input limit (each model's: :attr:`ModelBehaviour.max_tokens`)."""


@dataclass(frozen=True, kw_only=True)
class ModelBehaviour:
    """How one emulated model treats a request (see the module doc)."""

    max_tokens: int
    task_fields: bool
    """``taskType``/``title`` change the vector (False: ignored)."""
    unit_reduced: bool
    """Vectors below 3,072 dimensions come back unit-length."""


MODELS: Mapping[str, ModelBehaviour] = {
    "models/gemini-embedding-001": ModelBehaviour(
        max_tokens=MAX_TOKENS, task_fields=True, unit_reduced=False
    ),
    "models/gemini-embedding-2": ModelBehaviour(
        max_tokens=8192, task_fields=False, unit_reduced=True
    ),
}


def model_behaviour(model: str) -> ModelBehaviour:
    """The behaviour of ``model`` (``models/...`` or bare); gemini-embedding-001's for a
    model not in :data:`MODELS`."""
    return MODELS.get(model_name(model), MODELS["models/gemini-embedding-001"])


class RequestProblem(Exception):
    """An embedding request the model refuses (400 INVALID_ARGUMENT)."""

    def __init__(self, message: str, code: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True, kw_only=True)
class EmbedSpec:
    """A checked embedding request."""

    text: str
    dimensions: int
    task_type: str | None
    title: str | None
    tokens: int
    features: NDArray[np.float32] | None = field(default=None, compare=False, repr=False)
    max_tokens: int = MAX_TOKENS
    unit: bool = False
    """Unit length at every dimensionality (gemini-embedding-2), not only at 3,072."""

    @property
    def feature_text(self) -> str:
        """The text the vector is made of (the title first, for documents)."""
        if self.title and self.task_type == "RETRIEVAL_DOCUMENT":
            return f"{self.title}\n{self.text}"
        return self.text


def model_name(name: str) -> str:
    """``gemini-embedding-001`` -> ``models/gemini-embedding-001``."""
    return name if name.startswith(("models/", "tunedModels/")) else f"models/{name}"


def read_request(
    request: Mapping[str, Any], *, model: str, where: str, analyse_text: bool = True
) -> EmbedSpec:
    """Check an (already well-formed) ``EmbedContentRequest`` for ``model``.

    ``where`` names the request in messages (``BatchEmbedContentsRequest.requests[2]``).
    With ``analyse_text=False`` the text is neither counted nor embedded (``tokens`` is
    -1): the caller does it for many requests at once (:func:`embed_many`) and checks
    the token limit itself (:func:`check_tokens`).
    """
    requested = get(request, "model")
    if requested and model_name(str(requested)) != model:
        raise RequestProblem(
            f"* {where}.model: the request's model {model_name(str(requested))} "
            f"does not match {model}.\n"
        )
    behaviour = model_behaviour(model)
    text = _text(get(request, "content"), where)
    dimensions = _dimensions(get(request, "outputDimensionality"), where)
    task_type = _task_type(get(request, "taskType"))
    title = get(request, "title")
    if not behaviour.task_fields:  # read, and ignored: the vector is the text's alone
        task_type = title = None
    limit, unit = behaviour.max_tokens, behaviour.unit_reduced
    if not analyse_text:
        return EmbedSpec(
            text=text,
            dimensions=dimensions,
            task_type=task_type,
            title=title,
            tokens=-1,
            max_tokens=limit,
            unit=unit,
        )
    combined = bool(title) and task_type == "RETRIEVAL_DOCUMENT"
    vector, tokens = analyse(f"{title}\n{text}" if combined else text, dimensions)
    if title and not combined:
        tokens += fast_tokens(title)
    check_tokens(tokens, behaviour.max_tokens)
    return EmbedSpec(
        text=text,
        dimensions=dimensions,
        task_type=task_type,
        title=title,
        tokens=tokens,
        features=vector,
        max_tokens=limit,
        unit=unit,
    )


def check_tokens(tokens: int, max_tokens: int = MAX_TOKENS) -> None:
    """:class:`RequestProblem` for a request over the model's input limit (Google's
    400 INVALID_ARGUMENT wording)."""
    if tokens > max_tokens:
        raise RequestProblem(
            f"The input token count ({tokens}) exceeds the maximum number of tokens "
            f"allowed ({max_tokens})."
        )


def embed_many(specs: Sequence[EmbedSpec]) -> list[EmbedSpec]:
    """``specs`` (read with ``analyse_text=False``) with their tokens and features,
    computed for all of them at once (:func:`analyse_many`, per dimensionality)."""
    done: list[EmbedSpec | None] = [None] * len(specs)
    by_dims: dict[int, list[int]] = {}
    for at, spec in enumerate(specs):
        by_dims.setdefault(spec.dimensions, []).append(at)
    for dims, all_positions in by_dims.items():
        for start in range(0, len(all_positions), _BLOCK):
            positions = all_positions[start : start + _BLOCK]
            _embed_block(specs, positions, dims, done)
    return [spec for spec in done if spec is not None]


_BLOCK = 256
"""Texts analysed together: enough for NumPy to pay off, few enough that no single C
call holds the GIL long (the emulator's HTTP threads and the caller's loop go on)."""


def _embed_block(
    specs: Sequence[EmbedSpec], positions: list[int], dims: int, done: list[EmbedSpec | None]
) -> None:
    texts = [specs[at].feature_text for at in positions]
    matrix, tokens = analyse_many(texts, dims)
    for row, at in enumerate(positions):
        spec = specs[at]
        count = tokens[row]
        if spec.title and spec.task_type != "RETRIEVAL_DOCUMENT":  # a title not embedded
            count += fast_tokens(spec.title)
        done[at] = replace(spec, tokens=count, features=matrix[row])


def analyse_many(texts: Sequence[str], dimensions: int) -> tuple[NDArray[np.float32], list[int]]:
    """:func:`analyse` of many texts at once: a float32 matrix (one row each) and the
    token counts, exactly as per text.

    Every word of every (ASCII) text is looked up once in C (``map`` over a dict of word
    ids); counting, ordering and summing run in NumPy: the (text, term) pairs are counted
    by ``np.unique``, put back in first-occurrence order, and added with ``np.add.at``
    in that order, in float32, as the reference's loop does. Other texts go one by one.
    """
    matrix = np.zeros((len(texts), dimensions), dtype=np.float32)
    tokens = [0] * len(texts)
    fast: list[int] = []
    encoded: list[bytes] = []
    symbol_counts: list[int] = []
    for at, text in enumerate(texts):
        if text.isascii():
            data = text.encode("ascii")
            rest = data.translate(None, _NOT_SYMBOL)  # symbols and control characters
            if not rest.translate(None, _SYMBOLS):  # no control characters
                fast.append(at)
                encoded.append(data)
                symbol_counts.append(len(rest))
                continue
        matrix[at] = features(text, dimensions)
        tokens[at] = fast_tokens(text)
    if not fast:
        return matrix, tokens
    vocab = _vocabulary(dimensions)
    lists = [data.translate(_ALNUM_LOWER).split() for data in encoded]
    flat = list(itertools.chain.from_iterable(lists))
    # One pass: a word not yet known gets the next id (_WordIds.__missing__), and its
    # term, length and tokens are filled in after.
    ids = np.fromiter(map(vocab.ids.__getitem__, flat), dtype=np.intp, count=len(flat))
    vocab.learn_new()
    rows = np.repeat(np.arange(len(fast)), np.fromiter(map(len, lists), np.intp, len(lists)))
    quarters = np.bincount(rows, weights=vocab.quarters[ids], minlength=len(fast))
    symbols = np.array(symbol_counts, dtype=np.intp)
    for at, count in zip(fast, (quarters.astype(np.intp) + symbols).tolist(), strict=True):
        tokens[at] = count
    terms = vocab.terms[ids]
    kept = terms >= 0
    width = vocab.term_count + 1
    keys = rows[kept].astype(np.int64) * width + terms[kept]
    unique, first, counts = np.unique(keys, return_index=True, return_counts=True)
    order = np.argsort(first, kind="stable")
    unique, counts = unique[order], counts[order]
    row_of, term_of = unique // width, unique % width
    weights = (vocab.term_signs[term_of] * _weights(int(counts.max(initial=1)))[counts]).astype(
        np.float32
    )
    block = np.zeros((len(fast), dimensions), dtype=np.float32)
    np.add.at(block.reshape(-1), row_of * dimensions + vocab.term_slots[term_of], weights)
    index, sign = _bias_slot(dimensions)
    block[:, index] += sign * 0.05
    matrix[fast] = block
    return matrix, tokens


class _Vocabulary:
    """Word ids and, per word, its term id (-1: a stop word), length and tokens; per
    term, its slot and sign (for one dimensionality)."""

    def __init__(self, dimensions: int) -> None:
        self.dimensions = dimensions
        self.ids = _WordIds()
        self.term_ids: dict[str, int] = {}
        self.terms = np.zeros(0, dtype=np.intp)
        self.lengths = np.zeros(0, dtype=np.float64)
        self.quarters = np.zeros(0, dtype=np.float64)
        self.term_slots = np.zeros(0, dtype=np.intp)
        self.term_signs = np.zeros(0, dtype=np.float64)

    @property
    def term_count(self) -> int:
        return len(self.term_ids)

    def learn_new(self) -> None:
        """Fill in the words :attr:`ids` gave an id since the last call."""
        new = self.ids.new
        if not new:
            return
        self.ids.new = []
        terms, new_terms = [], []
        stop = _STOPWORDS
        for word in b" ".join(new).decode("ascii").split(" "):
            # _term, inline (a cold vocabulary learns thousands of words a block)
            if word in stop:
                terms.append(-1)
                continue
            size = len(word)
            if size > 6 and word.endswith("ing"):
                term = word[:-3]
            elif size > 5 and word.endswith(("es", "ed")):
                term = word[:-2]
            elif size > 4 and word.endswith("s"):
                term = word[:-1]
            else:
                term = word
            term_id = self.term_ids.get(term)
            if term_id is None:
                term_id = self.term_ids[term] = len(self.term_ids)
                new_terms.append(_slot(term, self.dimensions))
            terms.append(term_id)
        self.terms = np.concatenate([self.terms, np.array(terms, dtype=np.intp)])
        lengths = np.fromiter(map(len, new), dtype=np.float64, count=len(new))
        self.lengths = np.concatenate([self.lengths, lengths])
        self.quarters = np.concatenate([self.quarters, np.floor((lengths + 3) / 4)])
        if new_terms:
            slots = np.array([slot for slot, _ in new_terms], dtype=np.intp)
            signs = np.array([sign for _, sign in new_terms], dtype=np.float64)
            self.term_slots = np.concatenate([self.term_slots, slots])
            self.term_signs = np.concatenate([self.term_signs, signs])


class _WordIds(dict[bytes, int]):
    """Word ids in order of first sight; an unknown word gets the next id and is
    remembered in :attr:`new` (for :meth:`_Vocabulary.learn_new`)."""

    def __init__(self) -> None:
        super().__init__()
        self.new: list[bytes] = []

    def __missing__(self, word: bytes) -> int:
        number = self[word] = len(self)
        self.new.append(word)
        return number


_VOCABULARIES: dict[int, _Vocabulary] = {}


def _vocabulary(dimensions: int) -> _Vocabulary:
    vocab = _VOCABULARIES.get(dimensions)
    if vocab is None or len(vocab.ids) > _MAX_CACHED:
        vocab = _VOCABULARIES[dimensions] = _Vocabulary(dimensions)
    return vocab


def embedding_values(spec: EmbedSpec, *, dense: bool = False) -> list[float]:
    """The vector the emulated model returns for ``spec``."""
    values: list[float] = embedding_array(spec, dense=dense).tolist()
    return values


def embedding_array(spec: EmbedSpec, *, dense: bool = False) -> NDArray[np.float64]:
    """:func:`embedding_values` as a float64 array (rounded as the wire shows it)."""
    text = spec.feature_text
    raw = spec.features if spec.features is not None else features(text, spec.dimensions)
    vector = raw.astype(np.float64)
    if dense:
        seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
        noise = np.random.default_rng(seed).standard_normal(spec.dimensions)
        vector = vector + noise * (0.1 * float(np.linalg.norm(vector)) / math.sqrt(spec.dimensions))
    finished: NDArray[np.float64] = _finish(
        vector[np.newaxis, :], spec.dimensions, 10 if dense else 8, unit=spec.unit
    )[0]
    return finished


def embedding_arrays(specs: Sequence[EmbedSpec]) -> list[NDArray[np.float64]]:
    """:func:`embedding_array` (not dense) of many specs, finished a block at a time:
    the same operations on the same values, so the same arrays."""
    out: list[NDArray[np.float64] | None] = [None] * len(specs)
    by_dims: dict[tuple[int, bool], list[int]] = {}
    for at, spec in enumerate(specs):
        by_dims.setdefault((spec.dimensions, spec.unit), []).append(at)
    for (dims, unit), positions in by_dims.items():
        for start in range(0, len(positions), _BLOCK):
            block = positions[start : start + _BLOCK]
            rows = np.stack([_raw(specs[at]) for at in block]).astype(np.float64)
            finished = _finish(rows, dims, 8, unit=unit)
            for row, at in enumerate(block):
                out[at] = finished[row]
    return [array for array in out if array is not None]


def _raw(spec: EmbedSpec) -> NDArray[np.float32]:
    if spec.features is not None:
        return spec.features
    return features(spec.feature_text, spec.dimensions)


def _finish(
    rows: NDArray[np.float64], dims: int, decimals: int, *, unit: bool = False
) -> NDArray[np.float64]:
    """Unit rows (scaled below 3,072 dimensions unless ``unit``), rounded. Each row's
    length is ``sqrt(row.dot(row))``, exactly what ``np.linalg.norm`` computes for one
    vector."""
    lengths = np.sqrt(np.array([row.dot(row) for row in rows]))
    scaled = rows / lengths[:, np.newaxis]
    if dims != MAX_DIMENSIONS and not unit:
        scaled *= (0.3 + 0.6 * lengths / (lengths + 4.0))[:, np.newaxis]
    rounded: NDArray[np.float64] = np.round(scaled, decimals)
    return rounded


def item_tokens(item: Any, model: str) -> int:
    """The tokens of one batch request (0 when the model would refuse it)."""
    try:
        return read_request(item.request, model=model, where="EmbedContentRequest").tokens
    except (RequestProblem, TypeError, ValueError):
        return 0


_ALNUM_QUARTER = re.compile(r"[A-Za-z0-9]{1,4}", re.ASCII)
_SYMBOL = re.compile(r"[!-/:-@\[-`{-~]", re.ASCII)


def fast_tokens(text: str) -> int:
    """The emulator's own token count (what its results report as ``tokenCount``): ASCII
    words count a token per 4 letters (the regex cuts each word into ceil(len/4)
    pieces), ASCII symbols and non-space non-ASCII characters one each. It was the
    domain's ``approximate_tokens`` rule once; that rule has since grown (control and
    white-space characters count), and the emulator keeps its counts stable."""
    total = _ALNUM_QUARTER.subn("", text)[1] + _SYMBOL.subn("", text)[1]
    if not text.isascii():
        total += sum(1 for char in text if char > "\x7f" and not char.isspace())
    return total


@functools.lru_cache(maxsize=65536)
def _term(word: str) -> str | None:
    if word in _STOPWORDS:
        return None
    for suffix in ("ing", "es", "ed", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


_ALNUM = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_ALNUM_LOWER = bytes(
    byte if bytes([byte]) in _ALNUM else ord(" ") for byte in bytes(range(256))
).lower()
"""ASCII letters lower-cased, digits kept, every other byte a space: ``split()`` then
gives exactly the words ``_WORD`` finds in the lower-cased text."""
_NOT_SYMBOL = _ALNUM + b" \t\n\r\x0b\x0c"
"""Deleted, what is left of an ASCII text (without control characters) is its symbols."""
_SYMBOLS = bytes(range(0x21, 0x7F)).translate(None, _ALNUM)
"""ASCII symbols (one token each); what else ``_NOT_SYMBOL`` leaves is a control
character (``_UNCOUNTED``)."""
_UNCOUNTED = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_SPACES = (" ", "\n", "\t", "\r", "\f", "\v")
_STOP = (None, 0, 0.0, 0)


def analyse(text: str, dimensions: int) -> tuple[NDArray[np.float32], int]:
    """:func:`features` and :func:`fast_tokens` of ``text`` in one pass over its words.

    For ASCII text without control characters (the common case), the words the
    features count are exactly the alphanumeric runs the token count counts, so one
    cached entry per word gives both: its term's slot, and its ``ceil(len / 4)`` tokens;
    every other character that is not white space is a symbol (one token). Anything
    else takes the two separate functions.
    """
    if not text.isascii() or _UNCOUNTED.search(text):
        return features(text, dimensions), fast_tokens(text)
    table = _WORDS.get(dimensions)
    if table is None or len(table) > _MAX_CACHED:
        table = _WORDS[dimensions] = {}
    counted = Counter(_WORD.findall(text.lower()))
    words = list(counted)
    counts = list(counted.values())
    entries = list(map(table.get, words))
    if None in entries:
        for at, entry in enumerate(entries):
            if entry is None:
                entries[at] = table[words[at]] = _word_entry(words[at], dimensions)
    known: list[tuple[str | None, int, float, int]] = entries  # type: ignore[assignment]
    tokens = sum(map(operator.mul, map(_QUARTERS, known), counts))
    tokens += len(text) - sum(map(operator.mul, map(len, words), counts))
    tokens -= sum(text.count(space) for space in _SPACES)
    terms = list(filter(None, map(_TERM, known)))
    if len(set(terms)) != len(terms):  # two words of one term (refund, refunds): merge
        merged: dict[str, list[Any]] = {}
        for entry, count in zip(known, counts, strict=True):
            if entry[0] is None:
                continue
            slot = merged.get(entry[0])
            if slot is None:
                merged[entry[0]] = [entry[1], entry[2], count]
            else:
                slot[2] += count
        return _vector(merged.values(), dimensions), tokens
    signs = np.fromiter(map(_SIGN, known), dtype=np.float64, count=len(known))
    kept = signs != 0.0
    indexes = np.fromiter(map(_INDEX, known), dtype=np.intp, count=len(known))[kept]
    times = np.array(counts, dtype=np.intp)[kept]
    weights = (signs[kept] * _weights(int(times.max(initial=1)))[times]).astype(np.float32)
    return _place(indexes, weights, dimensions), tokens


_TERM = operator.itemgetter(0)
_INDEX = operator.itemgetter(1)
_SIGN = operator.itemgetter(2)
_QUARTERS = operator.itemgetter(3)
_WEIGHTS = np.array([0.0, 1.0])


def _weights(largest: int) -> NDArray[np.float64]:
    """``1 + math.log(count)`` for every count up to ``largest`` (math.log, as the
    reference does: NumPy's log may differ in the last place)."""
    global _WEIGHTS
    if len(_WEIGHTS) <= largest:
        size = max(largest + 1, 2 * len(_WEIGHTS))
        _WEIGHTS = np.array([0.0] + [1.0 + math.log(n) for n in range(1, size)])
    return _WEIGHTS


def _place(
    indexes: NDArray[np.intp], weights: NDArray[np.float32], dimensions: int
) -> NDArray[np.float32]:
    vector = np.zeros(dimensions, dtype=np.float32)
    if len(np.unique(indexes)) == len(indexes):
        vector[indexes] = weights
    else:
        np.add.at(vector, indexes, weights)
    index, sign = _bias_slot(dimensions)
    vector[index] += sign * 0.05
    return vector


def _word_entry(word: str, dimensions: int) -> tuple[str | None, int, float, int]:
    term = _term(word)
    if term is None:
        return (None, 0, 0.0, (len(word) + 3) >> 2)
    index, sign = _slot(term, dimensions)
    return (term, index, sign, (len(word) + 3) >> 2)


def _vector(slots: Any, dimensions: int) -> NDArray[np.float32]:
    indexes: list[int] = []
    weights: list[float] = []
    for index, sign, count in slots:
        indexes.append(index)
        weights.append(sign if count == 1 else sign * (1.0 + math.log(count)))
    values = np.array(weights, dtype=np.float32)
    return _place(np.array(indexes, dtype=np.intp), values, dimensions)


@functools.lru_cache(maxsize=64)
def _bias_slot(dimensions: int) -> tuple[int, float]:
    return _slot(_BIAS_TOKEN, dimensions)


_WORDS: dict[int, dict[str, tuple[str | None, int, float, int]]] = {}


def features(text: str, dimensions: int) -> NDArray[np.float32]:
    """Exactly :func:`asemantic.testing.lexical_features` (float32), with cached words.

    The same sums in the same order and precision: a word's weight is rounded to float32
    as ``vector[index] += weight`` does; when two words share a slot, ``np.add.at`` adds
    them in order, unbuffered, in float32, as the one-by-one loop does.
    """
    table = _SLOTS.get(dimensions)
    if table is None or len(table) > _MAX_CACHED:
        table = _SLOTS[dimensions] = {}
    counts: Counter[str | None] = Counter(map(_term, _WORD.findall(text.casefold())))
    counts.pop(None, None)
    indexes: list[int] = []
    weights: list[float] = []
    for token, count in counts.items():
        slot = table.get(token)  # type: ignore[arg-type]
        if slot is None:
            slot = table[token] = _slot(token, dimensions)  # type: ignore[index, arg-type]
        indexes.append(slot[0])
        weights.append(slot[1] if count == 1 else slot[1] * (1.0 + math.log(count)))
    vector = np.zeros(dimensions, dtype=np.float32)
    values = np.array(weights, dtype=np.float32)
    if len(set(indexes)) == len(indexes):
        vector[indexes] = values
    else:
        np.add.at(vector, indexes, values)
    index, sign = _slot_of(_BIAS_TOKEN, dimensions, table)
    vector[index] += sign * 0.05
    return vector


_MAX_CACHED = 1_000_000
_SLOTS: dict[int, dict[str, tuple[int, float]]] = {}


def _slot_of(token: str, dimensions: int, table: dict[str, tuple[int, float]]) -> tuple[int, float]:
    slot = table.get(token)
    if slot is None:
        slot = table[token] = _slot(token, dimensions)
    return slot


def _text(content: Any, where: str) -> str:
    parts = get(content, "parts") if isinstance(content, Mapping) else None
    if not parts:
        raise RequestProblem(f"* {where}.content: contents is not specified\n")
    texts: list[str] = []
    for index, part in enumerate(parts):
        text = get(part, "text")
        if text is None:
            raise RequestProblem(
                f"* {where}.content.parts[{index}]: only text parts are supported by this model\n"
            )
        texts.append(str(text))
    joined = "\n".join(texts)
    if not joined.strip():
        raise RequestProblem(f"* {where}.content.parts: the text must not be empty\n")
    return joined


def _dimensions(raw: Any, where: str) -> int:
    if raw is None:
        return DEFAULT_DIMENSIONS
    value = int(raw)
    if value == 0:
        return DEFAULT_DIMENSIONS
    if not MIN_DIMENSIONS <= value <= MAX_DIMENSIONS:
        raise RequestProblem(
            f"* {where}.output_dimensionality: must be between {MIN_DIMENSIONS} and "
            f"{MAX_DIMENSIONS}, got {value}\n"
        )
    return value


def _task_type(raw: Any) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, int):
        return TASK_TYPES[raw]
    return str(raw)
