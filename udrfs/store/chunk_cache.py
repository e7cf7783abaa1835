"""Verified chunks on local disk, keyed by chunk id: the cache of a store read from a remote.

Chunks are immutable and named by their BLAKE3, so nothing in the cache is ever invalidated;
it is only bounded (docs/architecture.md, "Reading from a remote"):

- *Files.* `chunks/xx/<chunk id>` under the cache directory, each written whole to a
  temporary file (named for the writing process and thread) and renamed, as store/atomic.py
  does but without fsync: a crash may lose a file, never tear one that a reader sees.
  Several processes (a mount and a Python job) share one directory; two writing the same
  chunk write the same bytes.
- *Checked on every read.* A cached file is hashed before any byte of it is handed out; a file
  that does not match (a damaged disk, a hand-edited file) is removed and the caller fetches
  the chunk again. So the cache is trusted for nothing.
- *Bounds.* At most `max_bytes` of chunk files, least recently used out first (a read renews
  the file's mtime when it is more than a minute old), and at least `reserve_bytes` left free
  on the disk. Each process counts what it adds; past the bound it takes the cache's eviction
  lock, lists the files, and removes the oldest until the cache is at `LOW_WATER` of its
  bound. Another process's additions are seen at that listing, so with several writers the
  cache can exceed its bound by what they added since their own last listing (each at most
  `1 - LOW_WATER` of it).
- *Written behind.* A reader hands fetched chunks out at once and queues them for one writer
  thread per cache (`put_later`); until written they are served from the queue. The queue is
  bounded (a reader waits when the disk falls that far behind), and drained, for a few
  seconds at most, when the interpreter exits. One writer, because every system call of a
  write gives up the GIL, and many threads writing would each wait for it again.
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
import threading
import time
import weakref
from pathlib import Path

from udrfs import _native
from udrfs.store.atomic import TEMP_PREFIX
from udrfs.store.keys import hashed_path

log = logging.getLogger(__name__)

GiB = 1 << 30
DEFAULT_CACHE_BYTES = 20 * GiB
DEFAULT_RESERVE_BYTES = 1 * GiB
# After an eviction the cache holds at most this share of its bound.
LOW_WATER = 0.8
# How often (bytes added by this process) the free space of the disk is looked at.
_FREE_CHECK_EVERY = 64 << 20
# Temporary files older than this were left by a process that died mid-write.
_STALE_TEMP_SECONDS = 600
# A read marks a cached file as recently used (its mtime) only when the mark is older than
# this: recency to the minute orders evictions well enough, and saves a system call a read.
_TOUCH_AFTER_SECONDS = 60
# Chunks queued for the writer at most (about 64 MiB of 64 KiB chunks).
_QUEUED_MAX = 1024
# How long an exiting interpreter waits for queued chunks to be written.
_EXIT_DRAIN_SECONDS = 5.0
_open_caches: weakref.WeakSet[ChunkCache] = weakref.WeakSet()


class ChunkCache:
    """An on-disk cache of verified chunk bytes (the module docstring gives the rules)."""

    def __init__(
        self,
        directory: Path,
        max_bytes: int = DEFAULT_CACHE_BYTES,
        reserve_bytes: int = DEFAULT_RESERVE_BYTES,
    ) -> None:
        self.root = directory
        self.directory = directory / "chunks"
        self.max_bytes = max_bytes
        self.reserve_bytes = reserve_bytes
        self._lock = threading.Lock()
        self._held: int | None = None  # bytes in the cache by this process's count
        self._since_free_check = 0
        self.hits = 0
        self.misses = 0
        self.damaged = 0  # cached files that failed their check and were removed
        self.evicted = 0  # files removed to keep the bounds
        # Verified chunks waiting for the writer thread (started on first use).
        self._pending: dict[str, bytes | memoryview] = {}
        self._queue: queue.Queue[str] = queue.Queue(_QUEUED_MAX)
        self._writer: threading.Thread | None = None

    def path(self, chunk_id: str) -> Path:
        return hashed_path(self.directory, chunk_id)

    def contains(self, chunk_id: str) -> bool:
        """Whether the chunk is cached or queued (not checked: `get` checks)."""
        return chunk_id in self._pending or self.path(chunk_id).exists()

    def put_later(self, chunk_id: str, data: bytes | memoryview) -> None:
        """`put` in the writer thread; until then `get` answers from the queue."""
        if self.max_bytes <= 0 or chunk_id in self._pending:
            return
        self._pending[chunk_id] = data
        with self._lock:
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_queued, name="udr-cache-writer", daemon=True
                )
                self._writer.start()
                _open_caches.add(self)
        self._queue.put(chunk_id)

    def _write_queued(self) -> None:
        while True:
            chunk_id = self._queue.get()
            try:
                data = self._pending.get(chunk_id)
                if data is not None:
                    self.put(chunk_id, data)
            except Exception:  # the cache is best effort; the writer must live on
                log.exception("writing chunk %s to the cache failed", chunk_id)
            finally:
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

    def get(self, chunk_id: str) -> bytes | memoryview | None:
        """The chunk's bytes if cached and intact (now the most recently used), else None."""
        queued = self._pending.get(chunk_id)
        if queued is not None:
            self.hits += 1
            return queued
        path = self.path(chunk_id)
        try:
            data, mtime = _read_file(path)
        except (FileNotFoundError, NotADirectoryError):
            self.misses += 1
            return None
        except OSError as exc:
            log.warning("cannot read cached chunk %s: %s", path, exc)
            self.misses += 1
            return None
        if _native.blake3_hex(data) != chunk_id:
            self.damaged += 1
            self.misses += 1
            log.warning("cached chunk %s does not match its hash: removed, fetched again", path)
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        if time.time() - mtime > _TOUCH_AFTER_SECONDS:
            with contextlib.suppress(OSError):
                os.utime(path)  # recency for the eviction order
        self.hits += 1
        return data

    def put(self, chunk_id: str, data: bytes | memoryview) -> None:
        """Keep verified bytes (best effort: a full disk or an unwritable cache only logs)."""
        if self.max_bytes <= 0:
            return
        path = self.path(chunk_id)
        try:
            self._write(path, data)
        except OSError as exc:
            log.warning("cannot cache chunk %s: %s", chunk_id, exc)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                self.evict(force_free=True)
            return
        self._added(len(data))

    def _write(self, path: Path, data: bytes | memoryview) -> None:
        # The rule of store/atomic.py (a temporary file renamed over the name; without fsync,
        # as the bytes are checked when read), in the fewest system calls: this runs once per
        # chunk fetched, on the read's path.
        tmp = f"{path.parent}/{TEMP_PREFIX}{os.getpid()}-{threading.get_ident()}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except FileNotFoundError:  # a new fan-out directory, or the cache was deleted
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            with memoryview(data) as view:
                written = 0
                while written < len(view):
                    written += os.write(fd, view[written:])
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

    def free_bytes(self) -> int:
        try:
            st = os.statvfs(self.directory if self.directory.exists() else self.root)
        except OSError:
            return 1 << 62
        return st.f_bavail * st.f_frsize

    def size(self) -> int:
        """Bytes of chunk files in the cache now (a listing)."""
        return sum(size for _mtime, size, _path in self._listing())

    def _listing(self) -> list[tuple[float, int, str]]:
        out: list[tuple[float, int, str]] = []
        try:
            subdirs = list(os.scandir(self.directory))
        except (FileNotFoundError, NotADirectoryError):
            return out
        now = time.time()
        for sub in subdirs:
            try:
                entries = list(os.scandir(sub.path))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                try:
                    st = entry.stat()
                except FileNotFoundError:
                    continue
                if entry.name.startswith(TEMP_PREFIX):
                    if now - st.st_mtime > _STALE_TEMP_SECONDS:
                        with contextlib.suppress(OSError):
                            os.unlink(entry.path)
                    continue
                out.append((st.st_mtime, st.st_size, entry.path))
        return out

    def evict(self, force_free: bool = False) -> None:
        """List the cache (under its lock, one process at a time) and remove the least
        recently used files until it is within its bound and the disk keeps its reserve."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.root / "evict.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            log.warning("cannot evict from the chunk cache %s: %s", self.root, exc)
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            files = self._listing()
            total = sum(size for _mtime, size, _path in files)
            target = total if total <= self.max_bytes else int(self.max_bytes * LOW_WATER)
            short = self.reserve_bytes - self.free_bytes()
            if short > 0 or force_free:
                target = min(target, total - max(short, 0), int(total * LOW_WATER))
            if total > target:
                files.sort()
                for _mtime, size, path in files:
                    if total <= target:
                        break
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                        self.evicted += 1
                    total -= size
            with self._lock:
                self._held = total
        finally:
            os.close(fd)


def _read_file(path: Path) -> tuple[bytes, float]:
    """A small file's bytes and mtime, in the fewest system calls (open, fstat, read, close)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        data = os.read(fd, st.st_size)
        while len(data) < st.st_size:  # a short read (rare for a regular file)
            more = os.read(fd, st.st_size - len(data))
            if not more:
                break
            data += more
        return data, st.st_mtime
    finally:
        os.close(fd)


@atexit.register
def _drain_at_exit() -> None:
    """Write what readers queued before the process ends (bounded: it is only a cache)."""
    deadline = time.monotonic() + _EXIT_DRAIN_SECONDS
    for cache in list(_open_caches):
        cache.drain(max(0.0, deadline - time.monotonic()))
