"""Verified chunks on local disk, keyed by chunk id: the cache of a store read from a remote.

Chunks are immutable and named by their BLAKE3, so nothing in the cache is ever invalidated;
it is only bounded (docs/architecture.md, "Reading from a remote"):

- *Segments.* The chunks of one ranged GET are kept together in one file,
  `segments/<segment id>`: a header (`SEGMENT_MAGIC`, the chunk count, then each chunk's
  id and length) and the chunks' bytes back to back. The segment id is the BLAKE3 of the
  header, so the name says what the file holds and two processes that keep the same chunks
  write the same file. One file per range, not per chunk: creating a file cost this machine's
  disk 0.05-0.3 ms of system time, which at ~80 KB a chunk capped cold reads at 0.25 GB/s
  with a file per chunk.
- *Files written whole.* Each is written to a temporary file (named for the writing process
  and thread) and renamed, as store/atomic.py does but without fsync: a crash may lose a
  file, never tear one that a reader sees.
- *Which chunk is where.* Each process keeps an index (chunk id -> segment, offset, length)
  of the segments it wrote and those it found at a listing of `segments/`. It lists the
  directory when it opens the cache and again, at most once a second (less often when a
  listing takes long), when a chunk it needs is not in its index and the directory changed
  since: so processes sharing the directory (a mount and a Python job) find each other's
  chunks.
- *Read natively.* Each segment indexed here is also added to a native reader
  (`_native.ChunkFiles`), which reads, checks and reads ahead the chunks of segments with
  the GIL released, as the engine reads a local store's packs (`read_into`, `prefetch`).
  It stops at the first chunk no indexed segment holds, and the caller reads the rest
  through `get_many`. Where the two indexes could differ, the first segment indexed for a
  chunk is the one both read it from.
- *Checked on every read.* A chunk is hashed before any byte of it is handed out, and a
  segment's header against its name when it is indexed; a segment that fails either check
  (a damaged disk, a hand-edited file) is removed and its chunks are fetched again. So the
  cache is trusted for nothing.
- *Bounds.* At most `max_bytes` of segments, least recently used out first (a read renews
  the segment's mtime when it is more than a minute old), and at least `reserve_bytes` left
  free on the disk. A segment holds at most a sixteenth of the bound, so a small cache still
  keeps its newest chunks. Each process counts what it adds; past the bound it takes the
  cache's eviction lock, lists the segments, and removes the oldest until the cache is at
  `LOW_WATER` of its bound. Another process's additions are seen at that listing, so with
  several writers the cache can exceed its bound by what they added since their own last
  listing (each at most `1 - LOW_WATER` of it).
- *Written behind.* A reader hands fetched chunks out at once and queues them for one writer
  thread per cache (`put_later`); until written they are served from the queue. The queue is
  bounded (a reader waits when the disk falls that far behind), and drained, for a few
  seconds at most, when the interpreter exits.
- *Survives its directory.* A deleted directory is made again by the next write; a full disk
  makes the cache evict and skip the write (the reader still gets its verified bytes).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import logging
import os
import queue
import shutil
import struct
import threading
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TypeAlias

from udrfs import _native
from udrfs.store.atomic import TEMP_PREFIX
from udrfs.store.chunks import ChunkList, read_cache_bytes

log = logging.getLogger(__name__)

GiB = 1 << 30
MiB = 1 << 20
DEFAULT_CACHE_BYTES = 20 * GiB
DEFAULT_RESERVE_BYTES = 1 * GiB
# After an eviction the cache holds at most this share of its bound.
LOW_WATER = 0.8
# A segment file: magic, chunk count (u32), then per chunk its id and length, then the bytes.
SEGMENT_MAGIC = b"UDRSEG1\n"
_COUNT = struct.Struct("<I")
_ENTRY = struct.Struct("<32sI")
# Largest segment written, in chunk bytes (a range is split above it; one chunk at least).
SEGMENT_MAX_BYTES = 8 * MiB
# How often (bytes added by this process) the free space of the disk is looked at.
_FREE_CHECK_EVERY = 64 << 20
# Temporary files older than this were left by a process that died mid-write.
_STALE_TEMP_SECONDS = 600
# A read marks a segment as recently used (its mtime) only when the mark is older than this:
# recency to the minute orders evictions well enough, and saves a system call a read.
_TOUCH_AFTER_SECONDS = 60
# A miss lists the directory (for other processes' segments) at most this often.
_RESCAN_SECONDS = 1.0
# Ranges queued for the writer at most.
_QUEUED_MAX = 16
# How long an exiting interpreter waits for queued chunks to be written.
_EXIT_DRAIN_SECONDS = 5.0
_open_caches: weakref.WeakSet[ChunkCache] = weakref.WeakSet()

Chunk: TypeAlias = bytes | memoryview
# Where a cached chunk is: segment name, offset of its bytes in the file, length.
_Where: TypeAlias = tuple[str, int, int]


def segment_header(chunks: Sequence[tuple[bytes, Chunk]]) -> bytes:
    """The header of a segment holding `chunks` (id, bytes), in order."""
    entries = b"".join(_ENTRY.pack(chunk_id, len(data)) for chunk_id, data in chunks)
    return SEGMENT_MAGIC + _COUNT.pack(len(chunks)) + entries


def parse_segment_header(name: str, head: bytes) -> list[tuple[bytes, int, int]] | None:
    """(chunk id, offset, length) of each chunk of segment `name`, whose file starts with
    `head`; None if the header is damaged (it does not hash to the name) or cut short."""
    if not head.startswith(SEGMENT_MAGIC) or len(head) < len(SEGMENT_MAGIC) + _COUNT.size:
        return None
    (count,) = _COUNT.unpack_from(head, len(SEGMENT_MAGIC))
    size = len(SEGMENT_MAGIC) + _COUNT.size + count * _ENTRY.size
    if len(head) < size or _native.blake3_hex(memoryview(head)[:size]) != name:
        return None
    out = []
    offset = size
    for k in range(count):
        chunk_id, length = _ENTRY.unpack_from(
            head, len(SEGMENT_MAGIC) + _COUNT.size + k * _ENTRY.size
        )
        out.append((chunk_id, offset, length))
        offset += length
    return out


class ChunkCache:
    """An on-disk cache of verified chunk bytes (the module docstring gives the rules).
    Chunk ids are given as their 32 bytes."""

    def __init__(
        self,
        directory: Path,
        max_bytes: int = DEFAULT_CACHE_BYTES,
        reserve_bytes: int = DEFAULT_RESERVE_BYTES,
    ) -> None:
        self.root = directory
        self.directory = directory / "segments"
        self.max_bytes = max_bytes
        self.reserve_bytes = reserve_bytes
        self.segment_max = max(1, min(SEGMENT_MAX_BYTES, max_bytes // 16))
        self._lock = threading.Lock()
        self._held: int | None = None  # bytes in the cache by this process's count
        self._since_free_check = 0
        self.hits = 0
        self.misses = 0
        self.damaged = 0  # segments that failed a check and were removed
        self.evicted = 0  # segments removed to keep the bounds
        # The index: where each known chunk is; which chunks each known segment holds.
        self._where: dict[bytes, _Where] = {}
        self._segments: dict[str, list[bytes]] = {}
        self._scanned_mtime: int | None = None
        self._scanned_at = -_RESCAN_SECONDS
        self._rescan_every = _RESCAN_SECONDS
        self._scan_lock = threading.Lock()
        # The indexed segments again, for reads in the native engine.
        self.files = _native.ChunkFiles(read_cache_bytes())
        # Verified chunks waiting for the writer thread (started on first use).
        self._pending: dict[bytes, Chunk] = {}
        self._queue: queue.Queue[list[tuple[bytes, Chunk]]] = queue.Queue(_QUEUED_MAX)
        self._writer: threading.Thread | None = None

    # ---- reads ----------------------------------------------------------------------------

    def read_into(
        self, chunks: ChunkList, offset: int, view: memoryview, may_list: bool = True
    ) -> int:
        """Copy bytes of the file `chunks` describes, from `offset`, into `view`, checked, up
        to the first chunk that is not in an indexed segment (with `may_list`, listing the
        directory again for other processes' segments when it is due); returns how many
        bytes were copied. A damaged segment reads as 0 bytes: `get_many` then finds and
        removes it."""
        filled = self._read_natively(chunks, offset, view)
        if filled < len(view) and may_list and self.rescan():
            filled += self._read_natively(chunks, offset + filled, view[filled:])
        return filled

    def _read_natively(self, chunks: ChunkList, offset: int, view: memoryview) -> int:
        try:
            return self.files.read_into(chunks, offset, view)
        except _native.CorruptChunkError:
            return 0

    def prefetch(self, chunks: ChunkList, offset: int, length: int) -> int:
        """Read ahead, into the native reader's memory, the chunks of bytes [offset, offset +
        length) that indexed segments hold (at most half its memory); returns the bytes read.
        Damage is left for the read that needs the chunk to find."""
        try:
            return self.files.prefetch(chunks, offset, length)
        except (_native.CorruptChunkError, OSError) as exc:
            log.debug("read-ahead from the disk cache failed: %s", exc)
            return 0

    def contains(self, chunk_id: bytes) -> bool:
        """Whether the chunk is cached or queued (not checked: `get` checks)."""
        return chunk_id in self._pending or self._find(chunk_id) is not None

    def get(self, chunk_id: bytes) -> Chunk | None:
        """The chunk's bytes if cached and intact (its segment now the most recently used),
        else None."""
        return self.get_many([chunk_id]).get(chunk_id)

    def get_many(self, chunk_ids: Sequence[bytes]) -> dict[bytes, Chunk]:
        """The chunks of `chunk_ids` that are cached and intact, by id (their segments now
        the most recently used). Neighbours in one segment are read by one system call."""
        out: dict[bytes, Chunk] = {}
        by_segment: dict[str, list[tuple[int, int, bytes]]] = {}
        for chunk_id in chunk_ids:
            queued = self._pending.get(chunk_id)
            if queued is not None:
                out[chunk_id] = queued
                continue
            where = self._find(chunk_id)
            if where is not None:
                name, offset, length = where
                by_segment.setdefault(name, []).append((offset, length, chunk_id))
        for name, wanted in by_segment.items():
            out.update(self._read_segment(name, wanted))
        self.hits += len(out)
        self.misses += len(set(chunk_ids)) - len(out)
        return out

    def _read_segment(self, name: str, wanted: list[tuple[int, int, bytes]]) -> dict[bytes, Chunk]:
        """Chunks (offset, length, id) of one segment, each checked; none if the segment is
        gone or damaged (then it is forgotten, or removed)."""
        out: dict[bytes, Chunk] = {}
        path = self.directory / name
        wanted.sort()
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            if not isinstance(exc, FileNotFoundError | NotADirectoryError):
                log.warning("cannot read cached segment %s: %s", path, exc)
            self._forget(name)  # evicted by another process, or unreadable
            return out
        try:
            mtime = os.fstat(fd).st_mtime
            k = 0
            while k < len(wanted):
                # A run of chunks that lie back to back: one read.
                run_start, end, m = wanted[k][0], wanted[k][0] + wanted[k][1], k + 1
                while m < len(wanted) and wanted[m][0] == end:
                    end += wanted[m][1]
                    m += 1
                data = memoryview(_pread_all(fd, end - run_start, run_start))
                for offset, length, chunk_id in wanted[k:m]:
                    piece = data[offset - run_start : offset - run_start + length]
                    if len(piece) != length or _native.blake3_hex(piece) != chunk_id.hex():
                        self._remove_damaged(name, f"chunk {chunk_id.hex()} does not match")
                        return {}
                    out[chunk_id] = piece
                k = m
        except OSError as exc:
            log.warning("cannot read cached segment %s: %s", path, exc)
            self._forget(name)
            return {}
        finally:
            os.close(fd)
        if time.time() - mtime > _TOUCH_AFTER_SECONDS:
            with contextlib.suppress(OSError):
                os.utime(path)  # recency for the eviction order
        return out

    def _find(self, chunk_id: bytes) -> _Where | None:
        where = self._where.get(chunk_id)
        if where is None:
            self.rescan()
            where = self._where.get(chunk_id)
        return where

    def rescan(self) -> bool:
        """Index the segments other processes wrote since the last listing (at most once a
        second, and only when the directory changed; a listing that took long, of a cache of
        many small segments, waits ten times as long for the next). A thread that finds a
        listing under way waits for it. Returns whether it listed the directory."""
        with self._scan_lock:
            started = time.monotonic()
            if started - self._scanned_at < self._rescan_every:
                return False
            try:
                mtime = os.stat(self.directory).st_mtime_ns
            except OSError:
                mtime = None
            listing = mtime is not None and mtime != self._scanned_mtime
            if listing:
                listed = set()
                for entry in _scandir(self.directory):
                    name = entry.name
                    if name.startswith(TEMP_PREFIX):
                        continue
                    listed.add(name)
                    if name not in self._segments:
                        self._index_file(name)
                for gone in set(self._segments) - listed:
                    self._forget(gone)
                self._scanned_mtime = mtime
            self._scanned_at = time.monotonic()
            self._rescan_every = max(_RESCAN_SECONDS, 10 * (self._scanned_at - started))
            return listing

    def _index_file(self, name: str) -> None:
        """Index a segment found in the directory (its header checked against its name)."""
        path = self.directory / name
        try:
            with open(path, "rb") as f:
                head = f.read(len(SEGMENT_MAGIC) + _COUNT.size)
                if len(head) == len(SEGMENT_MAGIC) + _COUNT.size:
                    (count,) = _COUNT.unpack_from(head, len(SEGMENT_MAGIC))
                    head += f.read(count * _ENTRY.size)
        except OSError:
            return
        entries = parse_segment_header(name, head)
        if entries is None:
            self._remove_damaged(name, "its header does not match its name")
        else:
            self._add(name, entries)

    def _add(self, name: str, entries: list[tuple[bytes, int, int]]) -> None:
        with self._lock:
            if name in self._segments:
                return
            self._segments[name] = [chunk_id for chunk_id, _o, _n in entries]
            for chunk_id, offset, length in entries:
                self._where.setdefault(chunk_id, (name, offset, length))  # as the native index
            self.files.add(name, str(self.directory / name), entries)

    def _forget(self, name: str) -> None:
        with self._lock:
            held = self._segments.pop(name, None)
            if held is None:
                return
            for chunk_id in held:
                where = self._where.get(chunk_id)
                if where is not None and where[0] == name:
                    del self._where[chunk_id]
            self.files.forget(name, held)

    def _remove_damaged(self, name: str, why: str) -> None:
        self.damaged += 1
        log.warning("cached segment %s: %s; removed, its chunks are fetched again", name, why)
        self._forget(name)
        with contextlib.suppress(OSError):
            (self.directory / name).unlink()

    # ---- writes ---------------------------------------------------------------------------

    def put_later(self, chunks: Sequence[tuple[bytes, Chunk]]) -> None:
        """`put` in the writer thread; until then `get` answers from the queue."""
        if self.max_bytes <= 0:
            return
        todo = [(c, d) for c, d in chunks if c not in self._pending and c not in self._where]
        if not todo:
            return
        for chunk_id, data in todo:
            self._pending[chunk_id] = data
        with self._lock:
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_queued, name="udr-cache-writer", daemon=True
                )
                self._writer.start()
                _open_caches.add(self)
        self._queue.put(todo)

    def _write_queued(self) -> None:
        while True:
            chunks = self._queue.get()
            try:
                self.put(chunks)
            except Exception:  # the cache is best effort; the writer must live on
                log.exception("writing %d chunks to the cache failed", len(chunks))
            finally:
                for chunk_id, _data in chunks:
                    self._pending.pop(chunk_id, None)
                self._queue.task_done()

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every queued chunk is written (at most `timeout` seconds)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._pending:
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.002)
        return True

    def put(self, chunks: Sequence[tuple[bytes, Chunk]]) -> None:
        """Keep verified chunks (id, bytes), in segments of at most `segment_max` bytes (best
        effort: a full disk or an unwritable cache only logs)."""
        if self.max_bytes <= 0:
            return
        start, size = 0, 0
        for k, (_chunk_id, data) in enumerate(chunks):
            if size and size + len(data) > self.segment_max:
                self._put_segment(chunks[start:k])
                start, size = k, 0
            size += len(data)
        if start < len(chunks):
            self._put_segment(chunks[start:])

    def _put_segment(self, chunks: Sequence[tuple[bytes, Chunk]]) -> None:
        header = segment_header(chunks)
        name = _native.blake3_hex(header)
        try:
            self._write(self.directory / name, [header, *(data for _c, data in chunks)])
        except OSError as exc:
            log.warning("cannot cache %d chunks: %s", len(chunks), exc)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                self.evict(force_free=True)
            return
        entries = []
        offset = len(header)
        for chunk_id, data in chunks:
            entries.append((chunk_id, offset, len(data)))
            offset += len(data)
        self._add(name, entries)
        self._added(offset)

    def _write(self, path: Path, parts: list[bytes | memoryview]) -> None:
        # The rule of store/atomic.py (a temporary file renamed over the name; without fsync,
        # as the bytes are checked when read), in one write call for the whole segment.
        tmp = f"{path.parent}/{TEMP_PREFIX}{os.getpid()}-{threading.get_ident()}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except FileNotFoundError:  # the cache was deleted (or is new)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_all(fd, parts)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.close(fd)
        os.rename(tmp, path)

    def _added(self, size: int) -> None:
        with self._lock:
            if self._held is None:
                self._held = 0
                first = True
            else:
                first = False
            self._held += size
            self._since_free_check += size
            over = self._held > self.max_bytes
            check_free = first or self._since_free_check >= _FREE_CHECK_EVERY
            if check_free:
                self._since_free_check = 0
        if over or first or (check_free and self.free_bytes() < self.reserve_bytes):
            self.evict()

    # ---- bounds ---------------------------------------------------------------------------

    def free_bytes(self) -> int:
        try:
            st = os.statvfs(self.directory if self.directory.exists() else self.root)
        except OSError:
            return 1 << 62
        return st.f_bavail * st.f_frsize

    def size(self) -> int:
        """Bytes of segments in the cache now (a listing)."""
        return sum(size for _mtime, size, _name in self._listing())

    def _listing(self) -> list[tuple[float, int, str]]:
        out: list[tuple[float, int, str]] = []
        now = time.time()
        for entry in _scandir(self.directory):
            try:
                st = entry.stat()
            except FileNotFoundError:
                continue
            if entry.name.startswith(TEMP_PREFIX):
                if now - st.st_mtime > _STALE_TEMP_SECONDS:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)
                continue
            out.append((st.st_mtime, st.st_size, entry.name))
        return out

    def evict(self, force_free: bool = False) -> None:
        """List the cache (under its lock, one process at a time) and remove the least
        recently used segments until it is within its bound and the disk keeps its reserve."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.root / "evict.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            log.warning("cannot evict from the chunk cache %s: %s", self.root, exc)
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            # A cache of one file per chunk, as versions before segments kept it.
            shutil.rmtree(self.root / "chunks", ignore_errors=True)
            files = self._listing()
            total = sum(size for _mtime, size, _name in files)
            target = total if total <= self.max_bytes else int(self.max_bytes * LOW_WATER)
            short = self.reserve_bytes - self.free_bytes()
            if short > 0 or force_free:
                target = min(target, total - max(short, 0), int(total * LOW_WATER))
            if total > target:
                files.sort()
                for _mtime, size, name in files:
                    if total <= target:
                        break
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.directory / name)
                        self.evicted += 1
                    self._forget(name)
                    total -= size
            with self._lock:
                self._held = total
        finally:
            os.close(fd)


def _scandir(directory: Path) -> list[os.DirEntry[str]]:
    try:
        return list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _pread_all(fd: int, length: int, offset: int) -> bytes:
    """`length` bytes of a file at `offset` (fewer only at its end)."""
    data = os.pread(fd, length, offset)
    while len(data) < length:  # a short read (rare for a regular file)
        more = os.pread(fd, length - len(data), offset + len(data))
        if not more:
            break
        data += more
    return data


def _write_all(fd: int, parts: list[bytes | memoryview]) -> None:
    """Write every byte of `parts`, in as few system calls as the kernel allows."""
    views = [memoryview(p).cast("B") for p in parts if len(p)]
    while views:
        written = os.writev(fd, views[:1024])  # IOV_MAX
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]


@atexit.register
def _drain_at_exit() -> None:
    """Write what readers queued before the process ends (bounded: it is only a cache)."""
    deadline = time.monotonic() + _EXIT_DRAIN_SECONDS
    for cache in list(_open_caches):
        cache.drain(max(0.0, deadline - time.monotonic()))
