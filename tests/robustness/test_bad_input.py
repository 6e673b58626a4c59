"""Bad input gets a typed error and changes nothing; odd but valid input survives verbatim.

This extends ``tests/core`` (which checks a first set of refusals with a local
embedder): here every refusal is checked against the emulator and a database that
already holds a document, in both ingestion modes, and "changes nothing" means every
table keeps its row count and the emulator receives no request at all. Input that is
valid however odd it looks (SQL, FTS syntax, every kind of Unicode) must come back
from search exactly as it went in.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asemantic import (
    ChunkTooLargeError,
    CoreConfig,
    Document,
    EmptyDocumentError,
    GeminiSettings,
    GoogleKeyring,
    InputFileError,
    InvalidInputError,
    InvalidModeError,
    SemanticCore,
    UndecodableTextError,
)
from asemantic.adapters.sqlite import SqliteStore
from asemantic.ports import SearchFilters
from tests.robustness.conftest import (
    BATCH_KEY,
    DEFAULT_KEY,
    SPACE,
    OpenCore,
    RevocableEmulator,
    drain,
    fast_retry,
    table_counts,
)
from tests.support import sqlite_of


async def _schema(core: SemanticCore) -> object:
    """The SQLite file's schema (no table dropped or added by an injection); elsewhere
    the table counts through the ports."""
    if isinstance(core.store, SqliteStore):
        return await sqlite_of(core).fetchall("SELECT type, name, sql FROM sqlite_master")
    return await table_counts(core)


GIANT = "word " * 3000  # about 3,000 tokens: over the model's 2,048-token input


def _deep(levels: int) -> dict[str, Any]:
    root: dict[str, Any] = {}
    node = root
    for _ in range(levels):
        node["a"] = {}
        node = node["a"]
    return root


def _cyclic() -> dict[str, Any]:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    return loop


BAD_DOCUMENTS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"document": "\u00a0\u2003\u3000\n\t "}, EmptyDocumentError, "unicode-spaces"),
    ({"document": "\ufeff"}, EmptyDocumentError, "bom-only"),
    ({"document": "\ufeff \n"}, EmptyDocumentError, "bom-and-spaces"),
    ({"document": "a" * 50_000_001}, InvalidInputError, "over-size-limit"),
    ({"document": "fine text\n\n" * 1000 + "late \x00 nul"}, UndecodableTextError, "late-nul"),
    ({"document": "low \udc80 surrogate"}, UndecodableTextError, "low-surrogate"),
    ({"document": "pair \ud83d\ude00 split"}, UndecodableTextError, "split-pair"),
    ({"title": "bad \ud800 title"}, UndecodableTextError, "title-surrogate"),
    ({"title": GIANT}, ChunkTooLargeError, "giant-title"),
    ({"title": 42}, InvalidInputError, "title-not-str"),
    ({"document": "## " + GIANT + "\n\nbody text"}, ChunkTooLargeError, "giant-heading"),
    (
        {"document": "# Doc\n\n## ok\n\n### " + GIANT + "\n\nbody"},
        ChunkTooLargeError,
        "giant-nested-heading",
    ),
    ({"source": ""}, InvalidInputError, "empty-source"),
    ({"source": " \t"}, InvalidInputError, "blank-source"),
    ({"mode": None}, InvalidModeError, "mode-none"),
    ({"mode": "batch"}, InvalidModeError, "mode-unknown"),
    ({"mode": ""}, InvalidModeError, "mode-empty"),
    ({"mode": 1}, InvalidModeError, "mode-int"),
    ({"metadata": {1: "x"}}, InvalidInputError, "meta-int-key"),
    ({"metadata": {None: "x"}}, InvalidInputError, "meta-none-key"),
    ({"metadata": {("a", "b"): "x"}}, InvalidInputError, "meta-tuple-key"),
    ({"metadata": {"a": {"b": {2: "x"}}}}, InvalidInputError, "meta-nested-key"),
    ({"metadata": {"n": math.nan}}, InvalidInputError, "meta-nan"),
    ({"metadata": {"n": [1, {"x": -math.inf}]}}, InvalidInputError, "meta-inf"),
    ({"metadata": {"s": {1, 2}}}, InvalidInputError, "meta-set"),
    ({"metadata": {"s": frozenset()}}, InvalidInputError, "meta-frozenset"),
    ({"metadata": {"b": b"bytes"}}, InvalidInputError, "meta-bytes"),
    ({"metadata": {"o": object()}}, InvalidInputError, "meta-object"),
    ({"metadata": {"c": 1 + 2j}}, InvalidInputError, "meta-complex"),
    ({"metadata": {"i": 2**63}}, InvalidInputError, "meta-int-overflow"),
    ({"metadata": _deep(100)}, InvalidInputError, "meta-deep-100"),
    ({"metadata": _deep(5000)}, InvalidInputError, "meta-deep-5000"),
    ({"metadata": _cyclic()}, InvalidInputError, "meta-cycle"),
    ({"metadata": {"big": "x" * 1_100_000}}, InvalidInputError, "meta-too-big"),
    ({"metadata": {"k": "\ud800"}}, UndecodableTextError, "meta-surrogate-value"),
    ({"metadata": {"\udfff": 1}}, UndecodableTextError, "meta-surrogate-key"),
    ({"metadata": [("a", 1)]}, InvalidInputError, "meta-not-mapping"),
]


@pytest.fixture
async def seeded(open_core: OpenCore, emulator: RevocableEmulator) -> SemanticCore:
    """A core whose database already holds one READY and one PENDING document."""
    core = await open_core()
    await core.ingest("# Seed\n\nalready here, embedded", source="seed-ready")
    await core.ingest("# Seed\n\nalready here, queued", source="seed-pending", mode="async")
    emulator.clear_requests()
    return core


async def _refusal(
    core: SemanticCore,
    emulator: RevocableEmulator,
    call: Callable[[], Awaitable[object]],
    error: type[Exception],
) -> str | None:
    """None if ``call`` raised ``error`` and changed nothing; else what went wrong."""
    before = await table_counts(core)
    try:
        await call()
    except error:
        pass
    except Exception as exc:  # reported with the case's name below
        return f"raised {type(exc).__name__}: {str(exc)[:120]}"
    else:
        return "accepted"
    if await table_counts(core) != before:
        return "changed the database"
    if emulator.requests:
        return f"called the emulator: {[r.endpoint for r in emulator.requests]}"
    if await core.store.integrity_check() != "ok":
        return "broke integrity"
    return None


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_bad_documents_are_refused_typed_and_write_nothing(
    seeded: SemanticCore, emulator: RevocableEmulator, mode: str
) -> None:
    problems = {}
    for changes, error, name in BAD_DOCUMENTS:
        kwargs: dict[str, Any] = {"document": "# Fine\n\nfine text", "source": "new", "mode": mode}
        kwargs.update(changes)
        problem = await _refusal(seeded, emulator, partial(seeded.ingest, **kwargs), error)
        if problem:
            problems[name] = problem
    assert problems == {}
    assert len(BAD_DOCUMENTS) >= 35


BAD_NAMES: list[tuple[str, str]] = [
    ("bad \ud800 high surrogate", "surrogate-high"),
    ("bad \udfff low surrogate", "surrogate-low"),
    ("bad \x00 nul", "nul"),
]


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_nul_and_lone_surrogates_in_names_and_filters_are_refused(
    seeded: SemanticCore, emulator: RevocableEmulator, mode: str
) -> None:
    """Sources, titles, filters and delete_document's argument: typed, nothing written."""
    problems = {}
    for bad, case in BAD_NAMES:
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "source": partial(seeded.ingest, "fine text", source=bad, mode=mode),
            "title": partial(seeded.ingest, "fine text", source="new", title=bad, mode=mode),
            "delete": partial(seeded.delete_document, bad),
            "filter-source": partial(seeded.search, "fine", filters={"source": bad}),
            "filter-value": partial(seeded.search, "fine", filters={"team": bad}),
            "filter-key": partial(seeded.search, "fine", filters={bad: 1}),
        }
        if case == "nul":  # metadata may hold NUL (stored escaped in JSON): see below
            del calls["filter-value"], calls["filter-key"]
        for where, call in calls.items():
            problem = await _refusal(seeded, emulator, call, UndecodableTextError)
            if problem:
                problems[f"{case} in {where}"] = problem
    assert problems == {}


