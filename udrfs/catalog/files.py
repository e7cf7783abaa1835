"""Stored bytes (a table version, or a staged file) as a seekable, read-only binary file.

pyarrow never gets the Python file object itself: `arrow_file` is the one place where stored
bytes become something pyarrow reads, a native in-memory file. pyarrow's threaded readers
(`pq.read_table` pre-buffers on its I/O threads) can drop their last reference to a buffer
read through a Python file on a worker thread while the interpreter is exiting; taking the
GIL there ends the thread inside C++ and the process aborts ("terminate called without an
active exception", docs/architecture.md#reading-through-pyarrow). Bytes copied into memory
that Arrow allocated are freed without the GIL, so decoding keeps all of pyarrow's threads.

Where pyarrow wraps one of these files itself (a user's `pq.read_table(repo.open(...))`, or a
`udr://` file that pyarrow's fsspec adapter wraps), the file lends pyarrow its buffers through
`read_buffer`, and the interpreter's exit waits (bounded) until pyarrow has given them back.
"""

from __future__ import annotations

import atexit
import io
import os
import shutil
import struct
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from udrfs.catalog.model import TableVersion
from udrfs.errors import CorruptObjectError, NotFoundError
from udrfs.store.atomic import atomic_file
from udrfs.store.chunks import ChunkList, ChunkStore

if TYPE_CHECKING:  # pyarrow loads where data is read, not at import (a fast CLI start)
    import pyarrow as pa
    import pyarrow.parquet as pq

# Files that pyarrow reads through its Python-file wrapper, and the buffers they lent it.
_lent: weakref.WeakSet[Any] = weakref.WeakSet()
# How long an exiting interpreter waits for pyarrow to give them back.
_EXIT_WAIT = 2.0
_EXIT_SETTLE = 0.05
_ever_lent = False


def lend_until_exit(obj: object) -> None:
    """Make the interpreter's exit wait (bounded) until `obj`, held by pyarrow, is released."""
    global _ever_lent
    _ever_lent = True
    _lent.add(obj)


@atexit.register
def _wait_for_lent_buffers() -> None:
    """Let pyarrow's threads drop what they still hold before the interpreter finalises.

    atexit runs before finalisation starts, and sleeping releases the GIL, so a worker that
    still holds a lent buffer takes the GIL and releases it here instead of during
    finalisation (where taking the GIL ends the thread and aborts the process).
    """
    if not _ever_lent:
        return
    deadline = time.monotonic() + _EXIT_WAIT
    while _lent and time.monotonic() < deadline:
        time.sleep(0.001)
    # The worker that dropped the last lent object may still be unwinding what held it (the
    # read cache, its other Python references): give it the GIL a while longer.
    time.sleep(_EXIT_SETTLE)


class ChunkFile(io.RawIOBase):
    """The bytes of a chunk list, read from packs on demand (no copy on disk)."""

    def __init__(self, chunks: ChunkStore, chunk_list: ChunkList, name: str) -> None:
        super().__init__()
        self._chunks = chunks
        self._list = chunk_list
        self.name = name
        self._pos = 0

    @property
    def size(self) -> int:
        return int(self._list.size)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET:
            pos = offset
        elif whence == os.SEEK_CUR:
            pos = self._pos + offset
        elif whence == os.SEEK_END:
            pos = self.size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise ValueError("negative seek position")
        self._pos = pos
        return pos

    def readinto(self, buffer: Any) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        view = memoryview(buffer).cast("B")
        n = self._chunks.read_into(self._list, self._pos, view)
        self._pos += n
        return n

    def readall(self) -> bytes:
        data = self._chunks.read(self._list, self._pos, max(self.size - self._pos, 0))
        self._pos += len(data)
        return data

    def read_buffer(self, size: int = -1) -> memoryview:
        """`read`, for pyarrow's Python-file wrapper (which calls it when it exists): the
        file and the buffer are tracked until pyarrow lets go of them (see `_lent`)."""
        data = memoryview(self.read(size) or b"")
        lend_until_exit(self)
        lend_until_exit(data)
        return data

    def arrow(
        self, columns: Sequence[str] | None = None, row_groups: Sequence[int] | None = None
    ) -> pa.BufferReader:
        """These bytes as a native pyarrow file (see `arrow_file`)."""
        return arrow_file(self._chunks, self._list, columns, row_groups)

    def parquet(
        self, columns: Sequence[str] | None = None, row_groups: Sequence[int] | None = None
    ) -> pq.ParquetFile:
        """This file as a pyarrow ParquetFile; only `columns` of `row_groups` may be read from
        it (all of them by default; the footer always)."""
        import pyarrow.parquet as pq

        return pq.ParquetFile(self.arrow(columns, row_groups))

    def metadata(self) -> pq.FileMetaData:
        """The Parquet footer (only the footer's bytes are read)."""
        import pyarrow.parquet as pq

        return pq.read_metadata(self.arrow(columns=()))

    def read_arrow(self, columns: list[str] | None = None) -> pa.Table:
        import pyarrow.parquet as pq

        return pq.read_table(self.arrow(columns), columns=columns)


