"""The pruning bound and the index file: exact answers, and a file that is never
trusted when it does not agree with the database."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import struct
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asemantic.adapters.sqlite import SqliteStore, index_file, pruning
from asemantic.adapters.sqlite import memory_index as memindex_module
from asemantic.adapters.sqlite.matrix import VectorMatrix, _largest
from asemantic.domain.space import EmbeddingSpace
from asemantic.ports import SearchFilters
from tests.store.helpers import raw
from tests.store.test_memindex import vector_write

DIMS = 48
SPACE = EmbeddingSpace(model="random-test", dimensions=DIMS)
F32 = npt.NDArray[np.float32]


def unit(rows: F32) -> F32:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    out: F32 = np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0).astype(np.float32)
    return out


def clustered(rng: np.random.Generator, n: int, d: int, centres: int, noise: float) -> F32:
    middle = rng.standard_normal((centres, d)).astype(np.float32)
    rows = middle[rng.integers(0, centres, n)] + noise * rng.standard_normal((n, d))
    return unit(rows.astype(np.float32))


def data(kind: str, rng: np.random.Generator, n: int, d: int) -> F32:
    if kind == "clustered":
        return clustered(rng, n, d, 8, 0.3)
    if kind == "gaussian":
        return unit(rng.standard_normal((n, d)).astype(np.float32))
    if kind == "duplicates":  # many rows exactly equal: ties at the boundary
        base = clustered(rng, max(1, n // 20), d, 4, 0.2)
        return base[rng.integers(0, len(base), n)].copy()
    if kind == "low-rank":  # rows entirely inside a few directions: residuals near 0
        return unit((rng.standard_normal((n, 3)) @ rng.standard_normal((3, d))).astype(np.float32))
    if kind == "zeros":  # zero rows and near-duplicates of the query's neighbours
        rows = clustered(rng, n, d, 4, 0.05)
        rows[rng.integers(0, n, n // 5)] = 0.0
        return rows
    raise AssertionError(kind)


def exact(
    rows: F32, ids: npt.NDArray[np.int64], q: F32, k: int, allowed: npt.NDArray[np.bool_]
) -> tuple[list[int], list[float]]:
    """The top k by float64 scores, ties by id (the reference)."""
    qn = q.astype(np.float64) / max(float(np.linalg.norm(q)), 1e-30)
    scores = rows.astype(np.float64) @ qn
    order = np.lexsort((ids, -scores))
    order = order[allowed[order]][:k]
    return ids[order].tolist(), (1.0 - scores[order]).tolist()


def check_same(
    got: tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]],
    want: tuple[list[int], list[float]],
) -> None:
    """The same top k: equal ids, except that rows whose scores differ by float32
    rounding alone may swap (their distances then agree to 1e-5)."""
    ids, distances = got
    want_ids, want_d = want
    assert len(ids) == len(want_ids)
    assert np.allclose(distances, want_d, atol=1e-5)
    if list(ids) != want_ids:
        kth = want_d[-1]
        differing = set(ids.tolist()) ^ set(want_ids)
        by_id = dict(zip(ids.tolist(), distances.tolist(), strict=True))
        by_id.update(zip(want_ids, want_d, strict=True))
        assert all(abs(by_id[i] - kth) <= 1e-5 for i in differing), (ids, want_ids)


def build(rows: F32, *, width: int = 8) -> tuple[VectorMatrix, npt.NDArray[np.int64]]:
    n = len(rows)
    ids = np.arange(1, n + 1, dtype=np.int64) * 3  # not the row numbers
    matrix = VectorMatrix(rows.shape[1])
    matrix.adopt(ids, rows.copy(), (np.arange(n) // 10 + 1).astype(np.int64))
    matrix.prune_with(pruning.fit_basis(rows, width))
    return matrix, ids


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["clustered", "gaussian", "duplicates", "low-rank", "zeros"]),
    seed=st.integers(0, 10_000),
    n=st.integers(50, 3000),
    k=st.integers(1, 40),
    width=st.integers(1, 24),
    filtered=st.sampled_from([None, 0.05, 0.5, 0.95]),
    from_stored=st.booleans(),
)
def test_pruned_search_is_the_exact_top_k(
    kind: str, seed: int, n: int, k: int, width: int, filtered: float | None, from_stored: bool
) -> None:
    rng = np.random.default_rng(seed)
    rows = data(kind, rng, n, DIMS)
    matrix, ids = build(rows, width=width)
    base = rows[rng.integers(0, n)] if from_stored else rng.standard_normal(DIMS)
    q: F32 = (base + 0.01 * rng.standard_normal(DIMS)).astype(np.float32)
    documents = None
    allowed = np.ones(n, dtype=bool)
    if filtered is not None:  # a share of the documents: gathered, or masked (broad)
        every = np.arange(1, (n - 1) // 10 + 2)
        documents = every[rng.random(len(every)) < filtered]
        allowed = np.isin(np.arange(n) // 10 + 1, documents)
    got = matrix.search(q, k, documents=documents)
    check_same(got, exact(rows, ids, q, k, allowed))


def test_the_bound_prunes_clustered_rows_and_gives_up_on_gaussian_ones() -> None:
    rng = np.random.default_rng(3)
    rows = clustered(rng, 20_000, 96, 16, 0.3)
    matrix, ids = build(rows, width=24)
    for i in range(20):
        q = rows[i * 97].copy()
        check_same(matrix.search(q, 10), exact(rows, ids, q, 10, np.ones(len(rows), bool)))
    assert matrix.pruned_searches == 20
    noise = unit(rng.standard_normal((20_000, 96)).astype(np.float32))
    matrix, ids = build(noise, width=24)
    for i in range(20):
        q = noise[i].copy()
        check_same(matrix.search(q, 10), exact(noise, ids, q, 10, np.ones(len(noise), bool)))
    assert matrix.pruned_searches == 0  # it fell back to the full scan, exactly


def test_a_broad_filter_prunes_too() -> None:
    """Half the documents: the bound runs over every row with the others masked out."""
    rng = np.random.default_rng(5)
    rows = clustered(rng, 20_000, 96, 16, 0.3)
    matrix, ids = build(rows, width=24)
    documents = np.arange(2, 2001, 2, dtype=np.int64)
    allowed = np.isin(np.arange(len(rows)) // 10 + 1, documents)
    for i in range(20):
        q = rows[i * 97 + 3].copy()
        got = matrix.search(q, 10, documents=documents)
        check_same(got, exact(rows, ids, q, 10, allowed))
        assert allowed[got[0] // 3 - 1].all()
    assert matrix.pruned_searches == 20


def test_ties_at_the_boundary_go_to_the_lowest_ids() -> None:
    rng = np.random.default_rng(8)
    rows = clustered(rng, 5000, DIMS, 8, 0.3)
    rows[100:400] = rows[7]  # 301 rows tied with the query's best match
    matrix, ids = build(rows)
    got, distances = matrix.search(rows[7].copy(), 5)
    assert got.tolist() == sorted(ids[[7, *range(100, 104)]].tolist())
    assert matrix.pruned_searches == 1
    assert np.allclose(distances, 0.0, atol=1e-6)


def test_mutations_keep_the_bound_true() -> None:
    """Rows added after the basis was fit (far from it), replaced and removed."""
    rng = np.random.default_rng(4)
    rows = clustered(rng, 4000, DIMS, 6, 0.2)
    matrix, _ = build(rows)
    current = {int(i): rows[j] for j, i in enumerate(matrix.ids())}
    outsiders = unit(rng.standard_normal((600, DIMS)).astype(np.float32))
    new_ids = list(range(20_000, 20_600))
    matrix.upsert(new_ids, outsiders, [9999] * 600)
    current.update(zip(new_ids, outsiders, strict=True))
    replaced = [3 * j for j in range(1, 300)]
    fresh = unit(rng.standard_normal((len(replaced), DIMS)).astype(np.float32))
    matrix.upsert(replaced, fresh, [1] * len(replaced))
    current.update(zip(replaced, fresh, strict=True))
    gone = [3 * j for j in range(1000, 1500)]
    assert matrix.remove(gone) == 500
    for g in gone:
        del current[g]
    keys = np.array(sorted(current), dtype=np.int64)
    table = np.stack([current[int(i)] for i in keys])
    for i in range(15):
        q = table[i * 131].copy() if i % 2 else outsiders[i].copy()
        check_same(matrix.search(q, 10), exact(table, keys, q, 10, np.ones(len(keys), bool)))


# --- through the store, with the index file -------------------------------------------


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pruning and the index file from 100 rows on (instead of 50,000)."""
    monkeypatch.setattr(memindex_module, "PRUNE_MIN_ROWS", 100)
    monkeypatch.setattr(memindex_module, "FILE_MIN_ROWS", 100)