async def test_nul_in_metadata_round_trips_and_filters_match_it(
    seeded: SemanticCore, emulator: RevocableEmulator
) -> None:
    metadata = {"key\x00": "value\x00 end", "plain": "a\x00"}
    await seeded.ingest("# Nul meta\n\nsome text", source="nul-meta", metadata=metadata)
    hits = await seeded.search("some text", k=5, filters={"key\x00": "value\x00 end"})
    assert [(h.source, h.document_metadata) for h in hits] == [("nul-meta", metadata)]
    assert await seeded.search("some text", k=5, filters={"key\x00": "value"}) == []
    assert await seeded.search("some text", k=5, filters={"plain": "a"}) == []


BAD_FILES: list[tuple[str, bytes, type[Exception], str]] = [
    ("bad.md", b"caf\xff", UndecodableTextError, "invalid-start-byte"),
    ("trunc.md", b"euro \xe2\x82", UndecodableTextError, "truncated-sequence"),
    ("overlong.md", b"slash \xc0\xaf", UndecodableTextError, "overlong"),
    ("cesu.md", b"pair \xed\xa0\x80", UndecodableTextError, "encoded-surrogate"),
    ("utf16.txt", "utf-16 text".encode("utf-16"), UndecodableTextError, "utf16-bom"),
    ("nul.txt", b"text\x00\x00\x00binary", UndecodableTextError, "nul-bytes"),
    ("bom.md", b"\xef\xbb\xbf", EmptyDocumentError, "bom-only"),
    ("blank.txt", b"\xc2\xa0\n\r\n\t", EmptyDocumentError, "nbsp-crlf"),
    ("giant.md", ("# " + GIANT + "\n\nbody").encode(), ChunkTooLargeError, "giant"),
    ("noext", b"plain text", InputFileError, "no-suffix"),
    ("data.json", b"{}", InputFileError, "json"),
]


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_bad_files_are_refused_typed_and_write_nothing(
    seeded: SemanticCore, emulator: RevocableEmulator, tmp_path: Path, mode: str
) -> None:
    problems = {}
    for name, content, error, case in BAD_FILES:
        path = tmp_path / name
        path.write_bytes(content)
        problem = await _refusal(
            seeded, emulator, partial(seeded.ingest_file, path, mode=mode), error
        )
        if problem:
            problems[case] = problem
    for case, target in (("missing", tmp_path / "missing.md"), ("directory", tmp_path)):
        problem = await _refusal(
            seeded, emulator, partial(seeded.ingest_file, target, mode=mode), InputFileError
        )
        if problem:
            problems[case] = problem
    assert problems == {}


