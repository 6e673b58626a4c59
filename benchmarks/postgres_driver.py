"""asyncpg against psycopg 3 on the work the PostgreSQL store does, in one run.

``python -m benchmarks.postgres_driver`` (``--rows N``, default 20,000 x 768) starts an
embedded PostgreSQL + pgvector (or uses ``$ASEMANTIC_TEST_POSTGRES_URL``) and times,
with each driver on its own fresh table, the median of ``--repeat`` runs of:

* ``executemany`` of ``rows`` chunk-like rows (id, ~300 bytes of text);
* vectors by binary COPY into a temporary table, then one ``UPDATE ... FROM`` (what
  ``bulk_update_vectors`` does), both drivers sending pgvector's binary format;
* a ``select 1`` round trip (median of 200);
* an exact KNN (``ORDER BY embedding <=> $1 LIMIT 10``, no index; median of 20).

psycopg is not an asemantic dependency: without it the psycopg column is left out, with
a message saying how to add it (``pip install "psycopg[binary]"``). This is the
measurement behind the README's choice of asyncpg; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
import numpy as np

from asemantic.adapters.postgres.connection import encode_vector, register_vector_codec
from asemantic.testing.postgres import LocalPostgres

__all__ = ["main", "measure"]

_TEXT = "lorem ipsum dolor sit amet " * 11


async def _median(work: Callable[[], Awaitable[object]], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        await work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def _asyncpg(url: str, rows: int, vectors: np.ndarray, repeat: int) -> dict[str, float]:
    conn = await asyncpg.connect(url)
    await register_vector_codec(conn)
    dims = vectors.shape[1]
    blobs = [v.tobytes() for v in vectors]
    data = [(i, _TEXT) for i in range(rows)]
    out: dict[str, float] = {}
    try:
        await conn.execute(
            f"CREATE TABLE a_rows (id bigint PRIMARY KEY, body text, "
            f"embedding vector({dims}), ready boolean NOT NULL DEFAULT false)"
        )

        async def insert() -> None:
            await conn.execute("TRUNCATE a_rows")
            await conn.executemany("INSERT INTO a_rows (id, body) VALUES ($1, $2)", data)

        out["executemany"] = await _median(insert, repeat)

        async def copy() -> None:
            async with conn.transaction():
                await conn.execute(
                    f"CREATE TEMP TABLE a_load (id bigint, embedding vector({dims})) ON COMMIT DROP"
                )
                await conn.copy_records_to_table(
                    "a_load", records=list(zip(range(rows), blobs, strict=True))
                )
                await conn.execute(
                    "UPDATE a_rows r SET embedding = l.embedding, ready = true "
                    "FROM a_load l WHERE r.id = l.id"
                )

        out["copy_update"] = await _median(copy, repeat)
        out["select1"] = await _median(lambda: conn.fetchval("SELECT 1"), 200)
        query = blobs[0]
        out["knn"] = await _median(
            lambda: conn.fetch("SELECT id FROM a_rows ORDER BY embedding <=> $1 LIMIT 10", query),
            20,
        )
    finally:
        await conn.close()
    return out


async def _psycopg(url: str, rows: int, vectors: np.ndarray, repeat: int) -> dict[str, float]:
    import psycopg
    from psycopg.adapt import Dumper
    from psycopg.pq import Format

    conn = await psycopg.AsyncConnection.connect(url.replace("postgresql://", "postgres://"))
    await conn.set_autocommit(True)
    oid = (await (await conn.execute("SELECT 'vector'::regtype::oid")).fetchone() or [0])[0]

    class Blob(bytes):
        """A float32 blob to send as a pgvector value."""

    class VectorDumper(Dumper):
        format = Format.BINARY

        def dump(self, obj: Any) -> bytes:
            return encode_vector(bytes(obj))

    VectorDumper.oid = oid
    conn.adapters.register_dumper(Blob, VectorDumper)
    dims = vectors.shape[1]
    blobs = [Blob(v.tobytes()) for v in vectors]
    data = [(i, _TEXT) for i in range(rows)]
    out: dict[str, float] = {}
    try:
        await conn.execute(
            f"CREATE TABLE p_rows (id bigint PRIMARY KEY, body text, "
            f"embedding vector({dims}), ready boolean NOT NULL DEFAULT false)"
        )

        async def insert() -> None:
            await conn.execute("TRUNCATE p_rows")
            async with conn.cursor() as cur:
                await cur.executemany("INSERT INTO p_rows (id, body) VALUES (%s, %s)", data)

        out["executemany"] = await _median(insert, repeat)

        async def copy() -> None:
            async with conn.transaction(), conn.cursor() as cur:
                await cur.execute(
                    f"CREATE TEMP TABLE p_load (id bigint, embedding vector({dims})) ON COMMIT DROP"
                )
                async with cur.copy("COPY p_load (id, embedding) FROM STDIN (FORMAT BINARY)") as cp:
                    cp.set_types(["int8", oid])
                    for i, blob in enumerate(blobs):
                        await cp.write_row((i, blob))
                await cur.execute(
                    "UPDATE p_rows r SET embedding = l.embedding, ready = true "
                    "FROM p_load l WHERE r.id = l.id"
                )

        out["copy_update"] = await _median(copy, repeat)

        async def select1() -> None:
            await (await conn.execute("SELECT 1")).fetchone()

        out["select1"] = await _median(select1, 200)
        query = blobs[0]

        async def knn() -> None:
            cur = await conn.execute(
                "SELECT id FROM p_rows ORDER BY embedding <=> %s LIMIT 10", (query,)
            )
            await cur.fetchall()

        out["knn"] = await _median(knn, 20)
    finally:
        await conn.close()
    return out


async def measure(rows: int, dims: int, repeat: int) -> dict[str, dict[str, float]]:
    """Seconds per operation, by driver (psycopg only when importable)."""
    vectors = np.random.default_rng(5).standard_normal((rows, dims), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    server = await asyncio.to_thread(LocalPostgres.start)
    try:
        url = await server.create_database("asemantic_driver")
        try:
            results = {"asyncpg": await _asyncpg(url, rows, vectors, repeat)}
            if importlib.util.find_spec("psycopg") is not None:
                results["psycopg"] = await _psycopg(url, rows, vectors, repeat)
            return results
        finally:
            await server.drop_database(url)
    finally:
        server.stop()


_LABELS = {
    "executemany": "executemany insert (s)",
    "copy_update": "COPY vectors + UPDATE (s)",
    "select1": "select 1 round trip (ms)",
    "knn": "exact KNN k=10 (ms)",
}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="asyncpg vs psycopg 3")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--dims", type=int, default=768)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    results = asyncio.run(measure(args.rows, args.dims, args.repeat))
    print(f"{args.rows:,} rows x {args.dims} dimensions, median of {args.repeat} runs")
    drivers = list(results)
    print(
        f"{'':<28}"
        + "".join(f"{d:>12}" for d in drivers)
        + ("   ratio" if len(drivers) > 1 else "")
    )
    for key, label in _LABELS.items():
        scale = 1000.0 if "(ms)" in label else 1.0
        cells = [results[d][key] * scale for d in drivers]
        line = f"{label:<28}" + "".join(f"{c:>12.3f}" for c in cells)
        if len(cells) > 1:
            line += f"   x{cells[1] / cells[0]:.2f}"
        print(line)
    if "psycopg" not in results:
        print('psycopg column left out: psycopg is not installed (pip install "psycopg[binary]")')


if __name__ == "__main__":
    main()