async def fill(store: SqliteStore, docs: int = 12, per_doc: int = 40, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    rows = clustered(rng, docs * per_doc, DIMS, 5, 0.3)
    for d in range(docs):
        block = rows[d * per_doc : (d + 1) * per_doc]
        await store.write_document(vector_write(f"doc{d}", block, metadata={"g": d % 2}))


def queries(count: int = 8) -> list[bytes]:
    rng = np.random.default_rng(77)
    return [rng.standard_normal(DIMS).astype("<f4").tobytes() for _ in range(count)]


async def hits(store: SqliteStore, q: bytes, filters: SearchFilters | None = None) -> list[int]:
    return [h.chunk_id for h in await store.search(q, k=10, filters=filters)]


async def answers(store: SqliteStore) -> list[list[int]]:
    out = []
    for q in queries():
        out.append(await hits(store, q))
        out.append(await hits(store, q, SearchFilters(metadata={"g": 1})))
    return out


async def vec0_answers(path: Path) -> list[list[int]]:
    store = await SqliteStore.open(path, space=SPACE, memory_index=False)
    try:
        return await answers(store)
    finally:
        await store.aclose()


async def opened(path: Path) -> tuple[SqliteStore, memindex_module.MemoryIndex]:
    store = await SqliteStore.open(path, space=SPACE)
    await store.search(queries()[0], k=1)
    index = store._index
    assert index is not None
    if index._writing is not None:
        await index._writing
    return store, index


async def written(path: Path, seed: int = 0) -> None:
    """A database with its index file written."""
    store = await SqliteStore.open(path, space=SPACE)
    try:
        await fill(store, seed=seed)
    finally:
        await store.aclose()
    store, index = await opened(path)
    try:
        assert (index.reloads, index.file_writes) == (1, 1)
    finally:
        await store.aclose()
    assert index_file.index_path(path).exists()


async def test_a_reopen_maps_the_file_and_answers_as_vec0(small: None, db_path: Path) -> None:
    await written(db_path)
    store, index = await opened(db_path)
    try:
        assert (index.file_loads, index.reloads) == (1, 0)
        assert await answers(store) == await vec0_answers(db_path)
        assert index._matrix.pruned_searches > 0
    finally:
        await store.aclose()


async def test_changes_after_the_file_are_caught_up_by_delta(small: None, db_path: Path) -> None:
    await written(db_path)
    other = await SqliteStore.open(db_path, space=SPACE, index_file=False)
    try:
        await other.delete_document("doc3")
        near = np.frombuffer(queries()[2], "<f4").reshape(1, -1)
        await other.write_document(vector_write("late", np.repeat(near, 3, axis=0)))
    finally:
        await other.aclose()
    store, index = await opened(db_path)
    try:
        assert (index.file_loads, index.reloads) == (1, 0)
        assert await answers(store) == await vec0_answers(db_path)
        first = await store.search(queries()[2], k=3)
        assert {h.source for h in first} == {"late"}
    finally:
        await store.aclose()


def _flip(path: Path, offset: int) -> None:
    with path.open("r+b") as stream:
        stream.seek(offset)
        byte = stream.read(1)
        stream.seek(offset)
        stream.write(bytes([byte[0] ^ 0x10]))


@pytest.mark.parametrize(
    "damage", ["truncated", "header", "vectors", "projected", "ids", "empty", "other-database"]
)
async def test_a_damaged_or_foreign_file_is_never_used(
    small: None, db_path: Path, tmp_path: Path, damage: str
) -> None:
    await written(db_path)
    target = index_file.index_path(db_path)
    size = target.stat().st_size
    if damage == "truncated":
        os.truncate(target, size - 4096)
    elif damage == "header":
        _flip(target, 40)
    elif damage == "empty":
        target.write_bytes(b"")
    elif damage == "other-database":
        other_db = tmp_path / "other.db"
        await written(other_db, seed=1)  # the same ids and log, other vectors
        os.replace(index_file.index_path(other_db), target)
    else:
        name = {"vectors": "rows", "projected": "projected", "ids": "ids"}[damage]
        _flip(target, _offset_of(target, name) + 100)
    store, index = await opened(db_path)
    try:
        assert (index.file_loads, index.reloads) == (0, 1)
        assert await answers(store) == await vec0_answers(db_path)
    finally:
        await store.aclose()
    assert index_file.read(target, DIMS) is not None  # rewritten after the load


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(600):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


@pytest.mark.parametrize("damaged", [False, True])
async def test_large_files_have_their_vectors_checked_in_the_background(
    small: None, db_path: Path, monkeypatch: pytest.MonkeyPatch, damaged: bool
) -> None:
    """Above VERIFY_LATER_BYTES the file is used at once and its vectors' checksums
    are verified on a worker thread; a mismatch makes the next search reload."""
    monkeypatch.setattr(memindex_module, "VERIFY_LATER_BYTES", 0)
    await written(db_path)
    target = index_file.index_path(db_path)
    if damaged:
        # the lowest byte of a float: too small a change for the sampled comparison
        _flip(target, _offset_of(target, "rows") + 4 * DIMS * 7)
    store, index = await opened(db_path)
    try:
        assert index.file_loads == 1
        await until(lambda: index.files_verified + index.corrupt_files == 1)
        assert (index.files_verified, index.corrupt_files) == (int(not damaged), int(damaged))
        assert await answers(store) == await vec0_answers(db_path)
        assert index.reloads == int(damaged)
        if index._writing is not None:
            await index._writing
    finally:
        await store.aclose()
    assert index_file.read(target, DIMS) is not None  # whole again


def _offset_of(path: Path, name: str) -> int:
    with path.open("rb") as stream:
        _, length, _ = struct.unpack("<8sQI", stream.read(20))
        header = json.loads(stream.read(length))
    return int(header["arrays"][name][0])


async def test_a_stale_file_whose_log_was_pruned_is_not_used(small: None, db_path: Path) -> None:
    await written(db_path)
    other = await SqliteStore.open(db_path, space=SPACE, index_file=False)
    try:
        await other.delete_document("doc1")
    finally:
        await other.aclose()
    with raw(db_path) as conn:  # as vector_log_prune would, far past the file
        conn.execute("DELETE FROM vector_log")
    store, index = await opened(db_path)
    try:
        assert (index.file_loads, index.reloads) == (0, 1)
        assert await answers(store) == await vec0_answers(db_path)
    finally:
        await store.aclose()


async def test_a_vector_changed_behind_the_log_is_caught_by_the_sample(
    small: None, db_path: Path
) -> None:
    """A file whose stamp matches but whose vectors do not (as a restored backup of
    the database would look): the sampled rows disagree, so it is rebuilt."""
    await written(db_path)
    with raw(db_path) as conn:
        rng = np.random.default_rng(5)
        ids = [int(r[0]) for r in conn.execute("SELECT rowid FROM vec_chunks").fetchall()]
        for chunk_id in ids:
            other = rng.standard_normal(DIMS).astype("<f4").tobytes()
            conn.execute("DELETE FROM vec_chunks WHERE rowid = ?", (chunk_id,))
            conn.execute(
                "INSERT INTO vec_chunks (rowid, embedding) VALUES (?, ?)", (chunk_id, other)
            )
    store, index = await opened(db_path)
    try:
        assert (index.file_loads, index.reloads) == (0, 1)
        assert await answers(store) == await vec0_answers(db_path)
    finally:
        await store.aclose()


async def test_a_process_killed_while_writing_leaves_no_file_to_trust(
    small: None, db_path: Path
) -> None:
    store = await SqliteStore.open(db_path, space=SPACE, index_file=False)
    try:
        await fill(store)
    finally:
        await store.aclose()
    script = textwrap.dedent(f"""
        import asyncio, sys, time
        sys.path.insert(0, {str(Path.cwd())!r})
        from pathlib import Path
        from asemantic.adapters.sqlite import SqliteStore, index_file
        from asemantic.adapters.sqlite import memory_index
        from tests.store.test_vecindex import SPACE
        memory_index.PRUNE_MIN_ROWS = memory_index.FILE_MIN_ROWS = 100
        real = index_file._write_body
        def slow(out, *args, **kwargs):
            header = real(out, *args, **kwargs)
            out.flush()
            print("writing", flush=True)
            time.sleep(60)
            return header
        index_file._write_body = slow
        async def main():
            s = await SqliteStore.open(Path({str(db_path)!r}), space=SPACE)
            await s.search(b"\\x00\\x00\\x80\\x3f" * {DIMS}, k=1)
            await asyncio.sleep(60)
        asyncio.run(main())
    """)
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE, cwd=Path.cwd()
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 60)
        assert line.strip() == b"writing"
        os.kill(child.pid, signal.SIGKILL)
        await asyncio.wait_for(child.wait(), 30)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    target = index_file.index_path(db_path)
    assert not target.exists()
    leftovers = list(db_path.parent.glob(target.name + ".*.tmp"))
    assert leftovers, "the killed writer's temporary file"
    store, index = await opened(db_path)
    try:
        assert (index.file_loads, index.reloads) == (0, 1)
        assert await answers(store) == await vec0_answers(db_path)
    finally:
        await store.aclose()
    assert target.exists()
    assert not list(db_path.parent.glob(target.name + ".*.tmp"))  # cleaned by the write
    store, index = await opened(db_path)
    try:
        assert index.file_loads == 1
    finally:
        await store.aclose()