BAD_QUERIES: list[tuple[str, type[Exception], str]] = [
    ("word " * 2100, ChunkTooLargeError, "over-2048-tokens"),
    ("nul \x00 query", UndecodableTextError, "nul"),
    ("lone \udc00", UndecodableTextError, "surrogate"),
    ("\u2003\u00a0", EmptyDocumentError, "unicode-spaces"),
]


async def test_bad_queries_are_refused_without_a_call(
    seeded: SemanticCore, emulator: RevocableEmulator
) -> None:
    problems = {}
    for query, error, case in BAD_QUERIES:
        problem = await _refusal(seeded, emulator, partial(seeded.search, query), error)
        if problem:
            problems[case] = problem
    assert problems == {}


async def test_duplicate_ingestion_costs_nothing(
    seeded: SemanticCore, emulator: RevocableEmulator, tmp_path: Path
) -> None:
    text = "# Twice\n\n" + "\n\n".join(f"paragraph {i} " * 80 for i in range(6))
    first = await seeded.ingest(text, source="twice", metadata={"team": "a"})
    path = tmp_path / "twice.md"
    path.write_text(text, encoding="utf-8")
    from_file = await seeded.ingest_file(path)
    await drain(seeded, emulator)
    before = await table_counts(seeded)
    emulator.clear_requests()
    for mode in ("sync", "async", "auto"):
        again = await seeded.ingest(text, source="twice", metadata={"team": "a"}, mode=mode)
        assert again.chunks_stored == again.tokens_embedded == again.chunks_pending == 0
        assert again.chunks_unchanged == first.chunks_stored
        assert again.document_id == first.document_id
        file_again = await seeded.ingest_file(path, mode=mode)
        assert file_again.chunks_stored == 0
        assert file_again.document_id == from_file.document_id
    assert emulator.requests == ()
    assert await table_counts(seeded) == before
    # The same text with other metadata re-embeds nothing either (only the row changes).
    changed = await seeded.ingest(text, source="twice", metadata={"team": "b"})
    assert changed.tokens_embedded == 0
    assert emulator.requests == ()


