"""Search modes and weighted reciprocal rank fusion (hybrid search), pure.

Hybrid search runs a vector search and a keyword search, each for
:attr:`Fusion.candidates` chunks (at least ``k``), and merges the two ranked lists by
weighted reciprocal rank fusion (Cormack, Clarke and Buettcher, SIGIR 2009)::

    score(chunk) = sum over the lists that hold it of  weight_list / (constant + rank)

with ranks from 1. A chunk whose vector does not exist yet (ingested with
``mode="async"``, still PENDING) cannot be in the vector list: its keyword rank counts
for both lists, so a chunk is findable at once and not ranked down for waiting on its
embedding. RRF needs no score calibration (a cosine distance and a BM25 score
are not comparable; their ranks are), and a chunk both lists found beats one found
by a single list at a similar rank. Ties (equal fused scores) are broken by chunk id.

Decisions:

* Defaults ``constant = 60`` (the paper's value, also the usual default elsewhere),
  both weights ``1.0``. Raise ``keyword_weight`` for corpora of identifiers and codes,
  ``vector_weight`` for prose queried in other words.
* **Identifier queries are keyword-led** (``identifiers="keyword"``, the default): a
  query that is one token shaped like code (:func:`is_identifier_query`:
  ``snake_case``, ``camelCase``, letters with digits such as ``E11000`` or
  ``http2time``, ``ALL_CAPS``, a dotted or ``::`` path such as ``os.path.join``) asks
  for the chunks that hold it. Its hybrid result is the keyword list in BM25 order
  (the chunks holding the token), then the vector list's other chunks in vector order
  to fill ``k``; so it is never worse than keyword search alone (the same top ``k``
  when ``k`` chunks hold the token) and adds what the vectors find when fewer do. A
  result's ``score`` is then the weighted RRF score of its position in that order,
  ``(vector_weight + keyword_weight) / (constant + position)``, so it still decreases.
  A vector list of equal weight would pull chunks that merely resemble the identifier
  above chunks that hold it (measured by ``benchmarks/bench_quality.py``).
  ``identifiers="fuse"`` treats them as any other query.
* ``candidates = 50``: each list is read ``max(k, candidates)`` deep, so a hybrid
  search returns ``k`` hits whenever ``k`` chunks match either list (every list read
  at least ``k`` deep yields all its matches or ``k`` of them), and chunks just below
  the top ``k`` of one list can still be lifted by the other.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from asemantic.errors import InvalidInputError

__all__ = [
    "DEFAULT_CONSTANT",
    "Fusion",
    "Ranked",
    "SearchMode",
    "fuse",
    "is_identifier_query",
    "parse_mode",
]

DEFAULT_CONSTANT = 60.0


_IDENTIFIER_SHAPES = re.compile(
    r"""
    \w_+\w              # snake_case, ERR_1234
    | [a-z][A-Z]          # camelCase
    | [^\W\d_]\d | \d[^\W\d_]   # letters with digits: http2time, E11000, 3des
    | \w(?:\.|::|->)\w   # a dotted or :: path: os.path.join, std::vector
    | ^[A-Z]{2,}$         # ALL_CAPS: HTTP, EOF
    """,
    re.VERBOSE,
)
_MAX_IDENTIFIER_CHARS = 200


def is_identifier_query(query: str) -> bool:
    """Whether ``query`` is one token shaped like code: no white space inside, and
    ``snake_case``, ``camelCase``, letters with digits, ``ALL_CAPS`` or a dotted /
    ``::`` path (``ERR_4711``, ``getUserName``, ``E11000``, ``HTTP``,
    ``os.path.join``). Plain words (``retry``), numbers (``2024``) and sentences are
    not. Hybrid search ranks such a query keyword-led (see :class:`Fusion`)."""
    text = query.strip()
    if not text or len(text) > _MAX_IDENTIFIER_CHARS or any(c.isspace() for c in text):
        return False
    text = text.strip("\"'`()[]{}<>,;!?")
    return bool(text) and _IDENTIFIER_SHAPES.search(text) is not None


class SearchMode(enum.StrEnum):
    """How :meth:`SemanticCore.search` ranks: both lists fused, meaning only, words only."""

    HYBRID = "hybrid"
    VECTOR = "vector"
    KEYWORD = "keyword"


def parse_mode(mode: object) -> SearchMode:
    """``mode`` as a :class:`SearchMode`; :class:`InvalidInputError` when unknown."""
    if isinstance(mode, SearchMode):
        return mode
    if isinstance(mode, str):
        try:
            return SearchMode(mode)
        except ValueError:
            pass
    names = ", ".join(m.value for m in SearchMode)
    raise InvalidInputError(f"unknown search mode {mode!r}; use one of {names}")


def _weight(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"{name} must be a number")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise InvalidInputError(f"{name} must be finite and not negative")
    return number


@dataclass(frozen=True, slots=True, kw_only=True)
class Fusion:
    """The weights and constant of weighted RRF, and how deep each list is read.

    Invalid values raise :class:`InvalidInputError`: weights finite and not negative,
    not both zero; ``constant`` finite and not negative; ``candidates`` an int >= 1;
    ``identifiers`` ``"keyword"`` (identifier queries keyword-led) or ``"fuse"``.
    """

    vector_weight: float = 1.0
    keyword_weight: float = 1.0
    constant: float = DEFAULT_CONSTANT
    candidates: int = 50
    identifiers: str = "keyword"

    def __post_init__(self) -> None:
        vector = _weight(self.vector_weight, "vector_weight")
        keyword = _weight(self.keyword_weight, "keyword_weight")
        if vector == 0 and keyword == 0:
            raise InvalidInputError("vector_weight and keyword_weight cannot both be 0")
        _weight(self.constant, "constant")
        candidates = self.candidates
        if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1:
            raise InvalidInputError("candidates must be an integer of at least 1")
        if self.identifiers not in ("keyword", "fuse"):
            raise InvalidInputError('identifiers must be "keyword" or "fuse"')

    def depth(self, k: int) -> int:
        """How many hits each list is asked for, to return ``k``."""
        return max(k, self.candidates)


@dataclass(frozen=True, slots=True, kw_only=True)
class Ranked:
    """One fused result: the chunk, its fused score and its rank in each list (or None)."""

    chunk_id: int
    score: float
    vector_rank: int | None
    keyword_rank: int | None


def fuse(
    vector: Sequence[int],
    keyword: Sequence[int],
    *,
    k: int,
    fusion: Fusion,
    no_vector: Collection[int] = (),
    keyword_led: bool = False,
) -> list[Ranked]:
    """The best ``k`` chunks of two ranked id lists (best first) by weighted RRF.

    A chunk listed twice in one list keeps its first (best) rank. A chunk of
    ``no_vector`` (its vector does not exist yet: PENDING or FAILED) could not be in the
    vector list; its keyword rank stands in for its vector rank in the score, so a chunk
    is not pushed down for waiting on its embedding (its ``vector_rank`` stays None).
    With ``keyword_weight`` 0 nothing stands in: the keyword list is ignored.

    ``keyword_led`` (an identifier query, see :class:`Fusion`): the keyword list in its
    order, then the vector list's other chunks in theirs, each scored by its position.
    """
    ranks: dict[int, list[int | None]] = {}
    for index, ids in enumerate((vector, keyword)):
        for rank, chunk_id in enumerate(ids, 1):
            slot = ranks.setdefault(chunk_id, [None, None])
            if slot[index] is None:
                slot[index] = rank
    weights = (float(fusion.vector_weight), float(fusion.keyword_weight))
    if keyword_led and weights[1] > 0:
        return _keyword_led(ranks, k=k, fusion=fusion)
    waiting = frozenset(no_vector)
    constant = float(fusion.constant)
    fused: list[Ranked] = []
    for chunk_id, (vector_rank, keyword_rank) in ranks.items():
        score = 0.0
        if vector_rank is not None:
            score += weights[0] / (constant + vector_rank)
        elif keyword_rank is not None and chunk_id in waiting and weights[1] > 0:
            score += weights[0] / (constant + keyword_rank)
        if keyword_rank is not None:
            score += weights[1] / (constant + keyword_rank)
        fused.append(
            Ranked(
                chunk_id=chunk_id,
                score=score,
                vector_rank=vector_rank,
                keyword_rank=keyword_rank,
            )
        )
    fused.sort(key=lambda r: (-r.score, r.chunk_id))
    return fused[:k]


def _keyword_led(ranks: dict[int, list[int | None]], *, k: int, fusion: Fusion) -> list[Ranked]:
    big = 1 << 62
    order = sorted(
        ranks.items(),
        key=lambda item: (
            item[1][1] if item[1][1] is not None else big,
            item[1][0] if item[1][0] is not None else big,
            item[0],
        ),
    )
    total = float(fusion.vector_weight) + float(fusion.keyword_weight)
    constant = float(fusion.constant)
    return [
        Ranked(
            chunk_id=chunk_id,
            score=total / (constant + position),
            vector_rank=vector_rank,
            keyword_rank=keyword_rank,
        )
        for position, (chunk_id, (vector_rank, keyword_rank)) in enumerate(order[:k], 1)
    ]
