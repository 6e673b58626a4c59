"""The memory index on disk: one file beside the database, memory-mapped on open.

Loading a million 768d vectors from vec0 takes seconds (every blob is read through
SQLite and copied); mapping a file of the same floats takes milliseconds, and a search
through the pruning bound (:mod:`.pruning`) then touches only the projected rows and
the few rows it scores, so pages are read from disk as they are needed.

The file is a cache: the database stays the source of truth. :mod:`.memory_index`
writes it after a full load and again when many changes piled up since, and checks it
against the database before using it (the ``vector_log`` position it was written at,
the log entry there, the ``database_id``, the READY count and sampled vectors); any
mismatch means a full load from the database instead.

Layout (little-endian): ``MAGIC``, the header length (u64), the header's CRC-32 (u32),
the header (JSON: dimensions, row count and capacity, projected width, the log position
and fingerprint, each array's offset, length and CRC-32, and a CRC-32 per block of
:data:`ROWS_PER_CRC` rows of the vectors), then the arrays at page-aligned offsets:
chunk ids (i64), documents (i64), the basis (f64, ``d x m``), residual norms (f32),
projected rows (f32, ``m`` per row) and the unit vectors (f32, ``d`` per row). The
projected rows, residuals and vectors have room for ``capacity`` rows (the slack is a
hole in the file), so a few appended rows do not copy the whole mapping.

Written to a temporary file beside the target, flushed to disk, then renamed over it:
a reader sees the old file or the new one, never a torn one (a crash mid-write leaves
the temporary file, removed by the next write). Every checksum is verified before the
file is used, reading it with ``pread`` (pages in the page cache, not this process's
memory), so a truncated or corrupted file is refused.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["IndexFile", "MAGIC", "ROWS_PER_CRC", "Stamp", "index_path", "read", "write"]

logger = logging.getLogger(__name__)

MAGIC = b"ASEMVEC\x01"
ROWS_PER_CRC = 16_384
_PAGE = 4096
_PREFIX = struct.Struct("<8sQI")
_READ = 16 << 20
_VERSION = 1

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def index_path(database: Path) -> Path:
    """Where the index file of ``database`` lives: beside it, ``<name>.vectors``."""
    return database.with_name(database.name + ".vectors")


@dataclass(frozen=True)
class Stamp:
    """What a file was written from: the ``vector_log`` position applied (``seq``), the
    chunk id logged at that position (-1: none), and the ``database_id`` (or None)."""

    seq: int
    log_chunk: int
    database_id: str | None


@dataclass
class IndexFile:
    """A verified index file, its arrays mapped copy-on-write (writes stay private).

    ``rows_checked``: whether the vectors' checksums were verified too; if not,
    :meth:`rows_intact` does it later."""

    stamp: Stamp
    ids: I64
    documents: I64
    basis: F64
    residuals: F32
    projected: F32
    rows: F32
    rows_checked: bool
    _row_crcs: list[int]
    _fd: int
    _rows_offset: int

    def rows_intact(self, stop: Callable[[], bool] = lambda: False) -> bool | None:
        """Whether every block of vectors matches its checksum (None: stopped first).
        Reads the file (the same one, even once another replaced it) with ``pread``:
        the pages go through the page cache, not into this process, whose memory then
        holds only the rows searches touch. Closes the file either way."""
        try:
            return self._rows_match(stop)
        except (OSError, ValueError):
            return False
        finally:
            self.close()

    def _rows_match(self, stop: Callable[[], bool]) -> bool | None:
        n, d = len(self.ids), self.rows.shape[1]
        for block, crc_value in enumerate(self._row_crcs):
            if stop():
                return None
            lo = block * ROWS_PER_CRC
            count = min(ROWS_PER_CRC, n - lo)
            if _crc(self._fd, self._rows_offset + lo * d * 4, count * d * 4) != crc_value:
                return False
        return True

    def close(self) -> None:
        """Close the file kept open for :meth:`rows_intact` (the mappings stay)."""
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1


def _align(offset: int) -> int:
    return (offset + _PAGE - 1) // _PAGE * _PAGE


def _layout(n: int, capacity: int, d: int, m: int) -> tuple[dict[str, list[Any]], int]:
    """Each array's ``[offset, bytes, dtype, shape]`` and the file size."""
    sizes = {
        "ids": (n * 8, "<i8", [n]),
        "documents": (n * 8, "<i8", [n]),
        "basis": (d * m * 8, "<f8", [d, m]),
        "residuals": (capacity * 4, "<f4", [capacity]),
        "projected": (capacity * m * 4, "<f4", [capacity, m]),
        "rows": (capacity * d * 4, "<f4", [capacity, d]),
    }
    offset = 64 * 1024 + _align(8 * (capacity // ROWS_PER_CRC + 1) * 2)
    out: dict[str, list[Any]] = {}
    for name, (size, dtype, shape) in sizes.items():
        offset = _align(offset)
        out[name] = [offset, size, dtype, shape]
        offset += size
    return out, _align(offset)


def write(
    path: Path,
    stamp: Stamp,
    arrays: tuple[I64, I64, F32, F32, F32],
    basis: F64,
    *,
    order: I64 | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> bool:
    """Write ``arrays`` (:meth:`.VectorMatrix.arrays`: ids, documents, rows, projected
    rows, residuals) to ``path`` atomically, rows in ``order`` (default: as they are);
    False if ``stop()`` turned true meanwhile (nothing is left behind then). Raises
    OSError when the directory is not writable."""
    n, d = arrays[2].shape
    m = basis.shape[1]
    capacity = n + max(1024, n // 32)
    layout, size = _layout(n, capacity, d, m)
    _remove_stale(path)
    temp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with temp.open("wb") as out:
            out.truncate(size)
            header = _write_body(out, layout, arrays, basis, order, stop)
            if header is None:
                out.close()
                temp.unlink(missing_ok=True)
                return False
            header.update(
                version=_VERSION,
                dimensions=d,
                width=m,
                rows=n,
                capacity=capacity,
                size=size,
                seq=stamp.seq,
                log_chunk=stamp.log_chunk,
                database_id=stamp.database_id,
                arrays=layout,
            )
            out.seek(0)
            out.write(_header_bytes(header, layout["ids"][0]))
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)
        raise
    _sync_directory(path.parent)
    return True


def _header_bytes(header: dict[str, Any], room: int) -> bytes:
    text = json.dumps(header, sort_keys=True).encode()
    if _PREFIX.size + len(text) > room:
        raise OSError("index file header does not fit")
    return _PREFIX.pack(MAGIC, len(text), zlib.crc32(text)) + text


def _bytes(array: Any, dtype: str) -> memoryview:
    data = np.ascontiguousarray(array, dtype=np.dtype(dtype))
    return data.data.cast("B")


def _write_body(
    out: Any,
    layout: dict[str, list[Any]],
    arrays: tuple[I64, I64, F32, F32, F32],
    basis: F64,
    order: I64 | None,
    stop: Callable[[], bool],
) -> dict[str, Any] | None:
    """Write every array at its offset; the checksums, or None if stopped."""
    ids, documents, rows, projected, residuals = arrays
    crcs: dict[str, int] = {}
    if order is None:
        order = np.arange(len(ids), dtype=np.int64)
    parts: dict[str, Any] = {
        "ids": ids,
        "documents": documents,
        "basis": basis,
        "residuals": residuals,
        "projected": projected,
    }
    for name, array in parts.items():
        if stop():
            return None
        out.seek(layout[name][0])
        crc = 0
        # A block of rows at a time, so reordering never copies a whole array.
        step = len(array) if name == "basis" else ROWS_PER_CRC
        for lo in range(0, len(array), max(step, 1)):
            part = array if name == "basis" else array[order[lo : lo + step]]
            view = _bytes(part, layout[name][2])
            out.write(view)
            crc = zlib.crc32(view, crc)
        crcs[name] = crc
    out.seek(layout["rows"][0])
    row_crcs: list[int] = []
    for lo in range(0, len(rows), ROWS_PER_CRC):
        if stop():
            return None
        view = _bytes(rows[order[lo : lo + ROWS_PER_CRC]], "<f4")
        out.write(view)
        row_crcs.append(zlib.crc32(view))
    return {"crc": crcs, "row_crc": row_crcs}


def _sync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove_stale(path: Path) -> None:
    """Remove temporary files that writers which are gone left behind."""
    for temp in path.parent.glob(f"{path.name}.*.tmp"):
        pid_text = temp.name[len(path.name) + 1 : -len(".tmp")]
        if not pid_text.isdigit():
            continue
        pid = int(pid_text)
        if pid != os.getpid() and _alive(pid):
            continue
        with contextlib.suppress(OSError):
            temp.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read(path: Path, dimensions: int, *, check_rows: bool = True) -> IndexFile | None:
    """The index file at ``path`` if it is whole and for ``dimensions``; None (with the
    reason logged) when it is missing, torn, truncated or corrupted. Without
    ``check_rows`` the vectors' own checksums are left to :meth:`IndexFile.rows_intact`
    (everything else is checked)."""
    try:
        return _read(path, dimensions, check_rows)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, struct.error) as error:
        logger.info("index file not usable (%s); loading from the database", error)
        return None


def _read(path: Path, dimensions: int, check_rows: bool) -> IndexFile | None:
    with path.open("rb") as stream:
        fd = stream.fileno()
        size = os.fstat(fd).st_size
        prefix = os.pread(fd, _PREFIX.size, 0)
        magic, length, crc = _PREFIX.unpack(prefix)
        if magic != MAGIC:
            raise ValueError("not an index file")
        text = os.pread(fd, length, _PREFIX.size)
        if len(text) != length or zlib.crc32(text) != crc:
            raise ValueError("header checksum")
        header = json.loads(text)
        if header["version"] != _VERSION or header["dimensions"] != dimensions:
            raise ValueError("another version or dimensions")
        if header["size"] != size:
            raise ValueError("truncated")
        layout = header["arrays"]
        n, capacity, m = int(header["rows"]), int(header["capacity"]), int(header["width"])
        expected, _ = _layout(n, capacity, dimensions, m)
        if layout != expected:
            raise ValueError("layout")
        for name, crc_value in header["crc"].items():
            offset, nbytes = layout[name][0], layout[name][1]
            if name in ("residuals", "projected"):
                nbytes = nbytes * n // capacity
            if _crc(fd, offset, nbytes) != crc_value:
                raise ValueError(f"{name} checksum")
        row_bytes = dimensions * 4
        crcs = header["row_crc"]
        if len(crcs) != (n + ROWS_PER_CRC - 1) // ROWS_PER_CRC:
            raise ValueError("row checksums")
        for block, crc_value in enumerate(crcs if check_rows else []):
            lo = block * ROWS_PER_CRC
            count = min(ROWS_PER_CRC, n - lo)
            start = layout["rows"][0] + lo * row_bytes
            if _crc(fd, start, count * row_bytes) != crc_value:
                raise ValueError("vectors checksum")

    def mapped(name: str) -> Any:
        offset, _, dtype, shape = layout[name]
        if not int(np.prod(shape)):
            return np.zeros(shape, dtype=dtype)
        return np.memmap(path, dtype=dtype, mode="c", offset=offset, shape=tuple(shape))

    return IndexFile(
        stamp=Stamp(
            seq=int(header["seq"]),
            log_chunk=int(header["log_chunk"]),
            database_id=header["database_id"],
        ),
        ids=np.array(mapped("ids"), dtype=np.int64),
        documents=np.array(mapped("documents"), dtype=np.int64),
        basis=np.array(mapped("basis"), dtype=np.float64),
        residuals=mapped("residuals"),
        projected=mapped("projected"),
        rows=mapped("rows"),
        rows_checked=check_rows,
        _row_crcs=[int(c) for c in crcs],
        _fd=-1 if check_rows else os.open(path, os.O_RDONLY),
        _rows_offset=int(layout["rows"][0]),
    )


def _crc(fd: int, offset: int, nbytes: int) -> int:
    crc = 0
    done = 0
    while done < nbytes:
        chunk = os.pread(fd, min(_READ, nbytes - done), offset + done)
        if not chunk:
            raise ValueError("truncated")
        crc = zlib.crc32(chunk, crc)
        done += len(chunk)
    return crc
