"""An exact in-memory BM25 index of the keyword table, kept in step with the database.

FTS5 finds the chunks holding a query's terms quickly, but ranking them means calling
``bm25()`` on every match, and a query of common words matches most chunks: 250 ms at
100,000 chunks. Here the same postings live in NumPy arrays, and a search is one
vectorised accumulation over the query terms' postings plus a partial sort, a few
milliseconds. FTS5 stays the durable index (and the fallback, with
``memory_index=False``), and the reference: the scores are FTS5's ``bm25()`` to the
bit (the same operations in the same order: :mod:`asemantic.domain.keywords`).

What is held, per chunk row of ``chunk_keywords`` (a *slot*): the chunk id, its
document (filters are on documents, so they become a mask over the slots), its length
in tokens and whether it is still current; per term, its postings (slots and term
frequencies) in one CSR layout built at load, plus a small per-term overlay of the
slots added since. ``N`` and the total length are kept as exact integers. A changed
chunk gets a new slot and its old one is marked dead (it no longer counts anywhere);
once the overlay or the dead slots grow large the layout is rebuilt from memory.

The tokens are read back from the FTS5 rows (the domain's tokens joined by single
spaces, :mod:`.keywords`), folded as FTS5's ``ascii`` tokenizer folds them (ASCII
letters only), so the terms are exactly the ones FTS5 indexed. A row FTS5 holds
without a chunk counts in ``N`` and the average length, as it does for ``bm25()``, but
is never a hit.

Keeping in step, for writes from this store, other connections and other processes
alike (the design of :mod:`.memory_index`): triggers on ``chunks`` append the id of
every chunk inserted, deleted, or whose text or document changed to ``keyword_log``
(:func:`ensure_keyword_log`, added on open), in the writing transaction, which also
writes the chunk's FTS5 row. Before each search one small query reads the log's bounds;
when there is anything past the last ``seq`` applied, the changed chunks' *current*
FTS5 rows are read and applied (state, not operations, so a later snapshot is
harmless). A chunk ingested PENDING is therefore found by the next search. If the log
was pruned past our position, or the delta is large, everything is reloaded.

The second keyword search starts loading the index in the background, on a read
connection of its own: the log head and every FTS5 row in one read transaction (one
snapshot), read in batches and built on a worker thread that gives up the GIL every
few dozen rows (about 5 s and 100 MiB at 100,000 chunks of 80 words). Until it is
done, and again after falling too far behind, keyword searches are FTS5's, with the
same results. Searches compute on the event loop without awaiting (a few milliseconds
at 100,000 chunks), so no search ever sees the index half-changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

import aiosqlite
import numpy as np
import numpy.typing as npt

from asemantic.adapters.sqlite.connection import add_once
from asemantic.adapters.sqlite.keywords import KEYWORD_TABLE
from asemantic.adapters.sqlite.memory_index import DocumentsByFilter
from asemantic.adapters.sqlite.search import is_filtered, matching_documents
from asemantic.domain.keywords import (
    BM25_B,
    BM25_K1,
    SCORE_DIGITS,
    idf,
    index_terms,
    terms_tokens,
)
from asemantic.ports import SearchFilters

__all__ = [
    "KEYWORD_LOG",
    "KEYWORD_LOG_DDL",
    "KeywordIndex",
    "ensure_keyword_log",
    "index_tokens_of_row",
    "keyword_index_rows",
]

logger = logging.getLogger(__name__)

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
F64 = npt.NDArray[np.float64]
B8 = npt.NDArray[np.bool_]

KEYWORD_LOG = "keyword_log"

KEYWORD_LOG_DDL: tuple[str, ...] = (
    # No AUTOINCREMENT (which costs a sqlite_sequence update per row): the prune
    # never deletes the newest entry, so a new one is always numbered past every other.
    f"""CREATE TABLE IF NOT EXISTS {KEYWORD_LOG} (
    seq INTEGER PRIMARY KEY,
    chunk_id INTEGER NOT NULL
)""",
    f"""CREATE TRIGGER IF NOT EXISTS chunks_keyword_log_insert AFTER INSERT ON chunks
    BEGIN INSERT INTO {KEYWORD_LOG} (chunk_id) VALUES (NEW.id); END""",
    f"""CREATE TRIGGER IF NOT EXISTS chunks_keyword_log_update
    AFTER UPDATE OF text, document_id ON chunks
    BEGIN INSERT INTO {KEYWORD_LOG} (chunk_id) VALUES (NEW.id); END""",
    f"""CREATE TRIGGER IF NOT EXISTS chunks_keyword_log_delete AFTER DELETE ON chunks
    BEGIN INSERT INTO {KEYWORD_LOG} (chunk_id) VALUES (OLD.id); END""",
    f"""CREATE TRIGGER IF NOT EXISTS keyword_log_prune AFTER INSERT ON {KEYWORD_LOG}
    WHEN NEW.seq % 4096 = 0
    BEGIN DELETE FROM {KEYWORD_LOG} WHERE seq <= NEW.seq - 65536; END""",
)
"""The log and its triggers (a trigger cannot sit on the FTS5 table, but its rows only
change with their chunk's insert, delete or text; :mod:`.keywords` keeps it so)."""

_LOG_BOUNDS = f"SELECT (SELECT MIN(seq) FROM {KEYWORD_LOG}), (SELECT MAX(seq) FROM {KEYWORD_LOG})"
_LOG_DELTA = (
    f"SELECT (SELECT MIN(seq) FROM {KEYWORD_LOG}), chunk_id FROM {KEYWORD_LOG} "
    "WHERE seq > ? AND seq <= ?"
)
_LOG_HEAD = f"SELECT COALESCE((SELECT MAX(seq) FROM {KEYWORD_LOG}), 0)"
# An FTS5 row as the index reads it: the chunk's text only where the row holds no terms
# (a contentless table would not).
_ROW = "k.rowid, k.terms, c.document_id, CASE WHEN k.terms IS NULL THEN c.text END"
# A load reads the rows in batches, in rowid order, inside one read transaction.
_ROWS_AFTER = (
    f"SELECT {_ROW} FROM {KEYWORD_TABLE} k LEFT JOIN chunks c ON c.id = k.rowid "
    "WHERE k.rowid > ? ORDER BY k.rowid LIMIT ?"
)
_LOAD_BATCH = 5_000
# A building thread holding the GIL makes the event loop's thread wait up to the
# interpreter's switch interval (5 ms) each time it needs it; giving it up every few
# dozen rows (about a millisecond of work) keeps searches during a load near their
# usual latency.
_YIELD_EVERY = 32
# Driven from the id list (CROSS JOIN keeps that order): rowid lookups in FTS5.
_CHANGED = (
    f"SELECT {_ROW} FROM json_each(?) j CROSS JOIN {KEYWORD_TABLE} k ON k.rowid = j.value "
    "LEFT JOIN chunks c ON c.id = k.rowid"
)
LOAD_AFTER = 2
"""The keyword search that starts the first load (the ones before are FTS5's)."""
_MIN_RELOAD_DELTA = 20_000
_MIN_OVERLAY = 50_000
_FOLD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_UPPER = re.compile("[A-Z]")
_K1_PLUS_1 = BM25_K1 + 1.0
_ONE_MINUS_B = 1 - BM25_B
# Rounding to SCORE_DIGITS decimals moves a score by at most half a unit of the last
# digit: anything this far below the k-th best score cannot reach the top k.
_ROUND_MARGIN = 2.0 * 10.0**-SCORE_DIGITS


async def ensure_keyword_log(conn: aiosqlite.Connection) -> None:
    """Add ``keyword_log`` and its triggers to a file without them, in a transaction
    of its own (as :func:`~asemantic.adapters.sqlite.vectors.ensure_vector_log` does:
    additive, no schema version of its own; a read-only check once they are there).
    Chunks already stored need no entry: an index loads every row the first time."""
    await add_once(conn, "keyword_log_prune", KEYWORD_LOG_DDL)


def index_tokens_of_row(terms: str | None, text: str | None) -> list[str]:
    """The tokens FTS5 indexed for a row: its ``terms`` split at the spaces, ASCII
    letters folded as the ``ascii`` tokenizer folds them (the chunk's text tokenised
    when the row holds no terms)."""
    if terms is None:
        terms = index_terms(text or "")
    if _UPPER.search(terms):
        terms = terms.translate(_FOLD)
    return terms_tokens(terms)


def _row_tokens(terms: object, text: object) -> list[str]:
    """:func:`index_tokens_of_row` of the columns of a fetched row (:data:`_ROW`)."""
    return index_tokens_of_row(
        None if terms is None else str(terms), None if text is None else str(text)
    )


@dataclass(slots=True)
class _Layout:
    """Every posting, by term then slot (CSR): term ``t``'s are ``starts[t]:starts[t+1]``."""

    vocabulary: dict[str, int]
    starts: I64
    slots: I32
    frequencies: I32

    def postings(self, term: str) -> tuple[I32, I32] | None:
        index = self.vocabulary.get(term)
        if index is None:
            return None
        lo, hi = int(self.starts[index]), int(self.starts[index + 1])
        if lo == hi:
            return None
        return self.slots[lo:hi], self.frequencies[lo:hi]

    @property
    def size(self) -> int:
        return len(self.slots)


def _layout(vocabulary: dict[str, int], terms: I64, slots: I64, frequencies: I64) -> _Layout:
    """The CSR layout of (term, slot, frequency) postings, each pair once, any order."""
    order = np.lexsort((slots, terms))
    terms = terms[order]
    counts = np.bincount(terms, minlength=len(vocabulary)) if len(terms) else None
    starts = np.zeros(len(vocabulary) + 1, dtype=np.int64)
    if counts is not None:
        np.cumsum(counts, out=starts[1:])
    return _Layout(
        vocabulary=vocabulary,
        starts=starts,
        slots=slots[order].astype(np.int32),
        frequencies=frequencies[order].astype(np.int32),
    )


@dataclass(slots=True)
class _Rows:
    """Per-slot arrays, grown by doubling."""

    ids: I64
    documents: I64
    lengths: F64
    alive: B8
    findable: B8
    count: int = 0

    @classmethod
    def empty(cls, capacity: int) -> _Rows:
        capacity = max(capacity, 16)
        return cls(
            ids=np.zeros(capacity, dtype=np.int64),
            documents=np.zeros(capacity, dtype=np.int64),
            lengths=np.zeros(capacity, dtype=np.float64),
            alive=np.zeros(capacity, dtype=np.bool_),
            findable=np.zeros(capacity, dtype=np.bool_),
        )

    def append(self, chunk_id: int, document: int | None, length: int) -> int:
        if self.count == len(self.ids):
            grown = _Rows.empty(2 * len(self.ids))
            for name in ("ids", "documents", "lengths", "alive", "findable"):
                getattr(grown, name)[: self.count] = getattr(self, name)[: self.count]
            self.ids, self.documents, self.lengths = grown.ids, grown.documents, grown.lengths
            self.alive, self.findable = grown.alive, grown.findable
        slot = self.count
        self.ids[slot] = chunk_id
        self.documents[slot] = 0 if document is None else document
        self.lengths[slot] = float(length)
        self.alive[slot] = True
        self.findable[slot] = document is not None
        self.count += 1
        return slot


@dataclass(slots=True)
class _State:
    rows: _Rows
    layout: _Layout
    slot_of: dict[int, int]
    overlay: dict[str, tuple[list[int], list[int]]] = field(default_factory=dict)
    overlay_size: int = 0
    dead: int = 0
    chunks: int = 0
    tokens: int = 0

    def add(self, chunk_id: int, document: int | None, tokens: list[str]) -> None:
        slot = self.rows.append(chunk_id, document, len(tokens))
        self.slot_of[chunk_id] = slot
        self.chunks += 1
        self.tokens += len(tokens)
        for term, frequency in Counter(tokens).items():
            entry = self.overlay.get(term)
            if entry is None:
                entry = self.overlay[term] = ([], [])
            entry[0].append(slot)
            entry[1].append(frequency)
            self.overlay_size += 1

    def remove(self, chunk_id: int) -> None:
        slot = self.slot_of.pop(chunk_id, None)
        if slot is None:
            return
        self.rows.alive[slot] = False
        self.rows.findable[slot] = False
        self.chunks -= 1
        self.tokens -= int(self.rows.lengths[slot])
        self.dead += 1

    def postings(self, term: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """The term's postings (slots, frequencies), dead slots included."""
        parts_s: list[npt.NDArray[np.int64]] = []
        parts_f: list[npt.NDArray[np.int64]] = []
        main = self.layout.postings(term)
        if main is not None:
            parts_s.append(main[0].astype(np.int64))
            parts_f.append(main[1].astype(np.int64))
        extra = self.overlay.get(term)
        if extra is not None:
            parts_s.append(np.asarray(extra[0], dtype=np.int64))
            parts_f.append(np.asarray(extra[1], dtype=np.int64))
        if not parts_s:
            empty = np.empty(0, dtype=np.int64)
            return empty, empty
        if len(parts_s) == 1:
            return parts_s[0], parts_f[0]
        return np.concatenate(parts_s), np.concatenate(parts_f)

    def needs_compaction(self) -> bool:
        limit = max(_MIN_OVERLAY, self.layout.size // 4)
        return self.overlay_size > limit or self.dead > max(1024, self.rows.count // 4)

    def compacted(self) -> _State:
        """The same index with dead slots dropped and the overlay in the layout."""
        rows, layout = self.rows, self.layout
        keep_slot = rows.alive[: rows.count]
        new_slot = np.cumsum(keep_slot) - 1
        terms = np.repeat(np.arange(len(layout.vocabulary), dtype=np.int64), np.diff(layout.starts))
        slots = layout.slots.astype(np.int64)
        frequencies = layout.frequencies.astype(np.int64)
        vocabulary = dict(layout.vocabulary)
        extra_t: list[int] = []
        extra_s: list[int] = []
        extra_f: list[int] = []
        for term, (term_slots, term_frequencies) in self.overlay.items():
            index = vocabulary.setdefault(term, len(vocabulary))
            extra_t.extend(itertools.repeat(index, len(term_slots)))
            extra_s.extend(term_slots)
            extra_f.extend(term_frequencies)
        terms = np.concatenate([terms, np.asarray(extra_t, dtype=np.int64)])
        slots = np.concatenate([slots, np.asarray(extra_s, dtype=np.int64)])
        frequencies = np.concatenate([frequencies, np.asarray(extra_f, dtype=np.int64)])
        live = keep_slot[slots]
        fresh_rows = _Rows.empty(int(keep_slot.sum()) + 1024)
        kept = int(keep_slot.sum())
        for name in ("ids", "documents", "lengths", "alive", "findable"):
            getattr(fresh_rows, name)[:kept] = getattr(rows, name)[: rows.count][keep_slot]
        fresh_rows.count = kept
        return _State(
            rows=fresh_rows,
            layout=_layout(vocabulary, terms[live], new_slot[slots[live]], frequencies[live]),
            slot_of={int(c): s for s, c in enumerate(fresh_rows.ids[:kept].tolist())},
            chunks=self.chunks,
            tokens=self.tokens,
        )

    def top(self, terms: Sequence[str], k: int, documents: I64 | None) -> list[tuple[int, float]]:
        """The ``k`` best (chunk id, BM25 score) for ``terms``, of ``documents`` if
        given: FTS5's ``bm25()`` negated, ranked by score to :data:`SCORE_DIGITS`
        decimals, ties by chunk id."""
        if not self.chunks:
            return []
        rows = self.rows
        total = rows.count
        average = float(self.tokens) / float(self.chunks)
        scores = np.zeros(total, dtype=np.float64)
        for term in terms:
            slots, frequencies = self.postings(term)
            holding = int(np.count_nonzero(rows.alive[slots])) if self.dead else len(slots)
            if not holding:
                continue
            weight = idf(self.chunks, holding)
            tf = frequencies.astype(np.float64)
            # FTS5: idf * ((tf * (k1 + 1)) / (tf + k1 * (1 - b + b * D / avgdl))).
            norm = BM25_K1 * (_ONE_MINUS_B + (BM25_B * rows.lengths[slots]) / average)
            scores[slots] += weight * ((tf * _K1_PLUS_1) / (tf + norm))
        wanted = scores > 0.0
        wanted &= rows.findable[:total]
        if documents is not None:
            allowed = np.zeros(int(max(documents.max(initial=0), rows.documents.max())) + 1, bool)
            allowed[documents] = True
            wanted &= allowed[rows.documents[:total]]
        chosen = np.flatnonzero(wanted)
        if not len(chosen):
            return []
        found = scores[chosen]
        if len(chosen) > k:
            kth = float(np.partition(found, len(found) - k)[len(found) - k])
            near = found >= kth - _ROUND_MARGIN - abs(kth) * 1e-12
            chosen, found = chosen[near], found[near]
        distinct, inverse = np.unique(found, return_inverse=True)
        rounded = np.array([round(float(s), SCORE_DIGITS) for s in distinct])[inverse]
        ids = rows.ids[chosen]
        order = np.lexsort((ids, -rounded))[:k]
        return [(int(ids[i]), float(found[i])) for i in order]


class _Builder:
    """An index of FTS5 rows (rowid, terms, document id or None, text or None), fed in
    batches: each batch's terms become arrays at once, so few Python objects live long
    (a load that kept every row and token alive would make the garbage collector stop
    every thread, the event loop's included, for a full collection)."""

    def __init__(self) -> None:
        self.vocabulary: defaultdict[str, int] = defaultdict(itertools.count().__next__)
        self.table = _Rows.empty(1024)
        self.slot_of: dict[int, int] = {}
        self.term_parts: list[npt.NDArray[np.int64]] = []
        self.slot_parts: list[npt.NDArray[np.int64]] = []
        self.tokens_total = 0

    def feed(self, rows: Iterable[Sequence[object]]) -> None:
        table, slot_of = self.table, self.slot_of
        first = table.count
        batch_terms: list[str] = []
        batch_lengths: list[int] = []
        for count, row in enumerate(rows, 1):
            if not count % _YIELD_EVERY:
                time.sleep(0)  # let the event loop's thread take the GIL (see _YIELD_EVERY)
            chunk_id, terms, document, text = row
            tokens = _row_tokens(terms, text)
            cid = int(chunk_id)  # type: ignore[call-overload]
            doc = None if document is None else int(document)  # type: ignore[call-overload]
            slot_of[cid] = table.append(cid, doc, len(tokens))
            self.tokens_total += len(tokens)
            batch_terms.extend(tokens)
            batch_lengths.append(len(tokens))
            if len(batch_terms) >= 1 << 20:
                self._flush(batch_terms, batch_lengths, first)
                batch_terms, batch_lengths, first = [], [], table.count
        self._flush(batch_terms, batch_lengths, first)
        self.table = table  # append may have grown it

    def _flush(self, terms: list[str], lengths: list[int], first: int) -> None:
        if not terms:
            return
        self.term_parts.append(
            np.fromiter(map(self.vocabulary.__getitem__, terms), np.int64, len(terms))
        )
        self.slot_parts.append(
            np.repeat(np.arange(first, first + len(lengths), dtype=np.int64), lengths)
        )

    def finish(self) -> _State:
        plain = dict(self.vocabulary)
        if self.term_parts:
            terms_all = np.concatenate(self.term_parts)
            slots_all = np.concatenate(self.slot_parts)
            keys, counts = np.unique((terms_all << 32) | slots_all, return_counts=True)
            layout = _layout(plain, keys >> 32, keys & 0xFFFFFFFF, counts.astype(np.int64))
        else:
            empty = np.empty(0, dtype=np.int64)
            layout = _layout(plain, empty, empty, empty)
        table = self.table
        return _State(
            rows=table,
            layout=layout,
            slot_of=self.slot_of,
            chunks=table.count,
            tokens=self.tokens_total,
        )


class KeywordIndex:
    """The keyword table of one database as in-memory postings, kept current.

    ``reader`` is a read-only connection of the store, used to catch up (small
    statements); ``connect`` opens a read-only connection of the same file for a full
    load, which runs in the background on a connection of its own (one read
    transaction, one snapshot, read in batches), so no search waits for it: until it
    is done, :meth:`top` answers None and the store searches FTS5 as it would without
    the index. The load starts at the second keyword search (:data:`LOAD_AFTER`), so a
    one-shot search (a command line run) never pays for a load it would not use;
    :meth:`loaded` starts it at once. Closing interrupts a load in progress.
    """

    def __init__(
        self,
        reader: aiosqlite.Connection,
        connect: Callable[[], Awaitable[aiosqlite.Connection]],
    ) -> None:
        self._reader = reader
        self._connect = connect
        self._state: _State | None = None
        self._seq = 0
        self._lock = asyncio.Lock()
        self._loading: asyncio.Task[None] | None = None
        self._load_conn: aiosqlite.Connection | None = None
        self._searches = 0
        self._closing = False
        self.filter_documents = DocumentsByFilter()
        """The documents recent filters matched (see :class:`DocumentsByFilter`)."""
        self.reloads = 0
        """How many full loads finished (the first included); for tests and stats."""
        self.failed_loads = 0
        """How many full loads failed (each logged; the next search starts another)."""

    def __len__(self) -> int:
        return 0 if self._state is None else self._state.chunks

    @property
    def ready(self) -> bool:
        """Whether the postings are loaded (a search may still have to catch up)."""
        return self._state is not None

    async def loaded(self) -> bool:
        """Start a full load if none is there, and wait for it (tests, warm-up): True
        once loaded, False if the load failed (logged) or the index was closed."""
        self._start_loading()
        while self._loading is not None:
            await asyncio.shield(self._loading)
        return self.ready

    async def top(
        self, terms: Sequence[str], k: int, *, documents: I64 | None = None
    ) -> list[tuple[int, float]] | None:
        """The ``k`` best (chunk id, score) for ``terms`` after catching up with the
        database (see :meth:`_State.top`), or None while the index is loading (the
        first time, or after falling too far behind): search FTS5 instead."""
        if self._state is None:
            self._searches += 1
            if self._searches >= LOAD_AFTER:
                self._start_loading()
            return None
        async with self._lock:
            if self._state is None or not await self._catch_up(self._state):
                self._state = None
                self._start_loading()
                return None
            state = self._state
        # No await from here on: this search sees one state of the index.
        return state.top(terms, k, documents)

    async def aclose(self) -> None:
        """Stop a load in progress (its connection is closed) and drop the postings."""
        self._closing = True
        task, self._loading = self._loading, None
        if task is not None:
            if self._load_conn is not None:
                await self._load_conn.interrupt()  # the statement running stops now
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        self._state = None

    def _start_loading(self) -> None:
        if self._loading is None and self._state is None and not self._closing:
            self._loading = asyncio.create_task(self._load(), name="asemantic-keyword-index")

    async def _catch_up(self, state: _State) -> bool:
        """Apply the log past our position; False when a full load is needed (the log
        was pruned past it, or the change is large)."""
        bounds = list(await self._reader.execute_fetchall(_LOG_BOUNDS))
        low, high = bounds[0]
        if high is None or int(high) <= self._seq:
            return True
        if int(low) > self._seq + 1 or int(high) - self._seq > max(
            _MIN_RELOAD_DELTA, state.chunks // 2
        ):
            return False
        rows = list(await self._reader.execute_fetchall(_LOG_DELTA, (self._seq, int(high))))
        if not rows or int(rows[0][0]) > self._seq + 1:
            return False  # pruned under us
        changed = sorted({int(row[1]) for row in rows})
        found = list(await self._reader.execute_fetchall(_CHANGED, (json.dumps(changed),)))
        # No await from here on: no search sees the index half-changed.
        for chunk_id in changed:
            state.remove(chunk_id)
        for chunk_id, terms, document, text in found:
            state.add(
                int(chunk_id),
                None if document is None else int(document),
                _row_tokens(terms, text),
            )
        self._seq = int(high)
        if state.needs_compaction():
            self._state = await asyncio.to_thread(state.compacted)
        return True

    async def _load(self) -> None:
        try:
            conn = self._load_conn = await self._connect()
            try:
                # One snapshot for the log head and the rows: a change committed in
                # between is applied again by the next catch-up (state, not operations).
                await conn.execute("BEGIN")
                head = list(await conn.execute_fetchall(_LOG_HEAD))
                builder = _Builder()
                last = -(1 << 63)
                while rows := list(await conn.execute_fetchall(_ROWS_AFTER, (last, _LOAD_BATCH))):
                    last = int(rows[-1][0])
                    await asyncio.to_thread(builder.feed, rows)
                    del rows
                await conn.execute("COMMIT")
            finally:
                self._load_conn = None
                await conn.close()
            state = await asyncio.to_thread(builder.finish)
            if self._closing:
                return
            async with self._lock:
                self._state = state
                self._seq = int(head[0][0])
            self.reloads += 1
            logger.debug(
                "keyword index loaded: %d chunks, %d postings", state.chunks, state.layout.size
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            if self._closing:
                return  # interrupted by aclose
            self.failed_loads += 1
            logger.warning("keyword index load failed; searching FTS5", exc_info=True)
        finally:
            if self._loading is asyncio.current_task():
                self._loading = None


# The keyword-search columns (as :func:`asemantic.adapters.hits.keyword_hits` reads
# them, the score put in by the caller) of chunks listed by id.
_HYDRATE = (
    "SELECT c.id, c.document_id, d.source, d.title, c.text, c.position, c.meta_json, "
    "d.metadata_json, c.embedding_status FROM json_each(?) j CROSS JOIN chunks c "
    "ON c.id = j.value JOIN documents d ON d.id = c.document_id"
)


async def keyword_index_rows(
    reader: aiosqlite.Connection,
    index: KeywordIndex,
    terms: Sequence[str],
    k: int,
    filters: SearchFilters | None,
) -> list[tuple[object, ...]] | None:
    """The rows of a keyword search answered from ``index``, best first, or None when
    the index is loading (search FTS5) or a chosen chunk vanished before its row was
    read (a write raced the search: the caller tries again if the index is ready)."""
    documents = None
    # While the index loads, top() answers None whatever the filter: skip its query.
    # (No await between this check and top()'s own, so they agree.)
    if filters is not None and is_filtered(filters) and index.ready:
        documents = await matching_documents(reader, index.filter_documents, filters)
        if not len(documents):
            return []
    best = await index.top(terms, k, documents=documents)
    if best is None:
        return None
    if not best:
        return []
    found = await reader.execute_fetchall(_HYDRATE, (json.dumps([i for i, _ in best]),))
    by_id = {int(row[0]): tuple(row) for row in found}
    if len(by_id) != len(best):
        return None
    return [(*by_id[i][:7], score, *by_id[i][7:]) for i, score in best]