async def test_a_file_that_cannot_be_written_means_no_file(small: None, db_path: Path) -> None:
    """Where the file cannot be written (here a directory holds its name), searches go
    on from memory, as without a file."""
    index_file.index_path(db_path).mkdir()
    store = await SqliteStore.open(db_path, space=SPACE)
    try:
        await fill(store)
    finally:
        await store.aclose()
    store, index = await opened(db_path)
    try:
        assert await answers(store) == await vec0_answers(db_path)
        assert (index.file_writes, index.reloads) == (0, 1)
    finally:
        await store.aclose()
    assert not list(db_path.parent.glob("*.tmp"))


async def test_no_file_below_the_threshold(db_path: Path) -> None:
    store = await SqliteStore.open(db_path, space=SPACE)
    try:
        await fill(store, docs=2, per_doc=10)
        await store.search(queries()[0], k=3)
    finally:
        await store.aclose()
    assert not index_file.index_path(db_path).exists()


def test_largest_finds_the_top_values_through_stretches() -> None:
    rng = np.random.default_rng(12)
    for total in (40_000, 100_003):
        values = rng.standard_normal(total).astype(np.float32)
        values[rng.integers(0, total, 50)] = 9.0  # ties among the largest
        for count in (1, 40, 160, 600, 1500):
            got = set(_largest(values, count).tolist())
            cut = np.sort(values)[-count]
            assert len(got) == count
            assert all(values[i] >= cut for i in got)