SQL_AND_FTS = [
    "'); DROP TABLE chunks; --",
    '"foo" NEAR bar*',
    "Robert'); DROP TABLE documents;--",
    "x' OR '1'='1",
    "%_ LIKE '%' ESCAPE '\\'",
    "MATCH 'a*' AND k = 1000 -- vec0",
    "json_extract(metadata_json, '$.a') /* comment */",
    "NEAR(one two, 3) OR title:secret^ AND -excluded",
    "$.a[0] \\u0000 \\x00 ?1 :name @p",
]


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_sql_and_fts_looking_text_is_stored_and_returned_verbatim(
    seeded: SemanticCore, emulator: RevocableEmulator, mode: str
) -> None:
    for i, text in enumerate(SQL_AND_FTS):
        await seeded.ingest(
            Document(text=text, source=text, title=text, metadata={text: text, "i": i}),
            mode=mode,
            kind="plain",
        )
    await drain(seeded, emulator)
    tables = await _schema(seeded)
    for i, text in enumerate(SQL_AND_FTS):
        hits = await seeded.search(text, k=1, filters={"source": text})
        assert [(h.text, h.source, h.title) for h in hits] == [(text, text, text)]
        assert hits[0].document_metadata == {text: text, "i": i}
        # A mapping's "$..." keys are operators; SearchFilters matches any key literally.
        literal = SearchFilters(metadata={text: text})
        by_meta = await seeded.search(
            text, k=50, filters=literal if text.startswith("$") else {text: text}
        )
        assert [h.source for h in by_meta] == [text]
        snapshot = await seeded.store.get_document(text)
        assert snapshot is not None
    # Injection-shaped filter values match nothing (and break nothing).
    assert await seeded.search("x", k=50, filters={"i": "1' OR '1'='1"}) == []
    assert await seeded.search("x", k=50, filters={"source": "' OR 1=1 --"}) == []
    assert await _schema(seeded) == tables
    assert await seeded.store.integrity_check() == "ok"
    assert await seeded.delete_document(SQL_AND_FTS[0])
    assert (await table_counts(seeded))["chunks"] > 0


UNICODE_SAMPLES = [
    "日本語のテキストと中文文本와 한국어",
    "עברית עם ניקוד: שָׁלוֹם \u200f and العربية مع تشكيل: مَرْحَبًا",
    "family 👩\u200d👩\u200d👧\u200d👦 flag 🏳️\u200d🌈 skin 👋🏽 keycap 1️⃣",
    "combining: e\u0301 a\u0308 Z\u0324\u0354\u0367\u0311\u0313 zalgo",
    "NFC é vs NFD e\u0301 stay distinct",
    "astral \U0001d518\U0001d52b\U0001d526 \U000130c0 \U0001f004 \U0010fffd",
    "controls \u200b\u200c\u200d\u2060\ufeff inside, bidi \u202e reversed \u202c",
    "line\u2028separator\u2029paragraph\x85next",
]

_TEXT = st.text(
    alphabet=st.characters(
        exclude_categories=["Cs"],  # lone surrogates are refused (tested above)
        exclude_characters="\x00\r",  # NUL is refused; CR becomes LF (documented)
    ),
    min_size=1,
    max_size=120,
).map(str.strip)
_SCRIPTS = st.one_of(
    st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),  # CJK
    st.characters(min_codepoint=0x0590, max_codepoint=0x06FF),  # Hebrew, Arabic
    st.characters(categories=["Mn", "Me"]),  # combining marks
    st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF),  # emoji
    st.sampled_from(["\u200d", "\ufe0f", "\u200f", "\u200e", "\u202e", " ", "\n"]),
)
_MIXED = st.lists(_SCRIPTS, min_size=1, max_size=80).map("".join).map(str.strip)
EXAMPLES = int(os.environ.get("ROBUST_UNICODE_EXAMPLES", "60"))


@pytest.fixture
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as run:
        yield run


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=st.one_of(st.sampled_from(UNICODE_SAMPLES), _TEXT, _MIXED))
def test_unicode_round_trips_through_ingest_and_search(
    runner: asyncio.Runner, unicode_core: SemanticCore, text: str
) -> None:
    if not text.removeprefix("\ufeff").strip():
        return  # empty after trimming: the refusal is tested above
    text = text.removeprefix("\ufeff").strip()
    source = f"u-{next(_SOURCES)}"

    async def round_trip() -> None:
        await unicode_core.ingest(text, source=source, title=text[:40], kind="plain")
        hits = await unicode_core.search(text[:500], k=1, filters={"source": source})
        assert len(hits) == 1
        assert hits[0].text == text
        assert hits[0].title == text[:40]
        assert hits[0].source == source

    runner.run(round_trip())


_SOURCES = itertools.count()


@pytest.fixture
def unicode_core(
    runner: asyncio.Runner, tmp_path: Path, emulator: RevocableEmulator
) -> Iterator[SemanticCore]:
    opening = SemanticCore.open(
        tmp_path / "unicode.db",
        keys=GoogleKeyring(DEFAULT_KEY, batch_key=BATCH_KEY),
        config=CoreConfig(space=SPACE),
        gemini=GeminiSettings(
            base_url=emulator.base_url,
            transport=emulator.async_transport(),
            retry=fast_retry(),
        ),
    )
    core = runner.run(opening._open())
    yield core
    runner.run(core.aclose())