class VersionFile(ChunkFile):
    """The exact bytes of one table version."""

    def __init__(self, chunks: ChunkStore, version: TableVersion) -> None:
        super().__init__(chunks, version.chunks, f"{version.table}/v{version.version}.parquet")
        self.version = version


# Byte ranges closer than this are read as one (fewer calls into the chunk engine).
_GAP = 64 * 1024
# pyarrow reads up to this much past a column chunk's recorded end (old writers recorded
# dictionary page sizes short), so those bytes are read as well.
_PAD = 100


def arrow_file(
    chunks: ChunkStore,
    chunk_list: ChunkList,
    columns: Sequence[str] | None = None,
    row_groups: Sequence[int] | None = None,
) -> pa.BufferReader:
    """Stored bytes as a native pyarrow file, the one way stored bytes reach pyarrow.

    With neither `columns` nor `row_groups` the whole file is read. Otherwise the result is a
    sparse image of the file: the magic, the footer, and the column chunks of `columns` (top-level
    names) in `row_groups`, read through the chunk engine into memory Arrow allocated; other
    byte ranges are never filled, so the file may be read only for those columns and row groups.
    `columns=()` gives the footer alone (metadata and schema).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    size = int(chunk_list.size)
    image = pa.allocate_buffer(size)
    view = memoryview(image).cast("B")
    if columns is None and row_groups is None:
        _fill(chunks, chunk_list, view, [(0, size)])
        return pa.BufferReader(image)
    footer = _footer_range(chunks, chunk_list, size)
    _fill(chunks, chunk_list, view, [(0, min(4, size)), footer])
    if columns is not None and not columns:
        return pa.BufferReader(image)
    meta = pq.read_metadata(pa.BufferReader(image))
    _fill(chunks, chunk_list, view, _column_ranges(meta, columns, row_groups, size))
    return pa.BufferReader(image)


def _fill(
    chunks: ChunkStore, chunk_list: ChunkList, view: memoryview, ranges: Sequence[tuple[int, int]]
) -> None:
    for start, stop in ranges:
        while start < stop:
            n = chunks.read_into(chunk_list, start, view[start:stop])
            if n <= 0:
                raise CorruptObjectError(
                    f"stored bytes end at offset {start}, before {stop} as their chunk list "
                    "says; run `udr fsck` to see what is damaged"
                )
            start += n


def _footer_range(chunks: ChunkStore, chunk_list: ChunkList, size: int) -> tuple[int, int]:
    """Where the footer (its length and the closing magic included) lies, or the last bytes
    when the file is too short to say (pyarrow then reports it is not Parquet)."""
    if size < 12:
        return 0, size
    tail = chunks.read(chunk_list, size - 8, 8)
    (length,) = struct.unpack("<I", tail[:4])
    return max(size - 8 - length, 0), size


def _column_ranges(
    meta: pq.FileMetaData,
    columns: Sequence[str] | None,
    row_groups: Sequence[int] | None,
    size: int,
) -> list[tuple[int, int]]:
    from udrfs.parquet.inspect import column_chunk_range

    names = meta.schema.to_arrow_schema().names
    leaves = list(range(meta.num_columns))
    if columns is not None:
        wanted = set(columns)
        paths = [meta.schema.column(k).path for k in leaves]
        # A name is a top-level column or a nested field's dotted path.
        leaves = [
            k
            for k in range(meta.num_columns)
            if top_level(paths[k], names) in wanted
            or any(paths[k].startswith(c + ".") or paths[k] == c for c in wanted)
        ]
    groups = range(meta.num_row_groups) if row_groups is None else row_groups
    ranges = []
    for g in groups:
        group = meta.row_group(g)
        for k in leaves:
            start, stop = column_chunk_range(group.column(k))
            ranges.append((start, min(stop + _PAD, size)))
    merged: list[tuple[int, int]] = []
    for start, stop in sorted(ranges):
        if merged and start <= merged[-1][1] + _GAP:
            merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
        else:
            merged.append((start, stop))
    return merged


def top_level(path: str, names: Sequence[str]) -> str:
    """The top-level column a leaf's dotted path belongs to (names may hold dots)."""
    owners = [n for n in names if path == n or path.startswith(n + ".")]
    return max(owners, key=len) if owners else names[0]


def write_file_atomically(src: io.RawIOBase, path: Path) -> None:
    """Replace `path` only once every byte has been read (and so checked)."""
    if not path.parent.is_dir():
        raise NotFoundError(f"cannot write {path}: directory {path.parent} does not exist")
    if path.exists() and not path.is_file():  # /dev/null, a FIFO: write straight through
        with open(path, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        return
    with atomic_file(path) as out:
        shutil.copyfileobj(src, out, 1 << 20)
