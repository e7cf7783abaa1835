"""The bytes of one `.tx` file while it is open for writing.

Writes are answered at once and applied behind the writer (write-behind): each `write`
request appends its buffer to a queue, and one drain task per file hands the queued buffers
to a worker thread in batches. The trio loop only ever appends; the chunk engine runs in the
worker with the GIL released. While the writer is a queue length ahead, the next request
arrives while the last one is chunked, so the kernel's copy and the chunking overlap on two
cores. At most `QUEUE_LIMIT` bytes wait; past that a write waits for the drain (back-pressure).

Where the bytes go:
* in order from offset 0 (cp, pandas, pyarrow, DuckDB, polars): straight into a chunk stream
  (`Catalog.stream`), so the store holds the file as it is written and nothing is copied;
* anything else (a write at another offset, a truncate to a size other than 0, a read
  through the writing handle, a file reopened without O_TRUNC): the bytes so far are copied
  into a spill file under STORE/staging/spill/, later writes go there, and the spill file is
  chunked (with Parquet cut points) and deleted when the file is finished;
* into a table whose layout is dedup (docs/architecture.md, "Table layouts"): always into a
  spill file, whose rows the dedup writer rewrites when the file is finished; only the
  rewritten file is chunked, so the bytes as written never reach the store (unless they are
  not Parquet or break the table's key: then they are chunked as written, a problem).

Errors in the worker (disk full, ...) are kept and reported by the next write, fsync or close.

Bounded inputs: a file may not grow past `max_size` (a write or truncate beyond it fails
with EFBIG at once, before anything is queued). A spill file stays sparse: a truncate or a
write far past the end leaves a hole, and when the file is chunked its holes are fed to the
chunker from one block of zeros, never read into memory or mapped. Only a small spill file
(`MAP_LIMIT`) without holes is chunked through a mapping, with Parquet cut points; a larger one
is chunked as a stream, a block at a time, so the daemon's memory does not grow with it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from errno import ESTALE
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from udrfs.catalog import Catalog
from udrfs.catalog.tx_files import spill_file
from udrfs.errors import InvalidKeyError, NotParquetError, UdrError
from udrfs.parquet.inspect import ParquetDescription, describe_parquet

if TYPE_CHECKING:
    from udrfs.catalog.layout import LaidOut
    from udrfs.store.chunks import ChunkList, ChunkStream

# Rewrites a finished spill file in its table's layout (`Transaction.lay_out_file`).
Rewrite = Callable[[Path], "LaidOut | None"]

# Bytes that may wait in a file's queue before a write waits for the worker.
QUEUE_LIMIT = 32 << 20
_COPY_BLOCK = 4 << 20
# The largest staged file by default (`udr mount --max-file-size`).
DEFAULT_MAX_FILE_SIZE = 64 << 30
# Spill files up to this size without holes are chunked through a mapping, with Parquet cut
# points; the mapped pages count in the daemon's memory, so larger ones are streamed.
MAP_LIMIT = 64 << 20


@dataclass(frozen=True)
class StagedContent:
    """The finished bytes of a staged file."""

    chunks: ChunkList
    size: int
    blake3: str


@dataclass(frozen=True)
class FinishedFile:
    """What a finished write produced: the bytes, and either their Parquet description or
    the reason they are not Parquet."""

    content: StagedContent
    desc: ParquetDescription | None
    problem: str | None
    # The bytes are the table's layout already (rewritten here): staged as they are.
    laid_out: bool = False


@dataclass(frozen=True)
class _Write:
    offset: int
    data: bytes


@dataclass(frozen=True)
class _Truncate:
    size: int


class WriterClosedError(UdrError):
    """The file was removed, or its transaction ended, while it was being written."""

    errno = ESTALE  # what the writer's next request answers (errno_for)


class FileTooLargeError(OSError):
    """A write or truncate would take a staged file past the mount's size limit."""

    def __init__(self, label: str, size: int, limit: int) -> None:
        super().__init__(
            errno.EFBIG,
            f"{label} would be {size} bytes, more than the limit of {limit} bytes "
            "(udr mount --max-file-size)",
        )

    def __str__(self) -> str:
        return str(self.strerror)