def test_rows_in_locality_order_are_scored_run_by_run_exactly() -> None:
    """40,000 clustered rows in the order the index file keeps them: the rows a search
    scores form runs, scored without a gather; the answer is still the exact top k."""
    rng = np.random.default_rng(13)
    rows = clustered(rng, 40_000, DIMS, 12, 0.25)
    basis = pruning.fit_basis(rows, 16)
    projected = np.empty((len(rows), 16), np.float32)
    pruning.project(rows, basis, projected, np.empty(len(rows), np.float32))
    rows = rows[pruning.locality_order(projected)].copy()
    matrix, ids = build(rows, width=16)
    everything = np.ones(len(rows), bool)
    for i in range(25):
        q = (rows[i * 1601] + 0.05 * rng.standard_normal(DIMS)).astype(np.float32)
        check_same(matrix.search(q, 10), exact(rows, ids, q, 10, everything))
        documents = np.arange(1, 4001, 3, dtype=np.int64)
        allowed = np.isin(np.arange(len(rows)) // 10 + 1, documents)
        check_same(matrix.search(q, 10, documents=documents), exact(rows, ids, q, 10, allowed))
    assert matrix.pruned_searches == 50


async def test_a_repeated_filter_is_read_again_only_after_a_commit(db_path: Path) -> None:
    """The documents a filter matches are remembered until anything is committed (by
    this store or another connection): then the next search reads them again."""
    store = await SqliteStore.open(db_path, space=SPACE)
    other = await SqliteStore.open(db_path, space=SPACE)
    try:
        await fill(store, docs=6, per_doc=5)
        q = queries(1)[0]
        group1 = SearchFilters(metadata={"g": 1})
        first = await hits(store, q, group1)
        index = store._index
        assert index is not None
        assert await hits(store, q, group1) == first
        assert index.filter_documents.hits == 1  # the second search: no scan
        # A change by this store's writer is seen at once.
        rng = np.random.default_rng(9)
        block = clustered(rng, 5, DIMS, 1, 0.1)
        await store.write_document(vector_write("doc1", block, metadata={"g": 0}))
        moved = await hits(store, q, group1)
        assert set(moved) != set(first) and index.filter_documents.hits == 1
        # And so is one by another connection (another process alike).
        await other.write_document(vector_write("doc1", block, metadata={"g": 1}))
        back = await hits(store, q, group1)
        assert len(back) == len(first) and index.filter_documents.hits == 1
        assert await hits(store, q, group1) == back and index.filter_documents.hits == 2
    finally:
        await other.aclose()
        await store.aclose()