class StagedWriter:
    """One file being written; `size` and the queue live on the trio loop, the stream and the
    spill file in the worker (one batch at a time, under `_worker_lock`)."""

    def __init__(
        self,
        catalog: Catalog,
        label: str,
        base: StagedContent | None,
        nursery: trio.Nursery,
        limiter: trio.CapacityLimiter,
        max_size: int = DEFAULT_MAX_FILE_SIZE,
        rewrite: Rewrite | None = None,
    ) -> None:
        self._catalog = catalog
        self._rewrite = rewrite
        self.label = label
        self.max_size = max_size
        self._nursery = nursery
        self._limiter = limiter
        # Loop side.
        self.size = base.size if base else 0
        self.changed = False
        self._queue: list[_Write | _Truncate] = []
        self._queued_bytes = 0
        self._draining = False
        self._idle = trio.Event()
        self._idle.set()
        self._space: trio.Event | None = None
        self._error: BaseException | None = None
        self._closed = False
        # Worker side.
        self._worker_lock = threading.Lock()
        self._base = base if base is not None and base.size else None  # empty: stream anew
        self._stream: ChunkStream | None = None
        self._streamed = 0
        self._spill: int | None = None
        self._spill_path: Path | None = None

    # -- the loop side -------------------------------------------------------------------

    async def write(self, offset: int, data: bytes) -> None:
        self._check()
        self._check_size(offset + len(data))
        self._enqueue(_Write(offset, data), len(data))
        self.size = max(self.size, offset + len(data))
        while self._queued_bytes > QUEUE_LIMIT and self._error is None and not self._closed:
            self._space = self._space or trio.Event()
            await self._space.wait()
        self._check()

    def truncate(self, size: int) -> None:
        self._check()
        self._check_size(size)
        self._enqueue(_Truncate(size), 0)
        self.size = size

    async def settle(self) -> None:
        """Wait until every queued write is applied; raise the first error if one failed."""
        while not self._idle.is_set():
            await self._idle.wait()
        self._check()

    async def read(self, offset: int, size: int) -> bytes:
        """Read through the writing handle (O_RDWR): from the spill file, made if needed."""
        await self.settle()
        return await trio.to_thread.run_sync(self._read_spill, offset, size, limiter=self._limiter)

    async def finish(self) -> FinishedFile:
        """Apply everything queued and turn the bytes into a finished, described file."""
        await self.settle()
        finished = await trio.to_thread.run_sync(self._finish, limiter=self._limiter)
        self._closed = True
        return finished

    def abort(self) -> None:
        """Drop the file's bytes; later writes fail. Chunks already stored become garbage."""
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        self._wake()
        self._nursery.start_soon(self._abort_in_worker)

    def _check(self) -> None:
        if self._error is not None:
            raise self._error
        if self._closed:
            raise WriterClosedError(f"{self.label} was removed or its transaction ended")

    def _check_size(self, size: int) -> None:
        if size > self.max_size:
            raise FileTooLargeError(self.label, size, self.max_size)

    def _enqueue(self, op: _Write | _Truncate, size: int) -> None:
        self.changed = True
        self._queue.append(op)
        self._queued_bytes += size
        if not self._draining:
            self._draining = True
            self._idle = trio.Event()
            self._nursery.start_soon(self._drain)

    async def _drain(self) -> None:
        try:
            while self._queue and self._error is None and not self._closed:
                batch, self._queue = self._queue, []
                size = sum(len(op.data) for op in batch if isinstance(op, _Write))
                try:
                    await trio.to_thread.run_sync(self._apply, batch, limiter=self._limiter)
                except Exception as exc:
                    self._error = exc
                    self._queue.clear()
                self._queued_bytes -= size
                if self._queued_bytes <= QUEUE_LIMIT:
                    self._wake()
        finally:
            self._draining = False
            self._queued_bytes = 0 if not self._queue else self._queued_bytes
            self._idle.set()
            self._wake()

    def _wake(self) -> None:
        if self._space is not None:
            self._space.set()
            self._space = None

    async def _abort_in_worker(self) -> None:
        await self._idle.wait()
        await trio.to_thread.run_sync(self._discard, limiter=self._limiter)

    # -- the worker side -----------------------------------------------------------------

    def _apply(self, batch: list[_Write | _Truncate]) -> None:
        with self._worker_lock:
            for op in batch:
                if isinstance(op, _Write):
                    self._write(op.offset, op.data)
                else:
                    self._truncate(op.size)

    def _write(self, offset: int, data: bytes) -> None:
        streams = self._rewrite is None and self._base is None and offset == self._streamed
        if self._spill is None and streams:
            if self._stream is None:
                self._stream = self._catalog.stream()
            self._stream.write(data)
            self._streamed += len(data)
            return
        _pwrite_all(self._to_spill(), data, offset)

    def _truncate(self, size: int) -> None:
        if self._spill is None and size == 0:
            # O_TRUNC of a file being rewritten: start over, no spill needed.
            if self._stream is not None:
                self._stream.abort()
            self._stream, self._streamed, self._base = None, 0, None
            return
        current = self._base.size if self._base is not None else self._streamed
        if self._spill is None and size == current:
            return
        os.ftruncate(self._to_spill(), size)

    def _to_spill(self) -> int:
        """The spill file, made on first need from the bytes written so far."""
        if self._spill is not None:
            return self._spill
        path = spill_file(self._catalog.store)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        self._spill, self._spill_path = fd, path
        if self._stream is not None:
            earlier: ChunkList | None = self._stream.finish()  # its chunks become garbage
            self._stream = None
        else:
            earlier = self._base.chunks if self._base is not None else None
        self._base = None
        if earlier is not None and earlier.size:
            # Blocks of zeros (a file truncated larger, then reopened) stay holes.
            zeros, offset = bytes(_COPY_BLOCK), 0
            with self._catalog.open_chunks(earlier, self.label) as source:
                while block := source.read(_COPY_BLOCK):
                    if block != zeros[: len(block)]:
                        _pwrite_all(fd, block, offset)
                    offset += len(block)
            os.ftruncate(fd, offset)
        return fd

    def _read_spill(self, offset: int, size: int) -> bytes:
        with self._worker_lock:
            return os.pread(self._to_spill(), size, offset)

    def _finish(self) -> FinishedFile:
        with self._worker_lock:
            if self._spill is not None:
                return self._finish_spill()
            if self._stream is None and self._base is not None:
                chunks, blake3 = self._base.chunks, self._base.blake3  # not changed
            else:
                stream = self._stream or self._catalog.stream()  # an empty file
                self._stream = None
                chunks, blake3 = self._catalog.finish_stream(stream)
            content = StagedContent(chunks, int(chunks.size), blake3)
            try:
                desc = self._catalog.describe_chunks(chunks, self.label)
            except NotParquetError as exc:
                return FinishedFile(content, None, str(exc))
            return FinishedFile(content, desc, None)

    def _finish_spill(self) -> FinishedFile:
        assert self._spill is not None and self._spill_path is not None
        try:
            os.close(self._spill)
            self._spill = None
            try:
                desc: ParquetDescription | None = describe_parquet(self._spill_path, self.label)
                problem = None
            except NotParquetError as exc:
                desc, problem = None, str(exc)
            if desc is not None and self._rewrite is not None:
                try:
                    laid = self._rewrite(self._spill_path)
                except InvalidKeyError as exc:
                    desc, problem = None, f"{self.label}: {exc}"
                else:
                    if laid is not None:
                        content = StagedContent(laid.chunks, int(laid.chunks.size), laid.blake3)
                        return FinishedFile(content, laid.desc, None, laid_out=True)
            with open(self._spill_path, "rb") as spill:
                size = os.fstat(spill.fileno()).st_size
                if size <= MAP_LIMIT and not _has_holes(spill.fileno(), size):
                    # Cut points are known here (unlike for a stream): column chunks start
                    # chunks.
                    cuts = desc.cut_points if desc is not None else None
                    chunks, blake3 = self._catalog.chunk_file(self._spill_path, cuts)
                else:
                    chunks, blake3 = self._stream_sparse(spill.fileno(), size)
            return FinishedFile(StagedContent(chunks, int(chunks.size), blake3), desc, problem)
        finally:
            self._spill_path.unlink(missing_ok=True)
            self._spill_path = None

    def _stream_sparse(self, fd: int, size: int) -> tuple[ChunkList, str]:
        """Chunk the file at `fd` through a stream, a block at a time; holes come from one
        block of zeros (the same bytes as reading them, without the reads)."""
        stream = self._catalog.stream()
        try:
            zeros = memoryview(bytes(_COPY_BLOCK))
            for start, end, is_data in _extents(fd, size):
                offset = start
                while offset < end:
                    n = min(_COPY_BLOCK, end - offset)
                    if is_data:
                        block = os.pread(fd, n, offset)
                        if not block:
                            raise OSError(errno.EIO, f"{self.label}: spill file shrank")
                        stream.write(block)
                        offset += len(block)
                    else:
                        stream.write(zeros[:n])
                        offset += n
            return self._catalog.finish_stream(stream)
        except BaseException:
            stream.abort()
            raise

    def _discard(self) -> None:
        with self._worker_lock:
            if self._stream is not None:
                self._stream.abort()
                self._stream = None
            if self._spill is not None:
                with contextlib.suppress(OSError):
                    os.close(self._spill)
                self._spill = None
            if self._spill_path is not None:
                self._spill_path.unlink(missing_ok=True)
                self._spill_path = None


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _extents(fd: int, size: int) -> Iterator[tuple[int, int, bool]]:
    """(start, end, holds data) of the file's data and holes, in order, up to `size`."""
    offset = 0
    while offset < size:
        try:
            data = min(os.lseek(fd, offset, os.SEEK_DATA), size)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: only a hole is left
                raise
            data = size
        if data > offset:
            yield offset, data, False
        if data >= size:
            return
        hole = min(os.lseek(fd, data, os.SEEK_HOLE), size)
        yield data, hole, True
        offset = hole


def _has_holes(fd: int, size: int) -> bool:
    return any(not is_data for _, _, is_data in _extents(fd, size))
